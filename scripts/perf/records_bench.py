#!/usr/bin/env python3
"""The replicated record's codec and table, plain records against a baseline tree (issue 16).

Runs each measurement in a child process per tree (``--baseline DIR``: an older ``src`` tree,
e.g. ``git archive <commit> src | tar -x -C DIR``; the current tree is this checkout's ``src``),
interleaved, and prints the medians and the ratio current/baseline. All records are plain
(no NAI, no NAT mapping) unless ``--extended`` is given, which measures the current tree only
with every record extended (the cost of the rare case).

    .venv/bin/python scripts/perf/records_bench.py --baseline /var/tmp/base/src [--n 100000]
        [--repeat 5] [--memory 1000000]

Per ``n`` records (microseconds per record):
* ``chunk_body``   table -> wire (the bulk sender, sync/records.py)
* ``encode``       RecordState -> bytes, the general encoder (wire.encode of Binding Updates)
* ``decode_fast``  wire.decode_chunked of Table Sync datagrams (the one-binding fast path)
* ``decode``       wire.decode of the same datagrams (every record a RecordState)
* ``apply_chunk``  the booting member's bulk apply into an empty table
* ``apply_update`` Binding Updates (one-binding bodies) merged over older records
* ``store``/``get`` the registration path's table write and read
Memory: RSS growth per binding of a table filled with ``--memory`` plain one-binding records.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parents[2] / "src"

CHILD = r"""
import gc, json, math, sys, time
from mobileip.core.bindings import Binding, BindingTable, MobilityRecord, make_version
from mobileip.sync import records as codec
from mobileip.wire import sync as w

mode, n, extended = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
NOW = 1000.0
HA = 0x0A000001
AUTH = w.GroupAuth([w.GroupKey(1000, "hmac-sha256", bytes(range(32)))], 1000)
kw = {}


def fill(t, version=make_version(5, 7)):
    for i in range(n):
        if extended:
            b = Binding(0xC0000000 + (i & 0xFF), 1800, NOW + 1800, 0, 0xCB000000 + i, 4500)
            rec = MobilityRecord(0x0A000002 + i, version, 100 + i, HA, (b,), 0.0, b"mn@x.org")
        else:
            b = Binding(0xC0000000 + (i & 0xFF), 1800, NOW + 1800, 0)
            rec = MobilityRecord(0x0A000002 + i, version, 100 + i, HA, (b,))
        t.put(rec, NOW)


def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def timed(fn):
    gc.collect()
    gc.disable()
    t0 = time.process_time()
    fn()
    dt = time.process_time() - t0
    gc.enable()
    return dt * 1e6 / n


out = {}
if mode == "memory":
    gc.collect()
    before = rss()
    t = BindingTable()
    fill(t)
    gc.collect()
    out["bytes_per_binding"] = (rss() - before) / n
    print(json.dumps(out))
    sys.exit(0)

src = BindingTable()
fill(src)
homes = src.homes_one_binding_first()
get = src.packed_getter()
budget = 1400
bodies = []


def sender():
    pos = 0
    while pos < len(homes):
        body, count, pos = codec.chunk_body(get, homes, pos, budget, NOW)
        bodies.append((body, count))


out["chunk_body"] = timed(sender)
datagrams = [
    w.encode_table_sync_records(1, 7, i + 1, 9, i, False, c, b, AUTH)
    for i, (b, c) in enumerate(bodies)
]
states = [codec.state_of(src, h, NOW) for h in homes]


def enc():
    for i in range(0, n, 28):
        w.encode(w.BindingUpdate(1, 7, i, i, tuple(states[i : i + 28])), AUTH)


out["encode"] = timed(enc)
chunks = []
out["decode_fast"] = timed(lambda: chunks.extend(w.decode_chunked(d, AUTH) for d in datagrams))
out["decode"] = timed(lambda: [w.decode(d, AUTH) for d in datagrams])


def apply_chunks():
    dst = BindingTable()
    for c in chunks:
        if isinstance(c, w.TableSyncChunk):
            codec.apply_chunk(dst, c, NOW, dst.merge)
        else:
            for st in c.records:
                dst.merge(codec.from_state(st, NOW), NOW)
    assert dst.record_count == n


out["apply_chunk"] = timed(apply_chunks)
old = BindingTable()
fill(old, make_version(4, 7))
ups = [codec.update_bodies(get, homes[i : i + 28], budget, NOW)[0] for i in range(0, n, 28)]


def apply_updates():
    for body, _c, _h, _v in ups:
        if len(body) % w.RECORD_ONE_LEN == 0 and not extended:
            codec.apply_update(old, body, NOW, old.merge, False)
        else:
            msg = w.decode(w.encode_binding_update_records(1, 7, 1, 1, _c, body, AUTH), AUTH)
            for st in msg.records:
                old.merge(codec.from_state(st, NOW), NOW)


out["apply_update"] = timed(apply_updates)
recs = list(src.records())
t2 = BindingTable()
out["store"] = timed(lambda: [t2.store(r, NOW) for r in recs])
out["get"] = timed(lambda: [t2.get(h) for h in homes])
print(json.dumps(out))
"""


def run(tree: Path, mode: str, n: int, extended: bool) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=str(tree))
    args = [sys.executable, "-c", CHILD, mode, str(n), "1" if extended else "0"]
    res = subprocess.run(args, env=env, check=True, capture_output=True, text=True)
    got: dict[str, float] = json.loads(res.stdout)
    return got


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--baseline", type=Path, required=True, help="an older src tree")
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--memory", type=int, default=1_000_000)
    p.add_argument("--extended", action="store_true", help="also: every record extended")
    a = p.parse_args()
    trees = {"baseline": a.baseline, "current": HERE}
    runs: dict[str, list[dict[str, float]]] = {k: [] for k in trees}
    ext: list[dict[str, float]] = []
    for _ in range(a.repeat):
        for name, tree in trees.items():
            runs[name].append(run(tree, "speed", a.n, False))
        if a.extended:
            ext.append(run(HERE, "speed", a.n, True))
    keys = list(runs["current"][0])
    print(f"{a.n:,} plain one-binding records, medians of {a.repeat} (us per record, CPU)")
    print(f"{'':14} {'baseline':>9} {'current':>9} {'ratio':>6}" + ("  extended" if ext else ""))
    for k in keys:
        b = statistics.median(r[k] for r in runs["baseline"])
        c = statistics.median(r[k] for r in runs["current"])
        e = f"  {statistics.median(r[k] for r in ext):8.2f}" if ext else ""
        print(f"{k:14} {b:9.2f} {c:9.2f} {c / b:6.2f}{e}")
    if a.memory:
        mem = {name: run(tree, "memory", a.memory, False) for name, tree in trees.items()}
        print(f"RSS per binding at {a.memory:,} plain bindings (bytes):")
        for name, m in mem.items():
            print(f"  {name:9} {m['bytes_per_binding']:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
