"""RFC 3519 Mobile IP traversal of NAT devices: the two extensions and the tunnel data message.

Pure codec, checked field by field against Wireshark's ``mip`` dissector
(``tests/test_nat_wire.py``). Both extensions use the short format of
:mod:`mobileip.wire.registration` and travel there as :class:`UnknownExtension` (their bodies are
parsed here, so ``encode(decode(b)) == b`` holds for the whole message).

UDP Tunnel Request extension, type 144 (skippable), in a Registration Request::

    type (144) | length (6) | sub-type (0) | reserved (8)
    flags (8: F 0x80 force, R 0x40 registration through the FA, 6 reserved) | encapsulation (8)
    reserved (16)

UDP Tunnel Reply extension, type 44 (*not* skippable: sent only in answer to a request that
carried 144), in a Registration Reply::

    type (44) | length (6) | sub-type (0) | reply code (0 will tunnel, 64 declined)
    flags (16: F 0x8000 the home agent forces UDP tunnelling, 15 reserved)
    keepalive interval (16, seconds)

Tunnel data message, message type 4 on UDP port 434 (the registration port, so one NAT mapping
carries signalling and data)::

    type (4) | next header (4 IP-in-IP, 47 GRE, 55 minimal) | reserved (16) | the tunnelled packet

A keepalive (RFC 3519 4.9 as we read it: Cisco IOS and ASR 5000 agree) is a tunnel data message
whose packet is an ICMP echo request from the mobile node's home address to the home agent;
:func:`keepalive` builds one. Reserved bits are kept as received. Decoders raise only
:class:`~mobileip.wire.errors.DecodeError` with ``code=None``: bad tunnel data is dropped.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address

from mobileip.wire.errors import DecodeError
from mobileip.wire.registration import Extension, UnknownExtension

EXT_UDP_TUNNEL_REQUEST = 144
EXT_UDP_TUNNEL_REPLY = 44
TYPE_TUNNEL_DATA = 4

REQUEST_F = 0x80  # force UDP tunnelling even when no NAT is seen
REQUEST_R = 0x40  # the mobile node registers through a foreign agent (the FA's advert asked)
REPLY_F = 0x8000  # the home agent forces UDP tunnelling

CODE_WILL_TUNNEL = 0
CODE_DECLINED = 64

ENCAP_IPIP = 4
ENCAP_GRE = 47
ENCAP_MINIMAL = 55
ENCAPSULATIONS = frozenset({ENCAP_IPIP, ENCAP_GRE, ENCAP_MINIMAL})

_REQ = struct.Struct("!BBBBH")  # sub-type, reserved, flags, encapsulation, reserved
_REP = struct.Struct("!BBHH")  # sub-type, reply code, flags, keepalive interval
_DATA = struct.Struct("!BBH")  # type, next header, reserved
TUNNEL_HEADER_LEN = _DATA.size  # 4


@dataclass(frozen=True, slots=True)
class UdpTunnelRequest:
    """The UDP Tunnel Request extension's body (type 144, length 6)."""

    encapsulation: int = ENCAP_IPIP
    flags: int = 0  # F 0x80, R 0x40, the 6 low bits reserved (kept as received)
    subtype: int = 0
    reserved1: int = 0
    reserved2: int = 0

    @property
    def force(self) -> bool:
        return bool(self.flags & REQUEST_F)

    @property
    def via_fa(self) -> bool:
        return bool(self.flags & REQUEST_R)

    def extension(self) -> UnknownExtension:
        body = _REQ.pack(
            self.subtype, self.reserved1, self.flags, self.encapsulation, self.reserved2
        )
        return UnknownExtension(EXT_UDP_TUNNEL_REQUEST, body)


@dataclass(frozen=True, slots=True)
class UdpTunnelReply:
    """The UDP Tunnel Reply extension's body (type 44, length 6)."""

    code: int = CODE_WILL_TUNNEL
    keepalive: int = 0  # seconds
    flags: int = 0  # F 0x8000, 15 reserved bits (kept as received)
    subtype: int = 0

    @property
    def accepted(self) -> bool:
        return self.code == CODE_WILL_TUNNEL

    @property
    def forced(self) -> bool:
        return bool(self.flags & REPLY_F)

    def extension(self) -> UnknownExtension:
        body = _REP.pack(self.subtype, self.code, self.flags, self.keepalive)
        return UnknownExtension(EXT_UDP_TUNNEL_REPLY, body)


def parse_request(ext: UnknownExtension) -> UdpTunnelRequest:
    if ext.type != EXT_UDP_TUNNEL_REQUEST or len(ext.data) != _REQ.size:
        raise DecodeError("bad-udp-tunnel-request", f"type {ext.type} length {len(ext.data)}")
    subtype, reserved1, flags, encap, reserved2 = _REQ.unpack(ext.data)
    return UdpTunnelRequest(encap, flags, subtype, reserved1, reserved2)


