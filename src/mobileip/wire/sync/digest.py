"""HA-HA sync: the Digest, anti-entropy beyond the patent (docs/sync-protocol.md, "Digest (type
69, anti-entropy)").

One 64-bit hash per bucket of the sender's binding table; flag SYNCED says the sender is SYNCED.
Members compare digests and repair the buckets that differ with Binding Updates. The buckets and
their hashes are the binding table's (:mod:`mobileip.core.bindings`).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import lru_cache

from mobileip.wire.sync.header import _check, _Reader


@dataclass(frozen=True, slots=True)
class Digest:
    """Anti-entropy: one 64-bit hash per bucket of the sender's table."""

    group: int
    sender: int
    sequence: int
    identification: int
    synced: bool
    buckets: tuple[int, ...]


@lru_cache(maxsize=8)
def _u64s(count: int) -> struct.Struct:
    """``count`` big-endian 64-bit hashes in one struct call (a digest is sent and checked
    every ``digest_interval`` by every member: one call instead of 128)."""
    return struct.Struct(f"!{count}Q")


def _encode_buckets(buckets: tuple[int, ...], out: list[bytes]) -> None:
    if buckets and not (min(buckets) >= 0 and max(buckets) < 1 << 64):
        for h in buckets:
            _check("bucket hash", h, 64)  # names the one that does not fit
    out.append(_u64s(len(buckets)).pack(*buckets))


def _decode_buckets(r: _Reader, count: int) -> tuple[int, ...]:
    r.need(8 * count, "bucket hashes")
    return r.take(_u64s(count), "bucket hashes")
