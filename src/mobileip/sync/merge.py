"""Merging a peer's records into our table by version, whatever message carried them.

docs/sync-protocol.md "Reliable updates" (the receiver: a record applies only if its version is
greater than ours, tombstones included) and "Ordering" (with ordered identifications, a peer's
record that answered an older request than ours never replaces ours). Binding Updates
(:mod:`~mobileip.sync.updates`) and table download chunks (:mod:`~mobileip.sync.download`) both
merge through :class:`Merger`. The per-record work stays in :mod:`mobileip.sync.records` and the
table; :meth:`Merger.merge` is what they call back for the records that need the general rule.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace

from mobileip.core.bindings import BindingTable, MobilityRecord, make_version
from mobileip.sync import records as rec_codec
from mobileip.sync.context import RecordsApplied, SyncContext
from mobileip.wire import sync as wire


class Merger:
    def __init__(self, ctx: SyncContext) -> None:
        self.ctx = ctx
        # never replaced: kept here so the per-record merge reads them in one step
        self.table = ctx.table
        self.settings = ctx.settings
        self.counters = ctx.counters
        self.fresh = ctx.fresh

    def packed_puts(self) -> bool:
        """Whether records may go into the table packed (``put_packed``): not into a table
        that notes its changes in ``store`` (persistence) but does not override ``put_packed``."""
        cls = type(self.table)
        return cls.store is BindingTable.store or cls.put_packed is not BindingTable.put_packed

    def apply_update(
        self, msg: wire.BindingUpdate | wire.BindingUpdateChunk, now: float
    ) -> Sequence[int]:
        """Merge a Binding Update's records; the homes it carried (in order, for the ack)."""
        homes: Sequence[int]
        if isinstance(msg, wire.BindingUpdateChunk):
            if self.packed_puts():
                homes, applied = rec_codec.apply_update(
                    self.table, msg.body, now, self.merge, self.settings.ordered_identifications
                )
                if applied:
                    self.ctx.events.append(RecordsApplied(tuple(applied)))
            else:
                records = msg.as_binding_update().records
                self.apply(records, now)
                homes = [st.home_address for st in records]
        else:
            self.apply(msg.records, now)
            homes = [st.home_address for st in msg.records]
        return homes

    def apply(self, states: Iterable[wire.RecordState], now: float) -> None:
        """Merge a peer's records (updates or a download chunk); announce what changed."""
        applied = []
        for st in states:
            if self.merge(rec_codec.from_state(st, now), now):
                applied.append(st.home_address)
        if applied:
            self.ctx.events.append(RecordsApplied(tuple(applied)))

    def apply_chunk(self, chunk: wire.TableSyncChunk, now: float) -> None:
        """A download chunk of one-binding records: new homes in bulk, the rest merged."""
        table = self.table
        cls = type(table)
        if cls.store is not BindingTable.store and cls.insert_new is BindingTable.insert_new:
            # a table that notes its changes in store (persistence) but not in bulk inserts
            self.apply(chunk.as_table_sync().records, now)
            return
        applied = rec_codec.apply_chunk(table, chunk, now, self.merge)
        if applied:
            self.ctx.events.append(RecordsApplied(tuple(applied)))

    def merge(self, rec: MobilityRecord, now: float) -> bool:
        """Apply a peer's record if it is newer than ours (FIG 7, FIG 9); True if ours changed.

        With ordered identifications, a record newer by version that answered an *older*
        request than ours lost a race the versions cannot see: a member that was stalled or cut
        off accepted a request its mobile node had already superseded elsewhere within the same
        second of the timestamps (the versions' counters tie, the higher node id wins). Ours
        stands, re-issued with a version above both, so the whole group settles on it
        (found by tests/test_chaos_netns.py).
        """
        order = (
            self.table.order_of(rec.home_address) if self.settings.ordered_identifications else None
        )
        if order is not None and rec.version > order[0] and rec.last_id < order[1]:
            old = self.table.get(rec.home_address)
            assert old is not None
            self.counters.dropped["older-identification"] += 1
            version = make_version(max(old.counter, rec.counter) + 1, self.settings.node_id)
            self.table.put(replace(old, version=version), now)
            self.fresh[rec.home_address] = None
            return True
        return self.table.merge(rec, now)
