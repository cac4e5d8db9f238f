"""``mobileip foreignagent``: :class:`~mobileip.agents.fa.rules.ForeignAgentCore` on asyncio.

* UDP port 434: requests from visiting mobile nodes and replies from home agents go through the
  core; a host route ``HOME/32 dev <interface>`` is installed while a mobile node has a request
  pending or is a visitor, so replies and decapsulated packets reach it on the foreign link
  (the kernel ARPs for its home address there);
* raw sockets for IP protocols 4, 47 and 55: a tunnelled packet from a visitor's home agent for
  that visitor is decapsulated, its TTL decremented, and sent on (IP_HDRINCL) to the visitor;
* reverse tunnelling (T flag): a policy rule sends packets *from* the visitor's home address
  arriving on the foreign link into a TUN device; we encapsulate them to its home agent;
* agent advertisements (ICMP type 9 + extension 16) to 224.0.0.1 on the foreign link every
  ``advertisement_interval``, and at once in answer to a solicitation (ICMP type 10);
* RFC 3519 (``nat_traversal``: we sit behind a NAT): relayed registrations ask for a UDP tunnel;
  for a visitor granted one, tunnel data from its home agent on our registration socket is
  delivered like a decapsulated packet, its reverse-tunnelled packets leave as tunnel data from
  that socket, and a keepalive goes for each such visitor that sent nothing for its interval
  (the mapping our NAT keeps for us is shared by every visitor; per visitor, so that each home's
  binding follows a NAT rebind);
* a mobile node asking for a home address (RFC 2794) has none yet: its replies go to the limited
  broadcast address on the foreign link (``SO_BROADCAST``; the care-of address as the source
  takes them out of that interface), and its host route waits for the assigned address.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import math
import os
import socket
import time
from collections.abc import Coroutine
from ipaddress import IPv4Address
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from mobileip.agents.fa.config import ForeignAgentConfig, load_fa_config
from mobileip.agents.fa.rules import (
    ANY,
    Denied,
    ForeignAgentCore,
    ForeignAgentSettings,
    Output,
    Visitor,
    VisitorAdded,
    VisitorRemoved,
)
from mobileip.agents.run import run_agent
from mobileip.core.security import SecurityAssociation
from mobileip.dataplane.backend import OUTER_OVERHEAD
from mobileip.dataplane.encap import (
    IPPROTO_GRE,
    IPPROTO_IPIP,
    IPPROTO_MINENC,
    Encapsulation,
    TunnelRefused,
    decapsulate,
    encapsulate,
    forwarded,
    parse_ipv4,
)
from mobileip.log import Logger
from mobileip.net.netlink import rtnl, write_sysctl
from mobileip.net.tun import MAX_PACKET, open_tun
from mobileip.net.udp import Address, UdpEndpoint
from mobileip.wire import agent_adv as adv
from mobileip.wire import nat
from mobileip.wire.errors import DecodeError
from mobileip.wire.registration import TYPE_REPLY, TYPE_REQUEST
from mobileip.wire.revocation import TYPE_REVOCATION

REVERSE_TABLE = 434  # routing table for reverse-tunnelled visitors
RULE_PRIORITY = 434
KEEPALIVE_IDENT = 0x3519  # the ICMP identifier of our keepalives (as the mobile node's)
ROUTE_LINGER = 2.0  # seconds a route stays after a denial (the reply is still being delivered)


class ForeignAgentDaemon:
    def __init__(self, cfg: ForeignAgentConfig, log: Logger) -> None:
        self.cfg = cfg
        self.log = log
        self.core = ForeignAgentCore(
            ForeignAgentSettings(
                care_of_addresses=frozenset({cfg.care_of_address}),
                max_lifetime=cfg.max_lifetime,
                minimal_encapsulation=cfg.minimal_encapsulation,
                gre=cfg.gre,
                reverse_tunnel=cfg.reverse_tunnel,
                pending_timeout=cfg.pending_timeout,
                fa_ha=_fa_ha(cfg),
                inform_mobile_node=cfg.inform_mobile_node,
                nat_traversal=cfg.nat_traversal,
            )
        )
        # RFC 3519: visitor's home -> when we last sent tunnel data for it (keepalives fill gaps)
        self.udp_sent: dict[IPv4Address, float] = {}
        self.keepalive_seq = 0
        self.endpoint: UdpEndpoint | None = None
        self.raw_out: socket.socket | None = None
        self.raw_in: list[socket.socket] = []
        self.icmp: socket.socket | None = None
        self.tun_fd = -1
        self.tun_index = 0
        self.ifindex = 0
        self.routes: set[IPv4Address] = set()
        self._route_locks: dict[IPv4Address, asyncio.Lock] = {}  # changes in flight, per home
        self._route_users: dict[IPv4Address, int] = {}
        self.rules: set[IPv4Address] = set()
        self.sequence = 0
        self.delivered = 0
        self.reverse_tunnelled = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        cfg = self.cfg
        self.ifindex = socket.if_nametoindex(cfg.interface)
        write_sysctl("net/ipv4/ip_forward", "1")
        write_sysctl(f"net/ipv4/conf/{cfg.interface}/rp_filter", "0")
        write_sysctl("net/ipv4/conf/all/rp_filter", "0")
        self.endpoint = UdpEndpoint.bind(loop, str(cfg.listen), cfg.port, self._on_datagram)
        self.endpoint.sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)  # RFC 2794
        self.raw_out = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        for proto in (IPPROTO_IPIP, IPPROTO_GRE, IPPROTO_MINENC):
            s = socket.socket(socket.AF_INET, socket.SOCK_RAW, proto)
            s.setblocking(False)
            self.raw_in.append(s)
            loop.add_reader(s.fileno(), self._on_tunnelled, s)
        if cfg.reverse_tunnel:
            self.tun_fd, name = open_tun(cfg.tun_name)

            def up(ipr: IPRoute) -> int:
                index: int = ipr.link_lookup(ifname=name)[0]
                ipr.link("set", index=index, state="up", mtu=1500 - OUTER_OVERHEAD)
                with contextlib.suppress(NetlinkError):
                    ipr.route("replace", dst="0.0.0.0/0", oif=index, table=REVERSE_TABLE)
                return index

            self.tun_index = await rtnl(up)
            write_sysctl(f"net/ipv4/conf/{name}/rp_filter", "0")
            loop.add_reader(self.tun_fd, self._on_tun)
        self.icmp = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        self.icmp.setblocking(False)
        self.icmp.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, cfg.interface.encode())
        self.icmp.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, cfg.care_of_address.packed)
        self.icmp.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
        self.icmp.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
        loop.add_reader(self.icmp.fileno(), self._on_icmp)
        self._tasks = [asyncio.create_task(self._ticker())]
        if cfg.advertisement_interval > 0:
            self._tasks.append(asyncio.create_task(self._advertiser()))
        self.log.info(
            "foreignagent.started",
            interface=cfg.interface,
            care_of_address=cfg.care_of_address,
            listen=f"{cfg.listen}:{cfg.port}",
            reverse_tunnel=cfg.reverse_tunnel,
        )

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        loop = asyncio.get_running_loop()
        for home in list(self.rules):
            await self._rule(home, add=False)
        for home in list(self.routes):
            await self._route(home, add=False)
        if self.tun_fd >= 0:
            loop.remove_reader(self.tun_fd)
            os.close(self.tun_fd)
            self.tun_fd = -1
        for s in self.raw_in:
            loop.remove_reader(s.fileno())
            s.close()
        if self.icmp is not None:
            loop.remove_reader(self.icmp.fileno())
            self.icmp.close()
        if self.raw_out is not None:
            self.raw_out.close()
        if self.endpoint is not None:
            self.endpoint.close()
        self.log.info("foreignagent.stopped", visitors=len(self.core.visitors))

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        import signal

        try:
            await self.start()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self._stopping.set)
            await self._stopping.wait()
        finally:
            await self.stop()

    # --- registration relay ------------------------------------------------------------------

    def _on_datagram(self, data: bytes, src: Address, dst: str | None) -> None:
        now = time.monotonic()
        if data[:1] == bytes([TYPE_REQUEST]):
            out = self.core.handle_request(data, src, now, time.time())
            home = _home_of_request(data)
            if home is not None and home != ANY and out.sends:
                # the reply (ours or the HA's) goes to the MN on the link: a route first
                self._spawn(self._then_send(home, out))
                return
        elif data[:1] == bytes([TYPE_REPLY]):
            out = self.core.handle_reply(data, src, now)
        elif data[:1] == bytes([nat.TYPE_TUNNEL_DATA]) and self.cfg.nat_traversal:
            self.deliver_udp(data, src)
            return
        elif data[:1] == bytes([TYPE_REVOCATION]):
            out = self.core.handle_revocation(data, src, now)
        else:
            self.core.counters["dropped-unknown-type"] += 1
            return
        self._emit(out)

    async def _then_send(self, home: IPv4Address, out: Output) -> None:
        await self._route(home, add=True)
        self._emit(out)

    def _emit(self, out: Output) -> None:
        assert self.endpoint is not None
        for send in out.sends:
            self.endpoint.send(send.data, send.dest, str(self.cfg.care_of_address))
        for ev in out.events:
            if isinstance(ev, VisitorAdded):
                v = ev.visitor
                self.log.info(
                    "visitor.added" if not ev.renewed else "visitor.renewed",
                    home=v.home_address,
                    home_agent=v.home_agent,
                    lifetime=v.lifetime,
                    reverse_tunnel=v.reverse_tunnel,
                )
                task = self._sync_routes(v.home_address)
            elif isinstance(ev, VisitorRemoved):
                self.log.info("visitor.removed", home=ev.home_address, reason=ev.reason)
                task = self._sync_routes(ev.home_address)
            elif isinstance(ev, Denied):
                self.log.info("registration.denied", home=ev.home_address, code=ev.code)
                if ev.home_address is not None and ev.home_address != ANY:
                    asyncio.get_running_loop().call_later(
                        ROUTE_LINGER, self._linger_done, ev.home_address
                    )
                continue
            else:
                continue
            self._spawn(task)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _linger_done(self, home: IPv4Address) -> None:
        self._spawn(self._sync_routes(home))

    async def _sync_routes(self, home: IPv4Address) -> None:
        visitor = self.core.visitors.get(home)
        wanted = visitor is not None or self.core.is_pending(home)
        await self._route(home, add=wanted)
        await self._rule(home, add=visitor is not None and visitor.reverse_tunnel)

    async def _route(self, home: IPv4Address, add: bool) -> None:
        # one change at a time per home: a revocation's route removal still in the netlink
        # thread made the request that followed it 2 ms later see the route as present, the
        # removal then landed and the Home Agent's reply to the mobile node was lost (it
        # registered again only on its retransmission, 0.5 s later: the failover test)
        lock = self._route_locks.get(home)
        if lock is None:
            lock = self._route_locks[home] = asyncio.Lock()
        self._route_users[home] = self._route_users.get(home, 0) + 1
        try:
            async with lock:
                await self._route_now(home, add)
        finally:
            self._route_users[home] -= 1
            if not self._route_users[home]:
                del self._route_users[home], self._route_locks[home]

    async def _route_now(self, home: IPv4Address, add: bool) -> None:
        if add == (home in self.routes):
            return
        index = self.ifindex
        cmd = "replace" if add else "del"
        try:
            await rtnl(lambda ipr: ipr.route(cmd, dst=f"{home}/32", oif=index, scope=253))
        except NetlinkError as exc:
            if add or exc.code not in (errno.ESRCH, errno.ENOENT):
                self.log.warning("foreignagent.route_failed", home=home, error=str(exc))
                return
        (self.routes.add if add else self.routes.discard)(home)

    async def _rule(self, home: IPv4Address, add: bool) -> None:
        if add == (home in self.rules) or (add and self.tun_fd < 0):
            return
        cmd = "add" if add else "del"
        iif = self.cfg.interface

        def rule(ipr: IPRoute) -> None:
            ipr.rule(
                cmd,
                src=str(home),
                src_len=32,
                iifname=iif,
                table=REVERSE_TABLE,
                priority=RULE_PRIORITY,
            )

        try:
            await rtnl(rule)
        except NetlinkError as exc:
            if exc.code not in (errno.EEXIST, errno.ENOENT, errno.ESRCH):
                self.log.warning("foreignagent.rule_failed", home=home, error=str(exc))
                return
        (self.rules.add if add else self.rules.discard)(home)

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(0.25)
            self._emit(self.core.tick(time.monotonic()))
            if self.cfg.nat_traversal:
                self._keepalives(time.monotonic())

    # --- tunnels -------------------------------------------------------------------------------

    def _on_tunnelled(self, sock: socket.socket) -> None:
        for _ in range(64):
            try:
                packet = sock.recv(MAX_PACKET)
            except BlockingIOError:
                return
            except OSError:
                return
            self.deliver(packet)

    def deliver(self, packet: bytes) -> None:
        """Decapsulate a packet a home agent tunnelled to us and hand it to the visitor."""
        c = self.core.counters
        try:
            d = decapsulate(packet)
            visitor = self.core.visitors.get(d.inner_dst)
            if visitor is None or d.outer_dst != self.cfg.care_of_address:
                c["decap-dropped-no-visitor"] += 1
                return
            if d.outer_src != visitor.home_agent:
                c["decap-dropped-wrong-home-agent"] += 1
                return
            header, payload = forwarded(d.inner)  # we forward it: one hop
        except DecodeError as exc:
            c[f"decap-dropped-{exc.reason}"] += 1
            return
        except TunnelRefused as exc:
            c[f"decap-dropped-{exc.reason}"] += 1
            return
        assert self.raw_out is not None
        try:
            self.raw_out.sendto(header.pack() + payload, (str(d.inner_dst), 0))
        except OSError:
            c["deliver-errors"] += 1
            return
        self.delivered += 1
        c[f"delivered-{d.kind.name.lower()}"] += 1

    def deliver_udp(self, data: bytes, src: Address) -> None:
        """RFC 3519: tunnel data from a visitor's home agent, let in by our NAT on the mapping
        our registrations opened: its packet goes to the visitor. Our keepalives' answers stop
        here."""
        c = self.core.counters
        if len(data) < nat.TUNNEL_HEADER_LEN + 20 or data[1] != nat.ENCAP_IPIP:
            c["udp-dropped-malformed"] += 1
            return
        inner = data[nat.TUNNEL_HEADER_LEN :]
        try:
            header, payload = forwarded(inner)
        except DecodeError as exc:
            c[f"udp-dropped-{exc.reason}"] += 1
            return
        except TunnelRefused as exc:
            c[f"udp-dropped-{exc.reason}"] += 1
            return
        visitor = self.core.visitors.get(header.dst)
        if visitor is None or not visitor.udp:
            c["udp-dropped-no-visitor"] += 1
            return
        if src[0] != str(visitor.home_agent):
            c["udp-dropped-wrong-home-agent"] += 1
            return
        if (
            header.src == visitor.home_agent
            and header.protocol == 1
            and payload[:1] == bytes([nat.ICMP_ECHO_REPLY])
            and payload[4:6] == KEEPALIVE_IDENT.to_bytes(2, "big")
        ):
            c["udp-keepalive-answered"] += 1
            return
        assert self.raw_out is not None
        try:
            self.raw_out.sendto(header.pack() + payload, (str(header.dst), 0))
        except OSError:
            c["deliver-errors"] += 1
            return
        self.delivered += 1
        c["delivered-udp"] += 1

    def _send_udp(self, data: bytes, visitor: Visitor) -> bool:
        assert self.endpoint is not None
        dest = (str(visitor.home_agent), self.core.settings.ha_port)
        sent = self.endpoint.send(data, dest, str(self.cfg.care_of_address))
        if sent:
            self.udp_sent[visitor.home_address] = time.monotonic()
        return sent

    def _keepalives(self, now: float) -> None:
        """A keepalive for each visitor tunnelled in UDP that sent nothing for its interval, from
        its home address (the home agent takes tunnel data only from a home address it tunnels
        to). Per visitor, not per home agent, although all share our NAT mapping: when the NAT
        rebinds, the home agent moves each home's binding on that home's own tunnel data."""
        for v in list(self.core.visitors.values()):
            if not v.udp or not v.udp_keepalive:
                continue
            if now - self.udp_sent.get(v.home_address, -math.inf) < v.udp_keepalive:
                continue
            self.keepalive_seq = (self.keepalive_seq + 1) & 0xFFFF
            echo = nat.icmp_echo(v.home_address, v.home_agent, KEEPALIVE_IDENT, self.keepalive_seq)
            if self._send_udp(nat.encapsulate(echo), v):
                self.core.counters["udp-keepalives-sent"] += 1
        for home in [h for h in self.udp_sent if h not in self.core.visitors]:
            del self.udp_sent[home]

    def _on_tun(self) -> None:
        for _ in range(64):
            try:
                packet = os.read(self.tun_fd, MAX_PACKET)
            except BlockingIOError:
                return
            except OSError:
                return
            self.reverse(packet)

    def reverse(self, packet: bytes) -> None:
        """A visitor's packet (policy-routed into our TUN): tunnel it to its home agent."""
        c = self.core.counters
        try:
            header, _ = parse_ipv4(packet)
        except DecodeError:
            c["reverse-dropped-not-ipv4"] += 1
            return
        visitor = self.core.visitor_for_reverse(header.src)
        if visitor is None:
            c["reverse-dropped-no-visitor"] += 1
            return
        if visitor.udp:  # RFC 3519: tunnel data from our registration socket
            if self._send_udp(nat.encapsulate(packet), visitor):
                self.reverse_tunnelled += 1
                c["reverse-udp"] += 1
            else:
                c["reverse-send-errors"] += 1
            return
        kind = Encapsulation.for_flags(visitor.flags)
        try:
            outer = encapsulate(
                packet, kind, self.cfg.care_of_address, visitor.home_agent, forwarding=False
            )
        except (TunnelRefused, DecodeError) as exc:
            c[f"reverse-dropped-{exc.reason}"] += 1
            return
        assert self.raw_out is not None
        try:
            self.raw_out.sendto(outer, (str(visitor.home_agent), 0))
        except OSError:
            c["reverse-send-errors"] += 1
            return
        self.reverse_tunnelled += 1
        c[f"reverse-{kind.name.lower()}"] += 1

    # --- agent advertisements --------------------------------------------------------------

    def advertisement(self) -> bytes:
        flags = adv.FLAG_R | adv.FLAG_F
        if self.cfg.minimal_encapsulation:
            flags |= adv.FLAG_M
        if self.cfg.gre:
            flags |= adv.FLAG_G
        if self.cfg.reverse_tunnel:
            flags |= adv.FLAG_T
        interval = self.cfg.advertisement_interval or 1.0
        message = adv.AgentAdvertisement(
            sequence=self.sequence,
            registration_lifetime=self.cfg.max_lifetime,
            flags=flags,
            flags2=(adv.FLAG_X if self.core.settings.fa_ha is not None else 0)  # RFC 3543
            | (adv.FLAG_U if self.cfg.nat_traversal else 0),  # RFC 3519
            care_of_addresses=(self.cfg.care_of_address,),
            lifetime=min(0xFFFF, max(1, math.ceil(3 * interval))),
            code=adv.CODE_MOBILITY_ONLY,
        )
        # RFC 5944 2.3.2: after 0xffff the sequence number wraps to 256
        self.sequence = self.sequence + 1 if self.sequence < 0xFFFF else 256
        return message.encode()

    def _advertise(self) -> None:
        if self.icmp is None:
            return
        try:
            self.icmp.sendto(self.advertisement(), (str(adv.ALL_SYSTEMS), 0))
        except OSError as exc:
            self.core.counters["advertisement-errors"] += 1
            self.log.debug("foreignagent.advertise_failed", error=str(exc))
            return
        self.core.counters["advertisements-sent"] += 1

    async def _advertiser(self) -> None:
        while True:
            self._advertise()
            await asyncio.sleep(self.cfg.advertisement_interval)

    def _on_icmp(self) -> None:
        assert self.icmp is not None
        for _ in range(64):
            try:
                data = self.icmp.recv(2048)
            except BlockingIOError:
                return
            except OSError:
                return
            icmp = data[(data[0] & 0x0F) * 4 :] if data else b""
            if adv.is_solicitation(icmp):
                self.core.counters["solicitations-received"] += 1
                self._advertise()


def _fa_ha(cfg: ForeignAgentConfig) -> SecurityAssociation | None:
    """The FA-HA security association for registration revocation, if configured."""
    if not cfg.revocation_key:
        return None
    return SecurityAssociation(cfg.revocation_spi, cfg.revocation_algorithm, cfg.revocation_key, ())


def _home_of_request(data: bytes) -> IPv4Address | None:
    if len(data) < 8:
        return None
    return IPv4Address(data[4:8])


def run_foreignagent(path: str, log_format: str = "text", log_level: str = "info") -> int:
    return run_agent(
        load_fa_config,
        lambda cfg, log: ForeignAgentDaemon(cfg, log).serve(),
        "foreignagent.failed",
        path,
        log_format,
        log_level,
    )
