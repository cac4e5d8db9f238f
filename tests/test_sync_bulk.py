"""The bulk download's fast paths give exactly what the general codec and merge give.

* wire: ``decode_chunked`` accepts and refuses the same bytes as ``decode`` (same reasons), and
  its :class:`TableSyncChunk` expands to the same :class:`TableSync`; ``encode_table_sync_records``
  and ``encode_record_one`` produce the bytes ``encode`` produces;
* sender: ``chunk_body`` (packed table -> wire) gives the bytes of ``encode`` over ``state_of``;
* receiver: ``apply_chunk`` leaves the table (packed records, live count, digest, expiry wheel)
  as merging ``from_state`` record by record does, existing records included;
* engine: a download of a mixed table (tombstones, several bindings, infinite lifetimes) into a
  member that holds some newer and some older records: every record ends at the newer version,
  no tombstone is resurrected, and a persisting table notes every downloaded record.
"""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sync_strategies import AUTH, HA, NOW, A, B, authentic, both_decoders, mixed_table, one_binding

from mobileip.core.bindings import Binding, BindingTable, MobilityRecord, make_version
from mobileip.daemon.persist import JournaledTable
from mobileip.sync import records as codec
from mobileip.sync.engine import RecordsApplied, SyncEngine, SyncSettings, SyncState
from mobileip.wire import sync as w


def _sync(records: tuple[w.RecordState, ...], final: bool = False) -> w.TableSync:
    return w.TableSync(7, 0x0A000002, 99, 1234, 0, 77, final, (), records)


# --- wire ---------------------------------------------------------------------------------------


@given(st.lists(one_binding, min_size=1, max_size=6).map(tuple), st.booleans())
def test_one_binding_chunk_round_trip(records: tuple[w.RecordState, ...], final: bool) -> None:
    msg = _sync(records, final)
    data = w.encode(msg, AUTH)
    chunk = w.decode_chunked(data, AUTH)
    assert isinstance(chunk, w.TableSyncChunk)
    assert chunk.count == len(records) and chunk.code == w.SyncCode.ACCEPTED
    assert chunk.as_table_sync() == msg == w.decode(data, AUTH)
    body = b"".join(
        w.encode_record_one(
            r.home_address,
            r.home_agent,
            r.version,
            r.last_id,
            r.bindings[0].care_of_address,
            r.bindings[0].granted_lifetime,
            r.bindings[0].flags,
            r.bindings[0].remaining_ms,
        )
        for r in records
    )
    assert body == b"".join(w.encode_record(r) for r in records) == chunk.body
    assert w.encode_table_sync_records(7, 0x0A000002, 99, 1234, 77, final, len(records), body, AUTH)
    assert (
        w.encode_table_sync_records(7, 0x0A000002, 99, 1234, 77, final, len(records), body, AUTH)
        == data
    )


def test_other_table_syncs_decode_as_before() -> None:
    tomb = w.RecordState(5, HA, 9, 1, 100, ())
    two = w.RecordState(6, HA, 9, 1, 0, (w.BindingState(1, 2, 3, 4), w.BindingState(5, 6, 7, 8)))
    one = w.RecordState(7, HA, 9, 1, 0, (w.BindingState(1, 2, 3, 4),))
    peers = (w.PeerInfo(1, 2, 3, 1),)
    for msg in (
        _sync(()),
        _sync((tomb,)),
        _sync((one, two)),
        _sync((one, tomb)),
        w.TableSync(7, 2, 99, 1234, 0, 77, False, peers, (one,)),  # peer list
        w.TableSync(7, 2, 99, 1234, 131, 0, True, (), ()),  # NOT_SYNCED
        w.TableSync(7, 2, 99, 1234, 128, 1, False, (), (one,)),  # a code other than ACCEPTED
    ):
        data = w.encode(msg, AUTH)
        assert w.decode_chunked(data, AUTH) == msg


