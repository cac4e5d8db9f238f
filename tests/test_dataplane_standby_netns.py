"""Hot-standby data plane (issue 13): takeover at 10,000 bindings with the VRRP virtual MAC.

Two ``mobileip homeagent`` daemons (native VRRP, 0.1 s adverts, binding sync, userspace data
plane with ``virtual_mac``) on one home link 10.77.0.0/16; a correspondent (cn), a far host
standing for every care-of address (far), and a plain host of the home link that is no mobile
node (other). 10,000 mobile nodes register through the virtual address (home addresses
10.77.128.2...). Checked:

* the standby holds the state: every away binding has its route in table 100, no ``ip rule``,
  its macvlan is down, and it answers no ARP; the active answers ARP for a home address once,
  from the virtual MAC 00:00:5e:00:01:33, and never for the plain host;
* takeover: the active's box dies (SIGKILL and its link cut); the correspondent's packets to 20
  sampled home addresses reach the care-of address again within the target (worst sampled
  outage <= 0.5 s with 0.1 s adverts), and no packet is tunnelled twice (two forwarders);
* on the wire (tshark): proxy ARP replies and gratuitous ARP from the virtual MAC;
* a clean stop leaves nothing: no rule, no route in table 100, no macvlan, sysctls restored.

Run with ``-s`` to see the numbers.
"""

from __future__ import annotations

import itertools
import json
import signal
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import KEY, SPI, wait_until
from netns import Member, Process, Segment, sync_section
from pcapio import tshark_fields

from mobileip.config import to_toml
from mobileip.tools.takeover import RECEIVER, SENDER, tunnelled_twice

pytestmark = [pytest.mark.root, pytest.mark.timeout(240)]

PY = sys.executable
VIP = "10.77.0.100"
VRID = 51
VMAC = "00:00:5e:00:01:33"
INTERVAL = 0.1
N = 10_000
HOME_PREFIX = "10.77.128.0/17"
SAMPLES = 20
SEND_EVERY = 0.01

FETCH = """
import sys, json
from mobileip.agents.client import fetch_json
print(json.dumps(fetch_json(("127.0.0.1", 8434), sys.argv[1])))
"""

# who answers an ARP request for sys.argv[2] on interface sys.argv[1]: one MAC per reply
ARP_PROBE = """
import json, socket, struct, sys, time
ifname, target, sender = sys.argv[1], sys.argv[2], sys.argv[3]
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
s.bind((ifname, 0x0806))
mac = open(f"/sys/class/net/{ifname}/address").read().strip()
me = bytes.fromhex(mac.replace(":", ""))
arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + me + socket.inet_aton(sender)
arp += b"\\0" * 6 + socket.inet_aton(target)
s.send(b"\\xff" * 6 + me + b"\\x08\\x06" + arp)
s.settimeout(0.1)
replies, end = [], time.monotonic() + 0.7
while time.monotonic() < end:
    try:
        f = s.recv(100)
    except TimeoutError:
        continue
    op, sha, spa = struct.unpack_from("!H6s4s", f, 20)
    if op == 2 and socket.inet_ntoa(spa) == target:
        replies.append(sha.hex(":"))
print(json.dumps(replies))
"""


def ha_config(m: Member, peers: list[Member], priority: int) -> dict[str, Any]:
    return {
        "homeagent": {
            "address": m.ip,
            "listen": "0.0.0.0",
            "port": 434,
            "replay": "timestamp",
            "max_lifetime": 3600,
        },
        "security_association": [
            {"spi": SPI, "algorithm": "hmac-md5", "key": KEY, "home_addresses": ["10.77.0.0/16"]}
        ],
        "control": {"listen": "127.0.0.1:8434"},
        "redundancy": sync_section(m, peers),
        "vrrp": {
            "driver": "native",
            "interface": m.ifname,
            "vrid": VRID,
            "priority": priority,
            "advert_interval": INTERVAL,
            "virtual_address": f"{VIP}/16",
        },
        "dataplane": {
            "backend": "userspace",
            "home_interface": m.ifname,
            "tun_name": "mip0",
            "virtual_mac": True,
            "garp_rounds": 0,
        },
    }


def dataplane(seg: Segment, m: Member) -> dict[str, Any]:
    res = seg.run(m, [PY, "-c", FETCH, "/api/v1/dataplane"])
    assert res.returncode == 0, res.stderr
    data: dict[str, Any] = json.loads(res.stdout)
    return data


def arp_repliers(seg: Segment, who: Member, target: str) -> list[str]:
    res = seg.run(who, [PY, "-c", ARP_PROBE, who.ifname, target, who.ip])
    assert res.returncode == 0, res.stderr
    replies: list[str] = json.loads(res.stdout)
    return replies


