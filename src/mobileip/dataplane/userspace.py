"""The userspace tunnel backend: a TUN device and raw sockets, no tunnel modules needed.

A TUN device (``tun_name``) carries the home addresses of away mobile nodes: a /32 route per bound
home address points at it (``HOA/32 dev TUN table T``, built by
:meth:`UserspaceBackend.add_messages` and batched by the service; the ``ip rule`` to ``T`` exists
only on the active member), so the kernel forwards packets for them into the TUN; we read each one,
encapsulate it (:func:`~mobileip.dataplane.encap.encapsulate`: IP-in-IP, or minimal / GRE when the
binding's M / G flag asked) and send it to the care-of address on an ``IPPROTO_RAW`` socket. Raw
sockets for protocols 4, 47 and 55 receive reverse-tunnelled packets (RFC 3024); a packet whose
outer source is the registered care-of address of its inner source's binding (with the T flag) is
decapsulated and written to the TUN, and the kernel forwards it. The TUN's MTU leaves room for the
outer header, so the kernel itself answers oversized DF packets with "fragmentation needed".
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import mmap
import os
import secrets
import socket
import struct
import sys
from collections.abc import Hashable, Sequence
from ipaddress import IPv4Address
from typing import Protocol

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from mobileip.dataplane.backend import (
    OUTER_OVERHEAD,
    BackendError,
    Log,
    TunnelBackend,
    TunnelSpec,
)
from mobileip.dataplane.encap import (
    FLAG_DF,
    GRE_PROTO_IPV4,
    IPPROTO_GRE,
    IPPROTO_IPIP,
    IPPROTO_MINENC,
    Encapsulation,
    TunnelRefused,
    decapsulate,
    encapsulate,
    parse_ipv4,
)
from mobileip.net import rtnl as nl
from mobileip.net.mmsg import (
    AUX,
    HEAD_OFF,
    PUT_OFF,
    RecvBatch,
    SendBatch,
    address_of,
    sockaddr_in,
    swap64,
)
from mobileip.net.netlink import rtnl, write_sysctl
from mobileip.net.tun import MAX_PACKET, TunError, open_tun
from mobileip.net.udp import set_rcvbuf
from mobileip.wire.errors import DecodeError

# The forward fast path reads each packet into a slot of a ring, writes its outer header (IPv4,
# + GRE) into a sendmmsg table and sends the queued packets in one system call, each gathered
# from its header and its slot: no copy, no per-packet objects.
BATCH = 128  # packets per wake-up, then the event loop runs something else
RING_SLOTS = 64  # packets per sendmmsg (at most)
SLOT = 1 << 16  # a slot holds any IPv4 packet (the ring is mmap-ed: untouched pages cost nothing)
SEND_BATCH = 2 * RING_SLOTS  # messages per sendmmsg (one per exit)
TUN_QUEUE = 1000  # the TUN's transmit queue (packets; was 500): a burst waits, not dropped
# bytes, each reverse-tunnel raw socket's receive buffer: at 1,400 bytes the default (about
# 200 KiB) holds some 90 packets, which a few hundred microseconds off the CPU overflow
RECV_BUFFER = 1 << 20
# One message of the sendmmsg table from iov[0].len on (mmsg.PUT_OFF): the lengths and the
# body's address (native 64-bit integers, passed through swap64 so that this big-endian
# struct stores their native bytes), the care-of address's sockaddr_in, then the outer header:
# IPv4 (version|IHL|TOS, length, identification, flags, TTL|protocol, checksum left 0: with
# IP_HDRINCL the kernel always fills it in (raw(7)), source, destination) (+ GRE flags/version
# 0 and protocol 0x0800 as one word)
_MSG_IPIP = struct.Struct("!QQQ16sHHHHHxxII")
_MSG_GRE = struct.Struct("!QQQ16sHHHHHxxIII")
assert _MSG_IPIP.size == HEAD_OFF - PUT_OFF + 20
_LITTLE = sys.byteorder == "little"  # then a length n is stored as swap64(n), computed inline
# version|IHL|TOS, total length, flags|offset, source, destination
_IN = struct.Struct("!HHxxHxxxxII")
_FAST_KINDS = (Encapsulation.IPIP, Encapsulation.GRE)
# an IP-in-IP packet's outer header (version|IHL, total length, flags|offset, protocol,
# source) and its inner header as five 32-bit words (the checksum sums them); for GRE the
# GRE word (flags/version 0 and protocol 0x0800: 0x00000800) and the inner header's words
_REV_IPIP = struct.Struct("!BxHxxHxB2xI4x5I")
_REV_GRE = struct.Struct("!I5I")


def _fold(total: int) -> int:
    total = (total & 0xFFFF) + (total >> 16)
    return (total & 0xFFFF) + (total >> 16)


class UdpExits(Protocol):
    """Where packets for UDP-tunnelled bindings go (dataplane/udp_tunnel.py)."""

    def forward(self, packet: bytes, exits: Sequence[tuple[IPv4Address, int]]) -> None: ...


# (sendto address, protocol, TTL|protocol, CoA as an integer, its sockaddr_in)
_Exit = tuple[tuple[str, int], int, int, int, bytes]
# (care-of addresses as integers, exits, how many)
_Entry = tuple[frozenset[int], tuple[_Exit, ...], int]


class UserspaceBackend(TunnelBackend):
    name = "userspace"

    def __init__(
        self,
        log: Log,
        tun_name: str,
        source: IPv4Address,
        own: frozenset[IPv4Address] = frozenset(),
        ttl: int = 64,
        mtu: int = 1500 - OUTER_OVERHEAD,
        home_interface: str | None = None,
    ) -> None:
        super().__init__(log)
        self.home_interface = home_interface
        self.home_sock: socket.socket | None = None
        self.tun_name = tun_name
        self.source = source
        self.own = own
        self._own = frozenset(int(a) for a in own)
        self.ttl = ttl
        self.mtu = mtu
        self.tun_fd = -1
        self.tun_index = 0
        self.send_sock: socket.socket | None = None
        self.recv_socks: list[socket.socket] = []
        self.by_coa: dict[IPv4Address, set[IPv4Address]] = {}
        self._by_coa_int: dict[int, set[int]] = {}  # the same as integers: the reverse path's
        self._ident = secrets.randbits(16)
        # the forward fast path (_on_tun): the ring of packets, the sendmmsg table, and the
        # exit of each queued message
        self._ring = mmap.mmap(-1, RING_SLOTS * SLOT)
        self._ring_at = address_of(self._ring)
        ring = self._ring_view = memoryview(self._ring)  # indexes faster than the mmap
        # per slot: its view, its offset in the ring, its address (for the table: swap64)
        self._ring_slots = [
            (ring[at : at + SLOT], at, swap64(self._ring_at + at))
            for at in range(0, RING_SLOTS * SLOT, SLOT)
        ]
        self._tun_file: io.FileIO | None = None  # the TUN's fd for readinto (made on first use)
        self._batch = SendBatch(SEND_BATCH)
        self._out: list[_Exit] = [(("", 0), 0, 0, 0, b"")] * SEND_BATCH
        self._rx = RecvBatch(RING_SLOTS, SLOT)  # the reverse path's ring (recvmmsg)
        # home address (an integer) -> (its care-of addresses, its exits, how many) when every
        # exit is IP-in-IP or GRE; minimal encapsulation takes the general path (:meth:`forward`)
        self._fast: dict[int, _Entry] = {}
        self._entries: dict[tuple[tuple[IPv4Address, Encapsulation], ...], _Entry] = {}
        # RFC 3519 UDP tunnels (dataplane/udp_tunnel.py), attached when NAT traversal is on
        self.udp: UdpExits | None = None
        # the homes whose spec has UDP exits, kept by track/untrack: GET /api/v1/nat walks
        # these, not every spec
        self.udp_homes: set[IPv4Address] = set()

    async def start(self) -> None:
        try:
            self.tun_fd, self.tun_name = open_tun(self.tun_name)
        except TunError as exc:
            raise BackendError(str(exc)) from None
        try:
            name, mtu = self.tun_name, self.mtu

            def up(ipr: IPRoute) -> int:
                index: int = ipr.link_lookup(ifname=name)[0]
                ipr.link("set", index=index, mtu=mtu, txqlen=TUN_QUEUE, state="up")
                return index

            self.tun_index = await rtnl(up)
            write_sysctl("net/ipv4/ip_forward", "1")
            write_sysctl(f"net/ipv4/conf/{self.tun_name}/rp_filter", "0")
            with contextlib.suppress(OSError):  # no IPv6 chatter into the tunnel device
                write_sysctl(f"net/ipv6/conf/{self.tun_name}/disable_ipv6", "1")
            self.send_sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
            self.send_sock.setblocking(False)
            if self.home_interface:
                # for packets still routed into the TUN for a mobile node that just came home
                self.home_sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
                self.home_sock.setsockopt(
                    socket.SOL_SOCKET, socket.SO_BINDTODEVICE, self.home_interface.encode()
                )
                self.home_sock.setblocking(False)
            for proto in (IPPROTO_IPIP, IPPROTO_GRE, IPPROTO_MINENC):
                s = socket.socket(socket.AF_INET, socket.SOCK_RAW, proto)
                s.setblocking(False)
                set_rcvbuf(s, RECV_BUFFER)  # past rmem_max where we may
                self.recv_socks.append(s)
        except (OSError, NetlinkError) as exc:
            await self.stop()
            raise BackendError(f"userspace tunnel backend: {exc}") from None
        loop = asyncio.get_running_loop()
        loop.add_reader(self.tun_fd, self._on_tun)
        for s in self.recv_socks:
            loop.add_reader(s.fileno(), self._on_tunnelled, s)
        self.log("dataplane.tun", device=self.tun_name, mtu=self.mtu, source=self.source)

    # --- the batched interface: routes into the TUN in table T ------------------------------

    def route_key(self, spec: TunnelSpec) -> Hashable:
        return True  # HOA/32 dev TUN: the same route whatever the care-of addresses

    def add_messages(self, spec: TunnelSpec, table: int) -> list[bytes] | None:
        return [nl.route_add(spec.home, table=table, oif=self.tun_index)]

    def del_messages(self, home: IPv4Address, table: int) -> list[bytes]:
        return [nl.route_del(home, table=table)]

    def key_of_dumped(self, route: nl.Route) -> Hashable:
        # a route through our TUN is right as it is (the TUN dies with the process, and its
        # routes with it, so a route found at start only matches after an in-process restart)
        return True if route.oif == self.tun_index and self.tun_index else "stale"

    def track(self, spec: TunnelSpec) -> None:
        self._index(self.specs.get(spec.home), remove=True)
        self.specs[spec.home] = spec
        self._index(spec, remove=False)
        # the fast path's entry is built by the first packet for this home (_lazy_entry): a
        # standby installing a million routes never forwards, and co-located nodes have one
        # entry each (building them at install was ~40% of a route's cost)
        self._fast.pop(int(spec.home), None)

    def untrack(self, home: IPv4Address) -> None:
        self._index(self.specs.pop(home, None), remove=True)
        self._fast.pop(int(home), None)

    def _lazy_entry(self, dst: int) -> _Entry | None:
        """The fast path's entry for the home ``dst`` (an integer), made on its first packet."""
        spec = self.specs.get(IPv4Address(dst))
        if spec is None or spec.udp:  # UDP tunnels (RFC 3519) take the general path
            return None
        entry = self._entry(spec.exits)
        if entry is not None:
            self._fast[dst] = entry
        return entry

    def _entry(self, exits: tuple[tuple[IPv4Address, Encapsulation], ...]) -> _Entry | None:
        """The fast path's entry for ``exits``, shared by every home with the same exits (the
        homes behind one foreign agent); None when an exit needs the general path (or there are
        more than a send batch holds)."""
        found = self._entries.get(exits)
        if found is not None:
            return found
        if not exits or len(exits) > SEND_BATCH:
            return None
        if not all(kind in _FAST_KINDS for _, kind in exits):
            return None
        if len(self._entries) > 2 * len(self.specs) + 1024:
            self._entries.clear()  # drop entries nobody uses any more (live ones are referenced)
        coas = frozenset(int(coa) for coa, _ in exits)
        found = (coas, tuple(self._exit(coa, kind) for coa, kind in exits), len(exits))
        self._entries[exits] = found
        return found

    def _exit(self, coa: IPv4Address, kind: Encapsulation) -> _Exit:
        """What the fast path needs per tunnel exit: the address for ``sendto``, the protocol,
        the outer header's TTL|protocol word, the care-of address as an integer and its
        ``sockaddr_in`` (``sendmmsg``)."""
        ttl_proto = (self.ttl << 8) + kind.value
        return ((str(coa), 0), kind.value, ttl_proto, int(coa), sockaddr_in(coa.packed))

    def forget(self, home: IPv4Address) -> None:
        """Stop tunnelling for ``home`` now (its route goes with the next batch)."""
        self.untrack(home)

    def _index(self, spec: TunnelSpec | None, remove: bool) -> None:
        if spec is None:
            return
        if spec.udp:
            if remove:
                self.udp_homes.discard(spec.home)
            else:
                self.udp_homes.add(spec.home)
        home_i = int(spec.home)
        for coa in spec.reverse:
            homes = self.by_coa.setdefault(coa, set())
            ints = self._by_coa_int.setdefault(int(coa), set())
            if remove:
                homes.discard(spec.home)
                ints.discard(home_i)
                if not homes:
                    del self.by_coa[coa]
                    del self._by_coa_int[int(coa)]
            else:
                homes.add(spec.home)
                ints.add(home_i)

    async def stop(self) -> None:
        """Close the TUN (its routes go with it; the service flushes table T) and the sockets."""
        self.specs.clear()
        self.udp_homes.clear()
        self.by_coa.clear()
        self._by_coa_int.clear()
        self._fast.clear()
        self._entries.clear()
        loop = asyncio.get_running_loop()
        self._tun_file = None
        if self.tun_fd >= 0:
            loop.remove_reader(self.tun_fd)
            os.close(self.tun_fd)  # the device goes away with its last file descriptor
            self.tun_fd = -1
            self.tun_index = 0
        for s in self.recv_socks:
            loop.remove_reader(s.fileno())
            s.close()
        self.recv_socks.clear()
        for sock in (self.send_sock, self.home_sock):
            if sock is not None:
                sock.close()
        self.send_sock = self.home_sock = None

    # --- the packet paths -----------------------------------------------------------------

    def _on_tun(self) -> None:
        """Read up to :data:`BATCH` packets from the TUN and tunnel them.

        Fast path (IPv4 without options, a binding whose exits are all IP-in-IP or GRE, not a
        loop): each packet is read into its own slot of a ring (one ``read`` each: a TUN has
        no batch read), its outer header written into a ``sendmmsg`` table, and up to
        :data:`RING_SLOTS` packets go in one system call, each gathered from its header and its
        slot (no copy; one message per exit, so simultaneous bindings share the slot). On the
        wire byte for byte what :func:`encapsulate` builds with ``forwarding=False`` (the outer
        checksum is left to the kernel, which always fills it in for ``IP_HDRINCL``), except
        that the inner header's checksum is not verified again (the kernel verified it on input
        and rewrote it when it decremented the TTL). Anything else goes through
        :meth:`forward`, after what is queued has been sent (the order is kept)."""
        fd, sock = self.tun_fd, self.send_sock
        if sock is None:
            return self._drain_general(fd)
        tun = self._tun_file
        if tun is None or tun.fileno() != fd:
            # readinto, not os.readv: no list to build and parse per call, None when empty
            tun = self._tun_file = io.FileIO(fd, "rb", closefd=False)
        readinto = tun.readinto
        ring, ring_slots = self._ring_view, self._ring_slots
        table, out, aux0 = self._batch.table, self._out, self._batch.aux0 + PUT_OFF
        little = _LITTLE
        fast, lazy, own = self._fast, self._lazy_entry, self._own
        src_i = int(self.source)
        unpack = _IN.unpack_from
        put_ipip, put_gre = _MSG_IPIP.pack_into, _MSG_GRE.pack_into
        len20, len24 = swap64(20), swap64(24)
        ident = self._ident
        queued_ipip = queued_gre = 0
        m = 0  # the next message
        try:
            # the ring twice (BATCH packets); what is queued goes after each round of it, or
            # before a packet of the general path (slots of sent messages are free again)
            for _ in range(BATCH // RING_SLOTS):
                for slot_view, at, body in ring_slots:
                    try:
                        n = readinto(slot_view)
                    except OSError as exc:
                        self.counters["tun-read-errors"] += 1
                        self.log("dataplane.tun_read_failed", error=str(exc))
                        return
                    if n is None:  # nothing more queued
                        return
                    entry = None
                    if n >= 20:
                        vt, total, flags, src, dst = unpack(ring, at)
                        if 0x4500 <= vt <= 0x45FF and total == n and src not in own:
                            entry = fast.get(dst) or lazy(dst)
                    if entry is None or src in entry[0]:
                        if m:
                            queued_ipip, queued_gre = self._send_queued(m, queued_ipip, queued_gre)
                            m = 0
                        self._ident = ident
                        self.forward(bytes(ring[at : at + n]))
                        ident = self._ident
                        continue
                    if m + entry[2] > SEND_BATCH:
                        queued_ipip, queued_gre = self._send_queued(m, queued_ipip, queued_gre)
                        m = 0
                    df = flags & FLAG_DF
                    size = ((n & 0xFF) << 56 | (n >> 8) << 48) if little else n  # swap64(n)
                    for ex in entry[1]:
                        ident = (ident + 1) & 0xFFFF
                        _, proto, ttl_proto, coa, sockaddr = ex
                        if proto == IPPROTO_IPIP:
                            put_ipip(table, aux0 + m * AUX, len20, body, size, sockaddr, vt,
                                     n + 20, ident, df, ttl_proto, src_i, coa)  # fmt: skip
                            queued_ipip += 1
                        else:
                            put_gre(table, aux0 + m * AUX, len24, body, size, sockaddr, vt,
                                    n + 24, ident, df, ttl_proto, src_i, coa,
                                    GRE_PROTO_IPV4)  # fmt: skip
                            queued_gre += 1
                        out[m] = ex
                        m += 1
                if m:
                    queued_ipip, queued_gre = self._send_queued(m, queued_ipip, queued_gre)
                    m = 0
        finally:
            if m:
                queued_ipip, queued_gre = self._send_queued(m, queued_ipip, queued_gre)
            self._ident = ident
            if queued_ipip:
                self.counters["encap-ipip"] += queued_ipip
            if queued_gre:
                self.counters["encap-gre"] += queued_gre

    def _send_queued(self, count: int, ipip: int, gre: int) -> tuple[int, int]:
        """Send the ``count`` queued messages (``sendmmsg``, resumed after a failed one, which
        is counted and logged); returns the IP-in-IP and GRE counts less the failed ones."""
        assert self.send_sock is not None
        fd, send, out = self.send_sock.fileno(), self._batch.send, self._out
        k = 0
        while k < count:
            error = "nothing sent"
            try:
                sent = send(fd, k, count - k)
            except OSError as exc:
                sent = 0
                error = str(exc)
            if sent <= 0:  # message k failed: count it, go on with the next
                addr, proto = out[k][0], out[k][1]
                self.counters["send-errors"] += 1
                self.log("dataplane.send_failed", dest=addr[0], error=error)
                if proto == IPPROTO_IPIP:
                    ipip -= 1
                else:
                    gre -= 1
                sent = 1
            k += sent
        return ipip, gre

    def _drain_general(self, fd: int) -> None:
        """No send socket (stopping): read what is there through the general path."""
        for _ in range(BATCH):
            try:
                packet = os.read(fd, MAX_PACKET)
            except OSError:
                return
            self.forward(packet)

    def forward(self, packet: bytes) -> None:
        """One packet the kernel routed to a home address: tunnel it to its care-of addresses."""
        if packet[:1] and packet[0] >> 4 == 6:
            self.counters["ignored-ipv6"] += 1
            return
        try:
            header, _ = parse_ipv4(packet)
        except DecodeError as exc:
            self.counters[f"drop-{exc.reason}"] += 1
            return
        spec = self.specs.get(header.dst)
        if spec is None:
            # the binding is gone but the route not yet (e.g. the reply to a deregistration
            # from home): the mobile node is on the home link, deliver it there
            if self.home_sock is not None:
                try:
                    self.home_sock.sendto(packet, (str(header.dst), 0))
                    self.counters["delivered-home"] += 1
                    return
                except OSError:
                    pass
            self.counters["drop-no-binding"] += 1
            return
        if spec.udp:
            if self.udp is not None:
                self.udp.forward(packet, spec.udp)
            else:
                self.counters["drop-udp-tunnel-off"] += 1
        for coa, kind in spec.exits:
            self._ident = (self._ident + 1) & 0xFFFF
            try:
                outer = encapsulate(
                    packet,
                    kind,
                    self.source,
                    coa,
                    ident=self._ident,
                    ttl=self.ttl,
                    own=self.own,
                    forwarding=False,  # the kernel routed it into the TUN: TTL already spent
                )
            except (TunnelRefused, DecodeError) as exc:
                self.counters[f"drop-{exc.reason}"] += 1
                return
            self._send(outer, coa, f"encap-{kind.name.lower()}")

    def write_tun(self, packet: bytes) -> None:
        """Hand a decapsulated packet to the kernel (raises OSError)."""
        os.write(self.tun_fd, packet)

    def _send(self, packet: bytes, dest: IPv4Address, counter: str) -> None:
        if self.send_sock is None:
            return
        try:
            self.send_sock.sendto(packet, (str(dest), 0))
        except OSError as exc:
            self.counters["send-errors"] += 1
            self.log("dataplane.send_failed", dest=dest, error=str(exc))
            return
        self.counters[counter] += 1

    def _on_tunnelled(self, sock: socket.socket) -> None:
        """Receive up to :data:`BATCH` tunnelled packets (``recvmmsg``, :data:`RING_SLOTS` per
        system call, each into its own slot of a ring) and pass them on.

        Fast path (outer and inner IPv4 without options, not a fragment, lengths exact, IP-in-IP
        or GRE without options, the inner header's checksum right, the pair registered): the
        inner packet is written to the TUN straight from its slot. The outer header's checksum
        is not verified again (the kernel did before the raw socket saw it). Anything else goes
        through :meth:`reverse` and its counters."""
        rx = self._rx
        ring, lengths, stride = rx.view, rx.lengths, RecvBatch.LEN_STRIDE
        registered = self._by_coa_int
        fd, sock_fd = self.tun_fd, sock.fileno()
        receive = rx.receive
        ipip, gre = _REV_IPIP.unpack_from, _REV_GRE.unpack_from
        write = os.write
        decap_ipip = decap_gre = 0
        try:
            for _ in range(BATCH // RING_SLOTS):
                try:
                    got = receive(sock_fd)
                except OSError as exc:
                    self.counters["recv-errors"] += 1
                    self.log("dataplane.recv_failed", error=str(exc))
                    return
                at = 0
                for i in range(RecvBatch.LEN_AT, got * stride, stride):
                    n = lengths[i]
                    start, at = at, at + SLOT
                    if n >= 40:
                        # read as IP-in-IP: the outer header and the inner one's five words
                        vihl, total, frag, proto, osrc, w0, w1, w2, w3, w4 = ipip(ring, start)
                        off = 0
                        # no options, the whole datagram, MF clear and offset 0
                        if vihl == 0x45 and total == n and not frag & 0x3FFF:
                            if proto == IPPROTO_IPIP:
                                off = 20
                            elif proto == IPPROTO_GRE and n >= 44:
                                word, w0, w1, w2, w3, w4 = gre(ring, start + 20)
                                if word == GRE_PROTO_IPV4:
                                    off = 24
                        # the inner header: no options, the rest of the datagram, its
                        # source registered behind this care-of address, its checksum right:
                        # the one's complement sum of its 16-bit words is 0xFFFF, i.e. the
                        # sum of its 32-bit words is a multiple of 0xFFFF (2**16 = 1 modulo
                        # 0xFFFF; the sum is not 0, the first word is 0x45..)
                        if (
                            off
                            and w0 >> 24 == 0x45
                            and w0 & 0xFFFF == n - off
                            and w3 in registered.get(osrc, ())
                            and not (w0 + w1 + w2 + w3 + w4) % 0xFFFF
                        ):
                            try:
                                write(fd, ring[start + off : start + n])
                            except OSError as exc:
                                self.counters["tun-write-errors"] += 1
                                self.log("dataplane.tun_write_failed", error=str(exc))
                                continue
                            if off == 20:
                                decap_ipip += 1
                            else:
                                decap_gre += 1
                            continue
                    self.reverse(bytes(ring[start : start + n]))
                if got < RING_SLOTS:  # the socket is empty
                    return
        finally:
            if decap_ipip:
                self.counters["decap-ipip"] += decap_ipip
            if decap_gre:
                self.counters["decap-gre"] += decap_gre

    def reverse(self, packet: bytes) -> None:
        """A tunnelled packet addressed to us: RFC 3024 checks, then forward the inner packet."""
        try:
            d = decapsulate(packet)
        except DecodeError as exc:
            self.counters[f"reverse-drop-{exc.reason}"] += 1
            return
        if d.inner_src not in self.by_coa.get(d.outer_src, ()):
            # not a reverse tunnel we agreed to (unknown CoA, no T flag, or spoofed inner source)
            self.counters["reverse-drop-unregistered"] += 1
            return
        try:
            os.write(self.tun_fd, d.inner)
        except OSError as exc:
            self.counters["tun-write-errors"] += 1
            self.log("dataplane.tun_write_failed", error=str(exc))
            return
        self.counters[f"decap-{d.kind.name.lower()}"] += 1

    def status(self) -> dict[str, object]:
        data = super().status()
        data["device"] = self.tun_name
        return data