@pytest.mark.parametrize(
    ("offset", "value", "reason"),
    [
        (24, 1, "bad-record"),  # tombstone bit on a record with a binding
        (24, 4, "bad-record"),  # unknown state bit
        (24, 0x80, "bad-record"),  # unknown state bit
        (24, 2, None),  # EXTENDED: the next record's bytes read as an extension block
        (25, 2, None),  # says two bindings: whatever the general decoder finds next
        (25, 0, "bad-record"),  # no binding, not a tombstone
        (26, 1, "bad-reserved"),
        (27, 1, "bad-reserved"),
        (31, 1, "bad-record"),  # live record with a tombstone age
        (39, 1, "bad-reserved"),  # binding reserved
    ],
)
def test_malformed_chunks_fail_as_in_decode(offset: int, value: int, reason: str | None) -> None:
    one = w.RecordState(7, HA, 9, 1, 0, (w.BindingState(1, 2, 3, 4),))
    plain = w.encode(_sync((one, one, one)), AUTH)
    body = bytearray(plain[: -w.auth_trailer_len(AUTH)])
    body[w.HEADER_LEN + 4 + w.RECORD_ONE_LEN + offset] = value  # in the second record
    k = AUTH.send_key
    head = struct.pack("!BBI", 40, 36, k.spi)
    data = bytes(body) + head + k.authenticator(bytes(body) + head)
    reasons = []
    for decoder in (w.decode, w.decode_chunked):
        with pytest.raises(w.SyncDecodeError) as exc:
            decoder(data, AUTH)
        reasons.append(exc.value.reason)
    assert reasons[0] == reasons[1]
    assert reason is None or reasons[0] == reason


@given(st.binary(min_size=28, max_size=200))
@settings(max_examples=300)
def test_decode_chunked_agrees_with_decode_on_authentic_garbage(raw: bytes) -> None:
    outcomes = both_decoders(authentic(w.MsgType.TABLE_SYNC, raw))
    assert outcomes[0] == outcomes[1]


# --- sender and receiver --------------------------------------------------------------------------


def _wire_of_chunks(table: BindingTable, budget: int) -> list[bytes]:
    homes = table.homes_one_binding_first()
    get = table.packed_getter()
    out, pos = [], 0
    while pos < len(homes):
        body, _, pos = codec.chunk_body(get, homes, pos, budget, NOW)
        out.append(body)
    return out


def test_chunk_body_is_the_general_encoding() -> None:
    table = mixed_table()
    homes = table.homes_one_binding_first()
    assert sorted(homes) == sorted(table.homes())
    get = table.packed_getter()
    pos = 0
    while pos < len(homes):
        body, count, nxt = codec.chunk_body(get, homes, pos, 1330, NOW)
        states = [codec.state_of(table, h, NOW) for h in homes[pos:nxt]]
        assert count == len(states) >= 1
        assert body == b"".join(w.encode_record(s) for s in states if s is not None)
        assert len(body) <= 1330
        pos = nxt
    # homes without a record are skipped; a record bigger than the budget travels alone
    body, count, nxt = codec.chunk_body(get, [1, 2, homes[0]], 0, 10, NOW)
    assert (count, nxt) == (1, 3) and len(body) == w.RECORD_ONE_LEN


def _state(table: BindingTable) -> tuple[object, ...]:
    wheel = {slot: sorted(homes) for slot, homes in table._wheel.items()}
    return (
        dict(table._records),
        len(table),
        table.digest(),
        wheel,
        table.next_deadline(),
    )


def _prefilled(tombstone_ttl: float = 900.0) -> BindingTable:
    """A receiver that already holds some of the homes: newer, older and equal versions."""
    t = BindingTable(tombstone_ttl)
    src = mixed_table()
    for i, home in enumerate(src.homes()[::3]):
        rec = src.get(home)
        assert rec is not None
        bump = (-1, 0, 1, 5)[i % 4]
        tomb = i % 5 == 0
        t.put(
            MobilityRecord(
                home,
                make_version(rec.counter + bump, 0x0A000009),
                rec.last_id,
                HA,
                () if tomb else (Binding(0xC6336401, 100, NOW + 100, 0),),
            ),
            NOW - 1.0,
        )
    return t


@pytest.mark.parametrize("prefill", [False, True])
def test_apply_chunk_equals_merging_one_by_one(prefill: bool) -> None:
    src = mixed_table()
    fast = _prefilled() if prefill else BindingTable(900.0)
    slow = _prefilled() if prefill else BindingTable(900.0)
    chunks = 0
    for body in _wire_of_chunks(src, 1330):
        data = w.encode_table_sync_records(1, 2, 3, 4, 5, False, _count(body), body, AUTH)
        msg = w.decode_chunked(data, AUTH)
        general = w.decode(data, AUTH)
        assert isinstance(general, w.TableSync)
        want = [st.home_address for st in general.records if slow.merge(_rec(st), NOW)]
        if isinstance(msg, w.TableSyncChunk):
            chunks += 1
            got = codec.apply_chunk(fast, msg, NOW, fast.merge)
            assert sorted(got) == sorted(want)
        else:
            for st in msg.records:  # type: ignore[union-attr]
                fast.merge(_rec(st), NOW)
    assert chunks >= 3
    assert _state(fast) == _state(slow)


