"""The HTTP JSON control API (aiohttp) on ``[control] listen``.

:class:`ControlServer` is the server: routes, access guard, start and stop. Every service adds
its own routes with :meth:`ControlServer.add_json_route` before the server starts (e.g.
``/api/v1/redundancy``); :func:`add_core_routes` adds the Home Agent's own: ``GET
/api/v1/bindings``, ``GET /api/v1/stats``, ``GET /healthz``.

Access: without a token only loopback clients are served (403 otherwise); with ``[control]
token`` every request must carry ``Authorization: Bearer TOKEN`` (401 otherwise).
"""

from __future__ import annotations

import hmac
import inspect
import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from ipaddress import IPv4Address, ip_address
from typing import Any, Protocol

from aiohttp import web

from mobileip.config import ControlConfig
from mobileip.core.bindings import BindingTable
from mobileip.core.homeagent import HomeAgentCore
from mobileip.daemon.ports import JsonHandler, JsonRoutes
from mobileip.net.udp import UdpEndpoint
from mobileip.wire.registration import Flags

_FLAG_LETTERS = [(Flags.S, "S"), (Flags.B, "B"), (Flags.D, "D"), (Flags.M, "M")]
_FLAG_LETTERS += [(Flags.G, "G"), (Flags.r, "r"), (Flags.T, "T"), (Flags.x, "x")]


def flag_letters(flags: int) -> str:
    """The set flags as letters, most significant first: ``0x82`` is ``"ST"``."""
    return "".join(letter for bit, letter in _FLAG_LETTERS if flags & bit)


def binding_rows(table: BindingTable, now: float) -> list[dict[str, Any]]:
    """One JSON object per binding (a mobile node with S may have several)."""
    rows: list[dict[str, Any]] = []
    for rec, b in table.bindings():
        rows.append(
            {
                "home_address": str(IPv4Address(rec.home_address)),
                "care_of_address": str(IPv4Address(b.care_of_address)),
                "granted_lifetime": b.granted_lifetime,
                "remaining_lifetime": b.remaining(now),
                "identification": rec.last_id,
                "identification_hex": f"{rec.last_id >> 32:08X}.{rec.last_id & 0xFFFFFFFF:08X}",
                "flags": b.flags,
                "flag_letters": flag_letters(b.flags),
                "home_agent": str(IPv4Address(rec.home_agent)),
                "version": rec.version,
            }
        )
    rows.sort(key=lambda r: (IPv4Address(r["home_address"]), IPv4Address(r["care_of_address"])))
    return rows


def _counter(c: Counter[Any]) -> dict[str, int]:
    return {str(k): v for k, v in sorted(c.items(), key=lambda kv: str(kv[0]))}


class ControlServer:
    """The control API's aiohttp server: JSON routes behind the access guard."""

    def __init__(self, cfg: ControlConfig) -> None:
        self.host = cfg.host
        self.port = cfg.port
        self.token = cfg.token
        self.app = web.Application(middlewares=[self._guard])
        self._runner: web.AppRunner | None = None

    def add_json_route(self, method: str, path: str, func: JsonHandler) -> None:
        """Serve ``func(request)`` (sync or async) as JSON. Only before :meth:`start`."""

        async def handler(request: web.Request) -> web.StreamResponse:
            result = func(request)
            if inspect.isawaitable(result):
                result = await result
            if isinstance(result, web.StreamResponse):
                return result
            return web.json_response(result, dumps=lambda o: json.dumps(o, indent=1))

        self.app.router.add_route(method, path, handler)

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @web.middleware
    async def _guard(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if self.token is not None:
            given = request.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {self.token}".encode()):
                return web.json_response({"error": "missing or wrong bearer token"}, status=401)
        elif not is_loopback(request.remote):
            return web.json_response({"error": "loopback clients only (no token)"}, status=403)
        return await handler(request)


class CoreView(Protocol):
    """What the core routes read of the daemon."""

    @property
    def core(self) -> HomeAgentCore: ...

    @property
    def endpoint(self) -> UdpEndpoint | None: ...

    @property
    def dropped(self) -> Counter[str]: ...


def add_core_routes(routes: JsonRoutes, view: CoreView) -> None:
    """``GET /healthz``, ``GET /api/v1/bindings`` and ``GET /api/v1/stats``."""

    def healthz(request: web.Request) -> Any:
        return {"status": "ok", "bindings": len(view.core.table)}

    def bindings(request: web.Request) -> Any:
        return binding_rows(view.core.table, time.monotonic())

    def stats(request: web.Request) -> Any:
        core = view.core
        dropped = Counter(core.stats.dropped)
        dropped.update(view.dropped)
        endpoint = view.endpoint
        return {
            "bindings": len(core.table),
            "records": core.table.record_count,
            "replies": _counter(core.stats.replies),
            "accepted": sum(n for code, n in core.stats.replies.items() if code in (0, 1)),
            "denied": sum(n for code, n in core.stats.replies.items() if code not in (0, 1)),
            "security_violations": _counter(core.stats.violations),
            "dropped": _counter(dropped),
            "expired": core.stats.expired,
            "udp": _counter(endpoint.counters) if endpoint is not None else {},
            # the fair queue used while overloaded (None: [homeagent] overload_queue = 0)
            "overload": (
                endpoint.fair.status()
                if endpoint is not None and endpoint.fair is not None
                else None
            ),
        }

    routes.add_json_route("GET", "/healthz", healthz)
    routes.add_json_route("GET", "/api/v1/bindings", bindings)
    routes.add_json_route("GET", "/api/v1/stats", stats)


def is_loopback(remote: str | None) -> bool:
    if not remote:
        return False
    try:
        return ip_address(remote).is_loopback
    except ValueError:
        return False
