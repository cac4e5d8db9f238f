"""Anti-entropy: periodic per-bucket digests, and the repair of buckets that stay different.

docs/sync-protocol.md "Anti-entropy" (and the Digest message, type 69). A SYNCED member sends its
table's 128-bucket digest every ``digest_interval`` (it is also the heartbeat) to every member,
and to one member at once when that member is heard again. A bucket that differed in two digests
in a row, with neither side's value moving in between, is queued record by record for that member
through the reliable update path (the ``add_pending`` this part is given); merging by version on
the other side does the rest.

Finding a bucket's records means looking at every home address of the table (the table keeps no
per-bucket index: one maintained on every store cost the registration path 0.2 us and was
slower with many buckets). At a million bindings that scan, done in one go on a digest, held the
event loop for seconds (every digest differs while a peer lags), so a repair is a job: a
snapshot of the table's home addresses, scanned :data:`SCAN_PER_TURN` at a time (fewer when many
buckets differ: about :data:`QUEUE_PER_TURN` records queued), one step per
:meth:`AntiEntropy.on_timer` call, which the engine makes due at once while a job is under way
(:attr:`AntiEntropy.next_digest`). Records are queued with their version read in place (no
unpacking). A home added after the snapshot is not in it (the reliable updates carry it, and a
later digest finds it if not); one gone by the time the scan reaches it is skipped. While a job
for a member runs, its digests start no other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mobileip.core.bindings import DIGEST_BUCKETS
from mobileip.sync.context import SyncContext, SyncState, with_seq
from mobileip.sync.members import Member
from mobileip.wire import sync as wire

AddPending = Callable[[Member, int, int, float], None]  # (member, home, version, now)

SCAN_PER_TURN = 8192  # home addresses a repair job looks at per on_timer call (~1-2 ms)
QUEUE_PER_TURN = 1024  # about as many records queued per call: fewer homes when many buckets


@dataclass(slots=True)
class _Repair:
    """One member's repair: the buckets to queue, a snapshot of the homes, how far we are."""

    member: Member
    wanted: frozenset[int]
    homes: list[int]
    pos: int = 0


class AntiEntropy:
    def __init__(self, ctx: SyncContext, add_pending: AddPending) -> None:
        self.ctx = ctx
        self.add_pending = add_pending
        self._digest_at: float | None = None
        self._repairs: dict[tuple[str, int], _Repair] = {}  # by member endpoint, in start order
        self._repair_at: float | None = None  # when the next step is due (now, while any)

    @property
    def next_digest(self) -> float | None:
        """When :meth:`on_timer` is due: the next digest, or at once while a repair runs."""
        if self._repair_at is None:
            return self._digest_at
        if self._digest_at is None:
            return self._repair_at
        return min(self._digest_at, self._repair_at)

    @property
    def repairs_running(self) -> int:
        return len(self._repairs)

    def start(self, now: float) -> None:
        self._digest_at = now + self.ctx.settings.digest_interval

    def on_timer(self, now: float) -> None:
        """Send the periodic digest when it is due (only a SYNCED member sends one); one step
        of a repair under way."""
        if self._repairs:
            self._repair_step(now)
        if self._digest_at is not None and now >= self._digest_at:
            self._digest_at = now + self.ctx.settings.digest_interval
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
        if not stable or m.endpoint in self._repairs:
            return
        # the snapshot here (a C-level copy: ~10 ms at 1,000,000), the scan in on_timer
        self._repairs[m.endpoint] = _Repair(m, frozenset(stable), ctx.table.homes())
        self._repair_at = now

    def _repair_step(self, now: float) -> None:
        """Scan the next :data:`SCAN_PER_TURN` homes of the oldest job; queue its buckets'."""
        ctx = self.ctx
        key, job = next(iter(self._repairs.items()))
        m = job.member
        if ctx.state is not SyncState.SYNCED or ctx.members.get(key) is not m:
            del self._repairs[key]  # we fell out of sync, or the member was dropped
        else:
            # the share of homes queued is the share of buckets wanted
            step = min(
                SCAN_PER_TURN,
                max(QUEUE_PER_TURN, QUEUE_PER_TURN * DIGEST_BUCKETS // len(job.wanted)),
            )
            chunk = job.homes[job.pos : job.pos + step]
            job.pos += len(chunk)
            wanted = job.wanted
            # bucket_of, inlined (this runs over every home of the table)
            hit = [h for h in chunk if ((h * 0x9E3779B1) >> 16) % DIGEST_BUCKETS in wanted]
            version_of = ctx.table.version_of
            queued = 0
            for home in hit:
                version = version_of(home)
                if version is not None:
                    self.add_pending(m, home, version, now)
                    queued += 1
            if queued:
                ctx.counters.repaired_records += queued
                m.next_retx = now
                m.retx_count = 0
            if job.pos >= len(job.homes):
                del self._repairs[key]
            else:  # round-robin between members' jobs
                self._repairs[key] = self._repairs.pop(key)
        self._repair_at = now if self._repairs else None
