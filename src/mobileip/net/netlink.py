"""Interface facts, virtual address add/remove (pyroute2 netlink) and gratuitous ARP.

Nothing here shells out: addresses go through rtnetlink with :class:`pyroute2.IPRoute` (in a
worker thread, so any event loop works, uvloop included), gratuitous ARP through a raw
``AF_PACKET`` socket sent from the interface's own MAC (no virtual MAC, as keepalived does
without ``use_vmac``).
"""

from __future__ import annotations

import asyncio
import errno
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

ETH_P_ARP = 0x0806
ETH_P_IP = 0x0800
BROADCAST_MAC = b"\xff" * 6


class NetlinkFailure(RuntimeError):
    """A netlink request failed (unknown interface, no permission, ...)."""


@dataclass(frozen=True, slots=True)
class InterfaceInfo:
    name: str
    index: int
    mac: bytes
    primary_address: IPv4Address | None  # first IPv4 address that is not secondary


async def interface_info(ifname: str) -> InterfaceInfo:
    """Index, MAC and primary IPv4 address of ``ifname`` in the current namespace."""
    return await asyncio.to_thread(_interface_info, ifname)


async def add_address(index: int, address: IPv4Interface) -> bool:
    """Add ``address`` to interface ``index``; False if it was already there."""
    return await asyncio.to_thread(_add_address, index, address)


async def remove_address(index: int, address: IPv4Interface) -> bool:
    """Remove ``address`` from interface ``index``; False if it was not there."""
    return await asyncio.to_thread(_remove_address, index, address)


async def has_address(index: int, address: IPv4Address) -> bool:
    return await asyncio.to_thread(_has_address, index, address)


# pyroute2's AsyncIPRoute opens its AF_NETLINK socket through the running loop's
# create_datagram_endpoint, which uvloop (the daemon's loop) refuses ("invalid family 16"); the
# synchronous IPRoute in a worker thread works under any loop.


def _interface_info(ifname: str) -> InterfaceInfo:
    try:
        with IPRoute() as ipr:
            found = ipr.link_lookup(ifname=ifname)
            if not found:
                raise NetlinkFailure(f"no interface named {ifname!r}")
            index = found[0]
            mac = b""
            for link in ipr.get_links(index):
                mac = bytes.fromhex((link.get("address") or "").replace(":", ""))
            primary: IPv4Address | None = None
            for addr in ipr.addr("dump", index=index, family=socket.AF_INET):
                if addr["flags"] & 0x01:  # IFA_F_SECONDARY
                    continue
                local = addr.get("local") or addr.get("address")
                if local and primary is None:
                    primary = IPv4Address(local)
    except NetlinkError as exc:
        raise NetlinkFailure(f"{ifname}: {exc}") from exc
    return InterfaceInfo(ifname, index, mac, primary)


def _add_address(index: int, address: IPv4Interface) -> bool:
    return _change_address("add", index, address, (errno.EEXIST,), f"add {address} to")


def _remove_address(index: int, address: IPv4Interface) -> bool:
    absent = (errno.EADDRNOTAVAIL, errno.ENOENT, errno.ESRCH)
    return _change_address("del", index, address, absent, f"remove {address} from")


def _change_address(
    command: str, index: int, address: IPv4Interface, unchanged: tuple[int, ...], what: str
) -> bool:
    """``ip addr add|del``: False when the kernel answers with one of the ``unchanged`` codes
    (already there, already gone), True when it changed; NetlinkFailure on any other error."""
    try:
        with IPRoute() as ipr:
            ipr.addr(
                command,
                index=index,
                address=str(address.ip),
                prefixlen=address.network.prefixlen,
            )
    except NetlinkError as exc:
        if exc.code in unchanged:
            return False
        raise NetlinkFailure(f"{what} ifindex {index}: {exc}") from exc
    return True


def _has_address(index: int, address: IPv4Address) -> bool:
    with IPRoute() as ipr:
        for addr in ipr.addr("dump", index=index, family=socket.AF_INET):
            if addr.get("local") == str(address) or addr.get("address") == str(address):
                return True
    return False


def gratuitous_arp_frame(mac: bytes, address: IPv4Address) -> bytes:
    """An Ethernet broadcast ARP request announcing ``address`` at ``mac`` (RFC 5227 style)."""
    if len(mac) != 6:
        raise ValueError(f"MAC must be 6 bytes, got {len(mac)}")
    ether = BROADCAST_MAC + mac + struct.pack("!H", ETH_P_ARP)
    arp = struct.pack("!HHBBH", 1, ETH_P_IP, 6, 4, 1)  # Ethernet, IPv4, request
    arp += mac + address.packed + b"\x00" * 6 + address.packed
    return ether + arp


def send_gratuitous_arp(ifname: str, mac: bytes, address: IPv4Address) -> None:
    """Broadcast one gratuitous ARP for ``address`` on ``ifname`` (raw AF_PACKET, root)."""
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP)) as sock:
        sock.bind((ifname, ETH_P_ARP))
        sock.send(gratuitous_arp_frame(mac, address))


async def rtnl(call: Callable[[IPRoute], Any]) -> Any:
    """Run ``call`` with a synchronous pyroute2 ``IPRoute`` in a worker thread (pyroute2's
    ``AsyncIPRoute`` cannot run on uvloop, which has no netlink sockets)."""

    def run() -> Any:
        with IPRoute() as ipr:
            return call(ipr)

    return await asyncio.to_thread(run)


def write_sysctl(path: str, value: str) -> None:
    with open(f"/proc/sys/{path}", "w", encoding="ascii") as f:
        f.write(value)
