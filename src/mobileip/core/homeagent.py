"""The home agent's registration rules (RFC 5944 3.8), in one place, sans-IO.

:meth:`HomeAgentCore.handle_request` takes the datagram's bytes, where it came from, the address
it was sent to, the monotonic time and the wall-clock time, and returns a :class:`Outcome`: the
reply bytes to send back to the source (or None to drop), the reply code, and the events the rest
of the daemon (the sync engine, the data plane, the metrics) reacts to. No sockets, no clocks, no
randomness: fresh nonces come from the ``next_nonce`` callable the caller injects.

Order of checks:

1. decode (unknown critical extension: drop silently; malformed: 134 when the header is intact);
2. reserved flag bits must be zero (134);
3. MN-HA authentication: extension present, SPI known, SA covers the home address, authenticator
   valid (131);
4. the Home Agent field names one of our addresses (136);
5. identification: timestamp window and strictly increasing, or the expected nonce (133);
6. deregistration (lifetime 0): one care-of address, or all when it equals the home address;
7. registration: lifetime capped, S flag and the simultaneous-binding limit (1 or 135), resource
   limit for new mobile nodes (130).

Header prediction (after Van Jacobson's TCP fast path): most requests have one shape, a 24-byte
header followed by exactly one MN-HA authentication extension with a 16-byte authenticator, and are
accepted. :meth:`HomeAgentCore._predicted` recognises that shape and accepts it with plain ints and
one ``struct`` call, no message objects. It never decides anything else: whenever any check above
would not pass (or the request is a deregistration, carries the S flag, the mode is ``nonce``, the
table is full, dynamic assignment is on) it returns None *before changing anything*, and the full
rules run as if it did not exist. ``tests/test_header_prediction.py`` checks on generated request
streams that both paths give the same replies, events and tables.
"""

from __future__ import annotations

import hmac
import struct
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address

from mobileip.core.bindings import (
    EXPIRE_PER_CALL,
    INFINITE,
    Binding,
    BindingTable,
    MobilityRecord,
    version_after,
)
from mobileip.core.dynamic_ha import DynamicAssignment, Redirect
from mobileip.core.nat import NatDenied, NatTraversal, UdpTunnel, held_port
from mobileip.core.pools import AddressPools, PoolDenied, request_nai
from mobileip.core.replay import check_nonce, check_timestamp, timestamp_acceptable
from mobileip.core.security import SecurityAssociations, append_auth, verify_auth
from mobileip.wire import dynamic_ha as dha
from mobileip.wire import registration as wire
from mobileip.wire.codes import ReplyCode
from mobileip.wire.errors import DecodeError

# --- events -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BindingChanged:
    """A registration or deregistration was accepted; ``record`` is the new state."""

    record: MobilityRecord
    deregistration: bool


@dataclass(frozen=True, slots=True)
class BindingsExpired:
    record: MobilityRecord  # as it is now (a tombstone when no binding is left)


@dataclass(frozen=True, slots=True)
class RequestDenied:
    code: int
    reason: str
    home_address: IPv4Address


@dataclass(frozen=True, slots=True)
class SecurityViolation:
    reason: str  # no-sa, bad-spi, bad-authenticator, missing-extension, bad-identification
    home_address: IPv4Address


@dataclass(frozen=True, slots=True)
class DatagramDropped:
    reason: str


Event = BindingChanged | BindingsExpired | RequestDenied | SecurityViolation | DatagramDropped


@dataclass(frozen=True, slots=True)
class Outcome:
    reply: bytes | None
    code: int | None
    events: tuple[Event, ...] = ()


@dataclass(frozen=True, slots=True)
class HomeAgentSettings:
    address: IPv4Address
    max_lifetime: int = 1800
    replay: str = "timestamp"
    replay_window: float = 7.0
    max_bindings: int = 1_000_000
    max_simultaneous: int = 5
    # Other addresses the Home Agent field may name (the group's virtual addresses).
    extra_addresses: frozenset[IPv4Address] = frozenset()
    # 32-bit id of this member in version numbers (its own unicast address by default).
    node_id: int = 0

    def our_addresses(self) -> frozenset[IPv4Address]:
        return self.extra_addresses | {self.address}


