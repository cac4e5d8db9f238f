"""Foreign agent relay rules (RFC 5944 3.7) and the visitor list, sans-IO.

:class:`ForeignAgentCore` takes datagrams and ``now`` and returns :class:`Send` instructions and
events; it never touches a socket or a clock.

From a mobile node (a Registration Request arriving on the foreign link, 3.7.1-3.7.2):

* undecodable -> reply 70 (poorly formed request) when the bytes hold a request header, else drop;
* care-of address not one of ours -> 77, unless D is set and the request comes from that
  address: a co-located mobile node that registers through us because we advertise R (RFC 3519
  4.11), relayed unchanged (no UDP Tunnel Request of ours, 3519 4.5; no Revocation Support) and
  its reply relayed without a visitor entry (its tunnels end at the node); lifetime over
  ``max_lifetime`` -> 69 (the reply's lifetime says what we would accept); M or G asked but not
  offered -> 72; T asked but reverse tunnelling is off -> 74; more than ``max_pending`` in
  flight -> 66;
* otherwise the request is relayed *unchanged* to the home agent's port 434 and remembered as
  pending (home address, identification, the MN's source address and port) for
  ``pending_timeout`` seconds; a pending request that times out is answered 78.

From a home agent (a Registration Reply, 3.7.3): a reply that matches no pending request (home
address and the low 32 bits of the identification) is dropped; otherwise it is relayed unchanged
to the MN's address and port, and an accepted one (code 0 or 1) updates the visitor list (lifetime
0 removes the visitor). Denials the FA generates itself carry no MN-HA authenticator (the FA has
no key for it), as the RFC says.

Dynamic home addresses (RFC 2794, docs/pools.md): a request with home address 0.0.0.0 must carry
a Mobile-Node-NAI extension (else 97, missing NAI) and name a home agent (0.0.0.0 or
255.255.255.255: 98, missing home agent; we do not pick home agents). It is pending under the NAI
(lower case) and the identification, since the home address is not known yet; the reply is
matched by the NAI it echoes (or, failing that, by the address it carries). An accepted reply
enters the visitor under the home address it assigns (an accepted reply without one: 99,
missing home address, in place of the home agent's). A mobile node without an address sends
from 0.0.0.0 (to the limited broadcast address): every reply to such a request, ours or the home
agent's, goes to 255.255.255.255 at the mobile node's port on the foreign link (RFC 2794 leaves
the delivery to the link layer; a link broadcast reaches a node that owns no address, and only
the node whose identification and MN-HA key match accepts it). Later requests come from the
assigned address as usual.

Registration revocation (RFC 3543, docs/revocation.md), when ``fa_ha`` (an FA-HA security
association) is set: a relayed request gets a Revocation Support extension (I bit when
``inform_mobile_node``) and an FA-HA authentication extension appended; a reply that carries the
home agent's Revocation Support extension under a valid FA-HA authenticator marks the visitor as
revocable. :meth:`ForeignAgentCore.handle_revocation` answers an authentic Registration
Revocation from the home agent with a Revocation Acknowledgement, removes the visitor and, when
the I bit asks for it, tells the mobile node with an unsolicited Registration Reply (code 65,
lifetime 0, the identification of its last accepted request).

RFC 3519 for a foreign agent behind a NAT (``nat_traversal``; docs/nat-traversal.md): a relayed
registration gets a UDP Tunnel Request (F set: the home agent cannot see a NAT in front of a
foreign agent's care-of address) after the mobile node's extensions; a reply that grants it (UDP
Tunnel Reply code 0) marks the visitor ``udp``: the home agent tunnels to us in UDP (tunnel data
on our registration socket) and we reverse-tunnel to it the same way (the daemon).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from ipaddress import IPv4Address

from mobileip.core.revocation import verify_fa_ha
from mobileip.core.security import SecurityAssociation, append_auth
from mobileip.wire import nat as wire_nat
from mobileip.wire import registration as wire
from mobileip.wire import revocation as rw
from mobileip.wire.errors import DecodeError

Address = tuple[str, int]

FA_UNSPECIFIED = 64
FA_ADMINISTRATIVELY_PROHIBITED = 65
FA_INSUFFICIENT_RESOURCES = 66
FA_LIFETIME_TOO_LONG = 69
FA_POORLY_FORMED_REQUEST = 70
FA_ENCAPSULATION_UNAVAILABLE = 72
FA_REVERSE_TUNNEL_UNAVAILABLE = 74  # RFC 3024
FA_INVALID_COA = 77
FA_REGISTRATION_TIMEOUT = 78
# RFC 2794 (Wireshark's mip.code: "Reg Deny (FA)(NAI) - ...")
FA_MISSING_NAI = 97
FA_MISSING_HOME_AGENT = 98
FA_MISSING_HOME_ADDRESS = 99
ANY = IPv4Address("0.0.0.0")
LIMITED_BROADCAST = IPv4Address("255.255.255.255")
LOW32 = 0xFFFFFFFF
# RFC 3519 3.1.1: F, because the home agent cannot detect a NAT in front of a foreign agent
_UDP_TUNNEL_REQUEST = wire_nat.UdpTunnelRequest(flags=wire_nat.REQUEST_F).extension()
RECENT_ACKS = 4096  # (home, revocation id) pairs whose ack we resend on a retransmission


@dataclass(frozen=True, slots=True)
class ForeignAgentSettings:
    care_of_addresses: frozenset[IPv4Address]
    max_lifetime: int = 1800
    minimal_encapsulation: bool = True
    gre: bool = True
    reverse_tunnel: bool = True
    pending_timeout: float = 7.0
    max_pending: int = 1000
    max_visitors: int = 100_000
    ha_port: int = wire.UDP_PORT
    fa_ha: SecurityAssociation | None = None  # set: registration revocation (RFC 3543) is on
    inform_mobile_node: bool = True  # RFC 3543 I bit: we can tell the MN of a revocation
    nat_traversal: bool = False  # RFC 3519: we are behind a NAT: ask the HA for a UDP tunnel


@dataclass(frozen=True, slots=True)
class Visitor:
    home_address: IPv4Address
    home_agent: IPv4Address
    care_of_address: IPv4Address
    mn_address: Address  # where the MN's requests came from (its home address, its port)
    flags: int
    lifetime: int
    expires: float
    identification: int = 0  # of the accepted request (a revocation's reply to the MN uses it)
    # RFC 3543: the home agent's Revocation Support timestamp (None: not negotiated) and the
    # address and port its replies came from
    revocation_since: int | None = None
    ha_source: Address | None = None
    # RFC 3519: the home agent granted a UDP tunnel to us, and the keepalive interval it asked
    udp: bool = False
    udp_keepalive: int = 0

    @property
    def reverse_tunnel(self) -> bool:
        return bool(self.flags & wire.Flags.T)


@dataclass(frozen=True, slots=True)
class Pending:
    request: wire.RegistrationRequest
    mn_address: Address
    deadline: float

    @property
    def dynamic(self) -> bool:
        """A request for a home address (RFC 2794: 0.0.0.0 and an NAI)."""
        return self.request.home_address == ANY


PendingKey = tuple[IPv4Address | bytes, int]  # (home address or lower-case NAI, low 32 bits of id)


@dataclass(frozen=True, slots=True)
class Send:
    data: bytes
    dest: Address


@dataclass(frozen=True, slots=True)
class VisitorAdded:
    visitor: Visitor
    renewed: bool


@dataclass(frozen=True, slots=True)
class VisitorRemoved:
    home_address: IPv4Address
    reason: str  # deregistered | expired | revoked


@dataclass(frozen=True, slots=True)
class Denied:
    home_address: IPv4Address | None
    code: int
    reason: str


Event = VisitorAdded | VisitorRemoved | Denied


@dataclass
class Output:
    sends: list[Send] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)


class ForeignAgentCore:
    def __init__(self, settings: ForeignAgentSettings) -> None:
        self.settings = settings
        self.visitors: dict[IPv4Address, Visitor] = {}
        self.pending: dict[PendingKey, Pending] = {}
        self.counters: Counter[str] = Counter()
        self.recent_acks: dict[tuple[IPv4Address, int], bytes] = {}

    # --- from the mobile node ------------------------------------------------------------

    def handle_request(self, data: bytes, src: Address, now: float, wall: float = 0.0) -> Output:
        out = Output()
        try:
            req = wire.decode_request(data)
        except DecodeError as exc:
            self.counters[f"request-dropped-{exc.reason}"] += 1
            if exc.code is not None and len(data) >= wire.REQUEST_HEADER_LEN:
                raw = wire.RegistrationRequest(
                    wire.Flags(0),
                    0,
                    IPv4Address(data[4:8]),
                    IPv4Address(data[8:12]),
                    IPv4Address(data[12:16]),
                    int.from_bytes(data[16:24], "big"),
                )
                self._deny(out, raw, src, FA_POORLY_FORMED_REQUEST, exc.reason)
            return out
        s = self.settings
        colocated = _colocated(req, src, s.care_of_addresses)
        if req.care_of_address not in s.care_of_addresses and not colocated:
            return self._deny(out, req, src, FA_INVALID_COA, "care-of address not ours")
        if req.lifetime > s.max_lifetime and not req.is_deregistration:
            return self._deny(out, req, src, FA_LIFETIME_TOO_LONG, "lifetime", s.max_lifetime)
        # a co-located node's tunnels end at the node itself: our encapsulations do not matter
        if not colocated and (
            (req.flags & wire.Flags.M and not s.minimal_encapsulation)
            or (req.flags & wire.Flags.G and not s.gre)
        ):
            return self._deny(out, req, src, FA_ENCAPSULATION_UNAVAILABLE, "encapsulation")
        if not colocated and req.flags & wire.Flags.T and not s.reverse_tunnel:
            return self._deny(out, req, src, FA_REVERSE_TUNNEL_UNAVAILABLE, "reverse tunnel")
        key: PendingKey = (req.home_address, req.identification & LOW32)
        if req.home_address == ANY:
            nai = _nai(req)
            if nai is None:
                return self._deny(out, req, src, FA_MISSING_NAI, "home address 0.0.0.0, no NAI")
            if req.home_agent in (ANY, LIMITED_BROADCAST):
                return self._deny(out, req, src, FA_MISSING_HOME_AGENT, "no home agent")
            key = (nai.lower(), req.identification & LOW32)
            self.counters["requests-dynamic"] += 1
        if key not in self.pending and len(self.pending) >= s.max_pending:
            return self._deny(out, req, src, FA_INSUFFICIENT_RESOURCES, "too many pending")
        if (
            req.home_address not in self.visitors
            and not req.is_deregistration
            and len(self.visitors) >= s.max_visitors
        ):
            return self._deny(out, req, src, FA_INSUFFICIENT_RESOURCES, "visitor list full")
        self.pending[key] = Pending(req, src, now + s.pending_timeout)
        self.counters["requests-relayed"] += 1
        if colocated:
            self.counters["requests-colocated"] += 1
        if (
            s.nat_traversal
            and not colocated  # RFC 3519 4.5: MUST NOT (the HA would tunnel to us, not the MN)
            and not req.is_deregistration
            and not any(
                getattr(e, "type", None) == wire_nat.EXT_UDP_TUNNEL_REQUEST for e in req.extensions
            )
        ):
            data += wire.encode_extension(_UDP_TUNNEL_REQUEST)
            self.counters["requests-udp-tunnel"] += 1
        if s.fa_ha is not None:
            if not colocated:  # no visitor of ours to revoke for a co-located node
                support = rw.make_support(inform=s.inform_mobile_node, timestamp=int(wall))
                data += wire.encode_extension(support.extension())
            data = append_auth(data, wire.EXT_FA_HA_AUTH, s.fa_ha)
        out.sends.append(Send(data, (str(req.home_agent), s.ha_port)))
        return out

    def _deny(
        self,
        out: Output,
        req: wire.RegistrationRequest,
        src: Address,
        code: int,
        reason: str,
        lifetime: int = 0,
    ) -> Output:
        nai = _nai(req) if req.home_address == ANY else None
        reply = wire.RegistrationReply(
            code,
            lifetime,
            req.home_address,
            req.home_agent,
            req.identification,
            (wire.NaiExtension(nai),) if nai is not None else (),  # RFC 2794: echo the NAI
        )
        self.counters[f"denied-{code}"] += 1
        out.sends.append(Send(wire.encode(reply), reply_destination(src)))
        out.events.append(Denied(req.home_address, code, reason))
        return out

    # --- from the home agent -------------------------------------------------------------

    def handle_reply(self, data: bytes, src: Address, now: float) -> Output:
        out = Output()
        try:
            reply = wire.decode_reply(data)
        except DecodeError as exc:
            self.counters[f"reply-dropped-{exc.reason}"] += 1
            return out
        ident = reply.identification & LOW32
        nai = _nai(reply)
        pending = self.pending.pop((nai.lower(), ident), None) if nai is not None else None
        if pending is None:
            pending = self.pending.pop((reply.home_address, ident), None)
        if pending is None:
            self.counters["reply-dropped-unexpected"] += 1
            return out
        req = pending.request
        home = reply.home_address if pending.dynamic else req.home_address
        accepted = reply.code in (0, 1)
        if pending.dynamic and accepted and home == ANY and reply.lifetime != 0:
            self.counters["reply-dropped-no-home-address"] += 1
            return self._deny(
                out, req, pending.mn_address, FA_MISSING_HOME_ADDRESS, "no address assigned"
            )
        out.sends.append(Send(data, reply_destination(pending.mn_address)))
        self.counters["replies-relayed"] += 1
        if req.flags & wire.Flags.D and req.care_of_address not in self.settings.care_of_addresses:
            self.counters["replies-colocated"] += 1
            return out  # relayed only: its tunnel ends at the mobile node, no visitor here
        if not accepted:
            return out
        if reply.lifetime == 0:
            if self.visitors.pop(home, None) is not None:
                out.events.append(VisitorRemoved(home, "deregistered"))
            return out
        mn_address = pending.mn_address
        if mn_address[0] == str(ANY):  # from now on the mobile node speaks from its address
            mn_address = (str(home), mn_address[1])
        lifetime = min(reply.lifetime, req.lifetime)
        expires = math.inf if lifetime == wire.INFINITE_LIFETIME else now + lifetime
        since = self._revocation_since(data, reply)
        udp = self._udp_granted(reply)
        visitor = Visitor(
            home,
            req.home_agent,
            req.care_of_address,
            mn_address,
            int(req.flags),
            lifetime,
            expires,
            req.identification,
            since,
            src if since is not None else None,
            udp is not None,
            udp or 0,
        )
        renewed = home in self.visitors
        self.visitors[home] = visitor
        out.events.append(VisitorAdded(visitor, renewed))
        return out

    def _udp_granted(self, reply: wire.RegistrationReply) -> int | None:
        """RFC 3519: the keepalive interval when the reply grants the UDP tunnel we asked for,
        else None (not asked, declined, no or a malformed UDP Tunnel Reply)."""
        if not self.settings.nat_traversal:
            return None
        granted = wire_nat.find_reply(reply.extensions)
        if granted is None or not granted.accepted:
            return None
        return granted.keepalive

    def _revocation_since(self, data: bytes, reply: wire.RegistrationReply) -> int | None:
        """The home agent's Revocation Support timestamp, if the reply negotiated revocation."""
        sa = self.settings.fa_ha
        if sa is None:
            return None
        support = rw.find_support(reply.extensions)
        if support is None:
            return None
        if not verify_fa_ha(data, reply, sa):
            self.counters["revocation-support-bad-auth"] += 1
            return None
        self.counters["revocation-negotiated"] += 1
        return support.timestamp

    # --- registration revocation (RFC 3543) ----------------------------------------------

    def handle_revocation(self, data: bytes, src: Address, now: float) -> Output:
        """A Registration Revocation from a home agent: ack it, drop the visitor, inform the MN."""
        out = Output()
        sa = self.settings.fa_ha
        if sa is None:
            self.counters["revocation-dropped-not-enabled"] += 1
            return out
        try:
            msg = rw.decode(data)
        except DecodeError as exc:
            self.counters[f"revocation-dropped-{exc.reason}"] += 1
            return out
        if not isinstance(msg, rw.RegistrationRevocation):
            self.counters["revocation-dropped-not-a-revocation"] += 1
            return out
        if not msg.by_home_agent:
            self.counters["revocation-dropped-not-from-home-agent"] += 1
            return out
        if not verify_fa_ha(data, msg, sa):
            self.counters["revocation-dropped-bad-auth"] += 1
            return out
        key = (msg.home_address, msg.revocation_id)
        again = self.recent_acks.get(key)
        if again is not None:  # a retransmission: our ack was lost
            self.counters["revocation-duplicates"] += 1
            out.sends.append(Send(again, src))
            return out
        visitor = self.visitors.get(msg.home_address)
        informed = False
        if visitor is not None:
            if visitor.revocation_since is None:
                self.counters["revocation-dropped-not-negotiated"] += 1
                return out
            if visitor.home_agent != msg.home_domain_address:
                self.counters["revocation-dropped-wrong-home-agent"] += 1
                return out
            if msg.revocation_id < visitor.revocation_since:
                self.counters["revocation-dropped-stale"] += 1  # older than the registration
                return out
            del self.visitors[msg.home_address]
            out.events.append(VisitorRemoved(msg.home_address, "revoked"))
            self.counters["visitors-revoked"] += 1
            if msg.inform and self.settings.inform_mobile_node:
                tell = wire.RegistrationReply(
                    FA_ADMINISTRATIVELY_PROHIBITED,
                    0,
                    visitor.home_address,
                    visitor.home_agent,
                    visitor.identification,
                )
                out.sends.append(Send(wire.encode(tell), visitor.mn_address))
                self.counters["revocation-mobile-nodes-informed"] += 1
                informed = True
        else:
            self.counters["revocation-no-visitor"] += 1  # acked all the same: stop the HA
        ack = rw.RevocationAck(rw.ACK_I if informed else 0, msg.home_address, msg.revocation_id)
        ack_data = append_auth(rw.encode(ack), wire.EXT_FA_HA_AUTH, sa)
        if len(self.recent_acks) >= RECENT_ACKS:
            del self.recent_acks[next(iter(self.recent_acks))]
        self.recent_acks[key] = ack_data
        self.counters["revocation-acks-sent"] += 1
        out.sends.append(Send(ack_data, src))
        return out

    # --- time ----------------------------------------------------------------------------

    def tick(self, now: float) -> Output:
        out = Output()
        for key, p in list(self.pending.items()):
            if p.deadline <= now:
                del self.pending[key]
                self.counters["pending-timeouts"] += 1
                self._deny(out, p.request, p.mn_address, FA_REGISTRATION_TIMEOUT, "timeout")
        for home, v in list(self.visitors.items()):
            if v.expires <= now:
                del self.visitors[home]
                out.events.append(VisitorRemoved(home, "expired"))
        return out

    def next_deadline(self) -> float | None:
        times = [p.deadline for p in self.pending.values()]
        times += [v.expires for v in self.visitors.values() if v.expires != math.inf]
        return min(times) if times else None

    def is_pending(self, home: IPv4Address) -> bool:
        return any(k[0] == home for k in self.pending)

    def visitor_for_reverse(self, home: IPv4Address) -> Visitor | None:
        v = self.visitors.get(home)
        return v if v is not None and v.reverse_tunnel else None


def _colocated(req: wire.RegistrationRequest, src: Address, ours: frozenset[IPv4Address]) -> bool:
    """A co-located mobile node registering through us because our advertisements set R (RFC
    5944 3.7.1, RFC 3519 4.11): D set, a care-of address not ours, and the request comes from that
    care-of address (anything else is not the node's own address: 77)."""
    return (
        bool(req.flags & wire.Flags.D)
        and req.care_of_address not in ours
        and src[0] == str(req.care_of_address)
    )


def _nai(msg: wire.Message) -> bytes | None:
    """The Mobile-Node-NAI extension's bytes (RFC 2794), if the message carries one."""
    for ext in msg.extensions:
        if isinstance(ext, wire.NaiExtension):
            return ext.nai
    return None


def reply_destination(src: Address) -> Address:
    """Where a reply to a request from ``src`` goes: back to it, or, from a mobile node with no
    address yet (source 0.0.0.0), to the limited broadcast address at its port on the link."""
    return (str(LIMITED_BROADCAST), src[1]) if src[0] == str(ANY) else src
