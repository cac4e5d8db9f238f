"""Data-plane forwarding rows of ``mobileip bench`` (``--only forwarding``; root only).

Three network namespaces joined by two veth pairs (names ``mfb<pid>-src|ha|coa``)::

    src 10.231.1.2 --- 10.231.1.1 ha 10.231.2.1 --- 10.231.2.2 coa
    (C sender, UDP to the home address 10.231.3.1)   (counts what arrives: its veth's rx)

The same flow (UDP to one home address, IP packets of 64 and 1,400 bytes) is measured on
several paths (:data:`PATHS`), in ``repeats`` rounds; each round runs every path at every size
once, in an order rotated from round to round, so drift hits each alike:

* **ceiling**: plain kernel forwarding in ``ha`` (``HOA/32 via 10.231.2.2`` in the main table);
* **userspace**: :class:`~mobileip.dataplane.userspace.UserspaceBackend` in a helper process in
  ``ha`` (``python -m mobileip.tools.forwarding_bench backend``), its routes in table 101
  installed the service's way (messages from ``add_messages``, applied in batches of 500 by one
  :class:`~mobileip.net.rtnl.RtnlSocket`); ``ip rule pref 1001 lookup 101`` switches it on, as
  activation does, so the backend stays up between runs;
* **kernel**: :class:`~mobileip.dataplane.kernel.KernelBackend` the same way (table 100, rule pref
  1000), without its BPF fast path: its own tunnel devices, what ``fastpath = "off"`` and a closed
  gate of the default ``"auto"`` carry; **kernel-gre**: the measured home routed through its GRE
  device instead (table 102, rule 1002); **kernel-udp**: the measured home as an RFC 3519
  UDP-tunnelled binding, i.e. the kernel backend's hybrid path (dataplane/udp_tun.py: routed into
  its TUN, table 103, rule 1003; read by the helper and sent as tunnel data from port 434 to
  ``coa``:4343 by :class:`~mobileip.dataplane.udp_tunnel.UdpTunnelPath`; the helper's CPU is
  measured as the userspace backend's);
* **reverse** (``-rev``, T flag): from ``coa``, the packet home address -> src, plain
  (``ceiling-rev``) or tunnelled to ha's address in IP-in-IP / GRE (``kernel-rev``,
  ``kernel-gre-rev``, ``userspace-rev``; decapsulated and checked by the backend), counted at
  ``src``'s veth;
* **bpf** / **bpf-gre** / **bpf-rev-hdr** / **bpf-gre-rev-hdr**: the kernel backend's BPF fast
  path, what its default ``fastpath = "auto"`` carries while the gate is open
  (:class:`~mobileip.dataplane.bpf.BpfFastPath`, loaded by
  :class:`~mobileip.tools.fastpath_bench.FastPathHelper` in ``ha`` with ``bindings`` homes) on
  this machine's kernel: its programs need no tunnel device, so they run here (with the BPF JIT
  as ``/proc/sys/net/core/bpf_jit_enable`` says) even where the kernel backend's own devices
  cannot. Forward: the measured home's binding IP-in-IP / GRE. Reverse: the ``-hdr`` sender
  (the tunnelled packet prebuilt, outer header included, on an IPPROTO_RAW socket, as
  ``ceiling-rev``'s sender sends its plain one; the tunnel socket's own cost is not the Home
  Agent's, see docs/performance.md). The programs are attached only for these rows, detached
  (no program at all) for every other; per row, ha's IP ``InReceives`` delta and the reverse
  pair's ``accepted`` delta are kept as evidence that the programs carried the packets;
* **sender** rows (``sender``, ``sender-rev``, ``sender-rev-ipip``, ``sender-rev-gre``, and
  the ``-hdr`` ones): the same senders with everything dropped at ha's ingress: the sender's
  own cost.

Where this machine's kernel cannot create ``ipip``/``gre external`` devices, the kernel
backend's rows run inside User-Mode Linux (:func:`mobileip.tools.uml.run_in_uml`), labelled
"UML", with UML's own ceiling and sender rows; ratios are only taken within one kernel.

Ratios are taken round by round (a path against its ceiling in the same round), then their
median and range are reported. Delivered packets/s inside UML swing with the host's load: UML
is one host process whose one CPU runs the sender, the forwarding and the care-of side. So the
UML leg also measures cost: the UML kernel runs in a cgroup of its own (:class:`CgroupCpu`,
cpuacct), sampled every 10 ms by the host and interpolated at each window's wall-clock start
and end (the guest's clock is the host's); host CPU ns per delivered packet does not depend on
how much CPU the guest got. ``cpu_ratio`` = packets per CPU-second against the ceiling's (sender
and forwarding on one CPU); ``forwarding_cpu_ratio`` = the same with each path's sender row
subtracted: (ceiling - its sender) / (path - its sender), the forwarding work alone, i.e. what a
CPU that only forwards would deliver against plain forwarding.

The load: a small C sender (generated from :data:`SENDER_C`, compiled with ``cc``/``gcc`` into
a temporary directory at bench time; ``sendmmsg`` of 64 prebuilt packets per call on a
connected UDP socket, or a raw / IP-in-IP / GRE socket for the reverse rows). No compiler: the
section is skipped with the reason. ``senders`` copies run at once. What is counted is what
reaches the far side: its veth's rx packets, from ``/proc/<pid>/net/dev`` of a sleeper living
in that namespace, over the steady part of each run (from 0.3 s after the start to 0.1 s
before the end); the far side drops everything at ingress right after the count (tc matchall,
or where the kernel has none, as this host's, a classic BPF direct-action drop on cls_bpf).
Mbit/s are of the inner IP packets (the size asked for), i.e. goodput; the tunnel's outer
header is on top. This kernel and UML's have no ``pktgen``.

Install cost and memory per binding are measured in the helper: ``bindings`` specs (one IP-in-IP
exit each) installed through ``add_messages`` + ``RtnlSocket.apply`` (500 specs per batch) +
``track``, the time divided by the bindings; memory = the helper's RSS growth (after
``gc.collect()``, the specs included: the backend keeps them) and the kernel's slab growth
(``SReclaimable + SUnreclaim`` of /proc/meminfo: the routes and their encap state) per binding.
Then every binding is replaced by one with the T flag (reverse tunnelling: one flower filter per
binding in the kernel backend) and the time and the slab growth are measured again (the RSS
growth is in the JSON only: the old specs were still alive while the new ones were built, so it
is a high-water mark). On a shared host
the slab figure moves with everything else the kernel does; inside UML it is the guest's own.

Why one file of ~1,200 lines: one measurement (topology, the C sender's source, the paths, the
UML leg and its CPU accounting, the report) whose parts share its constants; a tool, not part
of the daemon. scripts/perf/forwarding_profile.py reuses it to split the kernel backend's cost.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import gc
import json
import math
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from mobileip.daemon.memory import status_kib
from mobileip.tools.fastpath_bench import (
    PKT_SENDER,
    FastPathHelper,
    build_pkt_sender,
    ip_in_receives,
    jit_enabled,
    tunnelled_packet,
)
from mobileip.tools.fastpath_bench import drop_at_ingress as cbpf_drop

SENDER_C = r"""
/* mobileip forwarding bench sender: SIZE-byte IP packets for SECONDS, 64 per sendmmsg; prints
   "sent N seconds S errors E". MODE udp (default): UDP datagrams to DST:PORT. MODE raw: the
   whole IP packet (UDP from SRC to IDST:PORT, built here) on an IPPROTO_RAW socket. MODE ipip /
   gre: that packet as the payload of an IP-in-IP / GRE packet to DST (the tunnel's outer
   header by the kernel; GRE's 4-byte header here). Generated by forwarding_bench.py. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint16_t csum(const unsigned char *p, int n) {
    uint32_t s = 0;
    for (int i = 0; i + 1 < n; i += 2) s += (uint32_t)(p[i] << 8 | p[i + 1]);
    while (s >> 16) s = (s & 0xffff) + (s >> 16);
    return (uint16_t)~s;
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: %s DST PORT SIZE SECONDS [RATE [MODE SRC IDST]]\n", argv[0]);
        return 2;
    }
    int size = atoi(argv[3]);
    double seconds = atof(argv[4]);
    const char *mode = argc > 6 ? argv[6] : "udp";
    int kind = !strcmp(mode, "udp") ? 0 : !strcmp(mode, "raw") ? 1
             : !strcmp(mode, "ipip") ? 2 : !strcmp(mode, "gre") ? 3 : -1;
    if (kind < 0 || (kind > 0 && argc < 9)) {
        fprintf(stderr, "bad mode (udp | raw|ipip|gre SRC IDST)\n");
        return 2;
    }
    if (size < 28 || size > 65000) {
        fprintf(stderr, "bad size\n");
        return 2;
    }
    static const int protos[] = {0, IPPROTO_RAW, IPPROTO_IPIP, IPPROTO_GRE};
    int fd = kind == 0 ? socket(AF_INET, SOCK_DGRAM, 0) : socket(AF_INET, SOCK_RAW, protos[kind]);
    if (fd < 0) { perror("socket"); return 1; }
    int buf = 4 << 20;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
    struct sockaddr_in dst;
    memset(&dst, 0, sizeof dst);
    dst.sin_family = AF_INET;
    dst.sin_port = kind == 0 ? htons((unsigned short)atoi(argv[2])) : 0;
    if (inet_pton(AF_INET, argv[1], &dst.sin_addr) != 1) {
        fprintf(stderr, "bad address\n");
        return 2;
    }
    if (connect(fd, (struct sockaddr *)&dst, sizeof dst) < 0) { perror("connect"); return 1; }
    static unsigned char data[65536];
    memset(data, 0x5a, sizeof data);
    size_t len = (size_t)(size - 28);
    if (kind > 0) {
        int off = kind == 3 ? 4 : 0;
        if (kind == 3) { data[0] = 0; data[1] = 0; data[2] = 0x08; data[3] = 0; } /* IPv4 */
        unsigned char *ip = data + off, *udp = ip + 20;
        struct in_addr s, d;
        if (inet_pton(AF_INET, argv[7], &s) != 1 || inet_pton(AF_INET, argv[8], &d) != 1) {
            fprintf(stderr, "bad inner address\n");
            return 2;
        }
        memset(ip, 0, 28);
        ip[0] = 0x45; ip[2] = (unsigned char)(size >> 8); ip[3] = (unsigned char)size;
        ip[8] = 64; ip[9] = IPPROTO_UDP;
        memcpy(ip + 12, &s, 4); memcpy(ip + 16, &d, 4);
        uint16_t c = csum(ip, 20);
        ip[10] = (unsigned char)(c >> 8); ip[11] = (unsigned char)c;
        int port = atoi(argv[2]);
        udp[0] = 0x27; udp[1] = 0x0f; /* source port 9999 */
        udp[2] = (unsigned char)(port >> 8); udp[3] = (unsigned char)port;
        udp[4] = (unsigned char)((size - 20) >> 8); udp[5] = (unsigned char)(size - 20);
        len = (size_t)(size + off);
    }
    struct iovec iov[BATCH];
    struct mmsghdr msgs[BATCH];
    memset(msgs, 0, sizeof msgs);
    for (int i = 0; i < BATCH; i++) {
        iov[i].iov_base = data;
        iov[i].iov_len = len;
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    double rate = argc > 5 ? atof(argv[5]) : 0.0; /* packets/s; 0: as fast as it can */
    long long sent = 0, errors = 0;
    double start = now(), end = start + seconds, t = start;
    while (t < end) {
        for (int k = 0; k < (rate > 0 ? 1 : 16); k++) {
            int n = sendmmsg(fd, msgs, BATCH, 0);
            if (n > 0) sent += n;
            else errors++;
        }
        t = now();
        if (rate > 0) {
            double due = start + sent / rate;
            if (due > t) {
                struct timespec ts;
                double wait = due - t;
                ts.tv_sec = (time_t)wait;
                ts.tv_nsec = (long)((wait - ts.tv_sec) * 1e9);
                nanosleep(&ts, NULL);
                t = now();
            }
        }
    }
    printf("sent %lld seconds %.6f errors %lld\n", sent, t - start, errors);
    return 0;
}
"""

PREFIX = "10.231"
SRC_ADDR, HA_IN, HA_OUT, COA_ADDR = (
    f"{PREFIX}.1.2",
    f"{PREFIX}.1.1",
    f"{PREFIX}.2.1",
    f"{PREFIX}.2.2",
)
HOME = f"{PREFIX}.3.1"  # the measured flow's home address; other bindings follow it
PORT = 9
# table, rule priority; "kernel-gre": the kernel backend's helper also routes the measured home
# through its GRE device in a table of its own (the other bindings stay IP-in-IP)
TABLES = {
    "kernel": (100, 1000),
    "userspace": (101, 1001),
    "kernel-gre": (102, 1002),
    "kernel-udp": (103, 1003),
}
NAT_PORT = 4343  # the kernel-udp path's "NAT mapping": coa's address, this port
# delivered packets/s, offered packets/s, backend CPU us/packet, then the steady window's wall
# clock start and end (time.time(); a UML guest's clock is the host's) and packets counted in it
Run = tuple[float, float, float, float, float, float]
WARMUP_S = 0.3
TAIL_S = 0.1


@dataclass(frozen=True, slots=True)
class FlowPath:
    """One measured path: which way, what is switched on, what sends, where it is counted."""

    name: str
    reverse: bool  # MN -> CN: sent from coa, counted at src (else src -> coa, counted at coa)
    rule: str | None  # the TABLES entry switched on for the run (a backend's), or none
    mode: str  # the sender's mode (SENDER_C): udp, raw, ipip, gre
    sink: bool = False  # dropped at ha's ingress, counted there: the sender's own cost
    ceiling: str | None = None  # the plain-forwarding row it is a fraction of
    baseline: str | None = None  # the sink row with the same sender (subtracted for forwarding)


HDR_IPIP, HDR_GRE = "sender-rev-ipip-hdr", "sender-rev-gre-hdr"  # the -hdr rows' sink rows
PATHS = (
    FlowPath("sender", False, None, "udp", sink=True),
    FlowPath("ceiling", False, None, "udp", baseline="sender"),
    FlowPath("userspace", False, "userspace", "udp", ceiling="ceiling", baseline="sender"),
    FlowPath("kernel", False, "kernel", "udp", ceiling="ceiling", baseline="sender"),
    FlowPath("kernel-gre", False, "kernel-gre", "udp", ceiling="ceiling", baseline="sender"),
    FlowPath("kernel-udp", False, "kernel-udp", "udp", ceiling="ceiling", baseline="sender"),
    FlowPath("sender-rev", True, None, "raw", sink=True),
    FlowPath("ceiling-rev", True, None, "raw", baseline="sender-rev"),
    FlowPath("sender-rev-ipip", True, None, "ipip", sink=True),
    FlowPath("userspace-rev", True, "userspace", "ipip", False, "ceiling-rev", "sender-rev-ipip"),
    FlowPath("kernel-rev", True, "kernel", "ipip", False, "ceiling-rev", "sender-rev-ipip"),
    FlowPath("sender-rev-gre", True, None, "gre", sink=True),
    FlowPath("kernel-gre-rev", True, "kernel", "gre", False, "ceiling-rev", "sender-rev-gre"),
    # the kernel backend's BPF fast path (fastpath_bench.py), on the host's kernel: forward
    # (the measured home's binding IP-in-IP / GRE), reverse with the -hdr sender (the tunnelled
    # packet prebuilt on an IPPROTO_RAW socket, as ceiling-rev's sender sends its plain one)
    FlowPath("bpf", False, "fastpath", "udp", ceiling="ceiling", baseline="sender"),
    FlowPath("bpf-gre", False, "fastpath-gre", "udp", ceiling="ceiling", baseline="sender"),
    FlowPath(HDR_IPIP, True, None, "ipip-hdr", sink=True),
    FlowPath("bpf-rev-hdr", True, "fastpath", "ipip-hdr", False, "ceiling-rev", HDR_IPIP),
    FlowPath(HDR_GRE, True, None, "gre-hdr", sink=True),
    FlowPath("bpf-gre-rev-hdr", True, "fastpath", "gre-hdr", False, "ceiling-rev", HDR_GRE),
)
BY_NAME = {fp.name: fp for fp in PATHS}
BACKEND_OF = {
    "userspace": "userspace",
    "kernel": "kernel",
    "kernel-gre": "kernel",
    "kernel-udp": "kernel",
    "fastpath": "fastpath",
    "fastpath-gre": "fastpath",
}
FASTPATH_LABEL = (
    "kernel backend, BPF fast path (this host's kernel, bpf_jit_enable {jit}; the tunnel "
    'devices not used; what the default fastpath = "auto" carries while its gate is open)'
)


def paths_for(backends: Sequence[str], reverse: bool = True) -> list[FlowPath]:
    """The paths measurable with ``backends`` running: ceilings, the backends' rows, and the
    sink rows those need."""
    wanted = [
        fp
        for fp in PATHS
        if not fp.sink
        and (fp.rule is None or BACKEND_OF[fp.rule] in backends)
        and (reverse or not fp.reverse)
    ]
    sinks = {fp.baseline for fp in wanted if fp.baseline}
    return [fp for fp in PATHS if fp in wanted or fp.name in sinks]


class SenderUnavailable(RuntimeError):
    """No C compiler, or the sender did not compile."""


def build_sender(directory: Path) -> Path:
    """Compile :data:`SENDER_C` into ``directory``; :class:`SenderUnavailable` otherwise."""
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        raise SenderUnavailable(
            "no C compiler (cc/gcc/clang) to build the forwarding bench's packet sender: "
            "install gcc (Debian: apt-get install gcc)"
        )
    src = directory / "fwd_sender.c"
    exe = directory / "fwd_sender"
    src.write_text(SENDER_C)
    proc = subprocess.run(
        [cc, "-O2", "-o", str(exe), str(src)], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise SenderUnavailable(f"{cc} failed to build the sender: {proc.stderr.strip()[:500]}")
    return exe


# --- plan and report ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ForwardingPlan:
    sizes: tuple[int, ...] = (64, 1400)
    duration: float = 1.0  # seconds per run
    repeats: int = 7  # rounds; each round runs every path once, in a rotated order
    senders: int = 1
    rate: float = 0.0  # packets/s per sender; 0: as fast as it can
    bindings: int = 10_000  # installed per backend (install cost, memory); the flow uses one
    uml: bool = True  # measure the kernel backend inside UML when the host cannot
    backends: tuple[str, ...] = ("userspace", "kernel", "fastpath")
    reverse: bool = True  # the reverse-tunnel rows (MN -> CN) too
    host: bool = True  # measure on this machine's kernel (else only inside UML)
    # backends measured again inside UML: the userspace one there only repeats the host's rows
    # far slower (one CPU, trapped system calls)
    uml_backends: tuple[str, ...] = ("kernel",)

    @classmethod
    def quick(cls) -> ForwardingPlan:
        return cls(duration=1.0, repeats=1, bindings=1000)


CpuBetween = Callable[[float, float], "float | None"]  # host CPU seconds between two wall times


def _spread(values: Sequence[float]) -> dict[str, Any]:
    return {
        "median": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
        "n": len(values),
    }


@dataclass
class KernelResult:
    """One kernel's measurements (the host's, or UML's)."""

    where: str  # "host" or "UML"
    # (path, size) -> one Run per round (round i of every path is the same round)
    runs: dict[tuple[str, int], list[Run]] = field(default_factory=dict)
    install: dict[str, dict[str, Any]] = field(default_factory=dict)  # backend -> stats
    skipped: dict[str, str] = field(default_factory=dict)  # path -> why
    notes: list[str] = field(default_factory=list)

    def raw(self) -> dict[str, Any]:
        """Everything measured, for :meth:`from_raw` (the UML guest hands it to the host)."""
        return {
            "where": self.where,
            "runs": {f"{p}@{s}": runs for (p, s), runs in self.runs.items()},
            "install": self.install,
            "skipped": self.skipped,
            "notes": self.notes,
        }

    @classmethod
    def from_raw(cls, data: dict[str, Any]) -> KernelResult:
        runs: dict[tuple[str, int], list[Run]] = {}
        for key, value in data["runs"].items():
            path, _, size = key.rpartition("@")
            runs[(path, int(size))] = [tuple(r) for r in value]
        return cls(data["where"], runs, data["install"], data["skipped"], data["notes"])

    def as_dict(self, cpu_between: CpuBetween | None = None) -> dict[str, Any]:
        """Rows per (path, size): medians over the rounds, and each ratio taken round by round
        (the path against its ceiling in the same round) then its median and spread.
        ``cpu_between``: the host CPU the kernel used between two wall-clock times (UML's
        process group); with it, each row also gets host CPU ns per packet and the ratios of
        costs (see the module docstring)."""
        rows: dict[str, Any] = {}
        order = [fp.name for fp in PATHS]
        cpu_ns: dict[tuple[str, int], list[float | None]] = {}  # host CPU per packet
        shares: dict[tuple[str, int], list[float]] = {}  # host CPU seconds per second
        for key, runs in self.runs.items():
            cpu_ns[key], shares[key] = [], []
            for r in runs:
                used = cpu_between(r[3], r[4]) if cpu_between and len(r) > 5 else None
                if used is None or r[5] <= 0 or r[4] <= r[3]:
                    cpu_ns[key].append(None)
                    continue
                cpu_ns[key].append(used / r[5] * 1e9)
                shares[key].append(used / (r[4] - r[3]))

        for path, size in sorted(self.runs, key=lambda k: (order.index(k[0]), k[1])):
            fp = BY_NAME[path]
            key = (path, size)
            runs = self.runs[key]
            pps = statistics.median(r[0] for r in runs)
            row: dict[str, Any] = {
                "path": path,
                "size": size,
                "reverse": fp.reverse,
                "pps": round(pps),
                "mbit_s": round(pps * size * 8 / 1e6, 1),
                "runs_pps": [round(r[0]) for r in runs],
                "offered_pps": round(statistics.median(r[1] for r in runs)),
                "ratio_to_ceiling": None,
            }
            cpu = [r[2] for r in runs if not math.isnan(r[2])]
            if cpu:
                row["backend_cpu_us_per_packet"] = round(statistics.median(cpu), 2)
            mine = cpu_ns[key]
            if any(v is not None for v in mine):
                row["host_cpu_ns_per_packet"] = round(
                    statistics.median(v for v in mine if v is not None), 1
                )
                row["host_cpu_share"] = _spread(shares[key])
            if fp.ceiling:
                ck = (fp.ceiling, size)
                ceil_pps = [r[0] for r in self.runs.get(ck, [])]
                ceil_cpu = cpu_ns.get(ck, [])
                delivered = [m[0] / c for m, c in zip(runs, ceil_pps, strict=False) if c]
                if delivered:
                    row["ratio_to_ceiling"] = statistics.median(delivered)
                    row["ratio"] = _spread(delivered)
                    row["ratio_run_by_run"] = [round(v, 3) for v in delivered]
                # packets per CPU-second against the ceiling's, round by round
                costs = [c / m for c, m in zip(ceil_cpu, mine, strict=False) if c and m]
                if costs:
                    row["cpu_ratio"] = _spread(costs)
                # (ceiling - its sender) / (path - its sender): the forwarding work alone
                base_m = cpu_ns.get((fp.baseline or "", size), [])
                base_c = cpu_ns.get((BY_NAME[fp.ceiling].baseline or "", size), [])
                fwd = [
                    (c - cb) / (m - b)
                    for c, cb, m, b in zip(ceil_cpu, base_c, mine, base_m, strict=False)
                    if c is not None and cb is not None and m is not None and b is not None
                    and m > b
                ]  # fmt: skip
                if fwd:
                    row["forwarding_cpu_ratio"] = _spread(fwd)
            if fp.baseline and (fp.baseline, size) in cpu_ns:
                base = cpu_ns[(fp.baseline, size)]
                extra = [
                    m - b
                    for m, b in zip(mine, base, strict=False)
                    if m is not None and b is not None
                ]
                if extra:
                    row["forwarding_ns_per_packet"] = round(statistics.median(extra), 1)
            if isinstance(row["ratio_to_ceiling"], float):
                row["ratio_to_ceiling"] = round(row["ratio_to_ceiling"], 3)
            rows[f"{path}@{size}"] = row
        return {
            "where": self.where,
            "rows": rows,
            "install": self.install,
            "skipped": self.skipped,
            "notes": self.notes,
        }


