"""Cost of ``GET /api/v1/pools``'s ``in_use``: counting the addresses that may be live (checked
against the table) against reading every address of the pool (the former way, kept as
``AddressPools.in_use_by_scan``), in the same run, medians of several rounds.

A /20 and a 2^20-address pool, each with a few and with many live bindings (plus tombstones:
addresses whose binding ended, which the count must skip).

    .venv/bin/python scripts/perf/pools_status.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from ipaddress import IPv4Address

from mobileip.core.bindings import Binding, BindingTable, MobilityRecord
from mobileip.core.pools import AddressPool, AddressPools

FIRST = int(IPv4Address("10.0.0.1"))


def setup(size: int, live: int) -> AddressPools:
    table = BindingTable()
    pools = AddressPools([AddressPool("p", FIRST, FIRST + size - 1)], table)
    step = max(1, size // (live * 2))
    for i in range(live * 2):  # every other one a tombstone
        home = FIRST + i * step
        bindings = (Binding(1, 600, 1e9, 0),) if i % 2 == 0 else ()
        rec = MobilityRecord(home, 1, 1, 1, bindings, 0.0 if bindings else 1.0, b"n%d@x" % i)
        table.store(rec, 0.0)
        pools.note(rec)
    return pools


def timed(fn: object, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(f"{'pool size':>10} {'live':>7} {'scan ms':>9} {'count ms':>9} {'ratio':>8}")
    for size, live in ((4094, 100), (4094, 2000), (1 << 20, 100), (1 << 20, 50_000)):
        pools = setup(size, live)
        assert pools.in_use("p") == pools.in_use_by_scan("p") == live
        scan = timed(lambda: pools.in_use_by_scan("p"), args.rounds)  # noqa: B023
        count = timed(lambda: pools.in_use_counts(), args.rounds)  # noqa: B023
        print(
            f"{size:>10} {live:>7} {scan * 1000:>9.2f} {count * 1000:>9.3f} {scan / count:>7.0f}x"
        )


if __name__ == "__main__":
    main()
