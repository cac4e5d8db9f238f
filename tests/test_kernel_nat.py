"""RFC 3519 through a real NAT, with a failover (issue 16 item 1).

Runs inside User-Mode Linux (``kernel`` marker, tests/test_uml_tier.py); by hand::

    python -m mobileip.tools.uml -- .venv/bin/pytest -m kernel tests/test_kernel_nat.py -s

The topology and the NAT are :mod:`mobileip.tools.natlab`'s: a correspondent, two Home Agents
(``mobileip homeagent``, ``nat_traversal = true``, userspace data plane, native VRRP at 0.1 s),
a router, the kernel's conntrack NAT, and ``mobileip mobilenode`` with a co-located care-of
address behind it and ``nat_traversal = true``. Checked:

* registration through the NAT: tshark on the router's public side sees the Registration Request
  with the UDP Tunnel Request (144) from the NAT's address and the Reply with the UDP Tunnel Reply
  (44, code 0, our keepalive interval); both members hold the binding's NAT mapping (the standby's
  through the sync protocol);
* traffic both ways: the correspondent pings the home address; echo requests reach the mobile node
  as tunnel data, the replies go back as tunnel data (a reverse tunnel: the NAT would otherwise
  rewrite the home address away), seen as ``mip.type == 4`` by tshark;
* keepalives: the NAT forgets idle UDP after ``UDP_TIMEOUT`` s; the mobile node sends nothing
  but keepalives for longer than that, and the correspondent still reaches it on the same mapping
  (without them the NAT would drop the mapping and the next packet would open another);
* a NAT rebind: the NAT's table is flushed and its port range moved, the mobile node's next
  keepalive leaves on a new public port, the active Home Agent moves the binding there (a new
  record version, replicated) and traffic continues;
* failover: under the ping, ha1's link is cut and ha1 SIGKILLed; ha2 takes over and the pings
  continue through the same NAT mapping; the outage is printed and bounded by ``OUTAGE_BOUND_S``;
* ha1 restarted gets the moved mapping in its bulk download.
"""

from __future__ import annotations

import shutil

import pytest
from natlab_checks import (
    OUTAGE_BOUND_S,
    granted_and_tunnelled,
    idle_rebind_failover,
    register_and_ping,
    running,
)

from mobileip.tools.natlab import INTERVAL, KEEPALIVE, NAT_PUBLIC, NatLab

pytestmark = [pytest.mark.kernel, pytest.mark.iptables_nat, pytest.mark.timeout(600)]


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
def test_nat_traversal_with_keepalives_rebind_and_failover() -> None:
    with running(NatLab()) as lab:

        def start() -> None:
            node = lab.start_daemon("mn", "mobilenode", lab.mn_config())
            node.wait_for(f"mn.udp_tunnel keepalive={KEEPALIVE}", 30)
            node.wait_for("mn.registered", 30)

        # registration through the NAT, seen by tshark on the public side; traffic both ways
        first, public, rows = register_and_ping(
            lab,
            start,
            ["mip.type", "mip.code", "mip.ext.utrq.encaptype", "mip.ext.utrp.code",
             "mip.ext.utrp.keepalive", "mip.nattt.nexthdr", "ip.src", "udp.srcport"],
            "through the NAT",
        )  # fmt: skip
        requests = [r for r in rows if r[0] == "1" and r[2] == "4"]
        assert requests and all(r[6].split(",")[0] == NAT_PUBLIC for r in requests), rows[:5]
        replies, to_mn, from_mn = granted_and_tunnelled(rows, code=3, keepalive=4, nexthdr=5, src=6)
        print(
            f"tshark on the public side: {len(requests)} requests with 144, {len(replies)} "
            f"replies with 44 (code 0, keepalive {KEEPALIVE}), tunnel data {len(to_mn)} to the "
            f"mobile node, {len(from_mn)} from it; NAT mapping {public}"
        )

        # keepalives through an idle period longer than the NAT's timeout, the NAT rebinds
        # (the HA follows), failover under traffic
        moved, result = idle_rebind_failover(lab, first, "a NAT-ed mobile node")
        assert result["lost"] is not None and result["lost"] < OUTAGE_BOUND_S / INTERVAL, result

        # --- ha1 boots again: the mapping comes with the bulk download -------------------------
        lab.start_daemon("ha1", "homeagent", lab.ha_config("ha1")).wait_for("dataplane.started", 60)
        lab._wait(lambda: lab.mapping("ha1") == moved, 60, "ha1's mapping after its download")