# --- namespaces --------------------------------------------------------------------------------


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


class Topology:
    """src -- ha -- coa (module docstring); removed on exit, whatever happens."""

    def __init__(self, tag: str | None = None) -> None:
        self.tag = tag or f"mfb{os.getpid() % 100000}"
        self.ns = {k: f"{self.tag}-{k}" for k in ("src", "ha", "coa")}
        self.sleepers: dict[str, subprocess.Popen[bytes]] = {}
        self.drops_at_ingress = False
        self.drop_kind = ""  # how the far ends drop: "matchall", "cBPF da" (no matchall), ""
        self.coa_dev = f"{self.tag}c"
        # the veth each end counts on: src's, ha's towards src and towards coa, coa's
        self.devs = {"src": f"{self.tag}s", "ha-src": f"{self.tag}h", "ha-coa": f"{self.tag}o",
                     "coa": self.coa_dev}  # fmt: skip

    def __enter__(self) -> Topology:
        try:
            self._create()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def exec(self, ns: str, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.ns[ns], *argv]

    def _create(self) -> None:
        t, ns = self.tag, self.ns
        for name in ns.values():
            _ip("netns", "del", name, check=False)
            _ip("netns", "add", name)
        # src <-> ha, ha <-> coa
        _ip("link", "add", f"{t}s", "netns", ns["src"], "type", "veth", "peer", "name",
            f"{t}h", "netns", ns["ha"])  # fmt: skip
        _ip("link", "add", f"{t}o", "netns", ns["ha"], "type", "veth", "peer", "name",
            self.coa_dev, "netns", ns["coa"])  # fmt: skip
        for name in ns.values():
            for knob in ("all", "default"):
                self.sysctl(name, f"net/ipv6/conf/{knob}/disable_ipv6", "1")
            _ip("-n", name, "link", "set", "lo", "up")
        self.sysctl(ns["ha"], "net/ipv4/ip_forward", "1")
        for knob in ("all", "default"):  # the reverse rows' inner sources are home addresses
            self.sysctl(ns["ha"], f"net/ipv4/conf/{knob}/rp_filter", "0")
        for name, dev, addr in (
            (ns["src"], f"{t}s", f"{SRC_ADDR}/24"),
            (ns["ha"], f"{t}h", f"{HA_IN}/24"),
            (ns["ha"], f"{t}o", f"{HA_OUT}/24"),
            (ns["coa"], self.coa_dev, f"{COA_ADDR}/24"),
        ):
            _ip("-n", name, "addr", "add", addr, "dev", dev)
            _ip("-n", name, "link", "set", dev, "up")
        _ip("-n", ns["src"], "route", "add", "default", "via", HA_IN)
        _ip("-n", ns["coa"], "route", "add", "default", "via", HA_OUT)
        # the ceiling's route; a backend's rule (lower pref than main) takes over from it
        _ip("-n", ns["ha"], "route", "add", f"{HOME}/32", "via", COA_ADDR)
        # static neighbours: no ARP in the measured windows
        for name, dev, addr, peer_ns, peer_dev in (
            (ns["src"], f"{t}s", HA_IN, ns["ha"], f"{t}h"),
            (ns["ha"], f"{t}o", COA_ADDR, ns["coa"], self.coa_dev),
            (ns["ha"], f"{t}h", SRC_ADDR, ns["src"], f"{t}s"),
            (ns["coa"], self.coa_dev, HA_OUT, ns["ha"], f"{t}o"),
        ):
            mac = self.mac(peer_ns, peer_dev)
            _ip("-n", name, "neigh", "replace", addr, "lladdr", mac, "dev", dev, "nud", "permanent")
        # the care-of side drops everything at tc ingress, right after the veth counted it:
        # neither path pays for what coa would do next (a route lookup for the plain packets;
        # decapsulation by the fallback tunl0/gre0, or an ICMP error, for the tunnelled ones)
        # (src too: the reverse rows are counted there)
        self.drops_at_ingress = self._tc_drop(ns["coa"], self.coa_dev) and self._tc_drop(
            ns["src"], f"{t}s"
        )
        for key in ns:
            self.sleepers[key] = subprocess.Popen(
                self.exec(key, ["sleep", "infinity"]), stdin=subprocess.DEVNULL
            )

    def _tc_drop(self, ns: str, dev: str) -> bool:
        """Drop everything at ``dev``'s ingress: tc matchall, or where the kernel has none
        (this host: no act_gact either) a classic BPF direct-action drop (cls_bpf)."""
        for argv in (
            ["tc", "-n", ns, "qdisc", "add", "dev", dev, "clsact"],
            ["tc", "-n", ns, "filter", "add", "dev", dev, "ingress", "matchall", "action", "drop"],
        ):
            if subprocess.run(argv, capture_output=True, check=False).returncode != 0:
                break
        else:
            self.drop_kind = self.drop_kind or "matchall"
            return True
        try:
            cbpf_drop(ns, dev)
        except RuntimeError:
            return False
        self.drop_kind = "cBPF da"
        return True

    @staticmethod
    def sysctl(ns: str, key: str, value: str) -> None:
        subprocess.run(
            ["ip", "netns", "exec", ns, "sysctl", "-qw", f"{key.replace('/', '.')}={value}"],
            capture_output=True,
            check=False,
        )

    @staticmethod
    def mac(ns: str, dev: str) -> str:
        out = _ip("-n", ns, "-j", "link", "show", "dev", dev).stdout
        return str(json.loads(out)[0]["address"])

    def rx(self, end: str) -> int:
        """Packets received so far by the veth of ``end`` (a key of :attr:`devs`)."""
        ns = end.partition("-")[0]
        dev = self.devs[end]
        for line in Path(f"/proc/{self.sleepers[ns].pid}/net/dev").read_text().splitlines():
            name, _, rest = line.partition(":")
            if name.strip() == dev:
                return int(rest.split()[1])
        raise RuntimeError(f"{dev} not found in namespace {self.ns[ns]}")

    def coa_rx(self) -> int:
        return self.rx("coa")

    def sink(self, end: str, on: bool) -> None:
        """Drop everything at ``end``'s ingress (ha's side: the sender's cost alone)."""
        ns, dev = self.ns[end.partition("-")[0]], self.devs[end]
        if on:
            if not self._tc_drop(ns, dev):
                raise RuntimeError(f"cannot drop at {dev}'s ingress (tc clsact + matchall)")
        else:
            subprocess.run(["tc", "-n", ns, "qdisc", "del", "dev", dev, "clsact"],
                           capture_output=True, check=False)  # fmt: skip

    def rule(self, path: str, on: bool) -> None:
        table, pref = TABLES[path]
        verb = "add" if on else "del"
        _ip("-n", self.ns["ha"], "rule", verb, "pref", str(pref), "lookup", str(table),
            check=False)  # fmt: skip

    def close(self) -> None:
        for sleeper in self.sleepers.values():
            with contextlib.suppress(ProcessLookupError):
                sleeper.kill()
            sleeper.wait()
        self.sleepers.clear()
        for name in self.ns.values():
            _ip("netns", "del", name, check=False)


