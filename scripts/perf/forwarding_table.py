"""Markdown tables for docs/performance.md from a forwarding bench run's JSON::

python -m mobileip.tools.forwarding_bench run --json > run.json
.venv/bin/python scripts/perf/forwarding_table.py run.json
"""

from __future__ import annotations

import json
import sys
from typing import Any


def ratio(r: dict[str, Any] | None) -> str:
    return "" if not r else f"{r['median']:.2f} ({r['min']:.2f}-{r['max']:.2f})"


def main(path: str) -> int:
    data = json.loads(open(path).read())  # noqa: SIM115 - a one-shot tool
    print(
        "| kernel | path | bytes | packets/s | Mbit/s | x ceiling, delivered | "
        "host CPU ns/packet | x ceiling, packets per CPU-s | x ceiling, forwarding work only |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for key in ("host", "uml"):
        part = data.get(key) or {}
        for row in part.get("rows", {}).values():
            cpu = row.get("host_cpu_ns_per_packet")
            print(
                f"| {part['where']} | {row['path']} | {row['size']} | {row['pps']:,} | "
                f"{row['mbit_s']:,.0f} | {ratio(row.get('ratio'))} | "
                f"{'' if cpu is None else f'{cpu:,.0f}'} | {ratio(row.get('cpu_ratio'))} | "
                f"{ratio(row.get('forwarding_cpu_ratio'))} |"
            )
    print()
    print(
        "| kernel | backend | bindings | install, us/binding | process RSS, bytes/binding | "
        "kernel slab, bytes/binding | with T flag: install | with T flag: kernel slab |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for key in ("host", "uml"):
        part = data.get(key) or {}
        for kind, i in part.get("install", {}).items():
            if "install_us_per_binding" not in i:
                continue
            t = i.get("t_flag", {})
            print(
                f"| {part['where']} | {kind} | {i['bindings']:,} | {i['install_us_per_binding']} | "
                f"{i['rss_bytes_per_binding']:,} | {i['kernel_slab_bytes_per_binding']:,} | "
                f"{t.get('install_us_per_binding', '')} us | "
                f"{t.get('kernel_slab_bytes_per_binding', 0):+,} |"
            )
    for key in ("host", "uml"):
        part = data.get(key) or {}
        for row in part.get("rows", {}).values():
            share = row.get("host_cpu_share")
            if share:
                print(f"{part['where']} {row['path']}@{row['size']} UML CPU share {ratio(share)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
