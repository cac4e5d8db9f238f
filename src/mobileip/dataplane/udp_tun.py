"""The kernel backend's hybrid path for RFC 3519 UDP-tunnelled homes: one TUN device.

The kernel has no driver for RFC 3519 tunnel data (IPv4, UDP to or from port 434, then a 4-byte
header: type 4, next header, 2 reserved; FOU and GUE put other headers there), so the kernel
backend routes a home whose bindings are all UDP-tunnelled into this TUN (``HOA/32 dev TUN table
T``, built by :meth:`~mobileip.dataplane.kernel.KernelBackend.add_messages` in the same batches
as its encap routes: a standby pre-installs it like any other, the ``ip rule`` makes it live).
Every other home stays on the kernel's ipip/gre fast path.

* Towards the mobile node: each packet read from the TUN is looked up by destination in
  :attr:`UdpTun.exits` (home address packed -> its NAT mappings, kept by the backend's
  track/untrack, so a NAT rebind's new record version moves it) and handed to the userspace UDP
  tunnel (:class:`~mobileip.dataplane.udp_tunnel.UdpTunnelPath`, attached as :attr:`UdpTun.udp`
  when ``[homeagent] nat_traversal`` is on): tunnel data from the registration socket.
* From the mobile node: tunnel data on port 434 is checked by the same ``UdpTunnelPath`` and the
  inner packet written here (:meth:`UdpTun.write`); the kernel forwards it.

One TUN per backend, opened at start (``[dataplane] tun_name``); its MTU leaves room for the
outer IPv4, UDP and tunnel headers (:data:`MTU`), so the kernel answers oversized DF packets with
"fragmentation needed" itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections import Counter
from collections.abc import Sequence
from ipaddress import IPv4Address
from typing import Protocol

from mobileip.dataplane import kernel_nl as knl
from mobileip.dataplane.backend import BackendError, Log
from mobileip.net import rtnl as nl
from mobileip.net.netlink import write_sysctl
from mobileip.net.tun import MAX_PACKET, TunError, open_tun
from mobileip.wire import nat

MTU = 1500 - 20 - 8 - nat.TUNNEL_HEADER_LEN  # outer IPv4, UDP, the RFC 3519 header
BATCH = 128  # packets per wake-up, then the event loop runs something else

Exits = tuple[tuple[IPv4Address, int], ...]  # NAT mappings (address, port) of one home


class UdpExits(Protocol):
    """Where packets for UDP-tunnelled bindings go (dataplane/udp_tunnel.py)."""

    def forward(self, packet: bytes, exits: Sequence[tuple[IPv4Address, int]]) -> None: ...


class UdpTun:
    """The TUN of UDP-tunnelled homes, its reader and its exits (module docstring)."""

    def __init__(self, log: Log, name: str, mtu: int = MTU) -> None:
        self.log = log
        self.name = name
        self.mtu = mtu
        self.fd = -1
        self.index = 0
        self.udp: UdpExits | None = None  # attached by UdpTunnelService
        self.exits: dict[bytes, Exits] = {}  # home address packed -> its NAT mappings
        self.counters: Counter[str] = Counter()

    def open(self) -> None:
        """Create the TUN (up, the MTU, rp_filter 0) and read it on the running loop; in the
        calling thread, like the rest of the kernel backend."""
        try:
            self.fd, self.name = open_tun(self.name)
        except TunError as exc:
            raise BackendError(str(exc)) from None
        try:
            self.index = socket.if_nametoindex(self.name)
            write_sysctl(f"net/ipv4/conf/{self.name}/rp_filter", "0")
            with contextlib.suppress(OSError):  # no IPv6 chatter into the TUN (before it is up)
                write_sysctl(f"net/ipv6/conf/{self.name}/disable_ipv6", "1")
            with nl.RtnlSocket() as sock:
                failures = sock.apply([knl.link_set(self.index, mtu=self.mtu)])
            if failures:
                raise OSError(failures[0].errno, str(failures[0]))
        except OSError as exc:
            self.close()
            raise BackendError(f"UDP tunnel TUN {self.name}: {exc}") from None
        asyncio.get_running_loop().add_reader(self.fd, self._on_readable)

    def close(self) -> None:
        """Stop reading and close the TUN (the device and its routes go with its last fd)."""
        if self.fd >= 0:
            with contextlib.suppress(RuntimeError, ValueError):
                asyncio.get_running_loop().remove_reader(self.fd)
            os.close(self.fd)
        self.fd = -1
        self.index = 0
        self.exits.clear()

    def write(self, packet: bytes) -> None:
        """Hand a packet from a UDP tunnel to the kernel (raises OSError)."""
        os.write(self.fd, packet)

    def _on_readable(self) -> None:
        """Up to :data:`BATCH` packets: each to its home's NAT mappings through :attr:`udp`."""
        fd, exits, udp = self.fd, self.exits, self.udp
        forwarded = 0
        try:
            for _ in range(BATCH):
                try:
                    packet = os.read(fd, MAX_PACKET)
                except BlockingIOError:
                    return
                except OSError as exc:
                    self.counters["udp-tun-read-errors"] += 1
                    self.log("dataplane.udp_tun_read_failed", error=str(exc))
                    return
                if len(packet) < 20 or packet[0] >> 4 != 4:
                    self.counters["udp-tun-ignored"] += 1  # IPv6, runts
                    continue
                to = exits.get(packet[16:20])
                if to is None:
                    self.counters["udp-tun-no-binding"] += 1
                elif udp is None:
                    self.counters["drop-udp-tunnel-off"] += 1
                else:
                    udp.forward(packet, to)
                    forwarded += 1
        finally:
            if forwarded:
                self.counters["udp-tun-forwarded"] += forwarded
