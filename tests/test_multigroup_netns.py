"""Active-active load sharing in network namespaces: two daemons, two groups, priorities crossed.

Each ``mobileip homeagent`` runs two ``[[group]]``s on one bridge: g1 (virtual address .101,
VRID 61) and g2 (.102, VRID 62), each with its own native VRRP instance, its own binding table
and its own sync port. Daemon a has the higher priority in g1, b in g2, so a is master of g1 and
backup of g2 and b the reverse. A mobile node registers through each virtual address; then a is
SIGKILLed and b must become master of both and serve both groups' bindings (the next
identification is accepted, a replayed one refused with 133). Run with ``-s`` to see timings.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import KEY, SPI, wait_until
from netns import Member, Process, Segment, sync_section
from test_multigroup import group_file

from mobileip.core.replay import ntp_from_unix
from mobileip.vrrp import master_down_interval

pytestmark = [pytest.mark.root, pytest.mark.timeout(120)]

PREFIX = "10.1.0.0/16"
INTERVAL = 0.1
INTERVAL_CS = 10
MARGIN = 1.5  # two groups per daemon on a busy 2-core box
GROUPS = {  # name: (virtual address, VRID, sync port, priority on a, priority on b)
    "g1": ("10.77.0.101", 61, 4341, 200, 100),
    "g2": ("10.77.0.102", 62, 4342, 100, 200),
}

MN_SCRIPT = f"""
SPI, KEY, PREFIX = {SPI}, {KEY!r}, {PREFIX!r}
import json, socket, sys
from ipaddress import IPv4Address, IPv4Network
from mobileip.core.security import SecurityAssociation
from mobileip.agents.client import MobileNode, build_request, check_reply
vip, home, ident = sys.argv[1], sys.argv[2], int(sys.argv[3])
sa = SecurityAssociation(SPI, "hmac-md5", bytes.fromhex(KEY), (IPv4Network(PREFIX),))
mn = MobileNode(IPv4Address(home), IPv4Address("192.0.2.10"), IPv4Address(vip), sa)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(0.7)
result = {{"code": None}}
for attempt in range(4):
    s.sendto(build_request(mn, 600, ident), (vip, 434))
    try:
        data, src = s.recvfrom(2048)
    except TimeoutError:
        continue
    check = check_reply(mn, data, ident)
    reply = check.reply
    result = {{"code": reply.code if reply else None, "error": check.error, "src": src[0],
               "ha": str(reply.home_agent) if reply else None}}
    break
