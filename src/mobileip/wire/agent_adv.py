"""Agent Advertisement (RFC 5944 2.1) and Agent Solicitation (2.2) codec, sans-IO.

An agent advertisement is an ICMP Router Advertisement (RFC 1256, type 9) followed by a Mobility
Agent Advertisement extension (type 16) and optionally a Prefix-Lengths extension (type 19) and
one-byte padding (type 0)::

    ICMP: type 9 | code | checksum (2) | num addrs | addr entry size (2) | lifetime (2)
          num addrs x (router address (4), preference level (4))
    ext 16: type | length (6 + 4N) | sequence number (2)
            registration lifetime (2) | R B H F M G r T | U X I reserved(5)
            N x care-of address (4)

Field order checked against Wireshark's ICMP dissector (``icmp.mip.*``) in tests. Decoding
raises only :class:`~mobileip.wire.errors.DecodeError` with ``code=None`` (drop and count).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address

from mobileip.wire.errors import DecodeError

ICMP_ROUTER_ADVERTISEMENT = 9
ICMP_ROUTER_SOLICITATION = 10
CODE_ROUTES = 0
CODE_MOBILITY_ONLY = 16  # RFC 5944 2.1: the agent does not route common traffic
EXT_MOBILITY_AGENT = 16
EXT_PREFIX_LENGTHS = 19
EXT_PAD = 0
ALL_SYSTEMS = IPv4Address("224.0.0.1")
MOBILE_AGENTS = IPv4Address("224.0.0.11")

# first flag byte
FLAG_R = 0x80  # registration required
FLAG_B = 0x40  # busy
FLAG_H = 0x20  # home agent
FLAG_F = 0x10  # foreign agent
FLAG_M = 0x08  # minimal encapsulation
FLAG_G = 0x04  # GRE
FLAG_r = 0x02  # reserved, sent as zero
FLAG_T = 0x01  # reverse tunnelling (RFC 3024)
# second flag byte (the top three bits)
FLAG_U = 0x80  # UDP tunnelling (RFC 3519)
FLAG_X = 0x40  # revocation (RFC 3543)
FLAG_I = 0x20  # foreign agent supports regional registration (RFC 4857)


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


@dataclass(frozen=True, slots=True)
class AgentAdvertisement:
    sequence: int
    registration_lifetime: int  # seconds, 0xffff infinite
    flags: int  # first flag byte: R B H F M G r T
    flags2: int = 0  # second byte: U X I and 5 reserved bits
    care_of_addresses: tuple[IPv4Address, ...] = ()
    router_addresses: tuple[tuple[IPv4Address, int], ...] = ()  # (address, preference)
    lifetime: int = 9000  # the ICMP advertisement's lifetime
    code: int = CODE_ROUTES
    prefix_lengths: tuple[int, ...] | None = None

    @property
    def is_home_agent(self) -> bool:
        return bool(self.flags & FLAG_H)

    @property
    def is_foreign_agent(self) -> bool:
        return bool(self.flags & FLAG_F)

    @property
    def busy(self) -> bool:
        return bool(self.flags & FLAG_B)

    @property
    def registration_required(self) -> bool:
        return bool(self.flags & FLAG_R)

    def encode(self) -> bytes:
        if len(self.care_of_addresses) > 62:
            raise ValueError("at most 62 care-of addresses fit the extension's length byte")
        body = struct.pack("!BBH", len(self.router_addresses), 2, self.lifetime)
        for addr, pref in self.router_addresses:
            body += addr.packed + struct.pack("!i", pref)
        ext = struct.pack(
            "!BBHHBB",
            EXT_MOBILITY_AGENT,
            6 + 4 * len(self.care_of_addresses),
            self.sequence,
            self.registration_lifetime,
            self.flags,
            self.flags2,
        )
        ext += b"".join(a.packed for a in self.care_of_addresses)
        if self.prefix_lengths is not None:
            ext += struct.pack("!BB", EXT_PREFIX_LENGTHS, len(self.prefix_lengths))
            ext += bytes(self.prefix_lengths)
        msg = struct.pack("!BBH", ICMP_ROUTER_ADVERTISEMENT, self.code, 0) + body + ext
        csum = _checksum(msg)
        return msg[:2] + struct.pack("!H", csum) + msg[4:]


def decode_advertisement(data: bytes) -> AgentAdvertisement:
    """An ICMP message (no IP header) that must be a router advertisement with a mobility agent
    extension; anything else is a :class:`DecodeError`."""
    if len(data) < 8:
        raise DecodeError("icmp-short", f"{len(data)} bytes", code=None)
    if data[0] != ICMP_ROUTER_ADVERTISEMENT:
        raise DecodeError("not-advertisement", f"ICMP type {data[0]}", code=None)
    if _checksum(data) != 0:
        raise DecodeError("icmp-checksum", code=None)
    code = data[1]
    count, entry_size, lifetime = struct.unpack_from("!BBH", data, 4)
    if entry_size < 2:
        raise DecodeError("entry-size", f"address entry size {entry_size}", code=None)
    pos = 8
    routers: list[tuple[IPv4Address, int]] = []
    for _ in range(count):
        if pos + entry_size * 4 > len(data):
            raise DecodeError("icmp-short", "router addresses", code=None)
        addr = IPv4Address(data[pos : pos + 4])
        (pref,) = struct.unpack_from("!i", data, pos + 4)
        routers.append((addr, pref))
        pos += entry_size * 4
    mobility: AgentAdvertisement | None = None
    prefixes: tuple[int, ...] | None = None
    while pos < len(data):
        ext_type = data[pos]
        if ext_type == EXT_PAD:
            pos += 1
            continue
        if pos + 2 > len(data):
            raise DecodeError("extension-short", f"type {ext_type}", code=None)
        length = data[pos + 1]
        end = pos + 2 + length
        if end > len(data):
            raise DecodeError("extension-length", f"type {ext_type} length {length}", code=None)
        value = data[pos + 2 : end]
        if ext_type == EXT_MOBILITY_AGENT:
            if mobility is not None:
                raise DecodeError("duplicate-extension", "mobility agent", code=None)
            if length < 6 or (length - 6) % 4:
                raise DecodeError("extension-length", f"mobility agent length {length}", code=None)
            seq, reg_life, flags, flags2 = struct.unpack_from("!HHBB", value)
            coas = tuple(IPv4Address(value[i : i + 4]) for i in range(6, length, 4))
            mobility = AgentAdvertisement(
                seq, reg_life, flags, flags2, coas, tuple(routers), lifetime, code
            )
        elif ext_type == EXT_PREFIX_LENGTHS:
            prefixes = tuple(value)
            if any(p > 32 for p in prefixes):
                raise DecodeError("prefix-length", "over 32", code=None)
        # RFC 5944 2.1: other extensions are skipped
        pos = end
    if mobility is None:
        raise DecodeError("no-mobility-extension", code=None)
    if prefixes is not None:
        mobility = replace(mobility, prefix_lengths=prefixes)
    return mobility


@dataclass(frozen=True, slots=True)
class AgentSolicitation:
    """An ICMP Router Solicitation (type 10, code 0); the MN sends it with TTL 1."""

    reserved: int = field(default=0)

    def encode(self) -> bytes:
        msg = struct.pack("!BBHI", ICMP_ROUTER_SOLICITATION, 0, 0, self.reserved)
        return msg[:2] + struct.pack("!H", _checksum(msg)) + msg[4:]


def is_solicitation(data: bytes) -> bool:
    return len(data) >= 8 and data[0] == ICMP_ROUTER_SOLICITATION and _checksum(data) == 0
