"""``mobileip foreignagent`` configuration: one ``[foreignagent]`` table.

Errors name the file, key and line, through :mod:`mobileip.config`'s machinery. Keys::

    [foreignagent]
    interface = "eth1"              # the foreign link: visitors, advertisements (required)
    care_of_address = "10.2.0.1"    # our address on it, advertised as the CoA (required)
    listen = "0.0.0.0"
    port = 434
    max_lifetime = 1800             # longer requests are denied 69
    advertisement_interval = 1.0    # seconds; 0: answer solicitations only
    reverse_tunnel = true           # offer RFC 3024 (T flag)
    gre = true
    minimal_encapsulation = true
    pending_timeout = 7.0           # a request unanswered this long is answered 78
    tun_name = "mipfa0"             # reverse tunnel device
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from mobileip.config.errors import ConfigError, Locator, Table

ANY = IPv4Address("0.0.0.0")


@dataclass(frozen=True, slots=True)
class ForeignAgentConfig:
    path: str
    interface: str
    care_of_address: IPv4Address
    listen: IPv4Address = ANY
    port: int = 434
    max_lifetime: int = 1800
    advertisement_interval: float = 1.0
    reverse_tunnel: bool = True
    gre: bool = True
    minimal_encapsulation: bool = True
    pending_timeout: float = 7.0
    tun_name: str = "mipfa0"
    # RFC 3543 registration revocation: on when an FA-HA key is set (docs/revocation.md)
    revocation_spi: int = 0
    revocation_algorithm: str = "hmac-md5"
    revocation_key: bytes = b""
    inform_mobile_node: bool = True
    # RFC 3519: we sit behind a NAT: ask home agents for a UDP tunnel (docs/nat-traversal.md)
    nat_traversal: bool = False


def read_table(path: str | Path, section: str) -> Table:
    """The one table ``section`` of a TOML file, with located errors; nothing else allowed."""
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{name}: not UTF-8 text") from None
    try:
        data: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{name}: not valid TOML: {exc}") from None
    loc = Locator(text)
    for key in data:
        if key != section:
            line = loc.headers.get((key, 0)) or loc.line(("", 0), key)
            raise ConfigError(f"{name}: line {line}: {key}: unknown section")
    value = data.get(section)
    if not isinstance(value, dict):
        raise ConfigError(f"{name}: line 1: [{section}]: required section is missing")
    return Table(name, loc, section, None, value)


def load_fa_config(path: str | Path) -> ForeignAgentConfig:
    t = read_table(path, "foreignagent")
    cfg = ForeignAgentConfig(
        path=str(path),
        interface=t.string("interface", required=True) or "",
        care_of_address=t.ipv4("care_of_address", required=True),
        listen=t.ipv4("listen", ANY),
        port=t.integer("port", 434, 1, 65535) or 434,
        max_lifetime=t.integer("max_lifetime", 1800, 1, 0xFFFF) or 1800,
        advertisement_interval=t.number("advertisement_interval", 1.0, 0.0, 600.0),
        reverse_tunnel=t.boolean("reverse_tunnel", True),
        gre=t.boolean("gre", True),
        minimal_encapsulation=t.boolean("minimal_encapsulation", True),
        pending_timeout=t.number("pending_timeout", 7.0, 0.1, 600.0),
        tun_name=t.string("tun_name", "mipfa0") or "mipfa0",
        revocation_spi=t.integer("revocation_spi", 0, 256, 0xFFFFFFFF) or 0,
        revocation_algorithm=t.choice(
            "revocation_algorithm", ("hmac-md5", "prefix-suffix-md5"), "hmac-md5"
        )
        or "hmac-md5",
        revocation_key=t.hex_key("revocation_key") if t.has("revocation_key") else b"",
        inform_mobile_node=t.boolean("inform_mobile_node", True),
        nat_traversal=t.boolean("nat_traversal", False),
    )
    if bool(cfg.revocation_key) != bool(cfg.revocation_spi):
        raise t.error("revocation_key", "revocation_key and revocation_spi go together")
    if len(cfg.tun_name) > 15:
        raise t.error("tun_name", "interface names are at most 15 characters")
    t.finish()
    return cfg
