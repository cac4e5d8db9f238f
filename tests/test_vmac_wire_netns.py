"""The VRRP virtual MAC on the wire with the native driver (issue 13 item 2), checked by tshark.

Two ``mobileip homeagent`` daemons (native VRRP at 0.1 s, ``[dataplane] virtual_mac``, userspace
backend) on one home link, a correspondent (cn) and a far host standing for every care-of
address. The native speaker owns the macvlan ``vrrp.51`` (RFC 5798 7.3, keepalived's
``use_vmac``): on the master it is up and carries the virtual address, on the backup it is down
and carries nothing. Checked:

* the virtual address lives on the master's macvlan, never on a base interface; the backup's
  macvlan is down; ARP for the virtual address and for an away home address is answered once,
  from 00:00:5e:00:01:33, before and after a takeover;
* a SIGKILLed master restarted with the highest priority preempts the member that took over:
  the latter hears the adverts (source MAC = its own macvlan's MAC, which the macvlan driver
  hands to the macvlan, not to the base) and steps down; one member holds the address;
* on the wire (tshark, the whole capture): VRRP adverts leave with eth.src = the virtual MAC
  (the first ones of a mastership may still leave from the base while the macvlan comes up:
  counted and bounded), every ARP reply and gratuitous ARP for the virtual address carries the
  virtual MAC, none carries a member's own MAC;
* a clean stop leaves nothing (no macvlan, no rule, no route in table 100, sysctls restored).

Run with ``-s`` to see the numbers.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import pytest
from helpers import wait_until
from netns import Member, Process, Segment
from pcapio import tshark_fields
from test_dataplane_standby_netns import arp_repliers as arp_once
from test_dataplane_standby_netns import dataplane, ha_config, link_flags, register, sysctl

from mobileip.config import to_toml

pytestmark = [
    pytest.mark.root,
    pytest.mark.timeout(240),
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
    pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed"),
]

PY = sys.executable
VIP = "10.77.0.100"
VMAC = "00:00:5e:00:01:33"  # VRID 51
VMAC_IF = "vrrp.51"
N = 50
ACTIVE = r"event=role\.changed role=active"
STANDBY = r"event=role\.changed role=standby"


def addresses(seg: Segment, m: Member, dev: str) -> list[str]:
    out = seg.run(m, ["ip", "-o", "-4", "addr", "show", "dev", dev]).stdout
    return [w.split("/")[0] for w in out.split() if "/" in w and w[0].isdigit()]


def arp_repliers(seg: Segment, who: Member, target: str) -> list[str]:
    """Who answers ARP for ``target`` (one MAC per reply). A probe nobody answered within its
    0.7 s is tried again, twice at most: on a loaded box the macvlan driver's broadcast work
    queue can hold the request that long; what is checked is who answers, and how often."""
    for _ in range(3):
        replies = arp_once(seg, who, target)
        if replies:
            return replies
    return []


def own_mac(seg: Segment, m: Member) -> str:
    return seg.run(m, ["cat", f"/sys/class/net/{m.ifname}/address"]).stdout.strip()


def has_link(seg: Segment, m: Member, dev: str) -> bool:
    return seg.run(m, ["ip", "link", "show", dev]).returncode == 0


def start(seg: Segment, m: Member, peer: Member, prio: int, tmp_path: Path) -> Process:
    conf = tmp_path / f"{m.name}.toml"
    cfg = ha_config(m, [peer], prio)
    cfg["dataplane"]["garp_rounds"] = 0  # the virtual MAC makes the re-announcement useless
    conf.write_text(to_toml(cfg))
    argv = [PY, "-m", "mobileip", "homeagent", "--config", str(conf)]
    return seg.spawn(m, argv, f"ha-{m.name}")


def nothing_left(seg: Segment, m: Member, sysctls_too: bool) -> None:
    assert not has_link(seg, m, VMAC_IF), f"{m.name}: {VMAC_IF} left behind"
    assert "lookup 100" not in seg.run(m, ["ip", "rule"]).stdout
    assert not seg.run(m, ["ip", "route", "show", "table", "100"]).stdout.strip()
    assert VIP not in addresses(seg, m, m.ifname)
    if sysctls_too:
        for key in ("arp_ignore", "arp_announce", "medium_id", "proxy_arp"):
            assert sysctl(seg, m, f"net.ipv4.conf.{m.ifname}.{key}") == "0", (m.name, key)


def test_virtual_mac_on_the_wire_native_driver(seg: Segment, tmp_path: Path) -> None:
    a = seg.add_member("a", "10.77.0.1/16")
    b = seg.add_member("b", "10.77.0.2/16")
    cn = seg.add_member("cn", "10.77.0.10/16")
    far = seg.add_member("far", "10.77.0.20/16")
    mac_a, mac_b = own_mac(seg, a), own_mac(seg, b)
    pcap = tmp_path / "home.pcap"
    cap = seg.spawn(
        seg.hub, ["tshark", "-i", seg.bridge, "-f", "arp or ip proto 112", "-w", str(pcap)]
    )
    cap.wait_for(r"Capturing on", 15)
    procs = {"a": start(seg, a, b, 200, tmp_path), "b": start(seg, b, a, 100, tmp_path)}
    try:
        procs["a"].wait_for(ACTIVE, 30)
        procs["b"].wait_for(r"event=dataplane\.started", 30)
        wait_until(lambda: VIP in addresses(seg, a, VMAC_IF), 5, "the VIP on a's macvlan")
        assert VIP not in addresses(seg, a, a.ifname)  # never on the base interface
        assert "UP" in link_flags(seg, a, VMAC_IF)
        assert "UP" not in link_flags(seg, b, VMAC_IF)  # the backup's macvlan is down
        assert not addresses(seg, b, VMAC_IF) and VIP not in addresses(seg, b, b.ifname)
        assert arp_repliers(seg, cn, VIP) == [VMAC]  # once, from the virtual MAC

        load = register(seg, cn, far, N)
        wait_until(lambda: all(dataplane(seg, m)["installed"] == N for m in (a, b)), 20, "routes")
        home = "10.77.128.7"
        assert arp_repliers(seg, cn, home) == [VMAC]
        print(f"\n{N} registrations through the virtual address: {load.get('accepted')} accepted")

        # the master's box dies: b takes the virtual MAC over
        killed = time.monotonic()
        procs["a"].signal(signal.SIGKILL)
        seg.set_link(a, False)
        became = procs["b"].wait_for(ACTIVE, 5, since=killed)
        wait_until(lambda: VIP in addresses(seg, b, VMAC_IF), 3, "the VIP on b's macvlan")
        on_b = time.monotonic()
        assert "UP" in link_flags(seg, b, VMAC_IF)
        assert arp_repliers(seg, cn, VIP) == [VMAC]
        assert arp_repliers(seg, cn, home) == [VMAC]
        print(
            f"takeover: b active {(became.at - killed) * 1000:.0f} ms after the kill, the VIP "
            f"on its macvlan within {(on_b - killed) * 1000:.0f} ms (polled)"
        )

        # a comes back (priority 200, preempt): its adverts, sourced from the virtual MAC,
        # reach b's macvlan (up): b must hear them there and step down
        procs["a"] = start(seg, a, b, 200, tmp_path)
        procs["a"].wait_for(r"event=vrrp\.addresses .*present=False", 20)
        assert "UP" not in link_flags(seg, a, VMAC_IF)  # a's leftover macvlan is down again
        assert not addresses(seg, a, VMAC_IF)
        seg.set_link(a, True)
        healed = time.monotonic()
        down = procs["b"].wait_for(STANDBY, 20, since=healed)
        procs["a"].wait_for(ACTIVE, 20)
        wait_until(lambda: VIP in addresses(seg, a, VMAC_IF), 3, "the VIP back on a")
        wait_until(lambda: "UP" not in link_flags(seg, b, VMAC_IF), 3, "b's macvlan down")
        assert not addresses(seg, b, VMAC_IF)
        assert arp_repliers(seg, cn, VIP) == [VMAC]
        vrrp_b = json.loads(
            seg.run(b, [PY, "-c", FETCH_VRRP]).stdout or "{}"
        )  # b's speaker counters: adverts read on the macvlan while it was master
        print(
            f"preemption: b standby {(down.at - healed) * 1000:.0f} ms after the link came back; "
            f"b's counters {vrrp_b.get('counters')}"
        )
        wait_until(lambda: dataplane(seg, a)["installed"] == N, 10, "a's routes")
    except BaseException:
        for p in procs.values():
            print(p.output())
        raise
    for p in procs.values():
        assert p.stop(15) == 0, p.output()
    time.sleep(0.5)
    cap.stop()
    nothing_left(seg, b, sysctls_too=True)
    # a was SIGKILLed once: its second run found base sysctls already changed and restored those
    nothing_left(seg, a, sysctls_too=False)

    rows = tshark_fields(
        pcap,
        ["eth.src", "vrrp.prio", "ip.src", "arp.opcode", "arp.src.hw_mac", "arp.src.proto_ipv4",
         "arp.dst.proto_ipv4"],
    )  # fmt: skip
    adverts = [r for r in rows if r[1]]
    from_vmac = [r for r in adverts if r[0] == VMAC]
    from_base = [r for r in adverts if r[0] != VMAC and r[1] != "0"]
    print(
        f"on the wire: {len(adverts)} VRRP adverts, {len(from_vmac)} from {VMAC}, "
        f"{len(from_base)} (priority > 0) from a member's own MAC"
    )
    assert len(from_vmac) > 20, adverts[:10]
    assert {r[2] for r in from_vmac} == {a.ip, b.ip}  # both masters used the virtual MAC
    # only while a macvlan comes up (three masterships, a few adverts each at most)
    assert len(from_base) <= 12, from_base
    vip_arp = [r for r in rows if r[3] and r[5] == VIP]
    replies = [r for r in vip_arp if r[3] == "2"]
    garps = [r for r in vip_arp if r[3] == "1" and r[6] == VIP]
    assert replies and garps
    assert {(r[0], r[4]) for r in replies + garps} == {(VMAC, VMAC)}, vip_arp[:10]
    assert not [r for r in rows if r[3] and r[5] == VIP and r[4] in (mac_a, mac_b)]


FETCH_VRRP = """
import json
from mobileip.agents.client import fetch_json
print(json.dumps(fetch_json(("127.0.0.1", 8434), "/api/v1/vrrp")))
"""
