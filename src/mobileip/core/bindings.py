"""The mobility binding table (the patent's FIG 2), sans-IO.

One :class:`MobilityRecord` per mobile node (keyed by home address as an ``int``) holds its
bindings (one per care-of address; several only with the S flag), the last identification the
home agent answered with (replay protection must survive a failover), the home agent that
accepted it, and a ``version`` that totally orders the changes to that record across the
redundancy group:

    version = (counter << 32) | origin

``counter`` grows by one with every change anywhere in the group (each member bumps the highest
counter it has seen for that record), and ``origin`` (the 32-bit id of the member that made the
change) breaks ties deterministically. The identification is not used for ordering: nonces are
not ordered.

A record without bindings is a *tombstone*: the mobile node deregistered (or its bindings
expired). It keeps its version and last identification so that an older update can never
resurrect the binding, and it is purged ``tombstone_ttl`` seconds later. It also keeps the
mobile node's NAI (``nai``, RFC 2794), so a dynamic address pool can tell which NAI last held
the address.

Two pieces of state are rare and default to "none": a record's ``nai`` (set for mobile nodes
that got a dynamically assigned home address) and a binding's RFC 3519 NAT mapping
(``udp_address``, ``udp_port``: where UDP-tunnelled traffic goes; both 0 = IP-in-IP).

Times are monotonic seconds passed in by the caller (``now``); nothing here reads a clock.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace

INFINITE = math.inf

# Wheel entries (home addresses that may be due) one :meth:`BindingTable.expire` call looks at. A
# mass expiry (a foreign network gone, a burst of registrations with the same lifetime) is worked
# through this many at a time, the event loop getting a turn in between (scripts/perf/expiry.py,
# docs/performance.md "Mass expiry").
EXPIRE_PER_CALL = 2048


@dataclass(frozen=True, slots=True)
class Binding:
    care_of_address: int
    granted_lifetime: int  # seconds; 0xffff means infinite
    expires: float  # monotonic seconds (math.inf for an infinite lifetime)
    flags: int  # the registration request's flags
    udp_address: int = 0  # RFC 3519 NAT mapping (IPv4 as int); 0 and port 0: no UDP tunnel
    udp_port: int = 0

    def remaining(self, now: float) -> int:
        """Remaining lifetime in whole seconds (0xffff for infinite)."""
        if self.expires == INFINITE:
            return 0xFFFF
        return max(0, math.ceil(self.expires - now - 1e-9))


@dataclass(frozen=True, slots=True)
class MobilityRecord:
    home_address: int
    version: int
    last_id: int
    home_agent: int
    bindings: tuple[Binding, ...]
    deleted_at: float = 0.0  # monotonic time it became a tombstone
    nai: bytes = b""  # RFC 2794 Network Access Identifier (0..255 bytes), b"": none

    @property
    def is_tombstone(self) -> bool:
        return not self.bindings

    @property
    def counter(self) -> int:
        return self.version >> 32

    @property
    def origin(self) -> int:
        return self.version & 0xFFFFFFFF

    def binding_for(self, coa: int) -> Binding | None:
        for b in self.bindings:
            if b.care_of_address == coa:
                return b
        return None


# The dataclass-generated __init__ of a frozen class sets each field with object.__setattr__;
# setting the slots through their descriptors costs about 40 % less, which keeps ``get`` (one
# Binding and one MobilityRecord per call) as fast with the NAI and NAT mapping fields as it was
# without them. Same signatures, defaults and frozenness (tests/test_records_ext.py checks the
# parameters against the dataclass fields).
def _slot_setters(cls: type, names: str) -> tuple[Callable[[object, object], None], ...]:
    return tuple(getattr(cls, name).__set__ for name in names.split())


_B_SET = _slot_setters(
    Binding, "care_of_address granted_lifetime expires flags udp_address udp_port"
)
_R_SET = _slot_setters(
    MobilityRecord, "home_address version last_id home_agent bindings deleted_at nai"
)


def _binding_init(
    self: Binding,
    care_of_address: int,
    granted_lifetime: int,
    expires: float,
    flags: int,
    udp_address: int = 0,
    udp_port: int = 0,
    _s: tuple[Callable[[object, object], None], ...] = _B_SET,
) -> None:
    _s[0](self, care_of_address)
    _s[1](self, granted_lifetime)
    _s[2](self, expires)
    _s[3](self, flags)
    _s[4](self, udp_address)
    _s[5](self, udp_port)


def _record_init(
    self: MobilityRecord,
    home_address: int,
    version: int,
    last_id: int,
    home_agent: int,
    bindings: tuple[Binding, ...],
    deleted_at: float = 0.0,
    nai: bytes = b"",
    _s: tuple[Callable[[object, object], None], ...] = _R_SET,
) -> None:
    _s[0](self, home_address)
    _s[1](self, version)
    _s[2](self, last_id)
    _s[3](self, home_agent)
    _s[4](self, bindings)
    _s[5](self, deleted_at)
    _s[6](self, nai)


setattr(Binding, "__init__", _binding_init)  # noqa: B010 - mypy refuses assigning a method
setattr(MobilityRecord, "__init__", _record_init)  # noqa: B010


def make_version(counter: int, origin: int) -> int:
    return ((counter & 0xFFFFFFFF) << 32) | (origin & 0xFFFFFFFF)


def version_after(version: int | None, origin: int, floor: int = 0) -> int:
    """The version of the change by ``origin`` that follows ``version`` (None: no record yet);
    see :meth:`BindingTable.next_version`."""
    counter = (version >> 32) + 1 if version is not None else 1
    return make_version(max(counter, floor), origin)


DIGEST_BUCKETS = 128
_M64 = 0xFFFFFFFFFFFFFFFF


def bucket_of(home: int) -> int:
    """The anti-entropy bucket a home address falls in (a fixed mix of its bits)."""
    return ((home * 0x9E3779B1) >> 16) % DIGEST_BUCKETS


def record_hash(home: int, version: int) -> int:
    """A 64-bit mix (splitmix64) of a record's identity, XORed into its bucket's digest."""
    z = (home * 0x9E3779B97F4A7C15 + version) & _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


# Records are stored packed, one ``bytes`` object per mobile node (about 170 bytes per binding
# with the dict entry, against about 430 as Python objects): home, home agent, version, last
# identification, deleted_at, binding count; then per binding: care-of address, granted
# lifetime, flags, expiry. ``get`` unpacks into the frozen dataclasses above.
#
# A record with an NAI or a NAT mapping (rare) carries a trailer after its bindings:
#     nai length u8 | nai | per binding: udp_address u32, udp_port u16 | (one 0 pad byte)
# A plain record has no trailer, so its size (and the one-binding fast paths, which recognise
# PACKED_ONE by its length) are unchanged; an extended record is never PACKED_ONE_SIZE long (a
# tombstone whose trailer would make it so gets the pad byte).
_HEAD = struct.Struct("=IIQQdB")
_BIND = struct.Struct("=IHBd")
_ONE = struct.Struct("=IIQQdBIHBd")  # a record with exactly one binding
_UDP = struct.Struct("=IH")  # a binding's NAT mapping, in the trailer
_HEAD_SIZE = _HEAD.size
_BIND_SIZE = _BIND.size
_ONE_SIZE = _ONE.size
_UDP_SIZE = _UDP.size
_VERSION = struct.Struct("=Q")  # at offset 8 of a packed record
# Read and written in place by expiry: a record's first 24 bytes (home, home agent, version, last
# identification), deleted_at at offset 24, a PACKED_ONE record's expiry at offset 40, and a plain
# tombstone's tail after its first 24 bytes (deleted_at, no binding).
_IDENTITY = struct.Struct("=IIQQ")
_IDENTITY_SIZE = _IDENTITY.size
_F64 = struct.Struct("=d")
_DELETED_AT = _IDENTITY_SIZE
_ONE_EXPIRES = _ONE.size - _F64.size
_TOMB_TAIL = struct.Struct("=dB")
# The packed layout, for the bulk-sync codec (sync/records.py), which converts between it and
# the wire format without building a MobilityRecord per record.
PACKED_HEAD = _HEAD
PACKED_BINDING = _BIND
PACKED_ONE = _ONE
PACKED_ONE_SIZE = _ONE.size


def _trailer(nai: bytes, udp: Sequence[tuple[int, int]], base: int) -> bytes:
    """The trailer of an extended packed record whose head and bindings take ``base`` bytes."""
    if len(nai) > 255:
        raise ValueError(f"nai: {len(nai)} bytes, at most 255")
    out = b"".join([bytes((len(nai),)), nai, *[_UDP.pack(a, p) for a, p in udp]])
    return out + b"\x00" if base + len(out) == _ONE_SIZE else out


def _pack(rec: MobilityRecord) -> bytes:
    bindings = rec.bindings
    head = (
        rec.home_address,
        rec.home_agent,
        rec.version,
        rec.last_id,
        rec.deleted_at,
        len(bindings),
    )
    nai = rec.nai
    if len(bindings) == 1:  # the common case in one struct call
        b = bindings[0]
        one = _ONE.pack(*head, b.care_of_address, b.granted_lifetime, b.flags, b.expires)
        if nai or b.udp_port or b.udp_address:
            return one + _trailer(nai, ((b.udp_address, b.udp_port),), _ONE_SIZE)
        return one
    parts = [_HEAD.pack(*head)]
    for b in bindings:
        parts.append(_BIND.pack(b.care_of_address, b.granted_lifetime, b.flags, b.expires))
    if nai or any([b.udp_port or b.udp_address for b in bindings]):
        base = _HEAD_SIZE + _BIND_SIZE * len(bindings)
        parts.append(_trailer(nai, [(b.udp_address, b.udp_port) for b in bindings], base))
    return b"".join(parts)


def _unpack_trailer(blob: bytes, n: int) -> tuple[bytes, list[tuple[int, int]]]:
    """(nai, [(udp_address, udp_port)] x n) of a packed record (no trailer: b"", zeros)."""
    pos = _HEAD_SIZE + _BIND_SIZE * n
    if len(blob) == pos:
        return b"", [(0, 0)] * n
    size = blob[pos]
    nai = blob[pos + 1 : pos + 1 + size]
    pos += 1 + size
    return nai, [_UDP.unpack_from(blob, pos + i * _UDP_SIZE) for i in range(n)]


def _unpack(blob: bytes) -> MobilityRecord:
    if len(blob) == _ONE_SIZE:  # the common case in one struct call
        home, ha, version, last_id, deleted_at, _n, coa, granted, flags, expires = _ONE.unpack(blob)
        binding = Binding(coa, granted, expires, flags)
        return MobilityRecord(home, version, last_id, ha, (binding,), deleted_at)
    home, ha, version, last_id, deleted_at, n = _HEAD.unpack_from(blob)
    nai, udp = _unpack_trailer(blob, n)
    bindings = []
    for i in range(n):
        coa, granted, flags, expires = _BIND.unpack_from(blob, _HEAD_SIZE + i * _BIND_SIZE)
        udp_address, udp_port = udp[i]
        bindings.append(Binding(coa, granted, expires, flags, udp_address, udp_port))
    return MobilityRecord(home, version, last_id, ha, tuple(bindings), deleted_at, nai)


def unpack_fields(blob: bytes) -> RecordFields:
    """A packed record as plain tuples (see :meth:`BindingTable.fields`)."""
    home, ha, version, last_id, deleted_at, n = _HEAD.unpack_from(blob)
    if len(blob) == _HEAD_SIZE + _BIND_SIZE * n:
        bindings = tuple(
            [(*_BIND.unpack_from(blob, _HEAD_SIZE + i * _BIND_SIZE), 0, 0) for i in range(n)]
        )
        return home, ha, version, last_id, deleted_at, bindings, b""
    nai, udp = _unpack_trailer(blob, n)
    bindings = tuple(
        [(*_BIND.unpack_from(blob, _HEAD_SIZE + i * _BIND_SIZE), *udp[i]) for i in range(n)]
    )
    return home, ha, version, last_id, deleted_at, bindings, nai


# (care-of address, granted lifetime, flags, expires, udp_address, udp_port) and a whole record
# as plain tuples: (home, home agent, version, last_id, deleted_at, bindings, nai)
BindingFields = tuple[int, int, int, float, int, int]
RecordFields = tuple[int, int, int, int, float, tuple[BindingFields, ...], bytes]


class BindingTable:
    """All mobility records of one home agent, with expiry and tombstone purging."""

    def __init__(self, tombstone_ttl: float = 600.0) -> None:
        self.tombstone_ttl = tombstone_ttl
        self._records: dict[int, bytes] = {}
        self._live = 0  # records with at least one binding
        # expiry wheel: whole second -> home addresses that may expire in it (checked lazily)
        self._wheel: dict[int, list[int]] = {}
        self._next_slot = math.inf
        # the due slot :meth:`expire` is working through, taken out of the wheel: its homes, how
        # far it got, and the homes it put back into the wheel (each once per slot)
        self._due_slot = math.inf
        self._due: list[int] = []
        self._due_pos = 0
        self._due_seen: set[int] = set()
        # anti-entropy digest: XOR of record_hash over the records (tombstones too) of each bucket
        self._digest = [0] * DIGEST_BUCKETS

    # --- reads ---------------------------------------------------------------------------

    def get(self, home: int) -> MobilityRecord | None:
        blob = self._records.get(home)
        return None if blob is None else _unpack(blob)

    def fields(self, home: int) -> RecordFields | None:
        """The record as plain tuples, no dataclasses: (home, home agent, version, last_id,
        deleted_at, ((care-of, granted, flags, expires, udp_address, udp_port), ...), nai)."""
        blob = self._records.get(home)
        return None if blob is None else unpack_fields(blob)

    def packed_getter(self) -> Callable[[int], bytes | None]:
        """``home -> its packed record`` (layout ``PACKED_HEAD`` + ``PACKED_BINDING`` x n, then
        the trailer of an extended record; see :func:`unpack_fields`), or None: the bulk sender
        reads every record of the table through it."""
        return self._records.get

    def order_of(self, home: int) -> tuple[int, int] | None:
        """(version, last identification) of the record, without unpacking it."""
        blob = self._records.get(home)
        if blob is None:
            return None
        _home, _ha, version, last_id, _deleted, _n = _HEAD.unpack_from(blob)
        return version, last_id

    def version_of(self, home: int) -> int | None:
        """The record's version, without unpacking the record."""
        blob = self._records.get(home)
        return None if blob is None else int(_VERSION.unpack_from(blob, 8)[0])

    def live(self, home: int) -> MobilityRecord | None:
        rec = self.get(home)
        return rec if rec is not None and rec.bindings else None

    def is_live(self, home: int) -> bool:
        """Whether ``home`` has a record with a binding, without unpacking it (the binding
        count is the last byte of the head, offset 32, in every layout)."""
        blob = self._records.get(home)
        return blob is not None and blob[32] != 0

    def __len__(self) -> int:
        """Number of mobile nodes with at least one binding."""
        return self._live

    @property
    def record_count(self) -> int:
        """Records including tombstones."""
        return len(self._records)

    def records(self) -> Iterator[MobilityRecord]:
        for blob in list(self._records.values()):
            yield _unpack(blob)

    def homes(self) -> list[int]:
        """Every home address with a record (tombstones included), without unpacking."""
        return list(self._records)

    def homes_one_binding_first(self) -> list[int]:
        """:meth:`homes`, the plain records with exactly one binding (``PACKED_ONE``) first, then
        the others (tombstones, several bindings, an NAI or a NAT mapping)."""
        one = _ONE.size
        items = self._records.items()
        first = [h for h, b in items if len(b) == one]
        if len(first) == len(self._records):
            return first
        return first + [h for h, b in items if len(b) != one]

    def bindings(self) -> Iterator[tuple[MobilityRecord, Binding]]:
        for rec in self.records():
            for b in rec.bindings:
                yield rec, b

    def next_version(self, home: int, origin: int, floor: int = 0) -> int:
        """The version of the next change to ``home`` made by member ``origin``.

        ``floor`` lets a caller order changes by an external clock the mobile node owns: in
        timestamp replay mode it is the identification's NTP seconds, which grow with every
        request of that mobile node, so a member that missed an update still orders the next
        registration after it.
        """
        return version_after(self.version_of(home), origin, floor)

    def digest(self) -> tuple[int, ...]:
        """Per-bucket digests of every record, tombstones included."""
        return tuple(self._digest)

    def bucket_records(self, buckets: Iterable[int]) -> list[MobilityRecord]:
        """Every record (tombstones included) whose home address falls in ``buckets``."""
        wanted = set(buckets)
        return [_unpack(b) for h, b in self._records.items() if bucket_of(h) in wanted]

    # --- writes --------------------------------------------------------------------------

    def put(self, rec: MobilityRecord, now: float) -> MobilityRecord | None:
        """Store ``rec`` unconditionally; return what it replaced."""
        blob = self._records.get(rec.home_address)
        self.store(rec, now)
        return None if blob is None else _unpack(blob)

    def store(self, rec: MobilityRecord, now: float) -> None:
        """:meth:`put` without building the record it replaced (the registration path). Every
        write of a whole record goes through here: a subclass that notes changes (persistence)
        overrides this, :meth:`put_packed`, :meth:`insert_new` and :meth:`discard`."""
        home = rec.home_address
        records = self._records
        blob = records.get(home)
        bindings = rec.bindings
        if not bindings and rec.deleted_at == 0.0:
            if type(rec) is MobilityRecord:  # dataclasses.replace costs 2 us
                rec = MobilityRecord(
                    home, rec.version, rec.last_id, rec.home_agent, (), now, rec.nai
                )
            else:
                rec = replace(rec, deleted_at=now)
        records[home] = _pack(rec)
        # the old and the new record fall in the same digest bucket (same home address)
        change = record_hash(home, rec.version)
        if blob is None:
            if bindings:
                self._live += 1
        else:
            # the binding count is the last byte of the head (offset 32), the version at 8
            self._live += (1 if bindings else 0) - (1 if blob[32] else 0)
            change ^= record_hash(home, _VERSION.unpack_from(blob, 8)[0])
        self._digest[bucket_of(home)] ^= change
        if len(bindings) == 1:
            if bindings[0].expires != INFINITE:
                self._schedule(bindings[0].expires, home)
        elif bindings:
            soonest = min([b.expires for b in bindings])
            if soonest != INFINITE:
                self._schedule(soonest, home)
        else:
            self._schedule(rec.deleted_at + self.tombstone_ttl, home)

    def put_packed(self, home: int, blob: bytes, version: int, wake: float, live: bool) -> None:
        """:meth:`put` of a record already packed (``PACKED_ONE``, or ``PACKED_HEAD`` + its
        bindings + an extended record's trailer, with its ``deleted_at`` set): ``version`` is
        the one in ``blob``, ``wake`` when the expiry wheel must look at it (as in
        :meth:`insert_new`), ``live`` whether it has bindings. A peer's Binding Update is merged
        through it without a MobilityRecord; a subclass that overrides :meth:`store` (to note
        changes) must override this too."""
        records = self._records
        old = records.get(home)
        records[home] = blob
        # record_hash and bucket_of, inlined (once per record of every peer's update)
        mixed = home * 0x9E3779B97F4A7C15
        z = (mixed + version) & _M64
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
        change = z ^ (z >> 31)
        if old is None:
            if live:
                self._live += 1
        else:
            # the binding count is the last byte of the head (offset 32)
            self._live += (1 if live else 0) - (1 if old[32] else 0)
            z = (mixed + _VERSION.unpack_from(old, 8)[0]) & _M64
            z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
            z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
            change ^= z ^ (z >> 31)
        self._digest[((home * 0x9E3779B1) >> 16) % DIGEST_BUCKETS] ^= change
        if wake != INFINITE:
            self._schedule(wake, home)

    def insert_new(
        self,
        homes: Sequence[int],
        blobs: Sequence[bytes],
        versions: Sequence[int],
        wakeups: Sequence[float],
        live: int,
    ) -> None:
        """Store records for home addresses that have no record here (a bulk download into an
        empty table), in one pass: the table, the live count, the digest and the expiry wheel.

        ``blobs`` are packed records (``PACKED_ONE`` or ``PACKED_HEAD`` + bindings) with these
        ``versions``; ``wakeups`` is when the expiry wheel must look at each (its soonest expiry,
        or ``deleted_at + tombstone_ttl`` for a tombstone; ``math.inf``: never); ``live`` counts
        those with bindings. The caller guarantees the homes are distinct and absent; a subclass
        that overrides :meth:`store` (to note changes) must override this too.
        """
        records = self._records
        before = len(records)
        records.update(zip(homes, blobs, strict=True))
        if len(records) != before + len(homes):
            raise ValueError("insert_new: a home address was already in the table, or repeated")
        self._live += live
        digest = self._digest
        wheel = self._wheel
        nxt = self._next_slot
        ceil = math.ceil
        for home, version, wake in zip(homes, versions, wakeups, strict=True):
            # record_hash and bucket_of, inlined (this runs once per record of a download)
            z = (home * 0x9E3779B97F4A7C15 + version) & _M64
            z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
            z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
            digest[((home * 0x9E3779B1) >> 16) % DIGEST_BUCKETS] ^= z ^ (z >> 31)
            if wake != INFINITE:
                slot = ceil(wake)
                bucket = wheel.get(slot)
                if bucket is None:
                    wheel[slot] = [home]
                    if slot < nxt:
                        nxt = slot
                else:
                    bucket.append(home)
        self._next_slot = nxt

    def merge(self, rec: MobilityRecord, now: float) -> bool:
        """Apply a record learned from a peer if it is newer than ours (FIG 7, FIG 9).

        Returns True when it was applied. Equal versions are the same change: not re-applied.
        """
        version = self.version_of(rec.home_address)
        if version is not None and version >= rec.version:
            return False
        self.store(rec, now)
        return True

    def discard(self, home: int) -> MobilityRecord | None:
        blob = self._records.pop(home, None)
        if blob is None:
            return None
        old = _unpack(blob)
        self._live -= 1 if old.bindings else 0
        self._redigest(old, None)
        return old

    def _redigest(self, old: MobilityRecord | None, new: MobilityRecord | None) -> None:
        # Tombstones count too: a member holding an older tombstone also holds an older last
        # identification. Expiry keeps the version, so it does not change the digest.
        if old is not None:
            self._digest[bucket_of(old.home_address)] ^= record_hash(old.home_address, old.version)
        if new is not None:
            self._digest[bucket_of(new.home_address)] ^= record_hash(new.home_address, new.version)

    def clear(self) -> None:
        self._records.clear()
        self._wheel.clear()
        self._live = 0
        self._next_slot = math.inf
        self._due_slot = math.inf
        self._due = []
        self._due_pos = 0
        self._due_seen.clear()
        self._digest = [0] * DIGEST_BUCKETS

    def _schedule(self, when: float, home: int) -> None:
        slot = math.ceil(when)
        bucket = self._wheel.get(slot)
        if bucket is None:
            self._wheel[slot] = [home]
        else:
            bucket.append(home)
        if slot < self._next_slot:
            self._next_slot = slot

    def next_deadline(self) -> float | None:
        """When :meth:`expire` next has work to do (monotonic seconds), or None. While a mass
        expiry is being worked through, the slot it is in: a time already past, so due at once."""
        soonest = min(self._due_slot, self._next_slot)
        return None if soonest == math.inf else float(soonest)

    @property
    def expiry_backlog(self) -> int:
        """Wheel entries of the due slot :meth:`expire` has not looked at yet (0: caught up)."""
        return len(self._due) - self._due_pos

    def expire(
        self, now: float, limit: int = EXPIRE_PER_CALL
    ) -> tuple[list[MobilityRecord], list[int]]:
        """Drop bindings whose lifetime has run out and purge old tombstones, looking at no more
        than ``limit`` wheel entries (home addresses that may be due) per call.

        Returns (records that lost bindings, as they are now; home addresses purged).
        A record whose last binding expired becomes a tombstone with the same version, so every
        member reaches the same state from the same update without talking to the others.

        Due slots are worked through in time order, each slot's homes in the order they were
        scheduled; when more than ``limit`` are due, the rest wait for the next call, and
        :meth:`next_deadline` says so (it returns the slot being worked through, in the past).
        A home met a second time in the same slot is not put back into the wheel twice.
        """
        changed: list[MobilityRecord] = []
        purged: list[int] = []
        budget = limit
        while budget > 0:
            due = self._due
            pos = self._due_pos
            if pos >= len(due):
                if self._next_slot > now:
                    break
                # take the earliest due slot out of the wheel
                slot = self._next_slot
                due = self._wheel.pop(int(slot))
                self._next_slot = min(self._wheel) if self._wheel else math.inf
                self._due = due
                self._due_slot = slot
                self._due_seen.clear()
                pos = 0
            chunk = due[pos : pos + budget]
            self._due_pos = pos + len(chunk)
            budget -= len(chunk)
            self._expire_homes(chunk, now, changed, purged)
        if self._due_pos >= len(self._due):  # caught up: forget the slot
            self._due = []
            self._due_pos = 0
            self._due_slot = math.inf
            self._due_seen.clear()
        return changed, purged

    def _expire_homes(
        self, homes: list[int], now: float, changed: list[MobilityRecord], purged: list[int]
    ) -> None:
        """Look at each of ``homes`` (taken from a due wheel slot) once: expire, purge, or put
        back into the wheel when it is not due after all (re-registered, or a tombstone that is
        not old enough)."""
        records = self._records
        seen = self._due_seen
        ttl = self.tombstone_ttl
        schedule = self._schedule
        # a plain record with one binding (the common case) is read and rewritten in place:
        # its tombstone is its first 24 bytes (home, home agent, version, last identification),
        # then deleted_at = now and no binding; the version, so the digest, does not change
        in_place = type(self).put_packed is BindingTable.put_packed
        purge_in_place = type(self).discard is BindingTable.discard
        digest = self._digest
        tomb_tail = _TOMB_TAIL.pack(now, 0)
        purge_at = now + ttl
        tombstoned: list[int] = []  # in place, to be purged at purge_at (one wheel slot)
        new_record = MobilityRecord
        append = changed.append
        for home in homes:
            blob = records.get(home)
            if blob is None:
                continue
            size = len(blob)
            if size == _ONE_SIZE:
                expires = _F64.unpack_from(blob, _ONE_EXPIRES)[0]
                if expires > now:
                    if expires != INFINITE and home not in seen:
                        seen.add(home)
                        schedule(expires, home)
                    continue
                _home, ha, version, last_id = _IDENTITY.unpack_from(blob)
                if in_place:
                    records[home] = blob[:_IDENTITY_SIZE] + tomb_tail
                    tombstoned.append(home)
                else:
                    self.put_packed(
                        home, blob[:_IDENTITY_SIZE] + tomb_tail, version, purge_at, False
                    )
                append(new_record(home, version, last_id, ha, (), now))
                continue
            if not blob[32]:  # a tombstone (the binding count is the last byte of the head)
                deleted_at = _F64.unpack_from(blob, _DELETED_AT)[0]
                if deleted_at + ttl <= now:
                    if purge_in_place:  # discard without building the record it returns
                        del records[home]
                        version = _VERSION.unpack_from(blob, 8)[0]
                        digest[bucket_of(home)] ^= record_hash(home, version)
                    else:
                        self.discard(home)
                    purged.append(home)
                elif home not in seen:
                    seen.add(home)
                    schedule(deleted_at + ttl, home)
                continue
            rec = _unpack(blob)
            keep = tuple([b for b in rec.bindings if b.expires > now])
            if len(keep) == len(rec.bindings):
                soonest = min([b.expires for b in keep])
                if soonest != INFINITE and home not in seen:
                    seen.add(home)
                    schedule(soonest, home)
                continue
            new = replace(rec, bindings=keep, deleted_at=0.0 if keep else now)
            self.store(new, now)
            append(new)
        if tombstoned:
            self._live -= len(tombstoned)
            slot = math.ceil(purge_at)
            bucket = self._wheel.get(slot)
            if bucket is None:
                self._wheel[slot] = tombstoned
            else:
                bucket.extend(tombstoned)
            if slot < self._next_slot:
                self._next_slot = slot
