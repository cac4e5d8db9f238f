"""HA-HA sync: records and bindings, the items of Binding Updates and Table Syncs
(docs/sync-protocol.md, "Records and bindings").

A record is one mobile node's entry (32 bytes), followed by its bindings (12 bytes each); a
record without bindings is a tombstone. The hot paths (bulk download, registrations) move
records of exactly one binding: :data:`RECORD_ONE` packs or unpacks such a record (44 bytes) in
one ``struct`` call, and :func:`_one_binding_body` checks a whole body of them at once.

A record with an NAI (RFC 2794) or a binding with a NAT mapping (RFC 3519) sets the state bit
EXTENDED and carries an extension block after its bindings (``ExtLen`` u16, then TLVs: type u8,
length u8, value): :data:`EXT_NAI` (the NAI), :data:`EXT_UDP_TUNNEL` (binding index u8, reserved
u8, UDP address u32, UDP port u16). A record without them encodes exactly as before.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable
from dataclasses import dataclass

from mobileip.wire.sync.header import SyncDecodeError, _check, _check_count, _Reader

INFINITE_MS = 0xFFFFFFFF
INFINITE_LIFETIME = 0xFFFF


class RecordFlag(enum.IntFlag):
    TOMBSTONE = 0x01
    EXTENDED = 0x02  # an extension block follows the bindings


_TOMBSTONE = int(RecordFlag.TOMBSTONE)  # a plain int: IntFlag arithmetic is slow per record
_EXTENDED = int(RecordFlag.EXTENDED)
_STATE_BITS = _TOMBSTONE | _EXTENDED

EXT_NAI = 1  # value: the mobile node's NAI, 1..255 bytes
EXT_UDP_TUNNEL = 2  # value: binding index u8, reserved u8, UDP address u32, UDP port u16
MAX_NAI_LEN = 255

_RECORD = struct.Struct("!IIQQBBHI")  # home ha version last_id state nbind reserved tomb_age
_BINDING = struct.Struct("!IHBBI")  # coa granted flags reserved remaining_ms
# a record with exactly one binding, in one struct call (the bulk download's common case)
_RECORD_ONE = struct.Struct("!IIQQBBHIIHBBI")
_HOME_OF_ONE = struct.Struct("!I40x")  # the home address of a RECORD_ONE record
_EXT_LEN = struct.Struct("!H")  # the extension block's length (of the TLVs after it)
_TLV = struct.Struct("!BB")  # type, length
_UDP_TUNNEL = struct.Struct("!BBBBIH")  # type 2, length 8, binding index, reserved, address, port
UDP_TUNNEL_TLV_LEN = _UDP_TUNNEL.size  # 10

RECORD_ONE = _RECORD_ONE  # for the bulk codec (mobileip.sync.records)
RECORD_ONE_LEN = _RECORD_ONE.size  # 44
RECORD_HEADER_LEN = _RECORD.size  # 32
BINDING_LEN = _BINDING.size  # 12
MAX_BINDINGS = 255


@dataclass(frozen=True, slots=True)
class BindingState:
    """One care-of address binding, time-independent (remaining lifetime, not an expiry time)."""

    care_of_address: int  # IPv4 as int
    granted_lifetime: int  # u16 seconds (0xffff infinite)
    flags: int  # u8, the registration request flags
    remaining_ms: int  # u32 milliseconds left (INFINITE_MS = infinite)
    udp_address: int = 0  # RFC 3519 NAT mapping, IPv4 as int (0 and port 0: none)
    udp_port: int = 0  # u16


@dataclass(frozen=True, slots=True)
class RecordState:
    """One mobile node's record; a tombstone when ``bindings == ()``."""

    home_address: int  # u32
    home_agent: int  # u32
    version: int  # u64 (counter << 32 | origin node id)
    last_id: int  # u64 last identification answered
    tombstone_age_ms: int  # u32, ms since it became a tombstone (0 for live records)
    bindings: tuple[BindingState, ...]  # up to 255
    nai: bytes = b""  # RFC 2794 NAI, 0..255 bytes (b"": none); a tombstone keeps it

    @property
    def is_tombstone(self) -> bool:
        return not self.bindings


# The dataclass-generated __init__ of a frozen class sets each field with object.__setattr__;
# setting the slots through their descriptors costs less, which keeps the general decoder as
# fast with the NAI and NAT mapping fields as it was without them (the same pattern as
# core/bindings.py; tests/test_records_ext.py checks the parameters against the fields).
_Setters = tuple[Callable[[object, object], None], ...]


