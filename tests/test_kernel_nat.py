"""RFC 3519 through a real NAT, with a failover (issue 16 item 1).

Runs inside User-Mode Linux (``kernel`` marker, tests/test_uml_tier.py); by hand::

    python -m mobileip.tools.uml -- .venv/bin/pytest -m kernel tests/test_kernel_nat.py -s

Topology (the lab's namespaces and helpers, :class:`mobileip.tools.lab.NetnsLab`)::

    cn 192.0.2.10 --[wan]-- rt --[home 10.1.0.0/24]-- ha1 .11 (prio 150), ha2 .12 (virtual .1)
                            rt --[f1 10.2.0.0/24]---- nat 10.2.0.1 == NAPT == 192.168.77.1
                                                          --[priv]-- mn 192.168.77.2
                                                                     (home address 10.1.0.100)

The NAT is the kernel's connection-tracking NAT (nf_conntrack + nf_nat, what MASQUERADE uses):
source NAT of the private network to 10.2.0.1 on a port range, reverse translation of the
answers. The UML kernel we can boot here (7.2) has neither ``NF_TABLES_IPV4`` nor iptables' nat
table, so nftables/iptables MASQUERADE cannot be configured in it; tc's ``ct`` action drives the
same nf_nat from the clsact hooks instead (:data:`NAT_SCRIPT`). The mobile node is ``mobileip
mobilenode`` with a co-located care-of address and ``nat_traversal = true``; the Home Agents are
``mobileip homeagent`` with ``nat_traversal = true`` and the userspace data plane. Checked:

* registration through the NAT: tshark on the router's public side sees the Registration Request
  with the UDP Tunnel Request (144) from the NAT's address and the Reply with the UDP Tunnel Reply
  (44, code 0, our keepalive interval); both members hold the binding's NAT mapping (the standby's
  through the sync protocol);
* traffic both ways: the correspondent pings the home address; echo requests reach the mobile node
  as tunnel data, the replies go back as tunnel data (a reverse tunnel: the NAT would otherwise
  rewrite the home address away), seen as ``mip.type == 4`` by tshark;
* keepalives: the NAT forgets idle UDP after ``UDP_TIMEOUT`` s; the mobile node sends nothing
  but keepalives for longer than that, and the correspondent still reaches it on the same mapping;
* a NAT rebind: the NAT's table is flushed and its port range moved, the mobile node's next
  keepalive leaves on a new public port, the active Home Agent moves the binding there (a new
  record version, replicated) and traffic continues;
* failover: under the ping, ha1's link is cut and ha1 SIGKILLed; ha2 takes over and the pings
  continue through the same NAT mapping; the outage is printed and bounded by ``OUTAGE_BOUND_S``.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from typing import Any

import pytest
from pcapio import tshark_fields

from mobileip.tools.lab import NetnsLab, _ip

pytestmark = [pytest.mark.kernel, pytest.mark.timeout(600)]

HOME = "10.1.0.100"
VIRTUAL = "10.1.0.1"
CN = "192.0.2.10"
NAT_PUBLIC = "10.2.0.1"
MN_PRIVATE = "192.168.77.2"
KEEPALIVE = 1  # s, [homeagent] nat_keepalive: what the UDP Tunnel Reply tells the mobile node
UDP_TIMEOUT = 4  # s, the NAT's idle UDP timeout (nf_conntrack_udp_timeout[_stream])
INTERVAL = 0.02  # s between pings
OUTAGE_BOUND_S = 3.0  # VRRP at 0.1 s: Master_Down ~0.36 s; UML's one CPU runs everything

NODES: dict[str, Any] = {
    "cn": ([("wan", f"{CN}/24")], "192.0.2.1"),
    "rt": ([("wan", "192.0.2.1/24"), ("home", "10.1.0.254/24"), ("f1", "10.2.0.254/24")], None),
    "ha1": ([("home", "10.1.0.11/24")], "10.1.0.254"),
    "ha2": ([("home", "10.1.0.12/24")], "10.1.0.254"),
    "nat": ([("f1", f"{NAT_PUBLIC}/24"), ("priv", "192.168.77.1/24")], "10.2.0.254"),
    "mn": ([("priv", f"{MN_PRIVATE}/24")], "192.168.77.1"),
}

# NAPT of 192.168.77.0/24 to 10.2.0.1 in the ``nat`` namespace (eth0 public, eth1 private): on
# eth0's egress, new flows are committed to conntrack with a source NAT (ports PORTS), known ones
# translated; on its ingress the answers are translated back before routing.
NAT_SCRIPT = """
set -e
tc qdisc replace dev eth0 clsact
tc filter del dev eth0 egress 2>/dev/null || true
tc filter del dev eth0 ingress 2>/dev/null || true
tc filter add dev eth0 egress prio 1 protocol ip flower src_ip 192.168.77.0/24 \
    action ct commit nat src addr 10.2.0.1 port PORTS pipe action gact pass