# --- one run -----------------------------------------------------------------------------------


def _cpu_s(pid: int | None) -> float:
    """User + system CPU seconds of process ``pid`` so far (0 without one)."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def sender_argv(topo: Topology, sender: Path, fp: FlowPath, size: int, duration: float,
                rate: float) -> list[str]:  # fmt: skip
    """The sender of ``fp``: UDP from src to the home address, or (reverse) from coa the
    packet home address -> src, plain (``raw``) or tunnelled to ha (``ipip``/``gre``)."""
    common = [str(PORT), str(size), f"{duration:.3f}", f"{rate:.0f}"]
    if fp.mode.endswith("-hdr"):
        # fastpath_bench's sender (built next to ``sender``): the whole tunnelled packet, outer
        # header included, on an IPPROTO_RAW socket connected to src, as ceiling-rev's raw
        # sender (routed via ha: a cached route; an on-link destination on an IP_HDRINCL socket
        # is routed with FLOWI_FLAG_KNOWN_NH, uncached, a route per packet); the outer header
        # says ha's address. Not paced.
        packet = sender.parent / f"{fp.mode}-{size}.bin"
        if not packet.exists():
            packet.write_bytes(tunnelled_packet(size, fp.mode == "gre-hdr", HOME, SRC_ADDR,
                                                COA_ADDR, HA_OUT, PORT))  # fmt: skip
        exe = sender.parent / PKT_SENDER
        return topo.exec("coa", [str(exe), SRC_ADDR, f"{duration:.3f}", str(packet)])
    if not fp.reverse:
        return topo.exec("src", [str(sender), HOME, *common])
    outer = SRC_ADDR if fp.mode == "raw" else HA_OUT
    return topo.exec("coa", [str(sender), outer, *common, fp.mode, HOME, SRC_ADDR])


def measure(
    topo: Topology,
    sender: Path,
    size: int,
    duration: float,
    senders: int,
    rate: float = 0.0,
    cpu_pid: int | None = None,
    fp: FlowPath = PATHS[1],
    argv: list[str] | None = None,
) -> Run:
    """One run of ``fp`` (default: the forward ceiling): delivered packets/s over the steady
    window, offered packets/s, CPU time of process ``cpu_pid`` (the backend) per delivered
    packet in the window (us), the window's wall-clock start and end, and its packet count.
    ``argv``: another sender than :func:`sender_argv`'s (scripts/perf/bpf_host.py)."""
    argv = argv or sender_argv(topo, sender, fp, size, duration, rate)
    end = ("ha-coa" if fp.reverse else "ha-src") if fp.sink else ("src" if fp.reverse else "coa")
    procs = [
        subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(senders)
    ]
    try:
        started = time.monotonic()
        time.sleep(WARMUP_S)
        rx0, t0, c0, w0 = topo.rx(end), time.monotonic(), _cpu_s(cpu_pid), time.time()
        time.sleep(max(0.05, duration - WARMUP_S - TAIL_S - (t0 - started - WARMUP_S)))
        rx1, t1, c1, w1 = topo.rx(end), time.monotonic(), _cpu_s(cpu_pid), time.time()
        offered = 0.0
        for p in procs:
            out, err = p.communicate(timeout=duration + 30)
            if p.returncode != 0:
                raise RuntimeError(f"sender failed: {err.strip() or out.strip()}")
            fields = out.split()
            offered += int(fields[1]) / float(fields[3])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    cpu = (c1 - c0) / (rx1 - rx0) * 1e6 if cpu_pid is not None and rx1 > rx0 else math.nan
    return (rx1 - rx0) / (t1 - t0), offered, cpu, w0, w1, float(rx1 - rx0)


