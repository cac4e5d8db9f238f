"""What every tunnel backend shares: the desired state, the backend interface, small helpers.

What to tunnel is decided sans-IO by :func:`desired_tunnels` (the binding table in, one
:class:`TunnelSpec` per away mobile node out); a backend (:mod:`.userspace`, :mod:`.kernel`, or
:class:`NoBackend`) only makes it so. :func:`mobileip.dataplane.tunnels.make_backend` picks one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address

from mobileip.core.bindings import BindingTable
from mobileip.dataplane.encap import (
    REG_FLAG_T,
    Encapsulation,
)

OUTER_OVERHEAD = 24  # IPv4 + GRE, the largest of our three (IP-in-IP 20, minimal 8 or 12)

Log = Callable[..., None]


class BackendError(RuntimeError):
    """The backend cannot run here (no TUN device, no permission, no tunnel modules)."""


@dataclass(frozen=True, slots=True)
class TunnelSpec:
    """Where the packets for one away mobile node go."""

    home: IPv4Address
    exits: tuple[tuple[IPv4Address, Encapsulation], ...]  # (care-of address, encapsulation)
    reverse: tuple[IPv4Address, ...]  # care-of addresses allowed to reverse-tunnel (T flag)


def desired_tunnels(table: BindingTable) -> dict[IPv4Address, TunnelSpec]:
    """One spec per mobile node with live bindings (several exits with simultaneous bindings;
    RFC 5944 4.2.3: the HA tunnels a copy to each care-of address)."""
    out: dict[IPv4Address, TunnelSpec] = {}
    for rec in table.records():
        if not rec.bindings:
            continue
        home = IPv4Address(rec.home_address)
        exits: list[tuple[IPv4Address, Encapsulation]] = []
        reverse: list[IPv4Address] = []
        for b in rec.bindings:
            coa = IPv4Address(b.care_of_address)
            if coa == home:
                continue
            exits.append((coa, Encapsulation.for_flags(b.flags)))
            if b.flags & REG_FLAG_T:
                reverse.append(coa)
        if exits:
            out[home] = TunnelSpec(home, tuple(exits), tuple(reverse))
    return out


class TunnelBackend:
    """The interface: start once, install/remove specs, stop (which removes everything)."""

    name = "none"

    def __init__(self, log: Log) -> None:
        self.log = log
        self.specs: dict[IPv4Address, TunnelSpec] = {}
        self.counters: Counter[str] = Counter()

    async def start(self) -> None:
        pass

    async def install(self, spec: TunnelSpec) -> None:
        self.specs[spec.home] = spec

    async def remove(self, home: IPv4Address) -> None:
        self.specs.pop(home, None)

    async def stop(self) -> None:
        for home in list(self.specs):
            await self.remove(home)

    def status(self) -> dict[str, object]:
        return {"backend": self.name, "tunnels": len(self.specs), "counters": dict(self.counters)}


class NoBackend(TunnelBackend):
    name = "none"