tc filter add dev eth0 ingress prio 1 protocol ip flower dst_ip 10.2.0.1 \
    action ct nat pipe action gact pass
"""


def flush_conntrack(lab: NetnsLab) -> None:
    """Empty the NAT's connection table (the mappings) through ctnetlink."""
    code = "from pyroute2 import Conntrack\nwith Conntrack() as ct: ct.flush()\nprint('ok')"
    lab.run("nat", [lab.python, "-c", code])


class NatLab(NetnsLab):
    def __init__(self) -> None:
        super().__init__(None, 0.1, INTERVAL, mobile_nodes=0, sample=0, members=2, real_mn=False)
        self.nodes = dict(NODES)
        self.priorities = {"ha1": 150, "ha2": 100}

    def ha_config(self, node: str) -> dict[str, Any]:
        cfg = super().ha_config(node)
        cfg["homeagent"].update(nat_traversal=True, nat_keepalive=KEEPALIVE)
        return cfg

    def nat(self, ports: str) -> None:
        self.run("nat", ["sh", "-c", NAT_SCRIPT.replace("PORTS", ports)])

    def mn_nat_config(self) -> dict[str, Any]:
        return {
            "mobilenode": {
                "interface": "eth0", "home_address": HOME, "home_agent": VIRTUAL,
                "home_network": "10.1.0.0/24", "spi": 256,
                "key": "00112233445566778899aabbccddeeff", "lifetime": 120,
                "colocated_care_of_address": MN_PRIVATE, "manage_routes": False,
                "reverse_tunnel": True, "nat_traversal": True,
            }
        }  # fmt: skip

    def nat_status(self, node: str) -> dict[str, Any]:
        data: dict[str, Any] = self.control(node, "/api/v1/nat")
        return data

    def ping(self, seconds: float, label: str) -> dict[str, Any]:
        argv = [self.python, "-m", "mobileip.tools.traffic", "ping", HOME, "--interval",
                str(INTERVAL), "--duration", str(seconds)]  # fmt: skip
        out = self.run("cn", argv, timeout=seconds + 60)
        result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        print(f"{label}: {result}")
        return result


