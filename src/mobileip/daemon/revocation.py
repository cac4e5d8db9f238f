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

In a redundancy group (docs/revocation.md, "Failover"):

* the state is replicated by :class:`~mobileip.sync.revocation.RevocationReplicator`, the sync
  engine's extension (message types 70, 71), started after the engine; a first send waits up to
  ``replicate_hold`` for a peer's ack of the pending entry;
* only the active member sends: the role driver's callback calls ``agent.set_active``, and a
  takeover resumes the replicated pending revocations at once (same identifier);
* a reload that removes a mobile node's security association (its SPI): the active member
  deregisters its negotiated bindings and revokes them (``revoke_on_key_removal``); it notices
  the new SAs on SIGHUP and by a 0.5 s look at the core's SAs (``POST /api/v1/reload`` too).

``GET /api/v1/revocation`` shows the negotiated count, the pending revocations, the counters and
the replication's peers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from ipaddress import IPv4Address
from typing import TYPE_CHECKING, Any, Protocol

from mobileip.config import RevocationConfig
from mobileip.core.homeagent import BindingsExpired, Event
from mobileip.core.revocation import RevocationAgent, RevocationSettings, Send
from mobileip.core.security import SecurityAssociation
from mobileip.daemon.ports import EventHost
from mobileip.net.udp import Address, DatagramHandler, UdpEndpoint
from mobileip.sync.revocation import RevocationReplicator
from mobileip.wire.revocation import TYPE_REVOCATION_ACK

if TYPE_CHECKING:
    from mobileip.daemon.redundancy import RedundancyService
    from mobileip.daemon.roles import Role, RoleService

