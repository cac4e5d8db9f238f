"""RFC 3519 NAT traversal: the home agent's decision for one registration, sans-IO.

:meth:`NatTraversal.decide` looks at an authenticated, non-deregistration request, the address and
port it came from, and says one of three things:

* ``None``: no UDP tunnel and no UDP Tunnel Reply (the request carried no UDP Tunnel Request);
* :class:`UdpTunnel`: accept; the binding records the mapping (``address``, ``port``), which is
  where the home agent sends tunnel data, and the reply carries ``reply`` (code 0, keepalive);
* :class:`NatDenied`: deny with ``code`` (142, UDP encapsulation unavailable) and ``reply``
  (code 64) in the Registration Reply;
* :class:`Declined`: register as usual (IP-in-IP to the care-of address), reply carrying ``reply``
  (code 64): the mobile node asked, but no NAT is in the way.

What the RFC leaves open, decided here (docs/nat-traversal.md):

* NAT is detected when the request's source address differs from its care-of address *and* the D
  flag (co-located care-of address) is set; without D the source is a foreign agent using another
  address for signalling, which is allowed (ASR 5000 does the same).
* A request without the UDP Tunnel Request extension is handled as plain RFC 5944 even when a NAT is
  detected: the mobile node cannot decapsulate UDP tunnel data, and a reply extension of type 44
  (critical) must not be sent to a node that did not ask for it. It is counted.
* F (force) without a NAT: accepted when ``accept_forced`` (the default; the mobile node knows of
  a firewall we cannot see), else declined (64) and registered as usual.
* Encapsulation other than IP-in-IP (4): denied 142 (Cisco IOS and ASR 5000 do only 4 too).
* NAT traversal switched off: denied 142 when a NAT is detected (the binding could never carry
  traffic), declined (64) otherwise.
* R (RFC 3519 3.1.2, 4.6, 4.11: a co-located mobile node that registers through a foreign agent
  whose advertisement set R and U): accepted (the RFC's SHOULD) whether or not a NAT is seen, but
  the request's source is the foreign agent's (NAT-ed) address, so the binding is *half bound*:
  ``address`` is the request's source address and ``port`` is 0 (no tunnel data is sent) until
  the mobile node's first keepalive arrives from that same address; its port then becomes the
  mapping (``HomeAgentCore.nat_rebind``, replicated as a new version). A renewal of the same
  care-of address from the same address keeps the port the keepalive gave (:func:`held_port`).
  R without D is denied 134 (poorly formed: R says the care-of address is co-located, 4.6.1).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Protocol

from mobileip.wire import nat as wire_nat
from mobileip.wire import registration as wire
from mobileip.wire.codes import ReplyCode

_FLAG_D = int(wire.Flags.D)


@dataclass(frozen=True, slots=True)
class NatSettings:
    enabled: bool = True
    keepalive: int = 110  # seconds, told to the mobile node in the UDP Tunnel Reply
    accept_forced: bool = True  # F without a NAT: tunnel in UDP anyway


@dataclass(frozen=True, slots=True)
class UdpTunnel:
    address: int
    port: int  # 0: half bound (R), until the mobile node's first keepalive names its port
    reply: wire.Extension


@dataclass(frozen=True, slots=True)
class Declined:
    reason: str
    reply: wire.Extension


@dataclass(frozen=True, slots=True)
class NatDenied:
    code: int
    reason: str
    reply: wire.Extension


Decision = UdpTunnel | Declined | NatDenied | None


@dataclass
class NatStats:
    decisions: Counter[str] = field(default_factory=Counter)


def nat_detected(req: wire.RegistrationRequest, source_ip: int) -> bool:
    """RFC 3519 detection: the request's source is not its care-of address, and D is set."""
    return bool(int(req.flags) & _FLAG_D) and source_ip != int(req.care_of_address)


class NatTraversal:
    """The home agent's RFC 3519 rules (stateless apart from counters)."""

    def __init__(self, settings: NatSettings) -> None:
        self.settings = settings
        self.stats = NatStats()
        keepalive = settings.keepalive
        self._accept = wire_nat.UdpTunnelReply(wire_nat.CODE_WILL_TUNNEL, keepalive).extension()
        self._decline = wire_nat.UdpTunnelReply(wire_nat.CODE_DECLINED, 0).extension()

    def decide(self, req: wire.RegistrationRequest, source: tuple[str, int] | None) -> Decision:
        """The decision for an authenticated registration (lifetime > 0). Raises DecodeError
        (code 134) when the UDP Tunnel Request is malformed."""
        tunnel = wire_nat.find_request(req.extensions)
        if tunnel is None:
            if source is not None and nat_detected(req, int(IPv4Address(source[0]))):
                self.stats.decisions["nat-without-request"] += 1
            return None
        if source is None:  # called without a transport source: nothing to tunnel to
            return self._declined("no-source")
        source_ip = int(IPv4Address(source[0]))
        behind_nat = nat_detected(req, source_ip)
        if not self.settings.enabled:
            if behind_nat:
                return self._denied("nat-traversal-disabled")
            return self._declined("nat-traversal-disabled")
        if tunnel.encapsulation != wire_nat.ENCAP_IPIP:
            return self._denied(f"encapsulation-{tunnel.encapsulation}")
        if tunnel.via_fa:
            if not int(req.flags) & _FLAG_D:
                return self._denied("r-without-d", ReplyCode.POORLY_FORMED)
            # RFC 3519 4.6: the source is the FA's (NAT-ed) address and port, not the mobile
            # node's: half bound until its first keepalive from the same address
            self.stats.decisions["half-bound"] += 1
            return UdpTunnel(source_ip, 0, self._accept)
        if behind_nat or (tunnel.force and self.settings.accept_forced):
            self.stats.decisions["forced" if not behind_nat else "tunnel"] += 1
            return UdpTunnel(source_ip, source[1], self._accept)
        return self._declined("no-nat")

    def _declined(self, reason: str) -> Declined:
        self.stats.decisions[f"declined-{reason}"] += 1
        return Declined(reason, self._decline)

    def _denied(
        self, reason: str, code: int = ReplyCode.UDP_ENCAPSULATION_UNAVAILABLE
    ) -> NatDenied:
        self.stats.decisions[f"denied-{reason}"] += 1
        return NatDenied(code, reason, self._decline)


class _Mapped(Protocol):
    @property
    def care_of_address(self) -> int: ...

    @property
    def udp_address(self) -> int: ...

    @property
    def udp_port(self) -> int: ...


def held_port(decision: UdpTunnel, care_of_address: int, current: Iterable[_Mapped]) -> int:
    """The port a registration's binding gets: the decision's, or for a half-bound (R) decision
    the port a current binding of the same care-of address already learnt from a keepalive
    through the same NAT address (a renewal must not stop the downlink until the next
    keepalive); 0 when there is none."""
    if decision.port:
        return decision.port
    return next(
        (
            b.udp_port
            for b in current
            if b.care_of_address == care_of_address and b.udp_address == decision.address
        ),
        0,
    )
