"""The HTTP JSON control API (aiohttp) on ``[control] listen``.

Routes: ``GET /api/v1/bindings``, ``GET /api/v1/stats``, ``GET /healthz``. More are added with
:meth:`ControlServer.add_json_route` before the server starts, e.g. ``/api/v1/redundancy``.

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
from typing import TYPE_CHECKING, Any

from aiohttp import web

from mobileip.core.bindings import BindingTable
from mobileip.wire.registration import Flags

if TYPE_CHECKING:
    from mobileip.daemon.homeagent import HomeAgentDaemon

JsonHandler = Callable[[web.Request], Any | Awaitable[Any]]

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
    def __init__(self, daemon: HomeAgentDaemon) -> None:
        self.daemon = daemon
        cfg = daemon.config.control
        self.host = cfg.host
        self.port = cfg.port
        self.token = cfg.token
        self.app = web.Application(middlewares=[self._guard])
        self._runner: web.AppRunner | None = None
        self.add_json_route("GET", "/healthz", self._healthz)
        self.add_json_route("GET", "/api/v1/bindings", self._bindings)
        self.add_json_route("GET", "/api/v1/stats", self._stats)

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
        elif not _is_loopback(request.remote):
            return web.json_response({"error": "loopback clients only (no token)"}, status=403)
        return await handler(request)

    # --- routes ----------------------------------------------------------------------------

    def _healthz(self, request: web.Request) -> Any:
        return {"status": "ok", "bindings": len(self.daemon.core.table)}

    def _bindings(self, request: web.Request) -> Any:
        return binding_rows(self.daemon.core.table, time.monotonic())

    def _stats(self, request: web.Request) -> Any:
        core = self.daemon.core
        dropped = Counter(core.stats.dropped)
        dropped.update(self.daemon.dropped)
        endpoint = self.daemon.endpoint
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
        }


def _is_loopback(remote: str | None) -> bool:
    if not remote:
        return False
    try:
        return ip_address(remote).is_loopback
    except ValueError:
        return False
