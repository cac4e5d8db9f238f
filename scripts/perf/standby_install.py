"""A standby's install of a bulk download, in one process: ready time, cost per route, loop stall.

    .venv/bin/python scripts/perf/standby_install.py --sizes 100000,1000000 [--runs 3]
        [--chunk 1000] [--profile FILE] [--json]

Root. Each run happens in a fresh network namespace (``unshare(CLONE_NEWNET)`` in a child
process, so nothing is left behind): a real :class:`~mobileip.dataplane.service.DataPlaneService`
with the userspace backend (TUN device, table ``T``, the real rtnetlink socket) over a real
:class:`~mobileip.core.bindings.BindingTable`, driven by a stand-in for the bulk download: each
event-loop turn inserts ``--chunk`` one-binding records (each its own co-located care-of
address, as the failover bench's simulated nodes) with ``insert_new`` and hands their homes to
the data plane as the sync engine's ``RecordsApplied`` would. "SYNCED" is the end of that
download; "ready" is the data plane's ``converged_at`` with ``installed`` = the table.

Meanwhile a ticker task sleeps 1 ms at a time and records how late each wake-up was: the
event-loop stall the install causes (what registrations and sync messages would wait), as
p50/p99/p99.9/max; the same ticker alone for 3 s before the download gives the
machine's own stalls under its current load (``idle_loop_gap_ms``), to compare with. The
failover bench measures the same in the lab (three daemons, a real download); this is the
fast, isolated loop for finding where the time goes (``--profile`` writes a cProfile of one
run's loop).
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import gc
import json
import math
import multiprocessing
import os
import statistics
import subprocess
import sys
import time
from ipaddress import IPv4Address
from types import SimpleNamespace
from typing import Any

CLONE_NEWNET = 0x40000000
HOME0 = int(IPv4Address("10.128.0.0"))
COA0 = int(IPv4Address("10.64.0.0"))


def _unshare_net() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET)")
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)


def _percentile(data: list[float], q: float) -> float:
    if not data:
        return 0.0
    return data[max(0, math.ceil(q * len(data)) - 1)]


def _gap_summary(gaps: list[float]) -> dict[str, Any]:
    return {
        "n": len(gaps),
        "p50": round(_percentile(gaps, 0.5) * 1e3, 2),
        "p99": round(_percentile(gaps, 0.99) * 1e3, 2),
        "p99.9": round(_percentile(gaps, 0.999) * 1e3, 2),
        "max": round(gaps[-1] * 1e3, 2) if gaps else 0.0,
    }


def _rss_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


async def _run(n: int, chunk: int, batch: int, idle: float = 3.0) -> dict[str, Any]:
    from mobileip.config import DataplaneConfig
    from mobileip.core.bindings import PACKED_ONE, BindingTable
    from mobileip.dataplane.service import DataPlaneService

    table = BindingTable()
    log = SimpleNamespace(info=lambda *a, **k: None, warning=lambda *a, **k: None,
                          error=lambda *a, **k: None)  # fmt: skip
    daemon = SimpleNamespace(
        config=SimpleNamespace(
            vrrp=None, homeagent=SimpleNamespace(address=IPv4Address("10.1.0.2"))
        ),
        subscribers=[], startup_hooks=[], shutdown_hooks=[],
        control=SimpleNamespace(add_json_route=lambda m, p, f: None),
        log=log, core=SimpleNamespace(table=table),
    )  # fmt: skip
    cfg = DataplaneConfig(backend="userspace", tun_name="mipb0", batch=batch)
    service = DataPlaneService(daemon, cfg)  # type: ignore[arg-type]
    service.active = False  # a standby: routes, no rule
    longest: dict[str, float] = {}

    def timed(name: str, fn: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                took = time.perf_counter() - t
                if took > longest.get(name, 0.0):
                    longest[name] = took

        return call

    gc_longest = {0: 0.0, 1: 0.0, 2: 0.0}
    gc_long: list[tuple[float, int, float, int]] = []
    t_zero = time.time()
    gc_started = [0.0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            gc_started[0] = time.perf_counter()
        else:
            took = time.perf_counter() - gc_started[0]
            gen = info["generation"]
            gc_longest[gen] = max(gc_longest[gen], took)
            if took > 0.02:  # when, and on how many objects (those it looked at: not frozen)
                gc_long.append((round(time.time() - t_zero, 2), gen, round(took * 1e3, 1),
                                len(gc.get_objects(gen))))  # fmt: skip

    gc.callbacks.append(on_gc)
    # the loop's steps, each timed (their longest call, to find what a long loop gap was)
    # (an older tree, run with PYTHONPATH for the "before", may lack some of these steps)
    for obj, name in (
        (service, "_build"),
        (service, "_finish"),
        (service, "_freeze"),
        (service, "_batch"),
        (service, "note_homes"),
        (table, "insert_new"),
    ):
        if hasattr(obj, name):
            setattr(obj, name, timed(name.lstrip("_"), getattr(obj, name)))
    await service._start()
    gaps: list[float] = []
    stop = False

    async def ticker() -> None:
        loop = asyncio.get_running_loop()
        while not stop:
            t = loop.time()
            await asyncio.sleep(0.001)
            gaps.append(loop.time() - t - 0.001)

    tick = asyncio.create_task(ticker())
    await asyncio.sleep(idle)  # the machine's own stalls, nothing of ours running
    idle_gaps = sorted(gaps)
    gaps.clear()
    rss0 = _rss_kib()
    now = time.time()
    expires = now + 3600.0
    started = time.time()
    pack = PACKED_ONE.pack
    for first in range(0, n, chunk):
        homes = list(range(HOME0 + first, HOME0 + min(n, first + chunk)))
        version = 1 << 16
        blobs = [pack(h, HOME0 - 1, version, 0, 0.0, 1, h - HOME0 + COA0, 3600, 0, expires)
                 for h in homes]  # fmt: skip
        table.insert_new(homes, blobs, [version] * len(homes), [expires] * len(homes), len(homes))
        service.note_homes(homes)
        await asyncio.sleep(0)
    synced = time.time()
    while service.pending or len(service.installed) < n:
        await asyncio.sleep(0.01)
    status = service.status(homes=0)
    ready_at = status["converged_at"] or time.time()
    stop = True
    await tick
    rss1 = _rss_kib()
    gaps.sort()
    await service._stop()
    return {
        "bindings": n,
        "download_s": round(synced - started, 3),
        "ready_after_synced_s": round(max(0.0, ready_at - synced), 3),
        "ready_after_start_s": round(ready_at - started, 3),
        "install_us_per_route": status["install_us_per_route"],
        "longest_batch_ms": status["longest_batch_ms"],
        "installed": status["installed"],
        "loop_gap_ms": _gap_summary(gaps),
        "idle_loop_gap_ms": _gap_summary(idle_gaps),
        "longest_step_ms": {k: round(v * 1e3, 2) for k, v in longest.items()},
        "longest_gc_ms": {f"gen{k}": round(v * 1e3, 2) for k, v in gc_longest.items()},
        "gc_over_20ms": gc_long,  # (s since the service started, generation, ms, objects)
        "rss_bytes_per_binding": round((rss1 - rss0) * 1024 / n),
        "gc_counts": gc.get_count(),
    }


def _child(n: int, chunk: int, batch: int, profile: str | None, out: Any) -> None:
    _unshare_net()
    if profile:
        import cProfile

        prof = cProfile.Profile()
        res = prof.runcall(asyncio.run, _run(n, chunk, batch))
        prof.dump_stats(profile)
    else:
        res = asyncio.run(_run(n, chunk, batch))
    out.send(res)


def run_once(n: int, chunk: int, batch: int, profile: str | None = None) -> dict[str, Any]:
    ctx = multiprocessing.get_context("fork")
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(n, chunk, batch, profile, send))
    proc.start()
    res: dict[str, Any] = recv.recv()
    proc.join()
    return res


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", default="100000,1000000")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--chunk", type=int, default=1000, help="records per loop turn (download)")
    p.add_argument("--batch", type=int, default=500, help="[dataplane] batch")
    p.add_argument("--profile", help="cProfile of the first run to this file")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    if os.geteuid() != 0:
        print("standby_install.py: needs root (a network namespace)", file=sys.stderr)
        return 2
    results: dict[str, Any] = {"load": os.getloadavg(), "runs": {}}
    for size in (int(s) for s in args.sizes.split(",")):
        runs = []
        for i in range(args.runs):
            res = run_once(size, args.chunk, args.batch, args.profile if i == 0 else None)
            runs.append(res)
            if not args.json:
                print(f"{size:>9,} run {i + 1}: {json.dumps(res)}  load {os.getloadavg()[0]:.1f}",
                      flush=True)  # fmt: skip
        med = {
            k: statistics.median(r[k] for r in runs)
            for k in (
                "ready_after_synced_s",
                "ready_after_start_s",
                "download_s",
                "install_us_per_route",
                "rss_bytes_per_binding",
            )
        }
        for k in ("p99", "p99.9", "max"):
            med[f"loop_gap_{k}_ms"] = statistics.median(r["loop_gap_ms"][k] for r in runs)
            med[f"idle_gap_{k}_ms"] = statistics.median(r["idle_loop_gap_ms"][k] for r in runs)
        results["runs"][str(size)] = {"median": med, "runs": runs}
        if not args.json:
            print(f"{size:>9,} median of {len(runs)}: {json.dumps(med)}", flush=True)
    results["load_after"] = os.getloadavg()
    if args.json:
        print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
