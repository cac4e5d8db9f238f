"""RFC 3519 UDP tunnelling in the userspace data plane: tunnel data on the registration socket.

A binding registered through a NAT (core/nat.py) carries the NAT's mapping (``udp_address``,
``udp_port``); :func:`~mobileip.dataplane.backend.spec_for` puts it in ``TunnelSpec.udp``
instead of ``exits``. Packets the kernel routes into the TUN for such a home address leave as
tunnel data messages (type 4, next header 4, :func:`mobileip.wire.nat.encapsulate`) from the Home
Agent's registration socket: UDP port 434, from the address the mobile node registers with (the
VRRP virtual address in a group), to the mapping. Sharing the registration socket is what makes it
traverse the NAT: the mobile node's registrations opened exactly that mapping.

Tunnel data arriving on port 434 (``HomeAgentDaemon.type_handlers[4]``) is checked by
:meth:`UdpTunnelPath.received`: an IPv4 packet inside, whose source is a home address with a UDP
binding, from that binding's mapping. Then it is written to the TUN and the kernel forwards it
(a keepalive, an ICMP echo request to the Home Agent, is answered by the kernel and its reply goes
back through the tunnel like any packet for the home address). From the mapping's address but
another port, the NAT rebound: the packet is taken, and the service makes the change a new
version of the record (:meth:`HomeAgentCore.nat_rebind`), so it replicates to every member like
a registration. From another address it is dropped: moving a tunnel to another address takes an
authenticated registration (RFC 3519's security section warns of redirection by forged
keepalives).

The kernel backend carries them on a hybrid path (dataplane/udp_tun.py): it routes a home whose
bindings are all UDP-tunnelled into its own TUN, whose packets this path sends as tunnel data,
and the tunnel data received here is written to that TUN; every other home stays on the kernel's
ipip/gre fast path.
"""

from __future__ import annotations

import itertools
import time
from collections import Counter
from collections.abc import Callable, Sequence
from ipaddress import IPv4Address
from typing import Any, Protocol

from mobileip.core.homeagent import Event, HomeAgentCore
from mobileip.daemon.ports import Hook, JsonRoutes
from mobileip.dataplane.backend import TunnelBackend
from mobileip.dataplane.kernel import KernelBackend
from mobileip.dataplane.userspace import UserspaceBackend
from mobileip.log import Logger
from mobileip.net.udp import Address, DatagramHandler, UdpEndpoint
from mobileip.wire import nat

Send = Callable[[bytes, Address, str | None], bool]
Rebind = Callable[[int, tuple[int, int], tuple[int, int]], None]


class UdpTunnelPath:
    """Both directions of the UDP tunnel, given how to send (the registration socket), how to
    write to the TUN, the backend's specs and what to do when a NAT rebinds."""

    def __init__(
        self,
        backend: TunnelBackend,
        send: Send,
        write: Callable[[bytes], None],
        source: str | None,
        rebind: Rebind,
    ) -> None:
        self.backend = backend
        self._send = send
        self._write = write
        self.source = source
        self._rebind = rebind
        self.counters: Counter[str] = Counter()
        self._own = frozenset(int(a) for a in getattr(backend, "own", ()))

    def forward(self, packet: bytes, exits: Sequence[tuple[IPv4Address, int]]) -> None:
        """A packet for a home address: one tunnel data message to each UDP exit."""
        data = nat.encapsulate(packet)
        for address, port in exits:
            if not port:  # half bound (RFC 3519 R): no port until the mobile node's keepalive
                self.counters["udp-half-bound"] += 1
                continue
            if self._send(data, (str(address), port), self.source):
                self.counters["udp-encap"] += 1
            else:
                self.counters["udp-send-errors"] += 1

    def received(self, data: bytes, src: Address, dst: str | None) -> None:
        """Tunnel data from a mobile node (type 4 on the registration port)."""
        counters = self.counters
        if len(data) < nat.TUNNEL_HEADER_LEN + 20 or data[1] != nat.ENCAP_IPIP:
            counters["udp-drop-malformed"] += 1
            return
        inner = data[nat.TUNNEL_HEADER_LEN :]
        if inner[0] >> 4 != 4 or int.from_bytes(inner[2:4], "big") != len(inner):
            counters["udp-drop-malformed"] += 1
            return
        home = IPv4Address(inner[12:16])
        spec = self.backend.specs.get(home)
        if spec is None or not spec.udp:
            counters["udp-drop-unregistered"] += 1
            return
        try:
            address = IPv4Address(src[0])
        except ValueError:
            counters["udp-drop-malformed"] += 1
            return
        mapping = (address, src[1])
        if mapping not in spec.udp:
            old = next((m for m in spec.udp if m[0] == address), None)
            if old is None:
                counters["udp-drop-unregistered"] += 1
                return
            if not old[1] and not any(nat.echo_request_to(inner, a) for a in self._own):
                counters["udp-drop-half-bound"] += 1  # RFC 3519 4.6: a keepalive binds it
                return
            counters["udp-rebind"] += 1  # same NAT address, new port: the NAT rebound
            self._rebind(int(home), (int(old[0]), old[1]), (int(address), src[1]))
        if any(nat.echo_request_to(inner, a) for a in self._own):
            counters["udp-keepalive"] += 1
        try:
            self._write(inner)
        except OSError:
            counters["udp-tun-write-errors"] += 1
            return
        counters["udp-decap"] += 1


