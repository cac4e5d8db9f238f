"""Per-source token buckets for registration requests, sans-IO.

Each source (an IP address) has a bucket of ``burst`` tokens refilled at ``rate`` tokens per
second; a request takes one token or is refused. The daemon asks *before* the core decodes and
authenticates anything, so a flood from one address costs one dictionary lookup per datagram and
cannot use up the time the others' registrations need.

The table of buckets is bounded by ``max_sources``: when it is full, the least recently seen
source is forgotten (counted in ``evicted``). A forgotten source comes back with a full bucket,
so an attacker spraying addresses can only make the limit looser for others, never refuse them.
A bucket that has refilled completely carries no information and is dropped on the way.

Times are the caller's monotonic seconds; nothing here reads a clock.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field


@dataclass
class RateLimitStats:
    allowed: int = 0
    limited: int = 0  # requests refused because their source's bucket was empty
    evicted: int = 0  # sources forgotten because the table was full
    limited_by_source: Counter[Hashable] = field(default_factory=Counter)  # top talkers, bounded


class RateLimiter:
    """``allow(source, now)``: True to let a request through, False to drop it."""

    _TOP_TALKERS = 64

    def __init__(self, rate: float, burst: float, max_sources: int = 65536) -> None:
        if rate <= 0:
            raise ValueError(f"rate {rate} must be positive")
        if burst < 1:
            raise ValueError(f"burst {burst} must be at least 1")
        if max_sources < 1:
            raise ValueError(f"max_sources {max_sources} must be at least 1")
        self.rate = float(rate)
        self.burst = float(burst)
        self.max_sources = max_sources
        self.stats = RateLimitStats()
        # source -> (tokens, time of the last update); most recently seen last
        self._buckets: OrderedDict[Hashable, tuple[float, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def tokens(self, source: Hashable, now: float) -> float:
        """Tokens ``source`` has at ``now`` (``burst`` for an unknown source). Changes nothing."""
        state = self._buckets.get(source)
        if state is None:
            return self.burst
        tokens, last = state
        return min(self.burst, tokens + max(0.0, now - last) * self.rate)

    def allow(self, source: Hashable, now: float) -> bool:
        tokens = self.tokens(source, now)
        if source not in self._buckets and len(self._buckets) >= self.max_sources:
            self._buckets.popitem(last=False)
            self.stats.evicted += 1
        if tokens < 1.0:
            self._buckets[source] = (tokens, now)
            self._buckets.move_to_end(source)
            self.stats.limited += 1
            talkers = self.stats.limited_by_source
            if source in talkers or len(talkers) < self._TOP_TALKERS:
                talkers[source] += 1
            return False
        self._buckets[source] = (tokens - 1.0, now)
        self._buckets.move_to_end(source)
        self.stats.allowed += 1
        self._drop_full(now)
        return True

    def _drop_full(self, now: float) -> None:
        """Forget the oldest bucket if it has refilled (amortised cleanup, O(1) per call)."""
        if not self._buckets:
            return
        oldest = next(iter(self._buckets))
        if self.tokens(oldest, now) >= self.burst:
            del self._buckets[oldest]

    def status(self) -> dict[str, object]:
        top = self.stats.limited_by_source.most_common(5)
        return {
            "rate": self.rate,
            "burst": self.burst,
            "sources": len(self._buckets),
            "max_sources": self.max_sources,
            "allowed": self.stats.allowed,
            "limited": self.stats.limited,
            "evicted": self.stats.evicted,
            "top_limited": {str(k): v for k, v in top},
        }
