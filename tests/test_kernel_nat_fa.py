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

import contextlib
import shutil
import time

import pytest
from pcapio import tshark_fields

from mobileip.tools.lab import _ip
from mobileip.tools.natlab import (
    FA_COA,
    HOME,
    KEEPALIVE,
    NAT_PUBLIC,
    UDP_TIMEOUT,
    VIRTUAL,
    NatLab,
)

pytestmark = [pytest.mark.kernel, pytest.mark.timeout(600)]

OUTAGE_BOUND_S = 3.0  # as tests/test_kernel_nat.py


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
def test_foreign_agent_behind_a_nat_tunnels_in_udp() -> None:
    lab = NatLab(via_fa=True)
    try:
        lab.setup()
        lab.start_home_agents()

        pcap = lab.work / "public.pcap"
        capture = lab.spawn(
            "rt", ["tshark", "-n", "-i", "eth2", "-f", "udp port 434", "-w", str(pcap)], "tshark"
        )
        capture.wait_for("Capturing on", 60)
        agent = lab.start_daemon("fa", "foreignagent", lab.nat_fa_config())
        agent.wait_for(r"foreignagent\.started", 30)
        node = lab.start_daemon("mn", "mobilenode", lab.mn_fa_config())
        node.wait_for(rf"mn\.registered care_of_address={FA_COA}", 30)
        agent.wait_for(rf"visitor\.added home={HOME}", 10)
        lab._wait(lambda: bool(lab.mapping("ha1") and lab.mapping("ha2")), 30, "both mappings")
        first = lab.mapping("ha1")
        assert first == lab.mapping("ha2")
        [public] = first
        address, port = public.split(":")
        assert address == NAT_PUBLIC and 20000 <= int(port) <= 20999, first

        before = lab.ping(2.0)
        print(f"ping through the foreign agent behind the NAT: {before}")
        assert before["received"] >= before["sent"] - 2 > 0, before
        time.sleep(1.0)
        capture.popen.terminate()
        capture.popen.wait(30)
        rows = tshark_fields(
            pcap,
            ["mip.type", "mip.code", "mip.ext.utrq.f", "mip.ext.utrq.r", "mip.ext.utrp.code",
             "mip.ext.utrp.keepalive", "mip.nattt.nexthdr", "ip.src", "mip.coa"],
        )  # fmt: skip
        requests = [r for r in rows if r[0] == "1" and r[2] in ("1", "True")]
        replies = [r for r in rows if r[0] == "3" and r[4] == "0"]
        assert requests, rows[:5]
        assert all(r[7].split(",")[0] == NAT_PUBLIC and r[8] == FA_COA for r in requests), rows
        assert all(r[3] in ("0", "False") for r in requests), requests[:2]  # R: not ours to set
        assert replies and replies[0][1] == "0" and replies[0][5] == str(KEEPALIVE), rows[:5]
        data = [r for r in rows if r[0] == "4"]
        to_fa = [r for r in data if r[7].startswith(VIRTUAL)]
        from_fa = [r for r in data if r[7].startswith(NAT_PUBLIC)]
        assert to_fa and from_fa and all(r[6] == "4" for r in data), rows[:5]
        print(
            f"tshark on the public side: {len(requests)} requests with 144 (F, from the agent), "
            f"{len(replies)} replies with 44 (code 0, keepalive {KEEPALIVE}), tunnel data "
            f"{len(to_fa)} to the agent, {len(from_fa)} from it; NAT mapping {public}"
        )

        kept = lab.nat_status("ha1")["counters"].get("udp-keepalive", 0)
        time.sleep(UDP_TIMEOUT * 2.5)
        keepalives = lab.nat_status("ha1")["counters"].get("udp-keepalive", 0) - kept
        assert keepalives >= UDP_TIMEOUT, keepalives
        assert lab.mapping("ha1") == first
        idle = lab.ping(1.0)
        print(f"ping after {UDP_TIMEOUT * 2.5:.0f} s idle ({keepalives} keepalives): {idle}")
        assert idle["received"] >= idle["sent"] - 2 > 0, idle

        # the NAT rebinds: the agent's next keepalive for the visitor leaves on a new port and
        # the active Home Agent moves the visitor's binding there (a replicated new version)
        lab.translate("21000-21999")
        lab.flush_conntrack()
        lab._wait(
            lambda: lab.mapping("ha1") != first and lab.mapping("ha2") == lab.mapping("ha1"),
            30,
            "the rebind on both members",
        )
        moved = lab.mapping("ha1")
        assert moved[0].startswith(f"{NAT_PUBLIC}:21"), moved
        rebound = lab.ping(1.0)
        print(f"ping after the NAT rebound to {moved[0]}: {rebound}")
        assert rebound["received"] >= rebound["sent"] - 2 > 0, rebound

        result = lab.failover()
        after = lab.nat_status("ha2")
        print(
            f"failover with the agent behind the NAT: ping outage {result['outage_ms']} ms "
            f"(longest gap {result['max_gap_ms']} ms), sent {result['sent']}, received "
            f"{result['received']}, lost {result['lost']}; ha2 data plane: {after['counters']}"
        )
        assert after["counters"].get("udp-encap", 0) > 0 and after["counters"].get("udp-decap")
        assert lab.mapping("ha2") == moved
        assert result["received"] > 0 and result["outage_ms"] < OUTAGE_BOUND_S * 1e3, result
        _ip("-n", lab.ns("hub"), "link", "set", "p-ha1-0", "up")
    except BaseException:
        for label, proc in lab.procs.items():
            print(f"--- {label}\n" + "\n".join(t for _, t in proc.lines[-25:]))
        raise
    finally:
        with contextlib.suppress(Exception):
            lab.teardown()
    assert not [ns for ns in lab.namespaces if ns.startswith(lab.prefix)]
