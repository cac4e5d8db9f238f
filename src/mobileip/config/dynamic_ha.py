"""``[dynamic_ha]``: RFC 4433 dynamic HA assignment, redirecting new MNs when loaded (optional).

In a ``[[group]]`` file each group has its own ``[group.dynamic_ha]`` instead (groups.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address

from mobileip.config.errors import Table


@dataclass(frozen=True, slots=True)
class DynamicHaConfig:
    """RFC 4433 dynamic HA assignment (docs/load-sharing.md)."""

    redirect_above: float = 1.0  # load (bindings / max_bindings) from which new MNs are redirected
    peers: tuple[IPv4Address, ...] = ()  # Home Agents to redirect to, in turn


def parse_dynamic_ha(t: Table) -> DynamicHaConfig:
    peers: list[IPv4Address] = []
    for text in t.string_list("peers"):
        try:
            addr = IPv4Address(text)
        except ValueError:
            raise t.error("peers", f"{text!r} is not an IPv4 address") from None
        if int(addr) in (0, 0xFFFFFFFF):
            raise t.error("peers", f"{text} is not a Home Agent address")
        peers.append(addr)
    cfg = DynamicHaConfig(
        redirect_above=t.number("redirect_above", 1.0, 0.001, 1.0), peers=tuple(peers)
    )
    t.finish()
    return cfg
