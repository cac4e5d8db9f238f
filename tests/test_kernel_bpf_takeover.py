"""Kernel-backend takeover with the tc BPF fast path on (issue 14; tests/test_kernel_takeover.py
without it).

Runs inside User-Mode Linux (``kernel`` marker, tests/test_uml_tier.py); by hand::

    python -m mobileip.tools.uml -- .venv/bin/pytest -m kernel tests/test_kernel_bpf_takeover.py -s

The lab of tests/test_kernel_takeover.py (two members, native VRRP at 0.1 s, ``virtual_mac``,
simulated mobile nodes behind ``rt``), both members with ``[dataplane] fastpath_interfaces``:
the home link ``eth0`` and the VRRP macvlan (frames for the virtual MAC reach ``eth0``'s
ingress as another host's, ``PACKET_OTHERHOST``, which the programs leave to the stack; the
macvlan's ingress sees them as its own). Checked:

* hot standby: both members hold every binding in their maps; the programs are attached on
  both, live on the active only (``fastpath.live``, ``tc filter show``);
* the active's fast path carries the traffic: UDP from ``cn`` to a sample of the home
  addresses, counted at the care-of side, leaves the active's ``mip-ipip`` device (the kernel's
  path) nearly silent;
* takeover: the active's link cut, then SIGKILL; the standby's programs go live, every
  sampled node recovers, the worst outage is under ``OUTAGE_BOUND_S`` (as the test without the
  fast path: its reasons), no packet arrives twice, and the new active's fast path carries the
  traffic (its ``mip-ipip`` nearly silent too);
* a clean stop of the survivor detaches the programs.
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import Any

import pytest

from mobileip.tools.lab import LabError, NetnsLab
from mobileip.tools.takeover import KernelLab, dataplane_status, stop_traffic, torn_down, tx_packets

pytestmark = [pytest.mark.kernel, pytest.mark.timeout(600)]

N = int(os.environ.get("MOBILEIP_TAKEOVER_BINDINGS", "300"))
SAMPLES = 20
SEND_EVERY = 0.02
OUTAGE_BOUND_S = 2.0
VMAC = "vrrp.51"
# MOBILEIP_FASTPATH_INTERFACES=eth0: the experiment of docs/dataplane.md (the macvlan left out)
INTERFACES = os.environ.get("MOBILEIP_FASTPATH_INTERFACES", f"eth0,{VMAC}").split(",")


class FastPathLab(KernelLab):
    def ha_config(self, node: str) -> dict[str, Any]:
        cfg = super().ha_config(node)
        cfg["dataplane"]["fastpath_interfaces"] = INTERFACES
        cfg["dataplane"]["fastpath_capacity"] = 4096
        return cfg


def fastpath(lab: NetnsLab, node: str) -> dict[str, Any]:
    fp: dict[str, Any] = dataplane_status(lab, node)["backend"]["fastpath"]
    return fp


def filters(lab: NetnsLab, node: str) -> str:
    shown = []
    for dev in INTERFACES:
        with contextlib.suppress(LabError):  # the macvlan: gone after a clean stop
            shown.append(lab.run(node, ["tc", "filter", "show", "dev", dev, "ingress"]))
    return "".join(shown)


def test_takeover_with_the_fast_path_on() -> None:
    lab = FastPathLab.pair(N, SAMPLES)
    homes = lab.sample
    stop = lab.work / "stop-traffic"
    with torn_down(lab, stop):
        lab.start_pair()
        lab.register_all(N)
        lab.wait_installed(
            N, "every route and every map entry", lambda d: d["backend"]["fastpath"]["homes"] == N
        )
        f1, f2 = fastpath(lab, "ha1"), fastpath(lab, "ha2")
        assert f1["live"] and not f2["live"], (f1, f2)
        assert f1["map_errors"] == f2["map_errors"] == 0, (f1, f2)
        # attached on both, gated by their live maps: only the active's pass nothing on
        assert "mip_forward" in filters(lab, "ha1")
        assert "mip_forward" in filters(lab, "ha2")

        rx, tx = lab.start_traffic(homes, SEND_EVERY, stop)
        time.sleep(1.0)
        kernel_before = tx_packets(lab, "ha1", "mip-ipip")
        time.sleep(2.0)
        kernel_active = tx_packets(lab, "ha1", "mip-ipip") - kernel_before
        standby_kernel = tx_packets(lab, "ha2", "mip-ipip")
        killed = lab.cut_and_kill()
        assert lab.wait_new_active(["ha2"], timeout=20) == "ha2"
        time.sleep(max(0.0, killed + 3.0 - time.monotonic()))
        kernel_after = tx_packets(lab, "ha2", "mip-ipip")
        time.sleep(2.0)
        kernel_new_active = tx_packets(lab, "ha2", "mip-ipip") - kernel_after
        got, per_home, summary, twice = stop_traffic(rx, tx, stop, homes, killed, SEND_EVERY)
        f2 = fastpath(lab, "ha2")
        d2 = dataplane_status(lab, "ha2")
        outage = summary["outage_ms"]
        # packets sent to the sampled homes in a 2 s window: SAMPLES / SEND_EVERY per second
        window = int(2.0 * SAMPLES / SEND_EVERY)
        print(
            f"\nfast path takeover at {N} bindings: sampled outage median {outage['median']} ms, "
            f"worst {outage['worst']} ms over {len(homes)} homes ({summary['recovered']} "
            f"recovered); ha2 switch {d2['last_takeover_ms']} ms; packets {len(got)}, tunnelled "
            f"twice: {twice}; kernel path (mip-ipip tx) in 2 s of about {window} packets: active "
            f"{kernel_active}, new active {kernel_new_active}, standby before the cut "
            f"{standby_kernel}; ha2 fastpath {f2}"
        )
        assert standby_kernel == 0
        assert summary["recovered"] == len(homes), summary["not_recovered"]
        assert twice == 0
        assert f2["live"] and f2["homes"] == N and d2["rule_installed"], (f2, d2)
        assert "mip_forward" in filters(lab, "ha2")
        # the programs carried the traffic on both actives: the kernel's tunnel sent a few at
        # most (a packet that found no neighbour entry yet)
        assert kernel_active < window // 10, (kernel_active, window)
        assert kernel_new_active < window // 10, (kernel_new_active, window)
        assert outage["worst"] is not None and outage["worst"] < OUTAGE_BOUND_S * 1e3, per_home

        lab.stop_cleanly("ha2")
        assert "mip_" not in filters(lab, "ha2")
    assert not [ns for ns in lab.namespaces if ns.startswith(lab.prefix)]
