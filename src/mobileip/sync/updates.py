"""Reliable updates: Binding Updates, their acks, and unicast retransmission (FIG 6, 7, 8, 9).

docs/sync-protocol.md "Reliable updates". The local changes marked fresh are packed straight
from the packed table into as few Binding Updates as fit the datagram budget and sent to the
group; each member's ``pending[home] = version`` is cleared by its acks; what stays pending is
resent by unicast with the record's *current* state, with exponential backoff, until the member
has been silent for ``max_retransmits`` rounds (then :meth:`ReliableUpdates.retransmit` says so
and the engine marks it unreachable). The receiving side merges through
:class:`~mobileip.sync.merge.Merger` and acks. semisync's watches are told about acks by the
engine (:mod:`~mobileip.sync.semisync`).
"""

from __future__ import annotations

from mobileip.sync import records as rec_codec
from mobileip.sync.context import SyncContext
from mobileip.sync.members import Member
from mobileip.sync.merge import Merger
from mobileip.wire import sync as wire

_MAX_LATENCY_SAMPLES = 100_000  # ack latency samples kept until the metrics drain them
_RETRANSMIT_BATCH = 2048  # records resent to one member per retransmission round


class ReliableUpdates:
    def __init__(self, ctx: SyncContext, merger: Merger) -> None:
        self.ctx = ctx
        self.merger = merger
        # identification of a Binding Update -> (its homes, their versions, when first sent)
        self.sent_log: dict[int, tuple[list[int], list[int], float]] = {}
        # seconds from a Binding Update's first send (the local change's acceptance, or the
        # retransmission) to each member's ack; the metrics drain it (bounded)
        self.ack_latencies: list[float] = []

    # --- sending ---------------------------------------------------------------------------

    def fanout(self) -> list[Member]:
        return [m for m in self.ctx.members.values() if m.reachable]

    def flush(self, now: float) -> None:
        """Send the fresh local changes to the group, batched into as few messages as fit."""
        ctx = self.ctx
        fresh = ctx.fresh
        if not fresh:
            return
        homes = list(fresh)
        fresh.clear()
        targets = self.fanout()
        settings = ctx.settings
        if not targets and settings.multicast is None:
            return
        # straight from the packed table to the wire (no MobilityRecord, no RecordState)
        batches = rec_codec.update_bodies(ctx.table.packed_getter(), homes, ctx.budget(), now)
        group, node_id, auth, out = settings.group, settings.node_id, ctx.auth, ctx.out
        encode = wire.encode_binding_update_records
        counters = ctx.counters
        multicast = settings.multicast
        unicast = targets if multicast is None else [m for m in targets if m.configured]
        for body, count, sent_homes, versions in batches:
            ident = self.log_sent(sent_homes, versions, now)
            counters.sent_bu += 1
            if multicast is not None:
                # LAN members hear the group; configured (WAN) peers get their own copy
                counters.sent_bu_total += 1
                seq = ctx.next_sequence()
                out.append((encode(group, node_id, seq, ident, count, body, auth), multicast))
            for m in unicast:
                counters.sent_bu_total += 1
                seq = ctx.next_sequence()
                out.append((encode(group, node_id, seq, ident, count, body, auth), m.endpoint))
        for m in targets:
            for _body, _count, sent_homes, versions in batches:
                self.add_pending_many(m, sent_homes, versions, now)

    def log_sent(self, homes: list[int], versions: list[int], now: float) -> int:
        """A new identification for a Binding Update carrying ``homes`` at ``versions``."""
        ident = self.ctx.next_ident()
        sent_log = self.sent_log
        sent_log[ident] = (homes, versions, now)
        while len(sent_log) > self.ctx.settings.max_sent_log:
            sent_log.pop(next(iter(sent_log)))
        return ident

    def add_pending(self, m: Member, home: int, version: int, now: float) -> None:
        settings = self.ctx.settings
        if home not in m.pending and len(m.pending) >= settings.max_queue:
            self.ctx.counters.queue_dropped += 1
            return
        if m.pending.get(home, -1) < version:
            m.pending[home] = version
        if m.next_retx is None:
            m.next_retx = now + settings.retransmit_interval

    def add_pending_many(
        self, m: Member, homes: list[int], versions: list[int], now: float
    ) -> None:
        """:meth:`add_pending` of each (home, version), in order."""
        pending = m.pending
        settings = self.ctx.settings
        if len(pending) + len(homes) > settings.max_queue:
            for home, version in zip(homes, versions, strict=True):
                self.add_pending(m, home, version, now)
            return
        get = pending.get
        for home, version in zip(homes, versions, strict=True):
            if get(home, -1) < version:
                pending[home] = version
        if homes and m.next_retx is None:
            m.next_retx = now + settings.retransmit_interval

    def retransmit(self, m: Member, now: float) -> bool:
        """Resend by unicast the current state of every record ``m`` has not acked (FIG 6 614).

        False once ``m`` stayed silent for ``max_retransmits`` rounds: nothing was sent, and
        the caller marks it unreachable (which drops its queue: :meth:`give_up`)."""
        if not m.pending:
            m.next_retx = None
            m.retx_count = 0
            return True
        ctx = self.ctx
        settings = ctx.settings
        m.retx_count += 1
        if m.retx_count > settings.max_retransmits:
            return False
        homes: list[int] = []
        pending = m.pending
        version_of = ctx.table.version_of
        for home in list(pending):
            version = version_of(home)
            if version is None:  # purged tombstone: nothing left to tell
                del pending[home]
                continue
            if pending[home] < version:
                pending[home] = version
            homes.append(home)
            if len(homes) >= _RETRANSMIT_BATCH:
                break
        get = ctx.table.packed_getter()
        for body, count, sent_homes, versions in rec_codec.update_bodies(
            get, homes, ctx.budget(), now
        ):
            ident = self.log_sent(sent_homes, versions, now)
            ctx.counters.sent_bu_total += 1
            data = wire.encode_binding_update_records(
                settings.group,
                settings.node_id,
                ctx.next_sequence(),
                ident,
                count,
                body,
                ctx.auth,
            )
            ctx.out.append((data, m.endpoint))
        backoff = settings.retransmit_interval * (1 << min(m.retx_count, 5))
        m.next_retx = now + backoff if m.pending else None
        return True

    def give_up(self, m: Member) -> None:
        """``m`` went unreachable: its pending records count as failed; anti-entropy repairs
        it when it is heard again."""
        if m.pending:
            self.ctx.counters.failed_bu += len(m.pending)
            m.pending.clear()
        m.next_retx = None
        m.retx_count = 0

    # --- receiving ---------------------------------------------------------------------------

    def on_update(
        self, msg: wire.BindingUpdate | wire.BindingUpdateChunk, m: Member, now: float
    ) -> None:
        """A peer's Binding Update: merge its records by version, ack every home it carried."""
        ctx = self.ctx
        ctx.counters.received_bus += 1
        homes = self.merger.apply_update(msg, now)
        ctx.counters.sent_bu_acks += 1
        settings = ctx.settings
        ack = wire.encode_binding_update_ack(
            settings.group,
            settings.node_id,
            ctx.next_sequence(),
            msg.identification,
            wire.SyncCode.ACCEPTED,
            homes,
            ctx.auth,
        )
        ctx.out.append((ack, m.endpoint))

    def on_ack(
        self, msg: wire.BindingUpdateAck, m: Member, now: float
    ) -> tuple[list[int], list[int]] | None:
        """A member acked one of our Binding Updates: clear what it now holds from its queue.

        Returns the (homes, versions) that update carried, or None for an ack of nothing we
        remember (counted as ``dropped.unmatched-ack``)."""
        ctx = self.ctx
        sent = self.sent_log.get(msg.identification)
        if sent is None or msg.code != wire.SyncCode.ACCEPTED:
            ctx.counters.dropped["unmatched-ack"] += 1
            return None
        ctx.counters.received_bu_acks += 1
        homes, versions, sent_at = sent
        if len(self.ack_latencies) < _MAX_LATENCY_SAMPLES:
            self.ack_latencies.append(max(0.0, now - sent_at))
        progress = False
        pending = m.pending
        if pending:
            for home, version in zip(homes, versions, strict=True):
                waiting = pending.get(home)
                if waiting is not None and waiting <= version:
                    del pending[home]
                    progress = True
        if progress:
            m.retx_count = 0
            # Progress resets the backoff but must not postpone the timer: under steady load an
            # ack for a newer update arrives every few ms, and a lost older one would never be
            # retransmitted (found by tests/test_chaos_netns.py).
            if not m.pending:
                m.next_retx = None
            else:
                soon = now + ctx.settings.retransmit_interval
                m.next_retx = soon if m.next_retx is None else min(m.next_retx, soon)
        return homes, versions
