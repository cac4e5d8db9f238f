"""Takeover with a NAT-ed mobile node against a baseline without NAT, inside User-Mode Linux
(issue 16 item 1), by hand::

    python -m mobileip.tools.uml --timeout 3000 -- \\
        .venv/bin/python scripts/perf/nat_takeover.py --runs 3

The scenario of tests/test_kernel_nat.py's failover, measured rather than asserted, alternating
two variants of :class:`mobileip.tools.natlab.NatLab` in one boot: ``nat`` (the mobile node behind
the kernel's conntrack NAT, RFC 3519 UDP tunnel both ways) and ``baseline`` (the same namespaces,
the NAT box a plain router, the mobile node an ordinary co-located node: IP-in-IP to it, its
replies routed straight back). Per run: the correspondent pings the home address every 20 ms,
ha1's link is cut and ha1 SIGKILLed; outage = the ping's longest gap less one interval. One JSON
line per run, then per variant the median and worst, and the ratio of the medians. Timings
inside UML are relative (one ptrace-trapped CPU for every process).

``--backend kernel``: the Home Agents run the kernel data plane; ``nat`` is then its hybrid path
(the home routed into its TUN, dataplane/udp_tun.py) and ``baseline`` its kernel IP-in-IP fast
path.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from typing import Any

from mobileip.tools.natlab import NatLab


def one_run(nat: bool, backend: str) -> dict[str, Any]:
    lab = NatLab(nat, backend=backend)
    row: dict[str, Any] = {"variant": "nat" if nat else "baseline", "backend": backend}
    try:
        lab.setup()
        lab.start_home_agents()
        node = lab.start_daemon("mn", "mobilenode", lab.mn_config())
        node.wait_for("mn.registered", 30)
        if nat:
            lab._wait(lambda: bool(lab.mapping("ha1") and lab.mapping("ha2")), 30, "mappings")
        else:
            lab._wait(
                lambda: all(
                    lab.control(n, "/api/v1/dataplane?homes=0")["installed"] == 1
                    for n in ("ha1", "ha2")
                ),
                30,
                "the route on both members",
            )
        warm = lab.ping(1.0)
        row["warmup_received"] = f"{warm['received']}/{warm['sent']}"
        result = lab.failover()
        row.update({k: result[k] for k in ("outage_ms", "max_gap_ms", "sent", "received", "lost")})
    finally:
        lab.teardown()
    return row


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=3, help="runs of each variant (alternating)")
    p.add_argument("--backend", default="userspace", choices=("userspace", "kernel"))
    args = p.parse_args()
    rows: list[dict[str, Any]] = []
    for _ in range(args.runs):
        for nat in (True, False):
            row = one_run(nat, args.backend)
            print(json.dumps(row), flush=True)
            rows.append(row)
    medians: dict[str, float] = {}
    for variant in ("nat", "baseline"):
        outages = [r["outage_ms"] for r in rows if r["variant"] == variant]
        medians[variant] = statistics.median(outages)
        print(
            f"{variant}: outage median {medians[variant]:.0f} ms, worst {max(outages):.0f} ms "
            f"over {len(outages)} runs ({', '.join(f'{o:.0f}' for o in outages)})"
        )
    if medians["baseline"]:
        print(f"ratio of medians nat/baseline: {medians['nat'] / medians['baseline']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
