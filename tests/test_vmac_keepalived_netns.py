"""keepalived ``use_vmac`` drives the roles; our data plane works with keepalived's macvlan.

Two members, each running keepalived (VRRPv3, 0.1 s adverts, ``use_vmac``: keepalived creates
``vrrp.51`` with 00:00:5e:00:01:33, keeps it up on a backup too, puts the virtual address on it
on the master and sends its adverts from it) and a ``mobileip homeagent`` with ``[vrrp] driver =
"keepalived"`` and ``[dataplane] virtual_mac`` (userspace backend). Our daemon never creates,
deletes, nor sets the link of keepalived's macvlan: it adopts it and adds the proxy-ARP sysctls.
Checked:

* both members hold every route in table 100; only the master has the ``ip rule``; ARP for the
  virtual address and for an away home address is answered once, from the virtual MAC, although
  both members' macvlans are up; the standby tunnels nothing;
* takeover (the master's box dies: link cut, daemon SIGKILLed): keepalived on the other member
  takes over, our daemon follows its notify FIFO; the correspondent's packets to 10 sampled home
  addresses reach the care-of side again, none twice; ARP still answered from the virtual MAC;
* a clean stop of our daemon leaves keepalived's macvlan as keepalived has it (up, with the
  address) and nothing of ours: no rule, no route in table 100, no TUN, sysctls restored;
  keepalived's own stop then removes its macvlan.

Run with ``-s`` to see the numbers.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import signal
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import wait_until
from netns import Member, Process, Segment
from netns import start_keepalived as run_keepalived
from pcapio import tshark_fields
from test_dataplane_standby_netns import (
    FETCH,
    dataplane,
    ha_config,
    link_flags,
    outages,
    register,
)
from test_vmac_wire_netns import addresses, arp_repliers, has_link

from mobileip.config import to_toml
from mobileip.tools.takeover import RECEIVER, SENDER, tunnelled_twice

pytestmark = [
    pytest.mark.root,
    pytest.mark.timeout(240),
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
    pytest.mark.skipif(shutil.which("keepalived") is None, reason="keepalived is not installed"),
]

PY = sys.executable
VIP = "10.77.0.100"
VMAC = "00:00:5e:00:01:33"  # VRID 51
VMAC_IF = "vrrp.51"
N = 50
SAMPLES = 10
SEND_EVERY = 0.01
# keepalived's advert interval. 0.2 s, not the 0.1 s of the native tests: on this shared 2-core
# box (PSI cpu "some" ~98 % while other suites run) a keepalived backup at 0.1 s sometimes misses
# the master for its 0.36 s Master_Down_Interval and goes MASTER for a moment, with or without
# our daemon next to it (seen with keepalived alone, 1 run in 3): not what this test is about.
INTERVAL = 0.2
ACTIVE = r"event=role\.changed role=active"


def daemon_config(m: Member, peer: Member, tmp_path: Path) -> dict[str, Any]:
    cfg = ha_config(m, [peer], 100)
    cfg["vrrp"] = {
        "driver": "keepalived",
        "notify_fifo": str(tmp_path / f"{m.name}.fifo"),
        "instance": "VI_1",
        "track_file": str(tmp_path / f"{m.name}.weight"),
        "virtual_address": f"{VIP}/16",
    }
    cfg["dataplane"]["vmac_interface"] = VMAC_IF  # keepalived's name for it
    return cfg


def start_keepalived(seg: Segment, m: Member, priority: int, tmp_path: Path) -> Process:
    return run_keepalived(
        seg,
        m,
        tmp_path,
        priority=priority,
        vrid=51,
        interval=INTERVAL,
        address=f"{VIP}/16",
        use_vmac=True,
    )


def saw(proc: Process, pattern: str) -> bool:
    rx = re.compile(pattern)
    return any(rx.search(line.text) for line in list(proc.lines))


def proc_sysctl(seg: Segment, m: Member, dev: str, key: str) -> str:
    """``net.ipv4.conf.<dev>.<key>`` read from /proc (``sysctl`` splits ``vrrp.51`` at the dot)."""
    return seg.run(m, ["cat", f"/proc/sys/net/ipv4/conf/{dev}/{key}"]).stdout.strip()


def vrrp_status(seg: Segment, m: Member) -> dict[str, Any]:
    res = seg.run(m, [PY, "-c", FETCH, "/api/v1/vrrp"])
    assert res.returncode == 0, res.stderr
    data: dict[str, Any] = json.loads(res.stdout)
    return data


def encapsulated(d: dict[str, Any]) -> int:
    counters = d["backend"].get("counters", {})
    return sum(v for k, v in counters.items() if k.startswith("encap-"))


def test_keepalived_use_vmac_takeover(seg: Segment, tmp_path: Path) -> None:
    a = seg.add_member("a", "10.77.0.1/16")
    b = seg.add_member("b", "10.77.0.2/16")
    cn = seg.add_member("cn", "10.77.0.10/16")
    far = seg.add_member("far", "10.77.0.20/16")
    procs: dict[str, Process] = {}
    pcap = tmp_path / "home.pcap"
    cap = seg.spawn(seg.hub, ["tshark", "-i", seg.bridge, "-f", "ip proto 112", "-w", str(pcap)])
    cap.wait_for(r"Capturing on", 15)
    for m, peer in ((a, b), (b, a)):
        conf = tmp_path / f"{m.name}.toml"
        conf.write_text(to_toml(daemon_config(m, peer, tmp_path)))
        argv = [PY, "-m", "mobileip", "homeagent", "--config", str(conf)]
        procs[m.name] = seg.spawn(m, argv, f"ha-{m.name}")
    try:
        for m in (a, b):  # SYNCED: the track file no longer demotes keepalived
            procs[m.name].wait_for(r"event=keepalived\.track_file .*weight=0", 30)
        procs["ka-a"] = start_keepalived(seg, a, 150, tmp_path)
        procs["a"].wait_for(ACTIVE, 15)
        procs["ka-b"] = start_keepalived(seg, b, 100, tmp_path)
        adopted = r"event=dataplane\.vmac .*created=False"  # keepalived made it, we adopted it
        wait_until(lambda: saw(procs["a"], adopted) and saw(procs["b"], adopted), 15, "adopt")
        wait_until(lambda: saw(procs["b"], r"event=keepalived\.notify .*state=BACKUP"), 10, "b")
        wait_until(lambda: dataplane(seg, a)["rule_installed"], 5, "a's rule")
        wait_until(
            lambda: VIP in addresses(seg, a, VMAC_IF) and VIP not in addresses(seg, b, VMAC_IF),
            10,
            "the address on a's macvlan only",
        )

        load = register(seg, cn, far, N)
        wait_until(lambda: all(dataplane(seg, m)["installed"] == N for m in (a, b)), 20, "routes")
        print(f"\n{N} registrations through keepalived's virtual address: {load.get('accepted')}")

        # the standby holds the state, attracts nothing, although keepalived keeps its
        # macvlan up (the master's own adverts, sourced from the virtual MAC, arrive there)
        db = dataplane(seg, b)
        assert not db["active"] and not db["rule_installed"]
        assert "lookup 100" not in seg.run(b, ["ip", "rule"]).stdout
        b_flags = link_flags(seg, b, VMAC_IF)
        homes = [f"10.77.128.{2 + i * (N // SAMPLES)}" for i in range(SAMPLES)]
        assert arp_repliers(seg, cn, VIP) == [VMAC]
        assert arp_repliers(seg, cn, homes[1]) == [VMAC]  # once: only the master proxies

        stop = tmp_path / "stop-traffic"  # the sender and the receiver end when it appears
        rx = seg.spawn(far, [PY, "-c", RECEIVER, str(stop)], "receiver")
        rx.wait_for("receiving", 10)
        tx = seg.spawn(
            cn, [PY, "-c", SENDER, ",".join(homes), str(SEND_EVERY), str(stop)], "sender"
        )
        sending = tx.wait_for("sending", 10).at
        time.sleep(1.0)
        # the standby forwards nothing while it stands by: its tunnel counters stay still over
        # a window of the stream in which keepalived kept it BACKUP (a loaded box can make
        # keepalived flap for a moment: such a window is not counted, and reported)
        flaps = 0
        for _ in range(3):
            vb, eb = vrrp_status(seg, b), encapsulated(dataplane(seg, b))
            time.sleep(0.5)
            vb2, eb2 = vrrp_status(seg, b), encapsulated(dataplane(seg, b))
            if vb2["transitions"] == vb["transitions"] and vb2["role"] == "standby":
                assert eb2 == eb, f"the standby tunnelled {eb2 - eb} packets"
                break
            flaps += 1
        else:
            pytest.fail(f"keepalived b never stayed BACKUP for 0.5 s: {vb2['recent_transitions']}")
        before_a = encapsulated(dataplane(seg, a))
        assert before_a > 0
        # the kill 1.5-4.5 s into the stream (outages() looks from 1 s before to 3 s after)
        time.sleep(max(0.0, sending + 1.5 - time.monotonic()))
        assert time.monotonic() - sending < 4.5, "the box is too slow for this test's timing"
        killed = time.monotonic()
        seg.set_link(a, False)  # the box dies: keepalived and our daemon with it
        procs["a"].signal(signal.SIGKILL)
        procs["ka-a"].signal(signal.SIGKILL)
        became = procs["b"].wait_for(ACTIVE, 5, since=killed)
        time.sleep(max(0.0, killed + 3.5 - time.monotonic()))  # 3.5 s of traffic past the kill
        stop.touch()
        got = json.loads(rx.wait_for(r"^RESULT ", 20).text[len("RESULT ") :])
        try:
            per_home = outages(got, homes, killed)
        except AssertionError:
            for h in homes:
                ts = [t - killed for t, dst, _ in got if dst == h and t > killed - 0.2]
                gaps = sorted(((y - x, x) for x, y in itertools.pairwise(ts)), reverse=True)[:3]
                print(h, len(ts), f"{ts[0]:.3f}..{ts[-1]:.3f}" if ts else "-", gaps)
            raise
        worst, median = max(per_home.values()), statistics.median(per_home.values())
        twice = tunnelled_twice(got)
        db = dataplane(seg, b)
        print(
            f"keepalived use_vmac takeover at {N} bindings: b active (FIFO line read) "
            f"{(became.at - killed) * 1000:.0f} ms after the kill; sampled outage median "
            f"{median * 1000:.0f} ms, worst {worst * 1000:.0f} ms over {SAMPLES} homes; its "
            f"switch {db['last_takeover_ms']} ms; tunnelled twice: {twice}; a tunnelled "
            f"{before_a} before the kill, b {encapsulated(db)} after"
        )
        print(f"b's {VMAC_IF} as keepalived kept it while backup: {','.join(b_flags)}")
        print(f"keepalived b's transitions before the kill: {vb2['transitions']}, flaps {flaps}")
        assert twice == 0
        assert db["rule_installed"] and db["installed"] == N
        assert encapsulated(db) > 0
        assert worst <= 3 * INTERVAL + 1.0, per_home  # detection (~0.7 s) + FIFO + switch
        assert VIP in addresses(seg, b, VMAC_IF)
        assert arp_repliers(seg, cn, VIP) == [VMAC]
        assert arp_repliers(seg, cn, homes[1]) == [VMAC]
        flags_before_stop = link_flags(seg, b, VMAC_IF)
    except BaseException:
        for p in procs.values():
            print(p.output())
        cap.stop()
        print_advert_gaps(pcap)
        raise

    # a clean stop of our daemon: keepalived's macvlan stays as keepalived has it
    assert procs["b"].stop(15) == 0, procs["b"].output()
    assert has_link(seg, b, VMAC_IF)
    assert link_flags(seg, b, VMAC_IF) == flags_before_stop
    assert VIP in addresses(seg, b, VMAC_IF)
    assert "lookup 100" not in seg.run(b, ["ip", "rule"]).stdout
    assert not seg.run(b, ["ip", "route", "show", "table", "100"]).stdout.strip()
    assert not has_link(seg, b, "mip0")
    for dev, key in (
        (VMAC_IF, "proxy_arp"),
        (VMAC_IF, "medium_id"),
        (VMAC_IF, "forwarding"),
        (b.ifname, "medium_id"),
        (b.ifname, "arp_announce"),
        (b.ifname, "proxy_arp"),
    ):
        assert proc_sysctl(seg, b, dev, key) == "0", (dev, key)
    # keepalived's own setting (arp_ignore=1 on the base) is keepalived's to undo
    assert proc_sysctl(seg, b, b.ifname, "arp_ignore") == "1"
    assert procs["ka-b"].stop(15) == 0
    wait_until(lambda: not has_link(seg, b, VMAC_IF), 5, "keepalived to remove its macvlan")
    cap.stop()
    # keepalived's adverts leave from its macvlan: source MAC = the virtual MAC
    rows = tshark_fields(pcap, ["eth.src", "ip.src", "vrrp.prio"])
    adverts = [r for r in rows if r[2] and r[2] != "0"]
    print_advert_gaps(pcap)
    assert len(adverts) > 10 and {r[0] for r in adverts} == {VMAC}, adverts[:10]


def print_advert_gaps(pcap: Path) -> None:
    """The longest silence of each sender's adverts (diagnoses keepalived flaps)."""
    rows = tshark_fields(pcap, ["frame.time_relative", "ip.src", "eth.src", "vrrp.prio"])
    by_src: dict[str, list[float]] = {}
    for t, src, _, prio in rows:
        if prio and prio != "0":
            by_src.setdefault(src, []).append(float(t))
    for src, times in sorted(by_src.items()):
        gaps = [y - x for x, y in itertools.pairwise(times)]
        print(f"adverts from {src}: {len(times)}, longest gap {max(gaps, default=0) * 1000:.0f} ms")
