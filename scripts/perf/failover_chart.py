#!/usr/bin/env python3
"""Draw docs/failover-scale.png from docs/failover-scale.json (the failover section's numbers).

    .venv/bin/python scripts/perf/failover_chart.py [--data docs/failover-scale.json]
        [--out docs/failover-scale.png]

Left: sampled outage after SIGKILL of the active (median and worst) against the number of
bindings, before (cold standby: nothing installed until a member became active) and after (hot
standby: one ip rule). Right: what a standby pays per binding to install its forwarding state
(the lab's SYNCED-to-installed time / bindings, the service's own time per route, and the raw
batched netlink writer of scripts/perf/rtnl_bench.py). The JSON holds only measured numbers;
null is "not measured" and is not drawn.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def points(rows: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    xs = [r["bindings"] for r in rows if r.get(key) is not None]
    ys = [float(r[key]) for r in rows if r.get(key) is not None]
    return xs, ys


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="docs/failover-scale.json")
    ap.add_argument("--out", default="docs/failover-scale.png")
    args = ap.parse_args()
    data = json.loads(Path(args.data).read_text())
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))

    outage = data["outage"]
    for key, label, style in (
        ("before_issue_ms", "before: issue 13's lab (one real mobile node)", "x--"),
        ("before_worst_ms", "before (cold standby), worst", "o--"),
        ("before_median_ms", "before, median", "o:"),
        ("after_worst_ms", "after (hot standby, virtual MAC), worst", "s-"),
        ("after_median_ms", "after, median", "s:"),
        ("after_novmac_worst_ms", "after, no virtual MAC, worst", "d-"),
    ):
        xs, ys = points(outage, key)
        if xs:
            left.plot(xs, ys, style, label=label)
    for y, label in ((500, "target 10k/100k: 0.5 s"), (1000, "target 1M: 1 s")):
        left.axhline(y, color="grey", linewidth=0.8, linestyle="--")
        left.text(12, y * 1.06, label, fontsize=8, color="grey")
    left.set_xscale("log")
    left.set_yscale("log")
    left.set_xlabel("bindings")
    left.set_ylabel("sampled outage after SIGKILL (ms)")
    left.set_title("Takeover: outage per mobile node (0.1 s VRRP adverts)")
    left.legend(fontsize=8)
    left.grid(True, which="both", alpha=0.3)

    install = data["install"]
    for key, label, style in (
        ("lab_us_per_binding", "lab: standby SYNCED -> installed / bindings", "s-"),
        ("service_us_per_route", "service: time in its batches / routes", "^-"),
        ("rtnl_us_per_route", "raw batched netlink (rtnl_bench)", "o--"),
    ):
        xs, ys = points(install, key)
        if xs:
            right.plot(xs, ys, style, label=label)
    right.set_xscale("log")
    right.set_xlabel("bindings")
    right.set_ylabel("us per binding")
    right.set_ylim(bottom=0)
    right.set_title("Standby install cost (20 us/binding = 20 s at 1M)")
    right.axhline(20, color="grey", linewidth=0.8, linestyle="--")
    right.legend(fontsize=8)
    right.grid(True, which="both", alpha=0.3)

    fig.suptitle(data.get("title", "Failover at scale"), fontsize=10)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