def _rec(st: w.RecordState) -> MobilityRecord:
    return codec.from_state(st, NOW)


def _count(body: bytes) -> int:
    n, pos = 0, 0
    while pos < len(body):
        end = pos + w.RECORD_HEADER_LEN + w.BINDING_LEN * body[pos + 25]
        if body[pos + 24] & w.RecordFlag.EXTENDED:  # ExtLen, then the extension block
            end += 2 + int.from_bytes(body[end : end + 2], "big")
        pos = end
        n += 1
    return n


def test_apply_chunk_with_a_home_twice_merges_in_order() -> None:
    old = w.RecordState(9, HA, make_version(5, 1), 1, 0, (w.BindingState(1, 60, 0, 60_000),))
    new = w.RecordState(9, HA, make_version(6, 1), 2, 0, (w.BindingState(2, 60, 0, 60_000),))
    other = w.RecordState(10, HA, make_version(1, 1), 1, 0, (w.BindingState(3, 60, 0, 1),))
    for order in ((old, new, other), (new, old, other)):
        data = w.encode(_sync(order), AUTH)
        chunk = w.decode_chunked(data, AUTH)
        assert isinstance(chunk, w.TableSyncChunk)
        fast, slow = BindingTable(), BindingTable()
        got = codec.apply_chunk(fast, chunk, NOW, fast.merge)
        want = [st.home_address for st in order if slow.merge(_rec(st), NOW)]
        assert got == want
        assert _state(fast) == _state(slow)
        held = fast.get(9)
        assert held is not None and held.version == make_version(6, 1)


def test_insert_new_refuses_a_home_it_holds() -> None:
    t = BindingTable()
    t.put(MobilityRecord(9, 1, 1, HA, ()), NOW)
    with pytest.raises(ValueError):
        t.insert_new([9], [b"x"], [2], [math.inf], 0)


# --- engine -----------------------------------------------------------------------------------


def _engines(
    src_table: BindingTable, dst_table: BindingTable, **kw: object
) -> tuple[SyncEngine, SyncEngine]:
    src = SyncEngine(SyncSettings(node_id=1, peers=(B,), **kw), src_table, AUTH, epoch=100)  # type: ignore[arg-type]
    src.start(NOW)
    t = NOW
    while src.state is not SyncState.SYNCED:
        t += 0.5
        src.handle_timer(t)
    src.datagrams_to_send()
    dst = SyncEngine(SyncSettings(node_id=2, peers=(A,), **kw), dst_table, AUTH, epoch=200)  # type: ignore[arg-type]
    return src, dst


def _download(
    src: SyncEngine, dst: SyncEngine, drop_every: int = 0, at_once: list[bytes] | None = None
) -> int:
    """Pass datagrams by hand until ``dst`` is SYNCED; returns the records it applied. With
    ``at_once``, ``dst`` sends through ``send_now`` into that list (delivered with the rest)."""
    applied = 0
    dst.start(NOW)
    out_dst = dst.datagrams_to_send()
    t, sent = NOW, 0
    for _ in range(100_000):
        if dst.state is SyncState.SYNCED:
            break
        for data, _ in out_dst:
            src.handle_datagram(data, B, t)
        out_src = src.datagrams_to_send()
        for data, _ in out_src:
            sent += 1
            if drop_every and sent % drop_every == 0:
                continue
            dst.handle_datagram(data, A, t)
        out_dst = dst.datagrams_to_send()
        if at_once:
            out_dst = [(d, B) for d in at_once] + out_dst
            at_once.clear()
        applied += sum(len(e.homes) for e in dst.events() if isinstance(e, RecordsApplied))
        if not out_src and not out_dst:
            t += 0.25
            src.handle_timer(t)
            dst.handle_timer(t)
            out_dst = dst.datagrams_to_send()
    assert dst.state is SyncState.SYNCED
    return applied


def _versions(t: BindingTable) -> dict[int, tuple[int, bool]]:
    out = {}
    for home in t.homes():
        rec = t.get(home)
        assert rec is not None
        out[home] = (rec.version, bool(rec.bindings))
    return out


