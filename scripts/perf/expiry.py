"""Mass expiry: N bindings with the same lifetime running out together (no root, no sockets).

    .venv/bin/python scripts/perf/expiry.py --sizes 10000,100000,1000000 [--runs 3]
        [--mode core,loop]

The table holds N one-binding records registered in a burst (their expiries spread over 0.5 s,
so they fall in one or two wheel slots), filled through ``insert_new`` as a bulk download does.

* ``core``: :meth:`HomeAgentCore.tick` called the way the daemon's timer does, again while
  ``next_deadline()`` is not in the future, until every binding has expired. Per N: the calls it
  took, the longest single call (wall and this thread's CPU: the stall a registration, a sync
  message or the control API waits behind), the total, and the cost per binding; then the same
  for purging the tombstones ``tombstone_ttl`` later.
* ``loop``: the real :class:`~mobileip.daemon.homeagent.HomeAgentDaemon` (not started: no
  sockets; its logger at ``warning``, so the 1,000,000 ``binding.expired`` lines are not
  written) on an asyncio loop, its own expiry timer doing the work, and a heartbeat that wakes
  every millisecond: the longest heartbeat lag is the longest the loop was held; the timer
  callback's calls, longest wall and CPU time, CPU per binding; and the time from the last
  binding's expiry to the last binding gone (how long an expired binding stayed).

Medians of ``--runs``. Run it against an older tree with ``PYTHONPATH=that/src`` for the before
column (an older core ticks once; the loop stops when the table is empty).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import time
from typing import Any

from mobileip.core.bindings import PACKED_ONE, BindingTable
from mobileip.core.homeagent import HomeAgentCore, HomeAgentSettings
from mobileip.core.security import SecurityAssociations

HOME0 = 0x0A800000
LIFETIME = 1800


def fill(table: BindingTable, n: int, registered: float) -> float:
    """N one-binding records registered at ``registered`` + up to 0.5 s; their last expiry."""
    homes = list(range(HOME0, HOME0 + n))
    version = 1 << 32
    exp = [registered + LIFETIME + 0.5 * i / n for i in range(n)]
    blobs = [
        PACKED_ONE.pack(h, 1, version, 0, 0.0, 1, h + 1, LIFETIME, 0, e)
        for h, e in zip(homes, exp, strict=True)
    ]
    table.insert_new(homes, blobs, [version] * n, exp, n)
    return max(exp)


def run_core(n: int, limit: int | None) -> dict[str, Any]:
    from ipaddress import IPv4Address

    core = HomeAgentCore(HomeAgentSettings(IPv4Address("192.0.2.1")), SecurityAssociations([]))
    if limit is not None:
        core.expire_per_tick = limit
    last = fill(core.table, n, 1000.0)
    now = last + 1.0  # every binding due
    calls: list[float] = []
    cpu: list[float] = []
    events = 0
    t0 = time.perf_counter()
    while True:
        deadline = core.next_deadline()
        if deadline is None or deadline > now:
            break
        t = time.perf_counter()
        c = time.thread_time()
        events += len(core.tick(now))
        calls.append(time.perf_counter() - t)
        cpu.append(time.thread_time() - c)
    total = time.perf_counter() - t0
    assert events == n and len(core.table) == 0, (events, len(core.table))
    # the tombstones, purged tombstone_ttl later (through the same wheel)
    now += core.table.tombstone_ttl + 1.0
    purge: list[float] = []
    t0 = time.perf_counter()
    while core.table.record_count:
        t = time.perf_counter()
        core.tick(now)
        purge.append(time.perf_counter() - t)
    purge_total = time.perf_counter() - t0
    return {
        "bindings": n,
        "calls": len(calls),
        "longest_call_ms": max(calls) * 1e3,
        "longest_call_cpu_ms": max(cpu) * 1e3,
        "total_ms": total * 1e3,
        "us_per_binding": total / n * 1e6,
        "purge_calls": len(purge),
        "purge_longest_call_ms": max(purge) * 1e3,
        "purge_us_per_tombstone": purge_total / n * 1e6,
    }


def run_loop(n: int, limit: int | None) -> dict[str, Any]:
    from mobileip.config import parse_config, to_toml
    from mobileip.daemon.homeagent import HomeAgentDaemon
    from mobileip.log import Logger
    from mobileip.web.control import ControlServer

    raw = {
        "homeagent": {"address": "192.0.2.1", "listen": "127.0.0.1", "port": 434},
        "security_association": [
            {
                "spi": 256,
                "algorithm": "hmac-md5",
                "key": "00" * 16,
                "home_addresses": ["10.0.0.0/8"],
            }
        ],
        "control": {"listen": "127.0.0.1:1"},
    }
    config = parse_config(to_toml(raw))
    daemon = HomeAgentDaemon(config, ControlServer(config.control), Logger(level="warning"))
    if limit is not None:
        daemon.core.expire_per_tick = limit
    # registered so that they all run out 0.2 s from now
    start = time.monotonic()
    last = fill(daemon.core.table, n, start + 0.2 - LIFETIME - 0.5)

    calls: list[float] = []
    cpu: list[float] = []
    gcs: list[float] = []
    on_timer = daemon._on_timer
    in_gc = [0.0, 0.0]  # CPU seconds the cyclic GC took so far; when the current one started

    def gc_timed(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            in_gc[1] = time.thread_time()
        else:
            in_gc[0] += time.thread_time() - in_gc[1]

    def timed() -> None:  # the daemon's own timer callback, timed (wall and this thread's CPU)
        t = time.perf_counter()
        c = time.thread_time()
        g = in_gc[0]
        on_timer()
        calls.append(time.perf_counter() - t)
        cpu.append(time.thread_time() - c)
        gcs.append(in_gc[0] - g)

    daemon._on_timer = timed  # type: ignore[method-assign]

    async def main() -> dict[str, Any]:
        lags: list[float] = []
        done = asyncio.get_running_loop().create_future()

        async def heartbeat() -> None:
            while not done.done():
                t = time.monotonic()
                await asyncio.sleep(0.001)
                lags.append(time.monotonic() - t - 0.001)
                if len(daemon.core.table) == 0 and not done.done():
                    done.set_result(time.monotonic())

        gc.callbacks.append(gc_timed)
        task = asyncio.create_task(heartbeat())
        daemon._reschedule()  # what every datagram does
        gone = await asyncio.wait_for(done, timeout=600)
        await task
        gc.callbacks.remove(gc_timed)
        worst = max(range(len(cpu)), key=cpu.__getitem__)
        during = lags
        return {
            "bindings": n,
            "timer_calls": len(calls),
            "longest_timer_ms": max(calls) * 1e3,
            "longest_timer_cpu_ms": max(cpu) * 1e3,
            "longest_timer_cpu_gc_ms": gcs[worst] * 1e3,  # the cyclic GC's part of it
            "median_timer_cpu_ms": statistics.median(cpu) * 1e3,
            "timer_gc_ms_total": sum(gcs) * 1e3,
            "timer_cpu_us_per_binding": sum(cpu) / n * 1e6,
            "longest_stall_ms": max(during) * 1e3,
            "p99_lag_ms": sorted(during)[int(len(during) * 0.99)] * 1e3,
            "last_gone_after_deadline_ms": (gone - last) * 1e3,
            "heartbeats": len(during),
        }

    return asyncio.run(main())


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", default="10000,100000,1000000")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--mode", default="core,loop")
    p.add_argument("--limit", type=int, help="wheel entries per tick (default: the core's)")
    args = p.parse_args()
    print(f"load {os.getloadavg()}")
    for mode in args.mode.split(","):
        fn = run_core if mode == "core" else run_loop
        for n in (int(s) for s in args.sizes.split(",")):
            runs = [fn(n, args.limit) for _ in range(args.runs)]
            med = {
                k: round(statistics.median(r[k] for r in runs), 3)
                for k in runs[0]
                if isinstance(runs[0][k], float)
            }
            row = {"mode": mode, "limit": args.limit, **runs[0], **med, "runs": args.runs}
            print(json.dumps(row), flush=True)
    print(f"load {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