def mapping(lab: NatLab, node: str) -> list[str]:
    tunnels: dict[str, list[str]] = lab.nat_status(node)["tunnels"]
    return tunnels.get(HOME, [])


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
def test_nat_traversal_with_keepalives_rebind_and_failover() -> None:
    lab = NatLab()
    stop = lab.work / "stop-ping"
    try:
        lab.build()
        lab.sysctl("nat", "net.ipv4.ip_forward", "1")
        for key in ("nf_conntrack_udp_timeout", "nf_conntrack_udp_timeout_stream"):
            with contextlib.suppress(Exception):  # set once conntrack is loaded (below)
                lab.sysctl("nat", f"net.netfilter.{key}", str(UDP_TIMEOUT))
        lab.nat("20000-20999")
        for key in ("nf_conntrack_udp_timeout", "nf_conntrack_udp_timeout_stream"):
            lab.sysctl("nat", f"net.netfilter.{key}", str(UDP_TIMEOUT))
        lab.run("mn", ["ip", "addr", "add", f"{HOME}/32", "dev", "lo"])
        for node in ("ha1", "ha2"):
            lab.start_daemon(node, "homeagent", lab.ha_config(node)).wait_for(
                "dataplane.started", 60
            )
        lab._wait(lambda: lab.active(["ha1", "ha2"]) == "ha1", 30, "ha1 never became active")

        # --- registration through the NAT, seen by tshark on the public side ----------------
        pcap = lab.work / "public.pcap"
        capture = lab.spawn(
            "rt", ["tshark", "-n", "-i", "eth2", "-f", "udp port 434", "-w", str(pcap)], "tshark"
        )
        capture.wait_for("Capturing on", 60)
        node = lab.start_daemon("mn", "mobilenode", lab.mn_nat_config())
        node.wait_for("mn.udp_tunnel keepalive=1", 30)
        node.wait_for("mn.registered", 30)
        lab._wait(lambda: mapping(lab, "ha1") and mapping(lab, "ha2"), 30, "mapping on both")
        first = mapping(lab, "ha1")
        assert first == mapping(lab, "ha2")  # the standby got it through the sync protocol
        [public] = first
        address, port = public.split(":")
        assert address == NAT_PUBLIC and 20000 <= int(port) <= 20999, first

        # --- traffic both ways through the UDP tunnel -----------------------------------------
        before = lab.ping(2.0, "ping through the NAT")
        assert before["received"] >= before["sent"] - 2 > 0, before
        time.sleep(1.0)
        capture.popen.terminate()
        capture.popen.wait(30)
        rows = tshark_fields(
            pcap,
            ["mip.type", "mip.code", "mip.ext.utrq.encaptype", "mip.ext.utrp.code",
             "mip.ext.utrp.keepalive", "mip.nattt.nexthdr", "ip.src", "udp.srcport"],
        )  # fmt: skip
        requests = [r for r in rows if r[0] == "1" and r[2] == "4"]
        replies = [r for r in rows if r[0] == "3" and r[3] == "0"]
        assert requests and all(r[6].split(",")[0] == NAT_PUBLIC for r in requests), rows[:5]
        assert replies and replies[0][1] == "0" and replies[0][4] == str(KEEPALIVE), rows[:5]
        data = [r for r in rows if r[0] == "4"]
        to_mn = [r for r in data if r[6].startswith(VIRTUAL)]
        from_mn = [r for r in data if r[6].startswith(NAT_PUBLIC)]
        assert to_mn and from_mn and all(r[5] == "4" for r in data), rows[:5]
        print(
            f"tshark on the public side: {len(requests)} requests with 144, {len(replies)} "
            f"replies with 44 (code 0, keepalive {KEEPALIVE}), tunnel data {len(to_mn)} to the "
            f"mobile node, {len(from_mn)} from it; NAT mapping {public}"
        )

        # --- keepalives hold the mapping through an idle period longer than the NAT's timeout --
        kept = lab.nat_status("ha1")["counters"].get("udp-keepalive", 0)
        time.sleep(UDP_TIMEOUT * 2.5)
        keepalives = lab.nat_status("ha1")["counters"].get("udp-keepalive", 0) - kept
        assert keepalives >= UDP_TIMEOUT, keepalives
        assert mapping(lab, "ha1") == first  # the same mapping: the NAT never dropped it
        idle = lab.ping(1.0, f"ping after {UDP_TIMEOUT * 2.5:.0f} s idle")
        assert idle["received"] >= idle["sent"] - 2 > 0, idle

        # --- the NAT rebinds: the next keepalive leaves on a new port; the HA follows ----------
        lab.nat("21000-21999")
        flush_conntrack(lab)
        lab._wait(
            lambda: mapping(lab, "ha1") != first and mapping(lab, "ha2") == mapping(lab, "ha1"),
            30,
            "the rebind on both members",
        )
        moved = mapping(lab, "ha1")
        assert moved[0].startswith(f"{NAT_PUBLIC}:21"), moved
        assert lab.nat_status("ha1")["counters"].get("udp-rebind", 0) >= 1
        rebound = lab.ping(1.0, f"ping after the rebind to {moved[0]}")
        assert rebound["received"] >= rebound["sent"] - 2 > 0, rebound

        # --- failover under traffic ----------------------------------------------------------
        argv = [lab.python, "-m", "mobileip.tools.traffic", "ping", HOME, "--interval",
                str(INTERVAL), "--duration", "120", "--until-file", str(stop)]  # fmt: skip
        pinger = lab.spawn("cn", argv, "ping-failover")
        pinger.wait_for("ready", 20)
        time.sleep(2.0)
        killed = time.monotonic()
        _ip("-n", lab.ns("hub"), "link", "set", "p-ha1-0", "down")
        lab.kill("ha1")
        assert lab.wait_new_active(["ha2"], timeout=20) == "ha2"
        time.sleep(max(0.0, killed + 6.0 - time.monotonic()))
        stop.touch()
        line = pinger.wait_for(r"^\{", 60)
        result = json.loads(line)
        after = lab.nat_status("ha2")
        print(
            f"failover with a NAT-ed mobile node: ping outage {result['outage_ms']} ms "
            f"(longest gap {result['max_gap_ms']} ms at {INTERVAL * 1e3:.0f} ms intervals), "
            f"sent {result['sent']}, received {result['received']}, lost {result['lost']}; "
            f"ha2 data plane after: {after['counters']}"
        )
        assert after["counters"].get("udp-encap", 0) > 0 and after["counters"].get("udp-decap")
        assert mapping(lab, "ha2") == moved
        assert result["received"] > 0 and result["outage_ms"] < OUTAGE_BOUND_S * 1e3, result
        assert result["lost"] is not None and result["lost"] < OUTAGE_BOUND_S / INTERVAL, result
    except BaseException:
        stop.touch()
        for label, proc in lab.procs.items():
            print(f"--- {label}\n" + "\n".join(t for _, t in proc.lines[-25:]))
        raise
    finally:
        with contextlib.suppress(Exception):
            stop.touch()
        lab.teardown()
    assert not [ns for ns in lab.namespaces if ns.startswith(lab.prefix)]
