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

Replication (docs/revocation.md, "Failover"): every change of a binding end's revocation state
is a :class:`~mobileip.wire.sync.RevocationEntry` with a Lamport ``version``, queued for the
group (:meth:`take_changes`); :meth:`apply` merges a peer's entry (the newer version wins). Only
the *active* member (:meth:`set_active`) sends: a standby keeps replicated pending revocations
dormant, and a takeover resumes them with the same identifier and attempt count. ``revoke(...,
hold=s)`` holds the first send until a peer acked the pending entry (:meth:`release`) or ``s``
seconds passed, so a takeover right after the first send still knows the identifier.
"""

from __future__ import annotations

import hmac
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address

from mobileip.core.security import SecurityAssociation, append_auth
from mobileip.wire import registration as reg
from mobileip.wire import revocation as rw
from mobileip.wire.errors import DecodeError
from mobileip.wire.sync.revocation import EntryState, Reason, RevocationEntry

Address = tuple[str, int]
Key = tuple[int, int]  # (home address, care-of address) as ints: one binding end
# type and length of a Revocation Support extension, as they appear in a request
_SUPPORT_MARK = bytes((rw.EXT_REVOCATION_SUPPORT, 6))
MAX_ENDED = 65_536  # settled / forgotten entries kept (to refuse stale replicas, ack late acks)
_REASONS = {"operator": Reason.OPERATOR, "key-removed": Reason.KEY_REMOVED}
_REPLICATED = {state: f"replicated-{state.name.lower()}" for state in EntryState}


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
    spi: int = 0  # the mobile node's MN-HA SPI in the request (a key removal revokes it)

    @property
    def key(self) -> Key:
        return (int(self.home_address), int(self.care_of_address))


@dataclass(slots=True)
class PendingRevocation:
    binding: Negotiated
    revocation_id: int
    data: bytes
    attempts: int
    timeout: float
    deadline: float | None  # None: dormant (a standby's replica, or not our turn to send)
    reason: str
    first_sent_ms: int = 0  # Unix ms of the first send (0 before it)
    version: int = 0  # of the entry that last described it
    held_here: bool = False  # we hold its first send until a peer has it (revoke(hold=...))


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


CLOCK_EPOCH_SHIFT = 24  # a member's Lamport clock starts at (boot time in seconds) << 24


class RevocationAgent:
    def __init__(
        self, settings: RevocationSettings, active: bool = True, boot_wall: float = 0.0
    ) -> None:
        self.settings = settings
        # home address (as an int) -> care-of address -> binding
        self.negotiated: dict[int, dict[IPv4Address, Negotiated]] = {}
        self.negotiated_count = 0
        self.pending: dict[tuple[IPv4Address, int], PendingRevocation] = {}
        self.counters: Counter[str] = Counter()
        self.last_id = 0
        # replication: the current entry of each binding end, the ended ones (oldest first),
        # the Lamport clock and the changes not yet taken by the replicator
        self.active = active
        self.entries: dict[Key, RevocationEntry] = {}
        self.ended: OrderedDict[Key, None] = OrderedDict()
        self.settled: dict[tuple[int, int], Key] = {}  # (home, identifier) of SETTLED entries
        # a restarted member's changes must win over what its earlier life (or a peer) wrote
        # before it: the clock starts at its boot time (found by the simulator: a restarted
        # member at version 1 lost its new negotiations to older entries of its peers)
        self.clock = int(boot_wall) << CLOCK_EPOCH_SHIFT if boot_wall > 0 else 0
        self.changes: dict[Key, RevocationEntry] = {}
        # False until the group's revocation state arrived (the shell says so, make_ready):
        # revocations asked for meanwhile wait in ``deferred`` (home, reason, hold)
        self.ready = True
        self.deferred: list[tuple[IPv4Address, str, float]] = []

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
        spi = next(
            (
                e.spi
                for e in req.extensions
                if isinstance(e, reg.AuthExtension) and e.type == reg.EXT_MN_HA_AUTH
            ),
            0,
        )
        binding = Negotiated(
            req.home_address,
            req.care_of_address,
            src,
            support.inform and self.settings.inform,
            since,
            spi,
        )
        of_home = self.negotiated.setdefault(int(req.home_address), {})
        if req.care_of_address not in of_home:
            self.counters["negotiated"] += 1
            self.negotiated_count += 1
        of_home[req.care_of_address] = binding
        if self.pending:  # a new registration supersedes a revocation still being sent
            for pk, p in list(self.pending.items()):
                if p.binding.key == binding.key:
                    del self.pending[pk]
                    self.counters["revocations-superseded"] += 1
        self._record(binding, EntryState.NEGOTIATED)
        ours = rw.make_support(inform=self.settings.inform, timestamp=since).extension()
        return append_auth(reply + reg.encode_extension(ours), reg.EXT_FA_HA_AUTH, sa)

    def _forget(self, key: tuple[IPv4Address, IPv4Address]) -> None:
        binding = self.negotiated.get(int(key[0]), {}).get(key[1])
        if binding is not None and self._remove(*key):
            self.counters["negotiated-ended"] += 1
            self._record(binding, EntryState.FORGOTTEN)

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
        negotiated ones that are gone, without revoking (the FA's copy expires too). Every member
        expires its own copy, so nothing is replicated. Returns how many were forgotten."""
        of_home = self.negotiated.get(home)
        if of_home is None:
            return 0
        keep = set(live)
        gone = [coa for coa in of_home if int(coa) not in keep]
        for coa in gone:
            self._remove(IPv4Address(home), coa)
            self.entries.pop((home, int(coa)), None)
        self.counters["negotiated-expired"] += len(gone)
        return len(gone)

    def bindings_of(self, home: IPv4Address) -> list[Negotiated]:
        return list(self.negotiated.get(int(home), {}).values())

    def homes_without_key(self, valid: Callable[[int, IPv4Address], bool]) -> list[IPv4Address]:
        """Home addresses with a negotiated binding whose MN-HA SPI is no longer ``valid``
        (``valid(spi, home)``: an SA with that SPI still exists and covers the home)."""
        out: list[IPv4Address] = []
        for of_home in self.negotiated.values():
            for b in of_home.values():
                if b.spi and not valid(b.spi, b.home_address):
                    out.append(b.home_address)
                    break
        return out

    # --- revoking --------------------------------------------------------------------------

    def revoke(
        self, home: IPv4Address, now: float, wall: float, reason: str, hold: float = 0.0
    ) -> list[Send]:
        """The bindings of ``home`` ended on our side: a Registration Revocation to the foreign
        agent of each one that negotiated revocation. ``hold`` > 0: the first send waits for
        :meth:`release` (a peer has the pending entry) or ``hold`` seconds. A standby (not
        :attr:`active`) only records the pending revocations, for the active to send."""
        if not self.ready:  # our view may be stale: revoke once the group's state is in
            self.deferred.append((home, reason, hold))
            self.counters["revocations-deferred"] += 1
            return []
        sends: list[Send] = []
        for binding in self.bindings_of(home):
            self._remove(binding.home_address, binding.care_of_address)
            sa = self.settings.peers.get(IPv4Address(binding.foreign_agent[0]))
            if sa is None:  # the peer's SA went away (reload) since the registration
                self.counters["revocation-no-sa"] += 1
                self._record(binding, EntryState.FORGOTTEN)
                continue
            rid = max(self.last_id + 1, int(wall)) & 0xFFFFFFFF
            self.last_id = rid
            data = self._message(binding, rid, sa)
            timeout = self.settings.initial_timeout
            held = hold > 0 or not self.active
            p = PendingRevocation(
                binding,
                rid,
                data,
                0,
                timeout,
                (now + hold if hold > 0 else None) if held else now,
                reason,
            )
            p.held_here = hold > 0 and self.active
            self.pending[(home, rid)] = p
            if not held:
                sends.append(self._first_send(p, wall))
            else:
                self._record_pending(p)
        return sends

    def make_ready(self, now: float, wall: float) -> list[Send]:
        """The group's revocation state arrived: run the deferred revocations on it."""
        self.ready = True
        deferred, self.deferred = self.deferred, []
        return [
            s for home, reason, hold in deferred for s in self.revoke(home, now, wall, reason, hold)
        ]

    def _message(self, binding: Negotiated, rid: int, sa: SecurityAssociation) -> bytes:
        flags = rw.REVOCATION_A | (rw.REVOCATION_I if binding.inform else 0)
        msg = rw.RegistrationRevocation(
            flags, binding.home_address, self.settings.home_agent, binding.care_of_address, rid
        )
        return append_auth(rw.encode(msg), reg.EXT_FA_HA_AUTH, sa)

    def _first_send(self, p: PendingRevocation, wall: float) -> Send:
        p.attempts = 1
        p.first_sent_ms = int(wall * 1000)
        p.timeout = self.settings.initial_timeout
        p.deadline = (p.deadline or 0.0) + p.timeout
        self.counters["revocations-sent"] += 1
        self._record_pending(p)
        return Send(p.data, p.binding.foreign_agent)

    def release(self, key: Key, now: float, wall: float) -> list[Send]:
        """A peer acked the pending entry of ``key``: send a held revocation now."""
        if not self.active:
            return []
        for p in self.pending.values():
            if p.binding.key == key and p.attempts == 0 and p.deadline is not None:
                p.deadline = now
                return [self._first_send(p, wall)]
        return []

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
            if self._settled_with(int(msg.home_address), msg.revocation_id):
                self.counters["ack-for-settled"] += 1  # a late copy: already settled
                return AckResult(reason="settled")
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
        self._record(
            pending.binding,
            EntryState.SETTLED,
            pending.revocation_id,
            pending.first_sent_ms,
            pending.attempts,
            Reason.ACKED,
        )
        return AckResult(Acked(pending.binding, msg.revocation_id, msg.informed, pending.attempts))

    def _settled_with(self, home: int, rid: int) -> bool:
        return (home, rid) in self.settled

    # --- time ------------------------------------------------------------------------------

    def tick(self, now: float, wall: float = 0.0) -> tuple[list[Send], list[GaveUp]]:
        sends: list[Send] = []
        gave_up: list[GaveUp] = []
        if not self.active:
            return sends, gave_up
        s = self.settings
        for key, p in list(self.pending.items()):
            if p.deadline is None or p.deadline > now:
                continue
            if p.attempts == 0:  # held for replication and nobody acked in time, or a replica
                # never sent (a standby's clear binding, or the old active died holding it)
                if p.held_here:
                    self.counters["revocations-sent-unreplicated"] += 1
                p.deadline = now
                sends.append(self._first_send(p, wall))
                continue
            if p.attempts >= s.max_attempts:
                del self.pending[key]
                self.counters["revocation-gave-up"] += 1
                gave_up.append(GaveUp(p.binding, p.revocation_id, p.attempts))
                self._record(
                    p.binding,
                    EntryState.SETTLED,
                    p.revocation_id,
                    p.first_sent_ms,
                    p.attempts,
                    Reason.GAVE_UP,
                )
                continue
            p.attempts += 1
            p.timeout = min(p.timeout * 2, s.max_timeout)
            p.deadline = now + p.timeout
            self.counters["revocations-retransmitted"] += 1
            self._record_pending(p)
            sends.append(Send(p.data, p.binding.foreign_agent))
        return sends, gave_up

    def next_deadline(self) -> float | None:
        if not self.active:
            return None
        return min(
            (p.deadline for p in self.pending.values() if p.deadline is not None), default=None
        )

    # --- replication -----------------------------------------------------------------------

    def set_active(self, active: bool, now: float) -> int:
        """The member became active (a takeover: resume every pending revocation now, same
        identifier, attempts counted on) or standby (stop sending). Returns how many pending
        revocations were resumed."""
        was, self.active = self.active, active
        resumed = 0
        for p in self.pending.values():
            if active and not was:
                p.deadline = now
                resumed += 1
            elif not active:
                p.deadline = None
        self.counters["revocations-resumed"] += resumed
        return resumed

    def _tick_clock(self) -> int:
        self.clock += 1
        return self.clock

    def _record(
        self,
        b: Negotiated,
        state: EntryState,
        rid: int = 0,
        first_sent_ms: int = 0,
        attempts: int = 0,
        reason: int = Reason.NONE,
    ) -> RevocationEntry:
        if state in (EntryState.NEGOTIATED, EntryState.FORGOTTEN):
            # no revocation of its own: the identifier field carries the last identifier we
            # used or learned, so a member that gets only this entry (it missed the binding
            # end's PENDING and SETTLED ones) never picks that number again (simulator seed
            # 1298; docs/sync-protocol.md, "Revocation State (types 70, 71)")
            rid = self.last_id
        entry = RevocationEntry(
            int(b.home_address),
            int(b.care_of_address),
            int(IPv4Address(b.foreign_agent[0])),
            b.foreign_agent[1],
            state,
            b.inform,
            self._tick_clock(),
            b.since,
            rid,
            first_sent_ms,
            b.spi,
            min(attempts, 255),
            int(reason),
        )
        self._store(entry)
        self.changes[entry.key] = entry
        return entry

    def _record_pending(self, p: PendingRevocation) -> None:
        reason = _REASONS.get(p.reason, Reason.NONE)
        e = self._record(
            p.binding, EntryState.PENDING, p.revocation_id, p.first_sent_ms, p.attempts, reason
        )
        p.version = e.version

    def _store(self, entry: RevocationEntry) -> None:
        key = entry.key
        self._unsettle(self.entries.get(key))
        self.entries[key] = entry
        self.ended.pop(key, None)
        if entry.state is EntryState.SETTLED:
            self.settled[(entry.home_address, entry.revocation_id)] = key
        if entry.state in (EntryState.SETTLED, EntryState.FORGOTTEN):
            self.ended[key] = None
            while len(self.ended) > MAX_ENDED:
                old, _ = self.ended.popitem(last=False)
                self._unsettle(self.entries.pop(old, None))

    def _unsettle(self, entry: RevocationEntry | None) -> None:
        if entry is not None and entry.state is EntryState.SETTLED:
            self.settled.pop((entry.home_address, entry.revocation_id), None)

    def take_changes(self) -> list[RevocationEntry]:
        """The entries changed here since the last call, for the group."""
        out = list(self.changes.values())
        self.changes.clear()
        return out

    def snapshot(self) -> list[RevocationEntry]:
        """Every entry we hold (a booting member's request)."""
        return list(self.entries.values())

    def apply(self, entry: RevocationEntry, now: float) -> bool:
        """Merge a peer's entry: the newer version wins. True when it changed our state. An
        active member starts sending a PENDING entry it learns (a standby's `clear binding`)."""
        self.clock = max(self.clock, entry.version)
        # identifiers stay unique per home across members and restarts: a restarted member
        # (last_id 0) picking int(wall) could reuse one an earlier life sent ahead of the clock,
        # and the FA would take it for a copy it already acked (found by the simulator). Every
        # entry counts, a stale one too: PENDING and SETTLED carry their identifier, NEGOTIATED
        # and FORGOTTEN their writer's last identifier (seed 1298)
        self.last_id = max(self.last_id, entry.revocation_id)
        key = entry.key
        cur = self.entries.get(key)
        if cur is not None and (cur.version, cur.state) >= (entry.version, entry.state):
            self.counters["replicated-stale"] += 1
            return False
        home, coa = IPv4Address(entry.home_address), IPv4Address(entry.care_of_address)
        fa = (str(IPv4Address(entry.foreign_agent)), entry.foreign_agent_port)
        binding = Negotiated(home, coa, fa, entry.inform, entry.since, entry.spi)
        self._remove(home, coa)
        if self.pending:
            for pk, p in list(self.pending.items()):
                if p.binding.key == key and (
                    entry.state is not EntryState.PENDING or pk[1] != entry.revocation_id
                ):
                    del self.pending[pk]
        self._store(entry)
        self.changes.pop(key, None)
        self.counters[_REPLICATED[entry.state]] += 1
        if entry.state is EntryState.NEGOTIATED:
            of_home = self.negotiated.setdefault(entry.home_address, {})
            of_home[coa] = binding
            self.negotiated_count += 1
        elif entry.state is EntryState.PENDING:
            mine = self.pending.get((home, entry.revocation_id))
            if mine is not None:  # our own copy, moved on by the peer: take its count
                mine.attempts = max(mine.attempts, entry.attempts)
                mine.version = entry.version
                return True
            sa = self.settings.peers.get(IPv4Address(entry.foreign_agent))
            if sa is None:
                self.counters["replicated-no-sa"] += 1
                return True
            timeout = self.settings.initial_timeout
            for _ in range(1, entry.attempts):
                timeout = min(timeout * 2, self.settings.max_timeout)
            reason = (
                Reason(entry.reason).name.lower().replace("_", "-")
                if entry.reason
                in (
                    Reason.OPERATOR,
                    Reason.KEY_REMOVED,
                )
                else "replicated"
            )
            self.pending[(home, entry.revocation_id)] = PendingRevocation(
                binding,
                entry.revocation_id,
                self._message(binding, entry.revocation_id, sa),
                entry.attempts,
                timeout,
                now if self.active else None,
                reason,
                entry.first_sent_ms,
                entry.version,
            )
        return True

    def status(self) -> dict[str, object]:
        return {
            "active": self.active,
            "negotiated": self.negotiated_count,
            "pending": [
                {
                    "home_address": str(p.binding.home_address),
                    "care_of_address": str(p.binding.care_of_address),
                    "foreign_agent": f"{p.binding.foreign_agent[0]}:{p.binding.foreign_agent[1]}",
                    "revocation_id": p.revocation_id,
                    "attempts": p.attempts,
                    "reason": p.reason,
                    "dormant": p.deadline is None,
                }
                for p in self.pending.values()
            ],
            "entries": len(self.entries),
            "clock": self.clock,
            "counters": dict(self.counters),
        }
