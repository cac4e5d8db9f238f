"""The Binding Update fast paths give exactly what the general codec and merge give.

* wire: ``decode_chunked`` turns a Binding Update of one-binding records into a
  :class:`BindingUpdateChunk` that expands to what ``decode`` gives, and accepts and refuses the
  same bytes for the same reasons; ``encode_binding_update_records`` and
  ``encode_binding_update_ack`` produce the bytes ``encode`` produces;
* sender: ``update_bodies`` (packed table -> wire) gives ``pack`` over ``state_of``, encoded;
* receiver: ``apply_update`` leaves the table (records, live count, digest, expiry wheel) and the
  engine (re-issued records, counters) as the engine's ``_merge`` of ``from_state`` record by
  record does, for newer, older and equal versions, tombstones, bindings that ran out in flight,
  a home twice in one update, and the ordered-identifications rule;
* engine: a persisting table notes every record a Binding Update changed; semisync releases a
  reply only on an ack of that version.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sync_strategies import (
    AUTH,
    HA,
    NOW,
    A,
    B,
    authentic,
    both_decoders,
    mixed_table,
    one_binding,
    u8,
    u32,
    u64,
)

from mobileip.core.bindings import Binding, BindingTable, MobilityRecord, make_version
from mobileip.daemon.persist import JournaledTable
from mobileip.sync import records as codec
from mobileip.sync.engine import Protected, RecordsApplied, SyncEngine, SyncSettings, SyncState
from mobileip.wire import sync as w


def _update(records: tuple[w.RecordState, ...]) -> w.BindingUpdate:
    return w.BindingUpdate(7, 0x0A000002, 99, 1234, records)


# --- wire ---------------------------------------------------------------------------------------


@given(st.lists(one_binding, min_size=1, max_size=6).map(tuple))
def test_one_binding_update_round_trip(records: tuple[w.RecordState, ...]) -> None:
    msg = _update(records)
    data = w.encode(msg, AUTH)
    chunk = w.decode_chunked(data, AUTH)
    assert isinstance(chunk, w.BindingUpdateChunk)
    assert chunk.count == len(records)
    assert chunk.homes == tuple(r.home_address for r in records)
    assert chunk.as_binding_update() == msg == w.decode(data, AUTH)
    body = b"".join(w.encode_record(r) for r in records)
    assert chunk.body == body
    assert (
        w.encode_binding_update_records(7, 0x0A000002, 99, 1234, len(records), body, AUTH) == data
    )


@given(st.lists(u32, max_size=40), u8, u64)
def test_update_ack_encoding_is_encode(homes: list[int], code: int, ident: int) -> None:
    msg = w.BindingUpdateAck(7, 0x0A000002, 99, ident, code, tuple(homes))
    assert w.encode_binding_update_ack(7, 0x0A000002, 99, ident, code, homes, AUTH) == w.encode(
        msg, AUTH
    )


def test_update_ack_encoding_refuses_what_encode_refuses() -> None:
    with pytest.raises(ValueError, match="home address"):
        w.encode_binding_update_ack(7, 2, 99, 1, 0, [1 << 32], AUTH)


def test_other_updates_decode_as_before() -> None:
    tomb = w.RecordState(5, HA, 9, 1, 100, ())
    two = w.RecordState(6, HA, 9, 1, 0, (w.BindingState(1, 2, 3, 4), w.BindingState(5, 6, 7, 8)))
    one = w.RecordState(7, HA, 9, 1, 0, (w.BindingState(1, 2, 3, 4),))
    for records in ((), (tomb,), (one, two), (one, tomb)):
        msg = _update(records)
        data = w.encode(msg, AUTH)
        assert w.decode_chunked(data, AUTH) == msg


@given(st.binary(min_size=28, max_size=200))
@settings(max_examples=300)
def test_decode_chunked_agrees_with_decode_on_authentic_updates(raw: bytes) -> None:
    outcomes = both_decoders(authentic(w.MsgType.BINDING_UPDATE, raw))
    assert outcomes[0] == outcomes[1]


@pytest.mark.parametrize(
    ("offset", "value"), [(24, 1), (24, 2), (25, 0), (25, 2), (26, 1), (27, 1), (31, 1), (39, 1)]
)
def test_malformed_updates_fail_as_in_decode(offset: int, value: int) -> None:
    one = w.RecordState(7, HA, 9, 1, 0, (w.BindingState(1, 2, 3, 4),))
    plain = w.encode(_update((one, one, one)), AUTH)
    body = bytearray(plain[: -w.auth_trailer_len(AUTH)])
    body[w.HEADER_LEN + w.RECORD_ONE_LEN + offset] = value  # in the second record
    k = AUTH.send_key
    head = struct.pack("!BBI", 40, 36, k.spi)
    data = bytes(body) + head + k.authenticator(bytes(body) + head)
    reasons = []
    for decoder in (w.decode, w.decode_chunked):
        with pytest.raises(w.SyncDecodeError) as exc:
            decoder(data, AUTH)
        reasons.append(exc.value.reason)
    assert reasons[0] == reasons[1]


# --- sender -------------------------------------------------------------------------------------


@pytest.mark.parametrize("budget", [10, 200, 1334])
def test_update_bodies_are_the_general_encoding(budget: int) -> None:
    table = mixed_table(expired=True)
    homes = [1, *table.homes()[::-1], 2]  # homes without a record are skipped
    got = codec.update_bodies(table.packed_getter(), homes, budget, NOW)
    states = [s for s in (codec.state_of(table, h, NOW) for h in homes) if s is not None]
    want = list(codec.pack(states, budget))
    assert len(got) == len(want)
    for (body, count, sent_homes, versions), batch in zip(got, want, strict=True):
        assert body == b"".join(w.encode_record(s) for s in batch)
        assert count == len(batch)
        assert sent_homes == [s.home_address for s in batch]
        assert versions == [s.version for s in batch]


# --- receiver -----------------------------------------------------------------------------------


def _state(table: BindingTable) -> tuple[object, ...]:
    wheel = {slot: sorted(homes) for slot, homes in table._wheel.items()}
    return (dict(table._records), len(table), table.digest(), wheel, table.next_deadline())


def _engine(table: BindingTable, ordered: bool) -> SyncEngine:
    s = SyncSettings(node_id=0x0A000009, peers=(A,), ordered_identifications=ordered)
    return SyncEngine(s, table, AUTH, epoch=300)


def _prefilled() -> BindingTable:
    """Some of the homes held: newer, older and equal versions; newer and older
    identifications; tombstones."""
    t = BindingTable(900.0)
    src = mixed_table(expired=True)
    for i, home in enumerate(src.homes()[::2]):
        rec = src.get(home)
        assert rec is not None
        bump = (-1, 0, 1, 5)[i % 4]
        last = rec.last_id + (-1, 0, 1)[i % 3]
        tomb = i % 7 == 0
        bindings = () if tomb else (Binding(0xC6336401, 100, NOW + 100, 0),)
        t.put(
            # bump 0: the very same version (same origin), held with other contents
            MobilityRecord(home, make_version(rec.counter + bump, rec.origin), last, HA, bindings),
            NOW - 1.0,
        )
    return t


def _one_binding_bodies(src: BindingTable) -> list[bytes]:
    """Binding Update bodies of the table's one-binding records, newer by one counter."""
    out = []
    for body, _, _, _ in codec.update_bodies(src.packed_getter(), src.homes(), 1334, NOW):
        data = w.encode_binding_update_records(1, 2, 3, 4, _count(body), body, AUTH)
        msg = w.decode_chunked(data, AUTH)
        if isinstance(msg, w.BindingUpdateChunk):
            out.append(msg.body)
    return out


