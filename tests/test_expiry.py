"""Mass expiry is worked through in bounded chunks (core/bindings.py ``expire``, core/homeagent.py
``tick``), and ends where expiring everything in one call did.

Work is counted, not timed: the wheel entries a call may look at (``limit``), the events and
purges each call returns. ``_old_expire`` below is the expiry before chunking (every due slot in
one call), kept as the reference the chunked one must agree with.
"""

from __future__ import annotations

import math
from dataclasses import replace
from ipaddress import IPv4Address

from hypothesis import given, settings
from hypothesis import strategies as st

from mobileip.core.bindings import (
    EXPIRE_PER_CALL,
    INFINITE,
    Binding,
    BindingTable,
    MobilityRecord,
    make_version,
)
from mobileip.core.homeagent import BindingsExpired, HomeAgentCore, HomeAgentSettings
from mobileip.core.security import SecurityAssociations

HOME0 = 0x0A000000
NOW = 1000.0


def _old_expire(t: BindingTable, now: float) -> tuple[list[MobilityRecord], list[int]]:
    """The expiry as it was before chunking (commit 9e821c5), on ``t``'s wheel."""
    changed: list[MobilityRecord] = []
    purged: list[int] = []
    if now < t._next_slot:
        return changed, purged
    due = sorted(s for s in t._wheel if s <= now)
    homes: list[int] = []
    for slot in due:
        homes.extend(t._wheel.pop(slot))
    t._next_slot = min(t._wheel) if t._wheel else math.inf
    seen: set[int] = set()
    for home in homes:
        if home in seen:
            continue
        seen.add(home)
        rec = t.get(home)
        if rec is None:
            continue
        if not rec.bindings:
            if rec.deleted_at + t.tombstone_ttl <= now:
                t.discard(home)
                purged.append(home)
            else:
                t._schedule(rec.deleted_at + t.tombstone_ttl, home)
            continue
        keep = tuple(b for b in rec.bindings if b.expires > now)
        if len(keep) == len(rec.bindings):
            soonest = min(b.expires for b in keep)
            if soonest != INFINITE:
                t._schedule(soonest, home)
            continue
        new = replace(rec, bindings=keep, deleted_at=0.0 if keep else now)
        t.store(new, now)
        changed.append(new)
    return changed, purged


def _drain(
    t: BindingTable, now: float, limit: int
) -> tuple[list[MobilityRecord], list[int], list[int]]:
    """Call ``expire`` the way the daemon's timer does until nothing is due at ``now``: every
    record changed, every home purged, and the work (changes + purges) of each call."""
    changed: list[MobilityRecord] = []
    purged: list[int] = []
    work: list[int] = []
    for _ in range(1_000_000):
        deadline = t.next_deadline()
        if deadline is None or deadline > now:
            return changed, purged, work
        c, p = t.expire(now, limit)
        changed += c
        purged += p
        work.append(len(c) + len(p))
    raise AssertionError("expiry never caught up")


def _state(t: BindingTable) -> tuple[dict[int, bytes], int, tuple[int, ...]]:
    get = t.packed_getter()
    return {h: get(h) or b"" for h in t.homes()}, len(t), t.digest()


def _one(home: int, expires: float, coa: int = 0xC0000201) -> MobilityRecord:
    return MobilityRecord(home, make_version(1, 7), 5, 1, (Binding(coa, 1800, expires, 0),))


