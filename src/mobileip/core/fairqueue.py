"""Fair queuing of datagrams by source address under overload, sans-IO.

When datagrams arrive faster than the daemon can handle them, something must be dropped; this
decides *what*, so that every source address gets its share and no single sender (a flood of
forged requests) can push the others out. The UDP endpoint (net/udp.py) reads the socket as fast
as it can and, only while it is overloaded, puts each datagram here instead of handling it at
once; it then handles what :meth:`FairQueue.pop` gives back.

* **Service: round robin by source.** Each source with something queued gets one datagram per
  round (deficit round robin with a quantum of one datagram: every registration costs about the
  same to handle, whatever its size).
* **Drops: longest queue drop.** The queue holds at most ``capacity`` datagrams in all. When it
  is full, the datagram dropped is the oldest one of a source with the most queued (the arrival
  itself when its own source has, counting it, at least as many as any other). A source over its
  share loses its own datagrams, never another source's; a drop costs a few dictionary and deque
  operations, long before any MAC is computed.
* **Staleness.** A datagram that waited more than ``max_wait`` seconds is dropped when its turn
  comes (its sender has given up on it; a mobile node retransmits with a new identification).

A lone source keeps the whole capacity: fairness only matters when sources compete.

The longest queue is known exactly in O(1): sources are kept in buckets by queue length (a
length changes by one at a time, so the longest only moves by one when its bucket empties).
While one source is alone in the queue (the usual overload: one busy foreign agent) neither the
buckets nor the round are kept, so that a lone source pays as little as possible for the
queue; they are rebuilt when a second source arrives.

Times are the caller's monotonic seconds; nothing here reads a clock.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass
class FairQueueStats:
    queued: int = 0  # datagrams accepted into the queue
    served: int = 0  # datagrams given back by pop()
    dropped: int = 0  # dropped because the queue was full (a longest queue's oldest)
    stale: int = 0  # dropped because they waited longer than max_wait
    max_depth: int = 0  # most datagrams queued at once
    max_sources: int = 0  # most sources with something queued at once
    dropped_by_source: Counter[Hashable] = field(default_factory=Counter)  # top talkers, bounded


class FairQueue(Generic[T]):
    """Per-source FIFO queues served round robin, with longest-queue drop at ``capacity``."""

    _TOP_TALKERS = 64

    def __init__(self, capacity: int = 4096, max_wait: float = 1.0) -> None:
        if capacity < 1:
            raise ValueError(f"capacity {capacity} must be at least 1")
        if max_wait <= 0:
            raise ValueError(f"max_wait {max_wait} must be positive")
        self.capacity = capacity
        self.max_wait = float(max_wait)
        self.stats = FairQueueStats()
        # source -> its datagrams with the time each was queued; a source is here only while it
        # has something queued, and then also once in ``_round`` (the round-robin order)
        self._queues: dict[Hashable, deque[tuple[T, float]]] = {}
        self._round: deque[Hashable] = deque()
        self._len = 0
        # queue length -> the sources with that many queued (insertion-ordered sets); _longest
        # is the largest key (0: nothing queued)
        self._by_len: dict[int, dict[Hashable, None]] = {}
        self._longest = 0

    def __len__(self) -> int:
        return self._len

    def __bool__(self) -> bool:
        return self._len > 0

    @property
    def sources(self) -> int:
        """Sources with something queued."""
        return len(self._queues)

    def depth(self, source: Hashable) -> int:
        queue = self._queues.get(source)
        return 0 if queue is None else len(queue)

    def push(self, source: Hashable, item: T, now: float) -> bool:
        """Queue ``item`` from ``source``; False when a datagram (this one or the oldest of a
        longer queue) had to be dropped to make room."""
        queues = self._queues
        queue = queues.get(source)
        if queue is not None and len(queues) == 1:
            # the lone source (one busy foreign agent): the longest queue is its own, and the
            # length buckets are left alone until a second source arrives
            n = self._len
            if n >= self.capacity:
                self._count_drop(source)
                return False
            queue.append((item, now))
            self._len = n = n + 1
            stats = self.stats
            stats.queued += 1
            if n > stats.max_depth:
                stats.max_depth = n
            return True
        if len(queues) <= 1:
            self._rebuild()  # a second source (or the first): the buckets count from here on
        mine = 0 if queue is None else len(queue)
        dropped = False
        if self._len >= self.capacity:
            longest = self._longest
            if longest <= mine + 1:
                # this source is (one of) the longest, counting the arrival: it loses the arrival
                self._count_drop(source)
                return False
            victim = next(iter(self._by_len[longest]))
            queues[victim].popleft()  # never empties it: it is longer than mine + 1 >= 1
            self._len -= 1
            self._resize(victim, longest, longest - 1)
            self._count_drop(victim)
            dropped = True
        if queue is None:
            queue = queues[source] = deque()
            self._round.append(source)
            if len(queues) > self.stats.max_sources:
                self.stats.max_sources = len(queues)
        queue.append((item, now))
        self._resize(source, mine, mine + 1)
        self._len += 1
        self.stats.queued += 1
        if self._len > self.stats.max_depth:
            self.stats.max_depth = self._len
        return not dropped

    def pop(self, now: float) -> tuple[Hashable, T] | None:
        """The next datagram in round-robin order, skipping (and counting) stale ones; None when
        nothing is queued."""
        queues = self._queues
        round_ = self._round
        while round_:
            if len(queues) == 1:  # the lone source: no round, no buckets
                source = round_[0]
                queue = queues[source]
                item, queued_at = queue.popleft()
                self._len -= 1
                if not queue:
                    del queues[source]
                    round_.clear()
            else:
                source = round_.popleft()
                queue = queues[source]
                item, queued_at = queue.popleft()
                self._len -= 1
                n = len(queue)
                self._resize(source, n + 1, n)
                if n:
                    round_.append(source)  # to the back of the round
                else:
                    del queues[source]
            if now - queued_at > self.max_wait:
                self.stats.stale += 1
                continue
            self.stats.served += 1
            return source, item
        return None

    def pop_many(self, now: float, n: int) -> list[T]:
        """Up to ``n`` datagrams, as :meth:`pop` would give them one by one (fewer only when the
        queue ran empty); the lone source's come straight off its queue."""
        queues = self._queues
        if len(queues) != 1:
            out: list[T] = []
            while len(out) < n and (popped := self.pop(now)) is not None:
                out.append(popped[1])
            return out
        source = self._round[0]
        queue = queues[source]
        max_wait = self.max_wait
        out = []
        taken = stale = 0
        while queue and len(out) < n:
            item, queued_at = queue.popleft()
            taken += 1
            if now - queued_at > max_wait:
                stale += 1
            else:
                out.append(item)
        self._len -= taken
        if not queue:
            del queues[source]
            self._round.clear()
        self.stats.stale += stale
        self.stats.served += len(out)
        return out

    def clear(self) -> int:
        """Forget everything queued (the socket is closing); how many datagrams that was."""
        n = self._len
        self._queues.clear()
        self._round.clear()
        self._by_len.clear()
        self._len = self._longest = 0
        return n

    def _rebuild(self) -> None:
        """The length buckets from scratch, with at most one source queued (in O(1))."""
        assert len(self._queues) <= 1
        self._by_len.clear()
        self._longest = 0
        for source, queue in self._queues.items():
            self._by_len[len(queue)] = {source: None}
            self._longest = len(queue)

    def _resize(self, source: Hashable, old: int, new: int) -> None:
        """``source``'s queue went from ``old`` to ``new`` datagrams (they differ by one)."""
        by_len = self._by_len
        if old:
            bucket = by_len[old]
            del bucket[source]
            if not bucket:
                del by_len[old]
                if old == self._longest and new < old:
                    self._longest = new  # ``source`` is now in the bucket below (or all empty)
        if new:
            into = by_len.get(new)
            if into is None:
                into = by_len[new] = {}
            into[source] = None
            if new > self._longest:
                self._longest = new

    def _count_drop(self, source: Hashable) -> None:
        self.stats.dropped += 1
        talkers = self.stats.dropped_by_source
        if source in talkers or len(talkers) < self._TOP_TALKERS:
            talkers[source] += 1

    def status(self) -> dict[str, object]:
        s = self.stats
        return {
            "capacity": self.capacity,
            "max_wait": self.max_wait,
            "queued_now": self._len,
            "sources_now": len(self._queues),
            "queued": s.queued,
            "served": s.served,
            "dropped": s.dropped,
            "stale": s.stale,
            "max_depth": s.max_depth,
            "max_sources": s.max_sources,
            "top_dropped": {str(k): v for k, v in s.dropped_by_source.most_common(5)},
        }
