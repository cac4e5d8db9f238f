"""Issue 16's per-record state, replicated like a binding: a record's NAI (RFC 2794) and a
binding's NAT mapping (RFC 3519 UDP tunnel address and port).

The packed table (core/bindings.py), the on-disk journal (core/journal.py) and the sync wire
format (wire/sync/records.py: state bit EXTENDED and the extension block) carry them; a record
without them is byte for byte what it was before (the golden vectors in test_wire_sync.py and
the one-binding fast paths are untouched)."""

from __future__ import annotations

import dataclasses
import inspect
import math
import os
import shutil
import struct
import subprocess
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sync_strategies import AUTH, HA, NOW, A, B, u8, u16, u32, u64

from mobileip.core import journal
from mobileip.core.bindings import (
    PACKED_ONE_SIZE,
    Binding,
    BindingTable,
    MobilityRecord,
    make_version,
)
from mobileip.daemon.persist import JournaledTable
from mobileip.sync import records as codec
from mobileip.sync.engine import SyncEngine, SyncSettings, SyncState
from mobileip.wire import sync as w
from mobileip.wire.sync import records as wr

NAI = b"mn1@example.com"
V = make_version(3, 7)


def _rec(bindings: tuple[Binding, ...], nai: bytes = NAI, deleted: float = 0.0) -> MobilityRecord:
    return MobilityRecord(0x0A000010, V, 77, HA, bindings, deleted, nai)


# --- the packed table -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rec",
    [
        _rec((Binding(0xC0000001, 300, NOW + 300, 0x10, 0xCB007101, 40001),)),
        _rec((Binding(0xC0000001, 300, NOW + 300, 0x10, 0xCB007101, 40001),), nai=b""),
        _rec((Binding(0xC0000001, 300, NOW + 300, 0x10),)),  # an NAI, no NAT mapping
        _rec((Binding(1, 300, NOW + 300, 0), Binding(2, 60, math.inf, 0, 9, 4500))),
        _rec((), deleted=NOW - 1.5),  # a tombstone keeps its NAI
        _rec((), nai=b"x" * 14, deleted=NOW - 1.5),  # would be PACKED_ONE_SIZE long unpadded
        _rec((), nai=b"y" * 255, deleted=NOW - 1.5),
    ],
)
def test_table_stores_and_returns_nai_and_nat_mapping(rec: MobilityRecord) -> None:
    t = BindingTable()
    t.put(rec, NOW)
    assert t.get(rec.home_address) == rec
    assert list(t.records()) == [rec]
    blob = t.packed_getter()(rec.home_address)
    assert blob is not None and len(blob) != PACKED_ONE_SIZE  # never taken for a plain one
    assert t.homes_one_binding_first() == [rec.home_address]
    fields = t.fields(rec.home_address)
    assert fields is not None and fields[6] == rec.nai
    assert [b[4:] for b in fields[5]] == [(b.udp_address, b.udp_port) for b in rec.bindings]
    assert len(t) == (1 if rec.bindings else 0)