def _slot_setters(cls: type, names: str) -> _Setters:
    return tuple(getattr(cls, name).__set__ for name in names.split())


_BS_SET = _slot_setters(
    BindingState, "care_of_address granted_lifetime flags remaining_ms udp_address udp_port"
)
_RS_SET = _slot_setters(
    RecordState, "home_address home_agent version last_id tombstone_age_ms bindings nai"
)


def _binding_state_init(
    self: BindingState,
    care_of_address: int,
    granted_lifetime: int,
    flags: int,
    remaining_ms: int,
    udp_address: int = 0,
    udp_port: int = 0,
    _s: _Setters = _BS_SET,
) -> None:
    _s[0](self, care_of_address)
    _s[1](self, granted_lifetime)
    _s[2](self, flags)
    _s[3](self, remaining_ms)
    _s[4](self, udp_address)
    _s[5](self, udp_port)


def _record_state_init(
    self: RecordState,
    home_address: int,
    home_agent: int,
    version: int,
    last_id: int,
    tombstone_age_ms: int,
    bindings: tuple[BindingState, ...],
    nai: bytes = b"",
    _s: _Setters = _RS_SET,
) -> None:
    _s[0](self, home_address)
    _s[1](self, home_agent)
    _s[2](self, version)
    _s[3](self, last_id)
    _s[4](self, tombstone_age_ms)
    _s[5](self, bindings)
    _s[6](self, nai)


setattr(BindingState, "__init__", _binding_state_init)  # noqa: B010 - mypy refuses the method
setattr(RecordState, "__init__", _record_state_init)  # noqa: B010


def _mappings(rec: RecordState) -> list[tuple[int, BindingState]]:
    """(index, binding) of the bindings with a NAT mapping."""
    return [(i, b) for i, b in enumerate(rec.bindings) if b.udp_address or b.udp_port]


def _extension_size(rec: RecordState) -> int:
    """Bytes of ``rec``'s extension block (0: it has none)."""
    nai = rec.nai
    mapped = len(_mappings(rec))
    if not nai and not mapped:
        return 0
    return _EXT_LEN.size + (_TLV.size + len(nai) if nai else 0) + UDP_TUNNEL_TLV_LEN * mapped


def record_size(rec: RecordState) -> int:
    """Bytes ``rec`` takes on the wire."""
    size = RECORD_HEADER_LEN + BINDING_LEN * len(rec.bindings)
    if rec.nai:
        return size + _extension_size(rec)
    for b in rec.bindings:
        if b.udp_address or b.udp_port:
            return size + _extension_size(rec)
    return size


def is_extended(rec: RecordState) -> bool:
    """Whether ``rec`` needs the extension block (an NAI or a NAT mapping)."""
    return bool(rec.nai) or any([b.udp_address or b.udp_port for b in rec.bindings])


# --- encoding ---------------------------------------------------------------------------------


def _encode_record(rec: RecordState, out: list[bytes]) -> None:
    bindings = rec.bindings
    if bindings and rec.tombstone_age_ms:
        _check_record(rec)  # raises the precise error
    if len(bindings) > MAX_BINDINGS:
        _check_record(rec)
    nai = rec.nai
    if len(bindings) == 1:  # the common case in one struct call
        b = bindings[0]
        if not nai and not b.udp_port and not b.udp_address:
            try:
                out.append(
                    _RECORD_ONE.pack(
                        rec.home_address,
                        rec.home_agent,
                        rec.version,
                        rec.last_id,
                        0,
                        1,
                        0,
                        0,
                        b.care_of_address,
                        b.granted_lifetime,
                        b.flags,
                        0,
                        b.remaining_ms,
                    )
                )
            except struct.error:
                _check_record(rec)
                raise  # pragma: no cover - _check_record raised already
            return
    extended = bool(nai) or is_extended(rec)
    try:
        # struct refuses every out-of-range field: the checks only run to name the culprit
        out.append(
            _RECORD.pack(
                rec.home_address,
                rec.home_agent,
                rec.version,
                rec.last_id,
                (0 if bindings else _TOMBSTONE) | (_EXTENDED if extended else 0),
                len(bindings),
                0,
                rec.tombstone_age_ms,
            )
        )
        for b in bindings:
            out.append(
                _BINDING.pack(b.care_of_address, b.granted_lifetime, b.flags, 0, b.remaining_ms)
            )
        if extended:
            _encode_extension(rec, out)
    except struct.error:
        _check_record(rec)
        raise  # pragma: no cover - _check_record raised already