def parse_reply(ext: UnknownExtension) -> UdpTunnelReply:
    if ext.type != EXT_UDP_TUNNEL_REPLY or len(ext.data) != _REP.size:
        raise DecodeError(
            "bad-udp-tunnel-reply", f"type {ext.type} length {len(ext.data)}", code=None
        )
    subtype, code, flags, keepalive = _REP.unpack(ext.data)
    return UdpTunnelReply(code, keepalive, flags, subtype)


def find_request(exts: Iterable[Extension]) -> UdpTunnelRequest | None:
    """The first UDP Tunnel Request among ``exts``; None when there is none.

    Raises DecodeError (code 134) when it is there but malformed (wrong length)."""
    for ext in exts:
        if isinstance(ext, UnknownExtension) and ext.type == EXT_UDP_TUNNEL_REQUEST:
            return parse_request(ext)
    return None


def find_reply(exts: Iterable[Extension]) -> UdpTunnelReply | None:
    """The first UDP Tunnel Reply among ``exts``; None when there is none or it is malformed."""
    for ext in exts:
        if isinstance(ext, UnknownExtension) and ext.type == EXT_UDP_TUNNEL_REPLY:
            try:
                return parse_reply(ext)
            except DecodeError:
                return None
    return None


# --- tunnel data ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TunnelData:
    """A tunnel data message (type 4): the next header and the tunnelled packet."""

    payload: bytes
    next_header: int = ENCAP_IPIP
    reserved: int = 0


def encode_data(msg: TunnelData) -> bytes:
    return _DATA.pack(TYPE_TUNNEL_DATA, msg.next_header, msg.reserved) + msg.payload


_HEADER_IPIP = _DATA.pack(TYPE_TUNNEL_DATA, ENCAP_IPIP, 0)


def encapsulate(packet: bytes) -> bytes:
    """The tunnel data message carrying the IPv4 ``packet`` (next header 4): the hot path."""
    return _HEADER_IPIP + packet


def decode_data(data: bytes) -> TunnelData:
    if len(data) < TUNNEL_HEADER_LEN:
        raise DecodeError("truncated", f"tunnel data of {len(data)} bytes", code=None)
    mtype, next_header, reserved = _DATA.unpack_from(data)
    if mtype != TYPE_TUNNEL_DATA:
        raise DecodeError("wrong-type", f"type {mtype} is not tunnel data", code=None)
    return TunnelData(bytes(data[TUNNEL_HEADER_LEN:]), next_header, reserved)


# --- keepalives -------------------------------------------------------------------------------

_IP = struct.Struct("!BBHHHBBH4s4s")
_ICMP_ECHO = struct.Struct("!BBHHH")  # type, code, checksum, identifier, sequence
ICMP_ECHO_REQUEST = 8
ICMP_ECHO_REPLY = 0


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return int(~total & 0xFFFF)


def icmp_echo(
    src: IPv4Address, dst: IPv4Address, ident: int, seq: int, *, reply: bool = False
) -> bytes:
    """An IPv4 ICMP echo request (or reply) from ``src`` to ``dst``, checksums filled in."""
    icmp_type = ICMP_ECHO_REPLY if reply else ICMP_ECHO_REQUEST
    body = _ICMP_ECHO.pack(icmp_type, 0, 0, ident & 0xFFFF, seq & 0xFFFF)
    body = body[:2] + struct.pack("!H", _checksum(body)) + body[4:]
    head = _IP.pack(0x45, 0, 20 + len(body), 0, 0x4000, 64, 1, 0, src.packed, dst.packed)
    head = head[:10] + struct.pack("!H", _checksum(head)) + head[12:]
    return head + body


def keepalive(home: IPv4Address, home_agent: IPv4Address, seq: int) -> bytes:
    """A keepalive: tunnel data carrying an ICMP echo request from ``home`` to ``home_agent``."""
    return encapsulate(icmp_echo(home, home_agent, 0x3519, seq))


def echo_request_to(packet: bytes, address: int) -> tuple[int, int] | None:
    """(identifier, sequence) when ``packet`` is an IPv4 ICMP echo request to ``address``, else
    None (not IPv4, not to ``address``, not an echo request, too short)."""
    if len(packet) < 28 or packet[0] >> 4 != 4 or packet[9] != 1:
        return None
    ihl = (packet[0] & 0x0F) * 4
    if len(packet) < ihl + 8 or int.from_bytes(packet[16:20], "big") != address:
        return None
    icmp_type, _code, _sum, ident, seq = _ICMP_ECHO.unpack_from(packet, ihl)
    if icmp_type != ICMP_ECHO_REQUEST:
        return None
    return ident, seq
