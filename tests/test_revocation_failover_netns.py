"""RFC 3543 revocation survives SIGKILL of the active Home Agent in the middle of a
retransmission (issue 16 item 3), with the real daemons in network namespaces on one segment.

Two Home Agents (native VRRP, virtual address, sync on 434, ``[revocation]`` with the foreign
agent), ``mobileip foreignagent`` and ``mobileip mobilenode``. The mobile node registers through
the foreign agent and the virtual address: the active negotiates revocation and replicates it.
``mobileip clear binding`` on the active: its launcher loses every revocation it sends, so it
retransmits; once the standby holds the pending revocation with two attempts, the active is
SIGKILLed. The new active resumes it: the foreign agent gets it (tshark reads it from the
capture), acks it to the new active, removes the visitor and tells the mobile node, which
registers again. Exactly one revocation identifier reaches the foreign agent for the binding.
Run with ``-s`` to see the times."""

from __future__ import annotations

import json
import re
import shutil
import signal
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from helpers import wait_until
from netns import Member, Segment, sync_section
from pcapio import read_capture_until
from test_revocation_netns import FA_HA_KEY, FA_HA_SPI, HOME, KEY, SPI, start_foreign_link

from mobileip.config import to_toml

pytestmark = [pytest.mark.root, pytest.mark.timeout(120)]

VIP = "10.78.0.100"
FA_IP = "10.78.0.20"
CONTROL = "127.0.0.1:8434"

LAUNCHER = """
import asyncio, sys
from mobileip.compose.homeagent import build_daemon
from mobileip.config import load_config
from mobileip.daemon.revocation import RevocationService
from mobileip.log import Logger

config = load_config(sys.argv[1])
daemon = build_daemon(config, Logger("text", "info"))
[service] = [h.__self__ for h in daemon.cleared_hooks if isinstance(h.__self__, RevocationService)]
if sys.argv[2] == "lose-revocations":
    def lose(send):
        print("test.lost_revocation", flush=True)
        return True
    service.drop = lose
asyncio.run(daemon.serve())
"""

STATUS = (
    "import urllib.request; "
    f"print(urllib.request.urlopen('http://{CONTROL}/api/v1/revocation').read().decode())"
)


def ha_config(m: Member, members: list[Member], priority: int) -> dict[str, Any]:
    return {
        "homeagent": {"address": m.ip, "listen": "0.0.0.0", "port": 434, "max_lifetime": 600},
        "security_association": [
            {"spi": SPI, "algorithm": "hmac-md5", "key": KEY, "home_addresses": ["10.1.0.0/24"]}
        ],
        "control": {"listen": CONTROL},
        "redundancy": sync_section(m, members),
        "vrrp": {
            "driver": "native",
            "interface": m.ifname,
            "vrid": 52,
            "priority": priority,
            "advert_interval": 0.1,
            "virtual_address": f"{VIP}/24",
        },
    }


REVOCATION = f"""
[revocation]
initial_timeout = 0.5
max_timeout = 4.0
max_attempts = 6

[[revocation.peer]]
address = "{FA_IP}"
spi = {FA_HA_SPI}
algorithm = "hmac-md5"
key = "{FA_HA_KEY}"
"""


def log_time(text: str) -> float:
    """The ``ts=`` of a daemon's log line, in seconds."""
    stamp = re.search(r"ts=(\S+)Z", text)
    assert stamp is not None, text
    return datetime.fromisoformat(stamp.group(1)).timestamp()


def revocation_status(seg: Segment, m: Member) -> dict[str, Any]:
    res = seg.run(m, [sys.executable, "-c", STATUS])
    assert res.returncode == 0, res.stderr
    data: dict[str, Any] = json.loads(res.stdout)
    return data


