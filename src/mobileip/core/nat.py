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
* R (registration through a foreign agent) with a source that is not the care-of address: denied
  142; the mapping would be the foreign agent's, and our foreign agent does not relay tunnel data.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from ipaddress import IPv4Address

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
    port: int
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
        if tunnel.via_fa and source_ip != int(req.care_of_address):
            return self._denied("via-foreign-agent")
        if behind_nat or (tunnel.force and self.settings.accept_forced):
            self.stats.decisions["forced" if not behind_nat else "tunnel"] += 1
            return UdpTunnel(source_ip, source[1], self._accept)
        return self._declined("no-nat")

    def _declined(self, reason: str) -> Declined:
        self.stats.decisions[f"declined-{reason}"] += 1
        return Declined(reason, self._decline)

    def _denied(self, reason: str) -> NatDenied:
        self.stats.decisions[f"denied-{reason}"] += 1
        return NatDenied(ReplyCode.UDP_ENCAPSULATION_UNAVAILABLE, reason, self._decline)
