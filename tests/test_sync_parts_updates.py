"""Reliable updates (sync/updates.py) and the merge by version (sync/merge.py), each on a bare
SyncContext, without an engine: what a flush sends and queues, what an ack clears, when
retransmission gives up, and how a peer's record is merged."""

from __future__ import annotations

from typing import Any

import pytest
from sync_strategies import AUTH, HA, NOW, B

from mobileip.core.bindings import Binding, BindingTable, MobilityRecord, make_version
from mobileip.sync import records as codec
from mobileip.sync.context import RecordsApplied, SyncContext, SyncSettings
from mobileip.sync.merge import Merger
from mobileip.sync.updates import ReliableUpdates
from mobileip.wire import sync as w


def _ctx(**settings: Any) -> SyncContext:
    ctx = SyncContext(SyncSettings(node_id=1, peers=(B,), **settings), BindingTable(), AUTH, 100)
    ctx.members[B].reachable = True
    return ctx


def _rec(home: int, counter: int, node: int = 7, last_id: int = 1000) -> MobilityRecord:
    binding = Binding(0xC0000001, 300, NOW + 300, 0)
    return MobilityRecord(home, make_version(counter, node), last_id, HA, (binding,), 0.0)


def _ack(ident: int, homes: tuple[int, ...]) -> w.BindingUpdateAck:
    return w.BindingUpdateAck(1, 2, 1, ident, w.SyncCode.ACCEPTED, homes)


def test_flush_sends_the_fresh_records_once_and_queues_them_until_acked() -> None:
    ctx = _ctx()
    updates = ReliableUpdates(ctx, Merger(ctx))
    for home in (11, 12, 13):
        ctx.table.put(_rec(home, 5), NOW)
        ctx.fresh[home] = None
    updates.flush(NOW)
    assert not ctx.fresh
    [(data, dest)] = ctx.out
    msg = w.decode(data, AUTH)
    assert dest == B and isinstance(msg, w.BindingUpdate)
    assert sorted(r.home_address for r in msg.records) == [11, 12, 13]
    assert msg.sequence == (100 << 32) | 1 and ctx.counters.sent_bu == 1
    member = ctx.members[B]
    assert member.pending == {h: make_version(5, 7) for h in (11, 12, 13)}
    assert member.next_retx == NOW + ctx.settings.retransmit_interval

    assert updates.on_ack(_ack(msg.identification + 1, ()), member, NOW) is None
    assert ctx.counters.dropped["unmatched-ack"] == 1
    sent = updates.on_ack(_ack(msg.identification, (11, 12, 13)), member, NOW + 0.01)
    assert sent is not None and sorted(sent[0]) == [11, 12, 13]
    assert member.pending == {} and member.next_retx is None
    assert updates.ack_latencies == [pytest.approx(0.01)]


def test_retransmit_resends_the_current_state_then_gives_up() -> None:
    ctx = _ctx(max_retransmits=2)
    updates = ReliableUpdates(ctx, Merger(ctx))
    member = ctx.members[B]
    ctx.table.put(_rec(21, 5), NOW)
    updates.add_pending(member, 21, make_version(5, 7), NOW)
    ctx.table.put(_rec(21, 6), NOW)  # changed again before the resend
    assert updates.retransmit(member, NOW + 1)
    [(data, dest)] = ctx.out
    msg = w.decode(data, AUTH)
    assert dest == B and isinstance(msg, w.BindingUpdate)
    assert [r.version for r in msg.records] == [make_version(6, 7)]
    assert member.pending == {21: make_version(6, 7)}
    assert updates.retransmit(member, NOW + 2)
    assert not updates.retransmit(member, NOW + 3)  # third silent round: the caller gives up
    updates.give_up(member)
    assert ctx.counters.failed_bu == 1 and member.pending == {} and member.next_retx is None


def test_on_update_merges_by_version_and_acks_every_home() -> None:
    ctx = _ctx()
    updates = ReliableUpdates(ctx, Merger(ctx))
    ctx.table.put(_rec(31, 9), NOW)  # ours is newer than what the peer sends
    older, newer = _rec(31, 4, node=2), _rec(32, 4, node=2)
    states = tuple(codec.to_state(r, NOW) for r in (older, newer))
    update = w.BindingUpdate(1, 2, 1, 77, states)
    updates.on_update(update, ctx.members[B], NOW)
    assert ctx.table.version_of(31) == make_version(9, 7)
    assert ctx.table.version_of(32) == make_version(4, 2)
    assert ctx.events == [RecordsApplied((32,))]
    [(data, dest)] = ctx.out
    ack = w.decode(data, AUTH)
    assert dest == B and isinstance(ack, w.BindingUpdateAck)
    assert ack.identification == 77 and ack.homes == (31, 32)
    assert ctx.counters.received_bus == ctx.counters.sent_bu_acks == 1


def test_merge_keeps_ours_when_the_peer_answered_an_older_request() -> None:
    ctx = _ctx(ordered_identifications=True)
    merger = Merger(ctx)
    ctx.table.put(_rec(41, 5, node=1, last_id=2000), NOW)
    assert not merger.merge(_rec(41, 4, node=9, last_id=3000), NOW)  # older version
    assert merger.merge(_rec(41, 5, node=9, last_id=1500), NOW)  # newer, older request
    assert ctx.counters.dropped["older-identification"] == 1
    kept = ctx.table.get(41)
    assert kept is not None and kept.last_id == 2000
    assert kept.version == make_version(6, 1)  # re-issued above both
    assert list(ctx.fresh) == [41]  # and queued for the group
