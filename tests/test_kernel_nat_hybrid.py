"""RFC 3519 through a real NAT with the kernel data-plane backend: the hybrid path (issues 16, 14).

Runs inside User-Mode Linux (``kernel`` and ``iptables_nat`` markers, tests/test_uml_tier.py);
by hand in the kernel the tier gives it (here Debian's 6.1 with the XSAVE shim, docs/testing.md)::

    MOBILEIP_UML_KERNEL=/usr/bin/linux.uml MOBILEIP_NAT_ENGINE=masquerade \
      python -m mobileip.tools.uml -- .venv/bin/pytest -m kernel tests/test_kernel_nat_hybrid.py -s

:mod:`mobileip.tools.natlab` with ``backend="kernel"``: two Home Agents with ``[dataplane]
backend = "kernel"`` and ``nat_traversal = true``, the kernel's conntrack NAT (an iptables
MASQUERADE rule; tc ``ct nat`` on a kernel without iptables' nat table), and
``mobileip mobilenode`` with a co-located care-of address behind it. The kernel has no RFC 3519
driver, so the kernel backend routes the NAT-ed home into its TUN (``mip0``, dataplane/udp_tun.py)
and the userspace UDP tunnel carries it. Checked:

* both members run the kernel backend (``mip-ipip``/``mip-gre``) and hold, before any failover,
  the same route for the home address in table ``T``: ``dev mip0`` (hot standby: the standby
  pre-installed it); the standby has forwarded nothing from its TUN;
* registration and traffic both ways through the NAT, seen by tshark on the public side: tunnel
  data (``mip.type == 4``, next header 4) from the virtual address to the NAT's mapping and back;
  the active's UDP tunnel counts them (``udp-encap`` from its TUN, ``udp-decap`` into it);
* keepalives hold the mapping through an idle period longer than the NAT's UDP timeout;
* a NAT rebind under the ping: the NAT's table flushed (its rule reloaded with another port range
  first); the Home Agent keeps tunnelling to the old port, which the NAT now drops, until the
  mobile node's next packet, its keepalive, leaves on a new public port; both members move the
  binding (a new record version) at once and the route stays ``dev mip0``; the ping's silence is
  bounded by the keepalive interval (``REBIND_BOUND_S``, below: why); a ping after it is answered
  on the new mapping (at most 2 lost);
* SIGKILL of the active under the ping (link cut first): ha2 takes over, its TUN carries the
  traffic through the moved mapping, the outage is printed and under ``OUTAGE_BOUND_S``.
"""

from __future__ import annotations

import json
import shutil
import time
from typing import Any

import pytest
from natlab_checks import (
    assert_answered,
    failover,
    keepalives_hold,
    register_and_ping,
    running,
    tunnel_data,
)

from mobileip.tools.lab import _ip
from mobileip.tools.natlab import HOME, KEEPALIVE, NAT_PUBLIC, NatLab

pytestmark = [pytest.mark.kernel, pytest.mark.iptables_nat, pytest.mark.timeout(600)]

TUN = "mip0"  # the lab's [dataplane] tun_name

# The silence a NAT rebind costs the ping, and why it is bounded so (RFC 3519: the Home Agent
# learns the new mapping only from the mobile node's next tunnel packet). After the flush the Home
# Agent's pings go to the old port and the NAT drops them, so the mobile node receives nothing and
# answers nothing; its next packet is its keepalive, sent at the first turn of its loop (at least
# once a second, agents/mn/daemon.py) that finds nothing sent for KEEPALIVE seconds; the Home
# Agent moves the binding on that packet at once (measured in UML: its answer to that keepalive
# already went to the new port, 3 ms later) and the next ping crosses. So the silence is at most
# KEEPALIVE + MN_TICK_S, plus what UML's one CPU adds (the flush's own process, stalls of the
# guest: one of ~450 ms was seen under load): UML_ALLOWANCE_S. Measured: the keepalive left
# on the new port 1.83 s after the flush (docs/nat-traversal.md, "What a NAT rebind costs").
MN_TICK_S = 1.0
UML_ALLOWANCE_S = 1.0
REBIND_BOUND_S = KEEPALIVE + MN_TICK_S + UML_ALLOWANCE_S
AFTER_S = 1.0  # pinging on after both members moved: the silence has ended by then


def tun_route(lab: NatLab, node: str) -> str:
    """``node``'s route for the home address in its data plane's table."""
    table = lab.control(node, "/api/v1/dataplane?homes=0")["table"]
    out: str = lab.run(node, ["ip", "route", "show", "table", str(table), HOME])
    return " ".join(out.split())


def tun_tx(lab: NatLab, node: str) -> int:
    """Packets the kernel routed into ``node``'s TUN (its tx counter)."""
    out = lab.run(node, ["ip", "-s", "-j", "link", "show", TUN])
    return int(json.loads(out)[0]["stats64"]["tx"]["packets"])


