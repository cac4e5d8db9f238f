"""The tc BPF fast path's pieces for the forwarding bench (issue 14): its rows run on the host.

The fast path's programs (:class:`mobileip.dataplane.bpf.BpfFastPath`) need no tunnel device,
so they run on this machine's kernel (with its BPF JIT) where the kernel backend's own tunnel
devices cannot. :mod:`mobileip.tools.forwarding_bench` measures them in its topology as the
``bpf*`` rows; ``scripts/perf/bpf_host.py`` adds matched ceilings and evidence around them.
What both share lives here:

* :class:`FastPathHelper`: a process in ``ha`` (``python -m mobileip.tools.fastpath_bench
  helper``) that loads :class:`BpfFastPath` on ha's two veths with N homes (home, home+1, ...
  tunnelled to coa, reverse tunnels accepted from coa; the MAC path's next hop resolved) and
  obeys ``attach`` / ``detach`` (no program at all) / ``gre 0|1`` (the measured home's
  binding) / ``counters`` / ``quit``, one JSON line per answer;
* :data:`PKT_SENDER_C`: the ``-hdr`` reverse rows' sender: the tunnelled packet, outer header
  included (:func:`tunnelled_packet`), on an IPPROTO_RAW socket, as the plain ceiling-rev's
  sender sends its bare one. The raw IPPROTO_IPIP/GRE socket copies the payload with a software
  checksum and builds the outer header through ip_append_data (scripts/perf/
  tunnel_sender_cost.py: +170 ns a packet at 1,400 B), which the ceiling's sender does not pay;
* the far side's drop where tc has no matchall (this host): a classic BPF direct-action program
  returning TC_ACT_SHOT (:data:`CBPF_DROP`); a counting one for sampling IP protocols
  (:func:`counter_program`, ``python -m mobileip.tools.fastpath_bench counter``);
* evidence: ha's IP ``InReceives`` (:func:`ip_in_receives`; a redirected packet never reaches
  the stack), each program's run count and time (:func:`prog_stats`).

Addresses come from the caller (the bench's topology constants), so this module imports no
other tool.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any, Protocol

JIT_KNOB = Path("/proc/sys/net/core/bpf_jit_enable")
OBJ_GET_INFO_BY_FD = 15

# the -hdr rows' sender: forwarding_bench's sender's loop (64 per sendmmsg, 16 calls per clock
# read, the same output) sending one prebuilt packet, outer header included, on an IPPROTO_RAW
# socket connected to DST (IP_HDRINCL: the kernel fills in the identification, total length
# and header checksum, as for ceiling-rev's raw sender; nothing is checksummed over the payload)
PKT_SENDER_C = r"""
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#define BATCH 64
static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}
int main(int argc, char **argv) {
    if (argc < 4) { fprintf(stderr, "usage: %s DST SECONDS PACKET_FILE\n", argv[0]); return 2; }
    static unsigned char data[65536];
    FILE *f = fopen(argv[3], "rb");
    if (!f) { perror("packet file"); return 1; }
    size_t len = fread(data, 1, sizeof data, f);
    fclose(f);
    int fd = socket(AF_INET, SOCK_RAW, IPPROTO_RAW);
    if (fd < 0) { perror("socket"); return 1; }
    int buf = 4 << 20;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
    struct sockaddr_in dst;
    memset(&dst, 0, sizeof dst);
    dst.sin_family = AF_INET;
    if (inet_pton(AF_INET, argv[1], &dst.sin_addr) != 1) return 2;
    if (connect(fd, (struct sockaddr *)&dst, sizeof dst) < 0) { perror("connect"); return 1; }
    struct iovec iov[BATCH];
    struct mmsghdr msgs[BATCH];
    memset(msgs, 0, sizeof msgs);
    for (int i = 0; i < BATCH; i++) {
        iov[i].iov_base = data;
        iov[i].iov_len = len;
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    double seconds = atof(argv[2]);
    long long sent = 0, errors = 0;
    double start = now(), end = start + seconds, t = start;
    while (t < end) {
        for (int k = 0; k < 16; k++) {
            int n = sendmmsg(fd, msgs, BATCH, 0);
            if (n > 0) sent += n;
            else errors++;
        }
        t = now();
    }
    printf("sent %lld seconds %.6f errors %lld\n", sent, t - start, errors);
    return 0;
}
"""
PKT_SENDER = "pkt_sender"  # its executable's name, next to forwarding_bench's sender


def build_pkt_sender(directory: Path) -> Path:
    """Compile :data:`PKT_SENDER_C` into ``directory`` (RuntimeError if it cannot)."""
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        raise RuntimeError("no C compiler (cc/gcc/clang) for the -hdr rows' sender")
    src, exe = directory / "pkt_sender.c", directory / PKT_SENDER
    src.write_text(PKT_SENDER_C)
    proc = subprocess.run([cc, "-O2", "-o", str(exe), str(src)], capture_output=True, text=True,
                          check=False)  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"{cc} failed to build the -hdr sender: {proc.stderr.strip()[:500]}")
    return exe


def tunnelled_packet(size: int, gre: bool, home: str, src: str, coa: str, ha: str,
                     port: int) -> bytes:  # fmt: skip
    """The packet forwarding_bench's sender sends in mode ipip / gre (the inner packet ``home``
    -> ``src``, UDP 9999 -> ``port``, ``size`` bytes, payload 0x5a), with the outer header the
    kernel writes for it (``coa`` -> ``ha``, DF, TTL 64; identification, length and checksum 0:
    filled in by the kernel)."""
    addrs = IPv4Address(home).packed, IPv4Address(src).packed
    inner = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, size, 0, 0, 64, socket.IPPROTO_UDP,
                                  0, *addrs))  # fmt: skip
    total = sum(struct.unpack("!10H", inner))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    struct.pack_into("!H", inner, 10, ~total & 0xFFFF)
    inner += struct.pack("!HHHH", 9999, port, size - 20, 0) + b"\x5a" * (size - 28)
    extra = struct.pack("!HH", 0, 0x0800) if gre else b""
    outer = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 0, 0, 0x4000, 64, 47 if gre else 4, 0,
                        IPv4Address(coa).packed, IPv4Address(ha).packed)  # fmt: skip
    return outer + extra + bytes(inner)


def jit_enabled() -> str:
    """``/proc/sys/net/core/bpf_jit_enable`` as read ("?" where it cannot be)."""
    try:
        return JIT_KNOB.read_text().strip()
    except OSError:
        return "?"


def prog_stats(fd: int) -> tuple[int, int]:
    """(runs, ns) a program has run so far (``BPF_OBJ_GET_INFO_BY_FD``: struct bpf_prog_info's
    run_cnt and run_time_ns, counted while kernel.bpf_stats_enabled is 1)."""
    from mobileip.dataplane import bpf_asm as ba

    info = ctypes.create_string_buffer(256)
    ba.bpf(OBJ_GET_INFO_BY_FD, ba._attr("=IIQ", fd, len(info), ctypes.addressof(info)))
    run_time_ns, run_cnt = struct.unpack_from("=QQ", info, 192)
    return int(run_cnt), int(run_time_ns)


# --- the helper: the shipped fast path, inside ha ------------------------------------------


def helper(args: argparse.Namespace) -> int:
    """Load :class:`BpfFastPath` on ``--devs`` with ``--bindings`` homes, then obey stdin:
    ``attach``, ``detach``, ``gre 0|1`` (the measured home's binding), ``counters``, ``quit``;
    one JSON line answers each."""
    from mobileip.dataplane.bpf import BpfFastPath

    coa, home, src = IPv4Address(args.coa), IPv4Address(args.home), IPv4Address(args.src)
    fast = BpfFastPath(IPv4Address(args.ha), args.devs.split(","),
                       capacity=max(1024, args.bindings))  # fmt: skip

    def answer(obj: dict[str, Any]) -> None:
        print(json.dumps(obj), flush=True)

    try:
        fast.start()  # attached, gated off
    except Exception as exc:  # the reason goes back to the bench
        answer({"error": f"the BPF fast path did not load: {exc}"})
        return 1
    try:
        started = time.perf_counter()
        for i in range(args.bindings):
            fast.stage(IPv4Address(int(home) + i), (coa, False), [coa])
        fast.flush()
        took = time.perf_counter() - started
        if fast.nexthops_fd >= 0 and not fast.hops:  # as bpf_fastpath.py package
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.sendto(b"", (str(coa), 9))
            time.sleep(0.5)
            fast.refresh_hops()
        fast.set_live(True)
        attached = True
        answer({"installed": fast.installed(), "errors": fast.errors,
                "install_us_per_binding": round(took / max(1, args.bindings) * 1e6, 2),
                "next_hop": fast.next_hop(coa), "status": fast.status()})  # fmt: skip
        for line in sys.stdin:
            cmd = line.split()
            if not cmd or cmd[0] == "quit":
                break
            if cmd[0] == "attach":
                if not attached:
                    fast._attach()
                    attached = True
                fast.refresh_hops()  # the monitor's events since (the daemon reads them at once)
                answer({"attached": sorted(fast.attached), "next_hop": fast.next_hop(coa)})
            elif cmd[0] == "detach":
                if attached:
                    indexes = dict(fast.attached)
                    fast._detach(indexes, fast.created_clsact)
                    fast.attached.clear()
                    fast.created_clsact.clear()
                    attached = False
                answer({"attached": []})
            elif cmd[0] == "gre":
                fast.stage(home, (coa, cmd[1] == "1"), [coa])  # no loop: written at once
                answer({"gre": cmd[1] == "1", "errors": fast.errors})
            elif cmd[0] == "counters":
                answer({"accepted": fast.accepted(home, coa), "drops": fast.drops(),
                        "cached_route": fast.cached_route(src),
                        "prog_stats": {str(prio): prog_stats(fd)
                                       for prio, fd in fast.progs.items()},
                        "status": fast.status()})  # fmt: skip
            else:
                answer({"error": f"unknown command {cmd[0]}"})
    finally:
        fast.stop()
    return 0


class Topo(Protocol):
    """What the helper's client needs of forwarding_bench's Topology."""

    devs: dict[str, str]
    sleepers: dict[str, subprocess.Popen[bytes]]

    def exec(self, ns: str, argv: Sequence[str]) -> list[str]: ...


class FastPathHelper:
    """The client of :func:`helper` in ``topo``'s ha; starts attached (programs on)."""

    def __init__(self, topo: Topo, bindings: int, ha: str, coa: str, home: str, src: str) -> None:
        devs = f"{topo.devs['ha-src']},{topo.devs['ha-coa']}"
        argv = topo.exec("ha", [sys.executable, "-m", "mobileip.tools.fastpath_bench", "helper",
                                "--devs", devs, "--bindings", str(bindings), "--ha", ha,
                                "--coa", coa, "--home", home, "--src", src])  # fmt: skip
        self.err = tempfile.TemporaryFile("w+")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.err, text=True)  # fmt: skip
        self.attached = True
        self.gre = False
        try:
            self.install = self._read()
        except RuntimeError:
            self.close()
            raise
        if "error" in self.install:
            self.close()
            raise RuntimeError(str(self.install["error"]))

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait()
            self.err.seek(0)
            err = self.err.read().strip()[-800:]
            raise RuntimeError(f"the fast path helper exited ({code}): {err}")
        out: dict[str, Any] = json.loads(line)
        return out

    def ask(self, cmd: str) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        return self._read()

    def attach(self, on: bool) -> None:
        if on != self.attached:
            self.ask("attach" if on else "detach")
            self.attached = on

    def use_gre(self, gre: bool) -> None:
        """The measured home's binding: GRE or IP-in-IP."""
        if gre != self.gre:
            self.ask(f"gre {int(gre)}")
            self.gre = gre

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(Exception):
                self.ask("quit")
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout, self.err):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


