"""The data plane in the Home Agent daemon: a hot standby whose takeover is one ``ip rule``.

Every member, active or not, keeps one route per away home address in routing table ``T``
(``[dataplane] table``), built by the backend (:meth:`TunnelBackend.add_messages`) and applied
through one long-lived :class:`~mobileip.net.rtnl.RtnlSocket` in batches of ``batch`` messages,
one batch per event-loop turn. What changed is tracked by home address, never by rebuilding the
desired state of the whole table: the core's events (local registrations, deregistrations,
expiries) and the sync engine's ``RecordsApplied`` (peers' updates, bulk downloads, tombstones)
mark homes *dirty*; the worker looks each one up in the table, compares the backend's route key
with what is installed and sends only the difference. A full reconcile (every home in the table
plus every route of ours found in ``T``) runs at start, so a restart neither duplicates nor
leaks, and after lost netlink error reports.

Becoming active is O(1): one ``ip rule pref P lookup T`` (``rule_priority``), the virtual-MAC
macvlan up and one gratuitous ARP from it; losing mastership deletes the rule and downs the
macvlan. Without the rule a standby neither forwards for home addresses (they route by the main
table, onto the home link) nor answers ARP for them: proxy ARP is the ``proxy_arp`` sysctl on
the answering interface, which answers only for targets routed elsewhere (:mod:`.arp`). A clean
stop deletes the rule, flushes ``T`` of our routes (protocol 77), removes the macvlan it made
and restores the sysctls it changed. ``GET /api/v1/dataplane`` shows it (``installed``,
``desired``, ``pending``, ``converged_at``, ``active``, ``rule_installed``, ``last_takeover_ms``,
install cost; ``?homes=0`` leaves out the listing of home addresses: every field is O(1)).

A *legacy* backend (one whose ``add_messages`` returns None) is driven as before: installed one
binding at a time, only while active. The role comes from the role service when there is one
(``[vrrp]``); without one this Home Agent is always active. :meth:`set_active` is public for
tests and embedders.

Why one file of ~760 lines: the worker (dirty homes, batches, full reconcile), activation and
its O(1) switch, and the status are one state machine over one installed map and one netlink
socket; the backends, ARP, the codecs and the macvlan are in their own modules.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import math
import socket
import time
from collections.abc import Hashable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from ipaddress import IPv4Address
from typing import Any, Protocol

from aiohttp import web

from mobileip.config import DataplaneConfig
from mobileip.core.homeagent import BindingChanged, BindingsExpired, Event
from mobileip.daemon.ports import EventHost
from mobileip.daemon.roles import RoleService
from mobileip.dataplane.arp import ArpDuties
from mobileip.dataplane.backend import spec_for
from mobileip.dataplane.bpf import BpfFastPath
from mobileip.dataplane.fastpath_guard import FastPathGuard
from mobileip.dataplane.sysctl_state import PersistedSysctls, state_file
from mobileip.dataplane.tunnels import (
    BackendError,
    KernelBackend,
    NoBackend,
    TunnelBackend,
    TunnelSpec,
    UserspaceBackend,
    desired_tunnels,
    kernel_supports_tunnels,
    make_backend,
)
from mobileip.net import rtnl as nl
from mobileip.net import vmac as vm
from mobileip.wire.agent_adv import (
    ALL_SYSTEMS,
    CODE_MOBILITY_ONLY,
    FLAG_G,
    FLAG_H,
    FLAG_M,
    FLAG_T,
    AgentAdvertisement,
)

HOMES_LISTED = 1000  # GET /api/v1/dataplane lists at most this many home addresses (?homes=N)
RETRY_INTERVAL = 1.0  # seconds before homes whose route failed are tried again
VMAC_WATCH_INTERVAL = 1.0  # keepalived's macvlan: how often we look for it (re)appearing
TURN_BUDGET = 0.004  # seconds of Python work per event-loop turn building a batch
FREEZE_EVERY = 10_000  # routes added between two gc.freeze() (see _freeze)
_MISSING = object()


class _SyncSource(Protocol):
    """What we read of the redundancy service: its engine, once started."""

    @property
    def engine(self) -> Any: ...


class DataPlaneService:
    def __init__(
        self,
        daemon: EventHost,
        cfg: DataplaneConfig,
        roles: RoleService | None = None,
        sync: _SyncSource | None = None,
    ) -> None:
        self.daemon = daemon
        self.cfg = cfg
        self.sync = sync
        vrrp = daemon.config.vrrp
        self.vrrp = vrrp
        virtual = vrrp.virtual_address.ip if vrrp and vrrp.virtual_address else None
        self.virtual = virtual
        self.source: IPv4Address = cfg.tunnel_source or virtual or daemon.config.homeagent.address
        self.own = frozenset(
            a for a in (self.source, daemon.config.homeagent.address, virtual) if a
        )
        self.backend: TunnelBackend = NoBackend(self._log)
        self.legacy = False
        # originals on disk too: a restart after SIGKILL still restores what we found first
        self.sysctls = PersistedSysctls(state_file(cfg.table))
        self.vmac: vm.Vmac | None = None
        # the VRRP driver owns the macvlan (keepalived's use_vmac, or our native speaker: it
        # creates it, drives its link and puts the virtual address on it); we only adopt it.
        # With the static driver there is no speaker: we make it and drive its link ourselves.
        self.vmac_external = bool(vrrp and vrrp.driver in ("keepalived", "native"))
        self.vmac_name: str | None = None
        if cfg.virtual_mac:
            vrid = vrrp.vrid if vrrp else None
            self.vmac_name = cfg.vmac_interface or (vm.default_name(vrid) if vrid else None)
            if self.vmac_name is None:
                raise ValueError("[dataplane] virtual_mac needs [vrrp] vrid or vmac_interface")
        answer = self.vmac_name or cfg.home_interface
        self.arp = (
            ArpDuties(answer, self._log, cfg.garp_batch, sysctls=self.sysctls) if answer else None
        )
        self._arp_ready = False
        self.active = roles is None or _role_name(roles.driver.role) == "active"
        self.rtnl: nl.RtnlSocket | None = None  # the loop's: rule, macvlan, dumps, flush
        # the batches' own socket, used only by one worker thread: the kernel's time in
        # sendmsg (the route inserts, under the global rtnl lock) is spent off the event loop
        self._bulk: nl.RtnlSocket | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._since_freeze = 0
        self.gc_freezes = 0
        self.installed: dict[int, Hashable] = {}  # home -> route key, what is in table T
        self._dirty: set[int] = set()
        self._failed: set[int] = set()
        self._at_home: set[int] = set()  # live records with no binding away from home
        self._legacy_specs: dict[IPv4Address, TunnelSpec] = {}
        self.rule_installed = False
        self.takeovers = 0
        self.advertisements = 0
        self.advertisement_errors = 0
        self.last_takeover_ms: float | None = None
        self.install_seconds = 0.0  # time spent building and applying route batches
        self.routes_added = 0
        self.routes_removed = 0
        self.batches = 0
        self.longest_batch_ms = 0.0
        self.full_reconciles = 0
        self.route_errors = 0
        self.sync_tapped = False
        # convergence (installed state = the table): wall-clock times, O(1) to keep
        self._pending_since: float | None = None  # first change not yet applied
        self.converged_at: float | None = None  # the last drain that left nothing pending
        self.last_convergence_ms: float | None = None  # that drain's episode: change -> applied
        self.longest_convergence_ms = 0.0
        self._wake: asyncio.Event | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._announce: asyncio.Task[None] | None = None
        self._retry: asyncio.TimerHandle | None = None
        self._digest: tuple[int, ...] = ()
        self._takeover_at: float | None = None
        self._started = False
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
        cfg = self.cfg
        name = cfg.backend
        if name == "auto":
            ok, why = await kernel_supports_tunnels()
            name = "kernel" if ok else "userspace"
            self._log("dataplane.backend_chosen", backend=name, reason=why)
        self.backend = make_backend(
            name,
            self._log,
            cfg.tun_name,
            self.source,
            self.own,
            ttl=cfg.ttl,  # the outer TTL of every path: kernel routes, BPF template, userspace
            home_interface=cfg.home_interface,
            fastpath=(
                BpfFastPath(self.source, cfg.fastpath_interfaces, cfg.ttl, cfg.fastpath_capacity)
                if cfg.fastpath != "off" and name == "kernel"
                else None
            ),
        )
        if isinstance(self.backend, KernelBackend) and cfg.fastpath == "auto":
            assert self.backend.fastpath is not None
            own = {*self.backend.devices.values(), cfg.tun_name}
            self.backend.guard = FastPathGuard(
                self.backend.fastpath, self._log, cfg.fastpath_interfaces, own, self.vmac_name
            )
        self.legacy = type(self.backend).add_messages is TunnelBackend.add_messages
        try:
            if name != "none":
                self.sysctls.set("net/ipv4/ip_forward", self._read("net/ipv4/ip_forward"))
            await self.backend.start()
            self.rtnl = nl.RtnlSocket()
            self._bulk = nl.RtnlSocket()
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="dataplane-rtnl")
            if self.vmac_name is not None:
                self._adopt_vmac()
            if self.arp is not None and (self.vmac_name is None or self.vmac is not None):
                await self.arp.start()
                self._arp_ready = True
        except (BackendError, vm.VmacError, OSError) as exc:
            daemon.log.error("dataplane.failed", backend=name, error=str(exc))
            await self._teardown()
            raise OSError(str(exc)) from None
        self._wake = asyncio.Event()
        if not self.legacy:
            self._reconcile_start()
        self._tap_sync()
        self._started = True
        self._switch(self.active, "start")
        self._tasks = [asyncio.create_task(self._worker())]
        if not self.legacy and not self.sync_tapped and self.sync is not None:
            self._tasks.append(asyncio.create_task(self._poll()))
        if self.vmac_name is not None and self.vmac_external:
            self._tasks.append(asyncio.create_task(self._watch_vmac()))
        if cfg.advertisement_interval > 0 and cfg.home_interface:
            self._tasks.append(asyncio.create_task(self._advertiser()))
        self._wake.set()
        self._log(
            "dataplane.started",
            backend=name,
            active=self.active,
            source=self.source,
            table=cfg.table,
            vmac=self.vmac_name or "-",
            routes_found=len(self.installed),
            sysctls_inherited=len(self.sysctls.inherited),
            sysctl_state=self.sysctls.write_error or str(self.sysctls.path),
        )

    @staticmethod
    def _read(path: str) -> str:
        with open(f"/proc/sys/{path}", encoding="ascii") as f:
            return f.read().strip()

    async def _stop(self) -> None:
        for task in [*self._tasks, self._announce]:
            if task is not None:
                task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        if self._retry is not None:
            self._retry.cancel()
        await self._teardown()

    async def _teardown(self) -> None:
        """Nothing left installed: the rule, our routes in T, the macvlan we made, sysctls."""
        self._started = False
        if self._pool is not None:
            # a batch still in the worker thread finishes first (its routes are flushed below)
            self._pool.shutdown(wait=True)
            self._pool = None
        if self._bulk is not None:
            self._bulk.close()
            self._bulk = None
        sock = self.rtnl
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.apply([nl.rule_del(self.cfg.rule_priority, self.cfg.table)])
            self.rule_installed = False
        if self.legacy:
            for home in list(self._legacy_specs):
                self._legacy_specs.pop(home, None)
                with contextlib.suppress(Exception):
                    await self.backend.remove(home)
        if sock is not None and not self.legacy:
            with contextlib.suppress(OSError, InterruptedError):
                routes = sock.dump_routes(self.cfg.table)
                dels = [nl.route_del(r.dst, r.prefixlen, table=self.cfg.table) for r in routes]
                await sock.apply_paced(dels, self.cfg.batch)
            self.installed.clear()
        with contextlib.suppress(Exception):
            await self.backend.stop()
        if self.arp is not None:
            self.arp.close()
        if self.vmac is not None:
            v, self.vmac = self.vmac, None
            try:
                if not self.vmac_external:
                    vm.set_up(v, False, sock=sock)
                created = v.created
                vm.release(v, sock=sock)
                if created:  # its sysctls went with it
                    self.sysctls.forget_prefix(f"net/ipv4/conf/{v.name}/")
                    self.sysctls.forget_prefix(f"net/ipv4/neigh/{v.name}/")
            except (vm.VmacError, OSError) as exc:
                self.daemon.log.error("dataplane.vmac_release_failed", error=str(exc))
        for path in self.sysctls.restore():
            self.daemon.log.warning("dataplane.sysctl_not_restored", path=path)
        if sock is not None:
            sock.close()
            self.rtnl = None

    # --- the virtual MAC ---------------------------------------------------------------------

    def _adopt_vmac(self) -> bool:
        """Make (native, static) or adopt (keepalived) the macvlan; True once it is there."""
        assert self.vmac_name is not None and self.cfg.home_interface is not None
        vrid = self.vrrp.vrid if self.vrrp else None
        try:
            self.vmac = vm.ensure(
                self.cfg.home_interface,
                vrid,
                self.vmac_name,
                sock=self.rtnl,
                create=not self.vmac_external,
            )
        except vm.VmacError:
            if self.vmac_external:
                self._log("dataplane.vmac_waiting", interface=self.vmac_name)
                return False
            raise
        self._log(
            "dataplane.vmac",
            interface=self.vmac.name,
            mac=vm.mac_text(self.vmac.mac),
            created=self.vmac.created,
        )
        return True

    async def _watch_vmac(self) -> None:
        """keepalived makes its macvlan when it starts (and again after a restart): adopt it,
        then turn proxy ARP on there."""
        while True:
            await asyncio.sleep(VMAC_WATCH_INTERVAL)
            name = self.vmac_name
            assert name is not None
            present = vm.exists(name)
            if self.vmac is not None and present:
                with contextlib.suppress(OSError):
                    if socket.if_nametoindex(name) == self.vmac.index:
                        continue
            if not present:
                if self.vmac is not None:
                    self._log("dataplane.vmac_gone", interface=name)
                    self.vmac = None
                    self._arp_ready = False
                continue
            try:
                if self._adopt_vmac() and self.arp is not None:
                    await self.arp.start()
                    self._arp_ready = True
            except (BackendError, vm.VmacError, OSError) as exc:
                self.daemon.log.error("dataplane.vmac_failed", error=str(exc))

    # --- inputs ----------------------------------------------------------------------------

    def _on_events(self, events: Sequence[Event], now: float) -> None:
        dirty = self._dirty
        n = len(dirty)
        for e in events:
            if isinstance(e, BindingChanged | BindingsExpired):
                dirty.add(e.record.home_address)
                if not e.record.bindings and isinstance(self.backend, UserspaceBackend):
                    # gone home or expired: stop tunnelling before the reply is even sent
                    self.backend.forget(IPv4Address(e.record.home_address))
        if len(dirty) != n or self.legacy:
            self._changed()
            self.wake()

    def note_homes(self, homes: Iterable[int]) -> None:
        """Home addresses whose records changed (the sync engine's ``RecordsApplied``)."""
        n = len(self._dirty)
        self._dirty.update(homes)
        if len(self._dirty) != n or self.legacy:
            self._changed()
            self.wake()

    def _tap_sync(self) -> None:
        """Learn the homes of records applied from peers: the sync engine reports them as
        ``RecordsApplied`` events, which the redundancy service drains through
        ``engine.events()``; we see each batch as it is drained."""
        engine = getattr(self.sync, "engine", None) if self.sync is not None else None
        if engine is None or not hasattr(engine, "events"):
            return
        drain = engine.events

        def events() -> list[Any]:
            evs: list[Any] = drain()
            for ev in evs:
                # mobileip.sync.context.RecordsApplied (the data plane may not import sync)
                if type(ev).__name__ == "RecordsApplied":
                    self.note_homes(ev.homes)
            return evs

        engine.events = events
        self.sync_tapped = True

    async def _poll(self) -> None:
        """Without the engine's events: a change of the table's digest means a full reconcile
        (only when the tap could not be set up)."""
        table = self.daemon.core.table
        while True:
            await asyncio.sleep(0.05)
            digest = table.digest()
            if digest != self._digest:
                self._digest = digest
                self.full_reconcile()

    def _on_role(self, role: object, reason: str) -> None:
        self.set_active(_role_name(role) == "active", reason)

    def set_active(self, active: bool, reason: str = "operator") -> None:
        if active == self.active:
            return
        self.active = active
        self._log("dataplane.role", active=active, reason=reason)
        if active:
            self.takeovers += 1
        if self._started:
            self._switch(active, reason)
        self.wake()

    def wake(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def _changed(self) -> None:
        """Something is to be applied: the start of a convergence episode (if none is open)."""
        if self._pending_since is None:
            self._pending_since = time.time()

    def _converged(self) -> None:
        """Nothing pending any more: close the episode (O(1))."""
        if self._dirty or self._failed:
            return
        now = time.time()
        self.converged_at = now
        if self._pending_since is not None:
            ms = (now - self._pending_since) * 1000
            self.last_convergence_ms = round(ms, 3)
            self.longest_convergence_ms = max(self.longest_convergence_ms, ms)
            self._pending_since = None

    # --- activation: O(1) ------------------------------------------------------------------

    def _switch(self, active: bool, reason: str) -> None:
        """The rule, the macvlan's link, one gratuitous ARP: nothing per binding."""
        started = time.monotonic()
        if self.legacy:
            if active:
                self._takeover_at = started  # the worker installs, then measures
            return
        sock = self.rtnl
        assert sock is not None
        cfg = self.cfg
        if active:
            failures = sock.apply([nl.rule_add(cfg.rule_priority, cfg.table)])
        else:
            failures = sock.apply([nl.rule_del(cfg.rule_priority, cfg.table)])
            if self._announce is not None:
                self._announce.cancel()
                self._announce = None
        for f in failures:
            self.daemon.log.error("dataplane.rule_failed", active=active, error=str(f))
        self.rule_installed = active and not failures
        if isinstance(self.backend, KernelBackend):  # its BPF fast path, when configured
            try:
                self.backend.set_live(active)
            except OSError as exc:
                self.daemon.log.error("dataplane.fastpath_failed", active=active, error=str(exc))
        v = self.vmac
        if v is not None and not self.vmac_external:
            try:
                vm.set_up(v, active, sock=sock)
            except vm.VmacError as exc:
                self.daemon.log.error("dataplane.vmac_link_failed", error=str(exc))
        if active and v is not None:
            # one frame from the virtual MAC teaches the switches its new port: a gratuitous ARP
            # for the virtual address, or without one (static driver) for an away home address
            # (which maps to the virtual MAC anyway); else frames keep going to the old port
            announce = self.virtual
            if announce is None and self.installed:
                announce = IPv4Address(next(iter(self.installed)))
            if announce is not None:
                with contextlib.suppress(OSError):  # the link may still be coming up
                    vm.announce(v, announce)
        if not active:
            return
        self.last_takeover_ms = round((time.monotonic() - started) * 1000, 3)
        self._log(
            "dataplane.takeover",
            ms=self.last_takeover_ms,
            installed=len(self.installed),
            pending=len(self._dirty),
            reason=reason,
        )
        if self.arp is not None and self.vmac_name is None and self.cfg.garp_rounds > 0:
            # no virtual MAC: neighbours still map home addresses to the old active's MAC
            if self._announce is not None:
                self._announce.cancel()
            self._announce = asyncio.create_task(self._reannounce())

    async def _reannounce(self) -> None:
        assert self.arp is not None
        for round_ in range(self.cfg.garp_rounds):
            if round_:
                await asyncio.sleep(self.cfg.garp_interval)
            if not self.active:
                return
            # the raw ints: building 100,000 addresses here held the loop ~190 ms on takeover
            await self.arp.announce(list(self.installed), lambda: self.active)

    # --- reconciling -----------------------------------------------------------------------

    def _reconcile_start(self) -> None:
        """Routes of ours already in T (a restart): known, so none is duplicated or leaked."""
        assert self.rtnl is not None
        try:
            for r in self.rtnl.dump_routes(self.cfg.table):
                if r.prefixlen == 32:
                    self.installed[int(IPv4Address(r.dst))] = self.backend.key_of_dumped(r)
                else:
                    self.rtnl.apply([nl.route_del(r.dst, r.prefixlen, table=self.cfg.table)])
        except (OSError, InterruptedError) as exc:
            self.daemon.log.warning("dataplane.dump_failed", error=str(exc))
        # a rule of ours left by a crash: _switch re-adds it if we are active
        self.rtnl.apply([nl.rule_del(self.cfg.rule_priority, self.cfg.table)])
        self.full_reconcile()

    def full_reconcile(self) -> None:
        """Look at every home of the table and every route we hold (start, lost reports)."""
        self.full_reconciles += 1
        self._dirty.update(self.daemon.core.table.homes())
        self._dirty.update(self.installed)
        self._changed()
        self.wake()

    async def _worker(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                if self.legacy:
                    await self._reconcile_legacy()
                else:
                    await self._drain()
            except Exception as exc:  # keep the data plane alive; the next wake retries
                self.daemon.log.error("dataplane.reconcile_failed", error=repr(exc))

    async def _drain(self) -> None:
        """Apply the dirty homes: per event-loop turn at most ``batch`` route messages built in
        at most :data:`TURN_BUDGET` of Python, sent by the worker thread (the loop runs on
        while the kernel inserts them), their results taken in on the loop."""
        loop = asyncio.get_running_loop()
        while self._dirty and self.rtnl is not None:
            started = time.perf_counter()
            messages, ops = self._build()
            spent = time.perf_counter() - started
            failures: list[nl.Failure] = []
            if messages:
                bulk, pool = self._bulk, self._pool
                try:
                    if bulk is not None and pool is not None:
                        failures = await loop.run_in_executor(pool, bulk.apply, messages)
                    else:  # not started (tests drive _drain directly): on the loop
                        failures = self.rtnl.apply(messages)
                except BaseException:
                    self._dirty.update(home for home, *_ in ops)  # not taken in: next wake
                    raise
            started = time.perf_counter()
            self._finish(ops, failures)
            self._account(spent + time.perf_counter() - started)
            # before yielding: a status read in that yield must not see nothing pending with
            # the previous episode's converged_at
            self._converged()
            await asyncio.sleep(0)
        self._converged()

    def _batch(self) -> None:
        """One batch, synchronously on the caller's thread (tests)."""
        sock = self.rtnl
        assert sock is not None
        started = time.perf_counter()
        messages, ops = self._build()
        self._finish(ops, sock.apply(messages) if messages else [])
        self._account(time.perf_counter() - started)

    def _build(
        self,
    ) -> tuple[list[bytes], list[tuple[int, Hashable | None, TunnelSpec | None, int]]]:
        """Pop dirty homes and build their messages: up to ``batch`` messages, 4 x ``batch``
        homes looked at, :data:`TURN_BUDGET` seconds."""
        deadline = time.perf_counter() + TURN_BUDGET
        table = self.daemon.core.table
        backend = self.backend
        installed = self.installed
        dirty = self._dirty
        at_home = self._at_home
        t = self.cfg.table
        limit = self.cfg.batch
        messages: list[bytes] = []
        # (home, new key or None for a removal, spec, index of its last message + 1)
        ops: list[tuple[int, Hashable | None, TunnelSpec | None, int]] = []
        looked = 0
        while dirty and len(messages) < limit and looked < 4 * limit:
            looked += 1
            if not looked & 63 and time.perf_counter() > deadline:
                break
            home = dirty.pop()
            rec = table.get(home)
            spec = spec_for(rec)
            old = installed.get(home, _MISSING)
            if spec is None:
                if rec is not None and rec.bindings:
                    at_home.add(home)
                else:
                    at_home.discard(home)
                if old is not _MISSING:
                    messages += backend.del_messages(IPv4Address(home), t)
                    ops.append((home, None, None, len(messages)))
                else:
                    backend.untrack(IPv4Address(home))
                continue
            at_home.discard(home)
            key = backend.route_key(spec)
            if old == key:
                backend.track(spec)  # same route, maybe new care-of addresses or flags
                continue
            add = backend.add_messages(spec, t) or []
            messages += add
            ops.append((home, key, spec, len(messages)))
        return messages, ops

    def _finish(
        self,
        ops: list[tuple[int, Hashable | None, TunnelSpec | None, int]],
        failures: list[nl.Failure],
    ) -> None:
        """Take a sent batch's results in: what is installed, what failed, packet-path state."""
        backend = self.backend
        installed = self.installed
        dirty = self._dirty
        failed: dict[int, nl.Failure] = {}
        lost = False
        for f in failures:
            if f.index < 0:
                lost = True
            else:
                failed[f.index] = f
        first = 0
        new: list[IPv4Address] = []
        for home, key, spec, end in ops:
            bad = None
            if failed:
                bad = next((failed[i] for i in range(first, end) if i in failed), None)
            first = end
            if bad is not None:
                self.route_errors += 1
                self._failed.add(home)
                if self.route_errors <= 20 or self.route_errors % 1000 == 0:
                    self.daemon.log.warning(
                        "dataplane.route_failed", home=IPv4Address(home), error=str(bad)
                    )
                continue
            if key is None:
                installed.pop(home, None)
                if home not in dirty:
                    backend.untrack(IPv4Address(home))
                self.routes_removed += 1
            else:
                assert spec is not None
                if home not in installed:
                    new.append(spec.home)
                installed[home] = key
                if home not in dirty:  # changed again while the batch was sent: next batch's
                    backend.track(spec)
                self.routes_added += 1
        if new and self.active and self.arp is not None and self._arp_ready:
            # a binding created: neighbours on the home link must forget the mobile node's MAC
            for address in new:
                self.arp.gratuitous(address)
        if lost:
            self.daemon.log.warning("dataplane.reports_lost", action="full reconcile")
            self.full_reconcile()
        if self._failed and self._retry is None:
            self._retry = asyncio.get_running_loop().call_later(RETRY_INTERVAL, self._retry_failed)
        self._since_freeze += len(ops)
        if self._since_freeze >= FREEZE_EVERY:
            self._freeze()

    def _freeze(self) -> None:
        """Move what the process holds out of the cyclic GC's sight (``gc.freeze``, O(1)).

        Each installed route leaves a few GC-tracked objects (the backend's spec, its tuples
        and addresses) that live as long as the binding. Python's full collection scans every
        tracked object and runs whenever the objects that survived since the last one exceed a
        quarter of those it found then, so during a million-route install it ran over and over
        on ever more objects: stalls of up to ~1 s at 1,000,000 bindings. Frozen objects are
        still freed by reference counting (none of ours form cycles); a young collection
        (``gc.collect(1)``, a few ms) first clears the cyclic garbage that would otherwise
        stay frozen."""
        self._since_freeze = 0
        gc.collect(1)
        gc.freeze()
        self.gc_freezes += 1

    def _account(self, took: float) -> None:
        """The loop's own time for one batch (building it and taking its results in)."""
        self.install_seconds += took
        self.batches += 1
        self.longest_batch_ms = max(self.longest_batch_ms, took * 1000)

    def _retry_failed(self) -> None:
        self._retry = None
        self.note_homes(self._failed)
        self._failed.clear()

    async def _reconcile_legacy(self) -> None:
        """A backend without messages: install one by one, only while active (cold standby)."""
        active = self.active
        desired = desired_tunnels(self.daemon.core.table) if active else {}
        for home in [h for h in self._legacy_specs if h not in desired]:
            self._legacy_specs.pop(home, None)
            await self.backend.remove(home)
        new: list[IPv4Address] = []
        for home, spec in desired.items():
            old = self._legacy_specs.get(home)
            if old == spec:
                continue
            await self.backend.install(spec)
            self._legacy_specs[home] = spec
            if old is None:
                new.append(home)
        self.installed = {int(h): True for h in self._legacy_specs}
        self._dirty.clear()
        self._converged()
        if self.arp is not None and self._arp_ready and new and active:
            await self.arp.announce(new, lambda: self.active)
        if active and self._takeover_at is not None:
            self.last_takeover_ms = round((time.monotonic() - self._takeover_at) * 1000, 1)
            self._takeover_at = None
            self._log("dataplane.takeover", tunnels=len(self.installed), ms=self.last_takeover_ms)

    # --- home agent advertisements -----------------------------------------------------------

    async def _advertiser(self) -> None:
        """Home agent advertisements (H flag) on the home link while active, from the tunnel
        source (the virtual address): a mobile node that hears them knows it is home."""
        interface = self.vmac_name or self.cfg.home_interface
        assert interface is not None
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        try:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
            interval = self.cfg.advertisement_interval
            seq = 0
            bound = ""
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
                        if bound != interface:  # the macvlan may appear late (keepalived)
                            sock.setsockopt(
                                socket.SOL_SOCKET, socket.SO_BINDTODEVICE, interface.encode()
                            )
                            bound = interface
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

    @property
    def pending(self) -> int:
        """Homes not yet looked at since they changed, plus those whose route failed."""
        return len(self._dirty) + len(self._failed)

    @property
    def desired(self) -> int:
        """Away mobile nodes in the table (live records less those bound only at home)."""
        return max(0, len(self.daemon.core.table) - len(self._at_home))

    def status(self, homes: int = HOMES_LISTED) -> dict[str, Any]:
        """The data plane's state; every field O(1) but ``homes`` (the first ``homes`` home
        addresses installed, sorted: O(homes); 0 leaves the field out)."""
        added = self.routes_added + self.routes_removed
        data: dict[str, Any] = {
            "active": self.active,
            "source": str(self.source),
            "installed": len(self.installed),
            "desired": self.desired,
            "pending": self.pending,
            "converged": self.pending == 0,
            "converged_at": self.converged_at,
            "pending_since": self._pending_since,
            "last_convergence_ms": self.last_convergence_ms,
            "longest_convergence_ms": round(self.longest_convergence_ms, 3),
            "rule_installed": self.rule_installed,
            "table": self.cfg.table,
            "rule_priority": self.cfg.rule_priority,
            "hot_standby": not self.legacy,
            "vmac": self.vmac_name,
            "vmac_mac": vm.mac_text(self.vmac.mac) if self.vmac is not None else None,
            "tunnels": len(self.installed),
            "takeovers": self.takeovers,
            "advertisements": self.advertisements,
            "last_takeover_ms": self.last_takeover_ms,
            "install_seconds_total": round(self.install_seconds, 6),
            "install_us_per_route": (
                round(self.install_seconds / added * 1e6, 2) if added else None
            ),
            "routes_added": self.routes_added,
            "routes_removed": self.routes_removed,
            "route_errors": self.route_errors,
            "batches": self.batches,
            "longest_batch_ms": round(self.longest_batch_ms, 3),
            "full_reconciles": self.full_reconciles,
            "gc_freezes": self.gc_freezes,
            "sync_tapped": self.sync_tapped,
            "backend": self.backend.status(),
        }
        if homes > 0:
            listed = itertools.islice(self.installed, homes)
            data["homes"] = sorted(str(IPv4Address(h)) for h in listed)
        if self.arp is not None:
            data["arp"] = {
                "interface": self.arp.interface,
                "proxy_arp": self._arp_ready,
                "counters": dict(self.arp.counters),
            }
        return data

    def _status(self, request: web.Request) -> dict[str, Any]:
        try:
            homes = int(request.query.get("homes", HOMES_LISTED))
        except ValueError:
            raise web.HTTPBadRequest(text="homes: an integer") from None
        return self.status(max(0, min(homes, HOMES_LISTED)))


def _role_name(role: object) -> str:
    return str(getattr(role, "value", role))