def rebind_under_ping(lab: NatLab, first: list[str]) -> tuple[list[str], dict[str, Any]]:
    """The NAT's rule reloaded with the port range 21000-21999 (idle, as natlab_checks.rebind),
    then, under the correspondent's ping, its table flushed: both members move the binding to
    the new port and the ping's longest silence is under ``REBIND_BOUND_S``; then a 1-s ping is
    answered on the new mapping, at most 2 lost (natlab_checks.rebind's check, unchanged).
    Returns the moved mapping and the JSON of the ping through the rebind."""
    lab.translate("21000-21999")
    with lab.pinging("rebind") as result:
        time.sleep(1.0)  # answered on the first mapping
        started = time.monotonic()
        lab.flush_conntrack()
        flushed = time.monotonic()
        lab._wait(
            lambda: lab.mapping("ha1") != first and lab.mapping("ha2") == lab.mapping("ha1"),
            30,
            "the rebind on both members",
        )
        moved_after = time.monotonic() - flushed
        time.sleep(AFTER_S)
    moved = lab.mapping("ha1")
    nat = {node: lab.nat_status(node)["counters"] for node in ("ha1", "ha2")}
    print(
        f"ping through the NAT rebind {first[0]} -> {moved[0]} (flush {flushed - started:.2f} s, "
        f"both members moved {moved_after:.2f} s after it): {result}; bound "
        f"{REBIND_BOUND_S:.1f} s; Home Agents' UDP tunnel counters {nat}"
    )
    assert moved[0].startswith(f"{NAT_PUBLIC}:21"), moved
    assert nat["ha1"].get("udp-rebind", 0) >= 1, nat
    if lab.nat_engine == "masquerade":  # the new port came from the reloaded rule
        assert lab.masqueraded() >= 1, "no flow through the reloaded MASQUERADE rule"
    assert result["received"] > 0 and result["outage_ms"] < REBIND_BOUND_S * 1e3, (result, nat)
    rebound = lab.ping(1.0)
    print(f"ping after the NAT rebound to {moved[0]}: {rebound}")
    assert_answered(rebound)
    return moved, result


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
def test_kernel_backend_carries_a_nat_ed_mobile_node() -> None:
    with running(NatLab(backend="kernel")) as lab:
        for node in ("ha1", "ha2"):
            backend = lab.control(node, "/api/v1/dataplane?homes=0")["backend"]
            assert backend["backend"] == "kernel" and backend.get("udp_tun") == TUN, backend
            assert lab.nat_status(node)["attached"], node

        def start() -> None:
            node = lab.start_daemon("mn", "mobilenode", lab.mn_config())
            node.wait_for(f"mn.udp_tunnel keepalive={KEEPALIVE}", 30)
            node.wait_for("mn.registered", 30)

        first, public, rows = register_and_ping(
            lab, start, ["mip.type", "mip.nattt.nexthdr", "ip.src"], "through the NAT (kernel)"
        )
        to_mn, from_mn = tunnel_data(rows, 2)
        assert to_mn and from_mn and all(r[1] == "4" for r in to_mn + from_mn), rows[:5]

        # hot standby: the same TUN route on both members; only the active's TUN carried packets
        routes = {node: tun_route(lab, node) for node in ("ha1", "ha2")}
        print(f"routes for {HOME}: {routes}; tunnel data {len(to_mn)} out, {len(from_mn)} in")
        for node, route in routes.items():
            assert route.startswith(f"{HOME} dev {TUN} proto 77"), (node, route)
        counters = lab.nat_status("ha1")["counters"]
        assert counters.get("udp-encap", 0) > 0 and counters.get("udp-decap", 0) > 0, counters
        tx = {node: tun_tx(lab, node) for node in ("ha1", "ha2")}
        dp = {n: lab.control(n, "/api/v1/dataplane?homes=0")["backend"] for n in ("ha1", "ha2")}
        print(f"TUN tx packets {tx}; forwarded from it: ha1 {dp['ha1']['counters']}")
        assert tx["ha1"] >= counters["udp-encap"] > 0, (tx, counters)
        assert dp["ha1"]["udp_homes"] == dp["ha2"]["udp_homes"] == 1, dp
        assert dp["ha1"]["counters"].get("udp-tun-forwarded", 0) > 0, dp
        assert dp["ha2"]["counters"].get("udp-tun-forwarded", 0) == 0, dp  # the standby: none
        assert not lab.nat_status("ha2")["counters"].get("udp-encap"), lab.nat_status("ha2")

        # keepalives through idle, the NAT rebinds under the ping (both members follow: the ping
        # is answered on the new mapping), SIGKILL of the active under the ping
        keepalives_hold(lab, first)
        moved, through = rebind_under_ping(lab, first)
        result = failover(lab, moved, "a NAT-ed mobile node, kernel backend")
        _ip("-n", lab.ns("hub"), "link", "set", "p-ha1-0", "up")
        assert moved != first
        assert tun_route(lab, "ha2").startswith(f"{HOME} dev {TUN} proto 77")
        after = lab.control("ha2", "/api/v1/dataplane?homes=0")["backend"]["counters"]
        assert after.get("udp-tun-forwarded", 0) > 0, after
        print(
            f"kernel backend, NAT-ed mobile node: mapping {public} -> {moved[0]} (rebind outage "
            f"{through['outage_ms']} ms), takeover outage {result['outage_ms']} ms"
        )
