"""Conversions between the binding table's records and their wire form, and packing into datagrams.

On the wire a record carries *remaining* lifetimes (ms) instead of monotonic expiry times, so no
clock sync between members is needed: the receiver adds them to its own ``now``.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Iterable, Iterator

from mobileip.core.bindings import (
    INFINITE,
    PACKED_ONE,
    PACKED_ONE_SIZE,
    Binding,
    BindingTable,
    MobilityRecord,
    RecordFields,
    unpack_fields,
)
from mobileip.wire import sync as wire

_INF_MS = wire.INFINITE_MS
_ORDER = struct.Struct("=QQ")  # version, last identification: offset 8 of a packed record


def to_state(rec: MobilityRecord, now: float) -> wire.RecordState:
    # list comprehensions, not generators: this runs once per record in a bulk download
    bindings = tuple(
        [
            wire.BindingState(
                b.care_of_address,
                b.granted_lifetime,
                b.flags,
                _INF_MS
                if b.expires == INFINITE
                else max(0, min(_INF_MS - 1, int((b.expires - now) * 1000))),
                b.udp_address,
                b.udp_port,
            )
            for b in rec.bindings
        ]
    )
    age = 0 if rec.bindings else max(0, min(0xFFFFFFFF, int((now - rec.deleted_at) * 1000)))
    return wire.RecordState(
        rec.home_address, rec.home_agent, rec.version, rec.last_id, age, bindings, rec.nai
    )


def state_of(table: BindingTable, home: int, now: float) -> wire.RecordState | None:
    """``to_state(table.get(home), now)`` without building the dataclasses in between."""
    fields = table.fields(home)
    if fields is None:
        return None
    return _state_of_fields(fields, now)


def _state_of_blob(blob: bytes, now: float) -> wire.RecordState:
    return _state_of_fields(unpack_fields(blob), now)


def _state_of_fields(fields: RecordFields, now: float) -> wire.RecordState:
    home_, ha, version, last_id, deleted_at, raw, nai = fields
    bindings = tuple(
        [
            wire.BindingState(
                coa,
                granted,
                flags,
                _INF_MS
                if expires == INFINITE
                else max(0, min(_INF_MS - 1, int((expires - now) * 1000))),
                udp_address,
                udp_port,
            )
            for coa, granted, flags, expires, udp_address, udp_port in raw
        ]
    )
    age = 0 if raw else max(0, min(0xFFFFFFFF, int((now - deleted_at) * 1000)))
    return wire.RecordState(home_, ha, version, last_id, age, bindings, nai)


def from_state(st: wire.RecordState, now: float) -> MobilityRecord:
    bindings = tuple(
        [
            Binding(
                b.care_of_address,
                _shared(b.granted_lifetime),
                INFINITE if b.remaining_ms == _INF_MS else now + b.remaining_ms / 1000.0,
                b.flags,
                b.udp_address,
                b.udp_port,
            )
            for b in st.bindings
            if b.remaining_ms > 0
        ]
    )
    deleted_at = 0.0
    if not bindings:
        # a tombstone keeps its age; a record whose bindings all ran out in flight is one now
        deleted_at = now - st.tombstone_age_ms / 1000.0 if not st.bindings else now
        deleted_at = math.nextafter(deleted_at, math.inf) if deleted_at == 0.0 else deleted_at
    return MobilityRecord(
        st.home_address,
        st.version,
        st.last_id,
        _shared(st.home_agent),
        bindings,
        deleted_at,
        st.nai,
    )


def chunk_body(
    get: Callable[[int], bytes | None], homes: list[int], pos: int, budget: int, now: float
) -> tuple[bytes, int, int]:
    """The records of ``homes[pos:]`` (looked up with ``get``, a table's packed getter; homes
    without a record are skipped) in wire form, as many as fit in ``budget`` bytes (at least
    one): (body, records in it, index of the next home). The same bytes as encoding
    ``state_of`` of each record, without building them: the bulk download's sender."""
    parts: list[bytes] = []
    append = parts.append
    pack_one = wire.RECORD_ONE.pack
    one_len = PACKED_ONE_SIZE
    unpack_one = PACKED_ONE.unpack
    inf_ms = _INF_MS
    used = 0
    end = len(homes)
    while pos < end:
        blob = get(homes[pos])
        if blob is None:
            pos += 1
            continue
        if len(blob) == one_len:
            if parts and used + wire.RECORD_ONE_LEN > budget:
                break
            home, ha, version, last_id, _deleted, _n, coa, granted, flags, expires = unpack_one(
                blob
            )
            if expires == INFINITE:
                remaining = inf_ms
            else:
                remaining = int((expires - now) * 1000)
                remaining = 0 if remaining < 0 else inf_ms - 1 if remaining >= inf_ms else remaining
            try:
                append(
                    pack_one(
                        home, ha, version, last_id, 0, 1, 0, 0, coa, granted, flags, 0, remaining
                    )
                )
            except struct.error:  # names the field that does not fit (ValueError)
                append(wire.encode_record(_state_of_blob(blob, now)))
            used += wire.RECORD_ONE_LEN
        else:
            state = _state_of_blob(blob, now)
            size = wire.record_size(state)
            if parts and used + size > budget:
                break
            append(wire.encode_record(state))
            used += size
        pos += 1
    return b"".join(parts), len(parts), pos