print(json.dumps(result))
"""


class World:
    def __init__(self, seg: Segment, tmp: Path) -> None:
        self.seg = seg
        self.tmp = tmp
        self.a = seg.add_member("a", "10.77.0.1/24")
        self.b = seg.add_member("b", "10.77.0.2/24")
        self.mn = seg.add_member("mn", "10.77.0.50/24")
        self.script = tmp / "mn.py"
        self.script.write_text(MN_SCRIPT)
        self.procs: dict[str, Process] = {}
        self.last: dict[str, int] = {}

    def start(self, m: Member) -> Process:
        peer = self.b if m is self.a else self.a
        top = {
            "homeagent": {"address": m.ip, "listen": "0.0.0.0", "port": 434},
            "security_association": [
                {"spi": SPI, "algorithm": "hmac-md5", "key": KEY, "home_addresses": [PREFIX]}
            ],
            "control": {"listen": "127.0.0.1:8434"},
        }
        groups = []
        for name, (vip, vrid, sport, prio_a, prio_b) in GROUPS.items():
            groups.append(
                {
                    "name": name,
                    "redundancy": sync_section(m, [peer], sport),
                    "vrrp": {
                        "driver": "native",
                        "interface": m.ifname,
                        "vrid": vrid,
                        "priority": prio_a if m is self.a else prio_b,
                        "advert_interval": INTERVAL,
                        "virtual_address": f"{vip}/24",
                    },
                }
            )
        path = self.tmp / f"{m.name}.toml"
        path.write_text(group_file(top, groups))
        argv = [sys.executable, "-m", "mobileip", "homeagent", "--config", str(path)]
        proc = self.seg.spawn(m, argv, label=f"ha-{m.name}")
        self.procs[m.name] = proc
        return proc

    def owner(self, group: str, members: list[Member] | None = None) -> list[str]:
        vip = GROUPS[group][0]
        return [
            m.name for m in (members or [self.a, self.b]) if f"{vip}/24" in self.seg.addresses(m)
        ]

    def cli(self, m: Member, *args: str) -> Any:
        result = self.seg.run(m, [sys.executable, "-m", "mobileip", *args])
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def table(self, m: Member, group: str) -> set[tuple[str, int]]:
        rows = self.cli(m, "show", "bindings", "--json", "--group", group)
        return {(r["home_address"], r["identification"]) for r in rows}

    def register(self, group: str, home: str, ident: int | None = None) -> dict[str, Any]:
        if ident is None:
            ident = max(ntp_from_unix(time.time()), self.last.get(home, 0) + 1)
        self.last[home] = max(ident, self.last.get(home, 0))
        argv = [sys.executable, str(self.script), GROUPS[group][0], home, str(ident)]
        result = self.seg.run(self.mn, argv)
        assert result.returncode == 0, result.stderr
        reply: dict[str, Any] = json.loads(result.stdout)
        reply["ident"] = ident
        return reply

    def dump(self) -> str:
        return "\n".join(p.output() for p in self.procs.values())


def active(group: str) -> str:
    return rf"event=role\.changed role=active .*ha_group={group}"


def test_crossed_priorities_each_daemon_masters_one_group_and_takes_both_on_failure(
    seg: Segment, tmp_path: Path
) -> None:
    w = World(seg, tmp_path)
    pa = w.start(w.a)
    pb = w.start(w.b)
    try:
        wait_until(lambda: w.owner("g1") == ["a"] and w.owner("g2") == ["b"], 25, "crossed")
        time.sleep(5 * INTERVAL)
        assert w.owner("g1") == ["a"] and w.owner("g2") == ["b"]
        groups_a = w.cli(w.a, "show", "groups", "--json")
        assert [(g["name"], g["role"]) for g in groups_a] == [("g1", "active"), ("g2", "standby")]

        one = w.register("g1", "10.1.0.5")
        two = w.register("g2", "10.1.0.6")
        assert one["code"] == 0 and one["src"] == one["ha"] == GROUPS["g1"][0], one
        assert two["code"] == 0 and two["src"] == two["ha"] == GROUPS["g2"][0], two
        k1, k2 = ("10.1.0.5", one["ident"]), ("10.1.0.6", two["ident"])
        synced = wait_until(
            lambda: w.table(w.b, "g1") == {k1} and w.table(w.a, "g2") == {k2}, 10, "sync"
        )
        print(f"\neach group's binding on the other daemon {synced * 1000:.0f} ms after the reply")
        # the binding sets stay apart: g1's table has no g2 binding and the reverse
        assert w.table(w.a, "g1") == {k1} and w.table(w.b, "g2") == {k2}

        killed = time.monotonic()
        pa.signal(signal.SIGKILL)
        took = pb.wait_for(active("g1"), 10, since=killed)
        elapsed = took.at - killed
        moved = wait_until(lambda: w.owner("g1", [w.b]) == ["b"], 5, "g1 address on b")
        limit = master_down_interval(100, INTERVAL_CS)
        print(
            f"SIGKILL of a: b active for g1 in {elapsed * 1000:.0f} ms, address on b within "
            f"{(took.at - killed + moved) * 1000:.0f} ms (Master_Down_Interval "
            f"{limit * 1000:.0f} ms)"
        )
        assert elapsed < limit + MARGIN
        assert w.owner("g2", [w.b]) == ["b"]
        groups_b = w.cli(w.b, "show", "groups", "--json")
        assert [(g["name"], g["role"]) for g in groups_b] == [("g1", "active"), ("g2", "active")]

        # b serves both groups' bindings: next identification accepted, a replay refused
        nxt = w.register("g1", "10.1.0.5")
        assert nxt["code"] == 0 and nxt["src"] == GROUPS["g1"][0], nxt
        assert w.register("g1", "10.1.0.5", ident=one["ident"])["code"] == 133
        assert w.register("g1", "10.1.0.5", ident=nxt["ident"])["code"] == 133
        assert w.register("g2", "10.1.0.6")["code"] == 0
        assert w.register("g2", "10.1.0.6", ident=two["ident"])["code"] == 133
        assert ("10.1.0.5", nxt["ident"]) in w.table(w.b, "g1")
    except BaseException:
        print(w.dump())
        raise
