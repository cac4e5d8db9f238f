"""Stand-ins for what UdpTunnelService is given: the daemon (its handler, hook and control-route
tables, a log that keeps the events) and the dataplane (its backend). Shared by
tests/test_udp_tun.py, tests/test_nat_dataplane.py and tests/test_cli_operator.py."""

from __future__ import annotations

from typing import Any

from mobileip.dataplane.backend import TunnelBackend


class RecordingLog:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, event: str, **fields: object) -> None:
        self.lines.append(event)

    warning = info


class ServiceHost:
    def __init__(self) -> None:
        self.type_handlers: dict[int, Any] = {}
        self.startup_hooks: list[Any] = []
        self.shutdown_hooks: list[Any] = []
        self.routes: dict[tuple[str, str], Any] = {}
        self.control = self
        self.log = RecordingLog()

    def add_json_route(self, method: str, path: str, func: Any) -> None:
        self.routes[(method, path)] = func


class Plane:
    def __init__(self, backend: TunnelBackend) -> None:
        self.backend = backend
