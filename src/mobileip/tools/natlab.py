"""A mobile node behind a NAT, two Home Agents, a correspondent (RFC 3519; issue 16 item 1): what
tests/test_kernel_nat.py (asserted) and scripts/perf/nat_takeover.py (measured) share. Needs
root and a kernel with conntrack NAT (iptables' nat table, else tc's ``ct`` action): run it
inside User-Mode Linux.

Topology (the lab's namespaces and helpers, :class:`mobileip.tools.lab.NetnsLab`)::

    cn 192.0.2.10 --[wan]-- rt --[home 10.1.0.0/24]-- ha1 .11 (prio 150), ha2 .12 (virtual .1)
                            rt --[f1 10.2.0.0/24]---- nat 10.2.0.1 == NAPT == 192.168.77.1
                                                          --[priv]-- mn 192.168.77.2
                                                                     (home address 10.1.0.100)

With ``nat=True`` the ``nat`` namespace translates 192.168.0.0/16 to 10.2.0.1 with a real
``iptables -t nat ... -j MASQUERADE`` rule on its public interface (``iptables-legacy``: no UML
kernel here has ``NF_TABLES_IPV4``; Debian 12's 6.1 has iptables' nat table, the tier runs the
NAT tests on it, docs/testing.md) and the mobile node asks for UDP tunnelling. On a kernel
without that table (unstable's UML 7.2) the same nf_conntrack + nf_nat engine is driven by tc's
``ct`` action instead (:attr:`NatLab.nat_engine` says which; ``MOBILEIP_NAT_ENGINE=masquerade``,
set by the tier, makes the lab fail rather than fall back). With
``nat=False`` it is a plain router (``rt`` routes the private network to it) and the mobile node
is an ordinary co-located node (IP-in-IP): the baseline.

With ``via_fa=True`` our foreign agent sits behind the NAT instead (RFC 3519 with an FA), its
care-of address the private 192.168.78.1 on its visited link (where it advertises),
``nat_traversal = true``; the mobile node is on that link and registers through it (FA
care-of address, T); the NAT translates 192.168.0.0/16 and routes 192.168.78.0/24 to the agent::

    ... nat 10.2.0.1 == NAPT == 192.168.77.1 --[priv]-- fa 192.168.77.2
                  fa 192.168.78.1 (care-of address) --[visit]-- mn 192.168.78.2 (10.1.0.100)
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from mobileip.tools.lab import LabError, NetnsLab, _ip

HOME = "10.1.0.100"
VIRTUAL = "10.1.0.1"
CN = "192.0.2.10"
NAT_PUBLIC = "10.2.0.1"
MN_PRIVATE = "192.168.77.2"
PRIVATE_NET = "192.168.77.0/24"
KEEPALIVE = 1  # s, [homeagent] nat_keepalive: what the UDP Tunnel Reply tells the mobile node
UDP_TIMEOUT = 4  # s, the NAT's idle UDP timeout (nf_conntrack_udp_timeout[_stream])
INTERVAL = 0.02  # s between pings

NODES: dict[str, Any] = {
    "cn": ([("wan", f"{CN}/24")], "192.0.2.1"),
    "rt": ([("wan", "192.0.2.1/24"), ("home", "10.1.0.254/24"), ("f1", "10.2.0.254/24")], None),
    "ha1": ([("home", "10.1.0.11/24")], "10.1.0.254"),
    "ha2": ([("home", "10.1.0.12/24")], "10.1.0.254"),
    "nat": ([("f1", f"{NAT_PUBLIC}/24"), ("priv", "192.168.77.1/24")], "10.2.0.254"),
    "mn": ([("priv", f"{MN_PRIVATE}/24")], "192.168.77.1"),
}

FA_COA = "192.168.78.1"
FA_NODES: dict[str, Any] = {
    **{k: v for k, v in NODES.items() if k != "mn"},
    "fa": ([("priv", "192.168.77.2/24"), ("visit", f"{FA_COA}/24")], "192.168.77.1"),
    "mn": ([("visit", "192.168.78.2/24")], None),
}

# NAPT of 192.168.0.0/16 (the mobile node's or the foreign agent's network) to 10.2.0.1 in the
# ``nat`` namespace (eth0 public, eth1 private): MASQUERADE, UDP to public ports PORTS.
MASQUERADE_SCRIPT = """
set -e
iptables-legacy -w -t nat -F POSTROUTING
iptables-legacy -w -t nat -A POSTROUTING -s 192.168.0.0/16 -o eth0 -p udp \
    -j MASQUERADE --to-ports PORTS