def _count(body: bytes) -> int:
    n, pos = 0, 0
    while pos < len(body):
        end = pos + w.RECORD_HEADER_LEN + w.BINDING_LEN * body[pos + 25]
        if body[pos + 24] & w.RecordFlag.EXTENDED:  # ExtLen, then the extension block
            end += 2 + int.from_bytes(body[end : end + 2], "big")
        pos = end
        n += 1
    return n


@pytest.mark.parametrize("ordered", [False, True])
@pytest.mark.parametrize("prefill", [False, True])
def test_apply_update_equals_merging_one_by_one(ordered: bool, prefill: bool) -> None:
    src = BindingTable(900.0)
    for rec in mixed_table(expired=True).records():
        plain = not rec.nai and not any(b.udp_port for b in rec.bindings)
        if len(rec.bindings) == 1 and plain:  # (the others make general Binding Updates)
            src.put(rec, NOW - 40.0)
    fast_t = _prefilled() if prefill else BindingTable(900.0)
    slow_t = _prefilled() if prefill else BindingTable(900.0)
    fast, slow = _engine(fast_t, ordered), _engine(slow_t, ordered)
    bodies = _one_binding_bodies(src)
    assert len(bodies) >= 2
    applied_any = 0
    for body in bodies:
        homes, applied = codec.apply_update(fast_t, body, NOW, fast._merge, ordered)
        records = w.BindingUpdateChunk(1, 2, 3, 4, _count(body), body).as_binding_update().records
        assert homes == [r.home_address for r in records]
        want = [r.home_address for r in records if slow._merge(codec.from_state(r, NOW), NOW)]
        assert applied == want
        applied_any += len(applied)
    assert applied_any
    assert _state(fast_t) == _state(slow_t)
    assert fast._fresh == slow._fresh  # records re-issued by the ordered-identifications rule
    assert fast.counters.dropped == slow.counters.dropped
    if ordered and prefill:
        assert fast.counters.dropped["older-identification"] > 0


