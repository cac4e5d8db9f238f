"""RFC 3519 through a real NAT with the kernel data-plane backend: the hybrid path (issues 16, 14).

Runs inside User-Mode Linux (``kernel`` marker, tests/test_uml_tier.py); by hand::

    python -m mobileip.tools.uml -- .venv/bin/pytest -m kernel tests/test_kernel_nat_hybrid.py -s

:mod:`mobileip.tools.natlab` with ``backend="kernel"``: two Home Agents with ``[dataplane]
backend = "kernel"`` and ``nat_traversal = true``, the kernel's conntrack NAT (tc ``ct nat``), and
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
* a NAT rebind: the next keepalive leaves on a new public port; both members move the binding
  (a new record version), the route stays ``dev mip0`` and the ping is answered on the new mapping
  (the NAT dropped the old one);
* SIGKILL of the active under the ping (link cut first): ha2 takes over, its TUN carries the
  traffic through the moved mapping, the outage is printed and under ``OUTAGE_BOUND_S``.
"""

from __future__ import annotations

import json
import shutil

import pytest
from natlab_checks import idle_rebind_failover, register_and_ping, running, tunnel_data

from mobileip.tools.natlab import HOME, KEEPALIVE, NatLab

pytestmark = [pytest.mark.kernel, pytest.mark.iptables_nat, pytest.mark.timeout(600)]

TUN = "mip0"  # the lab's [dataplane] tun_name


def tun_route(lab: NatLab, node: str) -> str:
    """``node``'s route for the home address in its data plane's table."""
    table = lab.control(node, "/api/v1/dataplane?homes=0")["table"]
    out: str = lab.run(node, ["ip", "route", "show", "table", str(table), HOME])
    return " ".join(out.split())


def tun_tx(lab: NatLab, node: str) -> int:
    """Packets the kernel routed into ``node``'s TUN (its tx counter)."""
    out = lab.run(node, ["ip", "-s", "-j", "link", "show", TUN])
    return int(json.loads(out)[0]["stats64"]["tx"]["packets"])


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

        # keepalives through idle, the NAT rebinds (both members follow: the ping is answered
        # on the new mapping), SIGKILL of the active under the ping
        moved, result = idle_rebind_failover(lab, first, "a NAT-ed mobile node, kernel backend")
        assert moved != first
        assert tun_route(lab, "ha2").startswith(f"{HOME} dev {TUN} proto 77")
        after = lab.control("ha2", "/api/v1/dataplane?homes=0")["backend"]["counters"]
        assert after.get("udp-tun-forwarded", 0) > 0, after
        print(
            f"kernel backend, NAT-ed mobile node: mapping {public} -> {moved[0]}, takeover "
            f"outage {result['outage_ms']} ms"
        )
