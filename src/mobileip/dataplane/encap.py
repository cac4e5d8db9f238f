"""Tunnel codecs (sans-IO): IPv4 headers, IP-in-IP (RFC 2003), minimal encapsulation (RFC 2004)
and GRE (RFC 2784).

Bytes in, bytes out; nothing here touches a socket. :func:`encapsulate` applies RFC 2003's
outer-header rules for all three kinds:

* the inner packet is *forwarded* into the tunnel, so its TTL is decremented first (and a packet
  whose TTL would reach 0 is refused with ``ttl-exceeded``, as a router would);
* IP-in-IP and GRE outer header: source = the encapsulator, destination = the tunnel exit
  (care-of address), TOS copied from the inner header, DF copied from the inner header, TTL chosen
  by the encapsulator (:data:`DEFAULT_TTL`), a fresh identification from the caller;
* loops (RFC 2003 section 4): a packet whose source is the tunnel exit, or one of the
  encapsulator's own addresses (``own``: pass them for forwarded traffic; leave out the source
  when the encapsulator originates the packet itself), is never tunnelled (``loop``);
* minimal encapsulation (RFC 2004) modifies the original header in place: protocol 55, destination
  the tunnel exit, source the encapsulator (the original source moves into the minimal header with
  the S bit when they differ), and refuses fragments (``fragment``).

:func:`decapsulate` takes one outer packet (as read from a raw socket) and returns the inner
packet, restoring the original header for minimal encapsulation. Every decoder raises only
:class:`~mobileip.wire.errors.DecodeError` (``code=None``: tunnels have no error replies).
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, replace
from ipaddress import IPv4Address

from mobileip.wire.errors import DecodeError

IPPROTO_IPIP = 4
IPPROTO_GRE = 47
IPPROTO_MINENC = 55
DEFAULT_TTL = 64
GRE_PROTO_IPV4 = 0x0800

FLAG_DF = 0x4000
FLAG_MF = 0x2000
OFFSET_MASK = 0x1FFF

# registration request flags (RFC 5944 3.3) that choose the encapsulation
REG_FLAG_M = 0x10
REG_FLAG_G = 0x08
REG_FLAG_T = 0x02

_IPV4 = struct.Struct("!BBHHHBBH4s4s")  # ver|ihl, tos, total, id, flags|frag, ttl, proto, csum
_MIN_HDR = struct.Struct("!BBH4s")  # protocol, S|reserved, checksum, original destination
MIN_S_BIT = 0x80


class Encapsulation(enum.Enum):
    IPIP = IPPROTO_IPIP
    GRE = IPPROTO_GRE
    MINIMAL = IPPROTO_MINENC

    @classmethod
    def for_flags(cls, flags: int) -> Encapsulation:
        """The encapsulation a registration's flags ask for: M minimal, G GRE, else IP-in-IP."""
        if flags & REG_FLAG_M:
            return cls.MINIMAL
        if flags & REG_FLAG_G:
            return cls.GRE
        return cls.IPIP


class TunnelRefused(ValueError):
    """A packet the encapsulator must not tunnel; ``reason`` is a counter label."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def internet_checksum(data: bytes) -> int:
    """RFC 1071 one's complement sum of 16-bit words (odd length padded with a zero byte)."""
    if len(data) % 2:
        data += b"\x00"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


@dataclass(frozen=True, slots=True)
class IPv4Header:
    tos: int
    total_length: int
    ident: int
    flags_fragment: int  # the 16-bit field: 3 flag bits and the 13-bit offset
    ttl: int
    protocol: int
    src: IPv4Address
    dst: IPv4Address
    options: bytes = b""

    @property
    def header_length(self) -> int:
        return 20 + len(self.options)

    @property
    def dont_fragment(self) -> bool:
        return bool(self.flags_fragment & FLAG_DF)

    @property
    def is_fragment(self) -> bool:
        return bool(self.flags_fragment & FLAG_MF) or bool(self.flags_fragment & OFFSET_MASK)

    def pack(self) -> bytes:
        """The header with a freshly computed checksum."""
        if len(self.options) % 4 or len(self.options) > 40:
            raise ValueError("IPv4 options must be a multiple of 4 bytes, at most 40")
        ihl = self.header_length // 4
        head = _IPV4.pack(
            0x40 | ihl,
            self.tos,
            self.total_length,
            self.ident,
            self.flags_fragment,
            self.ttl,
            self.protocol,
            0,
            self.src.packed,
            self.dst.packed,
        )
        head += self.options
        csum = internet_checksum(head)
        return head[:10] + struct.pack("!H", csum) + head[12:]


