"""``[control]``: the HTTP control API's listen address and token (optional section)."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address

from mobileip.config.errors import Table


@dataclass(frozen=True, slots=True)
class ControlConfig:
    host: str = "127.0.0.1"
    port: int = 8434
    token: str | None = None


def host_port(table: Table, key: str, default: str) -> tuple[str, int]:
    text = table.string(key, default)
    assert text is not None
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise table.error(key, f"{text!r} is not HOST:PORT")
    try:
        IPv4Address(host)
    except ValueError:
        raise table.error(key, f"{host!r} is not an IPv4 address") from None
    return host, int(port)


def parse_control(t: Table) -> ControlConfig:
    host, port = host_port(t, "listen", "127.0.0.1:8434")
    token = t.string("token")
    t.finish()
    return ControlConfig(host, port, token)
