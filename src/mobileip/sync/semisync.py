"""semisync watches: say when a peer acked a change, so its registration reply may leave.

docs/sync-protocol.md "Sync modes and what they guarantee" (``semisync``). The daemon watches a
(home, version) it accepted; a :class:`~mobileip.sync.context.Protected` event follows once any
member acks that version or a newer one (the reliable update path's acks, fed in by the engine),
or with ``acked=False`` after ``semisync_timeout`` (counted in ``unprotected``), or at once when
no member is reachable.
"""

from __future__ import annotations

from mobileip.sync.context import Protected, SyncContext


class SemisyncWatches:
    def __init__(self, ctx: SyncContext) -> None:
        self.ctx = ctx
        # home address -> [(version waited for, deadline)]
        self.watches: dict[int, list[tuple[int, float]]] = {}

    def watch(self, home: int, version: int, now: float) -> None:
        ctx = self.ctx
        if not any(m.reachable for m in ctx.members.values()):
            ctx.counters.unprotected += 1
            ctx.events.append(Protected(home, version, False))
            return
        self.watches.setdefault(home, []).append((version, now + ctx.settings.semisync_timeout))

    def acked(self, homes: list[int], versions: list[int], node_id: int) -> None:
        """Member ``node_id`` acked ``homes`` at ``versions``: the watches they cover are done."""
        all_watches = self.watches
        events = self.ctx.events
        for home, version in zip(homes, versions, strict=True):
            watches = all_watches.get(home)
            if watches:
                left = [(v, d) for v, d in watches if v > version]
                for v, _ in watches:
                    if v <= version:
                        events.append(Protected(home, v, True, node_id))
                if left:
                    all_watches[home] = left
                else:
                    del all_watches[home]

    def timeouts(self, now: float) -> None:
        """The watches past their deadline give up: ``Protected(acked=False)``."""
        ctx = self.ctx
        for home in list(self.watches):
            left = []
            for version, deadline in self.watches[home]:
                if deadline <= now:
                    ctx.counters.unprotected += 1
                    ctx.events.append(Protected(home, version, False))
                else:
                    left.append((version, deadline))
            if left:
                self.watches[home] = left
            else:
                del self.watches[home]

    def deadlines(self) -> list[float]:
        return [deadline for watches in self.watches.values() for _, deadline in watches]

    def waiting(self) -> int:
        return sum(len(w) for w in self.watches.values())
