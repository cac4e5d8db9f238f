"""The kernel backend's hybrid-path TUN reader (src/mobileip/dataplane/udp_tun.py), without a TUN.

A datagram socketpair stands in for the TUN's file descriptor (one read, one packet, as a TUN):
packets for a home in :attr:`UdpTun.exits` go to the attached UDP tunnel with that home's NAT
mappings; everything else is counted and dropped. The real TUN, its route and the UDP tunnel both
ways run in tests/test_kernel_nat_hybrid.py (UML).
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Sequence
from ipaddress import IPv4Address

from tunnel_service_host import Plane, ServiceHost

from mobileip.dataplane.backend import TunnelSpec
from mobileip.dataplane.encap import Encapsulation
from mobileip.dataplane.kernel import KernelBackend
from mobileip.dataplane.udp_tun import UdpTun

HOME, OTHER = IPv4Address("10.1.0.5"), IPv4Address("10.1.0.6")
MAPPING = ((IPv4Address("203.0.113.9"), 20001),)


class Exits:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, tuple[tuple[IPv4Address, int], ...]]] = []

    def forward(self, packet: bytes, exits: Sequence[tuple[IPv4Address, int]]) -> None:
        self.sent.append((packet, tuple(exits)))


def _nolog(*args: object, **fields: object) -> None:
    pass


def packet(dst: IPv4Address, payload: bytes = b"x" * 8) -> bytes:
    """An IPv4/UDP-ish packet to ``dst`` (the reader looks at the version and the destination)."""
    src = IPv4Address("192.0.2.10")
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 1, 0, 63, 17, 0,
                         src.packed, dst.packed)  # fmt: skip
    return header + payload


def test_reader_forwards_to_the_home_mappings_and_counts_the_rest() -> None:
    tun = UdpTun(_nolog, "unused")
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    ours.setblocking(False)
    tun.fd = ours.fileno()
    try:
        tun.exits[HOME.packed] = MAPPING
        for p in (packet(HOME), packet(OTHER), b"\x60" + bytes(39), b"\x45\x00"):
            theirs.send(p)
        tun._on_readable()  # the tunnel not attached yet: dropped and counted
        assert tun.counters["drop-udp-tunnel-off"] == 1
        assert tun.counters["udp-tun-no-binding"] == 1
        assert tun.counters["udp-tun-ignored"] == 2  # IPv6, a runt
        exits = Exits()
        tun.udp = exits
        first = packet(HOME, b"first")
        theirs.send(first)
        tun._on_readable()
        assert exits.sent == [(first, MAPPING)]
        # a NAT rebind: the backend's track() replaced the mapping; the next packet follows it
        moved = ((IPv4Address("203.0.113.9"), 21007),)
        tun.exits[HOME.packed] = moved
        theirs.send(packet(HOME))
        tun._on_readable()
        assert exits.sent[-1][1] == moved
        assert tun.counters["udp-tun-forwarded"] == 2
    finally:
        tun.fd = -1
        ours.close()
        theirs.close()


def test_close_without_open_is_harmless() -> None:
    tun = UdpTun(_nolog, "unused")
    tun.exits[HOME.packed] = MAPPING

    async def run() -> None:
        tun.close()

    asyncio.run(run())
    assert tun.fd == -1 and not tun.exits


def test_the_udp_tunnel_attaches_to_the_kernel_backends_tun() -> None:
    """UdpTunnelService on the kernel backend: attached to its TUN (the TUN's reader sends
    through it, tunnel data received is written to the TUN), GET /api/v1/nat lists the homes
    routed into the TUN from the backend's index; without the TUN it stays detached."""
    from mobileip.dataplane.udp_tunnel import UdpTunnelService

    ha = IPv4Address("10.1.0.1")
    backend = KernelBackend(_nolog, ha, own=frozenset({ha}))
    backend.udp_tun = UdpTun(_nolog, "unused")
    host = ServiceHost()
    service = UdpTunnelService(host, Plane(backend), ha)  # type: ignore[arg-type]
    asyncio.run(service._start())
    assert service.path is not None and backend.udp_tun.udp is service.path
    assert 4 in host.type_handlers and "nat.udp_tunnel" in host.log.lines
    coa = IPv4Address("192.0.2.10")
    backend.track(TunnelSpec(OTHER, ((coa, Encapsulation.IPIP),), (coa,)))  # not NAT-ed
    backend.track(TunnelSpec(HOME, (), (), MAPPING))
    status = host.routes[("GET", "/api/v1/nat")](None)
    assert status["attached"] and status["udp_homes"] == 1
    assert status["tunnels"] == {str(HOME): [f"{MAPPING[0][0]}:{MAPPING[0][1]}"]}
    asyncio.run(service._stop())
    assert backend.udp_tun.udp is None and service.path is None

    without = KernelBackend(_nolog, ha)
    host = ServiceHost()
    service = UdpTunnelService(host, Plane(without), ha)  # type: ignore[arg-type]
    asyncio.run(service._start())
    assert service.path is None and "nat.unsupported_backend" in host.log.lines