def test_mass_expiry_is_worked_through_in_bounded_chunks() -> None:
    core = HomeAgentCore(HomeAgentSettings(IPv4Address("192.0.2.1")), SecurityAssociations([]))
    n = 2 * EXPIRE_PER_CALL + 123
    for i in range(n):  # a burst: every expiry in the same whole second
        core.table.store(_one(HOME0 + i, NOW + 1800 + i / n), NOW)
    now = NOW + 1801
    per_call: list[int] = []
    expired: list[int] = []
    while (core.next_deadline() or math.inf) <= now:
        events = core.tick(now)
        per_call.append(len(events))
        expired += [e.record.home_address for e in events if isinstance(e, BindingsExpired)]
    assert max(per_call) <= EXPIRE_PER_CALL  # bounded work per call ...
    assert len(per_call) == math.ceil(n / EXPIRE_PER_CALL)  # ... so several calls
    assert expired == [HOME0 + i for i in range(n)]  # all of it, in the order registered
    assert len(core.table) == 0 and core.stats.expired == n
    assert core.table.expiry_backlog == 0
    # the tombstones are purged tombstone_ttl later, as boundedly
    later = now + core.table.tombstone_ttl + 1
    _, purged, work = _drain(core.table, later, 1000)
    assert sorted(purged) == [HOME0 + i for i in range(n)] and max(work) <= 1000
    assert core.table.record_count == 0


def test_next_deadline_stays_due_while_a_backlog_remains() -> None:
    t = BindingTable()
    for i in range(10):
        t.store(_one(HOME0 + i, NOW + 5.5), NOW)
    assert t.next_deadline() == NOW + 6
    changed, _ = t.expire(NOW + 6, limit=4)
    assert len(changed) == 4 and t.expiry_backlog == 6
    assert t.next_deadline() == NOW + 6  # due at once: the rest waits for the next call
    changed, _ = t.expire(NOW + 6.5, limit=4)
    assert [r.home_address for r in changed] == [HOME0 + 4 + i for i in range(4)]
    changed, _ = t.expire(NOW + 7, limit=4)
    assert len(changed) == 2 and t.expiry_backlog == 0
    assert t.next_deadline() == NOW + 6 + t.tombstone_ttl  # the first tombstones' purge
    assert len(t) == 0


def test_a_registration_during_the_backlog_is_not_expired_by_the_old_entry() -> None:
    t = BindingTable()
    for i in range(10):
        t.store(_one(HOME0 + i, NOW + 5.5), NOW)
    now = NOW + 6
    t.expire(now, limit=3)  # HOME0 .. +2 expired; the others still wait
    t.store(_one(HOME0 + 1, now + 1800, 0xC0000202), now)  # back from a tombstone
    t.store(_one(HOME0 + 7, now + 1800, 0xC0000202), now)  # re-registered before its turn
    changed, _, _ = _drain(t, now, 3)
    assert [r.home_address for r in changed] == [HOME0 + i for i in (3, 4, 5, 6, 8, 9)]
    assert t.is_live(HOME0 + 1) and t.is_live(HOME0 + 7) and len(t) == 2
    changed, _, _ = _drain(t, now + 1801, 3)
    assert sorted(r.home_address for r in changed) == [HOME0 + 1, HOME0 + 7]


def test_an_infinite_lifetime_behind_an_old_wheel_entry() -> None:
    t = BindingTable()
    t.store(_one(HOME0, NOW + 10), NOW)
    t.store(replace(_one(HOME0, INFINITE), version=make_version(2, 7)), NOW + 1)
    assert _drain(t, NOW + 20, 5)[:2] == ([], [])
    assert t.is_live(HOME0) and t.next_deadline() is None


def test_a_table_that_notes_changes_sees_every_expiry() -> None:
    """A subclass overriding ``put_packed`` and ``discard`` (persistence's JournaledTable) is
    written through them."""

    class Noting(BindingTable):
        def __init__(self) -> None:
            super().__init__()
            self.noted: list[int] = []

        def put_packed(self, home: int, blob: bytes, version: int, wake: float, live: bool) -> None:
            super().put_packed(home, blob, version, wake, live)
            self.noted.append(home)

        def discard(self, home: int) -> MobilityRecord | None:
            old = super().discard(home)
            self.noted.append(-home)
            return old

    t, plain = Noting(), BindingTable()
    for table in (t, plain):
        for i in range(50):
            table.store(_one(HOME0 + i, NOW + 5), NOW)
    a = _drain(t, NOW + 6, 7)
    b = _drain(plain, NOW + 6, 7)
    assert t.noted == [HOME0 + i for i in range(50)]
    assert a == b and _state(t) == _state(plain)
    t.noted.clear()
    a = _drain(t, NOW + 6 + t.tombstone_ttl, 7)
    b = _drain(plain, NOW + 6 + t.tombstone_ttl, 7)
    assert a[1] == [HOME0 + i for i in range(50)] and t.noted == [-h for h in a[1]]
    assert a == b and _state(t) == _state(plain) == ({}, 0, (0,) * len(plain.digest()))