def _encode_extension(rec: RecordState, out: list[bytes]) -> None:
    """The extension block: ExtLen, the NAI TLV (if any), one UDP tunnel TLV per mapped binding
    in binding order (the only order a decoder accepts, so every record has one encoding)."""
    nai = rec.nai
    if not isinstance(nai, bytes) or len(nai) > MAX_NAI_LEN:
        _check_record(rec)
    out.append(_EXT_LEN.pack(_extension_size(rec) - _EXT_LEN.size))
    if nai:
        out.append(_TLV.pack(EXT_NAI, len(nai)) + nai)
    for i, b in _mappings(rec):
        out.append(
            _UDP_TUNNEL.pack(
                EXT_UDP_TUNNEL, UDP_TUNNEL_TLV_LEN - _TLV.size, i, 0, b.udp_address, b.udp_port
            )
        )


def encode_record_one(
    home: int,
    home_agent: int,
    version: int,
    last_id: int,
    care_of_address: int,
    granted_lifetime: int,
    flags: int,
    remaining_ms: int,
) -> bytes:
    """The wire form of a live record with one binding: the same bytes as encoding
    ``RecordState(home, home_agent, version, last_id, 0, (BindingState(...),))``."""
    try:
        return _RECORD_ONE.pack(
            home,
            home_agent,
            version,
            last_id,
            0,
            1,
            0,
            0,
            care_of_address,
            granted_lifetime,
            flags,
            0,
            remaining_ms,
        )
    except struct.error:
        binding = BindingState(care_of_address, granted_lifetime, flags, remaining_ms)
        _check_record(RecordState(home, home_agent, version, last_id, 0, (binding,)))
        raise  # pragma: no cover - _check_record raised already


def encode_record(rec: RecordState) -> bytes:
    """The wire form of one record (as it appears in a Binding Update or Table Sync body)."""
    out: list[bytes] = []
    _encode_record(rec, out)
    return b"".join(out)


def _check_record(rec: RecordState) -> None:
    _check("home_address", rec.home_address, 32)
    _check("home_agent", rec.home_agent, 32)
    _check("version", rec.version, 64)
    _check("last_id", rec.last_id, 64)
    _check("tombstone_age_ms", rec.tombstone_age_ms, 32)
    _check_count("bindings in a record", len(rec.bindings), MAX_BINDINGS)
    if rec.bindings and rec.tombstone_age_ms:
        raise ValueError("a live record (with bindings) must have tombstone_age_ms 0")
    if not isinstance(rec.nai, bytes):
        raise ValueError(f"nai must be bytes, not {type(rec.nai).__name__}")
    _check_count("bytes of nai", len(rec.nai), MAX_NAI_LEN)
    for b in rec.bindings:
        _check("care_of_address", b.care_of_address, 32)
        _check("granted_lifetime", b.granted_lifetime, 16)
        _check("binding flags", b.flags, 8)
        _check("remaining_ms", b.remaining_ms, 32)
        _check("udp_address", b.udp_address, 32)
        _check("udp_port", b.udp_port, 16)


# --- decoding ---------------------------------------------------------------------------------


def _decode_record(r: _Reader) -> RecordState:
    home, ha, version, last_id, state, nbind, reserved, tomb_age = r.take(_RECORD, "a record")
    if reserved:
        raise SyncDecodeError("bad-reserved", "record reserved field is not zero")
    if state & ~_STATE_BITS:
        raise SyncDecodeError("bad-record", f"unknown record state bits {state:#04x}")
    tombstone = bool(state & _TOMBSTONE)
    if tombstone != (nbind == 0):
        raise SyncDecodeError("bad-record", f"tombstone bit {int(tombstone)} with {nbind} bindings")
    if not tombstone and tomb_age:
        raise SyncDecodeError("bad-record", "live record with a tombstone age")
    if nbind == 0:
        if state & _EXTENDED:
            nai, _udp = _decode_extension(r, 0)
            return RecordState(home, ha, version, last_id, tomb_age, (), nai)
        return RecordState(home, ha, version, last_id, tomb_age, ())
    r.need(BINDING_LEN * nbind, "bindings")
    bindings = []
    data, pos = r.data, r.pos
    for _ in range(nbind):
        coa, granted, flags, bres, remaining = _BINDING.unpack_from(data, pos)
        pos += BINDING_LEN
        if bres:
            raise SyncDecodeError("bad-reserved", "binding reserved field is not zero")
        bindings.append(BindingState(coa, granted, flags, remaining))
    r.pos = pos
    if state & _EXTENDED:
        nai, udp = _decode_extension(r, nbind)
        for i, address, port in udp:
            b = bindings[i]
            bindings[i] = BindingState(
                b.care_of_address, b.granted_lifetime, b.flags, b.remaining_ms, address, port
            )
        return RecordState(home, ha, version, last_id, tomb_age, tuple(bindings), nai)
    return RecordState(home, ha, version, last_id, tomb_age, tuple(bindings))