# --- dropping at ingress without act_gact --------------------------------------------------

# this host's kernel has cls_bpf but no matchall / u32 / gact (the forwarding bench's drop): a
# classic BPF program in direct-action mode returning TC_ACT_SHOT (2) drops instead
CBPF_DROP = ["bpf", "da", "bytecode", "1,6 0 0 2"]


def drop_at_ingress(ns: str, dev: str) -> None:
    """Drop everything at ``dev``'s ingress in ``ns`` with :data:`CBPF_DROP`."""
    for argv in (
        ["tc", "-n", ns, "qdisc", "replace", "dev", dev, "clsact"],
        ["tc", "-n", ns, "filter", "add", "dev", dev, "ingress", "prio", "1", *CBPF_DROP],
    ):
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)}: {proc.stderr.strip()}")


# --- evidence ------------------------------------------------------------------------------


def ip_in_receives(topo: Topo) -> int:
    """ha's IP InReceives (/proc/net/snmp of its namespace)."""
    lines = Path(f"/proc/{topo.sleepers['ha'].pid}/net/snmp").read_text().splitlines()
    names, values = (ln.split() for ln in lines if ln.startswith("Ip:"))
    return int(values[names.index("InReceives")])


def counter_program(counts_fd: int) -> bytes:
    """tc ingress: count each IPv4 packet by its IP protocol byte (array map of 256 u64), then
    drop it (TC_ACT_SHOT), as the far side's drop does."""
    from mobileip.dataplane.bpf_asm import F_MAP_LOOKUP, FP, SKB_DATA, SKB_DATA_END, Asm

    a = Asm()
    a.ldx(4, 2, 1, SKB_DATA)
    a.ldx(4, 3, 1, SKB_DATA_END)
    a.mov(4, 2)
    a.alu(4, "+", imm=34)
    a.jmp(4, ">", "drop", src=3)
    a.ldx(2, 4, 2, 12)
    a.jmp(4, "!=", "drop", imm=0x0008)  # ETH_P_IP as a little-endian load reads it
    a.ldx(1, 4, 2, 23)  # the IP protocol
    a.stx(4, FP, -4, 4)
    a.ld_map(1, counts_fd)
    a.mov(2, FP)
    a.alu(2, "+", imm=-4)
    a.call(F_MAP_LOOKUP)
    a.jmp(0, "==", "drop", imm=0)
    a.mov(1, imm=1)
    a.xadd64(0, 0, 1)
    a.label("drop")
    a.ret(2)
    return a.code()


