"""VRRPv3 on a real (namespaced) Ethernet segment: our speakers and a real keepalived.

Every test builds its own bridge and namespaces (tests/netns.py) with a unique prefix and
tears them down even on failure. Times are measured from the test's point of view (when the
runner's log line is read) and printed; run with ``-s`` to see them.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from netns import Member, Process, Segment, root_skip_reason

from mobileip.vrrp import master_down_interval, skew_time

pytestmark = [pytest.mark.root, pytest.mark.timeout(60)]

VIP = "10.77.0.100/24"
VRID = 51
INTERVAL = 0.1  # seconds
INTERVAL_CS = 10
# Scheduling slack on a loaded 2-core box: process wake-up, netlink, log pipe.
MARGIN = 0.35


@pytest.fixture
def seg() -> Iterator[Segment]:
    reason = root_skip_reason()
    if reason:
        pytest.skip(reason)
    segment = Segment()
    try:
        segment.open()
        yield segment
    finally:
        segment.close()


def speaker(seg: Segment, member: Member, priority: int, *extra: str) -> Process:
    argv = [
        sys.executable, "-m", "mobileip.net.vrrp_socket",
        "--interface", member.ifname, "--vrid", str(VRID), "--priority", str(priority),
        "--address", VIP, "--advert-interval", str(INTERVAL), *extra,
    ]  # fmt: skip
    return seg.spawn(member, argv, label=f"{member.name}/p{priority}")


def wait_until(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def owners(seg: Segment, members: list[Member]) -> list[str]:
    return [m.name for m in members if VIP in seg.addresses(m)]


# --- our speakers only ------------------------------------------------------------------------


def test_three_speakers_elect_highest_and_fail_over_on_sigkill(seg: Segment) -> None:
    a = seg.add_member("a", "10.77.0.1/24")
    b = seg.add_member("b", "10.77.0.2/24")
    c = seg.add_member("c", "10.77.0.3/24")
    members = [a, b, c]
    speaker(seg, a, 100)
    pb = speaker(seg, b, 200)
    pc = speaker(seg, c, 150)

    wait_until(lambda: owners(seg, members) == ["b"], 5, "b (priority 200) to own the address")
    time.sleep(5 * INTERVAL)  # steady state: nobody else claims it
    assert owners(seg, members) == ["b"]

    killed = time.monotonic()
    pb.signal(signal.SIGKILL)
    took_over = pc.wait_for(r"event=state .*state=MASTER", 5, since=killed)
    elapsed = took_over.at - killed
    # The killed speaker could not clean up: its stale address stays on b's interface (a
    # restarted speaker removes it at start), so only the survivors are checked.
    wait_until(lambda: owners(seg, [a, c]) == ["c"], 2, "c to own the address")
    address_moved = time.monotonic() - killed
    limit = master_down_interval(150, INTERVAL_CS)
    print(
        f"\nVRRP failover after SIGKILL: c MASTER in {elapsed * 1000:.0f} ms, address on c "
        f"within {address_moved * 1000:.0f} ms (Master_Down_Interval {limit * 1000:.0f} ms)"
    )
    assert elapsed < limit + MARGIN
    time.sleep(5 * INTERVAL)
    assert owners(seg, [a, c]) == ["c"]

    # b restarts: it drops its stale address at once, then preempts c as the highest priority.
    restarted = time.monotonic()
    pb2 = speaker(seg, b, 200)
    pb2.wait_for(r"event=state .*state=MASTER", 5, since=restarted)
    pc.wait_for(r"state=BACKUP .*priority=200", 5, since=restarted)
    wait_until(lambda: owners(seg, members) == ["b"], 3, "restarted b to own the address alone")


def test_clean_shutdown_hands_over_within_skew_time(seg: Segment) -> None:
    a = seg.add_member("a", "10.77.0.1/24")
    b = seg.add_member("b", "10.77.0.2/24")
    pa = speaker(seg, a, 200)
    pb = speaker(seg, b, 100)
    wait_until(lambda: owners(seg, [a, b]) == ["a"], 5, "a to own the address")
    time.sleep(3 * INTERVAL)
    stopped = time.monotonic()
    assert pa.stop() == 0
    line = pb.wait_for(r"event=state .*state=MASTER", 3, since=stopped)
    elapsed = line.at - stopped
    print(f"\nVRRP clean handover (priority 0): {elapsed * 1000:.0f} ms")
    assert elapsed < skew_time(100, INTERVAL_CS) + MARGIN
    wait_until(lambda: owners(seg, [a, b]) == ["b"], 2, "b to own the address")


def test_no_preempt_keeps_lower_priority_master(seg: Segment) -> None:
    a = seg.add_member("a", "10.77.0.1/24")
    b = seg.add_member("b", "10.77.0.2/24")
    speaker(seg, a, 100)
    wait_until(lambda: owners(seg, [a, b]) == ["a"], 5, "a to own the address")
    pb = speaker(seg, b, 200, "--no-preempt")
    pb.wait_for(r"state=BACKUP", 5)
    time.sleep(10 * INTERVAL)
    assert owners(seg, [a, b]) == ["a"]
    assert not any("state=MASTER" in ln.text for ln in pb.lines)


INJECT = """
import socket, sys, time
from ipaddress import IPv4Address
from mobileip.wire import vrrp
ifname, src, ttl, prio = sys.argv[1], IPv4Address(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
data = vrrp.encode(vrrp.Advertisement(51, prio, 10, (IPv4Address("10.77.0.100"),)), src)
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 112)
s.setsockopt(socket.SOL_SOCKET, 25, ifname.encode())
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, ttl)
s.bind((str(src), 0))
for _ in range(20):
    s.sendto(data, ("224.0.0.18", 0))
    time.sleep(0.05)
