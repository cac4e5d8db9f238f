"""Kernel-backend takeover (issue 14): two Home Agents with ``[dataplane] backend = "kernel"``.

Runs inside User-Mode Linux (``kernel`` marker, tests/test_uml_tier.py); by hand::

    python -m mobileip.tools.uml -- .venv/bin/pytest -m kernel tests/test_kernel_takeover.py -s

The topology is the lab's (:class:`mobileip.tools.lab.NetnsLab`, two members, no real mobile
node): ``cn`` -- ``rt`` -- home link (ha1 priority 150, ha2 100, native VRRP at 0.1 s, binding sync,
``virtual_mac``), and ``sim`` behind ``rt`` holding every co-located care-of address. N simulated
mobile nodes (:mod:`mobileip.tools.simnodes`, ``MOBILEIP_TAKEOVER_BINDINGS``, default 1,000)
register through the virtual address. Checked:

* hot standby: both members hold N encap routes in table 100 through ``mip-ipip`` before the
  kill; the standby has no ``ip rule``, its macvlan is down and its ``mip-ipip`` has sent nothing;
* takeover: UDP from ``cn`` to a sample of the home addresses, counted at the care-of side (a
  raw IP-in-IP socket in ``sim``), the active link cut and then SIGKILLed (a dead box: after a
  SIGKILL alone its kernel would go on forwarding, which is not a takeover); every sampled node
  recovers, the worst sampled outage is under ``OUTAGE_BOUND_S``, and no packet arrives twice;
* a clean stop of the survivor leaves nothing: no ``mip-ipip``/``mip-gre``, no route of ours
  (protocol 77) in any table, no rule, no macvlan.

Why the bound is 2 s: on real hardware the target is <= 0.5 s worst at 10,000 bindings with 0.1 s
adverts (Master_Down_Interval 3 x 0.1 + skew = 0.36 s for priority 100, plus an O(1) switch,
since the routes are already there). Inside UML one ptrace-trapped CPU runs both daemons, the
sender and the receiver, on a shared host: from the link cut to the care-of side this takeover
measured 0.28-0.34 s worst at 1,000-100,000 bindings (scripts/perf/kernel_takeover.py,
docs/dataplane.md), i.e. the VRRP timer. 2 s is about five Master_Down_Intervals: it fails when
no member takes over, when the takeover waits on something slow (a table download, a full
reconcile, a starved speaker) and leaves room for a loaded CI host. It cannot see O(n) work at
takeover at this size (1,000 routes cost 0.08-0.3 s through the service here), so hot standby is
asserted directly: every route on the standby before the kill, its ``mip-ipip`` silent, and the
new active's switch (``last_takeover_ms``, seen 0.2-4 ms) under ``SWITCH_BOUND_MS``.
"""

from __future__ import annotations

import os
import time

import pytest

from mobileip.tools.lab import NetnsLab
from mobileip.tools.takeover import KernelLab, dataplane_status, stop_traffic, torn_down, tx_packets

pytestmark = [pytest.mark.kernel, pytest.mark.timeout(600)]

N = int(os.environ.get("MOBILEIP_TAKEOVER_BINDINGS", "1000"))
SAMPLES = 20
SEND_EVERY = 0.02  # per sampled node; UML has one CPU for everything
OUTAGE_BOUND_S = 2.0
SWITCH_BOUND_MS = 50.0  # the rule and the macvlan (0.2-4 ms); 1,000 routes took 80-290 ms here
TABLE = 100


def line_at(lab: NetnsLab, node: str, pattern: str, since: float) -> float | None:
    for at, text in list(lab.procs[node].lines):
        if at >= since and pattern in text:
            return at
    return None