KEY_CHECK_INTERVAL = 0.5  # seconds between looks at whether a reload replaced the SAs
# a takeover resumes revocations once the speaker's gratuitous ARP for the virtual address is
# out (looked at every GARP_POLL, at most GARP_WAIT): the foreign agent answers a revocation at
# once, the mobile node registers again at once, and a request relayed before the ARP reached
# the dead member's MAC (the ~0.5 s re-registration delay of the failover test)
GARP_WAIT = 1.0
GARP_POLL = 0.005


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
        *,
        redundancy: RedundancyService | None = None,
        roles: RoleService | None = None,
        replicate_hold: float = 0.5,
        revoke_on_key_removal: bool = True,
    ) -> None:
        self.host = host
        active = roles is None or roles.driver.role.value == "active"
        self.agent = RevocationAgent(settings, active=active)
        # tests: a predicate that makes an outgoing revocation "lost" (counted, not sent)
        self.drop = drop
        self.redundancy = redundancy
        self.replicator: RevocationReplicator | None = None
        self.replicate_hold = replicate_hold
        self.revoke_on_key_removal = revoke_on_key_removal
        self._timer: asyncio.TimerHandle | None = None
        self._key_timer: asyncio.TimerHandle | None = None
        self._activation: asyncio.TimerHandle | None = None
        self.roles = roles
        self._publish_scheduled = False
        self._sas = host.core.sas
        host.reply_filters.append(self._filter)
        host.type_handlers[TYPE_REVOCATION_ACK] = self._on_ack
        host.cleared_hooks.append(self.revoke)
        host.subscribers.append(self._on_events)
        host.startup_hooks.append(self._start)
        host.shutdown_hooks.append(self._stop)
        host.reload_hooks.append(self._on_reload)
        host.control.add_json_route("GET", "/api/v1/revocation", self._status)
        if roles is not None:
            roles.driver.callbacks.append(self._on_role)

    async def _start(self) -> None:
        loop = asyncio.get_running_loop()
        self._key_timer = loop.call_later(KEY_CHECK_INTERVAL, self._key_tick)
        engine = self.redundancy.engine if self.redundancy is not None else None
        if engine is None:
            return
        self.replicator = RevocationReplicator(engine.context, self.agent)
        self.replicator.notify = self._on_replicated
        engine.extension = self.replicator
        self.agent.ready = False  # revocations wait for the group's state (make_ready)
        self.replicator.request_snapshot(time.monotonic())
        self._arm()

    # --- replication -------------------------------------------------------------------------

    def _replicate(self) -> None:
        """Send the agent's changes to the group at the end of this event-loop turn (the
        changes of one batch of registrations leave together)."""
        if self.replicator is None:
            self.agent.changes.clear()
        elif self.agent.changes and not self._publish_scheduled:
            self._publish_scheduled = True
            asyncio.get_running_loop().call_soon(self._publish)

    def _publish(self) -> None:
        self._publish_scheduled = False
        if self.replicator is not None and self.agent.changes:
            self.replicator.publish(time.monotonic())
            self._arm()

    def _on_replicated(self) -> None:
        """The replicator merged a peer's entries or got an ack: send held first copies."""
        assert self.replicator is not None
        keys, self.replicator.acked_keys = self.replicator.acked_keys, []
        now, wall = time.monotonic(), time.time()
        sends: list[Send] = self._ready_sends(now, wall)
        for key in keys:
            sends.extend(self.agent.release(key, now, wall))
        self._log_sent(sends, "replicated")
        self._send(sends)
        self._replicate()
        self._arm()

    def _ready_sends(self, now: float, wall: float) -> list[Send]:
        """Once the group's revocation state is in: the revocations deferred until then."""
        replicator = self.replicator
        if self.agent.ready or replicator is None or not replicator.snapshot_complete(now):
            return []
        deferred = len(self.agent.deferred)
        sends = self.agent.make_ready(now, wall)
        self.host.log.info("revocation.ready", deferred=deferred, sent=len(sends))
        return sends

    def _on_role(self, role: Role, reason: str) -> None:
        active = role.value == "active"
        if self._activation is not None:
            self._activation.cancel()
            self._activation = None
        garps = self._garps_sent() if active else None
        if garps is not None:  # announce the virtual address first, then revoke
            now = time.monotonic()
            self._wait_announced(garps, now, now + GARP_WAIT)
            return
        self._apply_role(active, None)

    def _garps_sent(self) -> int | None:
        """The native VRRP speaker's gratuitous ARP count, when it announces a virtual address
        (None: no such speaker, nothing to wait for)."""
        roles = self.roles
        if roles is None or roles.virtual is None:
            return None
        speaker = getattr(roles.driver, "speaker", None)
        if speaker is None:
            return None
        return int(speaker.counters_snapshot().get("garp-sent", 0))

    def _wait_announced(self, before: int, since: float, until: float) -> None:
        now = time.monotonic()
        sent = self._garps_sent()
        if sent is None or sent > before or now >= until:
            self._activation = None
            self._apply_role(True, round((now - since) * 1000, 1))
            return
        loop = asyncio.get_running_loop()
        self._activation = loop.call_later(GARP_POLL, self._wait_announced, before, since, until)

    def _apply_role(self, active: bool, announced_ms: float | None) -> None:
        was = self.agent.active
        resumed = self.agent.set_active(active, time.monotonic())
        if active and not was and self.replicator is not None:
            self.replicator.resync(time.monotonic())  # the group's state again, then revoke
        self.host.log.info(
            "revocation.role",
            role="active" if active else "standby",
            resumed=resumed,
            pending=len(self.agent.pending),
            after_garp_ms="-" if announced_ms is None else announced_ms,
        )
        if active:  # a key removed while we were standby: ours to act on now
            self._check_keys()
        self._arm()

    # --- a key removed by a reload ----------------------------------------------------------

    def _on_reload(self) -> None:
        asyncio.get_running_loop().call_soon(self._check_keys)  # after the SAs are installed

    def _key_tick(self) -> None:
        self._key_timer = asyncio.get_running_loop().call_later(KEY_CHECK_INTERVAL, self._key_tick)
        if self.host.core.sas is not self._sas:
            self._check_keys()

    def _check_keys(self) -> None:
        core = self.host.core
        self._sas = core.sas
        if not self.revoke_on_key_removal or not self.agent.active:
            return  # the active member acts; the standby learns it through the sync

        def valid(spi: int, home: IPv4Address) -> bool:
            # the SPI is still there (a changed key or prefix list does not revoke: the mobile
            # node's next registration meets it; an SA chosen by NAI covers no prefix)
            return core.sas.get(spi) is not None

        for home in self.agent.homes_without_key(valid):
            now = time.monotonic()
            events = core.administrative_deregister(home, now)
            if events:
                self.host.log.info("binding.cleared", home=home, by="key-removed")
                self.host.publish(events, now)
                self.host.reschedule_expiry()
            self.revoke(home, "key-removed")

    def _on_events(self, events: Sequence[Event], now: float) -> None:
        if not self.agent.negotiated:
            return
        for event in events:
            if isinstance(event, BindingsExpired):
                rec = event.record
                self.agent.on_expired(rec.home_address, (b.care_of_address for b in rec.bindings))

    def _filter(self, request: bytes, src: Address, reply: bytes) -> bytes:
        out = self.agent.on_reply(request, src, reply, time.time())
        if self.agent.changes:
            self._replicate()
        return out

    def revoke(self, home: IPv4Address, by: str) -> None:
        replicator = self.replicator
        hold = self.replicate_hold if replicator is not None and replicator.has_peers() else 0.0
        sends = self.agent.revoke(home, time.monotonic(), time.time(), by, hold=hold)
        self._log_sent(sends, by)
        for p in self.agent.pending.values():
            if p.binding.home_address == home and p.attempts == 0:
                self.host.log.info(
                    "revocation.held",
                    home=home,
                    id=p.revocation_id,
                    by=by,
                    until="a peer has it" if self.agent.active else "the active sends it",
                )
        self._send(sends)
        self._replicate()
        self._arm()

    def _log_sent(self, sends: list[Send], by: str) -> None:
        for send in sends:
            self.host.log.info(
                "revocation.sent",
                home=_home(send.data),
                foreign_agent=_fmt(send.dest),
                id=_rid(send.data),
                by=by,
            )

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
        self._replicate()
        self._arm()

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        # the agent's retransmissions, and the replicator's (the sync engine also runs its
        # timer, but re-arms its own only when it is pumped)
        times = [self.agent.next_deadline()]
        if self.replicator is not None:
            times.append(self.replicator.deadline())
        deadline = min((t for t in times if t is not None), default=None)
        if deadline is None:
            return
        loop = asyncio.get_running_loop()
        self._timer = loop.call_at(loop.time() + max(0.0, deadline - time.monotonic()), self._tick)

    def _tick(self) -> None:
        self._timer = None
        if self.replicator is not None:
            self.replicator.on_timer(time.monotonic())
        ready = self._ready_sends(time.monotonic(), time.time())
        self._log_sent(ready, "deferred")
        self._send(ready)
        sends, gave_up = self.agent.tick(time.monotonic(), time.time())
        for send in sends:
            self.host.log.info(
                "revocation.retransmitted",
                home=_home(send.data),
                foreign_agent=_fmt(send.dest),
                id=_rid(send.data),
            )
        for g in gave_up:
            self.host.log.warning(
                "revocation.gave_up",
                home=g.binding.home_address,
                foreign_agent=_fmt(g.binding.foreign_agent),
                id=g.revocation_id,
                attempts=g.attempts,
            )
        self._send(sends)
        self._replicate()
        self._arm()

    async def _stop(self) -> None:
        if self._activation is not None:
            self._activation.cancel()
            self._activation = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._key_timer is not None:
            self._key_timer.cancel()
            self._key_timer = None

    def _status(self, request: Any) -> dict[str, object]:
        return self.status()

    def status(self) -> dict[str, object]:
        status = self.agent.status()
        if self.replicator is not None:
            status["replication"] = self.replicator.status()
        status["summary"] = self.summary()
        return status

    def summary(self) -> dict[str, object]:
        """The main numbers, as ``/metrics`` exports them (``mobileip_revocation_*``)."""
        c = self.agent.counters
        dormant = sum(1 for p in self.agent.pending.values() if p.deadline is None)
        out: dict[str, object] = {
            "sent": c["revocations-sent"],
            "retransmitted": c["revocations-retransmitted"],
            "acked": c["revocations-acked"],
            "resumed_on_takeover": c["revocations-resumed"],
            "ack_for_settled": c["ack-for-settled"],
            "gave_up": c["revocation-gave-up"],
            "pending": len(self.agent.pending),
            "pending_dormant": dormant,
            "deferred": len(self.agent.deferred),
            "negotiated": self.agent.negotiated_count,
        }
        if self.replicator is not None:
            out["peers_unsupported"] = self.replicator.counters["peers-unsupported"]
            out["ready"] = self.replicator.ready
        return out


