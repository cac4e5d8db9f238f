"""ARP duties of the active Home Agent on the home link (RFC 5944 4.6).

* proxy ARP for the home address of every away mobile node: a kernel proxy neighbour entry
  (``ip neigh add proxy ADDR dev IF`` through pyroute2, flag ``NTF_PROXY``). The kernel answers
  with the interface's MAC because the home address routes elsewhere (into the tunnel device);
  :meth:`ArpDuties.start` enables forwarding on the interface and sets ``proxy_delay`` to 0 so
  the answer is immediate;
* gratuitous ARP for a home address when its binding is created (neighbours on the home link
  drop the mobile node's own MAC), and a paced re-announcement of every bound home address when
  this member becomes active (:meth:`ArpDuties.announce`, in batches);
* withdrawal: :meth:`ArpDuties.withdraw` removes a proxy entry (binding gone, or mastership lost).
"""

from __future__ import annotations

import asyncio
import errno
import socket
from collections import Counter
from collections.abc import Callable, Sequence
from ipaddress import IPv4Address

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from mobileip.dataplane.backend import BackendError
from mobileip.net import netlink
from mobileip.net.netlink import rtnl, write_sysctl

NTF_PROXY = 0x08
Log = Callable[..., None]


class ArpDuties:
    def __init__(self, interface: str, log: Log, batch: int = 64, batch_gap: float = 0.01) -> None:
        self.interface = interface
        self.log = log
        self.batch = batch
        self.batch_gap = batch_gap
        self.index = 0
        self.mac = b""
        self.proxied: set[IPv4Address] = set()
        self.counters: Counter[str] = Counter()

    async def start(self) -> None:
        name = self.interface

        def lookup(ipr: IPRoute) -> tuple[int, bytes]:
            found = ipr.link_lookup(ifname=name)
            if not found:
                raise BackendError(f"no interface named {name!r}")
            link = ipr.get_links(found[0])[0]
            mac = bytes.fromhex((link.get("address") or "").replace(":", ""))
            return int(found[0]), mac

        try:
            self.index, self.mac = await rtnl(lookup)
            write_sysctl(f"net/ipv4/conf/{self.interface}/forwarding", "1")
            write_sysctl(f"net/ipv4/neigh/{self.interface}/proxy_delay", "0")
        except (NetlinkError, OSError) as exc:
            raise BackendError(f"ARP duties on {self.interface}: {exc}") from None

    async def proxy(self, home: IPv4Address) -> None:
        if home in self.proxied:
            return
        if await self._neigh("add", home):
            self.proxied.add(home)

    async def withdraw(self, home: IPv4Address) -> None:
        if home not in self.proxied:
            return
        self.proxied.discard(home)
        await self._neigh("del", home)

    async def withdraw_all(self) -> None:
        for home in list(self.proxied):
            await self.withdraw(home)

    async def _neigh(self, command: str, home: IPv4Address) -> bool:
        try:
            index = self.index
            await rtnl(
                lambda ipr: ipr.neigh(
                    command, dst=str(home), ifindex=index, flags=NTF_PROXY, family=socket.AF_INET
                )
            )
        except NetlinkError as exc:
            if command == "add" and exc.code == errno.EEXIST:
                return True
            if command == "del" and exc.code in (errno.ENOENT, errno.ESRCH):
                return True
            self.counters[f"proxy-{command}-errors"] += 1
            self.log("dataplane.proxy_arp_failed", command=command, home=home, error=str(exc))
            return False
        self.counters[f"proxy-{command}"] += 1
        return True

    def gratuitous(self, home: IPv4Address) -> None:
        try:
            netlink.send_gratuitous_arp(self.interface, self.mac, home)
        except OSError as exc:
            self.counters["garp-errors"] += 1
            self.log("dataplane.garp_failed", home=home, error=str(exc))
            return
        self.counters["garp-sent"] += 1

    async def announce(self, homes: Sequence[IPv4Address], still: Callable[[], bool]) -> int:
        """Gratuitous ARP for each of ``homes``, ``batch`` at a time with a pause between, while
        ``still()`` (we are still active); returns how many went out."""
        sent = 0
        for start in range(0, len(homes), self.batch):
            if not still():
                break
            for home in homes[start : start + self.batch]:
                if home in self.proxied:
                    self.gratuitous(home)
                    sent += 1
            await asyncio.sleep(self.batch_gap)
        return sent
