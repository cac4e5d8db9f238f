"""Cost of a 0.0.0.0 request when a pool is full, and of an assignment when every address of the
pool has a record (only tombstones free), against a first assignment in a fresh pool (the
baseline), in process (sans-IO ``HomeAgentCore.handle_request``), medians.

    .venv/bin/python scripts/perf/pools_take.py [--prefix 10.1.0.0/16] [--rounds 7]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))

from test_pools_take import full_core, request, send

from mobileip.core.pools import AddressPool, AddressPools


def timed(core: object, data: bytes) -> float:
    t0 = time.perf_counter()
    send(core, data)  # type: ignore[arg-type]
    return time.perf_counter() - t0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prefix", default="10.1.0.0/16")
    p.add_argument("--rounds", type=int, default=7)
    args = p.parse_args()
    size = IPv4Network(args.prefix).num_addresses - 2
    t0 = time.perf_counter()
    core, pool = full_core(size)
    print(f"pool of {size} addresses filled in {time.perf_counter() - t0:.1f} s")
    first = send(core, request(b"first@example.net"))
    assert first.code == 130
    full, tomb, base = [], [], []
    fresh, _ = full_core(1)
    fresh.pools = AddressPools(  # a fresh pool of the same size: the baseline assignment
        [AddressPool("subs", pool.first, pool.last)], fresh.table
    )
    for k in range(args.rounds):
        full.append(timed(core, request(f"x{k}@example.net".encode())))
        victim = pool.first + 101 * k + 3
        nai = f"old{101 * k + 3}@example.net".encode()
        assert send(core, request(nai, IPv4Address(victim), lifetime=0)).code == 0
        tomb.append(timed(core, request(f"y{k}@example.net".encode())))
        base.append(timed(fresh, request(f"z{k}@example.net".encode())))
    ref = statistics.median(base)
    for name, values in (("fresh pool, first assignment (baseline)", base),
                         ("full pool, 0.0.0.0 -> 130", full),
                         ("every address has a record, one tombstone free", tomb)):  # fmt: skip
        med = statistics.median(values)
        print(f"  {name:<50} median {med * 1000:8.3f} ms  ({med / ref:6.1f}x baseline)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
