"""``[[group]]``: several binding sets in one daemon (docs/load-sharing.md).

Each group is a whole single-group :class:`Config` sharing the file's ``[homeagent]`` socket,
``[control]`` and security associations, with its own ``[group.homeagent]``,
``[group.redundancy]``, ``[group.vrrp]``, ``[group.persistence]`` and ``[group.dynamic_ha]``,
and its own dynamic home address pools, ``[[group.pool]]`` (docs/pools.md): the pools of all the
groups are disjoint, so two groups never hand out the same address.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from mobileip.config.dynamic_ha import parse_dynamic_ha
from mobileip.config.errors import ConfigError, Locator, Table
from mobileip.config.homeagent import parse_homeagent
from mobileip.config.model import Config, GroupConfig
from mobileip.config.persistence import parse_persistence
from mobileip.config.pools import PoolConfig, parse_pools
from mobileip.config.redundancy import parse_redundancy
from mobileip.config.vrrp import parse_vrrp

_GROUP_SECTIONS = ("homeagent", "redundancy", "vrrp", "dynamic_ha", "persistence")
NOT_WITH_GROUPS = ("redundancy", "vrrp", "dynamic_ha", "persistence", "dataplane", "revocation")


def parse_groups(
    raw: object, top: Config, ha_raw: Mapping[str, Any], loc: Locator
) -> tuple[GroupConfig, ...]:
    """``[[group]]`` tables: each a whole Config on the shared socket, control API and SAs."""
    name = top.path
    if not isinstance(raw, list) or not all(isinstance(g, dict) for g in raw):
        line = loc.line(("", 0), "group")
        raise ConfigError(f"{name}: line {line}: group: must be [[group]] tables")
    groups: list[GroupConfig] = []
    seen_pools: list[tuple[str, PoolConfig]] = []  # (where, pool) of the groups before
    for i, data in enumerate(raw):
        t = Table(name, loc, "group", i, data)
        gname = t.string("name", required=True)
        assert gname is not None
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,32}", gname):
            raise t.error("name", f"{gname!r}: use 1-32 letters, digits, '-' or '_'")
        sub: dict[str, Table] = {}
        pools: tuple[PoolConfig, ...] = ()
        for key, value in data.items():
            if key == "name":
                continue
            if key == "pool":  # [[group.pool]], numbered across the groups by the locator
                first = len(seen_pools)
                pools = parse_pools(value, name, loc, "group.pool", first, tuple(seen_pools))
                seen_pools += [(f"group.pool[{first + k}]", p) for k, p in enumerate(pools)]
                continue
            if key not in _GROUP_SECTIONS:
                raise t.error(
                    key, "unknown key (a group has " + ", ".join((*_GROUP_SECTIONS, "pool")) + ")"
                )
            if not isinstance(value, dict):
                raise t.error(key, "must be a table")
            sub[key] = Table(name, loc, f"group.{key}", i, value)
        own_ha = sub.get("homeagent")
        for key in ("listen", "port"):
            if own_ha is not None and own_ha.has(key):
                raise own_ha.error(key, "groups share the [homeagent] socket: set it there")
        merged = {**ha_raw, **(own_ha.data if own_ha is not None else {})}
        homeagent = parse_homeagent(Table(name, loc, "group.homeagent", i, merged))
        redundancy = parse_redundancy(sub["redundancy"], homeagent) if "redundancy" in sub else None
        if redundancy is not None and (redundancy.listen, redundancy.port) == (
            homeagent.listen,
            homeagent.port,
        ):
            raise sub["redundancy"].error(
                "port", "each group syncs on its own port (not the registration socket's)"
            )
        cfg = Config(
            name,
            homeagent,
            top.security_associations,
            top.control,
            redundancy=redundancy,
            vrrp=parse_vrrp(sub["vrrp"]) if "vrrp" in sub else None,
            persistence=parse_persistence(sub["persistence"]) if "persistence" in sub else None,
            dynamic_ha=parse_dynamic_ha(sub["dynamic_ha"]) if "dynamic_ha" in sub else None,
            pools=pools,
        )
        group = GroupConfig(gname, cfg)
        for j, other in enumerate(groups):
            clash = _group_clash(group, other)
            if clash:
                raise t.error(None, f"{clash} (also group[{j}] {other.name!r})")
        groups.append(group)
    if not groups:
        raise ConfigError(f"{name}: line {loc.line(('', 0), 'group')}: group: list no groups")
    return tuple(groups)


def _group_clash(a: GroupConfig, b: GroupConfig) -> str | None:
    if a.name == b.name:
        return f"name {a.name!r} is taken"
    if a.address == b.address:
        return f"address {a.address} is taken"
    ra, rb = a.config.redundancy, b.config.redundancy
    if ra is not None and rb is not None and (ra.listen, ra.port) == (rb.listen, rb.port):
        return f"sync port {ra.port} is taken"
    va, vb = a.config.vrrp, b.config.vrrp
    native = va is not None and vb is not None and va.driver == vb.driver == "native"
    if native and va and vb and (va.interface, va.vrid) == (vb.interface, vb.vrid):
        return f"VRID {va.vrid} on {va.interface} is taken"
    pa, pb = a.config.persistence, b.config.persistence
    if pa is not None and pb is not None and pa.path == pb.path:
        return f"persistence path {pa.path} is taken"
    return None
