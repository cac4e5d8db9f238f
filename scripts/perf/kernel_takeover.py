"""Kernel-backend takeover at scale, inside User-Mode Linux (issue 14), by hand::

    python -m mobileip.tools.uml --mem 2048M --timeout 3000 -- \\
        .venv/bin/python scripts/perf/kernel_takeover.py --bindings 10000 100000 --runs 2

The scenario of tests/test_kernel_takeover.py, measured rather than asserted: the lab's topology
(:class:`mobileip.tools.lab.NetnsLab`, two Home Agents, ``[dataplane] backend = "kernel"``,
``virtual_mac``, native VRRP at 0.1 s), N simulated mobile nodes with co-located care-of
addresses registered through the virtual address, UDP from the correspondent to 20 sampled home
addresses every 20 ms counted at the care-of side (raw IP-in-IP socket), the active SIGKILLed and
its link cut. Per run: registration time, time until both members hold every route, the
service's install cost per route, sampled outage median/worst, packets tunnelled twice, and the
survivor's clean-stop time. One JSON line per run, then a summary. Timings inside UML are
relative (one ptrace-trapped CPU for every process).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import signal
import statistics
import sys
import time
from typing import Any

from mobileip.daemon.memory import status_kib
from mobileip.tools import simnodes
from mobileip.tools.lab import LabError, _ip
from mobileip.tools.takeover import STATUS, KernelLab, tunnelled_twice


def one_run(
    n: int, samples: int, every: float, sigkill_only: bool = False, fastpath: str = "auto"
) -> dict[str, Any]:
    lab = KernelLab(
        None, 0.1, 0.01, mobile_nodes=n, sample=0, members=2, real_mn=False, backend="kernel"
    )
    lab.fastpath = fastpath
    homes = [str(simnodes.home_of(i)) for i in simnodes.sample_indices(n, samples)]
    stop = lab.work / "stop-traffic"
    row: dict[str, Any] = {"bindings": n}
    try:
        lab.start_pair()
        started = time.monotonic()
        reg = lab.register_simulated(n)
        row["registration"] = {k: reg.get(k) for k in ("accepted", "timeouts", "wall_s",
                                                       "throughput_per_s")}  # fmt: skip
        registered = time.monotonic()
        table = int(lab.control("ha1", "/api/v1/redundancy", timeout=60).get("bindings", 0))
        row["table"] = table

        def both() -> bool:
            for node in ("ha1", "ha2"):
                d = lab.control(node, STATUS, timeout=60)
                if not (d["installed"] == d["desired"] == table and not d["pending"]):
                    return False
                row.setdefault("installed_at_s", {}).setdefault(
                    node, round(time.monotonic() - started, 2)
                )
            return True

        lab._wait(both, 120 + n / 100, "both members to hold every route", poll=0.5)
        row["both_installed_s"] = round(time.monotonic() - started, 2)
        row["after_registration_s"] = round(time.monotonic() - registered, 2)
        for node in ("ha1", "ha2"):
            d = lab.control(node, STATUS, timeout=60)
            row[node] = {k: d.get(k) for k in ("active", "rule_installed", "installed",
                                               "install_us_per_route", "longest_batch_ms",
                                               "install_seconds_total")}  # fmt: skip
            row[node]["rss_kib"] = status_kib("VmRSS", lab.procs[node].popen.pid)
            fast = (d.get("backend") or {}).get("fastpath") or {}
            if "next_hops" in fast:  # the MAC path's work (dataplane/bpf.py)
                row[node]["fastpath"] = {k: fast.get(k) for k in (
                    "next_hops", "hop_refreshes", "hop_lookups", "hop_full", "hop_pending",
                    "monitor_lost", "map_errors")}  # fmt: skip
        counted = lab.run("ha2", ["sh", "-c", "ip -o route show table 100 | wc -l"], timeout=120)
        row["standby_routes_in_table"] = int(counted.strip())
        row["standby_rule"] = "lookup 100" in lab.run("ha2", ["ip", "rule"])

        rx, _tx = lab.start_traffic(homes, every, stop, timeout=30)
        time.sleep(3.0)
        # the box dies: its link first (after a SIGKILL alone its kernel forwards on, and the
        # kill of a big process takes a while), then the daemon; outages count from the cut
        killed = time.monotonic()
        if sigkill_only:  # the daemon dies, its kernel (rule, routes, address) does not
            row["sigkill_only"] = True
            lab.kill("ha1")
        else:
            _ip("-n", lab.ns("hub"), "link", "set", "p-ha1-0", "down")
            row["kill_after_cut_ms"] = round((lab.kill("ha1") - killed) * 1e3, 1)
        row["new_active"] = lab.wait_new_active(["ha2"], timeout=30)
        time.sleep(max(0.0, killed + 6.0 - time.monotonic()))
        stop.touch()
        got = json.loads(rx.wait_for(r"^RESULT ", 120)[len("RESULT ") :])
        # a sampled node whose registration timed out unapplied gets nothing, before or after:
        # it is left out (and counted), not reported as a node that never recovered
        arrivals = {h: sorted(t for t, d, _ in got if d == h) for h in homes}
        reached = [h for h in homes if arrivals[h] and arrivals[h][0] < killed]
        row["sampled_not_reached_before_kill"] = len(homes) - len(reached)
        per_home = {h: simnodes.node_outage(arrivals[h], killed, every) for h in reached}
        summary = simnodes.summarize(per_home)
        twice = tunnelled_twice(got)
        row["outage_ms"] = summary["outage_ms"]
        row["recovered_after_kill_ms"] = summary["recovered_after_kill_ms"]
        row["recovered"] = f"{summary['recovered']}/{summary['sampled']}"
        row["packets"] = len(got)
        row["twice"] = twice
        for at, text in list(lab.procs["ha2"].lines):
            if at >= killed and "role.changed role=active" in text:
                row["ha2_active_log_ms"] = round((at - killed) * 1e3)
                break
        # the event loop held (the daemon logs each late advert) and a takeover before the cut
        row["advert_late"] = {
            label: sum("advert-late" in t for at, t in proc.lines if at < killed)
            for label, proc in lab.procs.items()
            if label in ("ha1", "ha2")
        }
        row["advert_late_lines"] = {  # the first few, with where the time went
            label: [t for at, t in proc.lines if at < killed and "advert-late" in t][:5]
            for label, proc in lab.procs.items()
            if label in ("ha1", "ha2")
        }
        row["advert_late_worst_ms"] = {  # the longest gap between the member's adverts
            label: max(
                (float(m.group(1)) for at, t in proc.lines if at < killed and "advert-late" in t
                 if (m := re.search(r"gap_ms=([0-9.]+)", t))),
                default=None,
            )
            for label, proc in lab.procs.items()
            if label in ("ha1", "ha2")
        }  # fmt: skip
        row["vrrp_states_before_kill"] = {  # each member's VRRP transitions, with their reasons
            label: [t for at, t in proc.lines if at < killed and "event=vrrp.state" in t][:6]
            for label, proc in lab.procs.items()
            if label in ("ha1", "ha2")
        }
        row["ha2_active_before_kill"] = any(
            at < killed and "role.changed role=active" in t for at, t in lab.procs["ha2"].lines
        )
        row["ha2_last_takeover_ms"] = lab.control("ha2", STATUS, timeout=60).get("last_takeover_ms")
        t0 = time.monotonic()
        ha2 = lab.procs["ha2"].popen
        ha2.send_signal(signal.SIGTERM)
        ha2.wait(300)
        row["clean_stop_s"] = round(time.monotonic() - t0, 2)
        links = lab.run("ha2", ["ip", "-o", "link"])
        left = lab.run("ha2", ["sh", "-c", "ip route show table all proto 77 | wc -l"])
        row["left_after_stop"] = {
            "devices": [d for d in ("mip-ipip", "mip-gre", "vrrp.51") if d in links],
            "routes": int(left.strip()),
            "rule": "lookup 100" in lab.run("ha2", ["ip", "rule"]),
        }
    except (LabError, OSError, ValueError, KeyError) as exc:
        row["error"] = str(exc)
        for label, proc in lab.procs.items():
            tail = [t for _, t in proc.lines if "registration.accepted" not in t][-10:]
            print(f"--- {label}\n" + "\n".join(tail), file=sys.stderr)
    finally:
        with contextlib.suppress(OSError):
            stop.touch()
        lab.teardown()
    return row


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bindings", type=int, nargs="+", default=[10_000])
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--samples", type=int, default=20)
    p.add_argument("--every", type=float, default=0.02)
    p.add_argument(
        "--sigkill-only", action="store_true", help="kill the daemon but leave its link up"
    )
    p.add_argument(
        "--fastpath",
        choices=("off", "auto"),
        default="auto",
        help="[dataplane] fastpath (default auto, the daemon's; off: the kernel's own tunnels)",
    )
    args = p.parse_args()
    rows: list[dict[str, Any]] = []
    for n in args.bindings:
        for run in range(args.runs):
            row = one_run(n, args.samples, args.every, args.sigkill_only, args.fastpath)
            row["run"] = run + 1
            rows.append(row)
            print(json.dumps(row), flush=True)
    print("summary (inside UML; relative numbers):")
    for n in args.bindings:
        ok = [r for r in rows if r["bindings"] == n and "outage_ms" in r]
        if not ok:
            print(f"  {n:>7,}: no complete run")
            continue
        med = [r["outage_ms"]["median"] for r in ok if r["outage_ms"]["median"] is not None]
        worst = [r["outage_ms"]["worst"] for r in ok if r["outage_ms"]["worst"] is not None]
        inst = [r["after_registration_s"] for r in ok]
        print(
            f"  {n:>7,}: {len(ok)} runs; sampled outage median {med} ms, worst {worst} ms; "
            f"both members installed {inst} s after the registrations ended; "
            f"install us/route standby {[r['ha2']['install_us_per_route'] for r in ok]}; "
            f"twice {[r['twice'] for r in ok]}; median of worsts "
            f"{statistics.median(worst) if worst else '-'} ms"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
