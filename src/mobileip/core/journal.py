"""The on-disk form of the binding table: framed records for a journal and a snapshot, sans-IO.

A file (journal or snapshot) is a magic header followed by entries:

    entry  = length u32 | crc32 u32 | body (length bytes)
    body   = home u32 | home_agent u32 | version u64 | last_id u64 | deleted_wall f64 | nbind u8
             | nbind x (coa u32 | granted u16 | flags u8 | expires_wall f64)
             [ | nai_len u8 | nai | nbind x (udp_address u32 | udp_port u16) ]

The bracketed trailer is present only for a record with an NAI or a NAT mapping (a binding's
RFC 3519 UDP tunnel endpoint); a plain record's entry is byte for byte what it was before the
trailer existed. (Code older than the trailer reads an entry with one as a torn tail.)

Times on disk are **wall-clock** seconds (Unix time): a monotonic clock restarts with the
machine, the wall clock does not. :func:`to_disk` converts the table's monotonic expiry times with
``wall - now``; :func:`from_disk` converts them back at load time with the new boot's offset, so
a binding's remaining lifetime shrinks by the time the member was down, and bindings that ran out
meanwhile are dropped (a record left with none becomes a tombstone aged by the downtime). An
infinite lifetime is stored as ``inf``.

A journal is appended to; the last entry for a home address wins. A power cut can leave a torn
entry at the end: :func:`decode` stops at the first entry whose length runs past the end or whose
CRC does not match, and reports how many bytes it trusted (the caller truncates the rest).
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from mobileip.core.bindings import INFINITE, Binding, MobilityRecord

MAGIC = b"MIPJ\x00\x01\x00\x00"  # "MIPJ", format 1
_FRAME = struct.Struct("!II")  # length, crc32
_RECORD = struct.Struct("!IIQQdB")
_BINDING = struct.Struct("!IHBd")
_UDP = struct.Struct("!IH")
MAX_ENTRY = _RECORD.size + 255 * _BINDING.size + 1 + 255 + 255 * _UDP.size


@dataclass(frozen=True, slots=True)
class Decoded:
    records: dict[int, MobilityRecord]  # home address -> last entry, times still wall-clock
    entries: int
    good_bytes: int  # bytes from the start that decoded cleanly (the rest is a torn tail)
    torn: bool


def encode_entry(rec: MobilityRecord, now: float, wall: float) -> bytes:
    """One framed entry for ``rec`` (monotonic times at ``now`` become wall-clock at ``wall``)."""
    offset = wall - now
    deleted = rec.deleted_at + offset if not rec.bindings else 0.0
    parts = [
        _RECORD.pack(
            rec.home_address, rec.home_agent, rec.version, rec.last_id, deleted, len(rec.bindings)
        )
    ]
    for b in rec.bindings:
        expires = math.inf if b.expires == INFINITE else b.expires + offset
        parts.append(_BINDING.pack(b.care_of_address, b.granted_lifetime, b.flags, expires))
    if rec.nai or any(b.udp_address or b.udp_port for b in rec.bindings):
        parts.append(bytes((len(rec.nai),)) + rec.nai)
        parts.extend(_UDP.pack(b.udp_address, b.udp_port) for b in rec.bindings)
    body = b"".join(parts)
    return _FRAME.pack(len(body), zlib.crc32(body)) + body


def encode_all(records: Iterable[MobilityRecord], now: float, wall: float) -> bytes:
    """A whole snapshot file."""
    return MAGIC + b"".join(encode_entry(r, now, wall) for r in records)


def _decode_body(body: bytes) -> MobilityRecord:
    home, ha, version, last_id, deleted, nbind = _RECORD.unpack_from(body)
    end = _RECORD.size + nbind * _BINDING.size
    nai = b""
    udp = [(0, 0)] * nbind
    if len(body) != end:
        if len(body) < end + 1 or len(body) != end + 1 + body[end] + nbind * _UDP.size:
            raise ValueError("entry length does not match its binding count")
        nai = body[end + 1 : end + 1 + body[end]]
        start = end + 1 + len(nai)
        udp = [_UDP.unpack_from(body, start + i * _UDP.size) for i in range(nbind)]
    bindings = tuple(
        Binding(coa, granted, expires, flags, *udp[i])
        for i, (coa, granted, flags, expires) in enumerate(
            _BINDING.unpack_from(body, _RECORD.size + i * _BINDING.size) for i in range(nbind)
        )
    )
    return MobilityRecord(home, version, last_id, ha, bindings, deleted, nai)


def decode(data: bytes) -> Decoded:
    """Every entry of a journal or snapshot (see the module doc for torn tails).

    Raises ValueError when ``data`` is not empty and does not start with the magic header.
    """
    if not data:
        return Decoded({}, 0, 0, False)
    if not data.startswith(MAGIC):
        raise ValueError("not a mobileip journal (bad magic)")
    records: dict[int, MobilityRecord] = {}
    pos = len(MAGIC)
    entries = 0
    while pos < len(data):
        if pos + _FRAME.size > len(data):
            break
        length, crc = _FRAME.unpack_from(data, pos)
        start = pos + _FRAME.size
        if length > MAX_ENTRY or start + length > len(data):
            break
        body = data[start : start + length]
        if zlib.crc32(body) != crc:
            break
        try:
            rec = _decode_body(body)
        except (ValueError, struct.error):
            break
        records[rec.home_address] = rec
        entries += 1
        pos = start + length
    return Decoded(records, entries, pos, pos != len(data))


def from_disk(
    records: Iterable[MobilityRecord], now: float, wall: float, tombstone_ttl: float
) -> Iterator[MobilityRecord]:
    """Records as the table holds them at monotonic ``now`` (wall-clock ``wall``).

    Bindings whose wall-clock expiry has passed are dropped; a record left without bindings is a
    tombstone deleted when its last binding ran out; tombstones older than ``tombstone_ttl`` are
    not returned at all.
    """
    offset = now - wall
    for rec in records:
        keep = tuple(
            Binding(
                b.care_of_address,
                b.granted_lifetime,
                INFINITE if math.isinf(b.expires) else b.expires + offset,
                b.flags,
                b.udp_address,
                b.udp_port,
            )
            for b in rec.bindings
            if b.expires > wall
        )
        if keep:
            yield MobilityRecord(
                rec.home_address, rec.version, rec.last_id, rec.home_agent, keep, 0.0, rec.nai
            )
            continue
        # a record whose bindings all ran out while we were down became a tombstone then
        deleted_wall = max(b.expires for b in rec.bindings) if rec.bindings else rec.deleted_at
        if wall - deleted_wall >= tombstone_ttl:
            continue
        deleted = deleted_wall + offset
        deleted = math.nextafter(0.0, 1.0) if deleted == 0.0 else deleted
        yield MobilityRecord(
            rec.home_address, rec.version, rec.last_id, rec.home_agent, (), deleted, rec.nai
        )
