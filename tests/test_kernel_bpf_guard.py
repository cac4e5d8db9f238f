"""``[dataplane] fastpath = "auto"`` in a real kernel (User-Mode Linux, tests/test_uml_tier.py):
the guard (src/mobileip/dataplane/fastpath_guard.py) opens the fast path's gate while nothing
it would bypass is configured, closes it when something appears and reopens it when it goes.

One segment (tests/netns.py): the Home Agent daemon (kernel backend, ``fastpath = "auto"``, its
interfaces detected), a correspondent sending a numbered UDP stream (100 packets/s) to the home
address and the mobile node's co-located care-of address counting the IP-in-IP packets it
gets. Which path carried each phase is read on the Home Agent: the kernel's path sends through
``mip-ipip`` (its ``tx_packets`` moves) and is counted in the stack's ``ForwDatagrams``; the
programs encapsulate and redirect on the physical interface (both unmoved).

* xfrm and ``rp_filter`` (the tier's own kernel): an xfrm policy closes the gate at once (its
  netlink event) and deleting it reopens; a strict ``rp_filter`` on the interface closes it
  within the poll interval (1 s) and loose reopens.
* legacy iptables (marked ``iptables_nat``: the tier runs it on Debian's 6.1, the kernel with
  ``ip_tables``, whose verifier loads the programs since the 2-byte MAC copies): a rule added
  with ``iptables-legacy`` closes the gate within the poll interval; deleting the rule and
  flushing leaves the ``filter`` table registered in the namespace (``/proc/net/ip_tables_names``),
  so the gate stays closed; only the table going away (here ``rmmod iptable_filter``, which
  unregisters it in every namespace) reopens it; merely listing (``iptables-legacy -L``)
  creates the table again and closes it.

At most a few packets are lost in all. The tier's kernels cannot hold an nftables rule in the
ip/inet/netdev families (not built in either), so nftables is tested on this machine's kernel
(tests/test_fastpath_guard.py: the readers, and the guard's nftables event).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from netns import Member, Process, Segment
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
IN_UML = os.environ.get("MOBILEIP_IN_UML") == "1"


def _counter(seg: Segment, ha: Member) -> tuple[int, int]:
    """(mip-ipip tx_packets, the stack's Ip ForwDatagrams) on the Home Agent."""
    tx = seg.run(ha, ["cat", "/sys/class/net/mip-ipip/statistics/tx_packets"]).stdout
    snmp = seg.run(ha, ["cat", "/proc/net/snmp"]).stdout.splitlines()
    names, values = (line.split()[1:] for line in snmp if line.startswith("Ip:"))
    return int(tx), int(dict(zip(names, values, strict=True))["ForwDatagrams"])


class Stream:
    """The running segment: the Home Agent daemon in ``auto`` with its gate open, the stream
    flowing; what each phase and change measured (see :func:`guarded_stream`)."""

    def __init__(self, seg: Segment, ha: Member, daemon: Process) -> None:
        self.seg, self.ha, self.daemon = seg, ha, daemon
        self.phases: dict[str, tuple[int, int]] = {}  # (mip-ipip tx, ForwDatagrams) in 1.5 s
        self.changes: dict[str, tuple[str, float]] = {}  # the gate's log line, its delay
        self.sent = self.received = 0

    def phase(self, name: str) -> tuple[int, int]:
        time.sleep(0.3)  # packets already on their way when the gate moved
        before = _counter(self.seg, self.ha)
        time.sleep(1.5)
        after = _counter(self.seg, self.ha)
        self.phases[name] = (after[0] - before[0], after[1] - before[1])
        return self.phases[name]

    def run(self, argv: list[str]) -> str:
        done = self.seg.run(self.ha, argv)
        assert done.returncode == 0, (argv, done.stdout, done.stderr)
        return done.stdout

    def change(self, name: str, argv: list[str], state: str) -> tuple[str, float]:
        """Run ``argv`` on the Home Agent; the gate's log line and how long after the command
        returned it came."""
        t0 = time.monotonic()
        self.run(argv)
        t1 = time.monotonic()
        line = self.daemon.wait_for(rf"dataplane.fastpath_gate state={state}", 10, since=t0)
        self.changes[name] = (line.text, line.at - t1)
        return self.changes[name]

    def gate_lines(self, since: float = 0.0) -> list[str]:
        return [ln.text for ln in self.daemon.lines if "fastpath_gate" in ln.text and
                ln.at >= since]  # fmt: skip

    def status(self) -> dict[str, Any]:
        fast: dict[str, Any] = wait_dataplane(self.seg, self.ha, lambda d: True)["backend"][
            "fastpath"
        ]
        return fast


@contextmanager
def guarded_stream(tmp_path: Path) -> Iterator[Stream]:
    """The segment with the daemon's gate open and the stream running; on leaving, the stream
    stopped and counted (``sent``, ``received``), what was measured printed, the daemon
    stopped."""
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
        time.sleep(1.0)  # the stream running (ARP for the home address answered)
        stream = Stream(seg, ha, daemon)
        yield stream
        stop.write_text("")
        stream.sent = int(sender.wait_for(r"^sent \d+", 15).text.split()[1])
        time.sleep(0.5)  # the last packets in
        stop_rx.write_text("")
        stream.received = json.loads(receiver.wait_for(r"^\{", 15).text)["count"]
        after = {k: round(v[1], 3) for k, v in stream.changes.items()}
        print(f"\nsent {stream.sent}, received {stream.received}; (mip-ipip tx, ForwDatagrams) "
              f"per phase of 1.5 s: {stream.phases}; the gate's log after each change (s): "
              f"{after}\n" + "\n".join(stream.gate_lines()))  # fmt: skip
        assert daemon.stop() is not None


def _assert_paths(phases: dict[str, tuple[int, int]]) -> None:
    """The programs carried the open phases: nothing through mip-ipip, nothing forwarded by
    the stack; the kernel's path the closed ones (about 100 packets/s for 1.5 s)."""
    for name, (tx, forwarded) in phases.items():
        if name.startswith("open"):
            assert (tx, forwarded) == (0, 0), phases
        else:
            assert tx >= 100 and forwarded >= 100, phases


@pytest.mark.kernel
@pytest.mark.timeout(600)
def test_auto_fast_path_follows_xfrm_and_rp_filter(tmp_path: Path) -> None:
    with guarded_stream(tmp_path) as s:
        s.phase("open")
        policy = ["ip", "xfrm", "policy"]
        sel = ["src", "198.51.100.1/32", "dst", "198.51.100.2/32", "dir", "fwd"]
        s.change("xfrm added", [*policy, "add", *sel], "closed")
        s.phase("closed (xfrm)")
        status = s.status()
        s.change("xfrm deleted", [*policy, "delete", *sel], "open")
        s.phase("open again")
        strict = f"net.ipv4.conf.{s.ha.ifname}.rp_filter"
        s.change("strict rp_filter", ["sysctl", "-qw", f"{strict}=1"], "closed")
        s.phase("closed (rp_filter)")
        s.change("rp_filter off", ["sysctl", "-qw", f"{strict}=0"], "open")
        s.phase("open at last")
    _assert_paths(s.phases)
    changes = s.changes
    assert not status["live"] and status["guard"]["reason"].startswith("xfrm: 1"), status
    assert "xfrm" in changes["xfrm added"][0], changes
    assert "strict rp_filter" in changes["strict rp_filter"][0], changes
    # events: at once; rp_filter (like legacy iptables): within the poll interval (1 s)
    assert changes["xfrm added"][1] < 0.5 and changes["xfrm deleted"][1] < 0.5, changes
    assert changes["strict rp_filter"][1] < 1.5 and changes["rp_filter off"][1] < 1.5, changes
    assert s.sent >= 800 and s.received >= s.sent - 5, (s.sent, s.received)


@pytest.mark.kernel
@pytest.mark.iptables_nat  # the tier's kernel with ip_tables (Debian's 6.1)
@pytest.mark.timeout(600)
def test_auto_fast_path_follows_legacy_iptables(tmp_path: Path) -> None:
    """A legacy iptables table closes the gate within the poll interval (1 s) plus a check and
    keeps it closed while the table is registered in the namespace, rule or no rule: the
    gate reopens only when the table goes (``rmmod iptable_filter``)."""
    if not IN_UML:  # rmmod iptable_filter would take the table from every namespace of the host
        pytest.skip("unloads iptable_filter: runs inside User-Mode Linux only")
    ipt = shutil.which("iptables-legacy") or shutil.which("iptables-legacy", path="/usr/sbin")
    if ipt is None:
        pytest.skip("no iptables-legacy (Debian's iptables package; scripts/test installs it)")
    names = ["cat", "/proc/net/ip_tables_names"]
    with guarded_stream(tmp_path) as s:
        before = s.seg.run(s.ha, names).stdout  # absent (ip_tables not loaded) or empty
        s.phase("open")
        s.change("rule added", [ipt, "-w", "-A", "FORWARD", "-j", "ACCEPT"], "closed")
        s.phase("closed (rule)")
        flushed = time.monotonic()
        s.run([ipt, "-w", "-D", "FORWARD", "-j", "ACCEPT"])
        s.run([ipt, "-w", "-F"])
        s.run([ipt, "-w", "-X"])
        rules = s.run([ipt, "-w", "-S"])
        s.phase("closed (rule deleted, chains flushed: the table stays)")
        tables = s.run(names)
        status = s.status()
        while_flushed = s.gate_lines(since=flushed)
        s.change("table unloaded", ["rmmod", "iptable_filter"], "open")
        s.phase("open again")
        s.change("table listed", [ipt, "-w", "-L", "-n"], "closed")
        s.phase("closed (listed)")
    _assert_paths(s.phases)
    changes = s.changes
    assert before.strip() == "", before
    assert "iptables (legacy) tables: filter" in changes["rule added"][0], changes
    # no events: within the poll interval (1 s) plus a check
    assert changes["rule added"][1] < 3.0 and changes["table unloaded"][1] < 3.0, changes
    assert changes["table listed"][1] < 3.0, changes
    # the rule gone, the table not: still closed, for that reason, and the gate never moved
    assert rules.split() == ["-P", "INPUT", "ACCEPT", "-P", "FORWARD", "ACCEPT", "-P", "OUTPUT",
                             "ACCEPT"], rules  # fmt: skip
    assert tables.split() == ["filter"], tables
    assert not status["live"], status
    assert status["guard"]["reason"] == "iptables (legacy) tables: filter", status
    assert while_flushed == [], while_flushed
    assert s.sent >= 800 and s.received >= s.sent - 5, (s.sent, s.received)
