"""RFC 3519's R flag end to end: our mobile node with a co-located care-of address, behind a real
NAT together with our foreign agent, registers through the agent because its advertisements set
R (registration required) and U (issue 16 item 1, the R flag).

Runs inside User-Mode Linux (``kernel`` marker, tests/test_uml_tier.py); by hand::

    python -m mobileip.tools.uml -- .venv/bin/pytest -m kernel tests/test_kernel_nat_rflag.py -s

The ``via_fa`` topology of :mod:`mobileip.tools.natlab` (RFC 3519 1.2's third scenario: the mobile
node and the foreign agent behind the same NAT): ``mobileip foreignagent`` (care-of address
192.168.78.1, ``nat_traversal = true``: it advertises R and U) routes its visited link, where
``mobileip mobilenode`` has the co-located care-of address 192.168.78.2 with ``nat_traversal`` and
``honour_registration_required``; two Home Agents with ``nat_traversal``. Checked:

* tshark on the router's public side, as Wireshark dissects it: the Registration Request the agent
  relays carries the UDP Tunnel Request with R set (``mip.ext.utrq.r``), F clear, D set and the
  mobile node's co-located care-of address, from the NAT's address; the Reply carries a UDP Tunnel
  Reply (code 0); no request carries a UDP Tunnel Request the agent added;
* RFC 3519 4.6: the Home Agent tunnels to the NAT's mapping of the *mobile node's* socket, learnt
  from its first keepalive (another NAT port than the agent's registrations use); tunnel data
  flows both ways between the virtual address and that port; the agent keeps no visitor;
* both members hold the same mapping (replicated: the keepalive's new version of the record);
* a renewal through the agent keeps the mapping (no new half-bound period);
* keepalives through an idle period longer than the NAT's UDP timeout, a NAT rebind followed by
  both members, and a failover under the ping (ha2 carries on through the moved mapping).
"""

from __future__ import annotations

import shutil
import time
from typing import Any

import pytest
from natlab_checks import (
    assert_answered,
    capture_public,
    idle_rebind_failover,
    running,
    stop_capture,
)
from pcapio import tshark_rows

from mobileip.tools.natlab import FA_COA, HOME, KEEPALIVE, NAT_PUBLIC, VIRTUAL, NatLab

pytestmark = [pytest.mark.kernel, pytest.mark.iptables_nat, pytest.mark.timeout(600)]

MN_COLOCATED = "192.168.78.2"  # the mobile node's own address on the agent's visited link
LIFETIME = 8  # s: a renewal (through the agent) within the test
FIELDS = [
    "mip.type", "mip.code", "mip.d", "mip.coa", "mip.ext.utrq.f", "mip.ext.utrq.r",
    "mip.ext.utrp.code", "mip.nattt.nexthdr", "ip.src", "ip.dst", "udp.srcport", "udp.dstport",
]  # fmt: skip


class RFlagLab(NatLab):
    """NatLab(via_fa=True) with the mobile node routed through the agent (its gateway) and a
    co-located care-of address."""

    def __init__(self) -> None:
        super().__init__(via_fa=True)
        self.nodes["mn"] = ([("visit", f"{MN_COLOCATED}/24")], FA_COA)

    def mn_colocated_config(self) -> dict[str, Any]:
        return {
            "mobilenode": {
                "interface": "eth0", "home_address": HOME, "home_agent": VIRTUAL,
                "home_network": "10.1.0.0/24", "spi": 256,
                "key": "00112233445566778899aabbccddeeff", "lifetime": LIFETIME,
                "colocated_care_of_address": MN_COLOCATED, "manage_routes": False,
                "reverse_tunnel": True, "nat_traversal": True,
                "honour_registration_required": True, "agent_timeout": 3.0,
            }
        }  # fmt: skip


def bound_mapping(lab: NatLab) -> list[str]:
    """Both members hold the same mapping with a port (no longer half bound: port 0)."""

    def bound() -> bool:
        m1, m2 = lab.mapping("ha1"), lab.mapping("ha2")
        return bool(m1) and m1 == m2 and not m1[0].endswith(":0")

    lab._wait(bound, 30, "the keepalive's mapping on both members")
    return lab.mapping("ha1")


