"""The mobile node's side of RFC 3519: a UDP tunnel to the home agent on the registration socket.

With ``nat_traversal = true`` (co-located care-of address only) every registration carries a UDP
Tunnel Request (F when ``nat_force``). When the reply's UDP Tunnel Reply says 0 (will tunnel):

* tunnel data (type 4) from the home agent on the registration socket is decapsulated into the
  TUN device when its packet is for our home address (read by the event loop between
  registrations, and by the registration thread during one: ``RegistrationClient.on_tunnel_data``);
* packets from our home address are routed into the TUN (``ip rule from HOME lookup 3519``,
  ``default dev TUN table 3519``), read here and sent as tunnel data to the home agent's port 434
  from the registration socket, so they cross the NAT on the mapping the registration opened
  (a reverse tunnel: through a NAT nothing else would reach the correspondent with our address);
* with nothing sent for the reply's keepalive interval, a keepalive (an ICMP echo request to the
  home agent, in tunnel data) keeps the NAT's mapping up.

A reply without the extension, or with 64 (declined), switches the tunnel off: the node is then an
ordinary co-located node (IP-in-IP). Log lines: ``mn.udp_tunnel``, ``mn.udp_tunnel_off``.

Registering through a foreign agent (``via_fa``: its advertisement set R and the daemon honours it,
RFC 3519 4.4 and 4.11): the request carries R when the advertisement also set U, and no UDP Tunnel
Request at all without U (the home agent would tunnel to the agent). Tunnel data still goes to and
comes from the home agent itself (not the agent the registrations go through), and a keepalive
leaves at once after every accepted registration: the home agent holds the binding half bound
until that keepalive names the NAT's port for our socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from ipaddress import IPv4Address
from typing import TYPE_CHECKING, Protocol

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from mobileip.net.netlink import rtnl
from mobileip.wire import nat
from mobileip.wire.errors import DecodeError
from mobileip.wire.registration import UnknownExtension

if TYPE_CHECKING:
    from mobileip.agents.client import RegistrationClient, RegistrationResult
    from mobileip.log import Logger

ROUTE_TABLE = 3519  # where packets from the home address are routed into the TUN
RULE_PRIORITY = 3519


class _Config(Protocol):
    @property
    def home_agent(self) -> IPv4Address: ...

    @property
    def nat_force(self) -> bool: ...

    @property
    def port(self) -> int: ...


class _Node(Protocol):
    @property
    def cfg(self) -> _Config: ...

    log: Logger
    home: IPv4Address
    tun_fd: int
    client: RegistrationClient | None
    decapsulated: int
    dropped: int


class NatTunnel:
    def __init__(self, node: _Node) -> None:
        self.node = node
        self.active = False
        self.keepalive = 0
        self.last_sent = 0.0
        self.seq = 0
        self.sent = 0
        self.keepalives = 0
        self.received = 0
        self._tun_name = ""
        self._reading = False
        self._rule = False
        self.via_fa = False  # registering through a foreign agent (its advertisement set R)
        self.fa_udp = False  # ... whose advertisement also set U (RFC 3519 3.4)
        self.first_keepalives = 0
        self._repeat_at = 0.0  # the first keepalive's one repeat (it is UDP: it may be lost)

    # --- registration ---------------------------------------------------------------------

    def request_extensions(self) -> tuple[UnknownExtension, ...]:
        flags = nat.REQUEST_F if self.node.cfg.nat_force else 0
        if self.via_fa:
            if not self.fa_udp:  # RFC 3519 4.4: MUST NOT without U
                return ()
            flags |= nat.REQUEST_R  # RFC 3519 3.1.2
        return (nat.UdpTunnelRequest(nat.ENCAP_IPIP, flags).extension(),)

    def peer(self) -> tuple[str, int]:
        """Where tunnel data goes and comes from: the home agent's registration port (also when
        registrations go through a foreign agent)."""
        cfg = self.node.cfg
        return (str(cfg.home_agent), cfg.port)

    def pause(self) -> None:
        """Stop reading the registration socket: an exchange's thread is about to."""
        client = self.node.client
        if self._reading and client is not None:
            asyncio.get_running_loop().remove_reader(client.sock.fileno())
        self._reading = False

    def registered(self, result: RegistrationResult | None) -> None:
        """After an exchange (None: a deregistration): switch the tunnel on or off."""
        log = self.node.log
        reply = nat.find_reply(result.extensions) if result is not None else None
        granted = result is not None and result.accepted and reply is not None and reply.accepted
        if granted and reply is not None:
            if not self.active or self.keepalive != reply.keepalive:
                log.info("mn.udp_tunnel", keepalive=reply.keepalive, forced=reply.forced)
            self.active = True
            self.keepalive = reply.keepalive
            if self.via_fa:  # RFC 3519 4.4: at once, the HA's binding waits for it (4.6)
                self.first_keepalives += 1
                now = time.monotonic()
                self._keepalive(now)
                self._repeat_at = now + 1.0
        elif result is None or result.accepted:
            if self.active:
                log.info("mn.udp_tunnel_off", code=reply.code if reply is not None else "-")
            self.active = False
        # a denial (or no reply) keeps the tunnel as it was until the binding's fate is known
        client = self.node.client
        if self.active and client is not None and not self._reading:
            client.sock.setblocking(False)
            asyncio.get_running_loop().add_reader(client.sock.fileno(), self._on_socket)
            self._reading = True

    # --- the data path --------------------------------------------------------------------

    async def start(self, tun_name: str) -> None:
        """Route packets from the home address into the TUN and read them."""
        self._tun_name = tun_name
        home = str(self.node.home)

        def setup(ipr: IPRoute) -> None:
            index = ipr.link_lookup(ifname=tun_name)[0]
            ipr.route("replace", dst="0.0.0.0/0", oif=index, table=ROUTE_TABLE)
            with contextlib.suppress(NetlinkError):  # already there (a restart)
                ipr.rule("add", src=home, src_len=32, table=ROUTE_TABLE, priority=RULE_PRIORITY)

        await rtnl(setup)
        self._rule = True
        asyncio.get_running_loop().add_reader(self.node.tun_fd, self._on_tun)

    async def stop(self) -> None:
        loop = asyncio.get_running_loop()
        self.pause()
        if self.node.tun_fd >= 0:
            loop.remove_reader(self.node.tun_fd)
        if self._rule:
            home = str(self.node.home)

            def teardown(ipr: IPRoute) -> None:
                with contextlib.suppress(NetlinkError):
                    ipr.rule("del", src=home, src_len=32, table=ROUTE_TABLE, priority=RULE_PRIORITY)

            await rtnl(teardown)
            self._rule = False
        self.node.log.info(
            "mn.udp_tunnel_counters",
            sent=self.sent,
            received=self.received,
            keepalives=self.keepalives,
        )

    def _send(self, data: bytes, now: float | None = None) -> None:
        client = self.node.client
        if client is None:
            return
        try:
            client.sock.sendto(data, self.peer())
        except OSError:
            self.node.dropped += 1
            return
        self.last_sent = now if now is not None else time.monotonic()

    def _on_tun(self) -> None:
        """Packets from our home address: through the UDP tunnel (dropped while it is off)."""
        for _ in range(64):
            try:
                packet = os.read(self.node.tun_fd, 65535)
            except OSError:
                return
            if not self.active or len(packet) < 20 or packet[0] >> 4 != 4:
                self.node.dropped += 1
                continue
            self._send(nat.encapsulate(packet))
            self.sent += 1

    def tick(self, now: float) -> None:
        """Called about once a second: a keepalive when nothing was sent for the interval."""
        if self.active and self._repeat_at and now >= self._repeat_at:
            self._repeat_at = 0.0
            self._keepalive(now)
            return
        if not self.active or not self.keepalive or now - self.last_sent < self.keepalive:
            return
        self._keepalive(now)

    def _keepalive(self, now: float) -> None:
        self.seq = (self.seq + 1) & 0xFFFF
        self._send(nat.keepalive(self.node.home, self.node.cfg.home_agent, self.seq), now)
        self.keepalives += 1
        self.node.log.debug("mn.keepalive", seq=self.seq)

    def _on_socket(self) -> None:
        client = self.node.client
        if client is None:
            return
        for _ in range(64):
            try:
                data, src = client.sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            if (src[0], src[1]) != self.peer() or not data:
                self.node.dropped += 1
                continue
            if data[0] == nat.TYPE_TUNNEL_DATA:
                self.tunnel_data(data)
            # a late registration reply: the exchange that wanted it has given up already

    def tunnel_data(self, data: bytes) -> None:
        """Tunnel data from the home agent (event loop or registration thread)."""
        try:
            msg = nat.decode_data(data)
        except DecodeError:
            self.node.dropped += 1
            return
        inner = msg.payload
        if (
            msg.next_header != nat.ENCAP_IPIP
            or len(inner) < 20
            or inner[0] >> 4 != 4
            or inner[16:20] != self.node.home.packed
        ):
            self.node.dropped += 1
            return
        try:
            os.write(self.node.tun_fd, inner)
        except OSError:
            self.node.dropped += 1
            return
        self.received += 1
        self.node.decapsulated += 1
