"""Bulk download of the whole table (FIG 4, 5): the requester's side and the responder's side.

docs/sync-protocol.md "Bulk download" (with the Table Request, Table Sync and Table Sync Ack
messages). The requester (:class:`DownloadRequester`) asks every member and the group, takes the
first member that answers ACCEPTED and declines the others, learns the members in its peer list,
accepts chunks only in order, acks cumulatively (before applying when the transport can send at
once) and turns SYNCED on the chunk flagged final; a stalled download starts over, and a round
with no usable answer asks :mod:`~mobileip.sync.coldstart` whether to declare itself SYNCED. The
responder (:class:`DownloadResponder`) answers NOT_SYNCED unless SYNCED, else the peer list
first, then chunks in a go-back-N window of ``bulk_window``, resending every chunk in flight
(rebuilt from the current table) on a timeout. Their state holders are in
:mod:`~mobileip.sync.bulk`.
"""

from __future__ import annotations

from mobileip.sync import records as rec_codec
from mobileip.sync.bulk import BulkReceiver, BulkSender, Chunk
from mobileip.sync.coldstart import cold_start_verdict
from mobileip.sync.context import (
    MemberChanged,
    SyncContext,
    SyncState,
    SyncStateChanged,
    dotted,
    int_addr,
    with_seq,
)
from mobileip.sync.members import Endpoint, Member
from mobileip.sync.merge import Merger
from mobileip.wire import sync as wire

BULK_ACK_EVERY = 4  # a table download's receiver acks every this many chunks
_NO_LIMIT = 1 << 62  # a resent chunk carries every record of its range, as they are now


class DownloadRequester:
    """The member that downloads the table (NOT SYNCED until the final chunk is applied)."""

    def __init__(self, ctx: SyncContext, merger: Merger) -> None:
        self.ctx = ctx
        self.merger = merger
        self.receiver: BulkReceiver | None = None
        # (identification, responder) of the last completed download
        self.last_download: tuple[int, Endpoint] | None = None

    def request_table(self, now: float, first: bool = False) -> None:
        ctx = self.ctx
        settings = ctx.settings
        ident = ctx.next_ident()
        rounds = 1 if first or self.receiver is None else self.receiver.rounds + 1
        self.receiver = BulkReceiver(ident, now, last_progress=now, rounds=rounds)
        ctx.counters.sent_bi_reqs += 1
        msg = wire.TableRequest(settings.group, settings.node_id, 0, ident, None)
        dests = [m.endpoint for m in ctx.members.values()]
        if settings.multicast is not None:
            dests.append(settings.multicast)
        for dest in dests:
            ctx.counters.total_sent_bi_reqs += 1
            ctx.send(with_seq(msg, ctx.next_sequence()), dest)

    def deadline(self) -> float | None:
        r = self.receiver
        if r is None:
            return None
        if r.responder is None:
            return r.started + self.ctx.settings.boot_wait
        return r.last_progress + self.ctx.settings.unreachable_after

    def on_timer(self, now: float) -> None:
        """A request round passed unanswered (or the download stalled): ask again, or (cold
        start, or alone) declare this member SYNCED."""
        r = self.receiver
        deadline = self.deadline()
        if r is None or deadline is None or now < deadline:
            return
        if r.responder is not None:
            self.abandon(now, "download stalled")
            return
        ctx = self.ctx
        ctx.counters.failed_bi_reqs += 1
        verdict = cold_start_verdict(ctx.settings, ctx.members.values(), r.started, r.rounds, now)
        if verdict is not None:
            self.receiver = None
            ctx.set_state(SyncState.SYNCED, verdict)
            return
        self.request_table(now)

    def abandon(self, now: float, reason: str) -> None:
        ctx = self.ctx
        ctx.counters.failed_bi_reps += 1
        ctx.events.append(SyncStateChanged(ctx.state, f"download restarted: {reason}"))
        self.request_table(now, first=True)

    def responder_lost(self, endpoint: Endpoint, now: float) -> None:
        """``endpoint`` went unreachable: if it was sending us the table, start over."""
        if self.receiver is not None and self.receiver.responder == endpoint:
            self.abandon(now, "responder unreachable")

    def on_table_sync(
        self, msg: wire.TableSync | wire.TableSyncChunk, m: Member, now: float
    ) -> None:
        ctx = self.ctx
        counters = ctx.counters
        counters.received_bi_reps += 1
        chunk = msg if isinstance(msg, wire.TableSyncChunk) else None
        code = msg.code
        r = self.receiver
        if r is None or msg.identification != r.identification:
            counters.dropped_bi_reps += 1
            if code == wire.SyncCode.ACCEPTED and r is None:
                # a download we no longer want (e.g. already SYNCED): tell it to stop
                self.ack(msg, m, wire.SyncCode.UNSPECIFIED, msg.more_bind)
            return
        r.answers[m.endpoint] = code
        if code != wire.SyncCode.ACCEPTED:
            m.synced = False
            return
        m.synced = True
        if r.responder is None:
            r.responder = m.endpoint
            r.last_progress = now
        if r.responder != m.endpoint:
            self.ack(msg, m, wire.SyncCode.UNSPECIFIED, msg.more_bind)
            return
        if chunk is None:
            assert isinstance(msg, wire.TableSync)
            for peer in msg.peers:
                self.learn_peer(peer)
            count = len(msg.records)
        else:
            count = chunk.count
        expected = r.received + count
        if msg.more_bind != expected:
            counters.dropped_bi_reps += 1
            self.ack(msg, m, wire.SyncCode.ACCEPTED, r.received)
            return
        r.received = expected
        r.last_progress = now
        if count:
            r.chunks += 1
        # Cumulative acks for every BULK_ACK_EVERY-th chunk, the peer list and the last chunk:
        # a quarter of the datagrams, and the sender's window (>= BULK_ACK_EVERY) never stalls.
        ack = not count or msg.final or r.chunks % BULK_ACK_EVERY == 0
        early = ack and ctx.send_now is not None
        if early:
            # before applying: the responder builds the next chunks while we apply these
            self.ack(msg, m, wire.SyncCode.ACCEPTED, r.received, at_once=True)
        try:
            if chunk is not None:
                self.merger.apply_chunk(chunk, now)
            else:
                assert isinstance(msg, wire.TableSync)
                self.merger.apply(msg.records, now)
        except Exception as exc:
            # Already counted as received (and maybe acked): never go on to SYNCED without
            # these records. Start the download over, then let the caller see the bug.
            counters.dropped["apply-failed"] += 1
            self.abandon(now, f"applying a chunk failed: {type(exc).__name__}")
            raise
        if ack and not early:
            self.ack(msg, m, wire.SyncCode.ACCEPTED, r.received)
        if msg.final:
            self.receiver = None
            self.last_download = (r.identification, m.endpoint)
            ctx.set_state(SyncState.SYNCED, f"table downloaded: {r.received} records")

    def ack(
        self,
        msg: wire.TableSync | wire.TableSyncChunk,
        m: Member,
        code: int,
        more: int,
        at_once: bool = False,
    ) -> None:
        ctx = self.ctx
        ctx.counters.sent_bi_acks += 1
        ack = wire.TableSyncAck(
            ctx.settings.group,
            ctx.settings.node_id,
            ctx.next_sequence(),
            msg.identification,
            code,
            more,
        )
        if at_once and ctx.send_now is not None:
            ctx.send_now(wire.encode(ack, ctx.auth), m.endpoint)
        else:
            ctx.send(ack, m.endpoint)

    def learn_peer(self, peer: wire.PeerInfo) -> None:
        """A member named in the responder's peer list (FIG 5 block 504)."""
        ctx = self.ctx
        if peer.node_id == ctx.settings.node_id:
            return
        ep = (dotted(peer.address), peer.port)
        if ep not in ctx.members:
            ctx.members[ep] = Member(ep, node_id=peer.node_id, synced=bool(peer.flags & 1))
            ctx.events.append(MemberChanged(ep, peer.node_id, True, "learned from peer list"))