@pytest.mark.parametrize("cls", [Binding, MobilityRecord, w.BindingState, w.RecordState])
def test_fast_init_matches_the_dataclass_fields(cls: type) -> None:
    """core/bindings.py replaces the dataclass __init__ with one that sets the slots directly:
    the same parameters, in order, with the same defaults, and the instances stay frozen."""
    params = [
        p
        for p in inspect.signature(cls.__init__).parameters.values()
        if p.name not in ("self", "_s")
    ]
    fields = dataclasses.fields(cls)
    assert [p.name for p in params] == [f.name for f in fields]
    assert [p.default for p in params] == [
        inspect.Parameter.empty if f.default is dataclasses.MISSING else f.default for f in fields
    ]
    b = Binding(1, 2, 3.0, 4)
    r = MobilityRecord(1, 2, 3, 4, (b,))
    assert (b.udp_address, b.udp_port, r.deleted_at, r.nai) == (0, 0, 0.0, b"")
    assert dataclasses.replace(r, nai=b"x").nai == b"x"
    assert Binding(care_of_address=1, granted_lifetime=2, expires=3.0, flags=4, udp_port=9) == (
        Binding(1, 2, 3.0, 4, 0, 9)
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        b.udp_port = 5  # type: ignore[misc]
    with pytest.raises(TypeError):
        Binding(1, 2, 3.0)  # type: ignore[call-arg]


def test_plain_records_pack_as_before() -> None:
    t = BindingTable()
    plain = MobilityRecord(5, V, 1, HA, (Binding(1, 300, NOW + 300, 0),))
    t.put(plain, NOW)
    blob = t.packed_getter()(5)
    assert blob is not None and len(blob) == PACKED_ONE_SIZE
    assert t.homes_one_binding_first() == [5]
    ext = MobilityRecord(6, V, 1, HA, (Binding(1, 300, NOW + 300, 0, 1, 2),))
    t.put(ext, NOW)
    assert t.homes_one_binding_first() == [5, 6]  # the extended one after the plain ones


def test_expiry_and_deregistration_keep_the_nai_on_the_tombstone() -> None:
    t = BindingTable(tombstone_ttl=60.0)
    rec = _rec((Binding(0xC0000001, 10, NOW + 10, 0, 0xCB007101, 40001),))
    t.put(rec, NOW)
    changed, purged = t.expire(NOW + 11)
    assert purged == [] and changed[0].bindings == () and changed[0].nai == NAI
    got = t.get(rec.home_address)
    assert got is not None and got.is_tombstone and got.nai == NAI and got.version == V
    # a tombstone stored without deleted_at (a deregistration) keeps the NAI too
    t.store(MobilityRecord(9, V, 1, HA, (), 0.0, NAI), NOW)
    dereg = t.get(9)
    assert dereg is not None and dereg.deleted_at == NOW and dereg.nai == NAI
    # and an older update does not resurrect it
    assert not t.merge(_rec((Binding(1, 300, NOW + 300, 0),)), NOW)


def test_trailer_rejects_an_nai_too_long() -> None:
    with pytest.raises(ValueError, match="nai"):
        BindingTable().put(_rec((), nai=b"z" * 256, deleted=1.0), NOW)


# --- the journal ------------------------------------------------------------------------------


def test_journal_round_trips_extended_records_and_keeps_plain_entries() -> None:
    wall = 1_700_000_000.0
    recs = [
        _rec((Binding(0xC0000001, 300, NOW + 300, 0x10, 0xCB007101, 40001),)),
        MobilityRecord(0x0A000011, V, 78, HA, (), NOW - 5, b"gone@example.com"),
        MobilityRecord(0x0A000012, V, 79, HA, (Binding(1, 300, NOW + 300, 0),)),
    ]
    data = journal.encode_all(recs, NOW, wall)
    decoded = journal.decode(data)
    assert decoded.entries == 3 and not decoded.torn
    back = list(journal.from_disk(decoded.records.values(), NOW, wall, 600.0))
    assert [(r.nai, [(b.udp_address, b.udp_port) for b in r.bindings]) for r in back] == [
        (NAI, [(0xCB007101, 40001)]),
        (b"gone@example.com", []),
        (b"", [(0, 0)]),
    ]
    # a plain record's entry is the format-1 entry: record, bindings, nothing after
    plain = journal.encode_entry(recs[2], NOW, wall)
    assert len(plain) == 8 + 33 + 15
    # a trailer whose length disagrees is a torn entry, not an exception
    ext = bytearray(journal.encode_entry(recs[0], NOW, wall))
    body = bytes(ext[8:-1])
    bad = journal.MAGIC + struct.pack("!II", len(body), zlib.crc32(body)) + body
    assert journal.decode(bad).entries == 0 and journal.decode(bad).torn


# --- the wire ---------------------------------------------------------------------------------

# golden: a live record with an NAI and one binding with a NAT mapping
EXT_LIVE = w.RecordState(
    0x0A000010,
    0x0A000001,
    0x0000000300000007,
    0x1122334455667788,
    0,
    (w.BindingState(0xC0000001, 300, 0x10, 299_500, 0xCB007101, 40001),),
    b"mn1@example.com",
)
EXT_LIVE_HEX = (
    "0a000010 0a000001 0000000300000007 1122334455667788 02 01 0000 00000000"
    " c0000001 012c 10 00 000491ec"
    " 001b 01 0f 6d6e31406578616d706c652e636f6d 02 08 00 00 cb007101 9c41"
)
# golden: a tombstone keeping its NAI
EXT_TOMB = w.RecordState(
    0x0A000011, 0x0A000001, 0x0000000400000007, 5, 1500, (), b"gone@example.com"
)
EXT_TOMB_HEX = (
    "0a000011 0a000001 0000000400000007 0000000000000005 03 00 0000 000005dc"
    " 0012 01 10 676f6e65406578616d706c652e636f6d"
)
# golden: two bindings, only the second with a NAT mapping, no NAI
EXT_TWO = w.RecordState(
    0x0A000012,
    0x0A000001,
    0x0000000500000007,
    6,
    0,
    (w.BindingState(1, 60, 0, 1000), w.BindingState(2, 60, 0x80, 2000, 0x01020304, 434)),
)
EXT_TWO_HEX = (
    "0a000012 0a000001 0000000500000007 0000000000000006 02 02 0000 00000000"
    " 00000001 003c 00 00 000003e8 00000002 003c 80 00 000007d0"
    " 000a 02 08 01 00 01020304 01b2"
)


@pytest.mark.parametrize(
    ("rec", "hexdump"),
    [(EXT_LIVE, EXT_LIVE_HEX), (EXT_TOMB, EXT_TOMB_HEX), (EXT_TWO, EXT_TWO_HEX)],
)
def test_golden_extended_records(rec: w.RecordState, hexdump: str) -> None:
    data = bytes.fromhex(hexdump.replace(" ", ""))
    assert w.encode_record(rec) == data
    assert w.record_size(rec) == len(data)
    msg = w.BindingUpdate(1, 2, 3, 4, (rec,))
    encoded = w.encode(msg, AUTH)
    assert encoded[w.HEADER_LEN : w.HEADER_LEN + len(data)] == data
    assert w.decode(encoded, AUTH) == msg
    assert w.decode_chunked(encoded, AUTH) == msg  # not a fast-path chunk


def test_plain_records_encode_as_before() -> None:
    plain = w.RecordState(1, 2, 3, 4, 0, (w.BindingState(5, 6, 7, 8),))
    assert w.encode_record(plain) == w.encode_record_one(1, 2, 3, 4, 5, 6, 7, 8)
    assert w.encode_record(plain)[24] == 0 and w.record_size(plain) == w.RECORD_ONE_LEN
    tomb = w.RecordState(1, 2, 3, 4, 9, ())
    assert w.encode_record(tomb)[24] == 1 and len(w.encode_record(tomb)) == 32


def _with_reserved_bit(hexdump: str, offset: int, value: int) -> bytes:
    data = bytearray(bytes.fromhex(hexdump.replace(" ", "")))
    data[offset] = value
    return bytes(data)


def _decode_one(record: bytes) -> w.SyncMessage:
    body = w.encode(w.BindingUpdate(1, 2, 3, 4, ()), AUTH)[: w.HEADER_LEN]
    head = bytearray(body)
    head[6:8] = (1).to_bytes(2, "big")  # count 1
    k = AUTH.send_key
    data = bytes(head) + record
    auth = struct.pack("!BBI", 40, 36, k.spi)
    return w.decode(data + auth + k.authenticator(data + auth), AUTH)


def _reason(record: bytes) -> str:
    with pytest.raises(w.SyncDecodeError) as exc:
        _decode_one(record)
    return exc.value.reason


def test_malformed_extensions_are_decode_errors() -> None:
    live = bytes.fromhex(EXT_LIVE_HEX.replace(" ", ""))
    ext = 44  # the extension block of EXT_LIVE
    assert _decode_one(live) is not None
    assert _reason(live[:ext]) == "bad-length"  # EXTENDED, no block
    assert _reason(live[: ext + 1]) == "bad-length"
    assert _reason(live[:-1]) == "bad-length"
    assert _reason(live[:ext] + b"\x00\x00") == "bad-extension"  # empty block
    # TLV header cut by the block length
    assert _reason(live[:ext] + b"\x00\x01\x01") == "bad-extension"
    # TLV past its block
    assert _reason(live[:ext] + b"\x00\x03\x01\x05ab") == "bad-extension"
    assert _reason(live[:ext] + b"\x00\x02\x01\x00") == "bad-extension"  # empty NAI
    assert _reason(live[:ext] + b"\x00\x02\x09\x00") == "bad-extension"  # unknown type
    nai = b"\x01\x02ab"
    udp0 = b"\x02\x08\x00\x00\x01\x02\x03\x04\x01\xb2"
    block = nai + nai
    assert _reason(live[:ext] + len(block).to_bytes(2, "big") + block) == "bad-extension"
    block = udp0 + nai  # NAI after a mapping
    assert _reason(live[:ext] + len(block).to_bytes(2, "big") + block) == "bad-extension"
    block = udp0 + udp0  # the same binding twice
    assert _reason(live[:ext] + len(block).to_bytes(2, "big") + block) == "bad-extension"
    block = b"\x02\x08\x01" + udp0[3:]  # binding 1 of 1
    assert _reason(live[:ext] + len(block).to_bytes(2, "big") + block) == "bad-extension"
    block = b"\x02\x08\x00\x00" + bytes(6)  # a mapping of nothing
    assert _reason(live[:ext] + len(block).to_bytes(2, "big") + block) == "bad-extension"
    block = b"\x02\x07" + udp0[2:-1]  # wrong TLV length
    assert _reason(live[:ext] + len(block).to_bytes(2, "big") + block) == "bad-extension"
    block = b"\x02\x08\x00\x01" + udp0[4:]  # reserved
    assert _reason(live[:ext] + len(block).to_bytes(2, "big") + block) == "bad-reserved"
    # unknown state bits are still bad-record; EXTENDED on a tombstone needs its block too
    assert _reason(_with_reserved_bit(EXT_LIVE_HEX, 24, 0x06)) == "bad-record"
    tomb = bytes.fromhex(EXT_TOMB_HEX.replace(" ", ""))
    assert _reason(tomb[:32]) == "bad-length"
    block = udp0  # a mapping on a tombstone: binding 0 of 0
    assert _reason(tomb[:32] + len(block).to_bytes(2, "big") + block) == "bad-extension"


def test_encoder_names_bad_new_fields() -> None:
    b = w.BindingState(1, 2, 3, 4)
    with pytest.raises(ValueError, match="udp_port"):
        w.encode_record(w.RecordState(1, 2, 3, 4, 0, (w.BindingState(1, 2, 3, 4, 5, 70000),)))
    with pytest.raises(ValueError, match="udp_address"):
        w.encode_record(w.RecordState(1, 2, 3, 4, 0, (w.BindingState(1, 2, 3, 4, -1, 5),)))
    with pytest.raises(ValueError, match="nai"):
        w.encode_record(w.RecordState(1, 2, 3, 4, 0, (b,), b"n" * 256))


nais = st.one_of(st.just(b""), st.binary(min_size=1, max_size=255))
ext_bindings = st.builds(
    w.BindingState, u32, u16, u8, u32, st.one_of(st.just(0), u32), st.one_of(st.just(0), u16)
)
ext_records = st.one_of(
    st.builds(
        w.RecordState,
        u32,
        u32,
        u64,
        u64,
        st.just(0),
        st.lists(ext_bindings, min_size=1, max_size=4).map(tuple),
        nais,
    ),
    st.builds(w.RecordState, u32, u32, u64, u64, u32, st.just(()), nais),
)


@given(st.lists(ext_records, min_size=0, max_size=6))
@settings(max_examples=200)
def test_extended_records_round_trip(records: list[w.RecordState]) -> None:
    msg = w.BindingUpdate(1, 2, 3, 4, tuple(records))
    data = w.encode(msg, AUTH)
    assert len(data) == w.HEADER_LEN + sum(w.record_size(r) for r in records) + 38
    assert w.decode(data, AUTH) == msg
    got = w.decode_chunked(data, AUTH)
    if isinstance(got, w.BindingUpdateChunk):
        got = got.as_binding_update()
    assert got == msg
    ts = w.TableSync(1, 2, 3, 4, w.SyncCode.ACCEPTED, 9, True, (), tuple(records))
    tsd = w.decode_chunked(w.encode(ts, AUTH), AUTH)
    assert (tsd.as_table_sync() if isinstance(tsd, w.TableSyncChunk) else tsd) == ts


@given(st.binary(max_size=120))
@settings(max_examples=500)
def test_any_bytes_after_an_extended_header_decode_or_fail_cleanly(tail: bytes) -> None:
    """Any bytes as a record with the EXTENDED bit: a RecordState or SyncDecodeError."""
    for head in (EXT_LIVE_HEX, EXT_TOMB_HEX, EXT_TWO_HEX):
        raw = bytes.fromhex(head.replace(" ", ""))
        nbind = raw[25]
        fixed = raw[: 32 + 12 * nbind]
        try:
            msg = _decode_one(fixed + tail)
        except w.SyncDecodeError:
            continue
        assert isinstance(msg, w.BindingUpdate) and len(msg.records) == 1
        rec = msg.records[0]
        # whatever decodes re-encodes to the same bytes (one encoding per record)
        assert w.encode_record(rec) == fixed + tail


@given(st.binary(min_size=32, max_size=200))
@settings(max_examples=500)
def test_record_decoder_any_bytes(raw: bytes) -> None:
    r = wr._Reader(raw, 0, len(raw))
    try:
        rec = wr._decode_record(r)
    except w.SyncDecodeError:
        return
    assert w.encode_record(rec) == raw[: r.pos]


# --- the table <-> wire conversions -----------------------------------------------------------


def test_to_state_from_state_carry_the_new_fields() -> None:
    rec = _rec((Binding(1, 300, NOW + 300, 0), Binding(2, 300, NOW + 200, 0, 0xCB007101, 4500)))
    st_ = codec.to_state(rec, NOW)
    assert st_.nai == NAI and st_.bindings[1].udp_port == 4500
    back = codec.from_state(st_, NOW)
    assert back == rec
    t = BindingTable()
    t.put(rec, NOW)
    assert codec.state_of(t, rec.home_address, NOW) == st_
    tomb = MobilityRecord(3, V, 1, HA, (), NOW - 2.0, NAI)
    assert codec.from_state(codec.to_state(tomb, NOW), NOW) == tomb
    # a record whose bindings all ran out in flight becomes a tombstone that keeps its NAI
    gone = w.RecordState(4, HA, V, 1, 0, (w.BindingState(1, 30, 0, 0, 5, 6),), NAI)
    got = codec.from_state(gone, NOW)
    assert got.is_tombstone and got.nai == NAI and got.deleted_at == NOW


def test_chunk_body_and_update_bodies_send_extended_records_exactly() -> None:
    t = BindingTable()
    recs = [
        MobilityRecord(10, V, 1, HA, (Binding(1, 300, NOW + 300, 0),)),
        _rec((Binding(1, 300, NOW + 300, 0, 0xCB007101, 40001),)),
        MobilityRecord(11, V, 1, HA, (), NOW - 1, NAI),
        MobilityRecord(12, V, 1, HA, (Binding(1, 300, NOW + 300, 0),)),
    ]
    for r in recs:
        t.put(r, NOW)
    homes = t.homes_one_binding_first()
    want = [codec.state_of(t, h, NOW) for h in homes]
    body, count, pos = codec.chunk_body(t.packed_getter(), homes, 0, 10_000, NOW)
    assert count == 4 and pos == 4
    assert body == b"".join(w.encode_record(s) for s in want if s is not None)
    bodies = codec.update_bodies(t.packed_getter(), homes, 10_000, NOW)
    assert [b[0] for b in bodies] == [body]


# --- a group of engines, in memory ------------------------------------------------------------

C = ("127.0.0.3", 3)


class _Group:
    """Sync engines that pass datagrams to each other by endpoint (no sockets, no clock)."""

    def __init__(self) -> None:
        self.engines: dict[tuple[str, int], SyncEngine] = {}
        self.t = NOW

    def add(
        self,
        at: tuple[str, int],
        node: int,
        peers: tuple[tuple[str, int], ...],
        table: BindingTable,
    ) -> SyncEngine:
        e = SyncEngine(SyncSettings(node_id=node, peers=peers), table, AUTH, epoch=100 + node)
        self.engines[at] = e
        return e

    def run(self, until: Callable[[], bool], limit: int = 20_000) -> None:
        for _ in range(limit):
            moved = False
            for src, e in list(self.engines.items()):
                for data, dest in e.datagrams_to_send():
                    peer = self.engines.get(dest)
                    if peer is not None:
                        moved = True
                        peer.handle_datagram(data, src, self.t)
            if until() and not moved:
                return
            if not moved:
                self.t += 0.25
                for e in self.engines.values():
                    e.handle_timer(self.t)
        raise AssertionError("the group did not settle")


def _wire_view(rec: MobilityRecord | None) -> tuple[object, ...] | None:
    """What replication must carry exactly (expiry times differ by the transfer's ms rounding)."""
    if rec is None:
        return None
    bindings = tuple(
        (b.care_of_address, b.granted_lifetime, b.flags, b.udp_address, b.udp_port)
        for b in rec.bindings
    )
    return rec.home_address, rec.version, rec.last_id, rec.home_agent, bindings, rec.nai


def test_nai_and_nat_mapping_survive_updates_download_tombstones_and_older_updates() -> None:
    group = _Group()
    a = group.add(A, 1, (B,), BindingTable(900.0))
    b = group.add(B, 2, (A,), BindingTable(900.0))
    for e in (a, b):
        e.start(group.t)
    group.run(lambda: a.state is SyncState.SYNCED and b.state is SyncState.SYNCED)
    t = group.t
    nat_home, plain_home, gone_home = 0x0A000050, 0x0A000051, 0x0A000052
    # plain records too, so the download's chunks mix plain and extended records
    for i in range(300):
        rec = MobilityRecord(
            0x0A010000 + i, make_version(2, 1), i, HA, (Binding(0xC0000100 + i, 600, t + 600, 0),)
        )
        a.table.put(rec, t)
        a.local_change(rec, t)
    nat = MobilityRecord(
        nat_home,
        make_version(3, 1),
        11,
        HA,
        (
            Binding(0xC0000001, 600, t + 600, 0, 0xCB007101, 40001),
            Binding(0xC0000002, 600, math.inf, 0x80),
        ),
        0.0,
        b"nat@example.com",
    )
    plain_nai = MobilityRecord(
        plain_home,
        make_version(3, 1),
        12,
        HA,
        (Binding(0xC0000003, 600, t + 600, 0),),
        0.0,
        b"pool@example.com",
    )
    first = MobilityRecord(
        gone_home,
        make_version(3, 1),
        13,
        HA,
        (Binding(0xC0000004, 600, t + 600, 0, 0xCB007102, 4500),),
        0.0,
        b"gone@example.com",
    )
    for rec in (nat, plain_nai, first):
        a.table.put(rec, t)
        a.local_change(rec, t)
    group.run(lambda: a.queue_depth() == 0)
    for home in (nat_home, plain_home, gone_home):
        assert _wire_view(b.table.get(home)) == _wire_view(a.table.get(home))
    got = b.table.get(nat_home)
    assert got is not None and got.bindings[1].expires == math.inf
    assert b.table.digest() == a.table.digest()

    # the mobile node deregisters at A: B holds a tombstone that keeps the NAI
    t = group.t
    tomb = MobilityRecord(gone_home, make_version(4, 1), 14, HA, (), 0.0, b"gone@example.com")
    a.table.store(tomb, t)
    a.local_change(tomb, t)
    group.run(lambda: a.queue_depth() == 0)
    held = b.table.get(gone_home)
    assert held is not None and held.is_tombstone and held.nai == b"gone@example.com"
    assert held.version == make_version(4, 1)

    # an older update (the first registration, sent again with a fresh sequence) is refused
    old = codec.to_state(first, group.t)
    ctx = a.context
    data = w.encode(w.BindingUpdate(ctx.settings.group, 1, ctx.next_sequence(), 999, (old,)), AUTH)
    received = b.counters.received_bus
    b.handle_datagram(data, A, group.t)
    assert b.counters.received_bus == received + 1  # delivered and merged, not dropped
    assert _wire_view(b.table.get(gone_home)) == _wire_view(held)

    # a member that boots downloads all of it: a persisting table, then its journal
    c_table = JournaledTable(900.0)
    c = group.add(C, 3, (A, B), c_table)
    c.start(group.t)
    group.run(lambda: c.state is SyncState.SYNCED)
    for home in a.table.homes():
        assert _wire_view(c.table.get(home)) == _wire_view(a.table.get(home))
    assert c.table.digest() == a.table.digest() and len(c.table) == len(a.table) == 302
    ctomb = c.table.get(gone_home)
    assert ctomb is not None and ctomb.is_tombstone and ctomb.nai == b"gone@example.com"
    wall = 1_700_000_000.0
    disk = journal.decode(journal.encode_all(c.table.records(), group.t, wall)).records
    back = {r.home_address: r for r in journal.from_disk(disk.values(), group.t, wall, 900.0)}
    assert back[nat_home].bindings[0].udp_port == 40001 and back[nat_home].nai == b"nat@example.com"
    assert back[gone_home].is_tombstone and back[gone_home].nai == b"gone@example.com"
    # a binding expiring on every member leaves the same tombstone (NAI kept) everywhere
    end = group.t + 700
    for e in (a, b, c):
        e.table.expire(end)
    views = [_wire_view(e.table.get(plain_home)) for e in (a, b, c)]
    assert views[0] == views[1] == views[2]
    expired = a.table.get(plain_home)
    assert expired is not None and expired.is_tombstone and expired.nai == b"pool@example.com"


# --- the Wireshark dissector (contrib/wireshark/mobileip-sync.lua) ------------------------------


def _udp434(payload: bytes) -> bytes:
    """An IPv4/UDP packet 127.0.0.1:434 -> 127.0.0.2:434 around ``payload``."""
    udp = struct.pack("!HHHH", 434, 434, 8 + len(payload), 0) + payload
    head = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, b"\x7f\0\0\1", b"\x7f\0\0\2"
    )
    return head + udp