# --- the backend helper (a process inside ha) --------------------------------------------------


class BackendHelper:
    """``python -m mobileip.tools.forwarding_bench backend`` inside ``ha``: starts a backend,
    installs the bindings, reports install cost and memory, forwards until stopped."""

    def __init__(self, topo: Topology, kind: str, bindings: int) -> None:
        self.kind = kind
        table, _ = TABLES[kind]
        argv = topo.exec("ha", [sys.executable, "-m", "mobileip.tools.forwarding_bench",
                                "backend", kind, "--bindings", str(bindings),
                                "--table", str(table), "--tag", topo.tag])  # fmt: skip
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            err = self.proc.stderr.read() if self.proc.stderr else ""
            self.proc.wait()
            raise RuntimeError(f"{kind} backend helper failed: {err.strip()[-800:]}")
        self.install: dict[str, Any] = json.loads(line)
        if "error" in self.install:
            self.proc.wait()
            raise RuntimeError(str(self.install["error"]))

    def stop(self) -> dict[str, Any]:
        if self.proc.poll() is not None:
            return {}
        try:
            out, _ = self.proc.communicate("stop\n", timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return {}
        lines = [ln for ln in out.splitlines() if ln.startswith("{")]
        return json.loads(lines[-1]) if lines else {}


def _slab() -> int:
    total = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith(("SReclaimable:", "SUnreclaim:")):
            total += int(line.split()[1]) * 1024
    return total


def _rss() -> int:
    return (status_kib("VmRSS") or 0) * 1024


def _home(i: int) -> IPv4Address:
    return IPv4Address(int(IPv4Address(HOME)) + i)


async def _helper(kind: str, bindings: int, table: int, tag: str) -> None:
    from mobileip.dataplane.backend import BackendError, TunnelBackend, TunnelSpec
    from mobileip.dataplane.encap import Encapsulation
    from mobileip.net import rtnl as nl

    def log(event: str, **_: object) -> None:
        pass

    source = IPv4Address(HA_OUT)
    backend: TunnelBackend
    if kind == "kernel":
        from mobileip.dataplane.kernel import KernelBackend

        backend = KernelBackend(log, source, prefix=f"{tag[-6:]}", udp_tun=f"{tag[-6:]}-udp")
    else:
        from mobileip.dataplane.userspace import UserspaceBackend

        backend = UserspaceBackend(log, f"{tag[-8:]}tun", source)
    try:
        await backend.start()
    except BackendError as exc:
        print(json.dumps({"error": str(exc)}), flush=True)
        return
    sock = nl.RtnlSocket()
    ipip = Encapsulation.IPIP
    udp_sock: socket.socket | None = None

    def install(reverse: bool) -> dict[str, Any]:
        """Every binding in (or replaced), the service's way; time and memory per binding."""
        gc.collect()
        rss0, slab0 = _rss(), _slab()
        # the specs are the backend's state too (the service builds them, the backend keeps
        # them): in the memory, not in the install time
        specs = [
            TunnelSpec(
                _home(i),
                ((IPv4Address(COA_ADDR), ipip),),
                (IPv4Address(COA_ADDR),) if reverse else (),
            )
            for i in range(bindings)
        ]
        failed = 0
        started = time.perf_counter()
        for start in range(0, len(specs), 500):  # the service's batch
            part = specs[start : start + 500]
            messages = [m for s in part for m in (backend.add_messages(s, table) or [])]
            failed += len(sock.apply(messages))
            for s in part:
                backend.track(s)
        took = time.perf_counter() - started
        del specs
        gc.collect()
        rss1, slab1 = _rss(), _slab()
        n = max(1, bindings)
        return {
            "failed": failed,
            "install_s": round(took, 4),
            "install_us_per_binding": round(took / n * 1e6, 1),
            "rss_bytes_per_binding": round((rss1 - rss0) / n),
            "kernel_slab_bytes_per_binding": round((slab1 - slab0) / n),
        }

    try:
        # without the T flag (routes only), then every binding replaced by one with the T flag
        # (the kernel backend adds a flower filter per binding; the userspace one an index entry)
        plain = install(reverse=False)
        with_t = install(reverse=True)
        gre_failed = 0
        if kind == "kernel":
            # the measured home through the GRE device too, in a table of its own (path
            # "kernel-gre"); messages only: the home's state in the backend stays IP-in-IP + T
            gre = TunnelSpec(
                _home(0), ((IPv4Address(COA_ADDR), Encapsulation.GRE),), (IPv4Address(COA_ADDR),)
            )
            gre_failed = len(sock.apply(backend.add_messages(gre, TABLES["kernel-gre"][0]) or []))
            udp_sock = _hybrid_path(backend, sock)
        print(json.dumps({"backend": kind, "bindings": bindings, **plain, "t_flag": with_t,
                          "gre_route_failed": gre_failed}))  # fmt: skip
        sys.stdout.flush()
        loop = asyncio.get_running_loop()
        done = asyncio.Event()
        loop.add_reader(sys.stdin.fileno(), done.set)
        loop.add_signal_handler(signal.SIGTERM, done.set)
        await done.wait()
        loop.remove_reader(sys.stdin.fileno())
        counters = dict(backend.counters)
    finally:
        await backend.stop()
        with contextlib.suppress(OSError):
            sock.flush_routes(table)
            if kind == "kernel":
                sock.flush_routes(TABLES["kernel-gre"][0])
                sock.flush_routes(TABLES["kernel-udp"][0])
        sock.close()
        if udp_sock is not None:
            udp_sock.close()
    print(json.dumps({"counters": counters}), flush=True)


def _hybrid_path(backend: Any, sock: Any) -> socket.socket | None:
    """Path "kernel-udp": the measured home as a UDP-tunnelled binding of the kernel backend,
    routed into its TUN in a table of its own; its packets go as RFC 3519 tunnel data from
    port 434 to coa:NAT_PORT (messages and the TUN's exits only: the home's state in the
    backend stays IP-in-IP + T). Returns the UDP socket (None without the TUN)."""
    from mobileip.dataplane.kernel import tun_route
    from mobileip.dataplane.udp_tunnel import UdpTunnelPath

    tun = backend.udp_tun
    if tun is None:
        return None
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind((HA_OUT, 434))
    udp.setblocking(False)

    def send(data: bytes, addr: tuple[str, int], _src: str | None) -> bool:
        try:
            udp.sendto(data, addr)
        except OSError:
            return False
        return True

    tun.udp = UdpTunnelPath(backend, send, tun.write, None, lambda *_: None)
    tun.exits[_home(0).packed] = ((IPv4Address(COA_ADDR), NAT_PORT),)
    sock.apply([tun_route(_home(0), tun.index, TABLES["kernel-udp"][0])])
    return udp


def _run_loop(main: Any) -> None:
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    uvloop.run(main)


# --- one kernel: every path, interleaved -------------------------------------------------------


def measure_here(
    plan: ForwardingPlan, sender: Path, where: str, say: Callable[[str], None]
) -> KernelResult:
    """Every path this kernel can run, ``plan.repeats`` interleaved rounds (each round runs
    every path at every size once; the order rotates from round to round). The fast path's
    programs are attached only for its own rows (``bpf*``), detached (no program at all) for
    the others."""
    result = KernelResult(where)
    with Topology() as topo:
        if not topo.drops_at_ingress:
            result.notes.append(
                "no tc drop (matchall or cBPF) at the receiving end's ingress: what it does "
                "with each packet after counting it (route lookup, decapsulation, ICMP) is in "
                "the numbers"
            )
        elif topo.drop_kind != "matchall":
            result.notes.append(f"the far ends drop at ingress with a {topo.drop_kind} program")
        helpers: dict[str, BackendHelper] = {}
        fast: FastPathHelper | None = None
        try:
            for kind in plan.backends:
                if kind == "fastpath":
                    fast = _start_fastpath(topo, plan, where, result, say)
                    continue
                try:
                    helpers[kind] = BackendHelper(topo, kind, plan.bindings)
                except RuntimeError as exc:
                    result.skipped[kind] = str(exc)
                    continue
                result.install[kind] = helpers[kind].install
                i = helpers[kind].install
                say(
                    f"  [{where}] {kind}: {i['bindings']:,} bindings installed, "
                    f"{i['install_us_per_binding']} us/binding, RSS "
                    f"{i['rss_bytes_per_binding']} B/binding, kernel slab "
                    f"{i['kernel_slab_bytes_per_binding']} B/binding; with T flag "
                    f"{i['t_flag']['install_us_per_binding']} us/binding, kernel slab "
                    f"{i['t_flag']['kernel_slab_bytes_per_binding']:+} B/binding"
                )
            running = [*helpers, *(["fastpath"] if fast else [])]
            paths = paths_for(running, plan.reverse)
            if not topo.drops_at_ingress:
                for fp in paths:
                    if fp.sink:
                        result.skipped[fp.name] = "no tc clsact drop at ingress"
                paths = [fp for fp in paths if not fp.sink]
            evidence: dict[str, list[dict[str, Any]]] = {}
            runs = [(size, fp) for size in plan.sizes for fp in paths]
            for rep in range(plan.repeats):
                shift = rep * len(runs) // max(1, plan.repeats)
                for size, fp in runs[shift:] + runs[:shift]:
                    bpf = BACKEND_OF.get(fp.rule or "") == "fastpath"
                    if fast is not None:
                        fast.attach(bpf)
                        if bpf and not fp.reverse:
                            fast.use_gre(fp.rule == "fastpath-gre")
                    if fp.rule is not None and not bpf:
                        topo.rule(fp.rule, True)
                    if fp.sink:
                        topo.sink("ha-coa" if fp.reverse else "ha-src", True)
                    # the userspace backend's process does the per-packet work; the
                    # kernel backend's only programs the kernel
                    backend = BACKEND_OF.get(fp.rule or "")
                    busy = backend == "userspace" or fp.rule == "kernel-udp"
                    pid = helpers[backend].proc.pid if busy and backend else None
                    before = fast.ask("counters") if bpf and fast else {}
                    in0 = ip_in_receives(topo) if bpf else 0
                    try:
                        got = measure(
                            topo, sender, size, plan.duration, plan.senders, plan.rate, pid, fp
                        )
                    finally:
                        if fp.rule is not None and not bpf:
                            topo.rule(fp.rule, False)
                        if fp.sink:
                            topo.sink("ha-coa" if fp.reverse else "ha-src", False)
                    note = ""
                    if bpf and fast:
                        # the programs carried the packets: the stack saw none of them
                        # (ha's IP InReceives), and reverse ones were accepted by the pair
                        after = fast.ask("counters")
                        seen = {"ha_ip_in": ip_in_receives(topo) - in0, "delivered": got[5]}
                        if fp.reverse:
                            seen["accepted"] = (after["accepted"] or 0) - (before["accepted"] or 0)
                        evidence.setdefault(f"{fp.name}@{size}", []).append(seen)
                        note = ", " + ", ".join(f"{k} +{v:,.0f}" for k, v in seen.items()
                                                if k != "delivered")  # fmt: skip
                    result.runs.setdefault((fp.name, size), []).append(got)
                    say(
                        f"  [{where}] round {rep + 1}/{plan.repeats} {fp.name:<19} {size:>5} B: "
                        f"{got[0]:>10,.0f} packets/s delivered ({got[1]:,.0f} offered)"
                        + ("" if math.isnan(got[2]) else f", backend {got[2]:.2f} us/packet")
                        + note
                    )
            if fast is not None:
                result.install["fastpath"]["evidence"] = evidence
        finally:
            for kind, h in helpers.items():
                end = h.stop()
                if end:
                    result.install.setdefault(kind, {})["counters"] = end.get("counters", {})
            if fast is not None:
                fast.close()
    if fast is not None:
        result.notes.append("bpf*: " + FASTPATH_LABEL.format(jit=jit_enabled()))
    return result


def _start_fastpath(
    topo: Topology, plan: ForwardingPlan, where: str, result: KernelResult,
    say: Callable[[str], None],
) -> FastPathHelper | None:  # fmt: skip
    """The BPF fast path's helper in ha (fastpath_bench.py), ``plan.bindings`` homes; None
    (the reason in ``result.skipped``) where its programs cannot load or attach."""
    try:
        fast = FastPathHelper(topo, plan.bindings, HA_OUT, COA_ADDR, HOME, SRC_ADDR)
    except RuntimeError as exc:
        result.skipped["fastpath"] = str(exc)
        say(f"  [{where}] fastpath: not measured ({exc})")
        return None
    i = fast.install
    i["bindings"] = plan.bindings
    i["jit"] = jit_enabled()
    i["hdr_sender"] = PKT_SENDER
    result.install["fastpath"] = i
    say(
        f"  [{where}] fastpath: {i['bindings']:,} homes in the BPF maps, "
        f"{i['install_us_per_binding']} us/binding, errors {i['errors']}, next hop "
        f"{i['next_hop']}; " + FASTPATH_LABEL.format(jit=i["jit"])
    )
    return fast


# --- the section -------------------------------------------------------------------------------


def run_forwarding(plan: ForwardingPlan, say: Callable[[str], None] = print) -> dict[str, Any]:
    """The forwarding section: the host's rows, and UML's when the host lacks tunnels."""
    if os.geteuid() != 0:
        return {"skipped": "needs root (network namespaces)"}
    # compiled outside /tmp, which a UML guest replaces with its own
    base = Path("/var/tmp") if Path("/var/tmp").is_dir() else None
    with tempfile.TemporaryDirectory(prefix="mobileip-fwd-", dir=base) as tmp:
        try:
            sender = build_sender(Path(tmp))
            if "fastpath" in plan.backends:
                build_pkt_sender(Path(tmp))  # the fast path's -hdr reverse rows
        except (SenderUnavailable, RuntimeError) as exc:
            return {"skipped": str(exc)}
        out: dict[str, Any] = {}
        host_lacks_kernel = True
        if plan.host:
            host = measure_here(plan, sender, "host", say)
            out["host"] = host.as_dict()
            host_lacks_kernel = "kernel" in host.skipped
        else:
            from mobileip.dataplane.kernel import _probe_sync

            host_lacks_kernel = not _probe_sync()[0]
        if "kernel" in plan.backends and host_lacks_kernel and plan.uml:
            out["uml"] = run_uml(plan, sender, say)
    return out


class CgroupCpu:
    """The host CPU time of everything in a cgroup of our own (the UML kernel's processes,
    entered through :meth:`launcher`), sampled every ``interval`` s by a thread, so that
    :meth:`between` gives the CPU used between two wall-clock times."""

    def __init__(self, interval: float = 0.01) -> None:
        v1 = Path("/sys/fs/cgroup/cpuacct")
        if (v1 / "cpuacct.usage").exists():
            root, self.v2 = v1, False
        else:
            root = next(
                (d for d in (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified"))
                 if (d / "cgroup.procs").exists() and (d / "cgroup.controllers").exists()),
                Path("/nonexistent"),
            )  # fmt: skip
            self.v2 = True
        self.dir = root / f"mobileip-fwd-{os.getpid()}"
        self.dir.mkdir()  # OSError: no cgroup to account in
        self.interval = interval
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="uml-cpu")

    def launcher(self) -> list[str]:
        return ["sh", "-c", 'echo $$ > "$0" && exec "$@"', str(self.dir / "cgroup.procs")]

    def usage(self) -> float:
        """CPU seconds so far."""
        if not self.v2:
            return int((self.dir / "cpuacct.usage").read_text()) / 1e9
        for line in (self.dir / "cpu.stat").read_text().splitlines():
            if line.startswith("usage_usec "):
                return int(line.split()[1]) / 1e6
        raise RuntimeError(f"no usage_usec in {self.dir / 'cpu.stat'}")

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.time(), self.usage()))
            self._stop.wait(self.interval)

    def __enter__(self) -> CgroupCpu:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        for _ in range(50):  # the killed kernel's processes may take a moment to leave
            try:
                self.dir.rmdir()
                return
            except OSError:
                time.sleep(0.1)

    def at(self, t: float) -> float | None:
        i = bisect.bisect_left(self.samples, (t, -1.0))
        if i == 0 or i >= len(self.samples):
            return None
        (ta, ua), (tb, ub) = self.samples[i - 1], self.samples[i]
        return ua + (ub - ua) * (t - ta) / (tb - ta) if tb > ta else ua

    def between(self, t0: float, t1: float) -> float | None:
        a, b = self.at(t0), self.at(t1)
        return None if a is None or b is None else b - a