def parse_ipv4(data: bytes, *, verify_checksum: bool = True) -> tuple[IPv4Header, bytes]:
    """Split one IPv4 packet into its header and payload (trailing bytes beyond total length are
    dropped, as link padding). Raises :class:`DecodeError` on anything malformed."""
    if len(data) < 20:
        raise DecodeError("ipv4-short", f"{len(data)} bytes", code=None)
    vihl, tos, total, ident, flags_frag, ttl, proto, _csum, src, dst = _IPV4.unpack_from(data)
    if vihl >> 4 != 4:
        raise DecodeError("ipv4-version", f"version {vihl >> 4}", code=None)
    hlen = (vihl & 0x0F) * 4
    if hlen < 20:
        raise DecodeError("ipv4-ihl", f"header length {hlen}", code=None)
    if total < hlen or total > len(data):
        raise DecodeError("ipv4-length", f"total length {total}, have {len(data)}", code=None)
    if verify_checksum and internet_checksum(data[:hlen]) != 0:
        raise DecodeError("ipv4-checksum", code=None)
    header = IPv4Header(
        tos=tos,
        total_length=total,
        ident=ident,
        flags_fragment=flags_frag,
        ttl=ttl,
        protocol=proto,
        src=IPv4Address(src),
        dst=IPv4Address(dst),
        options=bytes(data[20:hlen]),
    )
    return header, bytes(data[hlen:total])


def build_ipv4(header: IPv4Header, payload: bytes) -> bytes:
    """``header`` (its total length set from the payload) followed by ``payload``."""
    total = header.header_length + len(payload)
    if total > 0xFFFF:
        raise TunnelRefused("too-big", f"{total} bytes")
    return replace(header, total_length=total).pack() + payload


# --- GRE (RFC 2784) ------------------------------------------------------------------------

GRE_C_BIT = 0x8000
_GRE_RESERVED0 = 0x7FF8  # bits 1-12
_GRE_VERSION = 0x0007


def gre_header(checksum_over: bytes | None = None) -> bytes:
    """The GRE header for IPv4; with ``checksum_over`` (the payload) the C bit and checksum."""
    if checksum_over is None:
        return struct.pack("!HH", 0, GRE_PROTO_IPV4)
    head = struct.pack("!HHHH", GRE_C_BIT, GRE_PROTO_IPV4, 0, 0)
    csum = internet_checksum(head + checksum_over)
    return head[:4] + struct.pack("!HH", csum, 0)


def parse_gre(data: bytes) -> bytes:
    """The payload of a GRE packet carrying IPv4; :class:`DecodeError` otherwise."""
    if len(data) < 4:
        raise DecodeError("gre-short", code=None)
    bits, ptype = struct.unpack_from("!HH", data)
    if bits & _GRE_VERSION:
        raise DecodeError("gre-version", f"version {bits & _GRE_VERSION}", code=None)
    if bits & _GRE_RESERVED0:
        # RFC 2784 2.3: a receiver that does not implement RFC 1701 must discard these
        raise DecodeError("gre-reserved", f"flags {bits:#06x}", code=None)
    if ptype != GRE_PROTO_IPV4:
        raise DecodeError("gre-protocol", f"protocol type {ptype:#06x}", code=None)
    if bits & GRE_C_BIT:
        if len(data) < 8:
            raise DecodeError("gre-short", "checksum present", code=None)
        if internet_checksum(data) != 0:
            raise DecodeError("gre-checksum", code=None)
        return data[8:]
    return data[4:]


# --- encapsulation -------------------------------------------------------------------------


def forwarded(inner: bytes) -> tuple[IPv4Header, bytes]:
    """Parse ``inner`` and decrement its TTL as forwarding does (``ttl-exceeded`` at 1 or 0)."""
    header, payload = parse_ipv4(inner)
    if header.ttl <= 1:
        raise TunnelRefused("ttl-exceeded", f"inner TTL {header.ttl}")
    return replace(header, ttl=header.ttl - 1), payload


