"""A Table Request that arrives twice (issue 15 item 2, simulator seed 102448, async, 2 members).

The network duplicated a booting member's Table Request. Between the two copies the responder
accepted a registration, and the Binding Update that carried it to the requester was lost. The
second copy is a replay (same sequence): the responder's engine drops it, so the download it
serves is the one it started on the first copy, from its table as it was then. The new record is
not part of that download; the reliable update path (retransmission to the requester, which the
responder already counts as a member) brings it after the download ends.

The simulator used to snapshot the responder's table for *every* copy of a Table Request it
delivered, the dropped one included, and so expected the new record in a download that never
promised it ("SYNCED without home ..."). These tests pin both halves: what the engine serves,
and that the simulator's invariant now compares it with the right snapshot.
"""

from __future__ import annotations

from sync_strategies import AUTH, HA, NOW, A, B

from mobileip.core.bindings import Binding, BindingTable, MobilityRecord, make_version
from mobileip.sync.engine import SyncEngine, SyncSettings, SyncState
from mobileip.tools.sim import run_seed
from mobileip.wire import sync as w

HOMES = [0x0A010000 + i for i in range(100)]
LATE = 0x0A01FFFF  # registered at the responder between the two copies of the request


def _record(home: int, counter: int) -> MobilityRecord:
    return MobilityRecord(
        home, make_version(counter, 1), 1000, HA, (Binding(1, 1800, NOW + 900, 0),)
    )


def _responder() -> SyncEngine:
    table = BindingTable(tombstone_ttl=900.0)
    for home in HOMES:
        table.put(_record(home, 5), NOW - 10)
    src = SyncEngine(SyncSettings(node_id=1, peers=(B,)), table, AUTH, epoch=100)
    src.start(NOW)
    t = NOW
    while src.state is not SyncState.SYNCED:  # alone: declares itself after its rounds
        t += 0.5
        src.handle_timer(t)
    src.datagrams_to_send()
    return src


def _sent(engine: SyncEngine) -> list[tuple[bytes, tuple[str, int]]]:
    """What ``engine`` sends, without its digests (anti-entropy is not under test here)."""
    return [(d, e) for d, e in engine.datagrams_to_send() if d[0] != w.MsgType.DIGEST]


def _types(out: list[tuple[bytes, tuple[str, int]]]) -> list[int]:
    return [data[0] for data, _ in out]


def test_a_duplicated_table_request_is_served_once_and_a_later_record_comes_by_update() -> None:
    src = _responder()
    dst = SyncEngine(SyncSettings(node_id=2, peers=(A,)), BindingTable(900.0), AUTH, epoch=200)
    t = NOW + 10
    dst.start(t)
    [(request, dest)] = _sent(dst)
    assert dest == A and request[0] == w.MsgType.TABLE_REQUEST

    src.handle_datagram(request, B, t)  # the first copy: served
    served = {h: src.table.version_of(h) for h in src.table.homes()}
    to_dst = _sent(src)
    assert _types(to_dst) == [w.MsgType.TABLE_SYNC]  # the peer list

    late = _record(LATE, 7)  # accepted here meanwhile ...
    src.table.put(late, t + 0.001)
    src.local_change(late, t + 0.001)
    lost = _sent(src)
    assert _types(lost) == [w.MsgType.BINDING_UPDATE]  # ... and its update is lost

    src.handle_datagram(request, B, t + 0.002)  # the duplicate: a replay, dropped
    assert src.counters.dropped["replayed"] == 1 and src.counters.received_bi_reqs == 1
    assert _sent(src) == []  # no second peer list, no second download

    # the download runs to the end; nothing else is lost
    for _ in range(1000):
        if dst.state is SyncState.SYNCED:
            break
        for data, _ in to_dst:
            dst.handle_datagram(data, A, t)
        for data, _ in _sent(dst):
            src.handle_datagram(data, B, t)
        to_dst = [(d, e) for d, e in _sent(src) if d[0] != w.MsgType.BINDING_UPDATE]
    assert dst.state is SyncState.SYNCED
    # what the responder held when it took the request is all there, at least as new
    for home, version in served.items():
        got = dst.table.version_of(home)
        assert got is not None and version is not None and got >= version
    assert dst.table.get(LATE) is None  # not promised by this download

    # the Binding Update's retransmission brings the late record
    for _ in range(20):
        t += 0.25
        src.handle_timer(t)
        for data, _ in _sent(src):
            dst.handle_datagram(data, A, t)
        for data, _ in _sent(dst):
            src.handle_datagram(data, B, t)
        if dst.table.version_of(LATE) == late.version:
            break
    assert dst.table.version_of(LATE) == late.version


def test_seed_102448_async_2_members_holds_its_invariants() -> None:
    """The issue's repro: a duplicated Table Request around a lost Binding Update."""
    report = run_seed(102448, mode="async", members=2)
    assert report.ok, report.violations
    assert report.registrations > 0