def run_uml(plan: ForwardingPlan, sender: Path, say: Callable[[str], None]) -> dict[str, Any]:
    """The kernel backend's rows inside UML, with the UML kernel's host CPU per packet."""
    from mobileip.tools.uml import run_in_uml, uml_available

    why = uml_available()
    if why:
        return {"skipped": why}
    say("  [UML] booting User-Mode Linux for the kernel backend's rows")
    argv = [
        sys.executable, "-m", "mobileip.tools.forwarding_bench", "guest",
        "--sender", str(sender), "--duration", str(plan.duration),
        "--repeats", str(plan.repeats), "--senders", str(plan.senders), "--rate", str(plan.rate),
        "--bindings", str(plan.bindings), "--sizes", ",".join(map(str, plan.sizes)),
        "--backends", ",".join(b for b in plan.backends if b in plan.uml_backends),
    ]  # fmt: skip
    if not plan.reverse:
        argv.append("--no-reverse")
    budget = 180 + plan.repeats * len(plan.sizes) * len(PATHS) * (plan.duration + 3)
    cwd = Path(__file__).resolve().parents[3]
    if Path("/tmp") in cwd.parents:
        cwd = Path("/")
    cpu: CgroupCpu | None = None
    try:
        cpu = CgroupCpu()
    except OSError as exc:
        say(f"  [UML] no cgroup to account UML's CPU in ({exc}): no CPU-per-packet rows")
    with cpu or contextlib.nullcontext():
        result = run_in_uml(argv, cwd=cwd, timeout=budget, launcher=cpu.launcher() if cpu else ())
    lines = [ln for ln in result.output.splitlines() if ln.startswith("{")]
    for ln in result.output.splitlines():
        if ln.startswith("  [UML]"):
            say(ln)
    if result.returncode != 0 or not lines:
        return {"skipped": f"UML run failed (exit {result.returncode}): {result.output[-800:]}"}
    measured = KernelResult.from_raw(json.loads(lines[-1]))
    if cpu is not None:
        measured.notes.append(
            "host CPU: the UML kernel's processes in a cgroup of their own "
            f"({cpu.dir}), sampled every {cpu.interval * 1000:.0f} ms, interpolated at each "
            "window's start and end (the guest's clock is the host's)"
        )
    data = measured.as_dict(cpu.between if cpu else None)
    data["boot_s"] = result.boot_seconds
    return data


