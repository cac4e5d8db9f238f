"""Conversions between the binding table's records and their wire form, and packing into datagrams.

On the wire a record carries *remaining* lifetimes (ms) instead of monotonic expiry times, so no
clock sync between members is needed: the receiver adds them to its own ``now``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator

from mobileip.core.bindings import INFINITE, Binding, BindingTable, MobilityRecord
from mobileip.wire import sync as wire

_INF_MS = wire.INFINITE_MS


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
            )
            for b in rec.bindings
        ]
    )
    age = 0 if rec.bindings else max(0, min(0xFFFFFFFF, int((now - rec.deleted_at) * 1000)))
    return wire.RecordState(
        rec.home_address, rec.home_agent, rec.version, rec.last_id, age, bindings
    )


def state_of(table: BindingTable, home: int, now: float) -> wire.RecordState | None:
    """``to_state(table.get(home), now)`` without building the dataclasses in between (the
    bulk download sends every record of the table through here)."""
    fields = table.fields(home)
    if fields is None:
        return None
    home_, ha, version, last_id, deleted_at, raw = fields
    bindings = tuple(
        [
            wire.BindingState(
                coa,
                granted,
                flags,
                _INF_MS
                if expires == INFINITE
                else max(0, min(_INF_MS - 1, int((expires - now) * 1000))),
            )
            for coa, granted, flags, expires in raw
        ]
    )
    age = 0 if raw else max(0, min(0xFFFFFFFF, int((now - deleted_at) * 1000)))
    return wire.RecordState(home_, ha, version, last_id, age, bindings)


def from_state(st: wire.RecordState, now: float) -> MobilityRecord:
    bindings = tuple(
        [
            Binding(
                b.care_of_address,
                _shared(b.granted_lifetime),
                INFINITE if b.remaining_ms == _INF_MS else now + b.remaining_ms / 1000.0,
                b.flags,
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
        st.home_address, st.version, st.last_id, _shared(st.home_agent), bindings, deleted_at
    )


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