class DownloadResponder:
    """A SYNCED member sending its table, to one requester per :class:`BulkSender`."""

    def __init__(self, ctx: SyncContext) -> None:
        self.ctx = ctx
        self.senders: dict[Endpoint, BulkSender] = {}

    def on_table_request(self, msg: wire.TableRequest, m: Member, now: float) -> None:
        ctx = self.ctx
        settings = ctx.settings
        ctx.counters.received_bi_reqs += 1
        m.synced = False  # a member that asks for the table does not have it
        if ctx.state is not SyncState.SYNCED:
            ctx.counters.sent_bi_reps += 1
            ctx.counters.total_sent_bi_reps += 1
            reply = wire.TableSync(
                settings.group,
                settings.node_id,
                ctx.next_sequence(),
                msg.identification,
                wire.SyncCode.NOT_SYNCED,
                0,
                True,
                (),
                (),
            )
            ctx.send(reply, m.endpoint)
            return
        current = self.senders.get(m.endpoint)
        if current is not None and current.identification == msg.identification:
            # Another copy of the request we are serving (a requester sends each round to the
            # group and to every member it knows: two copies, two sequences, one
            # identification). Starting over would rebuild the snapshot in a new order while
            # the requester keeps counting records from the first one: chunks spliced at that
            # count would skip records, and the requester would turn SYNCED without them.
            ctx.counters.dropped["duplicate-request"] += 1
            return
        # one-binding records first: their chunks are uniform, which the receiver applies fastest
        homes = ctx.table.homes_one_binding_first()
        sender = BulkSender(m.endpoint, msg.identification, homes)
        self.senders[m.endpoint] = sender
        self.send_peer_list(sender, now, first=True)

    def peer_infos(self) -> tuple[wire.PeerInfo, ...]:
        infos = []
        for mem in self.ctx.members.values():
            if mem.node_id == 0:
                continue
            addr = int_addr(mem.endpoint[0])
            infos.append(wire.PeerInfo(mem.node_id, addr, mem.endpoint[1], int(mem.synced)))
        return tuple(infos)

    def send_peer_list(self, sender: BulkSender, now: float, first: bool) -> None:
        ctx = self.ctx
        if first:
            ctx.counters.sent_bi_reps += 1
        ctx.counters.total_sent_bi_reps += 1
        # With nothing to send, the peer list is also the last message of the download.
        final = not sender.snapshot
        msg = wire.TableSync(
            ctx.settings.group,
            ctx.settings.node_id,
            ctx.next_sequence(),
            sender.identification,
            wire.SyncCode.ACCEPTED,
            0,
            final,
            self.peer_infos(),
            (),
        )
        ctx.send(msg, sender.requester)
        sender.deadline = now + self.rto(sender)

    def rto(self, sender: BulkSender) -> float:
        return self.ctx.settings.retransmit_interval * (1 << min(sender.timeouts, 5))

    def fill_window(self, sender: BulkSender, now: float) -> None:
        ctx = self.ctx
        counters = ctx.counters
        window = ctx.settings.bulk_window
        budget = ctx.budget() - 4  # more_bind
        get = ctx.table.packed_getter()
        snapshot = sender.snapshot
        while not sender.done_sending and len(sender.in_flight) < window:
            start = sender.position
            body, count, pos = rec_codec.chunk_body(get, snapshot, start, budget, now)
            final = pos >= len(snapshot)
            sender.position = pos
            sender.sent_records += count
            counters.sent_bi_records += count
            chunk = Chunk(start, pos, sender.sent_records, final)
            sender.done_sending = final
            sender.in_flight.append(chunk)
            counters.sent_bi_reps += 1
            self.send_chunk(sender, chunk, body, count)
            if len(sender.in_flight) == 1:
                sender.deadline = now + self.rto(sender)

    def send_chunk(self, sender: BulkSender, chunk: Chunk, body: bytes, count: int) -> None:
        ctx = self.ctx
        ctx.counters.total_sent_bi_reps += 1
        data = wire.encode_table_sync_records(
            ctx.settings.group,
            ctx.settings.node_id,
            ctx.next_sequence(),
            sender.identification,
            chunk.more_bind,
            chunk.final,
            count,
            body,
            ctx.auth,
        )
        ctx.out.append((data, sender.requester))

    def on_table_sync_ack(self, msg: wire.TableSyncAck, m: Member, now: float) -> None:
        ctx = self.ctx
        sender = self.senders.get(m.endpoint)
        if sender is None or sender.identification != msg.identification:
            ctx.counters.dropped_bi_acks += 1
            return
        ctx.counters.received_bi_acks += 1
        if msg.code != wire.SyncCode.ACCEPTED:
            del self.senders[m.endpoint]  # declined: another member serves it
            return
        progress = False
        if not sender.peers_acked:
            sender.peers_acked = True
            progress = True
            if not sender.snapshot:
                del self.senders[m.endpoint]
                return
        while sender.in_flight and sender.in_flight[0].more_bind <= msg.more_bind:
            chunk = sender.in_flight.pop(0)
            progress = True
            if chunk.final and chunk.more_bind == msg.more_bind:
                del self.senders[m.endpoint]
                return
        if progress:
            sender.timeouts = 0
            sender.deadline = now + self.rto(sender)
        self.fill_window(sender, now)

    def requester_lost(self, endpoint: Endpoint) -> None:
        """``endpoint`` went unreachable: stop sending it the table."""
        self.senders.pop(endpoint, None)

    def deadlines(self) -> list[float]:
        return [s.deadline for s in self.senders.values() if s.in_flight or not s.peers_acked]

    def on_timer(self, now: float) -> None:
        for sender in list(self.senders.values()):
            if (sender.in_flight or not sender.peers_acked) and now >= sender.deadline:
                self.timeout(sender, now)

    def timeout(self, sender: BulkSender, now: float) -> None:
        ctx = self.ctx
        sender.timeouts += 1
        if sender.timeouts > ctx.settings.max_retransmits:
            ctx.counters.failed_bi_reps += 1
            self.senders.pop(sender.requester, None)
            return
        if not sender.peers_acked:
            self.send_peer_list(sender, now, first=False)
            return
        get = ctx.table.packed_getter()
        for chunk in sender.in_flight:  # go back N, with the records as they are now
            homes = sender.snapshot[chunk.start : chunk.end]
            body, count, _ = rec_codec.chunk_body(get, homes, 0, _NO_LIMIT, now)
            self.send_chunk(sender, chunk, body, count)
        sender.deadline = now + self.rto(sender)
