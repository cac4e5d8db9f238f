"""How long one anti-entropy repair holds the event loop at a given table size (no root).

    .venv/bin/python scripts/perf/antientropy_stall.py --sizes 1000000 [--buckets 1,128] [--runs 3]

A :class:`~mobileip.sync.context.SyncContext` with N one-binding records and a peer whose digest
differs in the first B buckets (twice, so the difference is stable and a repair starts); the
repair queues through the real reliable-update path (``ReliableUpdates.add_pending``). Printed per
(N, B): the longest single call the repair made on the loop (``on_digest`` or one
``on_timer`` step: the stall a registration or a sync message would wait behind; wall and this
thread's CPU, which a loaded machine separates), the calls it
took, the total time, and the records queued. Medians of ``--runs``. Run it against an older
tree with ``PYTHONPATH=that/src`` for the before column.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from typing import Any

from mobileip.core.bindings import PACKED_ONE, BindingTable
from mobileip.sync.antientropy import AntiEntropy
from mobileip.sync.context import SyncContext, SyncSettings, SyncState
from mobileip.sync.merge import Merger
from mobileip.sync.updates import ReliableUpdates
from mobileip.wire import sync as w

PEER = ("127.0.0.2", 8434)
HOME0 = 0x0A800000


def run(n: int, buckets: int) -> dict[str, Any]:
    table = BindingTable()
    now = 1000.0
    homes = list(range(HOME0, HOME0 + n))
    version = 1 << 16
    blobs = [PACKED_ONE.pack(h, 1, version, 0, 0.0, 1, h + 1, 3600, 0, now + 3600) for h in homes]
    table.insert_new(homes, blobs, [version] * n, [now + 3600] * n, n)
    ctx = SyncContext(SyncSettings(1, peers=(PEER,), max_queue=2 * n), table, None, 100)  # type: ignore[arg-type]
    ctx.state = SyncState.SYNCED
    updates = ReliableUpdates(ctx, Merger(ctx))
    ae = AntiEntropy(ctx, updates.add_pending)
    ae.start(now)
    member = ctx.members[PEER]
    ours = table.digest()
    theirs = w.Digest(
        1, 2, 1, 1, True, tuple(v ^ 1 if i < buckets else v for i, v in enumerate(ours))
    )
    ae.on_digest(theirs, member, now)
    calls = []
    cpu = []
    t0 = time.perf_counter()
    c = time.thread_time()
    ae.on_digest(theirs, member, now + 0.5)
    calls.append(time.perf_counter() - t0)
    cpu.append(time.thread_time() - c)
    # the engine calls on_timer again at once while a repair runs (older trees: never)
    while (ae.next_digest or 0) <= now + 0.5 and getattr(ae, "repairs_running", 0):
        t = time.perf_counter()
        c = time.thread_time()
        ae.on_timer(now + 0.5)
        calls.append(time.perf_counter() - t)
        cpu.append(time.thread_time() - c)
    total = time.perf_counter() - t0
    return {
        "bindings": n,
        "buckets": buckets,
        "longest_call_ms": round(max(calls) * 1e3, 2),
        "longest_call_cpu_ms": round(max(cpu) * 1e3, 2),
        "calls": len(calls),
        "total_ms": round(total * 1e3, 1),
        "queued": len(member.pending),
    }


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", default="100000,1000000")
    p.add_argument("--buckets", default="1,128")
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args()
    print(f"load {os.getloadavg()}")
    for n in (int(s) for s in args.sizes.split(",")):
        for b in (int(s) for s in args.buckets.split(",")):
            runs = [run(n, b) for _ in range(args.runs)]
            med = {
                k: statistics.median(r[k] for r in runs)
                for k in ("longest_call_ms", "longest_call_cpu_ms", "total_ms")
            }
            print(json.dumps({**runs[0], **med, "runs": args.runs}), flush=True)
    print(f"load {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
