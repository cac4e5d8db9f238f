"""``[dataplane] fastpath = "auto"`` in a real kernel (User-Mode Linux, tests/test_uml_tier.py):
the guard (src/mobileip/dataplane/fastpath_guard.py) opens the fast path's gate while nothing
it would bypass is configured, closes it when something appears and reopens it when it goes.

One segment (tests/netns.py): the Home Agent daemon (kernel backend, ``fastpath = "auto"``, its
interfaces detected), a correspondent sending a numbered UDP stream (100 packets/s) to the home
address and the mobile node's co-located care-of address counting the IP-in-IP packets it
gets. Which path carried each phase is read on the Home Agent: the kernel's path sends through
``mip-ipip`` (its ``tx_packets`` moves) and is counted in the stack's ``ForwDatagrams``; the
programs encapsulate and redirect on the physical interface (both unmoved). An xfrm policy
closes the gate at once (its netlink event) and deleting it reopens; a strict ``rp_filter`` on
the interface closes it within the poll interval (1 s) and loose reopens; at most a few packets
are lost in all. The tier's kernels cannot hold an nftables rule in the ip/inet/netdev families
(not built in either) and the one with legacy iptables (Debian's 6.1) does not load the
programs, so nftables and legacy iptables are tested on this machine's kernel
(tests/test_fastpath_guard.py: the readers, and the guard's nftables event).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from netns import Member, Segment
from test_dataplane_netns import CN, FAR, HA, HOME, PY, kernel_homeagent, register, wait_dataplane

SEND = """
import socket, sys, time, os
stop, interval = sys.argv[1], float(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
seq = 0
next_at = time.monotonic()
while not os.path.exists(stop):
    s.sendto(seq.to_bytes(4, "big") + b"guard", (sys.argv[3], 9))
    seq += 1
    next_at += interval
    time.sleep(max(0.0, next_at - time.monotonic()))
print("sent", seq, flush=True)
"""

RECEIVE = """
import json, os, socket, struct, sys
stop = sys.argv[1]
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 4)  # IP-in-IP
s.settimeout(0.2)
print("listening", flush=True)
seqs = set()
while not os.path.exists(stop):
    try:
        data = s.recv(2048)
    except TimeoutError:
        continue
    outer = (data[0] & 15) * 4
    inner = (data[outer] & 15) * 4
    payload = data[outer + inner + 8:]
    if payload[4:9] == b"guard":
        seqs.add(int.from_bytes(payload[:4], "big"))