def _ratio(r: dict[str, Any] | None) -> str:
    return "" if not r else f"{r['median']:.2f} [{r['min']:.2f}-{r['max']:.2f}]"


def format_forwarding(data: dict[str, Any]) -> list[str]:
    if not data:
        return []
    if "skipped" in data:
        return [f"forwarding: not measured ({data['skipped']})"]
    out = [
        "forwarding (UDP to one home address, counted at the care-of side; -rev: from the mobile "
        "node through the reverse tunnel, counted at the correspondent; sender*: dropped at the "
        "Home Agent's ingress, the sender's own cost; Mbit/s of the inner IP packets; ratios "
        "taken round by round against the ceiling of the same kernel and round, median "
        "[min-max]; CPU: host CPU of the UML kernel per packet, 'x by CPU' = packets per "
        "CPU-second against the ceiling's, 'fwd only' = the same with each sender's cost "
        "subtracted):",
        f"  {'kernel':<6} {'path':<19} {'bytes':>5} {'packets/s':>11} {'Mbit/s':>8} "
        f"{'x ceiling':>17} {'CPU ns/pkt':>10} {'x by CPU':>17} {'fwd only':>17}",
    ]
    installs: list[str] = []
    for key in ("host", "uml"):
        part = data.get(key)
        if not part:
            continue
        if "rows" not in part:
            out.append(f"  {key}: not measured ({part.get('skipped')})")
            continue
        where = part["where"]
        for row in part["rows"].values():
            cpu = row.get("host_cpu_ns_per_packet")
            out.append(
                f"  {where:<6} {row['path']:<19} {row['size']:>5} {row['pps']:>11,} "
                f"{row['mbit_s']:>8,.1f} {_ratio(row.get('ratio')):>17} "
                f"{'' if cpu is None else f'{cpu:,.0f}':>10} {_ratio(row.get('cpu_ratio')):>17} "
                f"{_ratio(row.get('forwarding_cpu_ratio')):>17}"
            )
        for path, why in part["skipped"].items():
            out.append(f"  {where:<6} {path:<19} not measured here: {why}")
        for note in part.get("notes", []):
            if note.startswith("bpf*: "):
                out.append(f"  {where:<6} {note}")
        for kind, i in part["install"].items():
            if kind == "fastpath" and "install_us_per_binding" in i:
                installs.append(
                    f"  {where:<6} {kind:<10} {i['bindings']:,} homes in the BPF maps: "
                    f"{i['install_us_per_binding']} us/binding (stage + flush)"
                )
                continue
            if "install_us_per_binding" not in i:
                continue
            installs.append(
                f"  {where:<6} {kind:<10} {i['bindings']:,} bindings: install "
                f"{i['install_us_per_binding']} us/binding; memory {i['rss_bytes_per_binding']} "
                f"B/binding (process RSS) + {i['kernel_slab_bytes_per_binding']} B/binding "
                f"(kernel slab)"
            )
            t = i.get("t_flag")
            if t:
                installs.append(
                    f"  {where:<6} {kind:<10} each replaced by one with the T flag: "
                    f"{t['install_us_per_binding']} us/binding; kernel slab "
                    f"{t['kernel_slab_bytes_per_binding']:+} B/binding"
                )
    if installs:
        out.append("  data-plane install cost and memory per binding:")
        out.extend(installs)
    return out


