"""Several redundancy groups in one daemon (active-active load sharing), and RFC 4433 wiring.

A config with ``[[group]]`` tables (docs/load-sharing.md) runs one :class:`HomeAgentDaemon` per
group in one process and one event loop, each built by :func:`build_daemon` exactly as a
single-group daemon (its own :class:`BindingTable`, :class:`HomeAgentCore`, redundancy service
on its own sync port, role service with its own VRRP instance, metrics, status page), but
*embedded*: :class:`GroupsDaemon` owns

* the one registration socket (``[homeagent] listen:port``): a request goes to the group whose
  address is in its Home Agent field; a request for dynamic assignment (ALL-ZERO-ONE-ADDR) to
  the group its Requested HA extension names; else (or naming an address no group owns) to the
  group whose address it was sent to, else to the first group (which answers by its own rules,
  e.g. 136);
* the one control API (``[control] listen``): ``GET /api/v1/groups`` lists every group and each
  group's own API is mounted under ``/group/NAME/`` (``/group/g1/api/v1/bindings``,
  ``/group/g1/api/v1/vrrp``, ``/group/g1/metrics``, the status page at ``/group/g1/``);
* the signals (SIGTERM/SIGINT stop every group; SIGHUP reloads the shared SAs into each, and
  each group's ``[[group.pool]]`` into it when it started with pools).

:func:`~mobileip.daemon.dynamic_ha.attach_dynamic_ha` plugs RFC 4433 dynamic assignment
(core/dynamic_ha.py) into one daemon or group: ``GET /api/v1/dynamic_ha`` shows its load,
peers and counters.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
from collections import Counter
from collections.abc import Awaitable, Callable
from ipaddress import IPv4Address
from typing import Any

from aiohttp import web

from mobileip.compose.homeagent import HomeAgent, build_home_agent
from mobileip.config import (
    Config,
    ConfigError,
    GroupConfig,
    load_config,
    security_associations,
)
from mobileip.daemon.homeagent import HomeAgentDaemon, serve_until_stopped
from mobileip.log import Logger
from mobileip.net.udp import Address, UdpEndpoint
from mobileip.web.control import ControlServer, is_loopback
from mobileip.wire import dynamic_ha as dha
from mobileip.wire.errors import DecodeError
from mobileip.wire.registration import TYPE_REQUEST, decode_request

_ALL_ZERO_ONE = frozenset(a.packed for a in dha.ALL_ZERO_ONE_ADDRS)

# --- several groups -------------------------------------------------------------------------------


class GroupLogger(Logger):
    """A group's logger: every line also says ``ha_group=NAME``; listeners stay per group."""

    def __init__(self, parent: Logger, group: str) -> None:
        super().__init__(parent.fmt, "debug", parent.stream)
        self.threshold = parent.threshold
        self.parent = parent
        self.group = group

    def log(self, level: str, event: str, **fields: Any) -> None:
        for listener in self.listeners:
            with contextlib.suppress(Exception):
                listener(level, event, fields)
        self.parent.log(level, event, **{**fields, "ha_group": self.group})

    def wants(self, level: str, event: str) -> bool:
        return super().wants(level, event) or self.parent.wants(level, event)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class GroupsDaemon:
    """Every ``[[group]]`` of ``config`` as an embedded :class:`HomeAgentDaemon`."""

    def __init__(self, config: Config, logger: Logger | None = None) -> None:
        if not config.groups:
            raise ValueError("the config has no [[group]]")
        self.config = config
        self.log = logger if logger is not None else Logger()
        self.groups: dict[str, GroupConfig] = {g.name: g for g in config.groups}
        self.units: dict[str, HomeAgentDaemon] = {}
        self.agents: dict[str, HomeAgent] = {}
        for g in config.groups:
            control = ControlServer(g.config.control)
            agent = build_home_agent(g.config, GroupLogger(self.log, g.name), control)
            agent.daemon.embedded = True
            self.agents[g.name] = agent
            self.units[g.name] = agent.daemon
        self.default = self.units[config.groups[0].name]
        # Home Agent field (packed) -> group: each group's own address first, then the others
        self._by_field: dict[bytes, HomeAgentDaemon] = {}
        self._by_dst: dict[str, HomeAgentDaemon] = {}
        for g in config.groups:
            self._route(g.address, self.units[g.name])
        for g in config.groups:
            for addr in self.units[g.name].core.settings.our_addresses():
                self._route(addr, self.units[g.name])
        self.dropped: Counter[str] = Counter()
        self.routed: Counter[str] = Counter()
        self.endpoint: UdpEndpoint | None = None
        self.app = web.Application(middlewares=[self._guard])
        self.app.router.add_get("/healthz", self._healthz)
        self.app.router.add_get("/api/v1/groups", self._groups)
        for name, agent in self.agents.items():
            self.app.add_subapp(f"/group/{name}", agent.control.app)
        self._runner: web.AppRunner | None = None
        self._stopping: asyncio.Event | None = None

    def _route(self, addr: IPv4Address, unit: HomeAgentDaemon) -> None:
        self._by_field.setdefault(addr.packed, unit)
        self._by_dst.setdefault(str(addr), unit)

    # --- datagrams ---------------------------------------------------------------------------

    def unit_for(self, data: bytes, dst: str | None) -> HomeAgentDaemon:
        """The group a registration request belongs to (see the module docstring)."""
        field = data[8:12]
        unit = self._by_field.get(field)
        if unit is None and field in _ALL_ZERO_ONE:
            unit = self._by_requested_ha(data)
        if unit is None and dst is not None:
            unit = self._by_dst.get(dst)
        return unit if unit is not None else self.default

    def _by_requested_ha(self, data: bytes) -> HomeAgentDaemon | None:
        """A request for any HA naming a group's address in a Requested HA extension (e.g. one
        following a redirect to another group of this daemon); the group re-checks it."""
        try:
            ext = dha.find(decode_request(data), dha.SUBTYPE_REQUESTED_HA)
        except DecodeError:
            return None  # the default group answers the garbage by the core's rules
        return self._by_field.get(ext.home_agent.packed) if ext is not None else None

    def datagram_received(self, data: bytes, src: Address, dst: str | None) -> None:
        if data and data[0] == TYPE_REQUEST:
            unit = self.unit_for(data, dst)
            self.routed[self._name_of(unit)] += 1
            unit.datagram_received(data, src, dst)
            return
        # Each group syncs on a port of its own: nothing else belongs on this socket.
        self.dropped["empty" if not data else "unknown-type"] += 1

    def _name_of(self, unit: HomeAgentDaemon) -> str:
        return next(name for name, u in self.units.items() if u is unit)

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        ha = self.config.homeagent
        self.endpoint = UdpEndpoint.bind(
            loop, str(ha.listen), ha.port, self.datagram_received, fair_queue=ha.overload_queue
        )
        self.endpoint.on_handler_error = self._on_handler_error
        for unit in self.units.values():
            unit.endpoint = self.endpoint
        ctl = self.config.control
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, ctl.host, ctl.port, reuse_address=True).start()
        # concurrently: each redundancy service waits for its boot epoch's second to begin
        await asyncio.gather(*(unit.start() for unit in self.units.values()))
        host, port = self.endpoint.local_address
        self.log.info(
            "groups.started",
            groups=",".join(f"{g.name}={g.address}" for g in self.config.groups),
            listen=f"{host}:{port}",
            control=f"{ctl.host}:{ctl.port}",
            config=self.config.path,
        )

    def _on_handler_error(self, exc: Exception) -> None:
        self.log.error("datagram.handler_failed", error=repr(exc))

    async def stop(self) -> None:
        for unit in reversed(list(self.units.values())):
            try:
                await unit.stop()
            except Exception as exc:
                self.log.error("group.stop_failed", error=repr(exc))
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self.endpoint is not None:
            self.endpoint.close()
            self.endpoint = None
        self.log.info("groups.stopped")

    def request_stop(self) -> None:
        if self._stopping is not None:
            self._stopping.set()

    async def serve(self) -> None:
        self._stopping = asyncio.Event()
        await serve_until_stopped(
            self._stopping,
            self.start,
            self.stop,
            self.log,
            drop_privileges=self.config.homeagent.drop_privileges,
            lock_memory=self.config.homeagent.lock_memory,
            on_sighup=self.reload_security_associations,
        )

    def reload_security_associations(self) -> bool:
        """SIGHUP: the shared SAs from the file into every group; keep the old ones on error."""
        try:
            config = load_config(self.config.path)
            sas = security_associations(config)
        except (ConfigError, ValueError, OSError) as exc:
            self.log.error("config.reload_failed", config=self.config.path, error=str(exc))
            return False
        reloaded = {g.name: g.config for g in config.groups}
        for name, unit in self.units.items():
            unit.core.sas = sas
            group = reloaded.get(name)
            if group is not None:  # the group's own sections its services reload (its pools)
                for apply in unit.config_hooks:
                    apply(group)
        self.log.info("config.reloaded", config=self.config.path, sas=len(sas))
        return True

    # --- control API -------------------------------------------------------------------------

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        token = self.config.control.token
        if token is not None:
            given = request.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                return web.json_response({"error": "missing or wrong bearer token"}, status=401)
        elif not is_loopback(request.remote):
            return web.json_response({"error": "loopback clients only (no token)"}, status=403)
        return await handler(request)

    def status(self) -> list[dict[str, Any]]:
        rows = []
        for g in self.config.groups:
            agent = self.agents[g.name]
            core = agent.daemon.core
            roles = agent.roles.status() if agent.roles is not None else None
            red = agent.redundancy
            rows.append(
                {
                    "name": g.name,
                    "address": str(g.address),
                    "role": roles["role"] if roles else None,
                    "vrrp_state": roles.get("vrrp_state") if roles else None,
                    "synced": red.synced if red is not None else None,
                    "bindings": len(core.table),
                    "max_bindings": core.settings.max_bindings,
                    "requests": self.routed.get(g.name, 0),
                    "dynamic_ha": (
                        core.dynamic.status(len(core.table)) if core.dynamic is not None else None
                    ),
                    "api": f"/group/{g.name}/api/v1/",
                }
            )
        return rows

    async def _groups(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self.status())

    async def _healthz(self, request: web.Request) -> web.StreamResponse:
        bindings = {name: len(u.core.table) for name, u in self.units.items()}
        return web.json_response({"status": "ok", "groups": bindings})


def format_groups(rows: list[dict[str, Any]]) -> str:
    """``mobileip show groups`` as text."""
    lines = [f"{'Group':<12} {'Address':<16} {'Role':<8} {'Synced':<7} {'Bindings':>9}  Dynamic HA"]
    for r in rows:
        dyn = r.get("dynamic_ha")
        dyn_text = "-"
        if isinstance(dyn, dict):
            counters = dyn.get("counters", {})
            dyn_text = (
                f"load {dyn.get('load')} (redirect at {dyn.get('redirect_above')}), "
                f"assigned {counters.get('assigned', 0)}, "
                f"redirected {counters.get('redirected', 0)}"
            )
        role = r.get("role") or "-"
        synced = "-" if r.get("synced") is None else str(r["synced"])
        lines.append(
            f"{r['name']:<12} {r['address']:<16} {role:<8} {synced:<7} {r['bindings']:>9}  "
            + dyn_text
        )
    return "\n".join(lines)
