"""The userspace backend's per-packet cost in this process, without the kernel's forwarding
(issue 14 item 4): what the Python loop and its cheapest system calls cost.

    .venv/bin/python scripts/perf/userspace_inproc.py [--old-rev REV] [--rounds 7] [--packets N]

Forward: a Unix datagram socket stands in for the TUN (one read, one packet) and ``sendmmsg``
is replaced by a function that returns its count (no system call): the cost is the TUN-like
read plus the Python loop. Reverse: a Unix datagram socket stands in for the raw socket (the
real receive path: ``recvmmsg`` in the new code) and the TUN is ``/dev/null`` (a cheap write).
Each round queues ``--packets`` IP-in-IP-bound packets (64 or 1,400 bytes), 256 at a time, and
times the callbacks that drain them; old and new alternate; medians in us per packet. No root.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from ipaddress import IPv4Address as A
from pathlib import Path
from types import ModuleType

from mobileip.dataplane.backend import TunnelSpec
from mobileip.dataplane.encap import Encapsulation, IPv4Header, build_ipv4, encapsulate

CHUNK = 256  # packets queued at a time (a Unix socket's send buffer holds ~300 of 1,400 B)
HA, COA, HOME, CN = A("10.0.0.1"), A("10.2.0.9"), A("10.1.0.5"), A("10.9.9.9")


def load(path: str, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pair() -> tuple[socket.socket, socket.socket]:
    r, w = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    r.setblocking(False)
    for s in (r, w):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 24)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 24)
    return r, w


def inner(size: int, src: A = CN, dst: A = HOME) -> bytes:
    return build_ipv4(IPv4Header(0, 0, 1, 0x4000, 63, 17, src, dst), bytes(size - 20))


def per_packet(
    w: socket.socket,
    packet: bytes,
    packets: int,
    counters: dict[str, int],
    key: str,
    step: Callable[[], object],
) -> float:
    """Microseconds per packet: ``packet`` queued on ``w`` CHUNK at a time (``packets`` in
    all, rounded down to chunks), each chunk timed while ``step`` drains it (until
    ``counters[key]`` reaches the packets queued so far)."""
    spent = 0.0
    for done in range(CHUNK, packets + 1, CHUNK):
        for _ in range(CHUNK):
            w.send(packet)
        t0 = time.perf_counter()
        while counters[key] < done:
            step()
        spent += time.perf_counter() - t0
    return spent / (packets // CHUNK * CHUNK) * 1e6


def forward(module: ModuleType, size: int, packets: int) -> float:
    backend = module.UserspaceBackend(lambda *a, **k: None, "x", HA, own=frozenset({HA}))
    backend.track(TunnelSpec(HOME, ((COA, Encapsulation.IPIP),), ()))
    backend._batch.sendmmsg = lambda fd, at, count: count
    r, w = pair()

    class Sock:
        def fileno(self) -> int:
            return -1

    backend.send_sock = Sock()
    backend.tun_fd = r.fileno()
    try:
        return per_packet(w, inner(size), packets, backend.counters, "encap-ipip", backend._on_tun)
    finally:
        r.close()
        w.close()


def reverse(module: ModuleType, size: int, packets: int) -> float:
    backend = module.UserspaceBackend(lambda *a, **k: None, "x", HA)
    backend.track(TunnelSpec(HOME, ((COA, Encapsulation.IPIP),), (COA,)))
    r, w = pair()
    null = os.open(os.devnull, os.O_WRONLY)
    backend.tun_fd = null
    p = encapsulate(inner(size - 20, HOME, CN), Encapsulation.IPIP, COA, HA, forwarding=False)
    step = partial(backend._on_tunnelled, r)
    try:
        return per_packet(w, p, packets, backend.counters, "decap-ipip", step)
    finally:
        r.close()
        w.close()
        os.close(null)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--old-rev", default="", help="compare with the module at this commit")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--packets", type=int, default=20000)
    args = p.parse_args()
    root = Path(__file__).resolve().parents[2]
    variants = {"new": load(str(root / "src/mobileip/dataplane/userspace.py"), "us_new")}
    with tempfile.TemporaryDirectory(prefix="mobileip-usip-") as tmp:
        if args.old_rev:
            old = Path(tmp) / "old.py"
            old.write_text(subprocess.run(
                ["git", "-C", str(root), "show",
                 f"{args.old_rev}:src/mobileip/dataplane/userspace.py"],
                check=True, capture_output=True, text=True).stdout)  # fmt: skip
            variants["old"] = load(str(old), "us_old")
        runs: dict[str, list[float]] = {}
        for _ in range(args.rounds):
            for path, fn in (("forward", forward), ("reverse", reverse)):
                for size in (64, 1400):
                    for name, module in variants.items():
                        runs.setdefault(f"{path} {size} {name}", []).append(
                            fn(module, size, args.packets)
                        )
    for key, values in runs.items():
        ratio = ""
        if key.endswith(" new") and "old" in variants:
            old_runs = runs[key[:-3] + "old"]
            r = [a / b for a, b in zip(values, old_runs, strict=True)]
            ratio = f"  new/old {statistics.median(r):.2f} [{min(r):.2f}-{max(r):.2f}]"
        print(f"{key:<18} {statistics.median(values):6.2f} us/packet "
              f"[{min(values):.2f}-{max(values):.2f}]{ratio}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
