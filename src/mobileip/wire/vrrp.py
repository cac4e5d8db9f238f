"""VRRPv3 advertisements for IPv4 (RFC 5798 section 5).

Pure codec: bytes in, a frozen :class:`Advertisement` out, and back. Layout::

     0                   1                   2                   3
    |Version| Type  | Virtual Rtr ID|   Priority    |Count IPvX Addr|
    |(rsvd) |     Max Adver Int     |          Checksum             |
    |                       IPv4 Address(es)                        |

The checksum is the Internet checksum over the VRRP message *plus* an IPv4 pseudo-header
(source, destination, zero, protocol 112, VRRP length), section 5.2.8. Some implementations
compute it v2-style over the VRRP message alone (keepalived's ``v3_checksum_as_v2``); decoding
accepts that only when asked to.

Every decoding failure raises :class:`~mobileip.wire.errors.DecodeError` with ``code=None``:
VRRP has no error replies, bad packets are counted and dropped.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv4Address

from mobileip.wire.errors import DecodeError

IP_PROTO_VRRP = 112
MULTICAST_GROUP = IPv4Address("224.0.0.18")
REQUIRED_TTL = 255
VERSION = 3
TYPE_ADVERTISEMENT = 1
HEADER_LEN = 8
MAX_INTERVAL_CS = 0x0FFF  # 12 bits of centiseconds: 40.95 s
PRIORITY_OWNER = 255
PRIORITY_RELEASE = 0

_HEADER = struct.Struct("!BBBBHH")  # ver|type, vrid, priority, count, rsvd|interval, checksum


@dataclass(frozen=True, slots=True)
class Advertisement:
    """One VRRPv3 advertisement; ``max_advert_interval`` is in centiseconds."""

    vrid: int
    priority: int
    max_advert_interval: int
    addresses: tuple[IPv4Address, ...]

    def __post_init__(self) -> None:
        if not 1 <= self.vrid <= 255:
            raise ValueError(f"VRID {self.vrid} outside 1-255")
        if not 0 <= self.priority <= 255:
            raise ValueError(f"priority {self.priority} outside 0-255")
        if not 1 <= self.max_advert_interval <= MAX_INTERVAL_CS:
            raise ValueError(f"interval {self.max_advert_interval} cs outside 1-{MAX_INTERVAL_CS}")
        if len(self.addresses) > 255:
            raise ValueError("more than 255 addresses")


def internet_checksum(data: bytes) -> int:
    """RFC 1071 one's-complement sum, returned complemented (0 when ``data`` verifies)."""
    if len(data) % 2:
        data += b"\x00"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def pseudo_header(src: IPv4Address, dst: IPv4Address, length: int) -> bytes:
    """The IPv4 pseudo-header of RFC 5798 5.2.8 (as for UDP, protocol 112)."""
    return src.packed + dst.packed + struct.pack("!BBH", 0, IP_PROTO_VRRP, length)


def encode(
    adv: Advertisement,
    src: IPv4Address,
    dst: IPv4Address = MULTICAST_GROUP,
    *,
    v2_checksum: bool = False,
) -> bytes:
    """Encode ``adv`` as sent from ``src`` to ``dst`` (the checksum covers both)."""
    body = b"".join(a.packed for a in adv.addresses)
    header = _HEADER.pack(
        (VERSION << 4) | TYPE_ADVERTISEMENT,
        adv.vrid,
        adv.priority,
        len(adv.addresses),
        adv.max_advert_interval & MAX_INTERVAL_CS,
        0,
    )
    message = header + body
    covered = message if v2_checksum else pseudo_header(src, dst, len(message)) + message
    checksum = internet_checksum(covered)
    return message[:6] + struct.pack("!H", checksum) + message[8:]


def decode(
    data: bytes,
    src: IPv4Address,
    dst: IPv4Address = MULTICAST_GROUP,
    *,
    accept_v2_checksum: bool = False,
) -> Advertisement:
    """Decode and verify one advertisement received from ``src`` for ``dst``.

    ``data`` is the VRRP message alone (the IP payload). Raises :class:`DecodeError` for
    anything that is not a well-formed VRRPv3 IPv4 advertisement with a correct checksum.
    """
    data = bytes(data)
    if len(data) < HEADER_LEN:
        raise DecodeError("truncated", f"{len(data)} bytes < {HEADER_LEN}", code=None)
    ver_type, vrid, priority, count, rsvd_interval, _checksum = _HEADER.unpack_from(data)
    version, msg_type = ver_type >> 4, ver_type & 0x0F
    if version != VERSION:
        raise DecodeError("bad-version", f"version {version}", code=None)
    if msg_type != TYPE_ADVERTISEMENT:
        raise DecodeError("bad-type", f"type {msg_type}", code=None)
    if vrid == 0:
        raise DecodeError("bad-vrid", "VRID 0", code=None)
    expected = HEADER_LEN + 4 * count
    if len(data) != expected:
        raise DecodeError("bad-length", f"{len(data)} bytes for {count} addresses", code=None)
    interval = rsvd_interval & MAX_INTERVAL_CS
    if interval == 0:
        raise DecodeError("bad-interval", "max advert interval 0", code=None)
    if internet_checksum(pseudo_header(src, dst, len(data)) + data) != 0 and not (
        accept_v2_checksum and internet_checksum(data) == 0
    ):
        raise DecodeError("bad-checksum", f"from {src}", code=None)
    addresses = tuple(IPv4Address(data[off : off + 4]) for off in range(HEADER_LEN, expected, 4))
    return Advertisement(vrid, priority, interval, addresses)