def test_lua_dissector_reads_the_golden_extended_records(tmp_path: Path) -> None:
    """tshark with our Lua dissector shows the NAI and NAT mappings of the golden vectors, and
    finds the plain record and the authentication extension after them where they are."""
    if shutil.which("tshark") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("tshark missing: scripts/test installs it when root")
        pytest.skip("needs tshark")
    from pcapio import write_pcap

    plain = w.RecordState(0x0A000013, HA, V, 1, 0, (w.BindingState(0xC0000005, 60, 0, 500),))
    msg = w.BindingUpdate(1, 0x7F000001, 5, 9, (EXT_LIVE, EXT_TOMB, EXT_TWO, plain))
    pcap = tmp_path / "ext.pcap"
    write_pcap(pcap, [_udp434(w.encode(msg, AUTH))])
    lua = Path(__file__).resolve().parent.parent / "contrib" / "wireshark" / "mobileip-sync.lua"
    fields = [
        "mipsync.record.home_address",
        "mipsync.record.extended",
        "mipsync.record.ext.length",
        "mipsync.record.nai",
        "mipsync.record.udp.binding",
        "mipsync.record.udp.address",
        "mipsync.record.udp.port",
        "mipsync.auth.spi",
        "_ws.expert.message",
    ]
    cmd = ["tshark", "-r", str(pcap), "-X", f"lua_script:{lua}", "-T", "fields"]
    cmd += ["-E", "occurrence=a", "-E", "aggregator=|"]
    for name in fields:
        cmd += ["-e", name]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    [row] = [line.split("\t") for line in out.stdout.splitlines()]
    got = dict(zip(fields, row, strict=True))
    assert got["mipsync.record.home_address"] == "10.0.0.16|10.0.0.17|10.0.0.18|10.0.0.19"
    assert got["mipsync.record.extended"] in ("1|1|1|0", "True|True|True|False")
    assert got["mipsync.record.ext.length"] == "27|18|10"
    assert got["mipsync.record.nai"] == "mn1@example.com|gone@example.com"
    assert got["mipsync.record.udp.binding"] == "0|1"
    assert got["mipsync.record.udp.address"] == "203.0.113.1|1.2.3.4"
    assert got["mipsync.record.udp.port"] == "40001|434"
    assert got["mipsync.auth.spi"] == str(AUTH.send_key.spi)
    assert got["_ws.expert.message"] == ""
