"""RFC 3519 with our foreign agent behind a real NAT, a mobile node registering through it, and a
failover (issue 16 item 1, the FA's part).

Runs inside User-Mode Linux (``kernel`` marker, tests/test_uml_tier.py); by hand::

    python -m mobileip.tools.uml -- .venv/bin/pytest -m kernel tests/test_kernel_nat_fa.py -s

:mod:`mobileip.tools.natlab` with ``via_fa=True``: the conntrack NAT in front of ``mobileip
foreignagent`` (care-of address 192.168.77.2, ``nat_traversal = true``), ``mobileip mobilenode``
on the agent's visited link with an FA care-of address and T, two Home Agents with
``nat_traversal = true``. Checked:

* tshark on the router's public side: the relayed Registration Request carries a UDP Tunnel
  Request (144) with F, added by the agent, from the NAT's address; the Reply carries a UDP Tunnel
  Reply (44, code 0); both members hold the binding's NAT mapping (the agent's);
* the correspondent pings the home address: echo requests reach the agent as tunnel data (type
  4) and the agent delivers them on its link; the mobile node's replies, reverse-tunnelled by the
  agent (T), go back as tunnel data;
* the agent's keepalives hold the NAT's mapping through an idle period longer than the NAT's UDP
  timeout (the same mapping after it, the ping still answered);
* a NAT rebind (its table flushed, its port range moved): the agent's next keepalive leaves on a
  new port, both members move the binding there, the ping still answered;
* failover: ha1 cut and SIGKILLed under the ping; ha2 carries on through the same mapping.
"""

from __future__ import annotations

import shutil

import pytest
from natlab_checks import granted_and_tunnelled, idle_rebind_failover, register_and_ping, running

from mobileip.tools.natlab import FA_COA, HOME, KEEPALIVE, NAT_PUBLIC, NatLab

pytestmark = [pytest.mark.kernel, pytest.mark.iptables_nat, pytest.mark.timeout(600)]


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
def test_foreign_agent_behind_a_nat_tunnels_in_udp() -> None:
    with running(NatLab(via_fa=True)) as lab:

        def start() -> None:
            agent = lab.start_daemon("fa", "foreignagent", lab.nat_fa_config())
            agent.wait_for(r"foreignagent\.started", 30)
            node = lab.start_daemon("mn", "mobilenode", lab.mn_fa_config())
            node.wait_for(rf"mn\.registered care_of_address={FA_COA}", 30)
            agent.wait_for(rf"visitor\.added home={HOME}", 10)

        first, public, rows = register_and_ping(
            lab,
            start,
            ["mip.type", "mip.code", "mip.ext.utrq.f", "mip.ext.utrq.r", "mip.ext.utrp.code",
             "mip.ext.utrp.keepalive", "mip.nattt.nexthdr", "ip.src", "mip.coa"],
            "through the foreign agent behind the NAT",
        )  # fmt: skip
        requests = [r for r in rows if r[0] == "1" and r[2] in ("1", "True")]
        assert requests, rows[:5]
        assert all(r[7].split(",")[0] == NAT_PUBLIC and r[8] == FA_COA for r in requests), rows
        assert all(r[3] in ("0", "False") for r in requests), requests[:2]  # R: not ours to set
        replies, to_fa, from_fa = granted_and_tunnelled(rows, code=4, keepalive=5, nexthdr=6, src=7)
        print(
            f"tshark on the public side: {len(requests)} requests with 144 (F, from the agent), "
            f"{len(replies)} replies with 44 (code 0, keepalive {KEEPALIVE}), tunnel data "
            f"{len(to_fa)} to the agent, {len(from_fa)} from it; NAT mapping {public}"
        )

        # the agent's keepalives for the visitor hold the mapping; after a NAT rebind they leave
        # on a new port and the active Home Agent moves the visitor's binding there; failover
        idle_rebind_failover(lab, first, "the agent")
