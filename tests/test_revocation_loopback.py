"""RFC 3543 on loopback: the real Home Agent daemon (in process: UDP path, control API, the
revocation service on its extension points), our foreign agent's rules on a UDP socket of their
own (the FA daemon itself needs a namespace: raw sockets and routes), and a mobile node socket.

``mobileip``'s control API ``clear binding`` -> a Registration Revocation to the FA, whose first
copy a test hook drops -> retransmitted -> the FA acks, removes the visitor and tells the MN."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from typing import Any, cast

from helpers import free_port, homeagent_config, mobile_node_for

from mobileip.agents.client import (
    MobileNode,
    ReplyCheck,
    build_request,
    check_reply,
    fetch_json,
    post_json,
)
from mobileip.agents.fa import rules as fa
from mobileip.config import Config, parse_config, to_toml
from mobileip.core.replay import ntp_from_unix
from mobileip.core.revocation import RevocationSettings, Send
from mobileip.core.security import SecurityAssociation
from mobileip.daemon.homeagent import HomeAgentDaemon
from mobileip.daemon.revocation import RevocationService
from mobileip.log import Logger
from mobileip.web.admin import AdminService
from mobileip.web.control import ControlServer
from mobileip.wire import registration as wire
from mobileip.wire import revocation as rw

HA_IP = "127.0.0.1"
FA_IP = "127.0.0.2"  # the FA's care-of address and the source of what it relays
MN_IP = "127.0.0.3"
FA_HA = SecurityAssociation(0x1000, "hmac-md5", b"fa-ha-loopback-k", (IPv4Network("0.0.0.0/0"),))


class FaShell(asyncio.DatagramProtocol):
    """ForeignAgentCore on one UDP socket: requests, replies and revocations, sends as told."""

    def __init__(self, core: fa.ForeignAgentCore) -> None:
        self.core = core
        self.transport: asyncio.DatagramTransport | None = None
        self.revocations_seen = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        src = (str(addr[0]), int(addr[1]))
        now = time.monotonic()
        if data[0] == wire.TYPE_REQUEST:
            out = self.core.handle_request(data, src, now, time.time())
        elif data[0] == wire.TYPE_REPLY:
            out = self.core.handle_reply(data, src, now)
        elif data[0] == rw.TYPE_REVOCATION:
            self.revocations_seen += 1
            out = self.core.handle_revocation(data, src, now)
        else:
            return
        assert self.transport is not None
        for send in out.sends:
            self.transport.sendto(send.data, send.dest)


@dataclass
class DropFirst:
    """A revocation service drop hook: the first revocation is lost on the way."""

    dropped: list[Send] = field(default_factory=list)

    def __call__(self, send: Send) -> bool:
        if not self.dropped:
            self.dropped.append(send)
            return True
        return False


@dataclass
class FaLoopback:
    """The running Home Agent daemon, our FA's rules on their socket and a mobile node socket."""

    daemon: HomeAgentDaemon
    service: RevocationService
    fa_core: fa.ForeignAgentCore
    shell: FaShell
    fa_port: int
    mn_sock: socket.socket
    control: tuple[str, int]

    async def recv(self) -> bytes:
        data: bytes = await asyncio.get_running_loop().run_in_executor(
            None, self.mn_sock.recv, 2048
        )
        return data

    async def register(self, mn: MobileNode, lifetime: int, ident: int) -> ReplyCheck:
        """Register ``mn`` through the foreign agent; the reply must be an accepting one."""
        self.mn_sock.sendto(build_request(mn, lifetime, ident), (FA_IP, self.fa_port))
        check = check_reply(mn, await self.recv(), ident)
        assert check.ok and check.reply is not None and check.reply.code == 0, check.error
        return check


