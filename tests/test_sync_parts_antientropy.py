"""Anti-entropy (sync/antientropy.py) on a bare SyncContext, no engine: digests go to every
member (and the group), and only a bucket that differs in two digests in a row, with neither
side moving, is queued for repair through the add_pending it is given."""

from __future__ import annotations

from typing import Any

from sync_strategies import AUTH, HA, NOW, B

from mobileip.core.bindings import BindingTable, MobilityRecord, bucket_of, make_version
from mobileip.sync.antientropy import AntiEntropy
from mobileip.sync.context import SyncContext, SyncSettings, SyncState
from mobileip.sync.members import Member
from mobileip.wire import sync as w

GROUP = ("239.1.1.1", 434)


def _synced(**settings: Any) -> SyncContext:
    ctx = SyncContext(SyncSettings(1, peers=(B,), **settings), BindingTable(), AUTH, 100)
    ctx.state = SyncState.SYNCED
    return ctx


def test_digest_goes_to_the_group_and_the_configured_peers_only_when_synced() -> None:
    ctx = _synced(multicast=GROUP, digest_interval=2.0)
    ctx.members[("127.0.0.9", 9)] = Member(("127.0.0.9", 9), node_id=9)  # heard on the LAN
    ae = AntiEntropy(ctx, lambda m, home, version, now: None)
    ae.start(NOW)
    ae.on_timer(NOW + 1.0)
    assert ctx.out == []
    ae.on_timer(NOW + 2.0)
    assert [dest for _, dest in ctx.out] == [GROUP, B]
    msg = w.decode(ctx.out[0][0], AUTH)
    assert isinstance(msg, w.Digest) and msg.synced and msg.buckets == ctx.table.digest()
    assert ae.next_digest == NOW + 4.0
    ctx.out.clear()
    ctx.state = SyncState.NOT_SYNCED
    ae.on_timer(NOW + 4.0)
    assert ctx.out == []


def test_only_a_stable_difference_is_repaired() -> None:
    ctx = _synced()
    rec = MobilityRecord(0x0A010005, make_version(3, 1), 1000, HA, (), 0.0)
    ctx.table.put(rec, NOW)
    queued: list[tuple[int, int]] = []
    ae = AntiEntropy(ctx, lambda m, home, version, now: queued.append((home, version)))
    member = ctx.members[B]
    theirs = w.Digest(1, 2, 1, 1, True, BindingTable().digest())  # an empty table
    ae.on_digest(theirs, member, NOW)
    assert queued == []  # the first difference may still be in flight
    ae.on_digest(theirs, member, NOW + 1)
    ae.on_timer(NOW + 1)  # the repair's scan runs in on_timer, bounded per call
    assert queued == [(rec.home_address, rec.version)]
    assert ctx.counters.repaired_records == 1 and member.next_retx == NOW + 1
    assert bucket_of(rec.home_address) in [
        i for i, (a, b) in enumerate(zip(theirs.buckets, ctx.table.digest(), strict=True)) if a != b
    ]
    ae.on_digest(w.Digest(1, 2, 1, 1, True, (1,) * 128), member, NOW + 2)  # theirs moved
    assert len(queued) == 1