def update_bodies(
    get: Callable[[int], bytes | None], homes: Iterable[int], budget: int, now: float
) -> list[tuple[bytes, int, list[int], list[int]]]:
    """The records of ``homes`` (looked up with ``get``, a table's packed getter; homes without
    a record are skipped) in wire form, grouped into Binding Update bodies of at most ``budget``
    bytes (at least one record each): (body, records in it, their homes, their versions). The
    same bodies as ``pack([state_of(...) for each home], budget)`` encoded, without building
    them: every local change leaves through here."""
    out: list[tuple[bytes, int, list[int], list[int]]] = []
    parts: list[bytes] = []
    sent_homes: list[int] = []
    versions: list[int] = []
    pack_one = wire.RECORD_ONE.pack
    one_len = PACKED_ONE_SIZE
    unpack_one = PACKED_ONE.unpack
    inf_ms = _INF_MS
    used = 0
    for home in homes:
        blob = get(home)
        if blob is None:
            continue
        if len(blob) == one_len:
            size = wire.RECORD_ONE_LEN
            _h, ha, version, last_id, _deleted, _n, coa, granted, flags, expires = unpack_one(blob)
            if expires == INFINITE:
                remaining = inf_ms
            else:
                remaining = int((expires - now) * 1000)
                remaining = 0 if remaining < 0 else inf_ms - 1 if remaining >= inf_ms else remaining
            try:
                data = pack_one(
                    home, ha, version, last_id, 0, 1, 0, 0, coa, granted, flags, 0, remaining
                )
            except struct.error:  # names the field that does not fit (ValueError)
                data = wire.encode_record(_state_of_blob(blob, now))
        else:
            state = _state_of_blob(blob, now)
            version = state.version
            size = wire.record_size(state)
            data = wire.encode_record(state)
        if parts and used + size > budget:
            out.append((b"".join(parts), len(parts), sent_homes, versions))
            parts, sent_homes, versions, used = [], [], [], 0
        parts.append(data)
        sent_homes.append(home)
        versions.append(version)
        used += size
    if parts:
        out.append((b"".join(parts), len(parts), sent_homes, versions))
    return out


