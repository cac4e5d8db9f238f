#!/usr/bin/env python3
"""Benchmark mobileip.net.rtnl in a throwaway network namespace (root).

Per-binding cost (a /32 route in table 100 + a proxy-ARP entry) for growing tables with the
batched socket, against one pyroute2 request per entry (a sample: a long-lived IPRoute and a
fresh IPRoute per request, as the data plane does today) and ``ip -batch``; the time to delete
everything; the ``ip rule`` switch with the table full; the longest single ``apply`` chunk.

    sudo .venv/bin/python scripts/perf/rtnl_bench.py [--sizes 10000,100000,1000000]
        [--proxy-max 100000] [--chunk 1000] [--repeat 3]

Proxy entries are added only up to ``--proxy-max`` bindings: the kernel keeps them in a
16-bucket hash, so each add is O(n/16) and a million of them take minutes (routes alone are run
at every size).

Kernel memory per route (route only, first repeat): the growth of the ``ip_fib_trie`` and
``ip_fib_alias`` slabs (/proc/slabinfo: objects x object size; the trie's internal nodes come
from kmalloc/vmalloc and show in ``Slab``/``VmallocUsed`` of /proc/meminfo, which are machine-wide
and so include whatever else the machine allocated meanwhile).
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from mobileip.net import rtnl

BASE = 0x0A000000  # 10.0.0.0: home addresses 10.x.y.z
TABLE = 100
PREF = 1000


def sh(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


def timed_chunks(
    sock: rtnl.RtnlSocket, msgs: Sequence[bytes], chunk: int
) -> tuple[float, list[float], int]:
    """Total seconds, per-chunk seconds, failures."""
    durations: list[float] = []
    failures = 0
    t0 = time.perf_counter()
    for start in range(0, len(msgs), chunk):
        t = time.perf_counter()
        failures += len(sock.apply(msgs[start : start + chunk]))
        durations.append(time.perf_counter() - t)
    return time.perf_counter() - t0, durations, failures


def us(seconds: float, n: int) -> str:
    return f"{seconds / n * 1e6:8.2f} us"


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:8.2f} ms"


FIB_SLABS = ("ip_fib_trie", "ip_fib_alias")


def kernel_memory() -> dict[str, int]:
    """Bytes: the FIB slabs (active objects x size) and /proc/meminfo's Slab and VmallocUsed."""
    out: dict[str, int] = {}
    try:
        for line in Path("/proc/slabinfo").read_text().splitlines():
            f = line.split()
            if f and f[0] in FIB_SLABS:
                out[f[0]] = int(f[1]) * int(f[3])
        for line in Path("/proc/meminfo").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("Slab", "VmallocUsed"):
                out[key] = int(rest.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return out


def memory_line(before: dict[str, int], after: dict[str, int], n: int) -> str:
    parts = []
    for key in (*FIB_SLABS, "Slab", "VmallocUsed"):
        if key in before and key in after:
            delta = after[key] - before[key]
            parts.append(f"{key} {delta / 2**20:+8.1f} MiB ({delta / n:6.1f} B/route)")
    return "  kernel memory: " + ", ".join(parts) if parts else "  kernel memory: not visible"


def median_of(fn: Callable[[], float], repeat: int) -> float:
    return statistics.median(fn() for _ in range(repeat))


def ours(sock: rtnl.RtnlSocket, idx: int, n: int, proxies: bool, chunk: int, repeat: int) -> None:
    kind = "route+proxy" if proxies else "route only "
    build, total, delete, rule_on, rule_off, chunk_med, chunk_max, chunk_p99 = (
        [] for _ in range(8)
    )
    memory = ""
    for rep in range(repeat):
        mem_before = kernel_memory()
        t = time.perf_counter()
        msgs = [rtnl.route_add(BASE + i, oif=idx, table=TABLE) for i in range(n)]
        if proxies:
            msgs += [rtnl.proxy_add(BASE + i, idx) for i in range(n)]
        build.append(time.perf_counter() - t)
        secs, chunks, failures = timed_chunks(sock, msgs, chunk)
        assert failures == 0, failures
        total.append(secs)
        chunk_med.append(statistics.median(chunks))
        chunk_max.append(max(chunks))
        chunk_p99.append(
            statistics.quantiles(chunks, n=100, method="inclusive")[98]
            if len(chunks) > 1
            else chunks[0]
        )
        if rep == 0 and not proxies:
            memory = memory_line(mem_before, kernel_memory(), n)
        count = len(sock.dump_routes(TABLE))
        assert count == n, (count, n)
        for _ in range(5):
            t = time.perf_counter()
            assert not sock.apply([rtnl.rule_add(PREF, TABLE)])
            rule_on.append(time.perf_counter() - t)
            t = time.perf_counter()
            assert not sock.apply([rtnl.rule_del(PREF, TABLE)])
            rule_off.append(time.perf_counter() - t)
        t = time.perf_counter()
        dels = [rtnl.route_del(BASE + i, table=TABLE) for i in range(n)]
        if proxies:
            dels += [rtnl.proxy_del(BASE + i, idx) for i in range(n)]
        _, _, failures = timed_chunks(sock, dels, chunk)
        assert failures == 0, failures
        delete.append(time.perf_counter() - t)
        assert not sock.dump_routes(TABLE) and not sock.dump_proxies()
    med = statistics.median
    print(
        f"rtnl     {kind} n={n:>8}: build {us(med(build), n)}  apply {us(med(total), n)}"
        f"  = {us(med(build) + med(total), n)}/binding  ({med(build) + med(total):6.2f} s)"
        f"  delete {us(med(delete), n)} ({med(delete):6.2f} s)"
        f"  chunk({chunk}) median {ms(med(chunk_med))} p99 {ms(med(chunk_p99))}"
        f" max {ms(max(chunk_max))}"
        f"  rule add {ms(med(rule_on))} del {ms(med(rule_off))}"
        f"  (median of {repeat})" + (f"\n{memory}" if memory else ""),
        flush=True,
    )


def pyroute2_sample(idx: int, n: int, fresh: bool) -> None:
    from pyroute2 import IPRoute

    def one(ipr: IPRoute, i: int) -> None:
        dst = f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
        ipr.route("replace", dst=f"{dst}/32", oif=idx, table=TABLE, proto=rtnl.RTPROT_MOBILEIP)
        ipr.neigh("replace", dst=dst, ifindex=idx, flags=rtnl.NTF_PROXY, state=rtnl.NUD_PERMANENT)

    t = time.perf_counter()
    if fresh:
        for i in range(n):
            with IPRoute() as ipr:
                one(ipr, i)
    else:
        with IPRoute() as ipr:
            for i in range(n):
                one(ipr, i)
    secs = time.perf_counter() - t
    label = "fresh IPRoute per entry" if fresh else "one IPRoute, 1 call/msg"
    print(f"pyroute2 {label:24} n={n:>6}: {us(secs, n)}/binding", flush=True)
    with rtnl.RtnlSocket() as sock:
        sock.flush_routes(TABLE)
        sock.flush_proxies(protocol=None)


def ip_batch(ifname: str, n: int) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".batch") as f:
        for i in range(n):
            dst = f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
            f.write(f"route replace {dst}/32 dev {ifname} table {TABLE} proto 77\n")
            f.write(f"neigh replace proxy {dst} dev {ifname} proto 77\n")
        f.flush()
        t = time.perf_counter()
        subprocess.run(["ip", "-batch", f.name], check=True)
        secs = time.perf_counter() - t
    print(f"ip -batch route+proxy        n={n:>6}: {us(secs, n)}/binding", flush=True)
    with rtnl.RtnlSocket() as sock:
        sock.flush_routes(TABLE)
        sock.flush_proxies()


