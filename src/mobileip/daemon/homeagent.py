"""The Home Agent daemon: :class:`HomeAgentCore` on asyncio, one UDP socket, the control API.

A datagram takes one path, :meth:`HomeAgentDaemon.datagram_received`:

* first byte 1 (Registration Request): ``core.handle_request``; the outcome's events go to the
  log and to every subscriber in :attr:`HomeAgentDaemon.subscribers`; the reply becomes a
  :class:`PendingReply` (to the request's source address and port, *from* the address the
  request was sent to), which :attr:`HomeAgentDaemon.reply_policy` may take over to send later
  (semisync mode answers only after a peer acked) or, by default, is sent at once;
* a first byte in :attr:`HomeAgentDaemon.type_handlers` (RFC 3543 Revocation Acknowledgement, 15):
  that handler;
* any other first byte: :attr:`HomeAgentDaemon.extra_handler` when set (the sync protocol shares
  the socket when its port is the registration port), else counted as garbage and dropped.

Before a reply is sent or held, each of :attr:`HomeAgentDaemon.reply_filters` may rewrite it (the
revocation service appends its Revocation Support extension for a foreign agent).

Expiry runs on one timer set from ``core.next_deadline()``. Nonces come from :mod:`secrets`.
:meth:`HomeAgentDaemon.serve` runs until SIGTERM or SIGINT (or :meth:`request_stop`).
"""

from __future__ import annotations

import asyncio
import math
import secrets
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from ipaddress import IPv4Address
from typing import Any

from mobileip.config import Config, build_core_settings
from mobileip.core.bindings import BindingTable
from mobileip.core.homeagent import (
    BindingChanged,
    BindingsExpired,
    DatagramDropped,
    Event,
    HomeAgentCore,
    RequestDenied,
    SecurityViolation,
)
from mobileip.core.nat import NatSettings, NatTraversal
from mobileip.core.ratelimit import RateLimiter
from mobileip.daemon.ports import (
    EventSubscriber,
    Hook,
    HttpSurface,
    PendingReply,
    ReplyPolicy,
    RequestGate,
)
from mobileip.log import Logger
from mobileip.net.udp import Address, DatagramHandler, UdpEndpoint
from mobileip.wire.codes import meaning
from mobileip.wire.registration import TYPE_REQUEST


