"""ARP duties of the Home Agent on the home link (RFC 5944 4.6), without per-binding kernel state.

* proxy ARP for the home address of every away mobile node: the ``proxy_arp`` sysctl on the
  interface that answers for the home link (the virtual-MAC macvlan, or the home interface),
  with ``forwarding=1`` and ``proxy_delay=0`` (the answer is immediate). Linux answers an ARP
  request there when the target's route leaves by another device: exactly the away home
  addresses, routed into the tunnel device by table ``T``, and only while the ``ip rule`` to
  ``T`` is in place, i.e. on the active member. No proxy neighbour entry per binding (the
  kernel keeps those in a 16-bucket hash: 74 us per add at 100,000, minutes at 1,000,000);
* gratuitous ARP for a home address when its binding is created while active (neighbours drop
  the mobile node's own MAC), and, without a virtual MAC, a paced re-announcement of every bound
  home address when this member becomes active (:meth:`ArpDuties.announce`, in batches).

The sysctls go through a :class:`~mobileip.net.vmac.Sysctls`, which restores them on a clean
stop.
"""

from __future__ import annotations

import asyncio
import errno
import socket
from collections import Counter
from collections.abc import Callable, Sequence
from ipaddress import IPv4Address

from mobileip.dataplane.backend import BackendError
from mobileip.net import netlink
from mobileip.net.vmac import Sysctls, read_mac

Log = Callable[..., None]


class ArpDuties:
    def __init__(
        self,
        interface: str,
        log: Log,
        batch: int = 64,
        batch_gap: float = 0.01,
        sysctls: Sysctls | None = None,
    ) -> None:
        self.interface = interface
        self.log = log
        self.batch = batch
        self.batch_gap = batch_gap
        self.sysctls = sysctls if sysctls is not None else Sysctls()
        self.index = 0
        self.mac = b""
        self.counters: Counter[str] = Counter()
        self._sock: socket.socket | None = None

    async def start(self) -> None:
        """Look the interface up and turn proxy ARP on (answers only once routes say so)."""
        name = self.interface
        try:
            self.index = socket.if_nametoindex(name)
            self.mac = read_mac(name)
            self.sysctls.set(f"net/ipv4/conf/{name}/forwarding", "1")
            self.sysctls.set(f"net/ipv4/conf/{name}/proxy_arp", "1")
            self.sysctls.set(f"net/ipv4/neigh/{name}/proxy_delay", "0")
            # one long-lived, non-blocking packet socket: opening and binding one per frame
            # (net.netlink.send_gratuitous_arp) stalls the sender after ~500 frames in a row
            self.close()
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(netlink.ETH_P_ARP))
            sock.bind((name, netlink.ETH_P_ARP))
            sock.setblocking(False)
            self._sock = sock
        except OSError as exc:
            raise BackendError(f"ARP duties on {name}: {exc}") from None

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def gratuitous(self, home: IPv4Address) -> None:
        """One gratuitous ARP for ``home`` from the interface's MAC; never blocks (a full
        queue counts ``garp-dropped``)."""
        if self._sock is None:
            self.counters["garp-errors"] += 1
            return
        frame = netlink.gratuitous_arp_frame(self.mac, home)
        for attempt in (1, 2):
            try:
                self._sock.send(frame)
            except BlockingIOError:
                self.counters["garp-dropped"] += 1
                return
            except OSError as exc:
                # a packet socket bound to a link that was down (the virtual-MAC macvlan of a
                # standby) keeps one pending ENETDOWN per down->up, reported by the next send
                if exc.errno == errno.ENETDOWN and attempt == 1:
                    continue
                self.counters["garp-errors"] += 1
                if self.counters["garp-errors"] <= 10:
                    self.log("dataplane.garp_failed", home=home, error=str(exc))
                return
            self.counters["garp-sent"] += 1
            return

    async def announce(self, homes: Sequence[IPv4Address | int], still: Callable[[], bool]) -> int:
        """Gratuitous ARP for each of ``homes``, ``batch`` at a time with a pause between, while
        ``still()`` (we are still active); returns how many went out. Integers are made
        addresses one batch at a time, so a takeover's 100,000 homes cost the loop nothing up
        front."""
        sent = 0
        for start in range(0, len(homes), self.batch):
            if not still():
                break
            for home in homes[start : start + self.batch]:
                if still():
                    self.gratuitous(IPv4Address(home))
                    sent += 1
            await asyncio.sleep(self.batch_gap)
        return sent