class _DataPlane(Protocol):
    @property
    def backend(self) -> TunnelBackend: ...


class TunnelHost(Protocol):
    """What the UDP tunnel uses of the daemon."""

    type_handlers: dict[int, DatagramHandler]
    startup_hooks: list[Hook]
    shutdown_hooks: list[Hook]

    @property
    def log(self) -> Logger: ...

    @property
    def core(self) -> HomeAgentCore: ...

    @property
    def endpoint(self) -> UdpEndpoint | None: ...

    @property
    def control(self) -> JsonRoutes: ...

    def publish(self, events: Sequence[Event], now: float, src: Address | None = None) -> None:
        """Log ``events`` and hand them to every subscriber."""


class UdpTunnelService:
    """Attaches a :class:`UdpTunnelPath` to the data plane's userspace backend once it started
    (``[homeagent] nat_traversal = true``); built by the composition root after the data plane,
    so its startup hook runs after the data plane's."""

    def __init__(self, daemon: TunnelHost, dataplane: _DataPlane, source: IPv4Address) -> None:
        self.daemon = daemon
        self.dataplane = dataplane
        self.source = str(source)
        self.path: UdpTunnelPath | None = None
        self.unsupported = 0
        daemon.startup_hooks.append(self._start)
        daemon.shutdown_hooks.append(self._stop)
        daemon.control.add_json_route("GET", "/api/v1/nat", lambda _request: self.status())

    async def _start(self) -> None:
        daemon = self.daemon
        backend = self.dataplane.backend
        daemon.type_handlers[nat.TYPE_TUNNEL_DATA] = self._received
        if isinstance(backend, UserspaceBackend):
            self.path = UdpTunnelPath(
                backend, self._send, backend.write_tun, self.source, self._rebind
            )
            backend.udp = self.path
        elif isinstance(backend, KernelBackend) and backend.udp_tun is not None:
            # the hybrid path: UDP-tunnelled homes routed into the kernel backend's TUN
            self.path = UdpTunnelPath(
                backend, self._send, backend.write_tun, self.source, self._rebind
            )
            backend.udp_tun.udp = self.path
        else:
            daemon.log.warning(
                "nat.unsupported_backend",
                backend=backend.name,
                detail="UDP-tunnelled bindings need the userspace backend or the kernel "
                "backend's TUN ([dataplane] tun_name)",
            )
            return
        daemon.log.info("nat.udp_tunnel", source=self.source, backend=backend.name)

    async def _stop(self) -> None:
        self.daemon.type_handlers.pop(nat.TYPE_TUNNEL_DATA, None)
        backend = self.dataplane.backend
        if isinstance(backend, UserspaceBackend):
            backend.udp = None
        elif isinstance(backend, KernelBackend) and backend.udp_tun is not None:
            backend.udp_tun.udp = None
        self.path = None

    def _received(self, data: bytes, src: Address, dst: str | None) -> None:
        if self.path is None:
            self.unsupported += 1
            return
        self.path.received(data, src, dst)

    def _send(self, data: bytes, addr: Address, src_ip: str | None) -> bool:
        endpoint = self.daemon.endpoint
        return endpoint is not None and endpoint.send(data, addr, src_ip)

    def _rebind(self, home: int, old: tuple[int, int], new: tuple[int, int]) -> None:
        now = time.monotonic()
        events = self.daemon.core.nat_rebind(home, old, new, now)
        if events:
            self.daemon.log.info(
                "nat.rebind",
                home=IPv4Address(home),
                old=f"{IPv4Address(old[0])}:{old[1]}",
                new=f"{IPv4Address(new[0])}:{new[1]}",
            )
            self.daemon.publish(events, now)

    def status(self, listed: int = 1000) -> dict[str, Any]:
        """``GET /api/v1/nat``: attached or not, the counters, how many UDP-tunnelled homes this
        member's data plane holds, and (at most ``listed``) those homes with their NAT mappings.

        It walks the userspace backend's index of UDP-tunnelled homes (kept by its track and
        untrack, as the table changes), or the kernel backend's (the homes routed into its TUN),
        never every spec: O(min(listed, NAT-ed homes))."""
        counters = dict(self.path.counters) if self.path is not None else {}
        backend = self.dataplane.backend
        homes: set[IPv4Address] = (
            backend.udp_homes if isinstance(backend, UserspaceBackend | KernelBackend) else set()
        )
        specs = backend.specs
        tunnels: dict[str, list[str]] = {}
        for home in itertools.islice(homes, listed):
            spec = specs.get(home)
            if spec is not None:
                tunnels[str(home)] = [f"{a}:{p}" for a, p in spec.udp]
        return {
            "attached": self.path is not None,
            "source": self.source,
            "counters": counters,
            "unsupported": self.unsupported,
            "udp_homes": len(homes),
            "tunnels": tunnels,
        }
