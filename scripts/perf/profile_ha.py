"""Load a bench-style Home Agent (alone or with two peers) and report each member's CPU.

    .venv/bin/python scripts/perf/profile_ha.py alone|async|semisync \
        [--runs 2] [--duration 3] [--py-spy PREFIX]

Starts the daemons exactly as `mobileip bench` does (mobileip.tools.bench.Children), warms them up,
then runs the load generator (`--max`, window 128) `--runs` times and prints throughput, each
member's CPU per registration (user + system from /proc) and reply latency percentiles. With
`--py-spy PREFIX` it also records the first member (and the first peer) with py-spy in raw
format to PREFIX.0, PREFIX.1 (summarize them with scripts/perf/pyspy_top.py).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mobileip.tools.bench import BenchPlan, Children, _spec, cpu_seconds
from mobileip.tools.loadgen import run_load


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["alone", "async", "semisync"])
    p.add_argument("--runs", type=int, default=2)
    p.add_argument("--duration", type=float, default=3.0)
    p.add_argument("--py-spy", dest="pyspy")
    args = p.parse_args()
    spy = str(Path(sys.executable).with_name("py-spy"))
    if args.pyspy and not Path(spy).exists():
        print(
            f"profile_ha.py: --py-spy needs {spy} (pip install 'mobileip[bench]')", file=sys.stderr
        )
        return 2
    kids = Children(Path(tempfile.mkdtemp()), "warning")
    try:
        if args.mode == "alone":
            members = kids.group("alone", 1, None)
        else:
            members = kids.group("g", 3, args.mode)
        plan = BenchPlan.quick()
        run_load(_spec(members[0].udp, plan, duration=1.0))
        spies = []
        if args.pyspy:
            for i, m in enumerate(members[:2]):
                cmd = [spy, "record", "-p", str(m.proc.pid), "-d", str(int(args.duration) + 1)]
                cmd += ["-r", "300", "-f", "raw", "-o", f"{args.pyspy}.{i}", "--nonblocking"]
                spies.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL))
            time.sleep(0.5)
        for _ in range(args.runs):
            before = [cpu_seconds([m.proc.pid]) for m in members]
            res = run_load(_spec(members[0].udp, plan, duration=args.duration))
            per = [
                round((cpu_seconds([m.proc.pid]) - b) / max(1, res.replies) * 1e6, 1)
                for m, b in zip(members, before, strict=True)
            ]
            lat = {p: round(res.percentile(p) * 1000, 2) for p in (50, 90, 99)}
            print(
                f"{args.mode}: {res.throughput:,.0f}/s; CPU us/registration per member {per};"
                f" latency ms {lat}; timeouts {res.timeouts}"
            )
        for spy_proc in spies:
            spy_proc.wait()
    finally:
        kids.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