def inner(args: argparse.Namespace) -> None:
    ifname = "v0"
    idx = int(Path(f"/sys/class/net/{ifname}/ifindex").read_text())
    Path("/proc/sys/net/ipv4/ip_forward").write_text("1\n")
    sizes = [int(s) for s in args.sizes.split(",")]
    with rtnl.RtnlSocket() as sock:
        for n in sizes:
            repeat = args.repeat if n <= 100_000 else 1
            if n <= args.proxy_max:
                ours(sock, idx, n, True, args.chunk, repeat)
            ours(sock, idx, n, False, args.chunk, repeat)
    pyroute2_sample(idx, args.pyroute2, fresh=False)
    pyroute2_sample(idx, max(1, args.pyroute2 // 20), fresh=True)
    ip_batch(ifname, args.batch)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--proxy-max", type=int, default=100_000)
    ap.add_argument("--chunk", type=int, default=rtnl.DEFAULT_CHUNK)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--pyroute2", type=int, default=2000, help="sample size (fresh: 1/20 of it)")
    ap.add_argument("--batch", type=int, default=10_000, help="ip -batch bindings")
    ap.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.inner:
        inner(args)
        return
    if os.geteuid() != 0:
        sys.exit("needs root (network namespaces)")
    ns = f"rb{secrets.token_hex(3)}"
    sh("ip", "netns", "add", ns)
    try:
        sh("ip", "-n", ns, "link", "add", "v0", "type", "veth", "peer", "name", "v1")
        for dev in ("lo", "v0", "v1"):
            sh("ip", "-n", ns, "link", "set", dev, "up")
        sh("ip", "-n", ns, "addr", "add", "192.0.2.1/24", "dev", "v0")
        argv = [sys.executable, os.path.abspath(__file__), "--inner", *sys.argv[1:]]
        subprocess.run(["ip", "netns", "exec", ns, *argv], check=True)
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


if __name__ == "__main__":
    main()