def counter(args: argparse.Namespace) -> int:
    """Inside the far side's namespace: :func:`counter_program` instead of the drop on
    ``--dev`` for ``--seconds``, then the drop back; prints the counts by IP protocol."""
    from mobileip.dataplane import bpf_asm as ba
    from mobileip.dataplane.bpf import bpf_filter
    from mobileip.net import rtnl

    counts = ba.map_create(ba.MAP_ARRAY, 4, 8, 256)
    prog = ba.prog_load(counter_program(counts), "mbh_count")
    index = socket.if_nametoindex(args.dev)
    subprocess.run(["tc", "qdisc", "del", "dev", args.dev, "clsact"], check=False)
    subprocess.run(["tc", "qdisc", "add", "dev", args.dev, "clsact"], check=True)
    try:
        with rtnl.RtnlSocket() as sock:
            failures = sock.apply([bpf_filter(index, 1, prog)], ignore_benign=False)
            if failures:
                raise OSError(failures[0].errno, str(failures[0]))
        print("ready", flush=True)
        time.sleep(args.seconds)
    finally:
        subprocess.run(["tc", "qdisc", "del", "dev", args.dev, "clsact"], check=False)
        drop_at_ingress(args.ns, args.dev)
    tally = {}
    for proto in range(256):
        raw = ba.lookup(counts, struct.pack("<I", proto), 8)
        n = struct.unpack("<Q", raw)[0] if raw else 0
        if n:
            tally[str(proto)] = n
    print(json.dumps(tally), flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mobileip.tools.fastpath_bench")
    sub = p.add_subparsers(dest="cmd", required=True)
    hp = sub.add_parser("helper", help="(internal) the fast path inside ha")
    hp.add_argument("--devs", required=True)
    hp.add_argument("--bindings", type=int, default=10_000)
    for name in ("ha", "coa", "home", "src"):
        hp.add_argument(f"--{name}", required=True)
    cp = sub.add_parser("counter", help="(internal) the far side's counting drop")
    cp.add_argument("--dev", required=True)
    cp.add_argument("--ns", required=True)
    cp.add_argument("--seconds", type=float, default=1.0)
    args = p.parse_args(argv)
    return helper(args) if args.cmd == "helper" else counter(args)


if __name__ == "__main__":
    sys.exit(main())