class HomeAgentDaemon:
    """The registration path and the daemon's lifecycle; services plug in through the extension
    points below (typed for them in :mod:`mobileip.daemon.ports`). ``control`` is the control
    API's server, started and stopped with the daemon unless embedded (the composition root,
    :mod:`mobileip.compose.homeagent`, builds it)."""

    def __init__(self, config: Config, control: HttpSurface, logger: Logger | None = None) -> None:
        self.config = config
        self.log = logger if logger is not None else Logger()
        settings, sas = build_core_settings(config)
        ttl = config.redundancy.tombstone_ttl if config.redundancy is not None else 600.0
        self.core = HomeAgentCore(
            settings, sas, BindingTable(tombstone_ttl=ttl), next_nonce=lambda: secrets.randbits(32)
        )
        ha_cfg = config.homeagent
        # RFC 3519: always read UDP Tunnel Requests, to answer 142/64 when switched off
        self.core.nat = NatTraversal(
            NatSettings(ha_cfg.nat_traversal, ha_cfg.nat_keepalive, ha_cfg.nat_accept_forced)
        )
        # extension points (the sync engine, the data plane, metrics)
        self.extra_handler: DatagramHandler | None = None
        # by first byte, before extra_handler (RFC 3543: the revocation service takes 15)
        self.type_handlers: dict[int, DatagramHandler] = {}
        # (request, source, reply) -> reply to send, in order, before the reply policy
        self.reply_filters: list[Callable[[bytes, Address, bytes], bytes]] = []
        # called with (home, by) after the operator's `clear binding` dropped bindings
        self.cleared_hooks: list[Callable[[IPv4Address, str], None]] = []
        self.subscribers: list[EventSubscriber] = []
        self.reply_policy: ReplyPolicy | None = None
        self.request_gates: list[RequestGate] = []
        self.startup_hooks: list[Hook] = []
        self.shutdown_hooks: list[Hook] = []
        self.control = control
        # called on SIGHUP (the admin service reloads the security associations)
        self.reload_hooks: list[Callable[[], None]] = []
        # called with a reloaded config; each returns the config fields it applied (pools)
        self.config_hooks: list[Callable[[Config], Sequence[str]]] = []
        # garbage seen before the core (first byte is not a request and nobody else wants it)
        self.dropped: Counter[str] = Counter()
        # per-source token buckets checked before the core ([homeagent] rate_limit; 0: off)
        ha_cfg = config.homeagent
        self.rate_limiter = (
            RateLimiter(ha_cfg.rate_limit, ha_cfg.rate_burst, ha_cfg.rate_sources)
            if ha_cfg.rate_limit > 0
            else None
        )
        self.endpoint: UdpEndpoint | None = None
        # True when daemon/groups.py runs this daemon as one group of several: it sets ``endpoint``
        # to the shared socket before start() and serves ``control.app`` under /group/NAME/
        self.embedded = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
        self._stopping: asyncio.Event | None = None
        # True when the logger would neither write nor keep an accepted (de)registration: set
        # at start, when every service has attached its listeners
        self._quiet_accepts = False

    # --- the datagram path ---------------------------------------------------------------

    def datagram_received(self, data: bytes, src: Address, dst: str | None) -> None:
        if data and data[0] == TYPE_REQUEST:
            for gate in self.request_gates:
                gated = gate(src, dst)
                if gated is not None:
                    self.dropped[gated] += 1
                    self.log.debug("datagram.dropped", reason=gated, src=_fmt(src), size=len(data))
                    return
            now = time.monotonic()
            if self.rate_limiter is not None and not self.rate_limiter.allow(src[0], now):
                self.dropped["rate-limited"] += 1
                return
            outcome = self.core.handle_request(data, now, time.time(), src)
            if outcome.events:
                self.publish(outcome.events, now, src)
            reply = outcome.reply
            if reply is not None:
                for rewrite in self.reply_filters:
                    reply = rewrite(data, src, reply)
                policy = self.reply_policy
                if policy is None:
                    if self.endpoint is not None:
                        self.endpoint.send(reply, src, _reply_source(dst))
                else:
                    pending = PendingReply(reply, src, _reply_source(dst), outcome.code)
                    if not policy(outcome, pending):
                        self.send_reply(pending)
            self._reschedule()
            return
        handler = self.type_handlers.get(data[0]) if data else None
        if handler is not None:
            handler(data, src, dst)
            return
        if self.extra_handler is not None:
            self.extra_handler(data, src, dst)
            return
        reason = "empty" if not data else "unknown-type"
        self.dropped[reason] += 1
        self.log.debug("datagram.dropped", reason=reason, src=_fmt(src), size=len(data))

    def send_reply(self, pending: PendingReply) -> bool:
        if self.endpoint is None:
            return False
        return self.endpoint.send(pending.data, pending.dest, pending.src_ip)

    def publish(self, events: Sequence[Event], now: float, src: Address | None = None) -> None:
        if not events:
            return
        quiet = self._quiet_accepts
        for event in events:
            if quiet and type(event) is BindingChanged:
                continue  # one per registration and nobody reads the line (profiled)
            self._log_event(event, src)
        for subscriber in list(self.subscribers):
            try:
                subscriber(events, now)
            except Exception as exc:
                self.log.error("subscriber.failed", error=repr(exc))

    def _log_event(self, event: Event, src: Address | None) -> None:
        if isinstance(event, BindingChanged):
            name = "deregistration.accepted" if event.deregistration else "registration.accepted"
            if not self.log.wants("info", name):
                return  # one per registration: skip building fields nobody reads (profiled)
        where = {"src": _fmt(src)} if src is not None else {}
        if isinstance(event, BindingChanged):
            rec = event.record
            home = IPv4Address(rec.home_address)
            if event.deregistration:
                self.log.info(
                    "deregistration.accepted", home=home, bindings=len(rec.bindings), **where
                )
            else:
                new = rec.bindings[-1]
                self.log.info(
                    "registration.accepted",
                    home=home,
                    coa=IPv4Address(new.care_of_address),
                    lifetime=new.granted_lifetime,
                    version=f"{rec.counter}.{IPv4Address(rec.origin)}",
                    **where,
                )
        elif isinstance(event, RequestDenied):
            self.log.info(
                "registration.denied",
                home=event.home_address,
                code=event.code,
                reason=event.reason,
                meaning=meaning(event.code),
                **where,
            )
        elif isinstance(event, SecurityViolation):
            self.log.warning(
                "security.violation", home=event.home_address, reason=event.reason, **where
            )
        elif isinstance(event, BindingsExpired):
            rec = event.record
            self.log.info(
                "binding.expired", home=IPv4Address(rec.home_address), left=len(rec.bindings)
            )
        elif isinstance(event, DatagramDropped):
            self.log.debug("datagram.dropped", reason=event.reason, **where)

    # --- expiry timer --------------------------------------------------------------------

    def reschedule_expiry(self) -> None:
        """Re-arm the expiry timer after a change made outside a datagram (``clear binding``)."""
        self._reschedule()

    def _reschedule(self) -> None:
        deadline = self.core.next_deadline()
        if deadline is None:
            return
        if self._timer is not None and self._timer_at <= deadline:
            return
        if self._timer is not None:
            self._timer.cancel()
        delay = max(0.0, deadline - time.monotonic()) + 0.001
        self._timer = asyncio.get_running_loop().call_later(delay, self._on_timer)
        self._timer_at = deadline

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = math.inf
        now = time.monotonic()
        self.publish(self.core.tick(now), now)
        self._reschedule()

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        ha = self.config.homeagent
        if not self.embedded:
            self.endpoint = UdpEndpoint.bind(
                loop,
                str(ha.listen),
                ha.port,
                self.datagram_received,
                fair_queue=ha.overload_queue,
            )
            self.endpoint.on_handler_error = self._on_handler_error
            self.endpoint.on_dropped = self._on_overload_dropped
            await self.control.start()
        assert self.endpoint is not None
        for hook in self.startup_hooks:
            await hook()
        self._quiet_accepts = not any(
            self.log.wants("info", name)
            for name in ("registration.accepted", "deregistration.accepted")
        )
        host, port = self.endpoint.local_address
        self.log.info(
            "homeagent.started",
            address=ha.address,
            listen=f"{host}:{port}",
            control=f"{self.control.host}:{self.control.port}",
            replay=ha.replay,
            max_lifetime=ha.max_lifetime,
            loop=type(loop).__module__.split(".")[0],
            config=self.config.path,
        )

    def _on_overload_dropped(self, reason: str, n: int) -> None:
        """The endpoint's fair queue dropped ``n`` datagrams (a source over its share while
        overloaded, or one that waited too long): counted with the other drops."""
        self.dropped[reason] += n

    def _on_handler_error(self, exc: Exception) -> None:
        self.log.error("datagram.handler_failed", error=repr(exc))

    async def stop(self) -> None:
        for hook in reversed(self.shutdown_hooks):
            try:
                await hook()
            except Exception as exc:
                self.log.error("shutdown_hook.failed", error=repr(exc))
        if not self.embedded:
            await self.control.stop()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.endpoint is not None:
            if not self.embedded:
                self.endpoint.close()
            self.endpoint = None
        self.log.info("homeagent.stopped", bindings=len(self.core.table))

    def request_stop(self) -> None:
        if self._stopping is not None:
            self._stopping.set()

    async def serve(self) -> None:
        """Start, run until SIGTERM/SIGINT or :meth:`request_stop`, stop."""
        self._stopping = asyncio.Event()
        await serve_until_stopped(
            self._stopping,
            self.start,
            self.stop,
            self.log,
            drop_privileges=self.config.homeagent.drop_privileges,
            lock_memory=self.config.homeagent.lock_memory,
            on_sighup=self._on_sighup,
        )

    def _on_sighup(self) -> None:
        """SIGHUP: run the reload hooks (the admin service reloads the security associations)."""
        self.log.info("homeagent.signal", signal="SIGHUP")
        for reload in self.reload_hooks:
            reload()