def apply_update(
    table: BindingTable,
    body: bytes,
    now: float,
    merge: Callable[[MobilityRecord, float], bool],
    ordered_identifications: bool,
) -> tuple[list[int], list[int]]:
    """Merge a Binding Update's one-binding records (``body``, ``RECORD_ONE`` layout), in
    order: (every home address in it, the ones that changed our table). A record newer by
    version than ours (or for a home we hold nothing of) is packed straight from the wire and
    stored with :meth:`BindingTable.put_packed`; a record not newer is skipped; the rare cases
    (its binding ran out in flight; with ``ordered_identifications``, a newer version that
    answered an older request than ours) go through ``merge`` (the engine's merge by version)
    as a decoded record would. The result is the same table as
    ``merge(from_state(st, now), now)`` for each record in order."""
    get = table.packed_getter()
    put_packed = table.put_packed
    pack = PACKED_ONE.pack
    order_at = _ORDER.unpack_from
    inf_ms = _INF_MS
    homes: list[int] = []
    applied: list[int] = []
    for (
        home,
        ha,
        version,
        last_id,
        _s,
        _n,
        _r,
        _a,
        coa,
        granted,
        flags,
        _b,
        remaining,
    ) in wire.RECORD_ONE.iter_unpack(body):
        homes.append(home)
        old = get(home)
        if old is not None:
            old_version, old_last_id = order_at(old, 8)
            if old_version >= version:
                continue  # ours is as new or newer: merge would not apply it
            general = ordered_identifications and last_id < old_last_id
        else:
            general = False
        if general or remaining == 0:
            binding = wire.BindingState(coa, granted, flags, remaining)
            state = wire.RecordState(home, ha, version, last_id, 0, (binding,))
            if merge(from_state(state, now), now):
                applied.append(home)
            continue
        expires = INFINITE if remaining == inf_ms else now + remaining / 1000.0
        put_packed(
            home,
            pack(home, ha, version, last_id, 0.0, 1, coa, granted, flags, expires),
            version,
            expires,
            True,
        )
        applied.append(home)
    return homes, applied


def apply_chunk(
    table: BindingTable,
    chunk: wire.TableSyncChunk,
    now: float,
    merge: Callable[[MobilityRecord, float], bool],
) -> list[int]:
    """Apply a chunk of one-binding records; return the home addresses that changed our table.

    A record for a home address we hold no record of is packed straight from the wire and
    stored with the others in one :meth:`BindingTable.insert_new` (a booting member's table is
    empty); any other record (we hold one, or its binding ran out in flight) goes through
    ``merge`` (the engine's merge by version) exactly as a decoded record would. The result is
    the same table as ``merge(from_state(st, now), now)`` for each record in order.
    """
    get = table.packed_getter()
    pack = PACKED_ONE.pack
    inf_ms = _INF_MS
    homes: list[int] = []
    blobs: list[bytes] = []
    versions: list[int] = []
    wakeups: list[float] = []
    others: list[wire.RecordState] = []
    for (
        home,
        ha,
        version,
        last_id,
        _s,
        _n,
        _r,
        _a,
        coa,
        granted,
        flags,
        _b,
        remaining,
    ) in wire.RECORD_ONE.iter_unpack(chunk.body):
        if remaining == 0 or get(home) is not None:
            binding = wire.BindingState(coa, granted, flags, remaining)
            others.append(wire.RecordState(home, ha, version, last_id, 0, (binding,)))
            continue
        expires = INFINITE if remaining == inf_ms else now + remaining / 1000.0
        homes.append(home)
        blobs.append(pack(home, ha, version, last_id, 0.0, 1, coa, granted, flags, expires))
        versions.append(version)
        wakeups.append(expires)
    if len(set(homes).union([st.home_address for st in others])) != chunk.count:
        # a home address twice in one chunk (no sender of ours does that): one by one, in order
        return [
            st.home_address
            for st in chunk.as_table_sync().records
            if merge(from_state(st, now), now)
        ]
    table.insert_new(homes, blobs, versions, wakeups, len(homes))
    for st in others:
        if merge(from_state(st, now), now):
            homes.append(st.home_address)
    return homes


# Values that repeat across the whole table (the home agent address, granted lifetimes) share
# one int object instead of 28 bytes each per record. Bounded: values beyond it are not shared.
_SHARED: dict[int, int] = {}
_MAX_SHARED = 4096


def _shared(value: int) -> int:
    got = _SHARED.get(value)
    if got is not None:
        return got
    if len(_SHARED) < _MAX_SHARED:
        _SHARED[value] = value
    return value


def pack(states: Iterable[wire.RecordState], budget: int) -> Iterator[list[wire.RecordState]]:
    """Group records into lists whose encoded size stays within ``budget`` bytes (at least one)."""
    batch: list[wire.RecordState] = []
    used = 0
    for st in states:
        size = wire.record_size(st)
        if batch and used + size > budget:
            yield batch
            batch, used = [], 0
        batch.append(st)
        used += size
    if batch:
        yield batch