iptables-legacy -w -t nat -A POSTROUTING -s 192.168.0.0/16 -o eth0 -j MASQUERADE
"""

# The same with tc's ct action where iptables has no nat table: on eth0's egress new flows are
# committed to conntrack with a source NAT (ports PORTS) and known ones translated; on its
# ingress the answers are translated back before routing.
NAT_SCRIPT = """
set -e
tc qdisc replace dev eth0 clsact
tc filter del dev eth0 egress 2>/dev/null || true
tc filter del dev eth0 ingress 2>/dev/null || true
tc filter add dev eth0 egress prio 1 protocol ip flower src_ip 192.168.0.0/16 \
    action ct commit nat src addr 10.2.0.1 port PORTS pipe action gact pass
tc filter add dev eth0 ingress prio 1 protocol ip flower dst_ip 10.2.0.1 \
    action ct nat pipe action gact pass
"""

FLUSH_CONNTRACK = "from pyroute2 import Conntrack\nwith Conntrack() as ct: ct.flush()\nprint('ok')"


class NatLab(NetnsLab):
    def __init__(self, nat: bool = True, via_fa: bool = False, backend: str = "userspace") -> None:
        super().__init__(
            None, 0.1, INTERVAL, mobile_nodes=0, sample=0, members=2, real_mn=False, backend=backend
        )
        self.nat = nat
        self.via_fa = via_fa
        self.nat_engine = ""  # "masquerade" or "tc-ct", once setup chose
        self._nat_table_error = ""
        self.nodes = dict(FA_NODES if via_fa else NODES)
        self.priorities = {"ha1": 150, "ha2": 100}

    def ha_config(self, node: str) -> dict[str, Any]:
        cfg = super().ha_config(node)
        cfg["homeagent"].update(nat_traversal=self.nat, nat_keepalive=KEEPALIVE)
        return cfg

    def mn_config(self) -> dict[str, Any]:
        return {
            "mobilenode": {
                "interface": "eth0", "home_address": HOME, "home_agent": VIRTUAL,
                "home_network": "10.1.0.0/24", "spi": 256,
                "key": "00112233445566778899aabbccddeeff", "lifetime": 120,
                "colocated_care_of_address": MN_PRIVATE, "manage_routes": False,
                "reverse_tunnel": True, "nat_traversal": self.nat,
            }
        }  # fmt: skip

    def nat_fa_config(self) -> dict[str, Any]:
        return {
            "foreignagent": {
                "interface": "eth1", "care_of_address": FA_COA, "advertisement_interval": 0.5,
                "max_lifetime": 600, "reverse_tunnel": True, "nat_traversal": self.nat,
            }
        }  # fmt: skip

    def mn_fa_config(self) -> dict[str, Any]:
        """The mobile node on the foreign agent's link: its care-of address, T."""
        return {
            "mobilenode": {
                "interface": "eth0", "home_address": HOME, "home_agent": VIRTUAL,
                "home_network": "10.1.0.0/24", "spi": 256,
                "key": "00112233445566778899aabbccddeeff", "lifetime": 120,
                "reverse_tunnel": True, "agent_timeout": 3.0,
            }
        }  # fmt: skip

    def setup(self) -> None:
        """Build the namespaces, the NAT (or the plain route), the mobile node's home address."""
        self.build()
        self.sysctl("nat", "net.ipv4.ip_forward", "1")
        if self.nat:
            self.translate("20000-20999")
            for key in ("nf_conntrack_udp_timeout", "nf_conntrack_udp_timeout_stream"):
                self.sysctl("nat", f"net.netfilter.{key}", str(UDP_TIMEOUT))
        else:
            _ip("-n", self.ns("rt"), "route", "add", PRIVATE_NET, "via", NAT_PUBLIC)
        if self.via_fa:
            self.sysctl("fa", "net.ipv4.ip_forward", "1")
            _ip("-n", self.ns("nat"), "route", "add", "192.168.78.0/24", "via", "192.168.77.2")
        self.run("mn", ["ip", "addr", "add", f"{HOME}/32", "dev", "lo"])

    def translate(self, ports: str) -> None:
        """(Re)load the NAT with the public port range ``ports`` (``LOW-HIGH``): MASQUERADE
        where iptables' nat table loads (the kernel auto-loads iptable_nat), else tc ct."""
        if not self.nat_engine:
            self.nat_engine = "masquerade" if self._has_nat_table() else "tc-ct"
            wanted = os.environ.get("MOBILEIP_NAT_ENGINE", "")
            if wanted and wanted != self.nat_engine:
                raise LabError(
                    f"MOBILEIP_NAT_ENGINE={wanted} but this kernel's NAT is {self.nat_engine} "
                    f"(iptables-legacy -t nat: {self._nat_table_error})"
                )
        script = MASQUERADE_SCRIPT if self.nat_engine == "masquerade" else NAT_SCRIPT
        self.run("nat", ["sh", "-c", script.replace("PORTS", ports)])

    def masqueraded(self) -> int:
        """Flows the UDP MASQUERADE rule translated since it was (re)loaded (its packet
        counter: conntrack sends only a flow's first packet through the nat table); 0 with tc."""
        if self.nat_engine != "masquerade":
            return 0
        out = self.run("nat", ["iptables-legacy", "-w", "-t", "nat", "-L", "POSTROUTING",
                               "-n", "-v", "-x"])  # fmt: skip
        return sum(
            int(line.split()[0])
            for line in out.splitlines()
            if "MASQUERADE" in line.split()[2:3] and "masq ports:" in line
        )

    def _has_nat_table(self) -> bool:
        try:
            self.run("nat", ["iptables-legacy", "-w", "-t", "nat", "-S", "POSTROUTING"])
        except (LabError, OSError) as exc:
            self._nat_table_error = str(exc)
            return False
        return True

    def flush_conntrack(self) -> None:
        """Empty the NAT's connection table (its mappings), through ctnetlink."""
        self.run("nat", [self.python, "-c", FLUSH_CONNTRACK])

    def start_home_agents(self) -> None:
        for node in ("ha1", "ha2"):
            self.start_daemon(node, "homeagent", self.ha_config(node)).wait_for(
                "dataplane.started", 60
            )
        self._wait(lambda: self.active(["ha1", "ha2"]) == "ha1", 30, "ha1 never became active")

    def nat_status(self, node: str) -> dict[str, Any]:
        data: dict[str, Any] = self.control(node, "/api/v1/nat")
        return data

    def mapping(self, node: str) -> list[str]:
        """The NAT mappings ``node``'s data plane holds for the mobile node's home address."""
        tunnels: dict[str, list[str]] = self.nat_status(node)["tunnels"]
        return tunnels.get(HOME, [])

    def ping(self, seconds: float) -> dict[str, Any]:
        """Ping the home address from the correspondent for ``seconds``: the traffic tool's
        JSON (sent, received, lost, max_gap_ms, outage_ms)."""
        argv = [self.python, "-m", "mobileip.tools.traffic", "ping", HOME, "--interval",
                str(INTERVAL), "--duration", str(seconds)]  # fmt: skip
        out = self.run("cn", argv, timeout=seconds + 60)
        result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        return result

    @contextmanager
    def pinging(self, name: str) -> Iterator[dict[str, Any]]:
        """The correspondent pings the home address every INTERVAL (process ``ping-<name>``)
        while the block runs, from when it is ready; after the block, the dict it was given
        holds the ping's JSON (sent, received, lost, max_gap_ms, outage_ms: the longest gap
        less one interval)."""
        stop = self.work / f"stop-{name}"
        argv = [self.python, "-m", "mobileip.tools.traffic", "ping", HOME, "--interval",
                str(INTERVAL), "--duration", "120", "--until-file", str(stop)]  # fmt: skip
        pinger = self.spawn("cn", argv, f"ping-{name}")
        result: dict[str, Any] = {}
        try:
            pinger.wait_for("ready", 20)
            yield result
        finally:
            stop.touch()
        result.update(json.loads(pinger.wait_for(r"^\{", 60)))

    def failover(self, after: float = 6.0) -> dict[str, Any]:
        """Ping the home address every INTERVAL; cut ha1's link and SIGKILL it; stop ``after``
        seconds later. The ping's JSON (:meth:`pinging`)."""
        with self.pinging("failover") as result:
            time.sleep(2.0)
            killed = time.monotonic()
            _ip("-n", self.ns("hub"), "link", "set", "p-ha1-0", "down")
            self.kill("ha1")
            if self.wait_new_active(["ha2"], timeout=20) != "ha2":
                raise RuntimeError("ha2 did not take over")
            time.sleep(max(0.0, killed + after - time.monotonic()))
        return result
