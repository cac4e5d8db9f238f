"""``[[pool]]``: dynamic home address pools (RFC 5944 3.6, RFC 2794; docs/pools.md), optional.

Each pool is a prefix (its host addresses) or an explicit range, less the addresses listed in
``exclude``; the Home Agent's own address and the group's virtual address are always left out::

    [[pool]]
    name = "subscribers"
    network = "10.1.128.0/20"          # or: first = "10.1.128.10"  last = "10.1.143.250"
    exclude = ["10.1.128.1"]           # e.g. the home link's router

A ``[[security_association]]`` hands out addresses from the pool its ``pool`` key names, to the
mobile nodes its ``nai`` matches. With ``[[group]]``, each group has its own ``[[group.pool]]``
tables (config/groups.py): no two pools of any groups may share an address.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from mobileip.config.errors import ConfigError, Locator, Table

MAX_POOL_SIZE = 1 << 20  # a /12: far beyond any home link


@dataclass(frozen=True, slots=True)
class PoolConfig:
    name: str
    first: IPv4Address
    last: IPv4Address
    exclude: tuple[IPv4Address, ...] = ()

    def overlaps(self, other: PoolConfig) -> bool:
        return self.first <= other.last and other.first <= self.last


def parse_pool(t: Table) -> PoolConfig:
    name = t.string("name", required=True)
    assert name is not None
    if t.has("network") and (t.has("first") or t.has("last")):
        raise t.error("network", "give network, or first and last, not both")
    if t.has("network"):
        text = t.string("network", required=True)
        assert text is not None
        try:
            network = IPv4Network(text)
        except ValueError as exc:
            raise t.error("network", f"{text!r} is not an IPv4 prefix ({exc})") from None
        first, last = network.network_address, network.broadcast_address
        if network.num_addresses > 2:  # its network and broadcast addresses are not hosts
            first, last = first + 1, last - 1
    elif t.has("first") or t.has("last"):
        first = t.ipv4("first", required=True)
        last = t.ipv4("last", required=True)
        if last < first:
            raise t.error("last", f"{last} is before first ({first})")
    else:
        raise t.error(None, "needs network (a prefix), or first and last")
    if int(last) - int(first) + 1 > MAX_POOL_SIZE:
        raise t.error("network" if t.has("network") else "last", "more than 2^20 addresses")
    if int(first) == 0:
        raise t.error("network" if t.has("network") else "first", "0.0.0.0 cannot be assigned")
    exclude: list[IPv4Address] = []
    for text in t.string_list("exclude"):
        try:
            exclude.append(IPv4Address(text))
        except ValueError:
            raise t.error("exclude", f"{text!r} is not an IPv4 address") from None
        if not first <= exclude[-1] <= last:  # a typo would silently exclude nothing
            raise t.error("exclude", f"{text} is not in the pool ({first} - {last})")
    if len(set(exclude)) >= int(last) - int(first) + 1:
        raise t.error("exclude", "leaves no address to hand out")
    t.finish()
    return PoolConfig(name, first, last, tuple(exclude))


def parse_pools(
    raw: Any,
    name: str,
    loc: Locator,
    section: str = "pool",
    first_index: int = 0,
    others: tuple[tuple[str, PoolConfig], ...] = (),
) -> tuple[PoolConfig, ...]:
    """The whole ``[[pool]]`` array: distinct names, no two pools sharing an address.

    ``section``/``first_index``: a group's ``[[group.pool]]`` tables, numbered in the file from
    ``first_index`` on (the locator counts them across the groups); ``others``: pools of the
    groups before, as (where, pool), none of which they may overlap."""
    if not isinstance(raw, list) or not all(isinstance(p, dict) for p in raw):
        line = loc.headers.get((section, first_index)) or loc.line(("", 0), "pool")
        raise ConfigError(f"{name}: line {line}: {section}: must be [[{section}]] tables")
    pools: list[PoolConfig] = []
    for i, data in enumerate(raw):
        t = Table(name, loc, section, first_index + i, data)
        pool = parse_pool(t)
        key = "network" if t.has("network") else "first"
        for j, other in enumerate(pools):
            if other.name == pool.name:
                raise t.error("name", f"{pool.name!r} is also {section}[{first_index + j}]")
            if other.overlaps(pool):
                raise t.error(key, f"overlaps {section}[{first_index + j}] ({other.name!r})")
        for where, other in others:
            if other.overlaps(pool):
                raise t.error(key, f"overlaps {where} ({other.name!r})")
        pools.append(pool)
    return tuple(pools)
