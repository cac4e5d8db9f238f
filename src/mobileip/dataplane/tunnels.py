"""Tunnel backends of the active Home Agent: ``userspace``, ``kernel`` and ``none``.

What to tunnel is decided sans-IO by :func:`desired_tunnels` (the binding table in, one
:class:`TunnelSpec` per away mobile node out); a backend only makes it so:

* :class:`UserspaceBackend` needs no tunnel modules. A TUN device (``tun_name``) carries the home
  addresses of away mobile nodes: a /32 route per bound home address points at it, so the kernel
  forwards packets for them into the TUN; we read each one, encapsulate it
  (:func:`~mobileip.dataplane.encap.encapsulate`: IP-in-IP, or minimal / GRE when the binding's
  M / G flag asked) and send it to the care-of address on an ``IPPROTO_RAW`` socket. Raw sockets
  for protocols 4, 47 and 55 receive reverse-tunnelled packets (RFC 3024); a packet whose outer
  source is the registered care-of address of its inner source's binding (with the T flag) is
  decapsulated and written to the TUN, and the kernel forwards it. The TUN's MTU leaves room for
  the outer header, so the kernel itself answers oversized DF packets with "fragmentation needed".
* :class:`KernelBackend` creates one pyroute2 ``ipip``/``gre`` device per care-of address and
  routes the home addresses through it; the kernel encapsulates and decapsulates. Minimal
  encapsulation has no kernel driver: such bindings are counted ``unsupported``. Chosen
  automatically (``backend = "auto"``) when :func:`kernel_supports_tunnels` says the kernel can.
* :class:`NoBackend`: control plane only.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import secrets
import socket
import struct
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from mobileip.core.bindings import BindingTable
from mobileip.dataplane.encap import (
    IPPROTO_GRE,
    IPPROTO_IPIP,
    IPPROTO_MINENC,
    REG_FLAG_T,
    Encapsulation,
    TunnelRefused,
    decapsulate,
    encapsulate,
    parse_ipv4,
)
from mobileip.wire.errors import DecodeError

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
MAX_PACKET = 65535
OUTER_OVERHEAD = 24  # IPv4 + GRE, the largest of our three (IP-in-IP 20, minimal 8 or 12)

Log = Callable[..., None]


async def rtnl(call: Callable[[IPRoute], Any]) -> Any:
    """Run ``call`` with a synchronous pyroute2 ``IPRoute`` in a worker thread (pyroute2's
    ``AsyncIPRoute`` cannot run on uvloop, which has no netlink sockets)."""

    def run() -> Any:
        with IPRoute() as ipr:
            return call(ipr)

    return await asyncio.to_thread(run)


class BackendError(RuntimeError):
    """The backend cannot run here (no TUN device, no permission, no tunnel modules)."""


@dataclass(frozen=True, slots=True)
class TunnelSpec:
    """Where the packets for one away mobile node go."""

    home: IPv4Address
    exits: tuple[tuple[IPv4Address, Encapsulation], ...]  # (care-of address, encapsulation)
    reverse: tuple[IPv4Address, ...]  # care-of addresses allowed to reverse-tunnel (T flag)


def desired_tunnels(table: BindingTable) -> dict[IPv4Address, TunnelSpec]:
    """One spec per mobile node with live bindings (several exits with simultaneous bindings;
    RFC 5944 4.2.3: the HA tunnels a copy to each care-of address)."""
    out: dict[IPv4Address, TunnelSpec] = {}
    for rec in table.records():
        if not rec.bindings:
            continue
        home = IPv4Address(rec.home_address)
        exits: list[tuple[IPv4Address, Encapsulation]] = []
        reverse: list[IPv4Address] = []
        for b in rec.bindings:
            coa = IPv4Address(b.care_of_address)
            if coa == home:
                continue
            exits.append((coa, Encapsulation.for_flags(b.flags)))
            if b.flags & REG_FLAG_T:
                reverse.append(coa)
        if exits:
            out[home] = TunnelSpec(home, tuple(exits), tuple(reverse))
    return out


class TunnelBackend:
    """The interface: start once, install/remove specs, stop (which removes everything)."""

    name = "none"

    def __init__(self, log: Log) -> None:
        self.log = log
        self.specs: dict[IPv4Address, TunnelSpec] = {}
        self.counters: Counter[str] = Counter()

    async def start(self) -> None:
        pass

    async def install(self, spec: TunnelSpec) -> None:
        self.specs[spec.home] = spec

    async def remove(self, home: IPv4Address) -> None:
        self.specs.pop(home, None)

    async def stop(self) -> None:
        for home in list(self.specs):
            await self.remove(home)

    def status(self) -> dict[str, object]:
        return {"backend": self.name, "tunnels": len(self.specs), "counters": dict(self.counters)}


class NoBackend(TunnelBackend):
    name = "none"


# --- userspace ---------------------------------------------------------------------------------


def open_tun(name: str) -> tuple[int, str]:
    """Open (creating) the TUN device ``name``; returns (fd, actual name)."""
    try:
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    except OSError as exc:
        raise BackendError(f"cannot open /dev/net/tun: {exc.strerror}") from None
    try:
        ifr = struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI)
        res = fcntl.ioctl(fd, TUNSETIFF, ifr)
    except OSError as exc:
        os.close(fd)
        raise BackendError(f"cannot create TUN device {name!r}: {exc.strerror}") from None
    return fd, res[:16].rstrip(b"\x00").decode()


def write_sysctl(path: str, value: str) -> None:
    with open(f"/proc/sys/{path}", "w", encoding="ascii") as f:
        f.write(value)


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
        self.ttl = ttl
        self.mtu = mtu
        self.tun_fd = -1
        self.tun_index = 0
        self.send_sock: socket.socket | None = None
        self.recv_socks: list[socket.socket] = []
        self.by_coa: dict[IPv4Address, set[IPv4Address]] = {}
        self._ident = secrets.randbits(16)

    async def start(self) -> None:
        self.tun_fd, self.tun_name = open_tun(self.tun_name)
        try:
            name, mtu = self.tun_name, self.mtu

            def up(ipr: IPRoute) -> int:
                index: int = ipr.link_lookup(ifname=name)[0]
                ipr.link("set", index=index, mtu=mtu, state="up")
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
                self.recv_socks.append(s)
        except (OSError, NetlinkError) as exc:
            await self.stop()
            raise BackendError(f"userspace tunnel backend: {exc}") from None
        loop = asyncio.get_running_loop()
        loop.add_reader(self.tun_fd, self._on_tun)
        for s in self.recv_socks:
            loop.add_reader(s.fileno(), self._on_tunnelled, s)
        self.log("dataplane.tun", device=self.tun_name, mtu=self.mtu, source=self.source)

    async def install(self, spec: TunnelSpec) -> None:
        old = self.specs.get(spec.home)
        self._index(old, remove=True)
        self.specs[spec.home] = spec
        self._index(spec, remove=False)
        if old is None:
            await self._route("replace", spec.home)

    async def remove(self, home: IPv4Address) -> None:
        spec = self.specs.pop(home, None)
        self._index(spec, remove=True)
        await self._route("del", home)

    def forget(self, home: IPv4Address) -> None:
        """Stop tunnelling for ``home`` now (its route goes at the next reconcile)."""
        self._index(self.specs.pop(home, None), remove=True)

    def _index(self, spec: TunnelSpec | None, remove: bool) -> None:
        if spec is None:
            return
        for coa in spec.reverse:
            homes = self.by_coa.setdefault(coa, set())
            if remove:
                homes.discard(spec.home)
                if not homes:
                    del self.by_coa[coa]
            else:
                homes.add(spec.home)

    async def _route(self, command: str, home: IPv4Address) -> None:
        if not self.tun_index:
            return
        try:
            index = self.tun_index
            await rtnl(lambda ipr: ipr.route(command, dst=f"{home}/32", oif=index))
        except NetlinkError as exc:
            if not (command == "del" and exc.code in (errno.ESRCH, errno.ENOENT)):
                self.counters["route-errors"] += 1
                self.log("dataplane.route_failed", command=command, home=home, error=str(exc))

    async def stop(self) -> None:
        for home in list(self.specs):
            await self.remove(home)
        loop = asyncio.get_running_loop()
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
        for _ in range(64):  # a batch per wake-up, then let the loop breathe
            try:
                packet = os.read(self.tun_fd, MAX_PACKET)
            except BlockingIOError:
                return
            except OSError as exc:
                self.counters["tun-read-errors"] += 1
                self.log("dataplane.tun_read_failed", error=str(exc))
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
        for _ in range(64):
            try:
                packet = sock.recv(MAX_PACKET)
            except BlockingIOError:
                return
            except OSError:
                self.counters["recv-errors"] += 1
                return
            self.reverse(packet)

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


# --- kernel ------------------------------------------------------------------------------------


async def kernel_supports_tunnels() -> tuple[bool, str]:
    """Whether this kernel can create ipip and gre devices (tries a throw-away device)."""
    for kind in ("ipip", "gre"):
        name = f"mipprobe{secrets.token_hex(3)}"

        def probe(ipr: IPRoute, name: str = name, kind: str = kind) -> None:
            ipr.link("add", ifname=name, kind=kind, **{f"{kind}_local": "127.0.0.1"})
            idx = ipr.link_lookup(ifname=name)
            if idx:
                ipr.link("del", index=idx[0])

        try:
            await rtnl(probe)
        except NetlinkError as exc:
            return False, f"kernel cannot create {kind} devices: {exc}"
        except OSError as exc:
            return False, f"no netlink: {exc}"
    return True, "ipip and gre available"


class KernelBackend(TunnelBackend):
    """One kernel tunnel device per (care-of address, encapsulation); home routes through it."""

    name = "kernel"

    def __init__(self, log: Log, source: IPv4Address, prefix: str = "mip", ttl: int = 64) -> None:
        super().__init__(log)
        self.source = source
        self.prefix = prefix
        self.ttl = ttl
        self.devices: dict[tuple[IPv4Address, Encapsulation], tuple[str, int]] = {}
        self.users: Counter[tuple[IPv4Address, Encapsulation]] = Counter()

    async def start(self) -> None:
        ok, why = await kernel_supports_tunnels()
        if not ok:
            raise BackendError(why)
        write_sysctl("net/ipv4/ip_forward", "1")

    async def _device(self, coa: IPv4Address, kind: Encapsulation) -> int | None:
        key = (coa, kind)
        if key in self.devices:
            return self.devices[key][1]
        if kind is Encapsulation.MINIMAL:
            self.counters["unsupported-minimal"] += 1
            return None
        name = f"{self.prefix}{coa.packed.hex()}{'g' if kind is Encapsulation.GRE else ''}"[:15]
        link_kind, pre = ("gre", "gre") if kind is Encapsulation.GRE else ("ipip", "ipip")
        attrs = {f"{pre}_local": str(self.source), f"{pre}_remote": str(coa)}
        attrs[f"{pre}_ttl"] = self.ttl  # type: ignore[assignment]

        def create(ipr: IPRoute) -> int:
            ipr.link("add", ifname=name, kind=link_kind, **attrs)
            index: int = ipr.link_lookup(ifname=name)[0]
            ipr.link("set", index=index, state="up")
            return index

        index: int = await rtnl(create)
        write_sysctl(f"net/ipv4/conf/{name}/rp_filter", "0")
        self.devices[key] = (name, index)
        return index

    async def install(self, spec: TunnelSpec) -> None:
        if spec.home in self.specs:
            await self.remove(spec.home)
        coa, kind = spec.exits[-1]  # the kernel route takes one exit: the newest binding
        try:
            index = await self._device(coa, kind)
            if index is None:
                return
            await rtnl(lambda ipr: ipr.route("replace", dst=f"{spec.home}/32", oif=index))
        except (NetlinkError, OSError) as exc:
            self.counters["errors"] += 1
            self.log("dataplane.kernel_failed", home=spec.home, error=str(exc))
            return
        self.users[(coa, kind)] += 1
        self.specs[spec.home] = spec

    async def remove(self, home: IPv4Address) -> None:
        spec = self.specs.pop(home, None)
        if spec is None:
            return
        key = spec.exits[-1]
        with contextlib.suppress(NetlinkError):
            await rtnl(lambda ipr: ipr.route("del", dst=f"{home}/32"))
        self.users[key] -= 1
        if self.users[key] <= 0:
            del self.users[key]
            _, index = self.devices.pop(key)
            with contextlib.suppress(NetlinkError):
                await rtnl(lambda ipr: ipr.link("del", index=index))


def make_backend(
    name: str,
    log: Log,
    tun_name: str,
    source: IPv4Address,
    own: Iterable[IPv4Address] = (),
    ttl: int = 64,
    home_interface: str | None = None,
) -> TunnelBackend:
    if name == "userspace":
        return UserspaceBackend(
            log, tun_name, source, frozenset(own), ttl, home_interface=home_interface
        )
    if name == "kernel":
        return KernelBackend(log, source, ttl=ttl)
    return NoBackend(log)