def link_flags(seg: Segment, m: Member, name: str) -> list[str]:
    out = seg.run(m, ["ip", "-o", "link", "show", name]).stdout
    assert "<" in out, f"{m.name}: no {name}"
    return out.split("<", 1)[1].split(">", 1)[0].split(",")


def sysctl(seg: Segment, m: Member, key: str) -> str:
    return seg.run(m, ["sysctl", "-n", key]).stdout.strip()


def register(
    seg: Segment, cn: Member, far: Member, n: int, window: int = 16, timeout: float = 60
) -> dict[str, object]:
    """``n`` registrations through the virtual address (loadgen from ``cn``), every one away at
    ``far``; loadgen's JSON summary."""
    res = seg.run(
        cn,
        [
            PY, "-m", "mobileip", "loadgen", "--ha", f"{VIP}:434",
            "--mobile-nodes", str(n), "--requests", str(n), "--max",
            "--spi", str(SPI), "--key", KEY, "--home-prefix", HOME_PREFIX,
            "--home-agent-address", VIP, "--care-of-address", far.ip,
            "--lifetime", "3600", "--window", str(window), "--timeout", "2", "--json",
        ],
        timeout=timeout,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    out: dict[str, object] = json.loads(res.stdout)
    return out


def outages(got: list[list[Any]], homes: list[str], killed: float) -> dict[str, float]:
    """Per sampled home: the longest silence between arrivals from 1 s before the kill to 3 s
    after (the stream runs on 3.5 s past the kill), less one send interval."""
    out: dict[str, float] = {}
    for h in homes:
        times = sorted(t for t, dst, _ in got if dst == h and killed - 1.0 <= t <= killed + 3.0)
        assert times and times[0] < killed and times[-1] > killed + 2.0, f"{h}: {times[:3]}"
        gaps = [b - a for a, b in itertools.pairwise(times)]
        out[h] = max(0.0, max(gaps) - SEND_EVERY)
    return out


def test_takeover_at_10000_bindings_with_virtual_mac(seg: Segment, tmp_path: Path) -> None:
    a = seg.add_member("a", "10.77.0.1/16")
    b = seg.add_member("b", "10.77.0.2/16")
    cn = seg.add_member("cn", "10.77.0.10/16")
    far = seg.add_member("far", "10.77.0.20/16")
    other = seg.add_member("other", "10.77.0.30/16")
    procs: dict[str, Process] = {}
    for m, peer, prio in ((a, b, 200), (b, a, 100)):
        conf = tmp_path / f"{m.name}.toml"
        conf.write_text(to_toml(ha_config(m, [peer], prio)))
        argv = [PY, "-m", "mobileip", "homeagent", "--config", str(conf)]
        procs[m.name] = seg.spawn(m, argv, f"ha-{m.name}")
    pcap = tmp_path / "home.pcap"
    cap = seg.spawn(seg.hub, ["tshark", "-i", seg.bridge, "-f", "arp", "-w", str(pcap)], "tshark")
    cap.wait_for(r"Capturing on", 15)
    try:
        procs["a"].wait_for(r"event=role\.changed role=active", 30)
        procs["b"].wait_for(r"event=dataplane\.started", 30)
        wait_until(lambda: dataplane(seg, a)["rule_installed"], 10, "a's rule")

        # 10,000 registrations through the virtual address, every one away at `far`
        started = time.monotonic()
        register(seg, cn, far, N, window=64, timeout=120)
        registered = time.monotonic() - started
        wait_until(
            lambda: all(
                d["installed"] == d["desired"] == N and d["pending"] == 0
                for d in (dataplane(seg, a), dataplane(seg, b))
            ),
            60,
            "both members to hold every route",
        )
        ready = time.monotonic() - started
        da, db = dataplane(seg, a), dataplane(seg, b)
        print(
            f"\n{N} registrations in {registered:.2f}s; both members installed {ready:.2f}s "
            f"after the first; standby b: {db['install_us_per_route']} us per route, longest "
            f"batch {db['longest_batch_ms']} ms; active a: {da['install_us_per_route']} us, "
            f"{da['longest_batch_ms']} ms"
        )

        # the standby holds the state but attracts nothing
        assert da["active"] and da["rule_installed"] and not db["active"]
        assert not db["rule_installed"] and "lookup 100" not in seg.run(b, ["ip", "rule"]).stdout
        routes = seg.run(b, ["ip", "-o", "route", "show", "table", "100"]).stdout.splitlines()
        assert len(routes) == N and all("dev mip0" in r for r in routes[:10])
        assert "UP" not in link_flags(seg, b, "vrrp.51")  # the standby's macvlan is down
        assert "UP" in link_flags(seg, a, "vrrp.51")
        homes = [f"10.77.{128 + (2 + i) // 256}.{(2 + i) % 256}" for i in range(0, N, N // SAMPLES)]
        assert arp_repliers(seg, cn, homes[3]) == [VMAC]  # once, from the virtual MAC
        assert arp_repliers(seg, cn, other.ip) == [own_mac(seg, other)]  # not proxied

        # traffic to the sampled home addresses, then the active's box dies
        stop = tmp_path / "stop-traffic"  # the sender and the receiver end when it appears
        rx = seg.spawn(far, [PY, "-c", RECEIVER, str(stop)], "receiver")
        rx.wait_for("receiving", 10)
        tx = seg.spawn(
            cn, [PY, "-c", SENDER, ",".join(homes), str(SEND_EVERY), str(stop)], "sender"
        )
        tx.wait_for("sending", 10)
        time.sleep(2.0)
        killed = time.monotonic()
        procs["a"].signal(signal.SIGKILL)
        seg.set_link(a, False)  # a dead box sends nothing (its kernel would still answer)
        became = procs["b"].wait_for(r"event=role\.changed role=active", 5, since=killed)
        time.sleep(max(0.0, killed + 3.5 - time.monotonic()))  # 3.5 s of traffic past the kill
        stop.touch()
        got = json.loads(rx.wait_for(r"^RESULT ", 20).text[len("RESULT ") :])
        per_home = outages(got, homes, killed)
        back = min((t for t, _, _ in got if t > killed + 0.05), default=None)
        last = max((t for t, _, _ in got if t <= killed + 0.05), default=None)
        switched = procs["b"].wait_for(r"event=dataplane\.takeover", 5, since=killed)
        print(
            f"last packet before the kill {((last or 0) - killed) * 1000:.0f} ms, b active "
            f"{(became.at - killed) * 1000:.0f} ms, switched {(switched.at - killed) * 1000:.0f}"
            f" ms, first packet after {((back or 0) - killed) * 1000:.0f} ms (test clock)"
        )
        worst, median = max(per_home.values()), statistics.median(per_home.values())
        twice = tunnelled_twice(got)
        db = dataplane(seg, b)
        print(
            f"takeover at {N} bindings: sampled outage median {median * 1000:.0f} ms, worst "
            f"{worst * 1000:.0f} ms over {SAMPLES} homes; b active (log line read) "
            f"{(became.at - killed) * 1000:.0f} ms after the kill, its switch took "
            f"{db['last_takeover_ms']} ms; packets tunnelled twice: {twice}"
        )
        assert twice == 0
        assert db["rule_installed"] and db["installed"] == N
        assert worst <= 0.5, per_home
    except BaseException:
        for p in procs.values():
            print("\n".join(ln.text for ln in p.lines if "registration.accepted" not in ln.text))
        raise
    # a clean stop of the survivor leaves nothing behind
    procs["b"].stop(10)
    time.sleep(1.0)
    cap.stop()
    assert "lookup 100" not in seg.run(b, ["ip", "rule"]).stdout
    assert not seg.run(b, ["ip", "route", "show", "table", "100"]).stdout.strip()
    assert "vrrp.51" not in seg.run(b, ["ip", "link"]).stdout
    for key in ("arp_ignore", "medium_id", "proxy_arp"):
        assert sysctl(seg, b, f"net.ipv4.conf.{b.ifname}.{key}") == "0", key

    # on the wire: proxy ARP replies and gratuitous ARP from the virtual MAC
    arps = tshark_fields(
        pcap, ["arp.opcode", "arp.src.hw_mac", "arp.src.proto_ipv4", "arp.dst.proto_ipv4"]
    )
    replies = [r for r in arps if r[0] == "2" and r[2] == homes[3]]
    assert replies and {r[1] for r in replies} == {VMAC}, arps[:20]
    garps = [r for r in arps if r[0] == "1" and r[2] == r[3] and r[1] == VMAC]
    assert {r[2] for r in garps} >= {VIP}, garps[:10]  # b's takeover announcement
    assert any(r[2] != VIP for r in garps)  # bindings created on a: one each, from the vmac
    assert not [r for r in arps if r[0] == "2" and r[2] == other.ip and r[1] == VMAC]


def own_mac(seg: Segment, m: Member) -> str:
    return seg.run(m, ["cat", f"/sys/class/net/{m.ifname}/address"]).stdout.strip()
