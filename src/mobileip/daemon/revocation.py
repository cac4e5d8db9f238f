"""RFC 3543 registration revocation on the Home Agent: :class:`RevocationAgent` on asyncio.

The service plugs into the daemon's extension points:

* a reply filter: each registration reply goes through ``agent.on_reply`` (which may append our
  Revocation Support extension and an FA-HA authenticator for a foreign agent we share a key with);
* ``type_handlers[15]``: Revocation Acknowledgements go to ``agent.handle_ack``;
* ``cleared_hooks``: after the operator's ``clear binding``, ``agent.revoke`` sends a Registration
  Revocation to each foreign agent that negotiated revocation for the home address;
* one timer, at ``agent.next_deadline()``, for retransmissions;
* an event subscriber: bindings that expire are forgotten (no revocation: the FA's copy expires
  too).

``GET /api/v1/revocation`` shows the negotiated count, the pending revocations and the counters.
Nothing of this is replicated to the other members yet (docs/revocation.md, "Failover").
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from ipaddress import IPv4Address
from typing import Any, Protocol

from mobileip.config import RevocationConfig
from mobileip.core.homeagent import BindingsExpired, Event
from mobileip.core.revocation import RevocationAgent, RevocationSettings, Send
from mobileip.core.security import SecurityAssociation
from mobileip.daemon.ports import EventHost
from mobileip.net.udp import Address, DatagramHandler, UdpEndpoint
from mobileip.wire.revocation import TYPE_REVOCATION_ACK


class RevocationHost(EventHost, Protocol):
    type_handlers: dict[int, DatagramHandler]
    reply_filters: list[Callable[[bytes, Address, bytes], bytes]]
    cleared_hooks: list[Callable[[IPv4Address, str], None]]

    @property
    def endpoint(self) -> UdpEndpoint | None: ...


class RevocationService:
    def __init__(
        self,
        host: RevocationHost,
        settings: RevocationSettings,
        drop: Callable[[Send], bool] | None = None,
    ) -> None:
        self.host = host
        self.agent = RevocationAgent(settings)
        # tests: a predicate that makes an outgoing revocation "lost" (counted, not sent)
        self.drop = drop
        self._timer: asyncio.TimerHandle | None = None
        host.reply_filters.append(self._filter)
        host.type_handlers[TYPE_REVOCATION_ACK] = self._on_ack
        host.cleared_hooks.append(self.revoke)
        host.subscribers.append(self._on_events)
        host.shutdown_hooks.append(self._stop)
        host.control.add_json_route("GET", "/api/v1/revocation", self._status)

    def _on_events(self, events: Sequence[Event], now: float) -> None:
        if not self.agent.negotiated:
            return
        for event in events:
            if isinstance(event, BindingsExpired):
                rec = event.record
                self.agent.on_expired(rec.home_address, (b.care_of_address for b in rec.bindings))

    def _filter(self, request: bytes, src: Address, reply: bytes) -> bytes:
        return self.agent.on_reply(request, src, reply, time.time())

    def revoke(self, home: IPv4Address, by: str) -> None:
        sends = self.agent.revoke(home, time.monotonic(), time.time(), by)
        for send in sends:
            msg_id = int.from_bytes(send.data[16:20], "big")
            self.host.log.info(
                "revocation.sent", home=home, foreign_agent=_fmt(send.dest), id=msg_id, by=by
            )
        self._send(sends)
        self._arm()

    def _send(self, sends: list[Send]) -> None:
        endpoint = self.host.endpoint
        for send in sends:
            if self.drop is not None and self.drop(send):
                self.agent.counters["revocations-dropped-by-test-hook"] += 1
                continue
            if endpoint is not None:
                endpoint.send_now(send.data, send.dest)

    def _on_ack(self, data: bytes, src: Address, dst: str | None) -> None:
        result = self.agent.handle_ack(data, src)
        if result.acked is None:
            self.host.log.debug("revocation.ack_dropped", src=_fmt(src), reason=result.reason)
            return
        a = result.acked
        self.host.log.info(
            "revocation.acked",
            home=a.binding.home_address,
            foreign_agent=_fmt(a.binding.foreign_agent),
            id=a.revocation_id,
            attempts=a.attempts,
            informed=a.informed,
        )
        self._arm()

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self.agent.next_deadline()
        if deadline is None:
            return
        loop = asyncio.get_running_loop()
        self._timer = loop.call_at(loop.time() + max(0.0, deadline - time.monotonic()), self._tick)

    def _tick(self) -> None:
        self._timer = None
        sends, gave_up = self.agent.tick(time.monotonic())
        for send in sends:
            self.host.log.info("revocation.retransmitted", foreign_agent=_fmt(send.dest))
        for g in gave_up:
            self.host.log.warning(
                "revocation.gave_up",
                home=g.binding.home_address,
                foreign_agent=_fmt(g.binding.foreign_agent),
                id=g.revocation_id,
                attempts=g.attempts,
            )
        self._send(sends)
        self._arm()

    async def _stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _status(self, request: Any) -> dict[str, object]:
        return self.agent.status()

    def status(self) -> dict[str, object]:
        return self.agent.status()


def _fmt(addr: Address) -> str:
    return f"{addr[0]}:{addr[1]}"


def attach_revocation(host: RevocationHost, config: RevocationConfig) -> RevocationService:
    """The service for ``[revocation]``: our address is the Home Domain Address, each
    ``[[revocation.peer]]`` a foreign agent with its FA-HA security association."""
    peers = {
        peer.address: SecurityAssociation(peer.spi, peer.algorithm, peer.key, ())
        for peer in config.peers
    }
    settings = RevocationSettings(
        host.config.homeagent.address,
        peers,
        inform=config.inform,
        initial_timeout=config.initial_timeout,
        max_timeout=config.max_timeout,
        max_attempts=config.max_attempts,
    )
    return RevocationService(host, settings)
