"""Dynamic home addresses (RFC 5944 3.6, RFC 2794): address pools over the binding table, sans-IO.

A mobile node that registers with home address 0.0.0.0 and a Mobile-Node-NAI extension gets an
address from the pool of its security association; the reply carries it, and later requests
carry it as their home address.

The binding table is the only truth. The record keyed by an assigned address carries the NAI
(``MobilityRecord.nai``), replicated, bulk-downloaded, journalled and kept in the tombstone like
the rest of the record, so every member derives the same pool state from its table:

* an address is *in use* when its record has a binding, and then belongs to that record's NAI;
* an address is *free* when it has no record or only a tombstone (the binding ended:
  deregistration, expiry, ``clear binding``); a tombstone keeps its NAI, so the same NAI gets the
  same address back until the tombstone is purged (``tombstone_ttl``).

:class:`AddressPools` keeps one index, NAI -> address, only as a hint: every answer is checked
against the table before it is used, so a stale hint costs a fresh address, never a duplicate.
The hint is fed by the core's own changes (:meth:`AddressPools.note`), by the records a peer's
update or a bulk download applied (:meth:`AddressPools.refresh`), and rebuilt from the whole
table at start (:meth:`AddressPools.rebuild`).

The same three feeds keep a second set, the pool addresses that may be live (every address
that became live through them; a superset, since expiry and ``clear binding`` do not report):
``in_use`` counts it, checking each against the table (and dropping those no longer live), so
``GET /api/v1/pools`` costs O(addresses in use), not O(pool size).

A reload (:meth:`AddressPools.reconfigure`) swaps in new pools: added, removed, grown or shrunk.
An address that was in a pool, is in none now and is held by a live binding is *retired*: its
mobile node keeps it, renewals included, until the binding ends (deregistration, expiry,
``clear binding``); then it is never handed out again. After a restart (or on a member that
learnt such a binding from a peer), :meth:`AddressPools.retire_orphans` finds them again in the
table: a live record with an NAI, outside every pool, that no SA covers as a static address.

What two members assigning at once means is in docs/pools.md.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network

from mobileip.core.bindings import BindingTable, MobilityRecord
from mobileip.core.security import SecurityAssociation
from mobileip.wire.codes import ReplyCode
from mobileip.wire.registration import EXT_MN_HA_AUTH, AuthExtension, NaiExtension
from mobileip.wire.registration import RegistrationRequest as Request

ANY = IPv4Address("0.0.0.0")


@dataclass(frozen=True, slots=True)
class AddressPool:
    """The addresses ``first`` .. ``last`` (ints, inclusive) less ``excluded``."""

    name: str
    first: int
    last: int
    excluded: frozenset[int] = frozenset()

    @classmethod
    def of_network(
        cls, name: str, network: IPv4Network, excluded: Iterable[IPv4Address] = ()
    ) -> AddressPool:
        """A pool of a prefix's host addresses (its network and broadcast addresses left out
        when it has more than two)."""
        first, last = int(network.network_address), int(network.broadcast_address)
        if network.num_addresses > 2:
            first, last = first + 1, last - 1
        return cls(name, first, last, frozenset(int(a) for a in excluded))

    def __contains__(self, address: int) -> bool:
        return self.first <= address <= self.last and address not in self.excluded

    @property
    def size(self) -> int:
        return (
            self.last
            - self.first
            + 1
            - sum(1 for a in self.excluded if self.first <= a <= self.last)
        )


@dataclass(frozen=True, slots=True)
class PoolDenied:
    """The request cannot have the address it asked for (or any): answer ``code``."""

    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class Resolved:
    """The home address a dynamic request is about; ``fresh``: just taken from the pool (its
    table record, if any, is another NAI's tombstone and says nothing about this mobile node)."""

    address: int
    fresh: bool = False


@dataclass(slots=True)
class _Candidates:
    """A spent pool's addresses that may be free: purged (no record: preferred, never
    anyone's now) and tombstones. Each is checked against the table when used."""

    purged: set[int]
    tombstones: set[int]


@dataclass
class PoolStats:
    assigned: int = 0  # addresses taken from a pool for an NAI that had none
    reassigned: int = 0  # 0.0.0.0 requests answered with the NAI's existing address
    denied: Counter[str] = field(default_factory=Counter)


def prevails(a: MobilityRecord, b: MobilityRecord) -> bool:
    """Whether live record ``a`` keeps its NAI over live record ``b`` of the same NAI (one NAI
    live on two addresses, assigned by two members that did not see each other: split brain,
    or a crash before an assignment replicated). The higher version wins (in timestamp replay
    mode its floor is the mobile node's own identification, so: its latest registration), then
    the lower address. Every member decides the same from the same two records."""
    if a.version != b.version:
        return a.version > b.version
    return a.home_address < b.home_address


def request_nai(req: Request) -> bytes | None:
    """The NAI of the first Mobile-Node-NAI extension before the MN-HA authentication extension
    (RFC 2794 2: only an NAI the authenticator covers counts), or None."""
    for ext in req.extensions:
        if isinstance(ext, AuthExtension) and ext.type == EXT_MN_HA_AUTH:
            return None
        if isinstance(ext, NaiExtension):
            return ext.nai
    return None


class AddressPools:
    """The configured pools of one binding set, their NAI hint and the assignment rules."""

    def __init__(self, pools: Sequence[AddressPool], table: BindingTable) -> None:
        self._pools = {p.name: p for p in pools}
        if len(self._pools) != len(pools):
            raise ValueError("two pools have the same name")
        self.table = table
        self._hint: dict[bytes, int] = {}  # NAI (lower case) -> address; checked before use
        self._cursor = {p.name: p.first for p in pools}
        self.stats = PoolStats()
        self._lo = min((p.first for p in pools), default=1)
        self._hi = max((p.last for p in pools), default=0)
        # addresses a reload took out of every pool while a binding held them (kept till it ends)
        self.retired: set[int] = set()
        # pool addresses that may be live: every one that became live (checked when counted)
        self._maybe_live: set[int] = set()
        # live addresses whose NAI holds another live address that prevails: to be ended
        self._losers: set[int] = set()
        # called when a loser is found (the daemon schedules :meth:`losers` on the active)
        self.on_loser: Callable[[], None] | None = None
        # per pool whose last scan from the cursor found no never-used address: the addresses
        # that may be free since (tombstones, purged records), so a full or fully used pool
        # answers without reading every address again (:meth:`_take`)
        self._spent: dict[str, _Candidates] = {}

    def reconfigure(self, pools: Sequence[AddressPool]) -> dict[str, list[str]]:
        """Swap in ``pools`` (a reload): what was added, removed and changed, by name.

        Assignments stay in the table; a live address left outside every pool is retired (see
        the module docstring). A kept pool's cursor stays when it is still inside it."""
        new = {p.name: p for p in pools}
        if len(new) != len(pools):
            raise ValueError("two pools have the same name")
        old = self._pools
        if new == old:  # a reload for other reasons (keys): nothing to redo (no table read)
            return {"added": [], "removed": [], "changed": []}
        for name in set(old) - set(new):
            self._cursor.pop(name, None)
        for p in pools:
            cursor = self._cursor.get(p.name, p.first)
            self._cursor[p.name] = cursor if p.first <= cursor <= p.last else p.first
        was = list(old.values())
        self._pools = new
        self._lo = min((p.first for p in pools), default=1)
        self._hi = max((p.last for p in pools), default=0)
        is_live = self.table.is_live
        # every live address of the old pools is in _maybe_live (a superset): O(in use)
        for address in self._maybe_live:
            if (
                is_live(address)
                and any(address in p for p in was)
                and self.pool_of(address) is None
            ):
                self.retired.add(address)
        self.retired = {a for a in self.retired if self.pool_of(a) is None and is_live(a)}
        self._maybe_live.clear()  # the new ranges may hold live addresses never seen: rescan
        self._spent.clear()  # new ranges: the next take scans them
        self.refresh(self.table.homes())
        return {
            "added": sorted(set(new) - set(old)),
            "removed": sorted(set(old) - set(new)),
            "changed": sorted(n for n in set(new) & set(old) if new[n] != old[n]),
        }

    def retire_orphans(self, static: Callable[[int], bool]) -> int:
        """Retire every live address with an NAI that is in no pool and that no SA covers
        statically (``static``): only a pool can have handed it out, one a reload shrank before
        a restart. Reads the whole table (at start); returns how many it retired."""
        before = len(self.retired)
        get, is_live = self.table.get, self.table.is_live
        for home in self.table.homes():
            if self.governs(home) or not is_live(home) or static(home):
                continue
            rec = get(home)
            if rec is not None and rec.nai:
                self.retired.add(home)
        return len(self.retired) - before

    def governs(self, address: int) -> bool:
        """Whether the pool rules decide about ``address``: in a pool, or retired."""
        return self.pool_of(address) is not None or address in self.retired

    # --- reads ---------------------------------------------------------------------------

    def pool(self, name: str) -> AddressPool | None:
        return self._pools.get(name)

    def definitions(self) -> tuple[AddressPool, ...]:
        """The pools as configured now (a reload's before and after: ``POST /api/v1/reload``)."""
        return tuple(self._pools.values())

    def pool_of(self, address: int) -> AddressPool | None:
        if not self._lo <= address <= self._hi:
            return None
        for p in self._pools.values():
            if address in p:
                return p
        return None

    def owner(self, address: int) -> bytes | None:
        """The NAI holding ``address`` (a live binding), or None when it is free."""
        rec = self.table.get(address)
        if rec is None or not rec.bindings:
            return None
        return rec.nai

    def lookup(self, nai: bytes) -> int | None:
        """The address ``nai`` holds or held last (its record, live or a tombstone, or the free
        address it was last offered), or None."""
        key = nai.lower()
        address = self._hint.get(key)
        if address is None:
            return None
        rec = self.table.get(address)
        if rec is not None and rec.nai.lower() != key:
            del self._hint[key]  # stale: the address is another NAI's now
            return None
        return address  # its record (live or a tombstone), or still free since it was offered

    def in_use(self, name: str) -> int:
        """Addresses of pool ``name`` with a live binding."""
        return self.in_use_counts()[name]

    def in_use_counts(self) -> dict[str, int]:
        """Per pool, its addresses with a live binding: the addresses that may be live, each
        checked against the table (those that are not any more are forgotten), sorted once and
        counted per pool by bisection (a scrape of 50,000 live addresses: no per-address
        pool lookup)."""
        get = self.table.packed_getter()
        live = sorted(a for a in self._maybe_live if (blob := get(a)) is not None and blob[32])
        if len(live) != len(self._maybe_live):
            self._maybe_live = set(live)
        counts = {}
        for p in self._pools.values():
            inside = bisect_right(live, p.last) - bisect_left(live, p.first)
            held = self._maybe_live  # now exactly the live ones
            counts[p.name] = inside - sum(
                1 for a in p.excluded if p.first <= a <= p.last and a in held
            )
        self.retired = {a for a in self.retired if self.table.is_live(a)}  # ended since
        return counts

    def in_use_by_scan(self, name: str) -> int:
        """:meth:`in_use` the slow way, reading every address of the pool (tests check the
        two agree)."""
        p = self._pools[name]
        is_live = self.table.is_live
        return sum(1 for a in range(p.first, p.last + 1) if a in p and is_live(a))

    def status(self) -> dict[str, object]:
        in_use = self.in_use_counts()
        return {
            "pools": [
                {
                    "name": p.name,
                    "first": str(IPv4Address(p.first)),
                    "last": str(IPv4Address(p.last)),
                    "size": p.size,
                    "in_use": in_use[p.name],
                }
                for p in self._pools.values()
            ],
            "retired": sorted(str(IPv4Address(a)) for a in self.retired),
            "assigned": self.stats.assigned,
            "reassigned": self.stats.reassigned,
            "denied": dict(self.stats.denied),
        }

    # --- the rules -----------------------------------------------------------------------

    def resolve(
        self, sa: SecurityAssociation, home: IPv4Address, nai: bytes, deregistration: bool
    ) -> Resolved | PoolDenied | None:
        """The address a request with ``home`` (0.0.0.0 or an address of a pool) and ``nai``,
        authenticated by ``sa``, is about; None: a deregistration of 0.0.0.0 by an NAI that
        holds nothing (nothing to do, accepted)."""
        if home == ANY:
            known = self.lookup(nai)
            if known is not None and self.owner(known) is not None:
                self.stats.reassigned += 1
                return Resolved(known)  # the NAI's live binding: the same address again
            if deregistration:
                return Resolved(known) if known is not None else None
            pool = self.pool(sa.pool) if sa.pool is not None else None
            if pool is None:
                return self._deny(ReplyCode.ADMIN_PROHIBITED, "no-pool")
            if known is not None and known in pool:
                self.stats.reassigned += 1
                return Resolved(known)  # its tombstone: the address it had before
            taken = self._take(pool)
            if taken is None:
                return self._deny(ReplyCode.INSUFFICIENT_RESOURCES, "pool-exhausted")
            self.stats.assigned += 1
            self._hint[nai.lower()] = taken
            return Resolved(taken, fresh=True)
        address = int(home)
        rec = self.table.get(address)
        if rec is not None and rec.bindings:  # held: by this NAI (a renewal) or another
            if rec.nai != nai and rec.nai.lower() != nai.lower():
                return self._deny(ReplyCode.ADMIN_PROHIBITED, "address-of-another-nai")
            return Resolved(address)
        # a free address named by its former holder (its binding expired, or a member that
        # assigned it lost its state): it may have it again if its SA's pool holds it
        if deregistration:
            return Resolved(address)
        pool = self.pool(sa.pool) if sa.pool is not None else None
        if not sa.covers(home) and (pool is None or address not in pool):
            return self._deny(ReplyCode.ADMIN_PROHIBITED, "address-not-in-pool")
        known = self.lookup(nai)
        if known is not None and known != address and self.owner(known) is not None:
            return self._deny(ReplyCode.ADMIN_PROHIBITED, "nai-holds-another-address")
        self._hint[nai.lower()] = address
        return Resolved(address, fresh=rec is not None and rec.nai.lower() != nai.lower())

    def _deny(self, code: int, reason: str) -> PoolDenied:
        self.stats.denied[reason] += 1
        return PoolDenied(int(code), reason)

    def _take(self, pool: AddressPool) -> int | None:
        """A free address of ``pool``: one never used (no record) from the cursor on, else a
        tombstone (its former NAI loses its claim to it); None when all are in use.

        The scan from the cursor reads each address once (no unpacking). When it wraps without
        finding a never-used address, the pool is *spent*: its free addresses are then only
        the tombstones it saw and those that the feeds report since (a binding ended:
        :meth:`note`, :meth:`refresh`, expiry and purges through the core's tick), so a full
        pool answers in O(1) instead of reading every address for every request."""
        spent = self._spent.get(pool.name)
        if spent is None:
            return self._scan(pool)
        blob_of = self.table.packed_getter()
        for group in (spent.purged, spent.tombstones):
            found = None
            stale = []
            for address in group:
                blob = blob_of(address) if address in pool else b""
                if blob is None or (blob and blob[32] == 0):  # no record, or no binding
                    found = address  # kept: the request may not store it after all
                    break
                stale.append(address)  # live again, or out of the pool
            group.difference_update(stale)
            if found is not None:
                return found
        return None

    def _scan(self, pool: AddressPool) -> int | None:
        """The scan from the cursor; marks the pool spent when it finds no never-used address."""
        blob_of = self.table.packed_getter()
        excluded = pool.excluded
        start = self._cursor[pool.name]
        span = pool.last - pool.first + 1
        tombstones: set[int] = set()
        for i in range(span):
            address = pool.first + (start - pool.first + i) % span
            if address in excluded:
                continue
            blob = blob_of(address)
            if blob is None:
                self._cursor[pool.name] = address + 1 if address < pool.last else pool.first
                return address
            if blob[32] == 0:  # the binding count (BindingTable.is_live): a tombstone
                tombstones.add(address)
        self._spent[pool.name] = _Candidates(set(), tombstones)
        return min(tombstones, key=lambda a: (a - start) % span) if tombstones else None

    def _freed(self, address: int, purged: bool) -> None:
        """``address`` may be free now (a tombstone, or no record): a candidate of its spent
        pool."""
        if not self._spent:
            return
        p = self.pool_of(address)
        spent = self._spent.get(p.name) if p is not None else None
        if spent is not None:
            (spent.purged if purged else spent.tombstones).add(address)

    # --- keeping the hint ------------------------------------------------------------------

    def note(self, rec: MobilityRecord) -> None:
        """The core stored ``rec``."""
        if not rec.bindings and rec.home_address in self.retired:
            self.retired.discard(rec.home_address)  # its binding ended: out of use for good
        if rec.bindings and self._lo <= rec.home_address <= self._hi:
            self._maybe_live.add(rec.home_address)
        if rec.nai and self._lo <= rec.home_address <= self._hi:
            self._remember(rec.nai.lower(), rec.home_address, bool(rec.bindings))
        if not rec.bindings:
            self._freed(rec.home_address, False)

    def refresh(self, homes: Iterable[int]) -> None:
        """These records changed outside a registration: a peer's update, a bulk download, or
        the core's expiry (bindings ended, tombstones purged)."""
        lo, hi, get = self._lo, self._hi, self.table.get
        for home in homes:
            if home in self.retired and not self.table.is_live(home):
                self.retired.discard(home)
            if lo <= home <= hi:
                rec = get(home)
                if rec is None:
                    self._freed(home, True)
                    continue
                if rec.bindings:
                    self._maybe_live.add(home)
                else:
                    self._freed(home, False)
                if rec.nai:
                    self._remember(rec.nai.lower(), home, bool(rec.bindings))

    def _remember(self, key: bytes, address: int, live: bool) -> None:
        current = self._hint.get(key)
        if current is not None and current != address:
            other = self.table.live(current)
            if other is not None and other.nai.lower() == key:
                # the NAI holds ``current`` live: a tombstone never hides it, and a second live
                # address is a duplicate: the one that prevails stays in the hint
                if not live:
                    return
                rec = self.table.live(address)
                if rec is not None:
                    loser = current if prevails(rec, other) else address
                    self._losers.add(loser)
                    if self.on_loser is not None:
                        self.on_loser()
                    if loser == address:
                        return
        self._hint[key] = address

    def losers(self) -> list[int]:
        """Live pool addresses whose NAI holds another live address that :func:`prevails` (found
        when the records met in this member's table: a peer's update, a download, a rebuild, or
        a local change). The active member ends each one's binding by an ordinary replicated
        change (``HomeAgentCore.administrative_deregister``: a tombstone with a new version that
        keeps the NAI), so every member converges on one address per NAI; the loser's mobile
        node renewing it is then refused 129 (its NAI holds another address) and asks again.
        Entries that resolved otherwise (ended, or the winner ended first) are dropped."""
        get_live = self.table.live
        found = []
        for address in sorted(self._losers):
            rec = get_live(address)
            winner = self._hint.get(rec.nai.lower()) if rec is not None and rec.nai else None
            other = get_live(winner) if winner is not None and winner != address else None
            if (
                rec is None
                or other is None
                or other.nai.lower() != rec.nai.lower()
                or prevails(rec, other)
            ):
                self._losers.discard(address)
                continue
            found.append(address)
        return found

    def rebuild(self) -> None:
        """Read the hint afresh from the whole table (at start, after a journal replay)."""
        self._hint.clear()
        self._maybe_live.clear()
        self._losers.clear()
        self._spent.clear()
        self.refresh(self.table.homes())
