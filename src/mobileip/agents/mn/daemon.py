"""``mobileip mobilenode``: find an agent (or use a co-located care-of address), register,
renew before expiry, re-register on movement, deregister on return home.

Configuration (one ``[mobilenode]`` table; errors name file, key and line)::

    [mobilenode]
    interface = "eth0"
    home_address = "10.1.0.100"
    home_agent = "10.1.0.1"
    home_network = "10.1.0.0/24"      # an advertisement from here with the H flag means home
    spi = 256
    algorithm = "hmac-md5"
    key = "00112233445566778899aabbccddeeff"
    lifetime = 60                     # asked for; renewed at 3/4 of what was granted
    replay = "timestamp"
    reverse_tunnel = false            # T flag
    encapsulation = "ipip"            # or "gre" (G flag), "minimal" (M flag)
    agent_timeout = 3.0               # an agent silent this long is gone: solicit
    manage_routes = true              # default route via the current agent
    # home_gateway = "10.1.0.254"    # default route at home (default: the advertising HA)
    # colocated_care_of_address = "10.2.0.50"   # no agent: register straight with the HA (D)
    # nat_traversal = false          # RFC 3519 (co-located only): ask for UDP tunnelling; when
                                     # granted, traffic from the home address goes through it
    # nat_force = false              # RFC 3519 F flag: UDP tunnelling even when no NAT is seen
    # honour_registration_required = false   # co-located only: a foreign agent advertising R
                                     # (registration required) on our link relays our
                                     # registrations; with its U bit and nat_traversal the UDP
                                     # Tunnel Request carries R (RFC 3519 4.4, 4.11)
    # nai = "alice@example.net"      # RFC 2794 NAI; with home_address "0.0.0.0" (or none) the
                                     # HA assigns the home address from a pool (docs/pools.md)

Movement detection (RFC 5944 2.4.2): a foreign agent advertisement with another care-of address
than the one we registered, or the current agent falling silent for ``agent_timeout``. The
daemon is a small state machine around :class:`~mobileip.agents.client.RegistrationClient`, whose
blocking exchanges run in a worker thread. Log lines: ``mn.agent``, ``mn.registered``,
``mn.denied``, ``mn.home``, ``mn.deregistered``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import time
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import Literal

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from mobileip.agents.client import MobileNode, RegistrationClient, RegistrationResult
from mobileip.agents.fa.config import read_table
from mobileip.agents.mn.nat import NatTunnel
from mobileip.agents.mn.revoked import revocation_notice
from mobileip.agents.run import run_agent
from mobileip.core.security import SecurityAssociation
from mobileip.dataplane.encap import IPPROTO_GRE, IPPROTO_IPIP, IPPROTO_MINENC, decapsulate
from mobileip.log import Logger
from mobileip.net.netlink import ETH_P_ARP, gratuitous_arp_frame, rtnl, write_sysctl
from mobileip.net.tun import open_tun
from mobileip.wire import agent_adv as adv
from mobileip.wire.errors import DecodeError
from mobileip.wire.registration import Flags

ENCAPSULATION_FLAGS = {"ipip": 0, "gre": int(Flags.G), "minimal": int(Flags.M)}
ANY = IPv4Address("0.0.0.0")


@dataclass(frozen=True, slots=True)
class MobileNodeConfig:
    path: str
    interface: str
    home_address: IPv4Address
    home_agent: IPv4Address
    home_network: IPv4Network
    spi: int
    key: bytes
    algorithm: str = "hmac-md5"
    lifetime: int = 60
    replay: str = "timestamp"
    reverse_tunnel: bool = False
    encapsulation: str = "ipip"
    agent_timeout: float = 3.0
    manage_routes: bool = True
    colocated_care_of_address: IPv4Address | None = None
    home_gateway: IPv4Address | None = None
    port: int = 434
    nat_traversal: bool = False
    nat_force: bool = False
    honour_registration_required: bool = False
    nai: str | None = None

    @property
    def flags(self) -> int:
        flags = ENCAPSULATION_FLAGS[self.encapsulation]
        if self.reverse_tunnel:
            flags |= int(Flags.T)
        if self.colocated_care_of_address is not None:
            flags |= int(Flags.D)
        return flags


def load_mn_config(path: str) -> MobileNodeConfig:
    t = read_table(path, "mobilenode")
    net_text = t.string("home_network", required=True) or ""
    try:
        network = IPv4Network(net_text, strict=False)
    except ValueError:
        raise t.error("home_network", f"{net_text!r} is not ADDRESS/PREFIXLEN") from None
    cfg = MobileNodeConfig(
        path=path,
        interface=t.string("interface", required=True) or "",
        home_address=t.ipv4("home_address", ANY),
        home_agent=t.ipv4("home_agent", required=True),
        home_network=network,
        spi=t.integer("spi", None, 256, 0xFFFFFFFF, required=True) or 0,
        key=t.hex_key("key"),
        algorithm=t.choice("algorithm", ("hmac-md5", "prefix-suffix-md5"), "hmac-md5")
        or "hmac-md5",
        lifetime=t.integer("lifetime", 60, 1, 0xFFFE) or 60,
        replay=t.choice("replay", ("timestamp", "nonce"), "timestamp") or "timestamp",
        reverse_tunnel=t.boolean("reverse_tunnel", False),
        encapsulation=t.choice("encapsulation", tuple(ENCAPSULATION_FLAGS), "ipip") or "ipip",
        agent_timeout=t.number("agent_timeout", 3.0, 0.1, 600.0),
        manage_routes=t.boolean("manage_routes", True),
        colocated_care_of_address=t.ipv4("colocated_care_of_address"),
        home_gateway=t.ipv4("home_gateway"),
        port=t.integer("port", 434, 1, 65535) or 434,
        nat_traversal=t.boolean("nat_traversal", False),
        nat_force=t.boolean("nat_force", False),
        honour_registration_required=t.boolean("honour_registration_required", False),
        nai=t.string("nai"),
    )
    if cfg.home_address == ANY and cfg.nai is None:
        raise t.error("nai", "required when home_address is 0.0.0.0 or absent (a dynamic address)")
    if cfg.home_address != ANY and cfg.home_address not in cfg.home_network:
        raise t.error("home_network", f"does not contain home_address {cfg.home_address}")
    if cfg.nat_traversal and cfg.colocated_care_of_address is None:
        raise t.error("nat_traversal", "needs colocated_care_of_address (RFC 3519 4.1)")
    if cfg.honour_registration_required and cfg.colocated_care_of_address is None:
        raise t.error(
            "honour_registration_required",
            "needs colocated_care_of_address (through an agent every registration is relayed)",
        )
    t.finish()
    return cfg


@dataclass(frozen=True, slots=True)
class Agent:
    address: IPv4Address  # the advertisement's source
    care_of_address: IPv4Address | None  # None for a home agent advertisement
    home: bool


class MobileNodeDaemon:
    def __init__(self, cfg: MobileNodeConfig, log: Logger) -> None:
        self.cfg = cfg
        self.log = log
        self.sa = SecurityAssociation(cfg.spi, cfg.algorithm, cfg.key, (cfg.home_network,))
        # our home address: the configured one, or 0.0.0.0 until a reply assigns one
        self.home = cfg.home_address
        self.nai = cfg.nai.encode() if cfg.nai is not None else None
        self.agent: Agent | None = None
        self.heard_at = 0.0
        self.registered_coa: IPv4Address | None = None
        self.renew_at = float("inf")
        self.client: RegistrationClient | None = None
        self._client_key: tuple[str, IPv4Address] | None = None
        self._busy = False
        self._background: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self.icmp: socket.socket | None = None
        # every gratuitous ARP leaves through this one packet socket (opened at the first,
        # closed at stop), as net/vmac.announce does: a socket per frame pays an RCU grace
        # period in its bind and close (tens of ms, hundreds under load)
        self.garp: socket.socket | None = None
        self.raw: list[socket.socket] = []
        self.tun_fd = -1
        self.decapsulated = 0
        self.dropped = 0
        self.nat = NatTunnel(self) if cfg.nat_traversal else None
        self.accepted_id = 0  # of our last accepted request (RFC 3543 notices name it)
        # co-located, honour_registration_required: the foreign agent whose advertisement set R
        # (our registrations go through it), whether it also set U, when we last heard it
        self.relay: IPv4Address | None = None
        self.relay_udp = False
        self.relay_heard_at = 0.0
        self.started_at = 0.0

    # --- lifecycle -------------------------------------------------------------------------

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stopping.set)
        if self.cfg.colocated_care_of_address is not None:
            await self._start_decapsulator()
        if self.cfg.colocated_care_of_address is None or self.cfg.honour_registration_required:
            self.icmp = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
            self.icmp.setsockopt(
                socket.SOL_SOCKET, socket.SO_BINDTODEVICE, self.cfg.interface.encode()
            )
            self.icmp.setblocking(False)
            loop.add_reader(self.icmp.fileno(), self._on_icmp)
        self.log.info(
            "mn.started",
            home=self.home,
            home_agent=self.cfg.home_agent,
            mode="colocated" if self.cfg.colocated_care_of_address else "agent",
        )
        runner = asyncio.create_task(self._run())
        await self._stopping.wait()
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner
        if self.registered_coa is not None and self.agent is not None:
            with contextlib.suppress(Exception):  # best effort: deregister on the way out
                await self._register(self.agent, 0)
        if self.icmp is not None:
            loop.remove_reader(self.icmp.fileno())
            self.icmp.close()
        if self.garp is not None:
            self.garp.close()
            self.garp = None
        for sock in self.raw:
            loop.remove_reader(sock.fileno())
            sock.close()
        if self.nat is not None:
            await self.nat.stop()
        await self._release_home_address()
        if self.tun_fd >= 0:
            os.close(self.tun_fd)
        self.log.info("mn.decapsulated", packets=self.decapsulated, dropped=self.dropped)
        if self.client is not None:
            self.client.close()
        self.log.info("mn.stopped")

    async def _run(self) -> None:
        colocated = self.cfg.colocated_care_of_address
        if colocated is not None:
            self.agent = Agent(self.cfg.home_agent, colocated, home=False)
        honour = colocated is not None and self.cfg.honour_registration_required
        self.started_at = time.monotonic()
        if honour:
            self._solicit()
        while True:
            now = time.monotonic()
            silent = now - self.heard_at > self.cfg.agent_timeout
            if (
                honour
                and self.relay is not None
                and now - self.relay_heard_at > self.cfg.agent_timeout
            ):
                self.log.info("mn.relay_lost", agent=self.relay)
                self._set_relay(None, False)
            if honour and self.relay is None and now - self.started_at < self.cfg.agent_timeout:
                # first listen for an agent that requires registrations through it
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), 0.2)
                continue
            if colocated is None and self.agent is not None and silent:
                self.log.info("mn.agent_lost", agent=self.agent.address)
                self.agent = None
            if self.agent is None and colocated is None:
                self._solicit()
            elif (
                self.agent is not None
                and not self.agent.home
                and (self.registered_coa != self.agent.care_of_address or now >= self.renew_at)
            ):
                await self._register(self.agent, self.cfg.lifetime)
            if self.nat is not None:
                self.nat.tick(time.monotonic())
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                wait = min(1.0, max(0.05, self.renew_at - time.monotonic()))
                await asyncio.wait_for(self._wake.wait(), wait)

    # --- co-located care-of address: we are the tunnel exit ---------------------------------

    async def _start_decapsulator(self) -> None:
        """Raw sockets for protocols 4/47/55; inner packets for our home address from our home
        agent go into a TUN device, so the kernel delivers them to us locally."""
        loop = asyncio.get_running_loop()
        self.tun_fd, name = open_tun("mipmn0")

        def up(ipr: IPRoute) -> None:
            ipr.link("set", index=ipr.link_lookup(ifname=name)[0], state="up")

        await rtnl(up)
        write_sysctl(f"net/ipv4/conf/{name}/rp_filter", "0")
        write_sysctl("net/ipv4/conf/all/rp_filter", "0")
        for proto in (IPPROTO_IPIP, IPPROTO_GRE, IPPROTO_MINENC):
            sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, proto)
            sock.setblocking(False)
            self.raw.append(sock)
            loop.add_reader(sock.fileno(), self._on_tunnelled, sock)
        if self.nat is not None:
            await self.nat.start(name)

    def _on_tunnelled(self, sock: socket.socket) -> None:
        for _ in range(64):
            try:
                packet = sock.recv(65535)
            except OSError:
                return
            try:
                d = decapsulate(packet)
            except DecodeError:
                self.dropped += 1
                continue
            if d.outer_src != self.cfg.home_agent or d.inner_dst != self.home:
                self.dropped += 1
                continue
            with contextlib.suppress(OSError):
                os.write(self.tun_fd, d.inner)
                self.decapsulated += 1

    # --- agent discovery -------------------------------------------------------------------

    def _solicit(self) -> None:
        if self.icmp is None:
            return
        with contextlib.suppress(OSError):
            self.icmp.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
            self.icmp.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, self.home.packed)
            self.icmp.sendto(adv.AgentSolicitation().encode(), ("224.0.0.2", 0))

    def _on_icmp(self) -> None:
        assert self.icmp is not None
        for _ in range(32):
            try:
                data, src = self.icmp.recvfrom(2048)
            except (BlockingIOError, OSError):
                return
            if not data:
                continue
            try:
                message = adv.decode_advertisement(data[(data[0] & 0x0F) * 4 :])
            except DecodeError:
                continue
            self._heard(IPv4Address(src[0]), message)

    def _heard(self, source: IPv4Address, message: adv.AgentAdvertisement) -> None:
        home = message.is_home_agent and source in self.cfg.home_network
        if self.cfg.colocated_care_of_address is not None:
            # co-located, honour_registration_required: RFC 5944 3.3 / RFC 3519 4.11
            if message.is_foreign_agent and message.registration_required and not home:
                self.relay_heard_at = time.monotonic()
                self._set_relay(source, bool(message.flags2 & adv.FLAG_U))
            return
        if message.is_foreign_agent and message.care_of_addresses and not home:
            agent = Agent(source, message.care_of_addresses[0], home=False)
        elif home:
            agent = Agent(source, None, home=True)
        else:
            return
        self.heard_at = time.monotonic()
        if agent == self.agent:
            return
        self.log.info(
            "mn.agent", agent=agent.address, care_of_address=agent.care_of_address or "-", home=home
        )
        self.agent = agent
        task = asyncio.get_running_loop().create_task(self._moved(agent))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _set_relay(self, relay: IPv4Address | None, udp: bool) -> None:
        """Register through ``relay`` (None: straight to the home agent) from now on; a change
        re-registers at once."""
        if relay == self.relay and udp == self.relay_udp:
            return
        self.log.info("mn.relay", agent=relay or "-", udp=udp)
        self.relay, self.relay_udp = relay, udp
        if self.nat is not None:
            self.nat.via_fa, self.nat.fa_udp = relay is not None, udp
        self.renew_at = time.monotonic()
        self._wake.set()

    async def _moved(self, agent: Agent) -> None:
        if agent.home:
            await self._route_via(self.cfg.home_gateway or agent.address)
            # RFC 5944 4.6: gratuitous ARP so the home link forgets the HA's proxy answers
            self._gratuitous_arp()
            if self.registered_coa is not None:
                await self._register(agent, 0)
            self._gratuitous_arp()
            self.log.info("mn.home", gateway=self.cfg.home_gateway or agent.address)
        else:
            await self._route_via(agent.address)
        self._wake.set()

    def _gratuitous_arp(self) -> None:
        """One gratuitous ARP for our home address on the home link, through :attr:`garp`
        (unbound, protocol 0: it receives nothing; the interface named at each send; non-blocking:
        a full queue or a link that is down is an ``OSError``, logged)."""
        ifname = self.cfg.interface
        try:
            with open(f"/sys/class/net/{ifname}/address", encoding="ascii") as f:
                mac = bytes.fromhex(f.read().strip().replace(":", ""))
            if self.garp is None:
                sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
                sock.setblocking(False)
                self.garp = sock
            self.garp.sendto(gratuitous_arp_frame(mac, self.home), (ifname, ETH_P_ARP))
        except (OSError, ValueError) as exc:
            self.log.warning("mn.garp_failed", error=str(exc))

    async def _route_via(self, gateway: IPv4Address) -> None:
        if not self.cfg.manage_routes:
            return
        ifname = self.cfg.interface
        # no preferred source while we wait for an assigned address (RFC 2794)
        src = {"prefsrc": str(self.home)} if self.home != ANY else {}

        def route(ipr: IPRoute) -> None:
            index = ipr.link_lookup(ifname=ifname)[0]
            ipr.route(
                "replace", dst="0.0.0.0/0", gateway=str(gateway), oif=index, flags=4, **src
            )  # flags 4: RTNH_F_ONLINK, the agent is on our link whatever our address

        try:
            await rtnl(route)
        except NetlinkError as exc:
            self.log.warning("mn.route_failed", gateway=gateway, error=str(exc))

    # --- registration ----------------------------------------------------------------------

    async def _register(self, agent: Agent, lifetime: int) -> None:
        if self._busy:
            return
        self._busy = True
        self._watch_notices(False)
        if self.nat is not None:
            self.nat.pause()  # the exchange's thread reads the socket (tunnel data included)
        try:
            result = await asyncio.to_thread(self._exchange, agent, lifetime)
        finally:
            self._busy = False
            self._watch_notices(True)
            if self.nat is not None:
                self.nat.registered(result if lifetime else None)
        now = time.monotonic()
        if lifetime == 0 or agent.home:
            self.log.info("mn.deregistered", code=result.code, meaning=result.meaning)
            self.registered_coa = None
            self.renew_at = float("inf")
            if result.accepted:
                await self._release_home_address()  # back in the pool: no longer ours
            return
        if result.accepted and self.home == ANY and result.home_address:
            self.home = IPv4Address(result.home_address)  # RFC 5944 3.6: the HA assigned it
            await self._adopt_home_address()  # on lo before we say so: it is ours from here
            self.log.info("mn.assigned", home=self.home, nai=self.cfg.nai)
            if self.cfg.colocated_care_of_address is None and not agent.home:
                await self._route_via(agent.address)  # now with the address as its source
        if result.accepted:
            granted = result.lifetime
            self.accepted_id = result.identification
            self.registered_coa = agent.care_of_address
            self.renew_at = now + max(1.0, min(granted * 0.75, granted - 3.0))
            self.log.info(
                "mn.registered",
                care_of_address=agent.care_of_address,
                via=self._via(agent),
                lifetime=granted,
                code=result.code,
                home=self.home,
            )
        else:
            self.registered_coa = None
            self.renew_at = now + 1.0  # retry in a second
            if result.code in (129, 131) and self.nai is not None and self.cfg.home_address == ANY:
                # 129: another NAI's now; 131: in no pool any more (a shrink, then a restart of
                # the Home Agent, docs/pools.md): give it up and ask for a new one
                await self._release_home_address()
            self.log.warning(
                "mn.denied", code=result.code, meaning=result.meaning, via=self._via(agent)
            )

    def _via(self, agent: Agent) -> IPv4Address:
        """Where our registrations go: the relaying foreign agent when there is one."""
        relayed = self.cfg.colocated_care_of_address is not None and self.relay is not None
        return self.relay if relayed and self.relay is not None else agent.address

    async def _release_home_address(self) -> None:
        """Take an assigned home address off ``lo`` and forget it (deregistered, stopping, or
        refused 129: another NAI holds it). A configured home address is the operator's."""
        if self.cfg.home_address != ANY or self.home == ANY:
            return
        address = str(self.home)
        self.home = ANY
        await self._lo_address("del", address)
        self.log.info("mn.released", home=address, nai=self.cfg.nai)

    def _watch_notices(self, on: bool) -> None:
        """Between exchanges, read our registration socket for the foreign agent's revocation
        notice (RFC 3543 I bit). Not for a co-located care-of address (no foreign agent)."""
        if self.client is None or self.cfg.colocated_care_of_address is not None:
            return
        loop = asyncio.get_running_loop()
        fd = self.client.sock.fileno()
        if on and not self._stopping.is_set():
            loop.add_reader(fd, self._on_notice)
        else:
            loop.remove_reader(fd)

    def _on_notice(self) -> None:
        """The foreign agent revoked our binding: drop it and register again at once."""
        client, agent = self.client, self.agent
        if client is None:
            return
        # non-blocking: the exchange left a timeout on the socket, and CPython waits up to it
        # even with MSG_DONTWAIT, so the read after the notice blocked the loop ~0.5 s (the
        # re-registration delay after a revocation; the exchange sets its timeout again)
        client.sock.settimeout(0.0)
        for _ in range(8):
            try:
                data, src = client.sock.recvfrom(65535, socket.MSG_DONTWAIT)
            except OSError:  # nothing more to read (BlockingIOError), or the socket went
                return
            if agent is None or self.registered_coa is None:
                continue
            notice = revocation_notice(data, src, agent.address, self.accepted_id)
            if notice is None:
                continue
            self.log.info(
                "mn.revoked",
                home=notice.home_address,
                via=agent.address,
                care_of_address=self.registered_coa,
                code=notice.code,
                action="re-register",
            )
            self.registered_coa = None
            self.renew_at = time.monotonic()
            self._wake.set()

    async def _adopt_home_address(self) -> None:
        """Put an assigned home address on ``lo`` (/32), as an operator does for a configured
        one: packets for it are ours (decapsulated, or at home), ARP for it stays the HA's."""
        await self._lo_address("add", str(self.home))

    async def _lo_address(self, op: Literal["add", "del"], address: str) -> None:
        """Add or delete ``address``/32 on ``lo``; already there (add) or already gone (del) is
        fine, any other failure is logged, not raised."""

        def change(ipr: IPRoute) -> None:
            index = ipr.link_lookup(ifname="lo")[0]
            with contextlib.suppress(NetlinkError):  # already there / already gone
                ipr.addr(op, index=index, address=address, prefixlen=32)

        try:
            await rtnl(change)
        except (NetlinkError, IndexError) as exc:
            self.log.warning("mn.address_failed", home=address, error=str(exc))

    def _exchange(self, agent: Agent, lifetime: int) -> RegistrationResult:
        cfg = self.cfg
        if agent.home:  # returning home: straight to the HA, CoA = home address, all bindings
            coa, dest = self.home, str(cfg.home_agent)
        elif cfg.colocated_care_of_address is not None:
            coa = cfg.colocated_care_of_address
            dest = str(self.relay if self.relay is not None else cfg.home_agent)
        else:
            assert agent.care_of_address is not None
            coa, dest = agent.care_of_address, str(agent.address)
        extra = self.nat.request_extensions() if self.nat is not None and lifetime else ()
        mn = MobileNode(
            self.home, coa, cfg.home_agent, self.sa, cfg.replay, self.nai, extensions=extra
        )
        key = (dest, coa)
        if self.client is None:
            bind = str(cfg.colocated_care_of_address or self.home)
            self.client = RegistrationClient(
                mn, (dest, cfg.port), timeout=0.5, retries=3, bind=(bind, 0)
            )
            if self.nat is not None:
                self.client.on_tunnel_data = self.nat.tunnel_data
                self.client.tunnel_from = self.nat.peer()  # the HA's, also through an agent
        self.client.mn, self.client.ha = mn, (dest, cfg.port)
        self.client.reply_from = None
        if self.home == ANY and not agent.home and cfg.colocated_care_of_address is None:
            # RFC 2794 through a foreign agent, with no address yet: a link broadcast from
            # 0.0.0.0; the agent answers to the broadcast address too (agents/fa/rules.py)
            sock = self.client.sock
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, cfg.interface.encode())
            self.client.ha = ("255.255.255.255", cfg.port)
            self.client.reply_from = (dest, cfg.port)
        self._client_key = key
        return self.client.register(lifetime, 0 if lifetime == 0 else cfg.flags)


def run_mobilenode(path: str, log_format: str = "text", log_level: str = "info") -> int:
    return run_agent(
        load_mn_config,
        lambda cfg, log: MobileNodeDaemon(cfg, log).serve(),
        "mn.failed",
        path,
        log_format,
        log_level,
    )