@pytest.mark.parametrize("drop_every", [0, 7])
def test_download_into_a_table_with_newer_and_older_records(drop_every: int) -> None:
    src_table = mixed_table(1000)
    dst_table = _prefilled()
    before = _versions(dst_table)
    theirs = _versions(src_table)
    src, dst = _engines(src_table, dst_table)
    _download(src, dst, drop_every)
    got = _versions(dst_table)
    assert set(got) == set(theirs) | set(before)
    for home, (version, live) in got.items():
        # the newer version wins on every home, whichever side held it; a newer tombstone here
        # is never resurrected by an older live record there
        mine, sent = before.get(home), theirs.get(home)
        assert version == max(x[0] for x in (mine, sent) if x is not None)
        if mine is not None and (sent is None or mine[0] >= sent[0]):
            assert live == mine[1]  # ours stood
        else:
            assert sent is not None and live <= sent[1]  # (a binding may run out in flight)
    assert dst.counters.received_bi_reps > 0


def test_download_of_a_million_like_table_matches_digest() -> None:
    """A plain table of one-binding records: the receiver ends with the same digest."""
    src_table = BindingTable()
    for i in range(5000):
        b = Binding(0xC0000001 + (i & 0xFF), 1800, NOW + 1800, 0)
        src_table.put(MobilityRecord(0x0A000002 + i, make_version(7, 1), i, HA, (b,)), NOW)
    dst_table = BindingTable()
    src, dst = _engines(src_table, dst_table)
    assert _download(src, dst) == 5000
    assert dst_table.digest() == src_table.digest()
    assert len(dst_table) == 5000
    assert dst_table.next_deadline() == src_table.next_deadline()


def test_a_persisting_table_notes_every_downloaded_record() -> None:
    src_table = mixed_table(300)
    dst_table = JournaledTable(900.0)
    src, dst = _engines(src_table, dst_table)
    _download(src, dst)
    assert set(dst_table.drain()) == set(src_table.homes())


def test_send_now_acks_a_chunk_before_applying_it() -> None:
    src_table = mixed_table(2000)
    dst_table = BindingTable(900.0)
    src, dst = _engines(src_table, dst_table)
    sent: list[bytes] = []
    held_then: list[int] = []

    def send_now(data: bytes, dest: tuple[str, int]) -> None:
        assert dest == A
        ack = w.decode(data, AUTH)
        assert isinstance(ack, w.TableSyncAck)
        held_then.append(dst_table.record_count)
        if ack.more_bind:  # the records it acknowledges are not applied yet
            assert dst_table.record_count < ack.more_bind
        sent.append(data)

    dst.send_now = send_now
    _download(src, dst, at_once=sent)
    assert len(held_then) >= 2000 // 30 // 4
    got, want = _versions(dst_table), _versions(src_table)
    assert {h: v[0] for h, v in got.items()} == {h: v[0] for h, v in want.items()}
    assert dst_table.digest() == src_table.digest()


@pytest.mark.parametrize("early_acks", [False, True])
def test_a_chunk_that_fails_to_apply_restarts_the_download(early_acks: bool) -> None:
    """The receiver counts (and may ack) a chunk before applying it: if applying raises, the
    download starts over (never SYNCED without those records), and the error is not hidden."""
    src_table = mixed_table(2000)

    class Failing(BindingTable):
        fail = 1  # the first bulk insert raises

        def insert_new(self, *args: object, **kw: object) -> None:
            if self.fail:
                self.fail -= 1
                raise MemoryError("injected")
            super().insert_new(*args, **kw)  # type: ignore[arg-type]

    dst_table = Failing(900.0)
    src, dst = _engines(src_table, dst_table)
    sent: list[bytes] = []
    if early_acks:
        dst.send_now = lambda data, dest: sent.append(data)
    dst.start(NOW)
    raised = 0
    out_dst = dst.datagrams_to_send()
    for _ in range(100_000):
        if dst.state is SyncState.SYNCED:
            break
        for data, _ in out_dst:
            src.handle_datagram(data, B, NOW)
        for data, _ in src.datagrams_to_send():
            try:
                dst.handle_datagram(data, A, NOW)
            except MemoryError:
                raised += 1
                # a download never ends SYNCED past the failed chunk
                assert dst.state is SyncState.NOT_SYNCED
        out_dst = [(d, B) for d in sent] + dst.datagrams_to_send()
        sent.clear()
        if not out_dst:
            src.handle_timer(NOW + 1)
            out_dst = dst.datagrams_to_send()
    assert raised == 1
    assert dst.state is SyncState.SYNCED
    assert dst.counters.failed_bi_reps == 1 and dst.counters.dropped["apply-failed"] == 1
    assert dst.counters.sent_bi_reqs >= 2  # the download was requested again
    assert dst_table.digest() == src_table.digest()
    got, want = _versions(dst_table), _versions(src_table)
    assert {h: v[0] for h, v in got.items()} == {h: v[0] for h, v in want.items()}