@contextlib.asynccontextmanager
async def fa_loopback(
    config: Config, ha_port: int, revocation: Callable[[HomeAgentDaemon], RevocationService]
) -> AsyncIterator[FaLoopback]:
    """Start the Home Agent daemon (with the admin API and ``revocation(daemon)``'s service,
    built before it starts), the FA's rules on FA_IP and a mobile node socket on MN_IP; close
    and stop them all at the end."""
    loop = asyncio.get_running_loop()
    daemon = HomeAgentDaemon(config, ControlServer(config.control), Logger(level="error"))
    AdminService(daemon)
    service = revocation(daemon)
    fa_core = fa.ForeignAgentCore(
        fa.ForeignAgentSettings(frozenset({IPv4Address(FA_IP)}), ha_port=ha_port, fa_ha=FA_HA)
    )
    shell = FaShell(fa_core)
    fa_port = free_port(FA_IP)
    await daemon.start()
    transport, _ = await loop.create_datagram_endpoint(lambda: shell, local_addr=(FA_IP, fa_port))
    mn_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    mn_sock.bind((MN_IP, 0))
    mn_sock.settimeout(5.0)
    control = (config.control.host, config.control.port)
    try:
        yield FaLoopback(daemon, service, fa_core, shell, fa_port, mn_sock, control)
    finally:
        mn_sock.close()
        transport.close()
        await daemon.stop()


def test_clear_binding_revokes_at_the_foreign_agent_with_a_retransmission() -> None:
    raw = homeagent_config(HA_IP, homeagent={"address": HA_IP})
    config = parse_config(to_toml(raw))
    drop = DropFirst()

    def revocation(daemon: HomeAgentDaemon) -> RevocationService:
        settings = RevocationSettings(
            IPv4Address(HA_IP), {IPv4Address(FA_IP): FA_HA}, initial_timeout=0.3
        )
        return RevocationService(daemon, settings, drop=drop)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        async with fa_loopback(config, raw["homeagent"]["port"], revocation) as lab:
            daemon, service, fa_core, shell = lab.daemon, lab.service, lab.fa_core, lab.shell
            control = lab.control
            mn = mobile_node_for(raw, coa=FA_IP)
            check = await lab.register(mn, 600, ntp_from_unix(time.time()))
            assert check.reply is not None
            assert rw.find_support(check.reply.extensions) is not None  # HA agreed
            home = IPv4Address(mn.home_address)
            assert fa_core.visitors[home].revocation_since is not None
            assert service.agent.counters["negotiated"] == 1

            path = f"/api/v1/bindings/{home}/clear"
            cleared: Any = await loop.run_in_executor(None, post_json, control, path)
            assert cleared == {"home_address": str(home), "cleared": 1}

            # the FA tells the MN (I bit): an unsolicited reply, code 65, lifetime 0
            told = wire.decode_reply(await lab.recv())
            assert (told.code, told.lifetime, told.home_address) == (65, 0, home)
            deadline = time.monotonic() + 10
            while service.agent.pending and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            assert not service.agent.pending
            assert home not in fa_core.visitors
            assert len(drop.dropped) == 1 and shell.revocations_seen == 1  # the 2nd copy arrived
            counters = service.agent.counters
            assert counters["revocations-sent"] == 1
            assert counters["revocations-retransmitted"] >= 1
            assert counters["revocations-acked"] == 1
            assert counters["revocations-acked-after-retransmission"] == 1
            assert fa_core.counters["revocation-acks-sent"] == 1
            assert fa_core.counters["revocation-mobile-nodes-informed"] == 1
            status: Any = await loop.run_in_executor(
                None, fetch_json, control, "/api/v1/revocation"
            )
            assert status["pending"] == [] and status["counters"]["revocations-acked"] == 1
            rec = daemon.core.table.get(int(home))
            assert rec is None or not rec.bindings

            # a binding that simply expires is forgotten (the event subscriber), not revoked
            await lab.register(mn, 1, ntp_from_unix(time.time() + 1))
            assert service.agent.negotiated_count == 1
            deadline = time.monotonic() + 10
            while service.agent.negotiated_count and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert service.agent.negotiated_count == 0
            assert service.agent.counters["negotiated-expired"] == 1
            assert service.agent.counters["revocations-sent"] == 1  # still only the first one

    asyncio.run(main())
