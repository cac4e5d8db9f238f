"""The tc BPF fast path against plain forwarding on the HOST kernel (JIT), issue 14.

The fast path's programs need no tunnel device (the forward one pushes the outer IP-in-IP/GRE
header itself and redirects; the reverse one catches IP-in-IP/GRE addressed to the Home Agent
at tc ingress, decapsulates and redirects), so they run on a kernel without the ipip/gre
modules, where the kernel backend cannot. This measures them in the forwarding bench's topology
(src -- ha -- coa on veth, :class:`mobileip.tools.forwarding_bench.Topology`; its C sender
and counting at the far side, :func:`measure` being its ``measure`` for one sender), the
shipped :class:`BpfFastPath` loaded the way ``scripts/perf/bpf_fastpath.py package`` does
(:class:`mobileip.tools.fastpath_bench.FastPathHelper`, a helper process in ``ha``: N
bindings, home H, H+1, ... tunnelled to coa, reverse tunnels accepted from coa; the MAC path's
next hop resolved), attached for the ``bpf*`` rows and detached (no program at all) for the
others. ``mobileip bench --only forwarding`` has the ``bpf``, ``bpf-gre``, ``bpf-rev-hdr`` and
``bpf-gre-rev-hdr`` rows too (the same helper and senders, from src/mobileip/tools/
fastpath_bench.py); this script adds the tunnel-socket reverse rows, the matched ceilings and
the evidence below.

Rows, each size, interleaved rounds (the order rotates from round to round):

* ``sender`` / ``sender-rev`` / ``sender-rev-ipip`` / ``sender-rev-gre``: the sender alone,
  everything dropped at ha's ingress (tc matchall);
* ``ceiling``: plain forwarding of UDP src -> home address (``HOA/32 via coa``);
* ``bpf`` / ``bpf-gre``: the forward program (the measured home's binding IP-in-IP / GRE);
* ``ceiling-rev``: plain forwarding coa -> src of the home address's packet;
* ``ceiling-rev-ipip`` / ``ceiling-rev-gre``: the **matched reverse ceilings**: the same
  sender sending the same tunnelled packets as the bpf reverse row (same sizes, same outer and
  inner headers, the same raw IPPROTO_IPIP / IPPROTO_GRE socket), with src as the outer
  destination instead of ha: ha forwards them as plain IP (no decapsulation, no program), src
  counts (its veth's rx) and drops them (the same cBPF drop) as it does the decapsulated ones;
* ``bpf-rev`` / ``bpf-gre-rev``: that packet IP-in-IP / GRE to ha's address, the reverse
  program;
* ``sender-rev-ipip-hdr`` / ``bpf-rev-hdr`` (and ``-gre-``): the same tunnelled packet, whole
  (the outer header as the kernel writes it: fastpath_bench.tunnelled_packet), sent on an
  IPPROTO_RAW (IP_HDRINCL) socket like ceiling-rev's bare one (fastpath_bench.PKT_SENDER_C): a
  sender whose tunnelled packets cost what the plain ones do. The raw IPPROTO_IPIP/GRE socket
  of the rows above copies the payload with a software checksum and builds the outer header
  through ip_append_data (scripts/perf/tunnel_sender_cost.py: +170 ns a packet at 1,400 B),
  which ceiling-rev's sender does not pay.

Ratios are per round (a row against its ceiling in the same round), then median [range]. The
reverse bpf rows are reported against both: the plain ceiling ``ceiling-rev`` (as before) and
their matched ceiling (:data:`MATCHED`), which pays the same sender cost; the ``-hdr`` rows
against ``ceiling-rev``.
Evidence that the programs carried the packets, per row: ha's IP ``InReceives`` delta (the
stack's count: a redirected packet never reaches it), the pair's ``accepted`` counter delta
and the route cache's entry for src after each reverse row (its generation and the largest
inner packet it holds: 1,400 after a 1,400 B row means those packets are forwarded from the
cache); with ``--prog-stats`` (a diagnostic: kernel.bpf_stats_enabled costs every program
run two clock reads) each program's ns per run over the row; after the rounds, a short sampled
run of every row (64 B) with a counting BPF program as the far side's drop, tallying IP
protocols (forward: 4 IP-in-IP / 47 GRE at coa).
An AF_PACKET tap saw nothing on this host, and it has no tc matchall/gact for the bench's
drop at the far side: a classic BPF direct-action program returning TC_ACT_SHOT drops there
instead (the topology's own fallback), and the sender rows (everything dropped at ha's
ingress) use it too.

Usage (root)::

    .venv/bin/python scripts/perf/bpf_host.py [--rounds 5] [--runs 2] [--bindings 10000]
        [--duration 1.0] [--sizes 64,1400] [--json OUT] [--prog-stats]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from mobileip.dataplane.bpf import PRIO_FORWARD, PRIO_REVERSE
from mobileip.tools import forwarding_bench as fb
from mobileip.tools.fastpath_bench import (
    FastPathHelper,
    build_pkt_sender,
    ip_in_receives,
    jit_enabled,
)
from mobileip.tools.forwarding_bench import (
    COA_ADDR,
    HA_OUT,
    HOME,
    SRC_ADDR,
    FlowPath,
    Topology,
    build_sender,
    sender_argv,
)

ROWS = (
    FlowPath("sender", False, None, "udp", sink=True),
    FlowPath("ceiling", False, None, "udp", baseline="sender"),
    FlowPath("bpf", False, None, "udp", ceiling="ceiling", baseline="sender"),
    FlowPath("bpf-gre", False, None, "udp", ceiling="ceiling", baseline="sender"),
    FlowPath("sender-rev", True, None, "raw", sink=True),
    FlowPath("ceiling-rev", True, None, "raw", baseline="sender-rev"),
    FlowPath("sender-rev-ipip", True, None, "ipip", sink=True),
    FlowPath("ceiling-rev-ipip", True, None, "ipip", baseline="sender-rev-ipip"),
    FlowPath("bpf-rev", True, None, "ipip", False, "ceiling-rev", "sender-rev-ipip"),
    FlowPath("sender-rev-gre", True, None, "gre", sink=True),
    FlowPath("ceiling-rev-gre", True, None, "gre", baseline="sender-rev-gre"),
    FlowPath("bpf-gre-rev", True, None, "gre", False, "ceiling-rev", "sender-rev-gre"),
    # the same tunnelled packets, whole (outer header included) on an IPPROTO_RAW socket, as
    # ceiling-rev's sender sends its bare ones (fastpath_bench.PKT_SENDER_C)
    FlowPath("sender-rev-ipip-hdr", True, None, "ipip-hdr", sink=True),
    FlowPath("bpf-rev-hdr", True, None, "ipip-hdr", False, "ceiling-rev", "sender-rev-ipip-hdr"),
    FlowPath("sender-rev-gre-hdr", True, None, "gre-hdr", sink=True),
    FlowPath("bpf-gre-rev-hdr", True, None, "gre-hdr", False, "ceiling-rev", "sender-rev-gre-hdr"),
)
# the matched reverse ceilings: the bpf reverse row's own sender and packets (the same outer
# and inner headers, sizes and socket), the outer destination src instead of ha: ha forwards
# the tunnelled packet as plain IP (no decapsulation), src counts and drops it as it does the
# decapsulated ones
MATCHED = {"bpf-rev": "ceiling-rev-ipip", "bpf-gre-rev": "ceiling-rev-gre"}


def row_argv(topo: Topology, sender: Path, fp: FlowPath, size: int, duration: float) -> list[str]:
    """The sender of ``fp`` as forwarding_bench's (a ``-hdr`` row's: fastpath_bench's
    PKT_SENDER_C, built next to ``sender``, with its tunnelled_packet); a matched reverse
    ceiling's (:data:`MATCHED`) sends the same tunnelled packets to src as the outer
    destination instead of ha."""
    argv = sender_argv(topo, sender, fp, size, duration, 0.0)
    if fp.name in MATCHED.values():
        argv[argv.index(HA_OUT)] = SRC_ADDR
    return argv


def measure(topo: Topology, sender: Path, size: int, duration: float, fp: FlowPath) -> float:
    """forwarding_bench.measure for one sender, every row's argv from :func:`row_argv`:
    delivered packets/s at the far side (its veth's rx) over the steady window."""
    argv = row_argv(topo, sender, fp, size, duration)
    return fb.measure(topo, sender, size, duration, 1, fp=fp, argv=argv)[0]


# --- evidence ------------------------------------------------------------------------------


def sampled(topo: Topology, sender: Path, fp: FlowPath, size: int) -> dict[str, int]:
    """A short run of ``fp`` with :func:`counter_program` as the far side's drop: what arrived
    there, by IP protocol (4 IP-in-IP, 17 UDP, 47 GRE)."""
    where = "src" if fp.reverse else "coa"
    dev = topo.devs[where]
    argv = [sys.executable, "-m", "mobileip.tools.fastpath_bench", "counter", "--dev", dev,
            "--ns", topo.ns[where], "--seconds", "1.2"]  # fmt: skip
    tap = subprocess.Popen(topo.exec(where, argv), stdout=subprocess.PIPE, text=True)
    assert tap.stdout is not None
    if tap.stdout.readline().strip() != "ready":
        raise RuntimeError(f"the far side's counter did not start ({tap.wait()})")
    measure(topo, sender, size, 0.6, fp)
    out, _ = tap.communicate(timeout=20)
    if tap.returncode != 0:
        raise RuntimeError(f"the far side's counter failed ({tap.returncode})")
    result: dict[str, int] = json.loads(out.strip().splitlines()[-1])
    return result


# --- the measurement -----------------------------------------------------------------------


Evidence = dict[str, dict[tuple[str, int], list[Any]]]


def row_evidence(key: tuple[str, int], before: dict[str, Any], after: dict[str, Any],
                 reverse: bool, evidence: Evidence) -> str:  # fmt: skip
    """The helper's counters around a bpf row, kept in ``evidence``: reverse, the pair's
    ``accepted`` delta and the route cache's entry for src after the row (generation, the
    largest inner packet it holds, whether the generation changed during the row: a bump
    means one FIB lookup, then hits); both, with kernel.bpf_stats_enabled (``--prog-stats``),
    ns per run of each program over the row. A short note for the row's line."""
    note = ""
    if reverse:
        acc = (after["accepted"] or 0) - (before["accepted"] or 0)
        evidence.setdefault("accepted", {}).setdefault(key, []).append(acc)
        route = after["cached_route"]
        gen0, gen1 = (c["status"]["route_generation"] for c in (before, after))
        cache = [route[0], route[4], gen1 == route[0], gen0 != gen1] if route else None
        evidence.setdefault("route_cache", {}).setdefault(key, []).append(cache)
        note += f", accepted +{acc:,}, cache (generation, largest) " + (
            f"({route[0]}, {route[4]})" if route else "none"
        )
    for prio, name in ((str(PRIO_REVERSE), "reverse"), (str(PRIO_FORWARD), "forward")):
        (n0, t0), (n1, t1) = before["prog_stats"][prio], after["prog_stats"][prio]
        if n1 > n0:
            ns = (t1 - t0) / (n1 - n0)
            evidence.setdefault(f"prog_ns_{name}", {}).setdefault(key, []).append(ns)
            note += f", {name} program {ns:.0f} ns x {n1 - n0:,}"
    return note


def one_run(sender: Path, args: argparse.Namespace, sizes: list[int]) -> dict[str, Any]:
    tag = f"mbh{os.getpid() % 100000}"
    data: dict[str, Any] = {"load_before": os.getloadavg(), "rounds": args.rounds}
    pps: dict[tuple[str, int], list[float]] = {}
    stack: dict[tuple[str, int], list[int]] = {}
    cpu: dict[tuple[str, int], list[float]] = {}  # the sender's CPU seconds per second
    evidence: Evidence = {}  # row_evidence's
    with Topology(tag) as topo:
        # the far ends drop right after counting (the topology's: matchall, else a cBPF drop)
        data["far_side_drop"] = topo.drop_kind
        if not topo.drops_at_ingress:
            raise RuntimeError("the far ends cannot drop at ingress (tc clsact + cls_bpf)")
        h = FastPathHelper(topo, args.bindings, HA_OUT, COA_ADDR, HOME, SRC_ADDR)
        try:
            data["install"] = h.install
            print(f"  helper: {json.dumps(h.install)}", flush=True)
            h.attach(False)
            runs = [(size, fp) for size in sizes for fp in ROWS]
            for rep in range(args.rounds):
                shift = rep * len(runs) // args.rounds
                for size, fp in runs[shift:] + runs[:shift]:
                    bpf = fp.name.startswith("bpf")
                    if bpf and not fp.reverse:
                        h.use_gre(fp.name == "bpf-gre")
                    h.attach(bpf)
                    if fp.sink:
                        topo.sink("ha-coa" if fp.reverse else "ha-src", True)
                    before = h.ask("counters") if bpf else {}
                    in0 = ip_in_receives(topo)
                    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
                    try:
                        got = measure(topo, sender, size, args.duration, fp)
                    finally:
                        if fp.sink:
                            topo.sink("ha-coa" if fp.reverse else "ha-src", False)
                    in1 = ip_in_receives(topo)
                    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
                    used = ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime
                    key = (fp.name, size)
                    cpu.setdefault(key, []).append(used / args.duration)
                    pps.setdefault(key, []).append(got)
                    stack.setdefault(key, []).append(in1 - in0)
                    note = ""
                    if bpf:
                        after = h.ask("counters")
                        note = row_evidence(key, before, after, fp.reverse, evidence)
                    print(f"  round {rep + 1}/{args.rounds} {fp.name:<16} {size:>5} B: "
                          f"{got:>10,.0f} pkt/s, sender CPU {used / args.duration:.2f}, "
                          f"ha IP InReceives +{in1 - in0:,}{note}", flush=True)  # fmt: skip
            # evidence: what the far side receives, sampled
            samples: dict[str, Any] = {}
            for fp in ROWS:
                if fp.sink:
                    continue
                bpf = fp.name.startswith("bpf")
                if bpf and not fp.reverse:
                    h.use_gre(fp.name == "bpf-gre")
                h.attach(bpf)
                samples[fp.name] = sampled(topo, sender, fp, 64)
            h.attach(True)
            data["counters_end"] = h.ask("counters")
        finally:
            h.close()
    data["samples"] = samples
    data["load_after"] = os.getloadavg()
    data["pps"] = {f"{p}@{s}": v for (p, s), v in pps.items()}
    data["sender_cpu"] = {f"{p}@{s}": v for (p, s), v in cpu.items()}
    data["ha_ip_in"] = {f"{p}@{s}": v for (p, s), v in stack.items()}
    for what, per_row in evidence.items():
        data[what] = {f"{p}@{s}": v for (p, s), v in per_row.items()}
    data.setdefault("accepted", {})
    ratios: dict[str, list[float]] = {}
    cpu_ratios: dict[str, list[float]] = {}  # packets per sender CPU-s against the ceiling's
    for fp in ROWS:
        for size in sizes:
            ceiling = fp.ceiling or ("ceiling-rev" if fp.reverse else "ceiling")
            if fp.name == ceiling:
                continue
            mine, ceil = pps[(fp.name, size)], pps[(ceiling, size)]
            ratios[f"{fp.name}@{size}"] = [m / c for m, c in zip(mine, ceil, strict=True) if c]
            mc, cc = cpu[(fp.name, size)], cpu[(ceiling, size)]
            cpu_ratios[f"{fp.name}@{size}"] = [
                (m / a) / (c / b)
                for m, a, c, b in zip(mine, mc, ceil, cc, strict=True)
                if a > 0 and b > 0 and c > 0
            ]
    data["ratios"] = ratios
    # the reverse rows against their matched ceiling (the same sender and packets, forwarded
    # by ha as plain IP), per round
    data["matched_ratios"] = {
        f"{row}@{size}": [m / c for m, c in zip(pps[(row, size)], pps[(ceiling, size)],
                                               strict=True) if c]
        for row, ceiling in MATCHED.items() for size in sizes
    }  # fmt: skip
    # the forwarding work alone: (1/ceiling - 1/its sender) / (1/row - 1/its sender), time per
    # packet from delivered packets/s (one CPU busy), round by round
    fwd: dict[str, list[float]] = {}
    for fp in ROWS:
        if not fp.ceiling or not fp.baseline:
            continue
        cfp = next(r for r in ROWS if r.name == fp.ceiling)
        for size in sizes:
            vals = []
            for m, c, b, cb in zip(pps[(fp.name, size)], pps[(fp.ceiling, size)],
                                   pps[(fp.baseline, size)], pps[(cfp.baseline or "", size)],
                                   strict=True):  # fmt: skip
                mine_ns, ceil_ns = 1e9 / m - 1e9 / b, 1e9 / c - 1e9 / cb
                if mine_ns > 0:
                    vals.append(ceil_ns / mine_ns)
            if vals:
                fwd[f"{fp.name}@{size}"] = vals
    data["fwd_ratios"] = fwd
    data["cpu_ratios"] = cpu_ratios
    return data


def _spread(v: list[float]) -> str:
    return f"{statistics.median(v):.2f} [{min(v):.2f}-{max(v):.2f}]"


def report(runs: list[dict[str, Any]], sizes: list[int]) -> list[str]:
    lines = []
    head = f"{'row':<16}" + "".join(
        f"{f'{s} B pkt/s':>13}{'CPU':>5}{'x ceiling':>19}{'per sender CPU-s':>19}" for s in sizes
    )
    for i, run in enumerate(runs, 1):
        lb, la = run["load_before"], run["load_after"]
        lines.append(f"run {i}: {run['rounds']} rounds, load {lb[0]:.2f} -> {la[0]:.2f} "
                     f"(1-min), {la[1]:.2f} (5-min)")  # fmt: skip
        lines.append(head)
        for fp in ROWS:
            cells = ""
            for s in sizes:
                key = f"{fp.name}@{s}"
                med = statistics.median(run["pps"][key])
                rat = _spread(run["ratios"][key]) if key in run["ratios"] else "-"
                per = _spread(run["cpu_ratios"][key]) if key in run["cpu_ratios"] else "-"
                share = statistics.median(run["sender_cpu"][key])
                cells += f"{med:>13,.0f}{share:>5.2f}{rat:>19}{per:>19}"
            lines.append(f"{fp.name:<16}{cells}")
        lines.append(
            "reverse rows x their MATCHED ceiling (the same tunnelled packets from the same "
            "sender, forwarded by ha as plain IP to src), per round:"
        )
        for row, ceiling in MATCHED.items():
            got = [f"{s} B {_spread(run['matched_ratios'][f'{row}@{s}'])}" for s in sizes]
            lines.append(f"  {row:<14} / {ceiling}: " + "; ".join(got))
        lines.append("forwarding work alone (each row's sender subtracted), x ceiling's:")
        for fp in ROWS:
            got = [f"{s} B {_spread(run['fwd_ratios'][f'{fp.name}@{s}'])}" for s in sizes
                   if f"{fp.name}@{s}" in run.get("fwd_ratios", {})]  # fmt: skip
            if got:
                lines.append(f"  {fp.name:<14} " + "; ".join(got))
        lines.append("evidence (median per run): ha IP InReceives delta / pair accepted delta")
        for fp in ROWS:
            if fp.sink:
                continue
            parts = []
            for s in sizes:
                key = f"{fp.name}@{s}"
                part = f"{s} B: stack +{statistics.median(run['ha_ip_in'][key]):,.0f}"
                if key in run["accepted"]:
                    part += f", accepted +{statistics.median(run['accepted'][key]):,.0f}"
                parts.append(part)
            lines.append(f"  {fp.name:<14} " + "; ".join(parts))
        lines.append(
            "route cache entry for src after each reverse row (generation, largest inner "
            "packet; 'bumped': the generation changed during the row):"
        )
        for key, entries in run.get("route_cache", {}).items():
            shown = [f"({e[0]}, {e[1]}{', bumped' if e[3] else ''})" if e else "none"
                     for e in entries]  # fmt: skip
            lines.append(f"  {key:<20} " + " ".join(shown))
        for name in ("reverse", "forward"):
            got = run.get(f"prog_ns_{name}", {})
            if got:
                lines.append(f"{name} program, ns per run (bpf_stats), median [range] per row:")
                for key, v in got.items():
                    lines.append(f"  {key:<20} {statistics.median(v):.0f} "
                                 f"[{min(v):.0f}-{max(v):.0f}]")  # fmt: skip
        lines.append("far side, 64 B sample (a counting BPF program as its drop), by IP protocol:")
        for name, tally in run["samples"].items():
            lines.append(f"  {name:<14} {dict(Counter(tally).most_common(3))}")
    return lines


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--runs", type=int, default=2)
    p.add_argument("--bindings", type=int, default=10_000)
    p.add_argument("--duration", type=float, default=1.0)
    p.add_argument("--sizes", default="64,1400")
    p.add_argument("--json", default="")
    p.add_argument(
        "--prog-stats",
        action="store_true",
        help="kernel.bpf_stats_enabled=1 during the runs: ns per program run (a "
        "diagnostic: the accounting costs every BPF program two clock reads)",
    )
    args = p.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="mobileip-bpfhost-", dir="/var/tmp") as tmp:
        sender = build_sender(Path(tmp))
        build_pkt_sender(Path(tmp))
        print(f"kernel {os.uname().release}, bpf_jit_enable {jit_enabled()}")
        runs = []
        knob = Path("/proc/sys/kernel/bpf_stats_enabled")
        was = knob.read_text().strip()
        try:
            if args.prog_stats:
                knob.write_text("1")
            for i in range(args.runs):
                print(f"run {i + 1}/{args.runs}", flush=True)
                runs.append(one_run(sender, args, sizes))
                runs[-1]["prog_stats"] = args.prog_stats
        finally:
            knob.write_text(was)
    for line in report(runs, sizes):
        print(line)
    if args.json:
        Path(args.json).write_text(json.dumps(runs, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
