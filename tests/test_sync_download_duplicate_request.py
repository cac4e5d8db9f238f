"""A Table Request that arrives twice (issue 15 item 2, simulator seed 102448, async, 2 members;
and the group copy plus the unicast copy of one request round).

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

A copy with *another* sequence (a requester sends each round to the group and to every member
it knows) passes the replay window. It used to restart the responder's download mid-way, and
that one was a real race: the last test.
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


def test_a_second_copy_of_the_request_mid_download_does_not_restart_it() -> None:
    """A requester with a group and known members sends each round twice (two sequences, one
    identification). The second copy reaching the responder mid-download used to restart its
    sender: a new snapshot, in a new order, spliced into the requester's count of records
    received. An early record deregistered in between (a tombstone leaves the one-binding
    records sent first) shifted the rest by one, and the requester turned SYNCED without a
    record. Now the copy is dropped as a duplicate request and the first download goes on."""
    table = BindingTable(tombstone_ttl=900.0)
    homes = [0x0A010000 + i for i in range(3000)]
    for i, home in enumerate(homes):
        bindings = tuple(Binding(1 + k, 1800, NOW + 900, 0) for k in range(1 if i % 3 else 2))
        table.put(MobilityRecord(home, make_version(5, 1), 1000, HA, bindings), NOW - 10)
    src = SyncEngine(SyncSettings(node_id=1, peers=(B,), bulk_window=4), table, AUTH, epoch=100)
    src.start(NOW)
    t = NOW
    while src.state is not SyncState.SYNCED:
        t += 0.5
        src.handle_timer(t)
    src.datagrams_to_send()
    group = ("224.0.0.99", 434)
    settings = SyncSettings(node_id=2, peers=(A,), multicast=group)
    dst = SyncEngine(settings, BindingTable(900.0), AUTH, epoch=200)
    dst.start(t)
    first, second = (d for d, _ in _sent(dst) if d[0] == w.MsgType.TABLE_REQUEST)
    assert first[12:20] != second[12:20] and first[20:28] == second[20:28]  # seq; ident

    src.handle_datagram(first, B, t)
    served = {h: src.table.version_of(h) for h in src.table.homes()}
    to_dst = _sent(src)
    copied = False
    for _ in range(1000):
        if dst.state is SyncState.SYNCED:
            break
        for data, _ in to_dst:
            dst.handle_datagram(data, A, t)
        back = _sent(dst)
        for data, _ in back:
            src.handle_datagram(data, B, t)
        if not copied and dst.counters.received_bi_reps >= 5:  # chunks already applied
            gone = MobilityRecord(homes[1], make_version(9, 1), 1001, HA, (), t)
            src.table.put(gone, t)  # a deregistration, its update not under test
            src.handle_datagram(second, B, t)
            copied = True
        to_dst = _sent(src)
        if not to_dst and not back:
            t += 0.3
            src.handle_timer(t)
            dst.handle_timer(t)
            to_dst = _sent(src)
    assert copied and dst.state is SyncState.SYNCED
    missing = [
        h for h, v in served.items() if v is not None and (dst.table.version_of(h) or -1) < v
    ]
    assert missing == []
    assert src.counters.dropped["duplicate-request"] == 1