def test_apply_update_with_a_home_twice_merges_in_order() -> None:
    old = w.RecordState(9, HA, make_version(5, 1), 1, 0, (w.BindingState(1, 60, 0, 60_000),))
    new = w.RecordState(9, HA, make_version(6, 1), 2, 0, (w.BindingState(2, 60, 0, 60_000),))
    gone = w.RecordState(9, HA, make_version(7, 1), 3, 0, (w.BindingState(2, 60, 0, 0),))
    for order in ((old, new), (new, old), (old, gone, new), (new, gone)):
        body = b"".join(w.encode_record(r) for r in order)
        fast, slow = BindingTable(), BindingTable()
        homes, applied = codec.apply_update(fast, body, NOW, fast.merge, False)
        assert homes == [9] * len(order)
        assert applied == [r.home_address for r in order if slow.merge(_rec(r), NOW)]
        assert _state(fast) == _state(slow)


def _rec(st_: w.RecordState) -> MobilityRecord:
    return codec.from_state(st_, NOW)


def test_put_packed_is_put() -> None:
    fast, slow = _prefilled(), _prefilled()
    for rec in mixed_table(expired=True).records():
        if len(rec.bindings) != 1 or rec.nai or rec.bindings[0].udp_port:
            continue  # PACKED_ONE holds plain one-binding records only
        b = rec.bindings[0]
        blob = codec.PACKED_ONE.pack(
            rec.home_address,
            rec.home_agent,
            rec.version,
            rec.last_id,
            0.0,
            1,
            b.care_of_address,
            b.granted_lifetime,
            b.flags,
            b.expires,
        )
        fast.put_packed(rec.home_address, blob, rec.version, b.expires, True)
        slow.put(rec, NOW)
    assert _state(fast) == _state(slow)


# --- engine -------------------------------------------------------------------------------------


def _pair(
    dst_table: BindingTable, mode: str = "async", src_table: BindingTable | None = None
) -> tuple[SyncEngine, SyncEngine]:
    engines = []
    for node, table, peer in ((1, src_table or BindingTable(), B), (2, dst_table, A)):
        e = SyncEngine(SyncSettings(node_id=node, peers=(peer,), mode=mode), table, AUTH, 100)
        e.start(NOW)
        e.state = SyncState.SYNCED
        for m in e.members:
            m.reachable = True
        e.datagrams_to_send()
        engines.append(e)
    return engines[0], engines[1]


def _register(src: SyncEngine, home: int, counter: int, coa: int = 0xC0000001) -> MobilityRecord:
    rec = MobilityRecord(
        home, make_version(counter, 1), counter, HA, (Binding(coa, 60, NOW + 60, 0),)
    )
    src.table.put(rec, NOW)
    src.local_change(rec, NOW)
    return rec


def test_a_persisting_table_notes_every_updated_record() -> None:
    dst_table = JournaledTable(900.0)
    src, dst = _pair(dst_table)
    for i in range(50):
        _register(src, 0x0A000100 + i, 3)
    out = src.datagrams_to_send()
    assert out
    for data, _ in out:
        dst.handle_datagram(data, A, NOW)
    assert set(dst_table.drain()) == {0x0A000100 + i for i in range(50)}
    assert dst_table.digest() == src.table.digest()
    applied = [h for e in dst.events() if isinstance(e, RecordsApplied) for h in e.homes]
    assert sorted(applied) == [0x0A000100 + i for i in range(50)]


def test_semisync_is_protected_only_by_an_ack_of_that_version() -> None:
    src, dst = _pair(BindingTable(), mode="semisync")
    home = 0x0A000100
    first = _register(src, home, 3)
    src.watch(home, first.version, NOW)
    update1 = src.datagrams_to_send()
    second = _register(src, home, 4, coa=0xC0000002)
    src.watch(home, second.version, NOW)
    update2 = src.datagrams_to_send()
    assert len(update1) == len(update2) == 1
    dst.handle_datagram(update1[0][0], A, NOW)
    (ack1,) = dst.datagrams_to_send()
    src.handle_datagram(ack1[0], B, NOW)
    got = [e for e in src.events() if isinstance(e, Protected)]
    assert got == [Protected(home, first.version, True, 2)]  # not the second version yet
    assert src.members[0].pending == {home: second.version}
    dst.handle_datagram(update2[0][0], A, NOW)
    (ack2,) = dst.datagrams_to_send()
    src.handle_datagram(ack2[0], B, NOW)
    got = [e for e in src.events() if isinstance(e, Protected)]
    assert got == [Protected(home, second.version, True, 2)]
    assert not src.members[0].pending
    assert dst.table.digest() == src.table.digest()
    ack = w.decode(ack2[0], AUTH)
    assert isinstance(ack, w.BindingUpdateAck) and ack.homes == (home,)
