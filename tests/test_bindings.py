"""The mobility binding table (mobileip.core.bindings): versions, expiry, tombstones, merge."""

from __future__ import annotations

import math

from mobileip.core.bindings import Binding, BindingTable, MobilityRecord, make_version

HOME = 0x0A010005
HOME2 = 0x0A010006
COA = 0xC0000207
COA2 = 0xC6336409
HA = 0x0A010001
NODE_A = 0x0A000001
NODE_B = 0x0A000002


def rec(home: int, version: int, bindings: tuple[Binding, ...], last_id: int = 1) -> MobilityRecord:
    return MobilityRecord(home, version, last_id, HA, bindings)


def test_binding_remaining() -> None:
    b = Binding(COA, 100, 150.0, 0)
    assert b.remaining(50.0) == 100
    assert b.remaining(50.5) == 100  # rounds up: never reports 0 while still alive
    assert b.remaining(149.9) == 1
    assert b.remaining(150.0) == 0
    assert b.remaining(1000.0) == 0
    assert Binding(COA, 0xFFFF, math.inf, 0).remaining(1e9) == 0xFFFF


def test_version_layout() -> None:
    v = make_version(7, NODE_A)
    assert v == (7 << 32) | NODE_A
    r = rec(HOME, v, ())
    assert (r.counter, r.origin) == (7, NODE_A)
    assert make_version(2, 0) > make_version(1, 0xFFFFFFFF)


def test_next_version_increases_and_embeds_origin() -> None:
    t = BindingTable()
    v1 = t.next_version(HOME, NODE_A)
    assert v1 == make_version(1, NODE_A)
    t.put(rec(HOME, v1, (Binding(COA, 10, 10.0, 0),)), 0.0)
    v2 = t.next_version(HOME, NODE_B)
    assert v2 == make_version(2, NODE_B) and v2 > v1
    assert t.next_version(HOME2, NODE_B) == make_version(1, NODE_B)


def test_put_get_live_counts() -> None:
    t = BindingTable()
    assert t.get(HOME) is None and len(t) == 0 and t.next_deadline() is None
    live = rec(HOME, make_version(1, NODE_A), (Binding(COA, 10, 10.0, 0),))
    assert t.put(live, 0.0) is None
    assert t.get(HOME) == live and t.live(HOME) == live
    assert len(t) == 1 and t.record_count == 1
    tomb = rec(HOME, make_version(2, NODE_A), ())
    assert t.put(tomb, 3.0) == live
    stored = t.get(HOME)
    assert stored is not None and stored.is_tombstone and stored.deleted_at == 3.0
    assert t.live(HOME) is None
    assert len(t) == 0 and t.record_count == 1
    assert list(t.bindings()) == []
    assert [r.home_address for r in t.records()] == [HOME]


def test_expiry_makes_tombstone_then_purges() -> None:
    t = BindingTable(tombstone_ttl=60.0)
    t.put(rec(HOME, make_version(1, NODE_A), (Binding(COA, 10, 10.0, 0),)), 0.0)
    assert t.next_deadline() == 10.0
    assert t.expire(9.0) == ([], [])
    assert len(t) == 1
    changed, purged = t.expire(10.0)
    assert purged == []
    assert len(changed) == 1 and changed[0].is_tombstone
    # same version: every member reaches the same state without talking
    assert changed[0].version == make_version(1, NODE_A)
    assert changed[0].deleted_at == 10.0
    assert len(t) == 0 and t.record_count == 1
    assert t.expire(69.0) == ([], [])
    assert t.get(HOME) is not None
    assert t.expire(70.0) == ([], [HOME])
    assert t.get(HOME) is None and t.record_count == 0
    assert t.next_deadline() is None


def test_partial_expiry_keeps_other_bindings() -> None:
    t = BindingTable()
    t.put(
        rec(
            HOME, make_version(1, NODE_A), (Binding(COA, 5, 5.0, 0x80), Binding(COA2, 9, 9.0, 0x80))
        ),
        0.0,
    )
    changed, _ = t.expire(5.0)
    assert [b.care_of_address for b in changed[0].bindings] == [COA2]
    assert not changed[0].is_tombstone
    assert len(t) == 1
    changed, _ = t.expire(9.0)
    assert changed[0].is_tombstone


def test_refreshed_binding_is_not_expired_by_old_deadline() -> None:
    t = BindingTable()
    t.put(rec(HOME, make_version(1, NODE_A), (Binding(COA, 10, 10.0, 0),)), 0.0)
    t.put(rec(HOME, make_version(2, NODE_A), (Binding(COA, 100, 105.0, 0),)), 5.0)
    assert t.expire(10.0) == ([], [])
    assert t.live(HOME) is not None
    assert t.next_deadline() == 105.0
    changed, _ = t.expire(105.0)
    assert changed and changed[0].is_tombstone


