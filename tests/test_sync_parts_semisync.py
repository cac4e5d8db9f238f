"""semisync watches (sync/semisync.py) on a bare SyncContext, no engine: a watch is protected by
an ack of its version or a newer one, given up at its deadline, and unprotected at once when no
member is reachable."""

from __future__ import annotations

from sync_strategies import AUTH, NOW, B

from mobileip.core.bindings import BindingTable
from mobileip.sync.context import Protected, SyncContext, SyncSettings
from mobileip.sync.semisync import SemisyncWatches


def _ctx() -> SyncContext:
    return SyncContext(SyncSettings(1, peers=(B,), semisync_timeout=0.5), BindingTable(), AUTH, 1)


def test_no_reachable_member_means_unprotected_at_once() -> None:
    ctx = _ctx()
    watches = SemisyncWatches(ctx)
    watches.watch(7, 100, NOW)
    assert ctx.events == [Protected(7, 100, False)] and ctx.counters.unprotected == 1
    assert watches.waiting() == 0


def test_an_ack_of_a_newer_version_protects_and_the_rest_time_out() -> None:
    ctx = _ctx()
    ctx.members[B].reachable = True
    watches = SemisyncWatches(ctx)
    watches.watch(7, 100, NOW)
    watches.watch(7, 300, NOW + 0.1)
    watches.watch(8, 100, NOW + 0.2)
    assert watches.waiting() == 3
    assert sorted(watches.deadlines()) == [NOW + 0.5, NOW + 0.6, NOW + 0.7]
    watches.acked([7, 9], [200, 1], node_id=42)
    assert ctx.events == [Protected(7, 100, True, 42)]
    watches.timeouts(NOW + 0.6)
    assert ctx.events[1:] == [Protected(7, 300, False)]
    assert watches.watches == {8: [(100, NOW + 0.7)]} and ctx.counters.unprotected == 1
