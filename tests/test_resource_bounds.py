"""Every queue, table and buffer is bounded: fill each one past its limit and check the limit
holds and what it refused is counted (docs/robustness.md lists them)."""

from __future__ import annotations

import asyncio
import socket
import sys
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from helpers import running_homeagent
from test_security_table import request

from mobileip.core import homeagent as ha_module
from mobileip.core.bindings import Binding, MobilityRecord, make_version
from mobileip.net.udp import UdpEndpoint
from mobileip.sync.engine import SyncEngine, SyncSettings
from mobileip.sync.replay import ReplayWindow
from mobileip.wire import sync as sw

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "fuzz"))
import targets as world

SENDER = int(IPv4Address(world.PEER[0]))


def test_max_bindings_answers_130_through_the_daemon(tmp_path: Path) -> None:
    with running_homeagent(tmp_path, homeagent={"max_bindings": 2}) as ha:
        codes = [ha.client(home=f"10.1.0.{i}").register(300).code for i in (5, 6, 7)]
        assert codes == [0, 0, 130]
        # a mobile node that already has a binding may still re-register at the limit
        assert ha.client(home="10.1.0.5").register(300).code == 0
        stats = ha.stats()
        assert stats["bindings"] == 2 and stats["replies"]["130"] == 1
        # a deregistration frees a place
        assert ha.client(home="10.1.0.6").deregister().code == 0
        assert ha.client(home="10.1.0.7").register(300).code == 0


def _learned_engine(max_queue: int, max_sent_log: int = 65_536) -> SyncEngine:
    table = world._engine(waiting=False).table
    settings = SyncSettings(node_id=world.NODE, max_queue=max_queue, max_sent_log=max_sent_log)
    engine = SyncEngine(settings, table, world.GROUP_AUTH, epoch=100)
    engine.start(world.NOW)
    digest = sw.Digest(1, SENDER, (300 << 32) | 1, 1, True, table.digest())
    engine.handle_datagram(sw.encode(digest, world.GROUP_AUTH), world.PEER, world.NOW)
    assert [m.reachable for m in engine.members] == [True]
    engine.datagrams_to_send()
    return engine


def _change(engine: SyncEngine, i: int) -> None:
    home = int(IPv4Address("10.2.0.0")) + i
    rec = MobilityRecord(home, make_version(1, world.NODE), 0, 1, (Binding(9, 300, 2000.0, 0),))
    engine.table.put(rec, world.NOW)
    engine.local_change(rec, world.NOW)


def test_sync_pending_queue_is_bounded_and_counts_drops() -> None:
    engine = _learned_engine(max_queue=4)
    for i in range(10):
        _change(engine, i)
    engine.datagrams_to_send()
    (member,) = engine.members
    assert len(member.pending) == 4
    assert engine.counters.queue_dropped == 6
    assert engine.status(world.NOW)["counters"]["queue_dropped"] == 6


def test_sent_log_is_bounded_and_a_late_ack_is_counted_unmatched() -> None:
    engine = _learned_engine(max_queue=100, max_sent_log=3)
    idents = []
    for i in range(6):
        _change(engine, i)
        for data, _dest in engine.datagrams_to_send():
            idents.append(sw.decode(data, world.GROUP_AUTH).identification)
    assert len(engine._sent_log) == 3
    oldest = idents[0]
    ack = sw.BindingUpdateAck(1, SENDER, (300 << 32) | 2, oldest, 0, ())
    engine.handle_datagram(sw.encode(ack, world.GROUP_AUTH), world.PEER, world.NOW)
    assert engine.counters.dropped["unmatched-ack"] == 1


def test_pending_nonces_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ha_module, "_MAX_PENDING_NONCES", 8)
    core = world._core("nonce")
    for i in range(20):
        home = IPv4Address("10.3.0.0") + i
        out = core.handle_request(request(home=home, ident=(1 << 40)), world.NOW, world.WALL)
        assert out.code == 133
    assert len(core._pending_nonces) == 8
    assert core.stats.violations["bad-identification"] == 20
    assert core.stats.dropped["nonce-evicted"] == 12  # what the bound refused is counted


def test_replay_window_senders_are_bounded() -> None:
    w = ReplayWindow(max_senders=4)
    for sender in range(10):
        assert w.accept(sender, (1 << 32) | 1)
    assert len(w) == 4
    assert 9 in w and 0 not in w
    assert w.evicted == 6


def test_udp_reader_takes_at_most_a_batch_per_wakeup() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        got: list[bytes] = []
        ep = UdpEndpoint.bind(loop, "127.0.0.1", 0, lambda d, s, dst: got.append(d))
        ep.batch = 50
        try:
            ep.loop.remove_reader(ep.sock.fileno())  # drive the reader by hand
            ep._reading = False
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                for i in range(120):
                    s.sendto(i.to_bytes(2, "big"), ep.local_address)
            await asyncio.sleep(0.05)
            ep._on_readable()
            assert len(got) == 50
            ep._on_readable()
            ep._on_readable()
            assert len(got) == 120
            assert ep.counters["received"] == 120
        finally:
            ep.close()

    asyncio.run(main())
