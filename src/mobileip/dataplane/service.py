"""The data plane in the Home Agent daemon: tunnels and ARP duties that follow the binding table.

:class:`DataPlaneService` is level-triggered: whenever the table may have changed (the core's
events for local registrations and expiries; a change of the table's digest for records the sync
engine applied from a peer, looked at every :data:`POLL_INTERVAL`; a role change) one worker
compares what is installed with :func:`~mobileip.dataplane.tunnels.desired_tunnels` and fixes the
difference. Only the *active* member installs anything: a standby's desired state is empty, so
on losing mastership it withdraws every route and proxy ARP entry. The TUN device and raw sockets
are opened at start on every member, so a takeover only adds routes and proxy entries, then
re-announces every bound home address with paced gratuitous ARP (``garp_rounds`` rounds,
``garp_interval`` apart). ``GET /api/v1/dataplane`` shows it.

The role comes from the role service when there is one (``[vrrp]``): its driver's
callbacks tell us; without one this Home Agent is always active. :meth:`set_active` is public for
tests and embedders.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import socket
import time
from collections.abc import Sequence
from ipaddress import IPv4Address
from typing import Any

from aiohttp import web

from mobileip.config import DataplaneConfig
from mobileip.core.homeagent import BindingChanged, BindingsExpired, Event
from mobileip.daemon.ports import EventHost
from mobileip.daemon.roles import RoleService
from mobileip.dataplane.arp import ArpDuties
from mobileip.dataplane.tunnels import (
    BackendError,
    NoBackend,
    TunnelBackend,
    TunnelSpec,
    UserspaceBackend,
    desired_tunnels,
    kernel_supports_tunnels,
    make_backend,
)
from mobileip.wire.agent_adv import (
    ALL_SYSTEMS,
    CODE_MOBILITY_ONLY,
    FLAG_G,
    FLAG_H,
    FLAG_M,
    FLAG_T,
    AgentAdvertisement,
)

POLL_INTERVAL = 0.05


class DataPlaneService:
    def __init__(
        self, daemon: EventHost, cfg: DataplaneConfig, roles: RoleService | None = None
    ) -> None:
        self.daemon = daemon
        self.cfg = cfg
        vrrp = daemon.config.vrrp
        virtual = vrrp.virtual_address.ip if vrrp and vrrp.virtual_address else None
        self.source: IPv4Address = cfg.tunnel_source or virtual or daemon.config.homeagent.address
        self.own = frozenset(
            a for a in (self.source, daemon.config.homeagent.address, virtual) if a
        )
        self.backend: TunnelBackend = NoBackend(self._log)
        self.arp = (
            ArpDuties(cfg.home_interface, self._log, cfg.garp_batch)
            if (cfg.home_interface)
            else None
        )
        self.active = roles is None or _role_name(roles.driver.role) == "active"
        self.installed: dict[IPv4Address, TunnelSpec] = {}
        self.takeovers = 0
        self.advertisements = 0
        self.advertisement_errors = 0
        self.last_takeover_ms: float | None = None
        self._wake: asyncio.Event | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._announce: asyncio.Task[None] | None = None
        self._digest: tuple[int, ...] = ()
        self._takeover_at: float | None = None
        daemon.subscribers.append(self._on_events)
        daemon.startup_hooks.append(self._start)
        daemon.shutdown_hooks.append(self._stop)
        daemon.control.add_json_route("GET", "/api/v1/dataplane", self._status)
        if roles is not None:
            roles.driver.callbacks.append(self._on_role)

    def _log(self, event: str, **fields: Any) -> None:
        self.daemon.log.info(event, **fields)

    # --- lifecycle -------------------------------------------------------------------------

    async def _start(self) -> None:
        daemon = self.daemon
        name = self.cfg.backend
        if name == "auto":
            ok, why = await kernel_supports_tunnels()
            name = "kernel" if ok else "userspace"
            self._log("dataplane.backend_chosen", backend=name, reason=why)
        self.backend = make_backend(
            name,
            self._log,
            self.cfg.tun_name,
            self.source,
            self.own,
            home_interface=self.cfg.home_interface,
        )
        try:
            await self.backend.start()
            if self.arp is not None:
                await self.arp.start()
        except BackendError as exc:
            daemon.log.error("dataplane.failed", backend=name, error=str(exc))
            raise OSError(str(exc)) from None
        self._wake = asyncio.Event()
        self._tasks = [asyncio.create_task(self._worker()), asyncio.create_task(self._poll())]
        if self.cfg.advertisement_interval > 0 and self.cfg.home_interface:
            self._tasks.append(asyncio.create_task(self._advertiser(self.cfg.home_interface)))
        self._wake.set()
        self._log("dataplane.started", backend=name, active=self.active, source=self.source)

    async def _stop(self) -> None:
        for task in [*self._tasks, self._announce]:
            if task is not None:
                task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        for home in list(self.installed):
            await self._uninstall(home)
        await self.backend.stop()

    # --- inputs ----------------------------------------------------------------------------

    def _on_events(self, events: Sequence[Event], now: float) -> None:
        changed = False
        for e in events:
            if isinstance(e, BindingChanged | BindingsExpired):
                changed = True
                if not e.record.bindings and isinstance(self.backend, UserspaceBackend):
                    # gone home or expired: stop tunnelling before the reply is even sent
                    self.backend.forget(IPv4Address(e.record.home_address))
        if changed:
            self.wake()

    def _on_role(self, role: object, reason: str) -> None:
        self.set_active(_role_name(role) == "active", reason)

    def set_active(self, active: bool, reason: str = "operator") -> None:
        if active == self.active:
            return
        self.active = active
        self._log("dataplane.role", active=active, reason=reason)
        if active:
            self.takeovers += 1
            self._takeover_at = time.monotonic()
        self.wake()

    def wake(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def _poll(self) -> None:
        """Records the sync engine applied do not pass through the core's events: watch the
        table's digest."""
        table = self.daemon.core.table
        while True:
            await asyncio.sleep(POLL_INTERVAL)
            digest = table.digest()
            if digest != self._digest:
                self._digest = digest
                self.wake()

    # --- reconciling -----------------------------------------------------------------------

    async def _worker(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self.reconcile()
            except Exception as exc:  # keep the data plane alive; the next wake retries
                self.daemon.log.error("dataplane.reconcile_failed", error=repr(exc))

    async def reconcile(self) -> None:
        active = self.active
        desired = desired_tunnels(self.daemon.core.table) if active else {}
        for home in [h for h in self.installed if h not in desired]:
            await self._uninstall(home)
        new: list[IPv4Address] = []
        for home, spec in desired.items():
            old = self.installed.get(home)
            if old == spec:
                continue
            await self.backend.install(spec)
            self.installed[home] = spec
            if old is None:
                new.append(home)
                if self.arp is not None:
                    await self.arp.proxy(home)
        if self.arp is not None and new:
            # a binding created (or a takeover): neighbours must forget the mobile node's MAC
            await self.arp.announce(new, lambda: self.active)
        if active and self._takeover_at is not None:
            self.last_takeover_ms = round((time.monotonic() - self._takeover_at) * 1000, 1)
            self._takeover_at = None
            self._log("dataplane.takeover", tunnels=len(self.installed), ms=self.last_takeover_ms)
            if self.arp is not None and self.cfg.garp_rounds > 1:
                if self._announce is not None:
                    self._announce.cancel()
                self._announce = asyncio.create_task(self._reannounce())

    async def _uninstall(self, home: IPv4Address) -> None:
        self.installed.pop(home, None)
        await self.backend.remove(home)
        if self.arp is not None:
            await self.arp.withdraw(home)

    async def _reannounce(self) -> None:
        assert self.arp is not None
        for _ in range(self.cfg.garp_rounds - 1):
            await asyncio.sleep(self.cfg.garp_interval)
            if not self.active:
                return
            await self.arp.announce(sorted(self.arp.proxied), lambda: self.active)

    async def _advertiser(self, interface: str) -> None:
        """Home agent advertisements (H flag) on the home link while active, from the tunnel
        source (the virtual address): a mobile node that hears them knows it is home."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, interface.encode())
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
            interval = self.cfg.advertisement_interval
            seq = 0
            while True:
                if self.active:
                    message = AgentAdvertisement(
                        sequence=seq,
                        registration_lifetime=self.daemon.config.homeagent.max_lifetime,
                        flags=FLAG_H | FLAG_G | FLAG_M | FLAG_T,
                        lifetime=min(0xFFFF, max(1, math.ceil(3 * interval))),
                        code=CODE_MOBILITY_ONLY,
                    )
                    seq = seq + 1 if seq < 0xFFFF else 256
                    try:
                        sock.setsockopt(
                            socket.IPPROTO_IP, socket.IP_MULTICAST_IF, self.source.packed
                        )
                        sock.sendto(message.encode(), (str(ALL_SYSTEMS), 0))
                        self.advertisements += 1
                    except OSError:
                        self.advertisement_errors += 1  # the virtual address is not ours yet
                await asyncio.sleep(interval)
        finally:
            sock.close()

    # --- status ----------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "active": self.active,
            "source": str(self.source),
            "tunnels": len(self.installed),
            "takeovers": self.takeovers,
            "advertisements": self.advertisements,
            "last_takeover_ms": self.last_takeover_ms,
            "backend": self.backend.status(),
            "homes": sorted(str(h) for h in self.installed),
        }
        if self.arp is not None:
            data["arp"] = {
                "interface": self.arp.interface,
                "proxied": len(self.arp.proxied),
                "counters": dict(self.arp.counters),
            }
        return data

    def _status(self, request: web.Request) -> dict[str, Any]:
        return self.status()


def _role_name(role: object) -> str:
    return str(getattr(role, "value", role))
