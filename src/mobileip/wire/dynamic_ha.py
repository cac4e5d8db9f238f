"""RFC 4433 Dynamic HA extension (type 139): Requested HA and Redirected HA.

Short format, skippable (type >= 128, so an agent that does not know it ignores it)::

    Type = 139 | Length = 5 | Sub-Type | Home Agent Address (4 bytes)

Sub-Type 1 is the Requested HA extension (in a Registration Request: the HA the mobile node
asks for, or an ALL-ZERO-ONE-ADDR when it has no preference); Sub-Type 2 is the Redirected HA
extension (in a Registration Reply with code 143: the HA the mobile node should register with).
Values checked against Wireshark's MIP dissector (``DYN_HA_EXT = 139``, ``mip_dhaext_stypes``).

The registration codec keeps type 139 as an :class:`~mobileip.wire.registration.UnknownExtension`
(byte-exact re-encoding); :func:`parse` and :func:`to_extension` convert to and from
:class:`DynamicHaExtension`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv4Address

from mobileip.wire import registration as wire
from mobileip.wire.errors import DecodeError

EXT_DYNAMIC_HA = 139
SUBTYPE_REQUESTED_HA = 1
SUBTYPE_REDIRECTED_HA = 2
BODY_LEN = 5

# RFC 4433: "ALL-ZERO-ONE-ADDR" is either 0.0.0.0 or 255.255.255.255 in the Home Agent field.
ALL_ZERO_ADDR = IPv4Address("0.0.0.0")
ALL_ONE_ADDR = IPv4Address("255.255.255.255")
ALL_ZERO_ONE_ADDRS = frozenset({ALL_ZERO_ADDR, ALL_ONE_ADDR})

_BODY = struct.Struct("!BI")


@dataclass(frozen=True, slots=True)
class DynamicHaExtension:
    subtype: int
    home_agent: IPv4Address

    @property
    def requested(self) -> bool:
        return self.subtype == SUBTYPE_REQUESTED_HA

    @property
    def redirected(self) -> bool:
        return self.subtype == SUBTYPE_REDIRECTED_HA


def is_all_zero_one(addr: IPv4Address) -> bool:
    return addr in ALL_ZERO_ONE_ADDRS


def encode(ext: DynamicHaExtension) -> bytes:
    if not 0 <= ext.subtype <= 255:
        raise ValueError(f"sub-type {ext.subtype} outside 0-255")
    return bytes((EXT_DYNAMIC_HA, BODY_LEN)) + _BODY.pack(ext.subtype, int(ext.home_agent))


def to_extension(ext: DynamicHaExtension) -> wire.UnknownExtension:
    """The extension as the registration codec carries it (append to a message's extensions)."""
    return wire.UnknownExtension(EXT_DYNAMIC_HA, _BODY.pack(ext.subtype, int(ext.home_agent)))


def decode_body(data: bytes) -> DynamicHaExtension:
    """The 5 data bytes after type and length; :class:`DecodeError` when the length is wrong."""
    if len(data) != BODY_LEN:
        raise DecodeError("bad-dynamic-ha-extension", f"length {len(data)} != {BODY_LEN}")
    subtype, addr = _BODY.unpack(data)
    return DynamicHaExtension(subtype, IPv4Address(addr))


def decode(data: bytes) -> DynamicHaExtension:
    """One whole extension (type, length, body)."""
    if len(data) < 2 or data[0] != EXT_DYNAMIC_HA:
        raise DecodeError("bad-dynamic-ha-extension", "not a type 139 extension")
    if data[1] != len(data) - 2:
        raise DecodeError("bad-dynamic-ha-extension", f"length byte {data[1]} != {len(data) - 2}")
    return decode_body(data[2:])


def parse(ext: wire.Extension) -> DynamicHaExtension | None:
    """``ext`` as a Dynamic HA extension, None when it is another type; a type 139 of the wrong
    length raises :class:`DecodeError` (the caller answers 134)."""
    if not isinstance(ext, wire.UnknownExtension) or ext.type != EXT_DYNAMIC_HA:
        return None
    return decode_body(ext.data)


def find(msg: wire.Message, subtype: int, before: int | None = None) -> DynamicHaExtension | None:
    """The first Dynamic HA extension of ``subtype`` among ``msg``'s first ``before`` extensions
    (all when None; pass the MN-HA authenticator's index to see only authenticated ones)."""
    for ext in msg.extensions[:before]:
        parsed = parse(ext)
        if parsed is not None and parsed.subtype == subtype:
            return parsed
    return None