print(json.dumps({"count": len(seqs), "largest": max(seqs, default=-1)}), flush=True)
"""

INTERVAL = 0.01  # 100 packets/s: well inside what UML's one CPU sends and counts


def _counter(seg: Segment, ha: Member) -> tuple[int, int]:
    """(mip-ipip tx_packets, the stack's Ip ForwDatagrams) on the Home Agent."""
    tx = seg.run(ha, ["cat", "/sys/class/net/mip-ipip/statistics/tx_packets"]).stdout
    snmp = seg.run(ha, ["cat", "/proc/net/snmp"]).stdout.splitlines()
    names, values = (line.split()[1:] for line in snmp if line.startswith("Ip:"))
    return int(tx), int(dict(zip(names, values, strict=True))["ForwDatagrams"])


@pytest.mark.kernel
@pytest.mark.timeout(600)
def test_auto_fast_path_follows_xfrm_and_rp_filter(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    stop, stop_rx = tmp_path / "stop", tmp_path / "stop-rx"
    with Segment() as seg:
        ha = seg.add_member("ha", f"{HA}/24")
        cn = seg.add_member("cn", f"{CN}/24")
        far = seg.add_member("far", f"{FAR}/24")
        daemon = kernel_homeagent(seg, ha, tmp_path, fastpath="auto")
        register(seg, far, FAR)
        data = wait_dataplane(
            seg,
            ha,
            lambda d: (
                d["tunnels"] == 1
                and d["backend"]["fastpath"]["homes"] == 1
                and d["backend"]["fastpath"]["guard"]["state"] == "open"
            ),
            timeout=30,
        )
        fast = data["backend"]["fastpath"]
        # detected: the one Ethernet link (not lo, mip-ipip, mip-gre, the TUN, fallback devices)
        assert fast["mode"] == "auto" and fast["interfaces"] == [ha.ifname], fast
        assert fast["live"] and fast["guard"]["reason"] == "nothing bypassed", fast
        receiver = seg.spawn(far, [PY, "-c", RECEIVE, str(stop_rx)], "far")
        receiver.wait_for("listening", 30)
        sender = seg.spawn(cn, [PY, "-c", SEND, str(stop), str(INTERVAL), HOME], "cn")

        def phase() -> tuple[int, int]:
            time.sleep(0.3)  # packets already on their way when the gate moved
            before = _counter(seg, ha)
            time.sleep(1.5)
            after = _counter(seg, ha)
            return after[0] - before[0], after[1] - before[1]

        def change(argv: list[str], state: str) -> tuple[str, float]:
            """Run ``argv`` on the Home Agent; the gate's log line and how long after the
            command returned it came."""
            t0 = time.monotonic()
            done = seg.run(ha, argv)
            t1 = time.monotonic()
            assert done.returncode == 0, (argv, done.stdout, done.stderr)
            line = daemon.wait_for(rf"dataplane.fastpath_gate state={state}", 10, since=t0)
            return line.text, line.at - t1

        time.sleep(1.0)  # the stream running (ARP for the home address answered)
        phases = {"open": phase()}
        policy = ["ip", "xfrm", "policy"]
        sel = ["src", "198.51.100.1/32", "dst", "198.51.100.2/32", "dir", "fwd"]
        changes = {"xfrm added": change([*policy, "add", *sel], "closed")}
        phases["closed (xfrm)"] = phase()
        status = wait_dataplane(seg, ha, lambda d: True)["backend"]["fastpath"]
        changes["xfrm deleted"] = change([*policy, "delete", *sel], "open")
        phases["open again"] = phase()
        strict = f"net.ipv4.conf.{ha.ifname}.rp_filter"
        changes["strict rp_filter"] = change(["sysctl", "-qw", f"{strict}=1"], "closed")
        phases["closed (rp_filter)"] = phase()
        changes["rp_filter off"] = change(["sysctl", "-qw", f"{strict}=0"], "open")
        phases["open at last"] = phase()

        stop.write_text("")
        sent = int(sender.wait_for(r"^sent \d+", 15).text.split()[1])
        time.sleep(0.5)  # the last packets in
        stop_rx.write_text("")
        got = json.loads(receiver.wait_for(r"^\{", 15).text)
        logged = [ln.text for ln in daemon.lines if "fastpath_gate" in ln.text]
        after = {k: round(v[1], 3) for k, v in changes.items()}
        print(f"\nsent {sent}, received {got['count']}; (mip-ipip tx, ForwDatagrams) per phase "
              f"of 1.5 s: {phases}; the gate's log after each change (s): {after}\n"
              + "\n".join(logged))  # fmt: skip
        assert daemon.stop() is not None
    # the programs carried the open phases: nothing through mip-ipip, nothing forwarded by the
    # stack; the kernel's path the closed ones (about 100 packets/s for 1.5 s)
    for name, (tx, forwarded) in phases.items():
        if name.startswith("open"):
            assert (tx, forwarded) == (0, 0), phases
        else:
            assert tx >= 100 and forwarded >= 100, phases
    assert not status["live"] and status["guard"]["reason"].startswith("xfrm: 1"), status
    assert "xfrm" in changes["xfrm added"][0], changes
    assert "strict rp_filter" in changes["strict rp_filter"][0], changes
    # events: at once; rp_filter (like legacy iptables): within the poll interval (1 s)
    assert changes["xfrm added"][1] < 0.5 and changes["xfrm deleted"][1] < 0.5, changes
    assert changes["strict rp_filter"][1] < 1.5 and changes["rp_filter off"][1] < 1.5, changes
    assert sent >= 800 and got["count"] >= sent - 5, (sent, got)
