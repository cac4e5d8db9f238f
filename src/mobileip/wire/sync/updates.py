"""HA-HA sync: Binding Update and Binding Update Ack, the reliable updates (docs/sync-protocol.md,
"Binding Update (type 64, FIG 10)" and "Binding Update Ack (type 65, FIG 11)").

A Binding Update carries records (live or tombstones) to every member; each member answers with
a Binding Update Ack naming the home addresses it took. :class:`BindingUpdateChunk` and
:func:`encode_binding_update_records` are the registrations' fast paths (records of one binding
kept in wire form); the Ack's fast path, ``encode_binding_update_ack``, is in
:mod:`mobileip.wire.sync.codec` beside ``encode``, which it falls back on.
"""

from __future__ import annotations

from dataclasses import dataclass

from mobileip.wire.sync.auth import GroupAuth
from mobileip.wire.sync.header import (
    _HEADER,
    MAX_DATAGRAM,
    SYNC_VERSION,
    MsgType,
    _check,
    _check_count,
)
from mobileip.wire.sync.records import RecordState, _homes_of_one, _records_of_one


@dataclass(frozen=True, slots=True)
class BindingUpdate:
    """FIG 10: records (live or tombstones) the sender wants every member to hold."""

    group: int
    sender: int
    sequence: int
    identification: int
    records: tuple[RecordState, ...]


@dataclass(frozen=True, slots=True)
class BindingUpdateAck:
    """FIG 11: the result of a BindingUpdate, echoing its identification and home addresses."""

    group: int
    sender: int
    sequence: int
    identification: int
    code: int
    homes: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class BindingUpdateChunk:
    """A Binding Update whose records all have exactly one binding (registrations: the common
    case), left in wire form: ``body`` is ``count`` records in the ``RECORD_ONE`` layout, already
    checked as :func:`decode` checks them. Only :func:`decode_chunked` returns it, so a member
    merges Binding Updates without a :class:`RecordState` per record; :meth:`as_binding_update`
    gives what :func:`decode` returns for the same bytes."""

    group: int
    sender: int
    sequence: int
    identification: int
    count: int
    body: bytes

    @property
    def homes(self) -> tuple[int, ...]:
        return _homes_of_one(self.body)

    def as_binding_update(self) -> BindingUpdate:
        records = _records_of_one(self.body)
        return BindingUpdate(self.group, self.sender, self.sequence, self.identification, records)


def encode_binding_update_records(
    group: int,
    sender: int,
    sequence: int,
    identification: int,
    count: int,
    body: bytes,
    auth: GroupAuth,
) -> bytes:
    """A Binding Update whose ``count`` records are already encoded in ``body``
    (:func:`encode_record_one`, :func:`encode_record`): the same bytes as :func:`encode` of the
    :class:`BindingUpdate` with those records."""
    _check("group", group, 16)
    _check("sender", sender, 32)
    _check("sequence", sequence, 64)
    _check("identification", identification, 64)
    _check_count("items in a BINDING_UPDATE message", count)
    head = _HEADER.pack(
        MsgType.BINDING_UPDATE, SYNC_VERSION, 0, 0, group, count, sender, sequence, identification
    )
    data = auth.sign(head + body)
    if len(data) > MAX_DATAGRAM:
        raise ValueError(f"message of {len(data)} bytes exceeds a UDP datagram ({MAX_DATAGRAM})")
    return data
