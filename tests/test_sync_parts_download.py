"""Bulk download (sync/download.py) between two bare SyncContexts, no engine: the responder's
peer list, chunks and acks against the requester's in-order apply; and the cold start rule
(sync/coldstart.py) on its own."""

from __future__ import annotations

from sync_strategies import AUTH, NOW, A, B, mixed_table

from mobileip.core.bindings import BindingTable
from mobileip.sync.coldstart import cold_start_verdict
from mobileip.sync.context import SyncContext, SyncSettings, SyncState, SyncStateChanged
from mobileip.sync.download import DownloadRequester, DownloadResponder
from mobileip.sync.members import Member
from mobileip.sync.merge import Merger
from mobileip.wire import sync as w

C = ("127.0.0.3", 3)


def _take(ctx: SyncContext) -> list[tuple[w.SyncMessage, tuple[str, int]]]:
    out, ctx.out = ctx.out, []
    return [(w.decode_chunked(data, AUTH), dest) for data, dest in out]


def test_download_copies_the_responders_table_and_turns_synced() -> None:
    src = SyncContext(SyncSettings(node_id=1, peers=(B,), bulk_window=4), mixed_table(), AUTH, 100)
    src.state = SyncState.SYNCED
    src.members[B].node_id = 2
    dst = SyncContext(SyncSettings(node_id=2, peers=(A,)), BindingTable(900.0), AUTH, 200)
    responder = DownloadResponder(src)
    requester = DownloadRequester(dst, Merger(dst))
    requester.request_table(NOW, first=True)
    rounds = 0
    while dst.out or src.out:
        rounds += 1
        for msg, dest in _take(dst):
            assert dest == A
            if isinstance(msg, w.TableRequest):
                responder.on_table_request(msg, src.members[B], NOW)
            else:
                assert isinstance(msg, w.TableSyncAck) and msg.code == w.SyncCode.ACCEPTED
                responder.on_table_sync_ack(msg, src.members[B], NOW)
        for msg, dest in _take(src):
            assert dest == B and isinstance(msg, w.TableSync | w.TableSyncChunk)
            requester.on_table_sync(msg, dst.members[A], NOW)
    homes = src.table.homes_one_binding_first()
    assert len(homes) == 200 and rounds > 2  # more than one window of chunks
    assert all(dst.table.version_of(h) == src.table.version_of(h) for h in homes)
    assert dst.state is SyncState.SYNCED and requester.receiver is None
    assert dst.events[-1] == SyncStateChanged(SyncState.SYNCED, "table downloaded: 200 records")
    assert requester.last_download is not None and requester.last_download[1] == A
    assert responder.senders == {} and src.counters.sent_bi_records == 200


def test_a_second_responder_is_declined_and_a_not_synced_member_says_so() -> None:
    dst = SyncContext(SyncSettings(node_id=2, peers=(A, C)), BindingTable(), AUTH, 200)
    requester = DownloadRequester(dst, Merger(dst))
    requester.request_table(NOW, first=True)
    assert requester.receiver is not None
    ident = requester.receiver.identification
    peers = w.TableSync(1, 1, 1, ident, w.SyncCode.ACCEPTED, 0, False, (), ())
    requester.on_table_sync(peers, dst.members[A], NOW)
    dst.out.clear()
    requester.on_table_sync(peers, dst.members[C], NOW)
    [(ack, dest)] = _take(dst)
    assert dest == C and isinstance(ack, w.TableSyncAck) and ack.code == w.SyncCode.UNSPECIFIED

    cold = SyncContext(SyncSettings(node_id=3, peers=(A,)), BindingTable(), AUTH, 300)
    DownloadResponder(cold).on_table_request(w.TableRequest(1, 2, 1, 9, None), cold.members[A], NOW)
    [(reply, dest)] = _take(cold)
    assert dest == A and isinstance(reply, w.TableSync)
    assert reply.code == w.SyncCode.NOT_SYNCED and reply.identification == 9 and reply.final


def _heard(node_id: int, at: float, synced: bool = False) -> Member:
    return Member(("10.0.0.9", 434), node_id=node_id, last_heard=at, synced=synced)


def test_cold_start_lowest_node_id_heard_declares_itself() -> None:
    s = SyncSettings(node_id=5, boot_wait=1.0, cold_start_rounds=3, unreachable_after=3.5)
    assert cold_start_verdict(s, [], NOW, 2, NOW + 1) is None  # not enough rounds yet
    # alone: the lowest of one (the "no member answered" branch after it is never reached)
    assert cold_start_verdict(s, [], NOW, 3, NOW + 1) == "cold start: lowest node id of 1"
    assert cold_start_verdict(s, [_heard(9, NOW)], NOW, 3, NOW + 1) == (
        "cold start: lowest node id of 2"
    )
    assert cold_start_verdict(s, [_heard(4, NOW)], NOW, 3, NOW + 1) is None  # 4 goes first
    assert cold_start_verdict(s, [_heard(9, NOW, synced=True)], NOW, 3, NOW + 1) is None
    # heard only before this round's boot_wait: not counted
    assert cold_start_verdict(s, [_heard(4, NOW - 2.0)], NOW, 3, NOW + 1) == (
        "cold start: lowest node id of 1"
    )
