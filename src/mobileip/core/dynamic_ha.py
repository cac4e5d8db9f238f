"""RFC 4433 dynamic Home Agent assignment: accept a mobile node asking for "any HA", or redirect it.

Sans-IO: :class:`DynamicAssignment` decides from numbers the core hands it (is the request a
deregistration, does the mobile node already have a binding here, which HA did it request, how
many bindings the table holds); it keeps only a round-robin position and counters.

A request asks for dynamic assignment when its Home Agent field is an ALL-ZERO-ONE-ADDR (0.0.0.0
or 255.255.255.255). The rules, first match wins:

1. a deregistration is accepted here (it frees capacity, never takes any);
2. a mobile node that already has a live binding here stays here (no ping-pong of a bound MN);
3. a Requested HA extension naming one of our addresses is accepted here: the mobile node chose
   us, or is following a peer's redirect, and a redirected request is never redirected again (so
   no loop is possible; a full table then denies 130 as usual);
4. load = bindings / max_bindings; below ``redirect_above`` the request is accepted here;
5. loaded: redirect (reply code 143 with a Redirected HA extension) to the requested HA if it is
   one of our peers, else to the next peer of the configured list in turn; with no peer left the
   request is accepted here (and the usual resource limit applies).

"Accepted here" means the core goes on with the Home Agent field replaced by
:attr:`DynamicHaSettings.assigned` (the group's virtual address, else the HA's own address): the
reply carries it, and the mobile node uses it from then on.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from ipaddress import IPv4Address

from mobileip.core.security import SecurityAssociation, append_auth
from mobileip.wire import dynamic_ha as dha
from mobileip.wire import registration as wire
from mobileip.wire.codes import ReplyCode
from mobileip.wire.dynamic_ha import is_all_zero_one


@dataclass(frozen=True, slots=True)
class DynamicHaSettings:
    assigned: IPv4Address  # the address handed out in the reply's Home Agent field
    max_bindings: int
    redirect_above: float = 1.0  # load (bindings / max_bindings) from which new MNs go elsewhere
    peers: tuple[IPv4Address, ...] = ()  # where to redirect, in turn (the group's member list)

    def __post_init__(self) -> None:
        if self.max_bindings < 1:
            raise ValueError("max_bindings must be at least 1")
        if not 0.0 < self.redirect_above <= 1.0:
            raise ValueError("redirect_above must be in (0, 1]")
        if is_all_zero_one(self.assigned):
            raise ValueError(f"{self.assigned} cannot be assigned")


@dataclass(frozen=True, slots=True)
class Assign:
    """Serve the mobile node here, with ``home_agent`` in the reply's Home Agent field."""

    home_agent: IPv4Address
    reason: str


@dataclass(frozen=True, slots=True)
class Redirect:
    """Reply 143 with a Redirected HA extension naming ``home_agent``."""

    home_agent: IPv4Address
    reason: str


Decision = Assign | Redirect


class DynamicAssignment:
    """The rules above for one binding set (one group)."""

    def __init__(self, settings: DynamicHaSettings, ours: frozenset[IPv4Address]) -> None:
        self.settings = settings
        self.ours = ours | {settings.assigned}
        self.peers = tuple(p for p in settings.peers if p not in self.ours)
        self.counters: Counter[str] = Counter()
        self._turn = 0

    @staticmethod
    def wanted(home_agent_field: IPv4Address) -> bool:
        """Does a request with this Home Agent field ask for dynamic assignment?"""
        return is_all_zero_one(home_agent_field)

    def load(self, bindings: int) -> float:
        return bindings / self.settings.max_bindings

    def decide(
        self,
        *,
        deregistration: bool,
        bound_here: bool,
        requested: IPv4Address | None,
        bindings: int,
    ) -> Decision:
        decision = self._decide(deregistration, bound_here, requested, bindings)
        kind = "redirected" if isinstance(decision, Redirect) else "assigned"
        self.counters[kind] += 1
        self.counters[f"{kind}-{decision.reason}"] += 1
        return decision

    def _decide(
        self, deregistration: bool, bound_here: bool, requested: IPv4Address | None, bindings: int
    ) -> Decision:
        here = self.settings.assigned
        if deregistration:
            return Assign(here, "deregistration")
        if bound_here:
            return Assign(here, "already-bound")
        if requested is not None and requested in self.ours:
            return Assign(here, "requested")
        if self.load(bindings) < self.settings.redirect_above:
            return Assign(here, "spare-capacity")
        if requested is not None and requested in self.peers:
            return Redirect(requested, "loaded-requested-peer")
        if not self.peers:
            return Assign(here, "no-peer")
        peer = self.peers[self._turn % len(self.peers)]
        self._turn += 1
        return Redirect(peer, "loaded")

    def status(self, bindings: int) -> dict[str, object]:
        s = self.settings
        return {
            "assigned": str(s.assigned),
            "redirect_above": s.redirect_above,
            "max_bindings": s.max_bindings,
            "load": round(self.load(bindings), 4),
            "peers": [str(p) for p in self.peers],
            "counters": dict(sorted(self.counters.items())),
        }


# --- the mobile node's side (tests, loadgen, the demo) ------------------------------------------


def dynamic_request(
    home: IPv4Address,
    care_of: IPv4Address,
    sa: SecurityAssociation,
    lifetime: int,
    identification: int,
    requested: IPv4Address | None = None,
    any_ha: IPv4Address = dha.ALL_ONE_ADDR,
    flags: int = 0,
) -> bytes:
    """A Registration Request asking for any HA (``any_ha`` in the Home Agent field), with an
    authenticated Requested HA extension when ``requested`` is given (e.g. after a redirect)."""
    exts: tuple[wire.Extension, ...] = ()
    if requested is not None:
        exts = (dha.to_extension(dha.DynamicHaExtension(dha.SUBTYPE_REQUESTED_HA, requested)),)
    req = wire.RegistrationRequest(
        wire.Flags(flags), lifetime, home, any_ha, care_of, identification, exts
    )
    return append_auth(wire.encode(req), wire.EXT_MN_HA_AUTH, sa)


def redirected_to(reply: wire.RegistrationReply) -> IPv4Address | None:
    """The HA a 143 reply redirects to, from its authenticated Redirected HA extension (the
    caller has verified the authenticator, e.g. with ``io.client.check_reply``)."""
    if reply.code != ReplyCode.REDIRECTED_HA:
        return None
    auth = wire.find_auth(reply, wire.EXT_MN_HA_AUTH)
    if auth is None:
        return None
    ext = dha.find(reply, dha.SUBTYPE_REDIRECTED_HA, before=auth[0])
    return ext.home_agent if ext is not None else None
