"""The sync engine on asyncio: transport, timers, and its hooks into the Home Agent daemon.

:class:`RedundancyService` owns one :class:`SyncEngine` and plugs it into a
:class:`DatagramHost`:

* transport: the daemon's socket when ``[redundancy]`` listens where registrations arrive (the
  daemon hands us every datagram whose first byte is not a registration request), else a socket
  of its own; it joins the multicast ``group`` on ``interface`` when one is configured;
* accepted registrations and deregistrations (the core's :class:`BindingChanged` events) become
  ``engine.local_change``; everything changed within one batch of datagrams leaves in as few
  Binding Updates as fit (the engine is pumped once per event-loop turn);
* ``semisync``: the daemon's reply policy holds an accepted reply until the engine says a peer
  acked that version (or the timeout passed);
* the engine's timer runs on ``loop.call_at``; ``GET /api/v1/redundancy`` shows its status.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Sequence
from dataclasses import replace
from ipaddress import IPv4Address

from aiohttp import web

from mobileip.config import RedundancyConfig
from mobileip.core.homeagent import BindingChanged, Event, Outcome
from mobileip.daemon.ports import DatagramHost, PendingReply
from mobileip.net.udp import Address, UdpEndpoint
from mobileip.sync.engine import (
    MemberChanged,
    Protected,
    RecordsApplied,
    SyncEngine,
    SyncSettings,
    SyncState,
    SyncStateChanged,
    SyncViolation,
)
from mobileip.wire import sync as wire

TOMBSTONE_MARGIN = 60.0


def sync_settings(cfg: RedundancyConfig) -> SyncSettings:
    multicast = (str(cfg.group), cfg.port) if cfg.group is not None else None
    return SyncSettings(
        node_id=int(cfg.node_id),
        peers=tuple((str(p.address), p.port) for p in cfg.peers),
        multicast=multicast,
        mode=cfg.mode,
        retransmit_interval=cfg.retransmit_interval,
        max_retransmits=cfg.max_retransmits,
        boot_wait=cfg.boot_wait,
        unreachable_after=cfg.unreachable_after,
        digest_interval=cfg.digest_interval,
        semisync_timeout=cfg.semisync_timeout,
        max_queue=cfg.max_queue,
        payload_budget=cfg.payload_budget,
        bulk_window=cfg.bulk_window,
    )


class RedundancyService:
    def __init__(self, daemon: DatagramHost, cfg: RedundancyConfig) -> None:
        self.daemon = daemon
        self.cfg = cfg
        self.log = daemon.log
        table = daemon.core.table
        # A tombstone must outlive every binding older than it (docs/sync-protocol.md).
        table.tombstone_ttl = max(
            cfg.tombstone_ttl, daemon.config.homeagent.max_lifetime + TOMBSTONE_MARGIN
        )
        self.auth = wire.GroupAuth([wire.GroupKey(cfg.spi, cfg.algorithm, cfg.key)], cfg.spi)
        self.engine: SyncEngine | None = None
        self.endpoint: UdpEndpoint | None = None
        self._held: dict[tuple[int, int], list[PendingReply]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
        self._pump_scheduled = False
        self._announced = SyncState.NOT_SYNCED
        daemon.subscribers.append(self._on_core_events)
        if cfg.mode == "semisync":
            daemon.reply_policy = self._hold_reply
        daemon.startup_hooks.append(self._start)
        daemon.shutdown_hooks.append(self._stop)
        daemon.control.add_json_route("GET", "/api/v1/redundancy", self._status)

    # --- lifecycle -------------------------------------------------------------------------

    async def _start(self) -> None:
        daemon = self.daemon
        # The boot epoch tags our sequence numbers; peers drop an epoch they saw before. Waiting
        # until the wall clock passes it makes every restart's epoch larger than the last one.
        epoch = math.floor(time.time()) + 1
        await asyncio.sleep(max(0.0, epoch - time.time()))
        settings = sync_settings(self.cfg)
        if daemon.config.homeagent.replay == "timestamp":  # identifications are ordered
            settings = replace(settings, ordered_identifications=True)
        self.engine = SyncEngine(settings, daemon.core.table, self.auth, epoch)
        loop = asyncio.get_running_loop()
        ha = daemon.config.homeagent
        if self.cfg.port == ha.port and self.cfg.listen == ha.listen and daemon.endpoint:
            self.endpoint = daemon.endpoint
            daemon.extra_handler = self._on_datagram
        else:
            self.endpoint = UdpEndpoint.bind(
                loop, str(self.cfg.listen), self.cfg.port, self._on_datagram
            )
        self.engine.send_now = self._send_at_once
        if self.cfg.group is not None:
            self.endpoint.join_group(str(self.cfg.group), self.cfg.interface, self.cfg.ttl)
        host, port = self.endpoint.local_address
        self.log.info(
            "sync.started",
            node_id=self.cfg.node_id,
            listen=f"{host}:{port}",
            group=self.cfg.group or "-",
            peers=len(self.cfg.peers),
            mode=self.cfg.mode,
        )
        self.engine.start(time.monotonic())
        self._pump()

    async def _stop(self) -> None:
        daemon = self.daemon
        if self._timer is not None:
            self._timer.cancel()
        if self.endpoint is not None and self.endpoint is not daemon.endpoint:
            self.endpoint.close()
        for replies in self._held.values():  # answer what we held rather than drop it
            for pending in replies:
                daemon.send_reply(pending)
        self._held.clear()

    # --- inputs ------------------------------------------------------------------------------

    def _on_datagram(self, data: bytes, src: Address, dst: str | None) -> None:
        if self.engine is None:
            return
        self.engine.handle_datagram(data, src, time.monotonic())
        self._schedule_pump()

    def _on_core_events(self, events: Sequence[Event], now: float) -> None:
        if self.engine is None:
            return
        for ev in events:
            if isinstance(ev, BindingChanged):
                self.engine.local_change(ev.record, now)
        self._schedule_pump()

    def _hold_reply(self, outcome: Outcome, pending: PendingReply) -> bool:
        if self.engine is None:
            return False
        for ev in outcome.events:
            if isinstance(ev, BindingChanged):
                key = (ev.record.home_address, ev.record.version)
                self._held.setdefault(key, []).append(pending)
                self.engine.watch(key[0], key[1], time.monotonic())
                self._schedule_pump()
                return True
        return False

    def _send_at_once(self, data: bytes, dest: Address) -> None:
        """The engine's ``send_now``: a table download's ack leaves before its chunk is applied,
        not with the datagrams the endpoint holds until the end of the batch it is reading
        (else the responder waits for the whole batch: 1,000,000 bindings over the shared
        registration socket took 5.4 s instead of 2.6 s)."""
        if self.endpoint is not None:
            self.endpoint.send_now(data, dest)

    # --- pumping the engine --------------------------------------------------------------

    def _schedule_pump(self) -> None:
        if not self._pump_scheduled:
            self._pump_scheduled = True
            asyncio.get_running_loop().call_soon(self._pump)

    def _pump(self) -> None:
        self._pump_scheduled = False
        engine = self.engine
        if engine is None or self.endpoint is None:
            return
        for data, dest in engine.datagrams_to_send():
            self.endpoint.send(data, dest)
        replies = self.daemon.endpoint
        # semisync: the replies the acks released leave as one burst
        with replies.holding() if replies is not None else contextlib.nullcontext():
            for ev in engine.events():
                self._on_engine_event(ev)
        when = engine.next_timer()
        if when is None:
            return
        if self._timer is not None:
            if self._timer_at <= when:
                return
            self._timer.cancel()
        loop = asyncio.get_running_loop()
        delay = max(0.0, when - time.monotonic())
        self._timer = loop.call_later(delay, self._on_timer)
        self._timer_at = when

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = math.inf
        if self.engine is not None:
            self.engine.handle_timer(time.monotonic())
        self._pump()

    def _on_engine_event(self, ev: object) -> None:
        if isinstance(ev, Protected):
            for pending in self._held.pop((ev.home_address, ev.version), []):
                self.daemon.send_reply(pending)
            if not ev.acked:
                self.log.warning(
                    "sync.unprotected_reply",
                    home=IPv4Address(ev.home_address),
                    reason="no peer acked within semisync_timeout",
                )
        elif isinstance(ev, SyncStateChanged):
            self._announced = ev.state
            self.log.info("sync.state", state=ev.state.value, reason=ev.reason)
        elif isinstance(ev, MemberChanged):
            self.log.info(
                "sync.member",
                member=f"{ev.endpoint[0]}:{ev.endpoint[1]}",
                node_id=IPv4Address(ev.node_id) if ev.node_id else "-",
                reachable=ev.reachable,
                reason=ev.reason,
            )
        elif isinstance(ev, SyncViolation):
            self.log.warning(
                "sync.security_violation",
                reason=ev.reason,
                src=f"{ev.endpoint[0]}:{ev.endpoint[1]}",
            )
        elif isinstance(ev, RecordsApplied):
            self.log.debug("sync.applied", records=len(ev.homes))
            if self.daemon.core.pools is not None:  # the NAI hint of dynamic addresses
                self.daemon.core.pools.refresh(ev.homes)

    # --- status ------------------------------------------------------------------------------

    @property
    def synced(self) -> bool:
        """SYNCED as announced (logged): whoever acts on it never runs ahead of the log."""
        return self._announced is SyncState.SYNCED

    def _status(self, request: web.Request) -> dict[str, object]:
        if self.engine is None:
            return {"state": "STARTING", "members": [], "counters": {}}
        status = self.engine.status(time.monotonic())
        status["bindings"] = len(self.daemon.core.table)
        status["records"] = self.daemon.core.table.record_count
        return status
