"""``simnodes natnodes``' registration (scripts/perf/nat_takeover_many.py): each NAT-ed node's
request, answered by the real Home Agent core on loopback, is granted a UDP tunnel whose mapping
is that node's own socket (address and port)."""

from __future__ import annotations

import socket
import threading
import time
from ipaddress import IPv4Address, IPv4Network

from mobileip.agents.client import MobileNode
from mobileip.core import homeagent as ha
from mobileip.core.nat import NatSettings, NatTraversal
from mobileip.core.security import SecurityAssociation, SecurityAssociations
from mobileip.tools.simnodes import _register_nat_node
from mobileip.wire import nat

HA = IPv4Address("10.1.0.1")
SA = SecurityAssociation(256, "hmac-md5", bytes(range(16)), (IPv4Network("10.1.0.0/24"),))


def test_each_nat_node_gets_its_own_mapping() -> None:
    core = ha.HomeAgentCore(
        ha.HomeAgentSettings(address=HA, node_id=1, replay="timestamp"), SecurityAssociations([SA])
    )
    core.nat = NatTraversal(NatSettings(keepalive=1))
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    server.settimeout(5)
    homes = [IPv4Address("10.1.0.100") + i for i in range(3)]

    def home_agent() -> None:
        for _ in homes:
            data, src = server.recvfrom(4096)
            out = core.handle_request(data, time.monotonic(), time.time(), src)
            assert out.reply is not None
            server.sendto(nat.encapsulate(b"\x45" + bytes(19)), src)  # skipped by the client
            server.sendto(out.reply, src)

    thread = threading.Thread(target=home_agent)
    thread.start()
    ports = []
    # the care-of address is not the source (127.0.0.1): a NAT, as behind the lab's
    private = IPv4Address("192.168.77.2")
    for home in homes:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        ports.append(sock.getsockname()[1])
        mn = MobileNode(home, private, HA, SA, extensions=(nat.UdpTunnelRequest().extension(),))
        assert _register_nat_node(sock, mn, server.getsockname()) == {"code": 0, "udp": True}
        sock.close()
    thread.join(5)
    server.close()
    mappings = []
    for home in homes:
        rec = core.table.get(int(home))
        assert rec is not None
        [b] = rec.bindings
        mappings.append((str(IPv4Address(b.udp_address)), b.udp_port))
    assert mappings == [("127.0.0.1", p) for p in ports]