def flag(value: str) -> bool:
    return value in ("1", "True")


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
def test_colocated_mobile_node_registers_through_the_agent_with_r() -> None:
    with running(RFlagLab()) as lab:
        pcap, capture = capture_public(lab)
        agent = lab.start_daemon("fa", "foreignagent", lab.nat_fa_config())
        agent.wait_for(r"foreignagent\.started", 30)
        node = lab.start_daemon("mn", "mobilenode", lab.mn_colocated_config())
        node.wait_for(rf"mn\.relay agent={FA_COA}", 30)
        node.wait_for(rf"mn\.registered care_of_address={MN_COLOCATED} via={FA_COA}", 30)
        node.wait_for(r"mn\.udp_tunnel ", 10)
        first = bound_mapping(lab)
        [public] = first
        address, port = public.split(":")
        assert address == NAT_PUBLIC and 20000 <= int(port) <= 20999, first
        before = lab.ping(2.0)
        print(f"ping to the co-located node registered through the agent (R): {before}")
        assert_answered(before)

        # a renewal through the agent (lifetime 8 s: at 6 s) keeps the mapping
        renewals = len([t for _, t in node.lines if "mn.registered" in t])
        lab._wait(
            lambda: len([t for _, t in node.lines if "mn.registered" in t]) > renewals,
            20,
            "a renewal",
        )
        time.sleep(0.5)
        assert lab.mapping("ha1") == first and lab.mapping("ha2") == first
        renewed = lab.ping(1.0)
        print(f"ping after a renewal through the agent: {renewed}")
        assert_answered(renewed)
        stop_capture(capture)

        # the outer header's values (tunnel data carries a whole inner IPv4 packet)
        rows = [{k: x.split(",")[0] for k, x in r.items()} for r in tshark_rows(pcap, FIELDS)]
        requests = [r for r in rows if r["mip.type"] == "1"]
        assert requests, rows[:5]
        for r in requests:  # every request the agent relayed: R, D, the co-located CoA
            assert flag(r["mip.ext.utrq.r"]) and not flag(r["mip.ext.utrq.f"]), r
            assert flag(r["mip.d"]) and r["mip.coa"] == MN_COLOCATED, r
            assert r["ip.src"] == NAT_PUBLIC and r["ip.dst"] == VIRTUAL, r
        replies = [r for r in rows if r["mip.type"] == "3" and r["mip.ext.utrp.code"] == "0"]
        assert len(replies) >= 2 and all(r["mip.code"] == "0" for r in replies), rows[:5]
        fa_ports = {r["udp.srcport"] for r in requests}
        data = [r for r in rows if r["mip.type"] == "4"]
        to_mn = [r for r in data if r["ip.src"] == VIRTUAL]
        from_mn = [r for r in data if r["ip.src"] == NAT_PUBLIC]
        assert to_mn and from_mn and all(r["mip.nattt.nexthdr"] == "4" for r in data), rows[:5]
        # RFC 3519 4.6: the tunnel goes to the mobile node's mapping, never the agent's
        assert {r["udp.dstport"] for r in to_mn} == {port}, to_mn[:3]
        assert {r["udp.srcport"] for r in from_mn} == {port}, from_mn[:3]
        assert port not in fa_ports, (port, fa_ports)
        print(
            f"tshark on the public side: {len(requests)} relayed requests with 144 (R set, F "
            f"clear, D, CoA {MN_COLOCATED}) from the agent's NAT port(s) {sorted(fa_ports)}, "
            f"{len(replies)} replies with 44 (code 0, keepalive {KEEPALIVE}); tunnel data "
            f"{len(to_mn)} to and {len(from_mn)} from the node's own mapping {public}"
        )
        assert not [t for _, t in agent.lines if "visitor.added" in t]  # relayed only
        counters = lab.nat_status("ha1")["counters"]
        assert counters.get("udp-rebind", 0) >= 1, counters  # the keepalive bound it

        idle_rebind_failover(lab, first, "a co-located node registered through the agent")
