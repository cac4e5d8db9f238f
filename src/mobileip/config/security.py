"""``[[security_association]]``: the mobile nodes' SPIs, keys and home prefixes (one or more).

An SA may name its mobile nodes by NAI (RFC 2794): ``nai = "alice@example.net"`` or a
shell-style pattern ``nai = "*@example.net"``, and hand them addresses from ``pool`` (a
``[[pool]]`` name, docs/pools.md); ``home_addresses`` is then optional. SAs with an NAI may share an
SPI (the NAI chooses among them); an exact NAI is tried before patterns.
"""

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
    nai: str | None = None
    pool: str | None = None


def parse_security_association(t: Table) -> SecurityAssociationConfig:
    spi = t.integer("spi", None, 256, 0xFFFFFFFF, required=True)
    algorithm = t.choice("algorithm", ("hmac-md5", "prefix-suffix-md5"), "hmac-md5")
    key = t.hex_key("key")
    nai = t.string("nai")
    if nai is not None and (len(nai.encode()) > 255 or not nai.isascii() or " " in nai):
        raise t.error("nai", f"{nai!r} is not an NAI (ASCII, no spaces, at most 255 bytes)")
    pool = t.string("pool")
    if pool is not None and nai is None:
        raise t.error("pool", "needs nai (the mobile nodes the pool's addresses go to)")
    prefixes: list[IPv4Network] = []
    for text in t.string_list("home_addresses", required=pool is None):
        try:
            prefixes.append(IPv4Network(text))
        except ValueError as exc:
            raise t.error("home_addresses", f"{text!r} is not an IPv4 prefix ({exc})") from None
    if not prefixes and pool is None:
        raise t.error("home_addresses", "must list at least one prefix")
    t.finish()
    assert spi is not None and algorithm is not None
    return SecurityAssociationConfig(spi, algorithm, key, tuple(prefixes), nai, pool)


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
    for i, raw in enumerate(raw_sas):
        t = Table(name, loc, "security_association", i, raw)
        sa = parse_security_association(t)
        # SAs naming different NAIs may share an SPI (the NAI chooses); no other sharing. NAIs
        # compare case-insensitively: two differing in case only would leave one unreachable
        nai = sa.nai.lower() if sa.nai is not None else None
        same = [j for j, o in enumerate(sas) if o.spi == sa.spi]
        clash = [j for j in same if nai is None or (sas[j].nai or "").lower() in ("", nai)]
        if clash:
            raise t.error("spi", f"duplicate SPI {sa.spi} (also security_association[{clash[0]}])")
        sas.append(sa)
    return tuple(sas)
