"""Where the tunnelled sender's extra cost goes (issue 14, the BPF reverse rows at 1,400 B).

bpf_host.py's reverse rows send IP-in-IP / GRE from a raw ``IPPROTO_IPIP`` / ``IPPROTO_GRE``
socket (the kernel writes the outer header), its plain reverse ceiling the bare packet from an
``IPPROTO_RAW`` (``IP_HDRINCL``) socket. This runs forwarding_bench's C sender alone in each
mode (everything dropped at ha's ingress by the same cBPF drop as bpf_host.py's sender rows),
samples the whole machine with ``perf record -a -g`` in the middle of the run, and attributes
the sender process's samples (its system calls and the softirq work done in them) to kernel
symbols, in ns per packet: a symbol's share of the sender's samples x the sender's CPU time
(user + system, from ``wait4``) per packet sent. Prints each mode's ns per packet and
the symbols whose cost differs most from the raw sender's. Root, ``perf`` on PATH::

    .venv/bin/python scripts/perf/tunnel_sender_cost.py [--size 1400] [--seconds 3]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bpf_host  # this directory's script

from mobileip.tools.forwarding_bench import (
    FlowPath,
    Topology,
    build_sender,
    sender_argv,
)

SAMPLE = re.compile(r"\s*([\d.]+)%\s+\[[k.]\]\s+(\S+)")


def profile(data: Path, comm: str) -> dict[str, float]:
    """Share of ``comm``'s samples per symbol (sums to 1)."""
    out = subprocess.run(["perf", "report", "-i", str(data), "--comm", comm, "--no-children",
                          "--sort", "sym", "--stdio", "-q", "-g", "none", "--percent-limit", "0"],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    shares = {m.group(2): float(m.group(1)) for m in map(SAMPLE.match, out.splitlines()) if m}
    total = sum(shares.values()) or 1.0
    return {sym: v / total for sym, v in shares.items()}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--size", type=int, default=1400)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--top", type=int, default=14)
    args = p.parse_args()
    ns: dict[str, dict[str, float]] = {}
    per_packet: dict[str, float] = {}
    with (
        tempfile.TemporaryDirectory(prefix="mobileip-tsc-", dir="/var/tmp") as tmp,
        Topology("mtsc") as topo,
    ):
        sender = build_sender(Path(tmp))
        bpf_host.drop_at_ingress(topo.ns["src"], topo.devs["src"])
        bpf_host.drop_at_ingress(topo.ns["ha"], topo.devs["ha-coa"])
        for mode in ("raw", "ipip", "gre"):
            fp = FlowPath(f"sender-{mode}", True, None, mode, sink=True)
            argv = sender_argv(topo, sender, fp, args.size, args.seconds, 0.0)
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
            time.sleep(args.seconds / 6)
            data = Path(tmp) / f"perf-{mode}.data"
            window = f"{args.seconds * 2 / 3:.2f}"
            subprocess.run(["perf", "record", "-q", "-a", "-g", "-o", str(data), "--", "sleep",
                            window], capture_output=True, check=True)  # fmt: skip
            assert proc.stdout is not None
            out = proc.stdout.read()
            _, _, usage = os.wait4(proc.pid, 0)  # the sender's own CPU time (not perf's)
            proc.returncode = 0
            sent = int(out.split()[1])
            cpu = usage.ru_utime + usage.ru_stime
            per_packet[mode] = cpu / sent * 1e9
            ns[mode] = {s: v * per_packet[mode] for s, v in profile(data, sender.name).items()}
            print(f"{mode:<5} {sent / args.seconds:>12,.0f} packets/s, sender CPU "
                  f"{cpu / args.seconds:.2f} s/s, {per_packet[mode]:.0f} ns/packet")  # fmt: skip
    base = ns["raw"]
    for mode in ("ipip", "gre"):
        mine = ns[mode]
        print(f"{mode}: {per_packet[mode] - per_packet['raw']:+.0f} ns/packet against raw; the "
              "symbols that differ most (ns/packet, raw -> this):")  # fmt: skip
        diffs = sorted(((mine.get(s, 0.0) - base.get(s, 0.0), s) for s in {*mine, *base}),
                       reverse=True)  # fmt: skip
        for d, sym in [*diffs[: args.top], (0.0, "..."), *diffs[-4:]]:
            if sym == "...":
                print("  ...")
                continue
            print(f"  {d:+6.1f}  {sym} ({base.get(sym, 0.0):.1f} -> {mine.get(sym, 0.0):.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
