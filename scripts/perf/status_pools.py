"""Cost of the pool summary in ``GET /api/v1/status`` (and the status page) at 50,000 live
bindings: a count (``AddressPools.in_use_counts``, O(addresses in use) with a sort) against an
answer from the summary kept for ``POOL_SUMMARY_MAX_AGE`` seconds, and the whole status reply
either way, in the same run, medians of several rounds.

    .venv/bin/python scripts/perf/status_pools.py [--live 50000] [--rounds 9]
"""

from __future__ import annotations

import argparse
import statistics
import time
from ipaddress import IPv4Address
from types import SimpleNamespace
from typing import Any

from mobileip.core.bindings import Binding, BindingTable, MobilityRecord
from mobileip.core.homeagent import HomeAgentStats
from mobileip.core.pools import AddressPool, AddressPools
from mobileip.log import Logger
from mobileip.web.status_page import StatusPage

FIRST = int(IPv4Address("10.0.0.1"))


def daemon(live: int) -> Any:
    table = BindingTable()
    pools = AddressPools([AddressPool("p", FIRST, FIRST + (1 << 20) - 1)], table)
    for i in range(live * 2):  # every other one a tombstone
        bindings = (Binding(1, 600, 1e9, 0),) if i % 2 == 0 else ()
        rec = MobilityRecord(FIRST + i, 1, 1, 1, bindings, 0.0 if bindings else 1.0, b"n%d@x" % i)
        table.store(rec, 0.0)
        pools.note(rec)
    core = SimpleNamespace(table=table, pools=pools, stats=HomeAgentStats())
    control = SimpleNamespace(add_json_route=lambda *a: None)
    config = SimpleNamespace(homeagent=SimpleNamespace(address=IPv4Address("10.1.0.1")))
    return SimpleNamespace(core=core, control=control, config=config, log=Logger(level="error"))


def timed(fn: Any, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--live", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    page = StatusPage(daemon(args.live))
    assert page.pool_summary(time.monotonic())["pools"][0]["in_use"] == args.live  # type: ignore[index]

    def miss() -> None:
        page._pools_cache = None
        page.status()

    now = time.monotonic()
    rows = [
        ("summary, counted", timed(lambda: page.daemon.core.pools.in_use_counts(), args.rounds)),
        ("summary, kept", timed(lambda: page.pool_summary(now), args.rounds)),
        ("status reply, counted", timed(miss, args.rounds)),
        ("status reply, kept", timed(page.status, args.rounds)),
    ]
    print(f"{args.live} live bindings (+ as many tombstones), medians of {args.rounds} rounds")
    for name, ms in rows:
        print(f"  {name:<24} {ms:9.3f} ms")


if __name__ == "__main__":
    main()
