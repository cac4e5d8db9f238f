"""RFC 3543 registration revocation, the home agent's side, sans-IO.

:class:`RevocationAgent` is pure: raw datagrams, ``now`` (monotonic) and ``wall`` (Unix seconds)
in; datagrams to send (:class:`Send`), timers (:meth:`next_deadline`) and counters out. It never
opens a socket nor reads a clock. The shell calls it at three places:

* :meth:`on_reply` with each registration request the core answered and the reply it built. When
  the request came through a foreign agent we share an FA-HA security association with (the
  request's source address), carries a Revocation Support extension (137) and a valid FA-HA
  authentication extension after it, and the reply accepts a binding, revocation is *negotiated*
  for that binding: we remember (home address, care-of address, the FA's address and port, whether
  the FA can inform the mobile node) and return the reply with our own Revocation Support
  extension and an FA-HA authentication extension appended (after the MN-HA one, RFC 5944 3.5.1).
  A deregistration, or a reply refusing the binding, forgets it.
* :meth:`revoke` when a binding ends on our side (``mobileip clear binding``): a Registration
  Revocation (A bit set; I bit set when the FA said it can inform the MN and ``inform`` is on),
  FA-HA protected, to the FA's address and port, and a pending entry.
* :meth:`handle_ack` with a Revocation Acknowledgement: an authentic ack for a pending
  (home address, revocation identifier) ends the retransmission.

:meth:`tick` retransmits the *same* message (same identifier, so a late ack for an earlier copy
still matches) after ``initial_timeout``, doubling up to ``max_timeout``, at most
``max_attempts`` sends in all; then it gives up and counts ``revocation-gave-up``.

Revocation identifiers: ``max(last + 1, int(wall))`` (32 bits), so they increase across sends
and, like the Timestamp of our Revocation Support extension (``int(wall)`` when the binding was
negotiated), are not smaller than the timestamp the FA saw at registration; the FA uses that to
refuse a revocation older than the registration it would revoke.
"""

from __future__ import annotations

import hmac
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address

from mobileip.core.security import SecurityAssociation, append_auth
from mobileip.wire import registration as reg
from mobileip.wire import revocation as rw
from mobileip.wire.errors import DecodeError

Address = tuple[str, int]
# type and length of a Revocation Support extension, as they appear in a request
_SUPPORT_MARK = bytes((rw.EXT_REVOCATION_SUPPORT, 6))


@dataclass(frozen=True, slots=True)
class RevocationSettings:
    home_agent: IPv4Address  # our address: the Home Domain Address of our revocations
    peers: Mapping[IPv4Address, SecurityAssociation]  # foreign agent address -> FA-HA SA
    inform: bool = True  # ask foreign agents that can to inform the mobile node (I bit)
    initial_timeout: float = 1.0
    max_timeout: float = 8.0
    max_attempts: int = 5


@dataclass(frozen=True, slots=True)
class Negotiated:
    """A binding for which revocation was negotiated with its foreign agent."""

    home_address: IPv4Address
    care_of_address: IPv4Address
    foreign_agent: Address  # where its requests came from: where revocations go
    inform: bool  # the FA said it can inform the mobile node
    since: int  # our Revocation Support timestamp


@dataclass(slots=True)
class PendingRevocation:
    binding: Negotiated
    revocation_id: int
    data: bytes
    attempts: int
    timeout: float
    deadline: float
    reason: str


@dataclass(frozen=True, slots=True)
class Send:
    data: bytes
    dest: Address


@dataclass(frozen=True, slots=True)
class Acked:
    binding: Negotiated
    revocation_id: int
    informed: bool
    attempts: int


@dataclass(frozen=True, slots=True)
class GaveUp:
    binding: Negotiated
    revocation_id: int
    attempts: int


@dataclass
class AckResult:
    acked: Acked | None = None
    reason: str = ""