def _fmt(addr: Address) -> str:
    return f"{addr[0]}:{addr[1]}"


def _home(data: bytes) -> IPv4Address:
    return IPv4Address(data[4:8])


def _rid(data: bytes) -> int:
    return int.from_bytes(data[16:20], "big")


def attach_revocation(
    host: RevocationHost,
    config: RevocationConfig,
    redundancy: RedundancyService | None = None,
    roles: RoleService | None = None,
) -> RevocationService:
    """The service for ``[revocation]``: our address (the virtual one in a group that has one)
    is the Home Domain Address, each ``[[revocation.peer]]`` a foreign agent with its FA-HA
    security association."""
    peers = {
        peer.address: SecurityAssociation(peer.spi, peer.algorithm, peer.key, ())
        for peer in config.peers
    }
    # the Home Domain Address is the home agent the mobile node registered with: in a group with
    # a virtual address, that address (the foreign agent checks it), else ours
    vrrp = host.config.vrrp
    home_agent = host.config.homeagent.address
    if vrrp is not None and vrrp.virtual_address is not None:
        home_agent = vrrp.virtual_address.ip
    settings = RevocationSettings(
        home_agent,
        peers,
        inform=config.inform,
        initial_timeout=config.initial_timeout,
        max_timeout=config.max_timeout,
        max_attempts=config.max_attempts,
    )
    return RevocationService(
        host,
        settings,
        redundancy=redundancy,
        roles=roles,
        replicate_hold=config.replicate_hold,
        revoke_on_key_removal=config.revoke_on_key_removal,
    )
