"""What every tunnel backend shares: the desired state, the backend interface, small helpers.

What to tunnel is decided sans-IO by :func:`spec_for` (one mobility record in, one
:class:`TunnelSpec` or None out) and :func:`desired_tunnels` (the whole table; start-up and
tests); a backend (:mod:`.userspace`, :mod:`.kernel`, or :class:`NoBackend`) only makes it so.
:func:`mobileip.dataplane.tunnels.make_backend` picks one.

The interface (docs/dataplane.md, "Hot standby"): the data-plane service owns one
:class:`~mobileip.net.rtnl.RtnlSocket`, the routing table ``T`` and the ``ip rule`` that makes
it live; a backend only says which rtnetlink messages put one spec into ``T`` or take it out,
and keeps its own per-binding state for its packet path:

* :meth:`TunnelBackend.route_key` - what the installed route depends on (the service re-installs
  a home's route only when its key changed: a re-registration to the same care-of address
  costs nothing);
* :meth:`TunnelBackend.add_messages` / :meth:`TunnelBackend.del_messages` - the messages (built
  with :mod:`mobileip.net.rtnl`'s ``route_add`` / ``route_del``, ``table=T``); the service batches
  them with everybody else's and applies them, a bounded chunk per event-loop turn;
* :meth:`TunnelBackend.track` / :meth:`TunnelBackend.untrack` - called once the route is in (or
  out): per-binding packet-path state (the userspace backend's spec and reverse-tunnel index);
* :meth:`TunnelBackend.key_of_dumped` - at start, what a route found in ``T`` (a restart after a
  crash) stands for; the default, :data:`STALE`, makes the service replace it.

A backend that returns None from :meth:`TunnelBackend.add_messages` is a *legacy* backend: the
service then calls :meth:`TunnelBackend.install` / :meth:`TunnelBackend.remove` one binding at a
time, and only while active (the old, cold-standby behaviour).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from ipaddress import IPv4Address

from mobileip.core.bindings import BindingTable, MobilityRecord
from mobileip.dataplane.encap import (
    REG_FLAG_T,
    Encapsulation,
)
from mobileip.net.rtnl import Route

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
    # RFC 3519: (NAT address, port) of each binding tunnelled in UDP (dataplane/udp_tunnel.py);
    # such a binding has no entry in ``exits`` (its care-of address is behind the NAT)
    udp: tuple[tuple[IPv4Address, int], ...] = ()


def spec_for(rec: MobilityRecord | None) -> TunnelSpec | None:
    """The spec of one record: None for no record, a tombstone, or bindings only at home
    (several exits with simultaneous bindings; RFC 5944 4.2.3: the HA tunnels a copy to each
    care-of address)."""
    if rec is None or not rec.bindings:
        return None
    home = IPv4Address(rec.home_address)
    exits: list[tuple[IPv4Address, Encapsulation]] = []
    reverse: list[IPv4Address] = []
    udp: list[tuple[IPv4Address, int]] = []
    for b in rec.bindings:
        if b.care_of_address == rec.home_address:
            continue
        if b.udp_port or b.udp_address:  # port 0: half bound (RFC 3519 R, core/nat.py)
            udp.append((IPv4Address(b.udp_address), b.udp_port))
            continue
        coa = IPv4Address(b.care_of_address)
        exits.append((coa, Encapsulation.for_flags(b.flags)))
        if b.flags & REG_FLAG_T:
            reverse.append(coa)
    if not exits and not udp:
        return None
    return TunnelSpec(home, tuple(exits), tuple(reverse), tuple(udp))


def desired_tunnels(table: BindingTable) -> dict[IPv4Address, TunnelSpec]:
    """One spec per mobile node with live bindings away from home (the whole table)."""
    out: dict[IPv4Address, TunnelSpec] = {}
    for rec in table.records():
        spec = spec_for(rec)
        if spec is not None:
            out[spec.home] = spec
    return out


STALE: Hashable = "stale"  # key of a route found in the table at start whose meaning is unknown


class TunnelBackend:
    """The interface (module docstring): start once (devices, sockets), say which rtnetlink
    messages put a spec into table ``T`` or take it out, keep the packet path's per-binding
    state (:meth:`track` / :meth:`untrack`), stop (devices; the service flushes ``T``)."""

    name = "none"

    def __init__(self, log: Log) -> None:
        self.log = log
        self.specs: dict[IPv4Address, TunnelSpec] = {}
        self.counters: Counter[str] = Counter()

    async def start(self) -> None:
        pass

    # --- the batched interface (hot standby) -----------------------------------------------

    def route_key(self, spec: TunnelSpec) -> Hashable:
        """What the route of ``spec`` depends on; equal keys: nothing to send."""
        return True

    def add_messages(self, spec: TunnelSpec, table: int) -> list[bytes] | None:
        """rtnetlink messages that make ``spec.home`` route as ``spec`` says in ``table``
        (replace semantics: idempotent); None (this default): a legacy backend, driven through
        :meth:`install` / :meth:`remove` while active."""
        return None

    def del_messages(self, home: IPv4Address, table: int) -> list[bytes]:
        """rtnetlink messages that take ``home``'s route out of ``table`` (absent is fine)."""
        return []

    def track(self, spec: TunnelSpec) -> None:
        """``spec`` is in force: keep what the packet path needs (it replaces any older one)."""
        self.specs[spec.home] = spec

    def untrack(self, home: IPv4Address) -> None:
        """``home`` is no longer tunnelled."""
        self.specs.pop(home, None)

    def key_of_dumped(self, route: Route) -> Hashable:
        """What a route of ours found in ``T`` at start stands for (:data:`STALE`: replace)."""
        return STALE

    # --- the legacy interface (one binding at a time, active only) -------------------------

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

    def add_messages(self, spec: TunnelSpec, table: int) -> list[bytes] | None:
        return []