@dataclass
class HomeAgentStats:
    replies: Counter[int] = field(default_factory=Counter)
    violations: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)
    expired: int = 0
    predicted: int = 0  # requests accepted by header prediction (a subset of replies[0])


_MAX_PENDING_NONCES = 65536
_RESERVED_FLAGS = int(wire.Flags.r | wire.Flags.x)
_FLAG_S = int(wire.Flags.S)

# The predicted request: header, then one MN-HA auth extension (type 32, length 4 + 16).
_PREDICTED = struct.Struct("!BBHIIIQBBI16s")
_PREDICTED_LEN = _PREDICTED.size  # 46
_PROTECTED_LEN = _PREDICTED_LEN - 16  # through the extension's SPI
_PREDICTED_EXT = bytes((wire.EXT_MN_HA_AUTH, 20))
_NOT_PREDICTED_FLAGS = _RESERVED_FLAGS | _FLAG_S
_REPLY_HEAD = struct.Struct("!BBHIIQ")


class HomeAgentCore:
    """Registration rules over a :class:`BindingTable`."""

    def __init__(
        self,
        settings: HomeAgentSettings,
        sas: SecurityAssociations,
        table: BindingTable | None = None,
        next_nonce: Callable[[], int] | None = None,
    ) -> None:
        self.settings = settings
        self.sas = sas
        self.table = table if table is not None else BindingTable()
        self.stats = HomeAgentStats()
        self._next_nonce = next_nonce
        self._addresses = settings.our_addresses()
        self._address_ints = frozenset(int(a) for a in self._addresses)
        # False turns header prediction off (the differential tests compare both paths)
        self.predict = True
        # wheel entries one tick looks at (core/bindings.py EXPIRE_PER_CALL)
        self.expire_per_tick = EXPIRE_PER_CALL
        self._node_id = settings.node_id or int(settings.address)
        # nonces handed out in 133 replies to mobile nodes without a record
        self._pending_nonces: dict[int, int] = {}
        # RFC 4433 dynamic HA assignment (core/dynamic_ha.py); None: an ALL-ZERO-ONE-ADDR
        # Home Agent field is denied 136 like any address that is not ours
        self.dynamic: DynamicAssignment | None = None
        # RFC 5944 3.6 / RFC 2794 dynamic home addresses (core/pools.py); None: no pools
        self.pools: AddressPools | None = None
        # RFC 3519 NAT traversal (core/nat.py); None: UDP Tunnel Requests are skipped unread
        self.nat: NatTraversal | None = None
        if settings.replay == "nonce" and next_nonce is None:
            raise ValueError("nonce replay protection needs a next_nonce source")

    # --- public entry points -------------------------------------------------------------

    def handle_request(
        self, data: bytes, now: float, wall: float, source: tuple[str, int] | None = None
    ) -> Outcome:
        """``source``: where the datagram came from (RFC 3519 NAT detection needs it)."""
        if len(data) == _PREDICTED_LEN and data[24:26] == _PREDICTED_EXT and self.predict:
            predicted = self._predicted(data, now, wall)
            if predicted is not None:
                return predicted
        try:
            req = wire.decode_request(data)
        except DecodeError as exc:
            return self._undecodable(data, exc)
        return self._handle(req, data, now, wall, source)

    def nat_rebind(
        self, home: int, old: tuple[int, int], new_mapping: tuple[int, int], now: float
    ) -> list[Event]:
        """RFC 3519: the NAT in front of ``home``'s UDP-tunnelled binding moved its mapping from
        ``old`` to ``new_mapping`` (address, port), as the data plane saw. A new version of the
        record, so the change replicates like a registration; no event when no binding of
        ``home`` has the ``old`` mapping or nothing changed."""
        rec = self.table.get(home)
        if rec is None or old == new_mapping or not old[0]:  # port 0: half bound (R)
            return []
        index = next(
            (i for i, b in enumerate(rec.bindings) if (b.udp_address, b.udp_port) == old), None
        )
        if index is None:
            return []
        moved = replace(rec.bindings[index], udp_address=new_mapping[0], udp_port=new_mapping[1])
        bindings = (*rec.bindings[:index], moved, *rec.bindings[index + 1 :])
        version = self.table.next_version(home, self._node_id)
        new = replace(rec, version=version, bindings=bindings)
        self.table.store(new, now)
        return [BindingChanged(self.table.get(home) or new, False)]

    def tick(self, now: float) -> list[Event]:
        """Expire what is due, at most :attr:`expire_per_tick` wheel entries per call: after a
        mass expiry :meth:`next_deadline` stays in the past until the rest is done, and the
        caller (the daemon's timer) calls again after a turn of its event loop."""
        changed, purged = self.table.expire(now, self.expire_per_tick)
        self.stats.expired += len(changed)
        if self.pools is not None and (changed or purged):  # addresses freed (core/pools.py)
            self.pools.refresh([*(rec.home_address for rec in changed), *purged])
        return [BindingsExpired(rec) for rec in changed]

    def next_deadline(self) -> float | None:
        return self.table.next_deadline()

    def administrative_deregister(self, home: IPv4Address, now: float) -> list[Event]:
        """The operator's ``clear binding``: drop every binding of ``home`` as if the mobile node
        had deregistered them all (a tombstone with a new version, so the deregistration reaches
        the group like any other). No event when ``home`` has no live binding."""
        key = int(home)
        rec = self.table.get(key)
        if rec is None or not rec.bindings:
            return []
        version = self.table.next_version(key, self._node_id)
        new = MobilityRecord(key, version, rec.last_id, rec.home_agent, (), 0.0, rec.nai)
        self.table.store(new, now)
        if self.pools is not None:  # the address is free again (core/pools.py)
            self.pools.note(new)
        return [BindingChanged(self.table.get(key) or new, True)]

    # --- the rules -----------------------------------------------------------------------

    def _predicted(self, data: bytes, now: float, wall: float) -> Outcome | None:
        """Accept a request of the predicted shape, or None (nothing changed) to run the rules.

        The same checks as :meth:`_handle`, in ints, for the accepting outcome only."""
        (mtype, flags, lifetime, home, ha, coa, ident, _t, _l, spi, auth) = _PREDICTED.unpack(data)
        settings = self.settings
        if (
            mtype != wire.TYPE_REQUEST
            or flags & _NOT_PREDICTED_FLAGS
            or lifetime == 0
            or self.dynamic is not None
            or (self.pools is not None and self.pools.governs(home))
            or settings.replay != "timestamp"
            or ha not in self._address_ints
        ):
            return None
        sa = self.sas.get(spi)
        if sa is None or not sa.covers_int(home):
            return None
        if not hmac.compare_digest(sa.authenticator(data[:_PROTECTED_LEN]), auth):
            return None
        table = self.table
        order = table.order_of(home)
        if order is None:
            version, last_id = None, None
        else:
            version, last_id = order
        if not timestamp_acceptable(ident, last_id, wall, settings.replay_window):
            return None
        if len(table) >= settings.max_bindings:
            return None
        # accepted: from here on the same effects as _handle's step 7 without the S flag
        if lifetime > settings.max_lifetime:
            lifetime = settings.max_lifetime
        expires = INFINITE if lifetime == 0xFFFF else now + lifetime
        version = version_after(version, self._node_id, ident >> 32)
        new = MobilityRecord(home, version, ident, ha, (Binding(coa, lifetime, expires, flags),))
        table.store(new, now)
        stats = self.stats
        stats.replies[0] += 1
        stats.predicted += 1
        body = _REPLY_HEAD.pack(wire.TYPE_REPLY, 0, lifetime, home, ha, ident)
        reply = append_auth(body, wire.EXT_MN_HA_AUTH, sa)
        return Outcome(reply, 0, (BindingChanged(new, False),))

    def _undecodable(self, data: bytes, exc: DecodeError) -> Outcome:
        self.stats.dropped[exc.reason] += 1
        drop = Outcome(None, None, (DatagramDropped(exc.reason),))
        if exc.code is None or len(data) < wire.REQUEST_HEADER_LEN or data[0] != 1:
            return drop
        # The header is intact but the extensions are not: answer 134, unauthenticated
        # (we cannot trust any SPI in a message we could not parse).
        head = wire.decode_request(data[: wire.REQUEST_HEADER_LEN])
        reply = self._reply(head, exc.code, 0, head.identification, None)
        self.stats.replies[exc.code] += 1
        return Outcome(reply, exc.code, (DatagramDropped(exc.reason),))

    def _handle(
        self,
        req: wire.RegistrationRequest,
        raw: bytes,
        now: float,
        wall: float,
        source: tuple[str, int] | None = None,
    ) -> Outcome:
        home = req.home_address
        events: list[Event] = []

        def deny(
            code: int,
            reason: str,
            ident: int,
            sa_spi: int | None,
            extra: tuple[wire.Extension, ...] = (),
        ) -> Outcome:
            self.stats.replies[code] += 1
            events.append(RequestDenied(code, reason, home))
            reply = self._reply(req, code, 0, ident, sa_spi, extra)
            return Outcome(reply, code, tuple(events))

        def violation(reason: str, sa_spi: int | None) -> Outcome:
            self.stats.violations[reason] += 1
            events.append(SecurityViolation(reason, home))
            return deny(ReplyCode.MN_FAILED_AUTH, reason, req.identification, sa_spi)

        flags = int(req.flags)  # plain int arithmetic on the hot path (enum ops cost us)
        if flags & _RESERVED_FLAGS:
            return deny(ReplyCode.POORLY_FORMED, "reserved-bits-set", req.identification, None)

        # 3. authentication
        found = wire.find_auth(req, wire.EXT_MN_HA_AUTH)
        if found is None:
            return violation("missing-extension", None)
        spi = found[1].spi
        nai = request_nai(req)
        sa = self.sas.select(spi, nai)
        if sa is None:
            return violation("bad-spi", None)
        pools = self.pools
        pooled = (
            pools is not None and nai is not None and (not int(home) or pools.governs(int(home)))
        )
        if not sa.covers(home) and not (pooled and sa.matches_nai(nai)):
            return violation("no-sa", None)
        ok, _ = verify_auth(raw, req, wire.EXT_MN_HA_AUTH, sa)
        if not ok:
            return violation("bad-authenticator", None)

        # 4. home agent field (or a request for dynamic assignment, RFC 4433)
        dynamic = self.dynamic is not None and self.dynamic.wanted(req.home_agent)
        if not dynamic and req.home_agent not in self._addresses:
            return deny(ReplyCode.UNKNOWN_HOME_AGENT, "unknown-home-agent", req.identification, spi)

        # 4b. dynamic home address (core/pools.py): the NAI's address, or a fresh one; the
        # record keeps the request's NAI (none: b"", as header prediction stores it)
        rec_nai = nai or b""
        fresh = False
        if pooled:
            assert pools is not None and nai is not None
            resolved = pools.resolve(sa, home, nai, req.lifetime == 0)
            if resolved is None:  # 0.0.0.0 deregistering while holding nothing
                self.stats.replies[0] += 1
                return Outcome(self._reply(req, 0, 0, req.identification, spi), 0, ())
            if isinstance(resolved, PoolDenied):
                return deny(resolved.code, resolved.reason, req.identification, spi)
            fresh = resolved.fresh
            req = replace(req, home_address=IPv4Address(resolved.address))
            home = req.home_address

        # 5. identification (a dynamic mobile node's is its NAI's record, RFC 5944 3.6)
        key = int(home)
        rec = None if fresh else self.table.get(key)
        if self.settings.replay == "timestamp":
            last = rec.last_id if rec is not None else None
            verdict = check_timestamp(req.identification, last, wall, self.settings.replay_window)
        else:
            assert self._next_nonce is not None
            pending = self._pending_nonces.get(key)
            expected = (rec.last_id >> 32) if rec is not None else pending
            if pending is not None and req.identification >> 32 == pending:
                expected = pending  # the nonce our last 133 reply handed out
            verdict = check_nonce(req.identification, expected, self._next_nonce())
        if not verdict.ok:
            if self.settings.replay == "nonce":
                self._remember_nonce(key, verdict.reply_identification >> 32)
            self.stats.violations["bad-identification"] += 1
            events.append(SecurityViolation("bad-identification", home))
            return deny(
                ReplyCode.IDENTIFICATION_MISMATCH, verdict.reason, verdict.reply_identification, spi
            )
        self._pending_nonces.pop(key, None)
        reply_id = verdict.reply_identification

        # 5b. dynamic assignment: serve here under our address, or redirect (143)
        if dynamic:
            assigned = self._assign_dynamic(req, rec, found[0], reply_id, spi, events)
            if isinstance(assigned, Outcome):
                return assigned
            req = assigned

        # 6. deregistration
        if req.lifetime == 0:
            keep: tuple[Binding, ...] = ()
            if rec is not None and req.care_of_address != home:
                coa = int(req.care_of_address)
                keep = tuple(b for b in rec.bindings if b.care_of_address != coa)
            new = MobilityRecord(
                key, self._version(key, req), reply_id, int(req.home_agent), keep, 0.0, rec_nai
            )
            self.table.store(new, now)
            if pools is not None:
                pools.note(new)
            events.append(BindingChanged(self.table.get(key) or new, True))
            self.stats.replies[0] += 1
            return Outcome(self._reply(req, 0, 0, reply_id, spi), 0, tuple(events))

        # 7. registration
        lifetime = min(req.lifetime, self.settings.max_lifetime)
        live = rec is not None and bool(rec.bindings)
        if not live and len(self.table) >= self.settings.max_bindings:
            return deny(ReplyCode.INSUFFICIENT_RESOURCES, "max-bindings", reply_id, spi)
        # 7b. RFC 3519: a UDP tunnel through a NAT (core/nat.py)
        udp_address = udp_port = 0
        live_bindings = rec.bindings if rec is not None else ()
        nat_reply: tuple[wire.Extension, ...] = ()
        if self.nat is not None:
            try:
                decision = self.nat.decide(req, source)
            except DecodeError as exc:
                return deny(ReplyCode.POORLY_FORMED, exc.reason, reply_id, spi)
            if decision is not None:
                nat_reply = (decision.reply,)
                if isinstance(decision, NatDenied):
                    return deny(decision.code, decision.reason, reply_id, spi, nat_reply)
                if isinstance(decision, UdpTunnel):
                    udp_address = decision.address
                    udp_port = held_port(decision, int(req.care_of_address), live_bindings)
        expires = INFINITE if lifetime == 0xFFFF else now + lifetime
        binding = Binding(int(req.care_of_address), lifetime, expires, flags, udp_address, udp_port)
        code = 0  # ReplyCode.ACCEPTED
        bindings: tuple[Binding, ...] = (binding,)
        if flags & _FLAG_S:
            if self.settings.max_simultaneous <= 1:
                code = int(ReplyCode.ACCEPTED_NO_SIMULTANEOUS)
            elif rec is not None:
                others = tuple(
                    b for b in rec.bindings if b.care_of_address != binding.care_of_address
                )
                if len(others) + 1 > self.settings.max_simultaneous:
                    return deny(ReplyCode.TOO_MANY_BINDINGS, "too-many-bindings", reply_id, spi)
                bindings = (*others, binding)
        new = MobilityRecord(
            key, self._version(key, req), reply_id, int(req.home_agent), bindings, 0.0, rec_nai
        )
        self.table.store(new, now)
        if pools is not None:
            pools.note(new)
        events.append(BindingChanged(new, False))
        self.stats.replies[code] += 1
        reply = self._reply(req, code, lifetime, reply_id, spi, nat_reply)
        return Outcome(reply, code, tuple(events))

    def _assign_dynamic(
        self,
        req: wire.RegistrationRequest,
        rec: MobilityRecord | None,
        auth_index: int,
        reply_id: int,
        spi: int,
        events: list[Event],
    ) -> wire.RegistrationRequest | Outcome:
        """The request with our address in its Home Agent field, or the 143 redirect outcome."""
        assert self.dynamic is not None
        home = req.home_address
        try:  # only an authenticated (before the MN-HA authenticator) Requested HA counts
            requested = dha.find(req, dha.SUBTYPE_REQUESTED_HA, before=auth_index)
        except DecodeError as exc:
            self.stats.replies[ReplyCode.POORLY_FORMED] += 1
            events.append(RequestDenied(ReplyCode.POORLY_FORMED, exc.reason, home))
            reply = self._reply(req, ReplyCode.POORLY_FORMED, 0, reply_id, spi)
            return Outcome(reply, ReplyCode.POORLY_FORMED, tuple(events))
        decision = self.dynamic.decide(
            deregistration=req.lifetime == 0,
            bound_here=rec is not None and bool(rec.bindings),
            requested=requested.home_agent if requested is not None else None,
            bindings=len(self.table),
        )
        ours = replace(req, home_agent=self.dynamic.settings.assigned)
        if isinstance(decision, Redirect):
            code = ReplyCode.REDIRECTED_HA
            self.stats.replies[code] += 1
            events.append(RequestDenied(code, f"redirected-to-{decision.home_agent}", home))
            ext = dha.to_extension(
                dha.DynamicHaExtension(dha.SUBTYPE_REDIRECTED_HA, decision.home_agent)
            )
            return Outcome(self._reply(ours, code, 0, reply_id, spi, (ext,)), code, tuple(events))
        return ours

    def _version(self, key: int, req: wire.RegistrationRequest) -> int:
        # Timestamps grow with each request of a mobile node whatever member answered it, so
        # they order changes even across a member that missed an update (docs/sync-protocol.md).
        floor = req.identification >> 32 if self.settings.replay == "timestamp" else 0
        return self.table.next_version(key, self._node_id, floor)

    def _remember_nonce(self, key: int, nonce: int) -> None:
        if key not in self._pending_nonces and len(self._pending_nonces) >= _MAX_PENDING_NONCES:
            self._pending_nonces.pop(next(iter(self._pending_nonces)))
            self.stats.dropped["nonce-evicted"] += 1  # that MN gets a fresh nonce next time
        self._pending_nonces[key] = nonce

    def _reply(
        self,
        req: wire.RegistrationRequest,
        code: int,
        lifetime: int,
        ident: int,
        spi: int | None,
        extra: tuple[wire.Extension, ...] = (),
    ) -> bytes:
        ha = req.home_agent if req.home_agent in self._addresses else self.settings.address
        reply = wire.RegistrationReply(code, lifetime, req.home_address, ha, ident)
        body = wire.encode(reply)
        nai = next((e for e in req.extensions if isinstance(e, wire.NaiExtension)), None)
        if nai is not None:
            body += wire.encode_extension(nai)
        body += wire.encode_extensions(extra)
        sa = None if spi is None else self.sas.select(spi, None if nai is None else nai.nai)
        if sa is None:
            return body
        return append_auth(body, wire.EXT_MN_HA_AUTH, sa)
