"""RFC 3543 registration revocation: the Revocation Support extension and the two messages.

Pure codec, like :mod:`mobileip.wire.registration` (whose extension framework the messages use),
checked field by field against Wireshark's ``mip`` dissector (``tests/test_revocation_wire.py``).

Revocation Support extension, type 137, skippable, in a Registration Request (from a foreign
agent) or a Reply (from a home agent)::

    type (137) | length (6) | flags (16 bits: I = 0x8000, 15 reserved) | timestamp (32 bits)

Registration Revocation, message type 7, sent by the agent that ends the binding::

    type (7) | reserved (8) | flags (16 bits: A = 0x8000 sent by the home agent,
                                               I = 0x4000 inform the mobile node, 14 reserved)
    home address | home domain address | foreign domain address | revocation identifier
    extensions (an FA-HA authentication extension, type 34, protects the message)

Revocation Acknowledgement, message type 15::

    type (15) | reserved (8) | flags (16 bits: I = 0x8000 the mobile node was informed)
    home address | revocation identifier
    extensions (FA-HA authentication)

Reserved bits and bytes are kept, so ``encode(decode(b)) == b`` for every ``b`` that decodes.
Decoders raise only :class:`~mobileip.wire.errors.DecodeError`, always with ``code=None``: a bad
revocation or acknowledgement is dropped, never answered.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from ipaddress import IPv4Address

from mobileip.wire.errors import DecodeError
from mobileip.wire.registration import (
    EXT_FA_HA_AUTH,
    AuthExtension,
    Extension,
    UnknownExtension,
    decode_extensions,
    encode_extensions,
)

TYPE_REVOCATION = 7
TYPE_REVOCATION_ACK = 15
EXT_REVOCATION_SUPPORT = 137

SUPPORT_I = 0x8000  # Revocation Support: the agent can inform the mobile node
REVOCATION_A = 0x8000  # Registration Revocation: sent by the home (A)gent
REVOCATION_I = 0x4000  # Registration Revocation: (I)nform the mobile node
ACK_I = 0x8000  # Revocation Acknowledgement: the mobile node was (I)nformed

_SUPPORT = struct.Struct("!HI")  # flags, timestamp
_REV = struct.Struct("!BBHIIII")  # type, reserved, flags, home, home domain, foreign domain, id
_ACK = struct.Struct("!BBHII")  # type, reserved, flags, home, id
REVOCATION_HEADER_LEN = _REV.size  # 20
ACK_HEADER_LEN = _ACK.size  # 12


@dataclass(frozen=True, slots=True)
class RevocationSupport:
    """The Revocation Support extension's body (type 137, length 6)."""

    flags: int  # 16 bits, I = 0x8000, the rest reserved (kept as received)
    timestamp: int  # the sender's clock, seconds

    @property
    def inform(self) -> bool:
        return bool(self.flags & SUPPORT_I)

    def extension(self) -> UnknownExtension:
        """As an extension of a registration message (type 137 is skippable: 128-255)."""
        return UnknownExtension(EXT_REVOCATION_SUPPORT, _SUPPORT.pack(self.flags, self.timestamp))


def make_support(*, inform: bool, timestamp: int) -> RevocationSupport:
    return RevocationSupport(SUPPORT_I if inform else 0, timestamp & 0xFFFFFFFF)


def parse_support(ext: Extension) -> RevocationSupport:
    """The Revocation Support body of a decoded extension of type 137."""
    if not isinstance(ext, UnknownExtension) or ext.type != EXT_REVOCATION_SUPPORT:
        raise DecodeError("not-revocation-support", f"extension {ext.type}", code=None)
    if len(ext.data) != _SUPPORT.size:
        raise DecodeError("bad-revocation-support", f"length {len(ext.data)} != 6", code=None)
    flags, timestamp = _SUPPORT.unpack(ext.data)
    return RevocationSupport(flags, timestamp)