def encapsulate(
    inner: bytes,
    kind: Encapsulation,
    src: IPv4Address,
    dst: IPv4Address,
    *,
    ident: int = 0,
    ttl: int = DEFAULT_TTL,
    own: frozenset[IPv4Address] = frozenset(),
    gre_checksum: bool = False,
    forwarding: bool = True,
) -> bytes:
    """Tunnel ``inner`` from ``src`` (the encapsulator) to ``dst`` (the care-of address).

    ``forwarding=False`` when the kernel already forwarded ``inner`` (routed it into a TUN
    device, decrementing its TTL): then the TTL is left alone.

    Raises :class:`TunnelRefused` (loop, ttl-exceeded, fragment, too-big) or
    :class:`DecodeError` (``inner`` is not an IPv4 packet)."""
    if forwarding:
        header, payload = forwarded(inner)
    else:
        header, payload = parse_ipv4(inner)
    if header.src == dst or header.src in own:
        # RFC 2003 4: a source that is the tunnel exit or one of our own addresses means a loop
        raise TunnelRefused("loop", f"inner source {header.src}")
    if kind is Encapsulation.MINIMAL:
        return _minimal(header, payload, src, dst)
    body = header.pack() + payload
    if kind is Encapsulation.GRE:
        body = gre_header(body if gre_checksum else None) + body
    outer = IPv4Header(
        tos=header.tos,
        total_length=0,
        ident=ident & 0xFFFF,
        flags_fragment=header.flags_fragment & FLAG_DF,
        ttl=ttl,
        protocol=kind.value,
        src=src,
        dst=dst,
    )
    return build_ipv4(outer, body)


def _minimal(header: IPv4Header, payload: bytes, src: IPv4Address, dst: IPv4Address) -> bytes:
    if header.is_fragment:
        raise TunnelRefused("fragment", "RFC 2004 does not encapsulate fragments")
    with_src = header.src != src
    fwd = struct.pack("!BB", header.protocol, MIN_S_BIT if with_src else 0)
    rest = header.dst.packed + (header.src.packed if with_src else b"")
    csum = internet_checksum(fwd + b"\x00\x00" + rest)
    minimal = fwd + struct.pack("!H", csum) + rest
    outer = replace(header, protocol=IPPROTO_MINENC, src=src, dst=dst)
    return build_ipv4(outer, minimal + payload)


def parse_minimal(outer: IPv4Header, data: bytes) -> bytes:
    """Rebuild the original packet from a minimal-encapsulation payload (RFC 2004 3)."""
    if len(data) < 8:
        raise DecodeError("minenc-short", code=None)
    proto, sbits = data[0], data[1]
    with_src = bool(sbits & MIN_S_BIT)
    hlen = 12 if with_src else 8
    if len(data) < hlen:
        raise DecodeError("minenc-short", "S bit set", code=None)
    if internet_checksum(data[:hlen]) != 0:
        raise DecodeError("minenc-checksum", code=None)
    orig_dst = IPv4Address(data[4:8])
    orig_src = IPv4Address(data[8:12]) if with_src else outer.src
    original = replace(outer, protocol=proto, src=orig_src, dst=orig_dst)
    return build_ipv4(original, data[hlen:])


@dataclass(frozen=True, slots=True)
class Decapsulated:
    kind: Encapsulation
    outer_src: IPv4Address
    outer_dst: IPv4Address
    inner: bytes  # a complete IPv4 packet
    inner_src: IPv4Address
    inner_dst: IPv4Address


def decapsulate(packet: bytes) -> Decapsulated:
    """Unwrap one tunnelled IPv4 packet (IP-in-IP, GRE or minimal); :class:`DecodeError` for
    anything else, including an inner packet that is not valid IPv4."""
    try:
        outer, payload = parse_ipv4(packet)
        if outer.is_fragment:
            raise DecodeError("outer-fragment", "reassembly is the kernel's job", code=None)
        try:
            kind = Encapsulation(outer.protocol)
        except ValueError:
            raise DecodeError("not-tunnel", f"protocol {outer.protocol}", code=None) from None
        if kind is Encapsulation.MINIMAL:
            inner = parse_minimal(outer, payload)
        elif kind is Encapsulation.GRE:
            inner = parse_gre(payload)
        else:
            inner = payload
        header, _ = parse_ipv4(inner)
        inner = inner[: header.total_length]
    except TunnelRefused as exc:  # a rebuilt minimal packet over 64 KiB
        raise DecodeError(exc.reason, code=None) from None
    return Decapsulated(kind, outer.src, outer.dst, inner, header.src, header.dst)
