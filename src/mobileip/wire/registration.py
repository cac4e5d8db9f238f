"""RFC 5944 registration messages: Registration Request (type 1) and Reply (type 3).

Pure codec: bytes in, frozen dataclasses out, and back. ``encode(decode(b)) == b`` for every ``b``
that decodes. Extensions follow RFC 5944 1.8-1.11:

* type 0 is a one-byte pad;
* types 36, 37, 38 use the long format (type, sub-type, 16-bit length);
* every other type uses the short format (type, 8-bit length, data);
* an unrecognised type 0-127 makes the whole message discarded (:class:`UnknownCriticalExtension`),
  an unrecognised type 128-255 is kept as :class:`UnknownExtension` and skipped by the rules.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field
from ipaddress import IPv4Address

from mobileip.wire.errors import DecodeError, UnknownCriticalExtension

UDP_PORT = 434

TYPE_REQUEST = 1
TYPE_REPLY = 3

EXT_PAD = 0
EXT_MN_HA_AUTH = 32
EXT_MN_FA_AUTH = 33
EXT_FA_HA_AUTH = 34
EXT_GENERALIZED_AUTH = 36  # RFC 3012, long format
EXT_OLD_CVSE = 37  # long format
EXT_CVSE = 38  # RFC 3115, long format
EXT_MN_NAI = 131  # RFC 2794
EXT_UDP_TUNNEL_REPLY = 44  # RFC 3519, body parsed by wire/nat.py

AUTH_TYPES = frozenset({EXT_MN_HA_AUTH, EXT_MN_FA_AUTH, EXT_FA_HA_AUTH})
LONG_TYPES = frozenset({EXT_GENERALIZED_AUTH, EXT_OLD_CVSE, EXT_CVSE})
# Short-format types below 128 that we recognise but keep as UnknownExtension (parsed elsewhere).
OPAQUE_CRITICAL = frozenset({EXT_UDP_TUNNEL_REPLY})
KNOWN_CRITICAL = AUTH_TYPES | LONG_TYPES | OPAQUE_CRITICAL | {EXT_PAD}

_REQ = struct.Struct("!BBHIIIQ")  # type, flags, lifetime, home, ha, coa, identification
_REP = struct.Struct("!BBHIIQ")  # type, code, lifetime, home, ha, identification
REQUEST_HEADER_LEN = _REQ.size  # 24
REPLY_HEADER_LEN = _REP.size  # 20
INFINITE_LIFETIME = 0xFFFF


class Flags(enum.IntFlag):
    """Registration Request flags (RFC 5944 3.3), most significant bit first."""

    S = 0x80  # simultaneous bindings
    B = 0x40  # broadcast datagrams
    D = 0x20  # decapsulation by mobile node (co-located care-of address)
    M = 0x10  # minimal encapsulation
    G = 0x08  # GRE encapsulation
    r = 0x04  # reserved, sent as zero
    T = 0x02  # reverse tunnelling requested (RFC 3024)
    x = 0x01  # reserved, sent as zero


# --- extensions -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PadExtension:
    """Type 0: a single byte of padding, no length field."""

    type: int = EXT_PAD


@dataclass(frozen=True, slots=True)
class AuthExtension:
    """MN-HA (32), MN-FA (33) or FA-HA (34) authentication extension."""

    type: int
    spi: int
    authenticator: bytes


@dataclass(frozen=True, slots=True)
class NaiExtension:
    """Mobile Node NAI extension (RFC 2794, type 131)."""

    nai: bytes
    type: int = EXT_MN_NAI


@dataclass(frozen=True, slots=True)
class LongExtension:
    """An extension in the long format (type, sub-type, 16-bit length, data)."""

    type: int
    subtype: int
    data: bytes


@dataclass(frozen=True, slots=True)
class UnknownExtension:
    """A skippable (128-255) extension we do not understand, kept for exact re-encoding; also a
    recognised short one whose body another module parses (``OPAQUE_CRITICAL``: RFC 3519's UDP
    Tunnel Reply, type 44, see wire/nat.py)."""

    type: int
    data: bytes


Extension = PadExtension | AuthExtension | NaiExtension | LongExtension | UnknownExtension


def encode_extension(ext: Extension) -> bytes:
    """Encode one extension."""
    if isinstance(ext, PadExtension):
        return b"\x00"
    if isinstance(ext, AuthExtension):
        if len(ext.authenticator) > 251:
            raise ValueError("authenticator longer than 251 bytes")
        return (
            struct.pack("!BBI", ext.type, 4 + len(ext.authenticator), ext.spi) + ext.authenticator
        )
    if isinstance(ext, NaiExtension):
        if len(ext.nai) > 255:
            raise ValueError("NAI longer than 255 bytes")
        return struct.pack("!BB", ext.type, len(ext.nai)) + ext.nai
    if isinstance(ext, LongExtension):
        if len(ext.data) > 0xFFFF:
            raise ValueError("long extension data longer than 65535 bytes")
        return struct.pack("!BBH", ext.type, ext.subtype, len(ext.data)) + ext.data
    if len(ext.data) > 255:
        raise ValueError("extension data longer than 255 bytes")
    return struct.pack("!BB", ext.type, len(ext.data)) + ext.data


def encode_extensions(exts: tuple[Extension, ...]) -> bytes:
    return b"".join(encode_extension(e) for e in exts)


def decode_extensions(data: bytes, start: int) -> tuple[tuple[Extension, ...], tuple[int, ...]]:
    """Decode the extensions from ``data[start:]``; return them with their start offsets."""
    exts: list[Extension] = []
    offsets: list[int] = []
    pos = start
    end = len(data)
    while pos < end:
        etype = data[pos]
        offsets.append(pos)
        if etype == EXT_PAD:
            exts.append(PadExtension())
            pos += 1
            continue
        if etype in LONG_TYPES:
            if pos + 4 > end:
                raise DecodeError("truncated-extension", f"long extension type {etype}")
            subtype = data[pos + 1]
            (length,) = struct.unpack_from("!H", data, pos + 2)
            body = pos + 4
            if body + length > end:
                raise DecodeError("truncated-extension", f"type {etype} length {length}")
            exts.append(LongExtension(etype, subtype, bytes(data[body : body + length])))
            pos = body + length
            continue
        if pos + 2 > end:
            raise DecodeError("truncated-extension", f"type {etype} has no length")
        length = data[pos + 1]
        body = pos + 2
        if body + length > end:
            raise DecodeError("truncated-extension", f"type {etype} length {length}")
        payload = bytes(data[body : body + length])
        if etype in AUTH_TYPES:
            if length < 4:
                raise DecodeError("bad-auth-extension", f"type {etype} length {length} < 4")
            (spi,) = struct.unpack_from("!I", payload)
            exts.append(AuthExtension(etype, spi, payload[4:]))
        elif etype == EXT_MN_NAI:
            exts.append(NaiExtension(payload))
        elif etype < 128 and etype not in OPAQUE_CRITICAL:
            raise UnknownCriticalExtension(etype)
        else:
            exts.append(UnknownExtension(etype, payload))
        pos = body + length
    return tuple(exts), tuple(offsets)


# --- messages ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RegistrationRequest:
    """Registration Request (RFC 5944 3.3)."""

    flags: Flags
    lifetime: int
    home_address: IPv4Address
    home_agent: IPv4Address
    care_of_address: IPv4Address
    identification: int
    extensions: tuple[Extension, ...] = ()
    # Where each extension starts in the decoded bytes (empty for messages built in code).
    ext_offsets: tuple[int, ...] = field(default=(), compare=False, repr=False)

    @property
    def is_deregistration(self) -> bool:
        return self.lifetime == 0


@dataclass(frozen=True, slots=True)
class RegistrationReply:
    """Registration Reply (RFC 5944 3.4)."""

    code: int
    lifetime: int
    home_address: IPv4Address
    home_agent: IPv4Address
    identification: int
    extensions: tuple[Extension, ...] = ()
    ext_offsets: tuple[int, ...] = field(default=(), compare=False, repr=False)


Message = RegistrationRequest | RegistrationReply


def encode_request_header(msg: RegistrationRequest) -> bytes:
    return _REQ.pack(
        TYPE_REQUEST,
        int(msg.flags),
        msg.lifetime,
        int(msg.home_address),
        int(msg.home_agent),
        int(msg.care_of_address),
        msg.identification,
    )


def encode_reply_header(msg: RegistrationReply) -> bytes:
    return _REP.pack(
        TYPE_REPLY,
        msg.code,
        msg.lifetime,
        int(msg.home_address),
        int(msg.home_agent),
        msg.identification,
    )


def encode(msg: Message) -> bytes:
    """Encode a request or reply with all its extensions."""
    if isinstance(msg, RegistrationRequest):
        head = encode_request_header(msg)
    else:
        head = encode_reply_header(msg)
    return head + encode_extensions(msg.extensions)


def decode_request(data: bytes) -> RegistrationRequest:
    if len(data) < REQUEST_HEADER_LEN:
        raise DecodeError("truncated", f"request of {len(data)} bytes < {REQUEST_HEADER_LEN}")
    mtype, flags, lifetime, home, ha, coa, ident = _REQ.unpack_from(data)
    if mtype != TYPE_REQUEST:
        raise DecodeError("wrong-type", f"type {mtype} is not a request", code=None)
    exts, offsets = decode_extensions(data, REQUEST_HEADER_LEN)
    return RegistrationRequest(
        Flags(flags),
        lifetime,
        IPv4Address(home),
        IPv4Address(ha),
        IPv4Address(coa),
        ident,
        exts,
        offsets,
    )


def decode_reply(data: bytes) -> RegistrationReply:
    if len(data) < REPLY_HEADER_LEN:
        raise DecodeError(
            "truncated", f"reply of {len(data)} bytes < {REPLY_HEADER_LEN}", code=None
        )
    mtype, code, lifetime, home, ha, ident = _REP.unpack_from(data)
    if mtype != TYPE_REPLY:
        raise DecodeError("wrong-type", f"type {mtype} is not a reply", code=None)
    try:
        exts, offsets = decode_extensions(data, REPLY_HEADER_LEN)
    except DecodeError as exc:
        exc.code = None  # a bad reply is never answered
        raise
    return RegistrationReply(
        code, lifetime, IPv4Address(home), IPv4Address(ha), ident, exts, offsets
    )


def decode(data: bytes) -> Message:
    """Decode a request or a reply, by its type byte."""
    if not data:
        raise DecodeError("empty", code=None)
    if data[0] == TYPE_REQUEST:
        return decode_request(data)
    if data[0] == TYPE_REPLY:
        return decode_reply(data)
    raise DecodeError("unknown-type", f"message type {data[0]}", code=None)


def find_auth(msg: Message, ext_type: int) -> tuple[int, AuthExtension] | None:
    """Return (index, extension) of the first authentication extension of ``ext_type``."""
    for i, ext in enumerate(msg.extensions):
        if isinstance(ext, AuthExtension) and ext.type == ext_type:
            return i, ext
    return None