def test_kernel_takeover_with_traffic_at_the_care_of_side() -> None:
    lab = KernelLab.pair(N, SAMPLES)
    # the kernel's own tunnel devices carry the traffic: what this test measures (the fast
    # path's takeover: tests/test_kernel_bpf_takeover.py)
    lab.fastpath = "off"
    homes = lab.sample
    stop = lab.work / "stop-traffic"
    with torn_down(lab, stop):
        t0 = time.monotonic()
        lab.start_pair()
        booted = time.monotonic() - t0

        started = time.monotonic()
        lab.register_all(N)
        registered = time.monotonic() - started
        lab.wait_installed(N)
        ready = time.monotonic() - started
        d1, d2 = dataplane_status(lab, "ha1"), dataplane_status(lab, "ha2")
        print(
            f"\nkernel backend in UML: lab up in {booted:.1f} s; {N} registrations in "
            f"{registered:.2f} s; both members held every route {ready:.2f} s after the first; "
            f"install us/route: standby {d2['install_us_per_route']}, active "
            f"{d1['install_us_per_route']}; longest batch {d2['longest_batch_ms']} / "
            f"{d1['longest_batch_ms']} ms"
        )

        # hot standby: the routes are on both, only the active has the rule and attracts traffic
        assert d1["active"] and d1["rule_installed"]
        assert not d2["active"] and not d2["rule_installed"]
        assert f"lookup {TABLE}" not in lab.run("ha2", ["ip", "rule"])
        for node in ("ha1", "ha2"):
            routes = lab.run(node, ["ip", "-o", "route", "show", "table", str(TABLE)]).splitlines()
            assert len(routes) == N, (node, len(routes))
            assert all("encap ip" in r and "dev mip-ipip" in r for r in routes), routes[:3]
        assert "state DOWN" in lab.run("ha2", ["ip", "-o", "link", "show", "vrrp.51"])
        assert tx_packets(lab, "ha2", "mip-ipip") == 0

        rx, tx = lab.start_traffic(homes, SEND_EVERY, stop)
        time.sleep(3.0)
        standby_tx_before = tx_packets(lab, "ha2", "mip-ipip")
        active_tx_before = tx_packets(lab, "ha1", "mip-ipip")
        killed = lab.cut_and_kill()
        new_active = lab.wait_new_active(["ha2"], timeout=20)
        assert new_active == "ha2"
        time.sleep(max(0.0, killed + 5.0 - time.monotonic()))
        got, per_home, summary, twice = stop_traffic(rx, tx, stop, homes, killed, SEND_EVERY)
        became = line_at(lab, "ha2", "role.changed role=active", killed)
        d2 = dataplane_status(lab, "ha2")
        outage = summary["outage_ms"]
        back = summary["recovered_after_kill_ms"]
        print(
            f"takeover at {N} bindings: sampled outage median {outage['median']} ms, worst "
            f"{outage['worst']} ms over {len(homes)} homes ({summary['recovered']} recovered; "
            f"back after the cut: median {back['median']} ms, worst {back['worst']} ms); ha2 "
            f"active (log line read) "
            f"{'-' if became is None else f'{(became - killed) * 1e3:.0f}'} ms after the cut, "
            f"its switch {d2['last_takeover_ms']} ms; packets {len(got)}, tunnelled twice: "
            f"{twice}; before the cut mip-ipip tx: active {active_tx_before}, standby "
            f"{standby_tx_before}"
        )
        assert active_tx_before > 0 and standby_tx_before == 0  # the standby forwarded nothing
        assert summary["recovered"] == len(homes), summary["not_recovered"]
        assert twice == 0
        assert d2["rule_installed"] and d2["installed"] == N
        assert d2["last_takeover_ms"] < SWITCH_BOUND_MS
        assert outage["worst"] is not None and outage["worst"] < OUTAGE_BOUND_S * 1e3, per_home

        # a clean stop of the survivor leaves nothing behind
        lab.stop_cleanly("ha2")
        links = lab.run("ha2", ["ip", "-o", "link"])
        assert "mip-ipip" not in links and "mip-gre" not in links and "vrrp.51" not in links
        assert not lab.run("ha2", ["ip", "route", "show", "table", "all", "proto", "77"]).strip()
        assert f"lookup {TABLE}" not in lab.run("ha2", ["ip", "rule"])
    assert not [ns for ns in lab.namespaces if ns.startswith(lab.prefix)]