# --- the chunked expiry agrees with the old one-call expiry ---------------------------------

_reg = st.tuples(
    st.just("reg"), st.integers(0, 12), st.integers(1, 20), st.integers(0, 3), st.integers(0, 4)
)
_sreg = st.tuples(  # shape 1: with the S flag, beside the bindings the record has
    st.just("reg"), st.integers(0, 12), st.integers(1, 20), st.integers(0, 3), st.just(1)
)
_op = st.one_of(
    # (kind, home index, lifetime or dt, care-of index, shape: see _record)
    _reg,
    _reg,
    _sreg,
    _sreg,
    st.tuples(st.just("dereg"), st.integers(0, 12), st.just(0), st.just(0), st.just(0)),
    st.tuples(st.just("tick"), st.just(0), st.integers(0, 25), st.just(0), st.just(0)),
)


def _record(
    t: BindingTable, home: int, lifetime: int, coa: int, extra: int, now: float
) -> MobilityRecord:
    """A registration of every shape the table packs differently: plain, several bindings (S),
    an NAI, a NAT mapping, an infinite lifetime."""
    old = t.get(home)
    version = make_version(((old.version >> 32) if old else 0) + 1, 7)
    expires = INFINITE if extra == 4 else now + lifetime
    b = Binding(0xC0000200 + coa, lifetime, expires, 0)
    if extra == 3:
        b = replace(b, udp_address=0xC6336401, udp_port=4500 + coa)
    bindings: tuple[Binding, ...] = (b,)
    if extra == 1 and old is not None:  # S flag: kept beside the others
        others = tuple(x for x in old.bindings if x.care_of_address != b.care_of_address)
        bindings = (*others[:2], b)
    nai = b"mn%d@example.net" % home if extra == 2 else b""
    return MobilityRecord(home, version, 5, 1, bindings, 0.0, nai)


@settings(max_examples=150, deadline=None)
@given(ops=st.lists(_op, max_size=120), limit=st.integers(1, 6), ttl=st.integers(1, 40))
def test_chunked_expiry_matches_the_old_one_call_expiry(
    ops: list[tuple[str, int, int, int, int]], limit: int, ttl: int
) -> None:
    old, new = BindingTable(float(ttl)), BindingTable(float(ttl))
    now = NOW
    for kind, index, n, coa, extra in ops:
        home = HOME0 + index
        if kind == "tick":
            now += n + 0.25
            want_changed, want_purged = _old_expire(old, now)
            changed, purged, work = _drain(new, now, limit)
            assert changed == want_changed  # the same records, in the same order
            assert sorted(purged) == sorted(want_purged)
            assert all(w <= limit for w in work)
            assert new.expiry_backlog == 0
        elif kind == "reg":
            for t in (old, new):
                t.store(_record(t, home, n, coa, extra, now), now)
        else:
            for t in (old, new):
                rec = t.get(home)
                version = make_version(((rec.version >> 32) if rec else 0) + 1, 7)
                t.store(MobilityRecord(home, version, 5, 1, (), 0.0), now)
        assert _state(new) == _state(old)
    # and in the end everything runs out the same way
    now += 10_000
    assert _old_expire(old, now)[0] == _drain(new, now, limit)[0]
    now += 10_000
    assert sorted(_old_expire(old, now)[1]) == sorted(_drain(new, now, limit)[1])
    assert _state(new) == _state(old)  # only infinite lifetimes are left