"""


def test_adverts_with_ttl_other_than_255_are_dropped(seg: Segment) -> None:
    a = seg.add_member("a", "10.77.0.1/24")
    b = seg.add_member("b", "10.77.0.2/24")
    pa = speaker(seg, a, 100)
    pa.wait_for(r"state=MASTER", 5)
    inject = [sys.executable, "-c", INJECT, b.ifname, b.ip]
    t0 = time.monotonic()
    # A priority-250 master, but one hop away (TTL 64): ignored, we stay master.
    assert seg.run(b, [*inject, "64", "250"]).returncode == 0
    assert pa.popen.poll() is None
    assert not any(ln.at >= t0 and "state=BACKUP" in ln.text for ln in pa.lines)
    # The same adverts with TTL 255 are obeyed: the injection itself is valid.
    sent = time.monotonic()
    assert seg.run(b, [*inject, "255", "250"]).returncode == 0
    pa.wait_for(r"state=BACKUP .*priority=250", 1, since=sent)
    assert pa.stop() == 0
    stopped = pa.wait_for(r"event=stopped", 5)
    assert "dropped-bad-ttl=20" in stopped.text


# --- mixed group with keepalived --------------------------------------------------------------


KEEPALIVED_CONF = """\
global_defs {{
    router_id {router_id}
    vrrp_version 3
    vrrp_garp_master_delay 0
    vrrp_garp_master_repeat 1
    script_user root
    enable_script_security
{global_extra}}}
{top_extra}
vrrp_instance VI_1 {{
    state BACKUP
    interface {ifname}
    virtual_router_id {vrid}
    priority {priority}
    advert_int {interval}
    virtual_ipaddress {{
        {vip}
    }}
{instance_extra}}}
"""


def keepalived(
    seg: Segment,
    member: Member,
    priority: int,
    tmp: Path,
    global_extra: str = "",
    top_extra: str = "",
    instance_extra: str = "",
) -> Process:
    conf = tmp / f"keepalived-{member.name}.conf"
    conf.write_text(
        KEEPALIVED_CONF.format(
            global_extra=global_extra,
            top_extra=top_extra,
            instance_extra=instance_extra,
            router_id=f"{seg.prefix}{member.name}",
            ifname=member.ifname,
            vrid=VRID,
            priority=priority,
            interval=INTERVAL,
            vip=VIP,
        )
    )
    argv = [
        "keepalived", "-n", "-l", "-D", "-P", "-f", str(conf),
        "--pid", str(tmp / f"ka-{member.name}.pid"),
        "--vrrp_pid", str(tmp / f"ka-vrrp-{member.name}.pid"),
    ]  # fmt: skip
    return seg.spawn(member, argv, label=f"keepalived/p{priority}")


def capture(seg: Segment, pcap: Path) -> Process:
    proc = seg.spawn(
        seg.hub,
        ["tshark", "-i", seg.bridge, "-f", "ip proto 112 or arp", "-w", str(pcap)],
        "tshark",
    )
    proc.wait_for(r"Capturing on", 15)
    return proc


def check_our_packets(pcap: Path, our_ip: str) -> list[int]:
    """Dissect what we sent: VRRP v3 adverts, TTL 255, good checksum, no expert warnings.

    Returns the priorities we advertised, in order.
    """
    fields = subprocess.run(
        [
            "tshark", "-r", str(pcap), "-Y", f"ip.src == {our_ip}", "-T", "fields",
            "-e", "ip.ttl", "-e", "vrrp.version", "-e", "vrrp.type", "-e", "vrrp.prio",
            "-e", "vrrp.checksum.status",
        ],
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout.split("\n")  # fmt: skip
    rows = [line.split("\t") for line in fields if line]
    assert rows, "no packets from us in the capture"
    for ttl, version, ptype, _prio, checksum_status in rows:
        assert (ttl, version, ptype, checksum_status) == ("255", "3", "1", "1")
    bad = subprocess.run(
        [
            "tshark", "-r", str(pcap), "-Y",
            f"ip.src == {our_ip} && (_ws.malformed || _ws.expert.severity >= 0x600000)",
        ],
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout  # fmt: skip
    assert bad.strip() == "", f"tshark flags our packets:\n{bad}"
    return [int(r[3]) for r in rows]


def mac_of(seg: Segment, member: Member) -> str:
    out = seg.run(member, ["cat", f"/sys/class/net/{member.ifname}/address"]).stdout
    return out.strip()


def our_gratuitous_arps(pcap: Path, mac: str) -> int:
    """Gratuitous ARPs for the virtual address sent from ``mac`` (our interface's own MAC)."""
    vip = VIP.split("/")[0]
    flt = (
        f"arp.isgratuitous && arp.src.proto_ipv4 == {vip} && arp.src.hw_mac == {mac}"
        f" && eth.src == {mac} && eth.dst == ff:ff:ff:ff:ff:ff"
    )
    out = subprocess.run(
        ["tshark", "-r", str(pcap), "-Y", flt],
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout  # fmt: skip
    return len(out.strip().splitlines())


def need_keepalived() -> None:
    for tool in ("keepalived", "tshark"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")


def test_keepalived_yields_to_us_and_takes_over_on_our_clean_shutdown(
    seg: Segment, tmp_path: Path
) -> None:
    need_keepalived()
    a = seg.add_member("a", "10.77.0.1/24")
    k = seg.add_member("k", "10.77.0.2/24")
    pcap = tmp_path / "vrrp.pcap"
    cap = capture(seg, pcap)

    pk = keepalived(seg, k, 150, tmp_path)
    pk.wait_for(r"Entering MASTER STATE", 10)
    wait_until(lambda: owners(seg, [a, k]) == ["k"], 5, "keepalived to own the address")

    # We have the higher priority: we preempt, keepalived accepts our adverts and backs off.
    pa = speaker(seg, a, 200)
    pa.wait_for(r"state=MASTER", 5)
    pk.wait_for(r"received advert from 10\.77\.0\.1 with higher priority 200", 5)
    backed_off = pk.wait_for(r"Entering BACKUP STATE", 5)
    wait_until(lambda: owners(seg, [a, k]) == ["a"], 3, "us to own the address")
    time.sleep(10 * INTERVAL)
    assert owners(seg, [a, k]) == ["a"]
    assert not any(ln.at > backed_off.at and "Entering MASTER" in ln.text for ln in pk.lines)

    # Clean shutdown: our priority-0 advert makes keepalived take over at once.
    stopped = time.monotonic()
    assert pa.stop() == 0
    pk.wait_for(r"Backup received priority 0 advertisement", 3, since=stopped)
    took_over = pk.wait_for(r"Entering MASTER STATE", 3, since=stopped)
    elapsed = took_over.at - stopped
    print(f"\nkeepalived took over after our clean shutdown in {elapsed * 1000:.0f} ms")
    assert elapsed < skew_time(150, INTERVAL_CS) + 3 * INTERVAL + MARGIN
    wait_until(lambda: owners(seg, [a, k]) == ["k"], 3, "keepalived to own the address")

    time.sleep(0.3)
    cap.stop()
    priorities = check_our_packets(pcap, a.ip)
    assert set(priorities[:-1]) == {200}
    assert priorities[-1] == 0
    assert our_gratuitous_arps(pcap, mac_of(seg, a)) >= 3  # garp_repeat on takeover


def test_we_yield_to_keepalived_and_take_over_on_its_clean_shutdown(
    seg: Segment, tmp_path: Path
) -> None:
    need_keepalived()
    a = seg.add_member("a", "10.77.0.1/24")
    k = seg.add_member("k", "10.77.0.2/24")
    pcap = tmp_path / "vrrp.pcap"
    cap = capture(seg, pcap)

    pa = speaker(seg, a, 150)
    pa.wait_for(r"state=MASTER", 5)
    wait_until(lambda: owners(seg, [a, k]) == ["a"], 3, "us to own the address")

    # keepalived has the higher priority and preempts us; we accept its adverts and back off.
    pk = keepalived(seg, k, 200, tmp_path)
    pk.wait_for(r"Entering MASTER STATE", 10)
    pa.wait_for(r"state=BACKUP .*higher-priority-master_src=10\.77\.0\.2_priority=200", 5)
    wait_until(lambda: owners(seg, [a, k]) == ["k"], 3, "keepalived to own the address")
    time.sleep(10 * INTERVAL)
    assert owners(seg, [a, k]) == ["k"]

    stopped = time.monotonic()
    pk.signal(signal.SIGTERM)
    took_over = pa.wait_for(r"event=state .*state=MASTER", 3, since=stopped)
    elapsed = took_over.at - stopped
    print(f"\nwe took over after keepalived's clean shutdown in {elapsed * 1000:.0f} ms")
    assert elapsed < skew_time(150, INTERVAL_CS) + MARGIN + 0.2  # + keepalived's exit path
    wait_until(lambda: owners(seg, [a, k]) == ["a"], 3, "us to own the address")
    pk.popen.wait(10)
    assert any("sent 0 priority" in ln.text for ln in pk.lines)

    time.sleep(0.3)
    cap.stop()
    priorities = check_our_packets(pcap, a.ip)
    assert 150 in priorities


def test_keepalived_track_file_demotion_and_notify_fifo(seg: Segment, tmp_path: Path) -> None:
    """The keepalived-driven mode's levers (as in examples/keepalived.conf): a NOT SYNCED member
    writes a negative weight to the track file and cannot preempt; at 0 it preempts, and the
    notify FIFO reports the role as `INSTANCE "VI_1" MASTER <prio>`."""
    need_keepalived()
    a = seg.add_member("a", "10.77.0.1/24")
    k = seg.add_member("k", "10.77.0.2/24")
    weight = tmp_path / "sync-weight"
    weight.write_text("-150\n")
    fifo = tmp_path / "notify.fifo"
    os.mkfifo(fifo)
    fifo_lines: list[str] = []

    def read_fifo() -> None:
        with open(fifo) as f:  # blocks until keepalived opens it for writing
            fifo_lines.extend(line.strip() for line in f)

    threading.Thread(target=read_fifo, daemon=True).start()

    pa = speaker(seg, a, 100)
    pa.wait_for(r"state=MASTER", 5)
    pk = keepalived(
        seg,
        k,
        200,
        tmp_path,
        global_extra=f"    notify_fifo {fifo}\n",
        top_extra=f"vrrp_track_file sync {{\n    file {weight}\n    weight 1\n}}\n",
        instance_extra="    track_file {\n        sync\n    }\n",
    )
    pk.wait_for(r"Entering BACKUP STATE", 10)
    time.sleep(15 * INTERVAL)  # effective priority 50 < 100: keepalived must not preempt
    assert owners(seg, [a, k]) == ["a"]
    assert not any("Entering MASTER" in ln.text for ln in pk.lines)

    weight.write_text("0\n")  # SYNCED: back to 200, keepalived preempts us
    pk.wait_for(r"Entering MASTER STATE", 10)
    pa.wait_for(r"state=BACKUP .*priority=200", 5)
    wait_until(lambda: owners(seg, [a, k]) == ["k"], 3, "keepalived to own the address")
    wait_until(lambda: 'INSTANCE "VI_1" MASTER 200' in fifo_lines, 3, "the notify FIFO line")
    # keepalived reports the effective (track-file adjusted) priority on the FIFO.
    assert fifo_lines[:2] == ['INSTANCE "VI_1" BACKUP 50', 'INSTANCE "VI_1" MASTER 200']


def test_example_keepalived_conf_is_accepted_by_keepalived(seg: Segment, tmp_path: Path) -> None:
    if shutil.which("keepalived") is None:
        pytest.skip("keepalived is not installed")
    example = Path(__file__).parent.parent / "examples" / "keepalived.conf"
    # keepalived -t insists the interface exists: check it inside a namespace of ours.
    member = seg.add_member("t", "10.77.0.1/24")
    conf = tmp_path / "keepalived.conf"
    conf.write_text(example.read_text().replace("eth0", member.ifname))
    result = seg.run(member, ["keepalived", "-t", "-f", str(conf)])
    assert result.returncode == 0, result.stderr


def test_segment_removes_everything_even_when_the_test_fails() -> None:
    reason = root_skip_reason()
    if reason:
        pytest.skip(reason)
    with pytest.raises(RuntimeError, match="boom"), Segment() as doomed:
        member = doomed.add_member("x", "10.77.0.9/24")
        proc = doomed.spawn(member, ["sh", "-c", "sleep 300 & echo started; wait"])
        proc.wait_for("started", 5)
        pids = seg_pids(member.netns)
        assert pids
        raise RuntimeError("boom")
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert doomed.prefix not in listed
    for pid in pids:
        state = Path(f"/proc/{pid}/stat")
        assert not state.exists() or state.read_text().split()[2] == "Z"


def seg_pids(netns: str) -> list[int]:
    out = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]
