"""``[[security_association]]``: the mobile nodes' SPIs, keys and home prefixes (one or more)."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Network
from typing import Any

from mobileip.config.errors import ConfigError, Locator, Table


@dataclass(frozen=True, slots=True)
class SecurityAssociationConfig:
    spi: int
    algorithm: str
    key: bytes
    home_addresses: tuple[IPv4Network, ...]


def parse_security_association(t: Table) -> SecurityAssociationConfig:
    spi = t.integer("spi", None, 256, 0xFFFFFFFF, required=True)
    algorithm = t.choice("algorithm", ("hmac-md5", "prefix-suffix-md5"), "hmac-md5")
    key = t.hex_key("key")
    prefixes: list[IPv4Network] = []
    for text in t.string_list("home_addresses", required=True):
        try:
            prefixes.append(IPv4Network(text))
        except ValueError as exc:
            raise t.error("home_addresses", f"{text!r} is not an IPv4 prefix ({exc})") from None
    if not prefixes:
        raise t.error("home_addresses", "must list at least one prefix")
    t.finish()
    assert spi is not None and algorithm is not None
    return SecurityAssociationConfig(spi, algorithm, key, tuple(prefixes))


def parse_security_associations(
    raw_sas: Any, name: str, loc: Locator
) -> tuple[SecurityAssociationConfig, ...]:
    """The whole ``[[security_association]]`` array: at least one, no SPI twice."""
    if raw_sas is None:
        raise ConfigError(f"{name}: line 1: [[security_association]]: at least one is required")
    if not isinstance(raw_sas, list) or not all(isinstance(s, dict) for s in raw_sas):
        line = loc.line(("", 0), "security_association")
        raise ConfigError(
            f"{name}: line {line}: security_association: must be [[security_association]] tables"
        )
    sas: list[SecurityAssociationConfig] = []
    seen: dict[int, int] = {}
    for i, raw in enumerate(raw_sas):
        t = Table(name, loc, "security_association", i, raw)
        sa = parse_security_association(t)
        if sa.spi in seen:
            raise t.error(
                "spi", f"duplicate SPI {sa.spi} (also security_association[{seen[sa.spi]}])"
            )
        seen[sa.spi] = i
        sas.append(sa)
    return tuple(sas)
