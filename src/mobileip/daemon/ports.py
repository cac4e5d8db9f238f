"""What a service may use of the Home Agent daemon: small typed interfaces, nothing more.

The composition root (:mod:`mobileip.compose.homeagent`) builds a :class:`HomeAgentDaemon` and
hands each service the daemon typed as the one interface below that the service needs, plus the
other services it depends on typed by what it reads of them (:class:`StatusSource`,
:class:`SyncState`). So a service's signature says what it touches, mypy checks it, and no
service module imports the daemon module or another service's module for its types.

* :class:`ServiceHost`: the config, the logger, the core, start/stop/SIGHUP hooks, control routes;
  what every service gets.
* :class:`ObservedHost`: plus the registration socket and the drop counters (read only).
* :class:`EventHost`: plus the core's events (subscribe, publish).
* :class:`DatagramHost`: plus the registration socket's path: the extra datagram handler (the
  sync protocol shares the socket), the reply policy (semisync holds replies), ``send_reply``.
* :class:`GateHost`: plus the request gates (a standby ignores the virtual address).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Any, Protocol

from mobileip.config import Config
from mobileip.core.homeagent import Event, HomeAgentCore, Outcome
from mobileip.log import Logger
from mobileip.net.udp import Address, DatagramHandler, UdpEndpoint


@dataclass(frozen=True, slots=True)
class PendingReply:
    """A registration reply ready to go: ``data`` to ``dest`` from ``src_ip``."""

    data: bytes
    dest: Address
    src_ip: str | None
    code: int | None


# Return True when the policy took the reply (it will call ``send_reply`` itself later).
ReplyPolicy = Callable[[Outcome, PendingReply], bool]
# Called with the core's events and the monotonic time they happened at.
EventSubscriber = Callable[[Sequence[Event], float], None]
# Run once when the daemon starts (in order) or stops (in reverse order).
Hook = Callable[[], Awaitable[None]]
# Called with a request's (source, local address it was sent to); a returned reason drops it
# unanswered and counts it under that reason (a standby ignores the virtual address).
RequestGate = Callable[[Address, str | None], str | None]
# A control route: called with the aiohttp request; returns JSON-able data (or a response).
JsonHandler = Callable[[Any], Any]


class JsonRoutes(Protocol):
    def add_json_route(self, method: str, path: str, func: JsonHandler) -> None:
        """Serve ``func(request)`` (sync or async) as JSON; only before the server starts."""


class HttpSurface(JsonRoutes, Protocol):
    """The control API server as the daemon drives it (``web.control.ControlServer``)."""

    host: str
    port: int

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class ServiceHost(Protocol):
    """What every service may use of the daemon."""

    config: Config  # settable: a reload swaps in new security associations
    startup_hooks: list[Hook]
    shutdown_hooks: list[Hook]
    reload_hooks: list[Callable[[], None]]  # SIGHUP
    # a reload's new config (SIGHUP or POST /api/v1/reload): apply what the service can, return
    # the names of the config fields it applied (they need no restart)
    config_hooks: list[Callable[[Config], Sequence[str]]]

    @property
    def log(self) -> Logger: ...

    @property
    def core(self) -> HomeAgentCore: ...

    @property
    def control(self) -> JsonRoutes: ...


class ObservedHost(ServiceHost, Protocol):
    """Plus what the counters read: the registration socket and the drops before the core."""

    @property
    def endpoint(self) -> UdpEndpoint | None: ...

    @property
    def dropped(self) -> Counter[str]: ...


class EventHost(ServiceHost, Protocol):
    subscribers: list[EventSubscriber]
    # called with (home, by) after the operator's `clear binding` dropped bindings (RFC 3543)
    cleared_hooks: list[Callable[[IPv4Address, str], None]]

    def publish(self, events: Sequence[Event], now: float, src: Address | None = None) -> None:
        """Log ``events`` and hand them to every subscriber."""

    def reschedule_expiry(self) -> None:
        """Re-arm the expiry timer after a change made outside a datagram."""


class DatagramHost(EventHost, ObservedHost, Protocol):
    extra_handler: DatagramHandler | None
    reply_policy: ReplyPolicy | None

    def send_reply(self, pending: PendingReply) -> bool:
        """Send a reply a policy held."""


class GateHost(ObservedHost, Protocol):
    request_gates: list[RequestGate]


class StatusSource(Protocol):
    """A service seen from outside: its state as JSON-able data (metrics, status page)."""

    def status(self) -> dict[str, Any]: ...


class SyncStatus(Protocol):
    """The redundancy service as the role service sees it: SYNCED or not."""

    @property
    def synced(self) -> bool: ...
