"""What the reverse program itself costs, without the stack: ``BPF_PROG_TEST_RUN`` of the
shipped reverse program (mobileip.dataplane.bpf) on one reverse-tunnelled packet, once per
call (a repeat would run on the already decapsulated packet), in a scratch namespace where
the inner destination has a route and a neighbour. Variants: ``hit`` (the shipped program with
its route cache, the destination's entry current: decapsulated, forwarded from the entry, no
FIB lookup), ``miss`` (the same, the generation bumped before each call, untimed: the entry
stale, ``bpf_fib_lookup`` and the entry rewritten), ``redirect`` (no cache: decapsulated,
``bpf_fib_lookup``, TTL, MACs: ``TC_ACT_REDIRECT``, as 2026-12-07 04:00-05:00), ``stack``
(decapsulated, ``TC_ACT_OK``: the same program before 2026-12-07 04:00) and ``refused`` (an
unregistered pair: looked up, counted, dropped). Prints the mean, median and quartiles of
the kernel's own ``duration`` (ns, the program's run alone) over ``--calls`` calls,
interleaved (UML's clock ticks in 256 ns steps: read its mean). Root; inside UML for its numbers::

    python -m mobileip.tools.uml -- .venv/bin/python scripts/perf/bpf_reverse_cost.py
"""

from __future__ import annotations

import argparse
import ctypes
import json
import socket
import statistics
import struct
import subprocess
import sys
from ipaddress import IPv4Address

from mobileip.dataplane import bpf_asm as ba
from mobileip.dataplane.bpf import ROUTE, ROUTE_KEY, reverse_program
from mobileip.dataplane.encap import Encapsulation, IPv4Header, build_ipv4, encapsulate

NS = "mipcost"
HA, COA, HOME, CN = (IPv4Address(a) for a in ("192.0.2.1", "192.0.2.10", "10.1.0.5", "10.0.1.2"))
PROG_TEST_RUN = 10


def sh(cmd: str) -> str:
    return subprocess.run(cmd, shell=True, check=True, capture_output=True, text=True).stdout


def test_run(fd: int, packet: bytes, ifindex: int) -> tuple[int, int]:
    """One run: (return value, duration ns)."""
    data = ctypes.create_string_buffer(packet, len(packet))
    out = ctypes.create_string_buffer(len(packet) + 256)
    ctx = bytearray(192)  # struct __sk_buff, ifindex at 40
    struct.pack_into("=I", ctx, ba.SKB_IFINDEX, ifindex)
    c = ctypes.create_string_buffer(bytes(ctx), len(ctx))
    attr = ba._attr("=IIIIQQIIIIQQ", fd, 0, len(packet), len(out), ba._addr(data), ba._addr(out),
                    1, 0, len(ctx), 0, ba._addr(c), 0)  # fmt: skip
    ba.bpf(PROG_TEST_RUN, attr)
    retval, duration = struct.unpack_from("=I", attr, 4)[0], struct.unpack_from("=I", attr, 36)[0]
    return int(retval), int(duration)


def inside(args: argparse.Namespace) -> int:
    index = socket.if_nametoindex("a0")
    with open("/sys/class/net/a0/address") as f:
        mac = bytes.fromhex(f.read().strip().replace(":", ""))
    allowed = ba.map_create(ba.MAP_HASH, 8, 8, 16)
    drops = ba.map_create(ba.MAP_ARRAY, 4, 8, 1)
    ba.update(allowed, HOME.packed + COA.packed, bytes(8))
    redirect = ba.prog_load(reverse_program(allowed, drops, HA), "cost_redirect")
    routes = ba.map_create(ba.MAP_LRU_HASH, ROUTE_KEY.size, ROUTE.size, 1024)
    generation = ba.map_create(ba.MAP_ARRAY, 4, 4, 1)
    ba.update(generation, bytes(4), struct.pack("<I", 1))
    cached = ba.prog_load(
        reverse_program(allowed, drops, HA, routes_fd=routes, generation_fd=generation),
        "cost_cached",
    )
    bumps = iter(range(2, 1 << 32))

    def bump() -> None:
        ba.update(generation, bytes(4), struct.pack("<I", next(bumps)))

    stack = ba.prog_load(reverse_program(allowed, drops, HA, redirect=False), "cost_stack")

    def frame(inner_src: IPv4Address) -> bytes:
        head = IPv4Header(0, 0, 1, 0, 64, socket.IPPROTO_UDP, inner_src, CN)
        payload = bytes(args.size)
        inner = build_ipv4(head, struct.pack("!HHHH", 5555, 7777, 8 + len(payload), 0) + payload)
        outer = encapsulate(inner, Encapsulation.IPIP, COA, HA, forwarding=False)
        return mac + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00" + outer

    cases = {
        "hit": (cached, frame(HOME)),
        "miss": (cached, frame(HOME)),
        "redirect": (redirect, frame(HOME)),
        "stack": (stack, frame(HOME)),
        "refused": (redirect, frame(IPv4Address("10.1.0.99"))),
    }
    times: dict[str, list[int]] = {k: [] for k in cases}
    verdicts: dict[str, set[int]] = {k: set() for k in cases}
    for _ in range(args.calls):
        for name, (fd, packet) in cases.items():
            if name == "miss":
                bump()
            ret, ns = test_run(fd, packet, index)
            times[name].append(ns)
            verdicts[name].add(ret)
    report = {}
    for name, ts in times.items():
        q = statistics.quantiles(ts, n=4)
        report[name] = {"mean_ns": round(statistics.fmean(ts)), "median_ns": statistics.median(ts),
                        "q1": q[0], "q3": q[2],
                        "verdicts": sorted(verdicts[name])}  # fmt: skip
    print(json.dumps({"size": args.size, "calls": args.calls, **report}))
    return 0


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--calls", type=int, default=20_000)
    p.add_argument("--size", type=int, default=64, help="inner UDP payload bytes")
    p.add_argument("--inside", action="store_true", help="(the run in the namespace)")
    args = p.parse_args()
    if args.inside:
        return inside(args)
    sh(f"ip netns del {NS} 2>/dev/null || true; ip netns add {NS}")
    try:
        for cmd in (
            "ip link set lo up",
            "ip link add a0 type veth peer name b0",
            "ip link add c0 type veth peer name d0",
            "ip link set a0 up; ip link set b0 up; ip link set c0 up; ip link set d0 up",
            f"ip addr add {HA}/24 dev a0",
            "ip addr add 10.0.1.1/24 dev c0",
            f"ip neigh replace {CN} lladdr 02:00:00:00:00:02 dev c0 nud permanent",
            "sysctl -qw net.ipv4.ip_forward=1",
        ):
            sh(f"ip netns exec {NS} sh -c '{cmd}'")
        argv = ["ip", "netns", "exec", NS, sys.executable, __file__, "--inside",
                "--calls", str(args.calls), "--size", str(args.size)]  # fmt: skip
        return subprocess.run(argv, check=False).returncode
    finally:
        subprocess.run(["ip", "netns", "del", NS], check=False)


if __name__ == "__main__":
    sys.exit(main())