# --- entry points ------------------------------------------------------------------------------


def _guest(args: argparse.Namespace) -> int:
    """Inside UML: every path this kernel has, printed as one JSON line."""
    plan = ForwardingPlan(
        sizes=tuple(int(s) for s in args.sizes.split(",")),
        duration=args.duration,
        repeats=args.repeats,
        senders=args.senders,
        rate=args.rate,
        bindings=args.bindings,
        uml=False,
        backends=tuple(x for x in args.backends.split(",") if x),
        reverse=not args.no_reverse,
    )

    def say(line: str) -> None:
        print(line.replace("[host]", "[UML]"), flush=True)

    result = measure_here(plan, Path(args.sender), "UML", say)
    result.notes.append("User-Mode Linux: one CPU, system calls trapped; compare within UML only")
    print(json.dumps(result.raw()), flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mobileip.tools.forwarding_bench")
    sub = p.add_subparsers(dest="cmd")
    b = sub.add_parser("backend", help="(internal) a backend inside the ha namespace")
    b.add_argument("kind", choices=("userspace", "kernel"))
    b.add_argument("--bindings", type=int, default=1000)
    b.add_argument("--table", type=int, default=100)
    b.add_argument("--tag", default="mfb")
    g = sub.add_parser("guest", help="(internal) the measurements inside UML")
    g.add_argument("--sender", required=True)
    g.add_argument("--duration", type=float, default=2.0)
    g.add_argument("--repeats", type=int, default=3)
    g.add_argument("--senders", type=int, default=1)
    g.add_argument("--rate", type=float, default=0.0)
    g.add_argument("--bindings", type=int, default=10_000)
    g.add_argument("--sizes", default="64,1400")
    g.add_argument("--backends", default="kernel")
    g.add_argument("--no-reverse", action="store_true")
    r = sub.add_parser("run", help="the forwarding section alone (root)")
    r.add_argument("--quick", action="store_true")
    r.add_argument("--json", action="store_true")
    r.add_argument("--no-uml", action="store_true")
    r.add_argument("--no-host", action="store_true", help="only the UML leg")
    r.add_argument("--no-reverse", action="store_true", help="no reverse-tunnel rows")
    r.add_argument("--sizes", help="IP packet sizes, comma-separated (default 64,1400)")
    r.add_argument("--duration", type=float)
    r.add_argument("--repeats", type=int)
    r.add_argument("--senders", type=int)
    r.add_argument("--rate", type=float, help="packets/s per sender (default: unlimited)")
    r.add_argument("--bindings", type=int)
    r.add_argument("--backends", default="userspace,kernel,fastpath")
    args = p.parse_args(argv)
    if args.cmd == "backend":
        _run_loop(_helper(args.kind, args.bindings, args.table, args.tag))
        return 0
    if args.cmd == "guest":
        return _guest(args)
    if args.cmd == "run":
        plan = ForwardingPlan.quick() if args.quick else ForwardingPlan()
        changes: dict[str, Any] = {
            "uml": not args.no_uml,
            "host": not args.no_host,
            "reverse": not args.no_reverse,
        }
        if args.sizes:
            changes["sizes"] = tuple(int(x) for x in args.sizes.split(","))
        for name in ("duration", "repeats", "senders", "rate", "bindings"):
            if getattr(args, name) is not None:
                changes[name] = getattr(args, name)
        changes["backends"] = tuple(x for x in args.backends.split(",") if x)
        plan = ForwardingPlan(**{**{n: getattr(plan, n) for n in plan.__slots__}, **changes})
        say = (lambda s: print(s, file=sys.stderr)) if args.json else print
        data = run_forwarding(plan, say)
        if args.json:
            print(json.dumps(data, indent=2))
        else:
            print("\n".join(format_forwarding(data)))
        return 0
    p.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
