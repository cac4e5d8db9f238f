"""HA-HA sync: the Digest, anti-entropy beyond the patent (docs/sync-protocol.md, "Digest (type
69, anti-entropy)").

One 64-bit hash per bucket of the sender's binding table; flag SYNCED says the sender is SYNCED.
Members compare digests and repair the buckets that differ with Binding Updates. The buckets and
their hashes are the binding table's (:mod:`mobileip.core.bindings`).
"""

from __future__ import annotations

from dataclasses import dataclass

from mobileip.wire.sync.header import _U64, _check, _Reader


@dataclass(frozen=True, slots=True)
class Digest:
    """Anti-entropy: one 64-bit hash per bucket of the sender's table."""

    group: int
    sender: int
    sequence: int
    identification: int
    synced: bool
    buckets: tuple[int, ...]


def _encode_buckets(buckets: tuple[int, ...], out: list[bytes]) -> None:
    for h in buckets:
        _check("bucket hash", h, 64)
        out.append(_U64.pack(h))


def _decode_buckets(r: _Reader, count: int) -> tuple[int, ...]:
    r.need(8 * count, "bucket hashes")
    return tuple(r.take(_U64, "a bucket hash")[0] for _ in range(count))