def _decode_extension(r: _Reader, nbind: int) -> tuple[bytes, list[tuple[int, int, int]]]:
    """An extension block: (the NAI, [(binding index, UDP address, UDP port)]). Strict: every
    record has exactly one encoding (see :func:`_encode_extension`), anything else is
    ``bad-extension`` (or ``bad-length`` when it runs past the body)."""
    (ext_len,) = r.take(_EXT_LEN, "a record extension length")
    if ext_len == 0:
        raise SyncDecodeError("bad-extension", "EXTENDED record with an empty extension block")
    r.need(ext_len, "the record extension block")
    data, pos = r.data, r.pos
    end = pos + ext_len
    r.pos = end
    nai = b""
    udp: list[tuple[int, int, int]] = []
    last_index = -1
    while pos < end:
        if pos + _TLV.size > end:
            raise SyncDecodeError("bad-extension", "extension block ends inside a TLV header")
        kind, length = _TLV.unpack_from(data, pos)
        value = pos + _TLV.size
        pos = value + length
        if pos > end:
            raise SyncDecodeError("bad-extension", f"TLV type {kind} runs past the block")
        if kind == EXT_NAI:
            if nai or udp:
                raise SyncDecodeError("bad-extension", "NAI TLV twice or after a UDP tunnel TLV")
            if length == 0:
                raise SyncDecodeError("bad-extension", "empty NAI TLV")
            nai = data[value:pos]
        elif kind == EXT_UDP_TUNNEL:
            if length != UDP_TUNNEL_TLV_LEN - _TLV.size:
                raise SyncDecodeError("bad-extension", f"UDP tunnel TLV of length {length}")
            _k, _l, index, reserved, address, port = _UDP_TUNNEL.unpack_from(data, value - 2)
            if reserved:
                raise SyncDecodeError("bad-reserved", "UDP tunnel TLV reserved field is not zero")
            if index >= nbind:
                raise SyncDecodeError(
                    "bad-extension", f"UDP tunnel TLV for binding {index} of {nbind}"
                )
            if index <= last_index:
                raise SyncDecodeError("bad-extension", "UDP tunnel TLVs not in binding order")
            if not address and not port:
                raise SyncDecodeError("bad-extension", "UDP tunnel TLV without a mapping")
            last_index = index
            udp.append((index, address, port))
        else:
            raise SyncDecodeError("bad-extension", f"unknown record extension type {kind}")
    return nai, udp


def _decode_records(r: _Reader, count: int) -> tuple[RecordState, ...]:
    r.need(RECORD_HEADER_LEN * count, "records")
    return tuple(_decode_record(r) for _ in range(count))


# --- records of exactly one binding, left in wire form ----------------------------------------


def _one_binding_body(data: bytes, start: int, end: int, count: int) -> bytes | None:
    """``data[start:end]`` when it is exactly ``count`` well-formed one-binding records, else
    None (then the general decoder parses it, and names what is wrong)."""
    if count == 0 or end - start != RECORD_ONE_LEN * count:
        return None
    body = data[start:end]
    zeros = bytes(count)
    # state 0 (live), nbind 1, record reserved 0, tombstone age 0, binding reserved 0
    for offset in (24, 26, 27, 28, 29, 30, 31, 39):
        if body[offset::RECORD_ONE_LEN] != zeros:
            return None
    if body[25::RECORD_ONE_LEN] != b"\x01" * count:
        return None
    return body


def _records_of_one(body: bytes) -> tuple[RecordState, ...]:
    """The records of a body checked by :func:`_one_binding_body`, as :func:`_decode_records`
    returns them."""
    return tuple(
        [
            RecordState(home, ha, version, last_id, 0, (BindingState(coa, g, f, rem),))
            for home, ha, version, last_id, _s, _n, _r, _a, coa, g, f, _b, rem in (
                _RECORD_ONE.iter_unpack(body)
            )
        ]
    )


def _homes_of_one(body: bytes) -> tuple[int, ...]:
    """The home addresses of a body checked by :func:`_one_binding_body`."""
    return tuple([h for (h,) in _HOME_OF_ONE.iter_unpack(body)])
