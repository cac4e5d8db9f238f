"""Anti-entropy: periodic per-bucket digests, and the repair of buckets that stay different.

docs/sync-protocol.md "Anti-entropy" (and the Digest message, type 69). A SYNCED member sends its
table's 128-bucket digest every ``digest_interval`` (it is also the heartbeat) to every member,
and to one member at once when that member is heard again. A bucket that differed in two digests
in a row, with neither side's value moving in between, is queued record by record for that member
through the reliable update path (the ``add_pending`` this part is given); merging by version on
the other side does the rest.
"""

from __future__ import annotations

from collections.abc import Callable

from mobileip.sync.context import SyncContext, SyncState, with_seq
from mobileip.sync.members import Member
from mobileip.wire import sync as wire

AddPending = Callable[[Member, int, int, float], None]  # (member, home, version, now)


class AntiEntropy:
    def __init__(self, ctx: SyncContext, add_pending: AddPending) -> None:
        self.ctx = ctx
        self.add_pending = add_pending
        self.next_digest: float | None = None

    def start(self, now: float) -> None:
        self.next_digest = now + self.ctx.settings.digest_interval

    def on_timer(self, now: float) -> None:
        """Send the periodic digest when it is due (only a SYNCED member sends one)."""
        if self.next_digest is not None and now >= self.next_digest:
            self.next_digest = now + self.ctx.settings.digest_interval
            if self.ctx.state is SyncState.SYNCED:
                self.send_digest(now)

    def send_digest(self, now: float, only: Member | None = None) -> None:
        ctx = self.ctx
        settings = ctx.settings
        digest = ctx.table.digest()
        msg = wire.Digest(
            settings.group,
            settings.node_id,
            0,
            ctx.next_ident(),
            ctx.state is SyncState.SYNCED,
            digest,
        )
        targets = [only] if only is not None else list(ctx.members.values())
        if only is None and settings.multicast is not None:
            ctx.send(with_seq(msg, ctx.next_sequence()), settings.multicast)
            targets = [m for m in targets if m.configured]
        for m in targets:
            ctx.send(with_seq(msg, ctx.next_sequence()), m.endpoint)

    def on_digest(self, msg: wire.Digest, m: Member, now: float) -> None:
        ctx = self.ctx
        m.synced = msg.synced
        if ctx.state is not SyncState.SYNCED or not msg.synced:
            return
        ours = ctx.table.digest()
        if len(msg.buckets) != len(ours):
            ctx.counters.dropped["digest-size"] += 1
            return
        # the common case, tables in sync, in one tuple comparison instead of 128
        stable = (
            []
            if msg.buckets == ours
            else [
                i
                for i, (theirs, mine) in enumerate(zip(msg.buckets, ours, strict=True))
                if theirs != mine
                and m.last_digest
                and m.last_digest[i] == theirs
                and m.our_digest_then[i] == mine
            ]
        )
        m.last_digest, m.our_digest_then = msg.buckets, ours
        if not stable:
            return
        for rec in ctx.table.bucket_records(stable):
            self.add_pending(m, rec.home_address, rec.version, now)
            ctx.counters.repaired_records += 1
        m.next_retx = now
        m.retx_count = 0
