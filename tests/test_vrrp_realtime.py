"""The native speaker's realtime scheduling (``[vrrp] rt_priority``) and its GARP socket."""

from __future__ import annotations

import os
import socket
import threading
from ipaddress import IPv4Address as A
from ipaddress import IPv4Interface

import pytest
from test_config import MINIMAL

from mobileip.config import ConfigError, parse_config
from mobileip.dataplane.encap import IPv4Header, build_ipv4
from mobileip.net.vrrp_socket import DEFAULT_RT_PRIORITY, VrrpSettings, VrrpSpeaker, parse_args
from mobileip.vrrp.machine import State, VrrpConfig, VrrpMachine
from mobileip.wire import vrrp as wire

NATIVE = 'driver = "native"\ninterface = "eth0"\nvrid = 1\nvirtual_address = "10.1.0.1/24"\n'


def settings(rt: int | None) -> VrrpSettings:
    return VrrpSettings("lo", 1, 100, (IPv4Interface("10.1.0.1/24"),), rt_priority=rt)


@pytest.mark.parametrize(("line", "expected"), [("", None), ("rt_priority = 0", 0),
                                                ("rt_priority = 99", 99)])  # fmt: skip
def test_rt_priority_key(line: str, expected: int | None) -> None:
    vrrp = parse_config(MINIMAL + "\n[vrrp]\n" + NATIVE + line + "\n").vrrp
    assert vrrp is not None and vrrp.rt_priority == expected


@pytest.mark.parametrize("value", ["100", "-1", '"high"'])
def test_rt_priority_out_of_range_names_the_key(value: str) -> None:
    with pytest.raises(ConfigError, match="rt_priority"):
        parse_config(MINIMAL + "\n[vrrp]\n" + NATIVE + f"rt_priority = {value}\n")


def test_runner_rejects_a_bad_rt_priority() -> None:
    with pytest.raises(SystemExit):
        parse_args(["--interface", "lo", "--vrid", "1", "--address", "10.1.0.1/24",
                    "--rt-priority", "100"])  # fmt: skip


def policy_in_thread(speaker: VrrpSpeaker) -> tuple[int, int]:
    """Run the speaker's scheduling step on a fresh thread; return that thread's (policy, prio)."""
    out: list[tuple[int, int]] = []

    def body() -> None:
        speaker._realtime()
        out.append((os.sched_getscheduler(0), os.sched_getparam(0).sched_priority))

    t = threading.Thread(target=body)
    t.start()
    t.join()
    return out[0]


def test_zero_keeps_normal_scheduling() -> None:
    assert policy_in_thread(VrrpSpeaker(settings(0), log=lambda *a, **k: None)) == (
        os.SCHED_OTHER,
        0,
    )


@pytest.mark.root
def test_default_is_sched_rr_for_the_speaker_thread_only() -> None:
    speaker = VrrpSpeaker(settings(None), log=lambda *a, **k: None)
    assert policy_in_thread(speaker) == (os.SCHED_RR, DEFAULT_RT_PRIORITY)
    assert os.sched_getscheduler(0) == os.SCHED_OTHER  # not the calling (loop) thread
    assert "rt-priority-refused" not in speaker.counters


def test_refused_realtime_falls_back_and_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "sched_setscheduler", refuse)
    speaker = VrrpSpeaker(settings(None), log=lambda *a, **k: None)
    assert policy_in_thread(speaker) == (os.SCHED_OTHER, 0)
    assert speaker.counters == {"rt-priority-refused": 1}


@pytest.mark.root
def test_gratuitous_arp_leaves_from_one_long_lived_socket() -> None:
    speaker = VrrpSpeaker(settings(None), log=lambda *a, **k: None)
    sock = speaker._garp_socket()
    assert speaker._garp_socket() is sock  # reused: no RCU grace period per frame
    assert sock.family == socket.AF_PACKET and sock.proto == 0  # receives nothing
    sock.close()


def test_a_late_advert_names_where_the_loop_thread_is() -> None:
    """``_loop_at`` reads the event loop's thread's innermost frames: the place that kept the
    speaker from the interpreter lock, logged with each late advert as ``loop_at``."""
    speaker = VrrpSpeaker(settings(0), log=lambda *a, **k: None)
    assert speaker._loop_at() == "-"  # not started: no loop thread known
    parked, release = threading.Event(), threading.Event()

    def holding_the_loop() -> None:
        parked.set()
        release.wait(10)

    t = threading.Thread(target=lambda: holding_the_loop())
    t.start()
    try:
        parked.wait(10)
        speaker._loop_ident = t.ident
        where = speaker._loop_at(depth=4).split(",")
    finally:
        release.set()
        t.join()
    line = holding_the_loop.__code__.co_firstlineno + 2  # release.wait(10)
    assert where[0].startswith("threading.py:") and where[1].endswith(":wait"), where
    assert where[2] == f"test_vrrp_realtime.py:{line}:holding_the_loop", where
    assert where[3].endswith(":<lambda>"), where


def _advert_from_master(priority: int = 200) -> bytes:
    """A raw IPv4 packet (TTL 255) carrying an advert of VRID 1 from 10.1.0.3."""
    master = A("10.1.0.3")
    body = wire.encode(wire.Advertisement(1, priority, 100, (A("10.1.0.1"),)), master)
    return build_ipv4(IPv4Header(0, 0, 1, 0, 255, 112, master, wire.MULTICAST_GROUP), body)


def test_an_advert_that_came_while_the_lock_was_awaited_is_heard_before_master_down() -> None:
    """poll() returned on the Master_Down_Timer's deadline, but the speaker got the
    interpreter lock back only later, and the master's advert arrived in between: it is read
    before the timer fires, so a busy event loop does not make a backup take over from a
    live master. With nothing waiting, the timer fires as before."""
    speaker = VrrpSpeaker(settings(0), log=lambda *a, **k: None)
    speaker.machine = VrrpMachine(VrrpConfig(1, 100, (A("10.1.0.1"),), A("10.1.0.2")))
    speaker.machine.start(0.0)
    assert speaker.machine.state is State.BACKUP
    outputs: list[object] = []  # (what the speaker would send or tell: not needed here)
    speaker._process = lambda now: outputs.extend(speaker.machine.outputs())  # type: ignore
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        ours.setblocking(False)
        sockets = {ours.fileno(): ours}
        due = speaker.machine.next_timer()
        assert due is not None
        theirs.send(_advert_from_master())  # came after poll() returned empty
        speaker._step([], sockets, due + 0.2)
        assert speaker.machine.state is State.BACKUP
        assert speaker.counters_snapshot().get("advert-heard-late") == 1
        again = speaker.machine.next_timer()
        assert again is not None and again > due + 0.2  # restarted by the advert
        speaker._step([], sockets, again + 0.01)  # nothing waiting: the master is gone
        assert speaker.machine.state is State.MASTER, outputs
        assert speaker.counters_snapshot().get("advert-heard-late") == 1
    finally:
        ours.close()
        theirs.close()
