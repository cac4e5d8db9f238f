"""Anti-entropy repairs are bounded per turn (sync/antientropy.py): a bucket that differs starts
a job that looks at SCAN_PER_TURN home addresses per on_timer call, due at once while it runs,
and queues exactly the records of the differing buckets (by version, read in place)."""

from __future__ import annotations

from sync_strategies import AUTH, HA, NOW, B

from mobileip.core.bindings import BindingTable, MobilityRecord, bucket_of, make_version
from mobileip.sync import antientropy as ae_mod
from mobileip.sync.antientropy import AntiEntropy
from mobileip.sync.context import SyncContext, SyncSettings, SyncState
from mobileip.sync.members import Member
from mobileip.wire import sync as w

BASE = 0x0A010000


def _setup(n: int) -> tuple[SyncContext, AntiEntropy, list[tuple[int, int]]]:
    ctx = SyncContext(SyncSettings(1, peers=(B,), max_queue=10 * n), BindingTable(), AUTH, 100)
    ctx.state = SyncState.SYNCED
    for i in range(n):
        ctx.table.put(MobilityRecord(BASE + i, make_version(3, 1), 1000, HA, (), 0.0), NOW)
    queued: list[tuple[int, int]] = []
    ae = AntiEntropy(ctx, lambda m, home, version, now: queued.append((home, version)))
    ae.start(NOW)
    return ctx, ae, queued


def test_a_repair_is_spread_over_turns_and_queues_exactly_its_buckets() -> None:
    n = 3 * ae_mod.SCAN_PER_TURN + 100
    ctx, ae, queued = _setup(n)
    member = ctx.members[B]
    ours = ctx.table.digest()
    # theirs differs in the first 4 buckets only
    theirs = w.Digest(1, 2, 1, 1, True, tuple(v ^ 1 if i < 4 else v for i, v in enumerate(ours)))
    ae.on_digest(theirs, member, NOW)
    assert queued == [] and ae.repairs_running == 0  # the first difference may be in flight
    ae.on_digest(theirs, member, NOW + 0.1)
    assert ae.repairs_running == 1 and queued == []  # a snapshot only; the scan in on_timer
    assert ae.next_digest == NOW + 0.1  # the engine calls on_timer at once
    ae.on_timer(NOW + 0.1)
    assert 0 < len(queued) <= ae_mod.SCAN_PER_TURN  # one step only, not the whole table
    assert ae.next_digest == NOW + 0.1  # and again while the job runs
    gone = BASE + n - 1  # deleted before the scan reaches it: skipped
    ctx.table.discard(gone)
    ae.on_digest(theirs, member, NOW + 0.2)  # a digest while the job runs starts no other
    assert ae.repairs_running == 1
    steps = 1
    while ae.repairs_running:
        ae.on_timer(NOW + 0.3)
        steps += 1
    assert steps == 4
    expected = [BASE + i for i in range(n) if bucket_of(BASE + i) < 4 and BASE + i != gone]
    assert sorted(h for h, _ in queued) == expected
    assert all(v == make_version(3, 1) for _, v in queued)
    assert ctx.counters.repaired_records == len(expected)
    assert ae.next_digest == NOW + ctx.settings.digest_interval  # back to the digest only
    assert member.next_retx == NOW + 0.3 and member.retx_count == 0


def test_a_job_is_dropped_when_we_fall_out_of_sync() -> None:
    ctx, ae, queued = _setup(2 * ae_mod.SCAN_PER_TURN)
    member: Member = ctx.members[B]
    theirs = w.Digest(1, 2, 1, 1, True, tuple(v ^ 1 for v in ctx.table.digest()))
    ae.on_digest(theirs, member, NOW)
    ae.on_digest(theirs, member, NOW + 0.1)
    ae.on_timer(NOW + 0.1)
    assert ae.repairs_running == 1
    done = len(queued)
    ctx.state = SyncState.NOT_SYNCED
    ae.on_timer(NOW + 0.2)
    assert ae.repairs_running == 0 and len(queued) == done