def find_support(extensions: tuple[Extension, ...]) -> RevocationSupport | None:
    """The first well-formed Revocation Support extension in ``extensions``, if any."""
    for ext in extensions:
        if isinstance(ext, UnknownExtension) and ext.type == EXT_REVOCATION_SUPPORT:
            try:
                return parse_support(ext)
            except DecodeError:
                return None
    return None


@dataclass(frozen=True, slots=True)
class RegistrationRevocation:
    """Registration Revocation (RFC 3543 3.3), message type 7."""

    flags: int  # 16 bits: A = 0x8000, I = 0x4000, the rest reserved
    home_address: IPv4Address
    home_domain_address: IPv4Address
    foreign_domain_address: IPv4Address
    revocation_id: int
    extensions: tuple[Extension, ...] = ()
    reserved: int = 0
    ext_offsets: tuple[int, ...] = field(default=(), compare=False, repr=False)

    @property
    def by_home_agent(self) -> bool:
        return bool(self.flags & REVOCATION_A)

    @property
    def inform(self) -> bool:
        return bool(self.flags & REVOCATION_I)


@dataclass(frozen=True, slots=True)
class RevocationAck:
    """Registration Revocation Acknowledgement (RFC 3543 3.4), message type 15."""

    flags: int  # 16 bits: I = 0x8000, the rest reserved
    home_address: IPv4Address
    revocation_id: int
    extensions: tuple[Extension, ...] = ()
    reserved: int = 0
    ext_offsets: tuple[int, ...] = field(default=(), compare=False, repr=False)

    @property
    def informed(self) -> bool:
        return bool(self.flags & ACK_I)


Message = RegistrationRevocation | RevocationAck


def encode_header(msg: Message) -> bytes:
    """The fixed part, without extensions (what an authentication extension is appended to)."""
    if isinstance(msg, RegistrationRevocation):
        return _REV.pack(
            TYPE_REVOCATION,
            msg.reserved,
            msg.flags,
            int(msg.home_address),
            int(msg.home_domain_address),
            int(msg.foreign_domain_address),
            msg.revocation_id,
        )
    return _ACK.pack(
        TYPE_REVOCATION_ACK,
        msg.reserved,
        msg.flags,
        int(msg.home_address),
        msg.revocation_id,
    )


def encode(msg: Message) -> bytes:
    return encode_header(msg) + encode_extensions(msg.extensions)


def _extensions(data: bytes, start: int) -> tuple[tuple[Extension, ...], tuple[int, ...]]:
    try:
        return decode_extensions(data, start)
    except DecodeError as exc:
        exc.code = None  # never answered
        raise


def decode(data: bytes) -> Message:
    """Decode a Registration Revocation (7) or a Revocation Acknowledgement (15)."""
    if not data:
        raise DecodeError("empty", code=None)
    if data[0] == TYPE_REVOCATION:
        if len(data) < REVOCATION_HEADER_LEN:
            raise DecodeError("truncated", f"revocation of {len(data)} bytes", code=None)
        _, reserved, flags, home, hda, fda, rid = _REV.unpack_from(data)
        exts, offsets = _extensions(data, REVOCATION_HEADER_LEN)
        return RegistrationRevocation(
            flags,
            IPv4Address(home),
            IPv4Address(hda),
            IPv4Address(fda),
            rid,
            exts,
            reserved,
            offsets,
        )
    if data[0] == TYPE_REVOCATION_ACK:
        if len(data) < ACK_HEADER_LEN:
            raise DecodeError("truncated", f"revocation ack of {len(data)} bytes", code=None)
        _, reserved, flags, home, rid = _ACK.unpack_from(data)
        exts, offsets = _extensions(data, ACK_HEADER_LEN)
        return RevocationAck(flags, IPv4Address(home), rid, exts, reserved, offsets)
    raise DecodeError("unknown-type", f"message type {data[0]}", code=None)


def find_fa_ha_auth(msg: Message) -> tuple[int, AuthExtension] | None:
    """(index, extension) of the first FA-HA authentication extension (type 34)."""
    for i, ext in enumerate(msg.extensions):
        if isinstance(ext, AuthExtension) and ext.type == EXT_FA_HA_AUTH:
            return i, ext
    return None