def verify_fa_ha(raw: bytes, msg: rw.Message | reg.Message, sa: SecurityAssociation) -> bool:
    """True when the first FA-HA authentication extension of ``msg`` (decoded from ``raw``) is
    valid with ``sa``: its SPI is the SA's and it covers every byte before the authenticator."""
    for i, ext in enumerate(msg.extensions):
        if isinstance(ext, reg.AuthExtension) and ext.type == reg.EXT_FA_HA_AUTH:
            if ext.spi != sa.spi or not msg.ext_offsets:
                return False
            start = msg.ext_offsets[i]
            if start + 6 + len(ext.authenticator) != len(raw):
                return False  # the FA-HA extension must be the last one
            return hmac.compare_digest(sa.authenticator(raw[: start + 6]), ext.authenticator)
    return False


class RevocationAgent:
    def __init__(self, settings: RevocationSettings) -> None:
        self.settings = settings
        # (home, care-of address) -> binding
        # home address (as an int) -> care-of address -> binding
        self.negotiated: dict[int, dict[IPv4Address, Negotiated]] = {}
        self.negotiated_count = 0
        self.pending: dict[tuple[IPv4Address, int], PendingRevocation] = {}
        self.counters: Counter[str] = Counter()
        self.last_id = 0

    # --- registrations ---------------------------------------------------------------------

    def on_reply(self, request: bytes, src: Address, reply: bytes, wall: float) -> bytes:
        """Note what a request/reply pair negotiated; return the reply to send (``reply`` itself
        or ``reply`` with Revocation Support and FA-HA authentication appended)."""
        if not self.settings.peers:
            return reply
        # the common case, a request with no Revocation Support for a home with nothing
        # negotiated, costs two byte searches and no decoding (the marker may also occur by
        # chance in other bytes: then the full path below decides)
        if (
            request.find(_SUPPORT_MARK, reg.REQUEST_HEADER_LEN) < 0
            and int.from_bytes(request[4:8], "big") not in self.negotiated
        ):
            return reply
        try:
            req = reg.decode_request(request)
            rep = reg.decode_reply(reply)
        except DecodeError:
            return reply
        support = rw.find_support(req.extensions)
        key = (req.home_address, req.care_of_address)
        if rep.code in (0, 1) and rep.lifetime and not req.flags & reg.Flags.S:
            for other in self.bindings_of(req.home_address):  # replaced by this binding
                if other.care_of_address != req.care_of_address:
                    self._forget((other.home_address, other.care_of_address))
        if rep.code not in (0, 1) or rep.lifetime == 0:
            if rep.code in (0, 1):
                self._forget(key)
            return reply
        if support is None:
            self._forget(key)
            return reply
        fa = IPv4Address(src[0])
        sa = self.settings.peers.get(fa)
        if sa is None:
            self.counters["support-from-unknown-agent"] += 1
            self._forget(key)
            return reply
        if not verify_fa_ha(request, req, sa):
            self.counters["support-bad-fa-ha-auth"] += 1
            self._forget(key)
            return reply
        since = int(wall) & 0xFFFFFFFF
        binding = Negotiated(
            req.home_address,
            req.care_of_address,
            src,
            support.inform and self.settings.inform,
            since,
        )
        of_home = self.negotiated.setdefault(int(req.home_address), {})
        if req.care_of_address not in of_home:
            self.counters["negotiated"] += 1
            self.negotiated_count += 1
        of_home[req.care_of_address] = binding
        ours = rw.make_support(inform=self.settings.inform, timestamp=since).extension()
        return append_auth(reply + reg.encode_extension(ours), reg.EXT_FA_HA_AUTH, sa)

    def _forget(self, key: tuple[IPv4Address, IPv4Address]) -> None:
        if self._remove(*key):
            self.counters["negotiated-ended"] += 1

    def _remove(self, home: IPv4Address, coa: IPv4Address) -> bool:
        of_home = self.negotiated.get(int(home))
        if of_home is None or of_home.pop(coa, None) is None:
            return False
        if not of_home:
            del self.negotiated[int(home)]
        self.negotiated_count -= 1
        return True

    def on_expired(self, home: int, live: Iterable[int]) -> int:
        """Bindings of ``home`` expired (``live``: the care-of addresses it still has): forget the
        negotiated ones that are gone, without revoking (the FA's copy expires too). Returns how
        many were forgotten."""
        of_home = self.negotiated.get(home)
        if of_home is None:
            return 0
        keep = set(live)
        gone = [coa for coa in of_home if int(coa) not in keep]
        for coa in gone:
            self._remove(IPv4Address(home), coa)
        self.counters["negotiated-expired"] += len(gone)
        return len(gone)

    def bindings_of(self, home: IPv4Address) -> list[Negotiated]:
        return list(self.negotiated.get(int(home), {}).values())

    # --- revoking --------------------------------------------------------------------------

    def revoke(self, home: IPv4Address, now: float, wall: float, reason: str) -> list[Send]:
        """The bindings of ``home`` ended on our side: a Registration Revocation to the foreign
        agent of each one that negotiated revocation."""
        sends: list[Send] = []
        for binding in self.bindings_of(home):
            self._remove(binding.home_address, binding.care_of_address)
            sa = self.settings.peers.get(IPv4Address(binding.foreign_agent[0]))
            if sa is None:  # the peer's SA went away (reload) since the registration
                self.counters["revocation-no-sa"] += 1
                continue
            rid = max(self.last_id + 1, int(wall)) & 0xFFFFFFFF
            self.last_id = rid
            flags = rw.REVOCATION_A | (rw.REVOCATION_I if binding.inform else 0)
            msg = rw.RegistrationRevocation(
                flags, home, self.settings.home_agent, binding.care_of_address, rid
            )
            data = append_auth(rw.encode(msg), reg.EXT_FA_HA_AUTH, sa)
            timeout = self.settings.initial_timeout
            self.pending[(home, rid)] = PendingRevocation(
                binding, rid, data, 1, timeout, now + timeout, reason
            )
            self.counters["revocations-sent"] += 1
            sends.append(Send(data, binding.foreign_agent))
        return sends

    def handle_ack(self, data: bytes, src: Address) -> AckResult:
        try:
            msg = rw.decode(data)
        except DecodeError as exc:
            self.counters[f"ack-dropped-{exc.reason}"] += 1
            return AckResult(reason=exc.reason)
        if not isinstance(msg, rw.RevocationAck):
            self.counters["ack-dropped-not-an-ack"] += 1
            return AckResult(reason="not-an-ack")
        pending = self.pending.get((msg.home_address, msg.revocation_id))
        if pending is None:
            self.counters["ack-dropped-unexpected"] += 1
            return AckResult(reason="unexpected")
        sa = self.settings.peers.get(IPv4Address(pending.binding.foreign_agent[0]))
        if sa is None or not verify_fa_ha(data, msg, sa):
            self.counters["ack-dropped-bad-auth"] += 1
            return AckResult(reason="bad-auth")
        del self.pending[(msg.home_address, msg.revocation_id)]
        self.counters["revocations-acked"] += 1
        if pending.attempts > 1:
            self.counters["revocations-acked-after-retransmission"] += 1
        return AckResult(Acked(pending.binding, msg.revocation_id, msg.informed, pending.attempts))

    # --- time ------------------------------------------------------------------------------

    def tick(self, now: float) -> tuple[list[Send], list[GaveUp]]:
        sends: list[Send] = []
        gave_up: list[GaveUp] = []
        s = self.settings
        for key, p in list(self.pending.items()):
            if p.deadline > now:
                continue
            if p.attempts >= s.max_attempts:
                del self.pending[key]
                self.counters["revocation-gave-up"] += 1
                gave_up.append(GaveUp(p.binding, p.revocation_id, p.attempts))
                continue
            p.attempts += 1
            p.timeout = min(p.timeout * 2, s.max_timeout)
            p.deadline = now + p.timeout
            self.counters["revocations-retransmitted"] += 1
            sends.append(Send(p.data, p.binding.foreign_agent))
        return sends, gave_up

    def next_deadline(self) -> float | None:
        return min((p.deadline for p in self.pending.values()), default=None)

    def status(self) -> dict[str, object]:
        return {
            "negotiated": self.negotiated_count,
            "pending": [
                {
                    "home_address": str(p.binding.home_address),
                    "foreign_agent": f"{p.binding.foreign_agent[0]}:{p.binding.foreign_agent[1]}",
                    "revocation_id": p.revocation_id,
                    "attempts": p.attempts,
                    "reason": p.reason,
                }
                for p in self.pending.values()
            ],
            "counters": dict(self.counters),
        }