@pytest.mark.skipif(shutil.which("dumpcap") is None, reason="needs dumpcap (tshark)")
def test_sigkill_of_the_active_mid_retransmission_neither_loses_nor_duplicates(
    seg: Segment, tmp_path: Path
) -> None:
    a = seg.add_member("a", "10.78.0.1/24")
    b = seg.add_member("b", "10.78.0.2/24")
    fa = seg.add_member("fa", f"{FA_IP}/24")
    mn = seg.add_member("mn", f"{HOME}/32")  # away from home with its home address
    py = sys.executable
    launcher = tmp_path / "ha_launcher.py"
    launcher.write_text(LAUNCHER)
    procs = {}
    for m, prio, mode in ((a, 200, "lose-revocations"), (b, 100, "keep")):
        path = tmp_path / f"{m.name}.toml"
        path.write_text(to_toml(ha_config(m, [a, b], prio)) + REVOCATION)
        procs[m.name] = seg.spawn(m, [py, str(launcher), str(path), mode], f"ha-{m.name}")
    pa, pb = procs["a"], procs["b"]
    pa.wait_for(r"event=role\.changed role=active", 30)
    pb.wait_for(r"event=sync\.state state=SYNCED", 30)
    wait_until(lambda: f"{VIP}/24" in seg.addresses(a), 10, "a to own the virtual address")

    pcap, cap, pfa, pmn = start_foreign_link(seg, fa, mn, FA_IP, VIP, tmp_path)
    wait_until(
        lambda: revocation_status(seg, b)["negotiated"] == 1, 10, "b to hold the negotiation"
    )

    res = seg.run(a, [py, "-m", "mobileip", "clear", "binding", HOME, "--control", CONTROL])
    assert res.returncode == 0, res.stdout + res.stderr
    held_line = pa.wait_for(r"event=revocation\.held", 10)
    sent_line = pa.wait_for(r"event=revocation\.sent", 10)  # released once b had the entry
    hold_ms = (log_time(sent_line.text) - log_time(held_line.text)) * 1000
    assert "by=replicated" in sent_line.text, "released by b's ack, not by the hold timeout"
    pa.wait_for(r"revocation\.retransmitted", 10)  # the first copy was lost

    def replica() -> dict[str, Any] | None:
        pending = revocation_status(seg, b)["pending"]
        return pending[0] if pending and pending[0]["attempts"] >= 2 else None

    wait_until(lambda: replica() is not None, 10, "b to hold the pending revocation, 2 attempts")
    held = replica()
    assert held is not None and held["dormant"] and held["home_address"] == HOME
    killed = time.monotonic()
    pa.signal(signal.SIGKILL)
    pa.popen.wait(5)

    resumed = pb.wait_for(r"event=revocation\.role role=active", 10, since=killed)
    assert "resumed=1" in resumed.text, resumed.text
    acked = pb.wait_for(r"event=revocation\.acked", 10, since=killed)
    assert f"id={held['revocation_id']}" in acked.text, acked.text
    removed = pfa.wait_for(rf"visitor\.removed.*{HOME}", 10)
    assert "revoked" in removed.text
    told = pmn.wait_for(r"mn\.revoked", 10)
    again = pmn.wait_for(r"mn\.registered", 20)
    print(
        f"\nSIGKILL of the active with a revocation pending (attempts {held['attempts']}): "
        f"b active and resumed it after {(resumed.at - killed) * 1000:.0f} ms, "
        f"acked by the foreign agent after {(acked.at - killed) * 1000:.0f} ms; "
        f"mobile node told after {(told.at - killed) * 1000:.0f} ms and registered again "
        f"after {(again.at - killed) * 1000:.0f} ms; first send held {hold_ms:.1f} ms "
        "for the standby's ack"
    )

    fields = ["ip.src", "ip.dst", "mip.type", "mip.code", "mip.rev.a", "mip.rev.i",
              "mip.revid", "mip.ack.i", "_ws.malformed"]  # fmt: skip

    def told_then_registered(rows: list[dict[str, str]]) -> bool:
        types = [(r["mip.type"], r["mip.code"]) for r in rows]
        to_mn = [r["mip.code"] for r in rows if r["ip.dst"] == HOME and r["mip.type"] == "3"]
        return ("15", "") in types and to_mn[-2:] == ["65", "0"]  # told, then registered again

    rows = read_capture_until(pcap, fields, told_then_registered)
    cap.stop()
    ours = [r for r in rows if FA_IP in (r["ip.src"], r["ip.dst"])]
    assert all(not r.get("_ws.malformed") for r in ours)
    revocations = [r for r in ours if r["mip.type"] == "7"]
    assert revocations, "the foreign agent saw the revocation"
    assert {r["ip.src"] for r in revocations} == {b.ip}, "only the new active's copies arrived"
    assert {r["mip.revid"] for r in revocations} == {str(held["revocation_id"])}, (
        "exactly one revocation identifier for the binding"
    )
    assert all((r["mip.rev.a"], r["mip.rev.i"]) == ("1", "1") for r in revocations)
    acks = [r for r in ours if r["mip.type"] == "15"]
    assert acks and all((r["ip.src"], r["ip.dst"]) == (FA_IP, b.ip) for r in acks)
    assert {r["mip.revid"] for r in acks} == {str(held["revocation_id"])}
    assert any(r["mip.type"] == "3" and r["mip.code"] == "65" for r in ours)
    # the mobile node's first request after the notice is answered: no retransmission (it used
    # to wait ~0.5 s: its notice handler blocked on the socket timeout, the FA relayed to the
    # dead member's MAC before the new active's gratuitous ARP, or the FA's route to the MN
    # was still being removed when the reply came)
    told_at = next(i for i, r in enumerate(rows) if (r["mip.type"], r["mip.code"]) == ("3", "65"))
    after = rows[told_at + 1 :]
    requests = [r for r in after if r["ip.src"] == HOME and r["mip.type"] == "1"]
    replies = [r for r in after if r["ip.dst"] == HOME and r["mip.type"] == "3"]
    assert len(requests) == 1 and [r["mip.code"] for r in replies] == ["0"], after
    status = revocation_status(seg, b)
    assert not status["pending"] and status["counters"]["revocations-resumed"] == 1
    print(f"foreign link: {len(revocations)} revocation(s), {len(acks)} ack(s), one id")

    # the killed member boots again: it asks b for the revocation state (the MN's new,
    # negotiated binding) and sends nothing (the revocation was settled before it came back)
    pa2 = seg.spawn(a, [py, str(launcher), str(tmp_path / "a.toml"), "keep"], "ha-a2")
    pa2.wait_for(r"event=sync\.state state=SYNCED", 30)
    wait_until(lambda: revocation_status(seg, a)["negotiated"] == 1, 10, "a to get the state")
    back = revocation_status(seg, a)
    assert back["replication"]["counters"]["entries-applied"] >= 1 and not back["pending"]
    time.sleep(1.0)
    assert not [ln for ln in pa2.lines if "event=revocation.sent" in ln.text]
    assert not [ln for ln in pa2.lines if "event=revocation.retransmitted" in ln.text]
    print(f"\n{pb.output()}\n{pfa.output()}\n{pmn.output()}")