def test_infinite_binding_never_expires() -> None:
    t = BindingTable()
    t.put(rec(HOME, make_version(1, NODE_A), (Binding(COA, 0xFFFF, math.inf, 0),)), 0.0)
    assert t.next_deadline() is None
    assert t.expire(1e12) == ([], [])
    assert len(t) == 1


def test_merge_ignores_older_and_equal_versions() -> None:
    t = BindingTable()
    v5 = make_version(5, NODE_A)
    mine = rec(HOME, v5, (Binding(COA, 10, 10.0, 0),))
    assert t.merge(mine, 0.0)
    older = rec(HOME, make_version(4, NODE_B), (Binding(COA2, 10, 10.0, 0),))
    same = rec(HOME, v5, (Binding(COA2, 10, 10.0, 0),))
    assert not t.merge(older, 1.0)
    assert not t.merge(same, 1.0)
    assert t.get(HOME) == mine
    # same counter, higher origin wins the tie deterministically
    tie = rec(HOME, make_version(5, NODE_B), (Binding(COA2, 10, 10.0, 0),))
    assert t.merge(tie, 1.0)
    assert t.get(HOME) == tie


def test_merged_tombstone_beats_older_live_record() -> None:
    t = BindingTable(tombstone_ttl=30.0)
    t.put(rec(HOME, make_version(1, NODE_A), (Binding(COA, 100, 100.0, 0),)), 0.0)
    assert t.merge(rec(HOME, make_version(2, NODE_B), ()), 4.0)
    stored = t.get(HOME)
    assert stored is not None and stored.is_tombstone and stored.deleted_at == 4.0
    assert len(t) == 0
    # an old update can no longer resurrect the binding
    assert not t.merge(rec(HOME, make_version(1, NODE_A), (Binding(COA, 1, 9.0, 0),)), 5.0)
    assert t.expire(34.0) == ([], [HOME])


def test_discard_and_clear() -> None:
    t = BindingTable()
    t.put(rec(HOME, make_version(1, NODE_A), (Binding(COA, 10, 10.0, 0),)), 0.0)
    t.put(rec(HOME2, make_version(1, NODE_A), ()), 0.0)
    assert len(t) == 1 and t.record_count == 2
    assert t.discard(HOME) is not None
    assert len(t) == 0 and t.record_count == 1
    assert t.discard(HOME) is None
    t.clear()
    assert t.record_count == 0 and t.next_deadline() is None


def test_next_version_floor() -> None:
    t = BindingTable()
    assert t.next_version(HOME, NODE_A, floor=500) == make_version(500, NODE_A)
    t.put(rec(HOME, make_version(500, NODE_A), (Binding(COA, 10, 10.0, 0),)), 0.0)
    # the floor never lets a version go backwards
    assert t.next_version(HOME, NODE_B, floor=100) == make_version(501, NODE_B)
    assert t.next_version(HOME, NODE_B, floor=900) == make_version(900, NODE_B)


def test_live_count_digest_and_wheel_follow_random_changes() -> None:
    """After any sequence of puts (one or two bindings, tombstones, infinite lifetimes),
    discards and expiries, the incremental live count and digest equal a recount, every live
    record is read back as stored, and the wheel still expires what is due."""
    import random

    from mobileip.core.bindings import DIGEST_BUCKETS, bucket_of, record_hash

    rng = random.Random(7)
    t = BindingTable(tombstone_ttl=50.0)
    now = 0.0
    for step in range(3000):
        now += rng.random()
        home = HOME + rng.randrange(40)
        op = rng.random()
        if op < 0.6:
            n = rng.choice((0, 1, 1, 1, 2))
            bindings = tuple(
                Binding(
                    COA + i,
                    rng.choice((30, 0xFFFF)),
                    math.inf if rng.random() < 0.1 else now + rng.uniform(0.5, 30),
                    i,
                )
                for i in range(n)
            )
            new = rec(home, make_version(step + 1, NODE_A), bindings, last_id=step)
            before = t.get(home)
            assert t.put(new, now) == before
            got = t.get(home)
            assert got is not None and got.bindings == bindings and got.version == new.version
            assert got.deleted_at == (0.0 if bindings else now)
        elif op < 0.7:
            t.discard(home)
        else:
            t.expire(now)
        digest = [0] * DIGEST_BUCKETS
        live = 0
        for r in t.records():
            digest[bucket_of(r.home_address)] ^= record_hash(r.home_address, r.version)
            live += bool(r.bindings)
        assert t.digest() == tuple(digest)
        assert len(t) == live
    t.expire(now + 10_000)  # what is due expires; tombstones are purged after the ttl
    t.expire(now + 20_000)
    left = list(t.records())
    assert all(r.bindings and all(b.expires == math.inf for b in r.bindings) for r in left)
    assert len(t) == len(left)