async def serve_until_stopped(
    stopping: asyncio.Event,
    start: Callable[[], Awaitable[None]],
    stop: Callable[[], Awaitable[None]],
    log: Logger,
    *,
    drop_privileges: bool,
    lock_memory: bool = False,
    on_sighup: Callable[[], object],
) -> None:
    """A daemon's serve(): lock its memory when asked (daemon/memory.py: before ``start`` loads
    any table, and while the privileges to do so are still held), ``start``, drop privileges
    when asked (every socket is open now), run until SIGTERM/SIGINT or ``stopping`` is set,
    ``stop``; SIGHUP calls ``on_sighup``."""
    loop = asyncio.get_running_loop()

    def on_signal(sig: signal.Signals) -> None:
        log.info("homeagent.signal", signal=sig.name)
        stopping.set()

    keep_ipc_lock = False
    if lock_memory:
        from mobileip.daemon.memory import lock_and_log

        keep_ipc_lock = lock_and_log(log)
    try:
        await start()
        if drop_privileges:
            from mobileip.daemon.privileges import drop_and_log

            drop_and_log(log, keep_ipc_lock)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal, sig)
        loop.add_signal_handler(signal.SIGHUP, on_sighup)
        await stopping.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        await stop()


def _reply_source(dst: str | None) -> str | None:
    """Reply from the address the request was sent to, unless that was multicast or broadcast
    (RFC 5944 3.8.3.1: then the kernel picks our unicast address)."""
    if dst is None:
        return None
    try:
        return _REPLY_SOURCES[dst]  # a handful of our own addresses: parse each once
    except KeyError:
        pass
    addr = IPv4Address(dst)
    ours = not (addr.is_multicast or addr == _LIMITED_BROADCAST or addr.is_unspecified)
    source = dst if ours else None
    if len(_REPLY_SOURCES) < 1024:
        _REPLY_SOURCES[dst] = source
    return source


_REPLY_SOURCES: dict[str, str | None] = {}


_LIMITED_BROADCAST = IPv4Address("255.255.255.255")


def _fmt(addr: Address | None) -> str:
    return "-" if addr is None else f"{addr[0]}:{addr[1]}"


def run_event_loop(main: Coroutine[Any, Any, None]) -> None:
    """Run ``main`` on uvloop when it is installed, else on the default asyncio loop."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    uvloop.run(main)
