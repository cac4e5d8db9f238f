"""The Home Agent's userspace data plane on a home link in network namespaces.

One segment: the HA (10.77.0.1), a correspondent on the home link (10.77.0.2) and a far host
standing for the care-of address (10.77.0.3). The mobile node's home address is 10.77.0.100.
A capture on the bridge shows: the HA's gratuitous ARP and proxy ARP answers for the home
address, the correspondent's pings tunnelled to the CoA (IP-in-IP, GRE, minimal encapsulation
as the M/G flags ask) with the inner packet intact, a reverse-tunnelled packet decapsulated
and forwarded to the correspondent, and everything withdrawn on deregistration and on standby.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import KEY, SPI
from netns import Member, Process, Segment, segment_fixture  # noqa: F401
from pcapio import tshark_fields

from mobileip.config import to_toml

pytestmark = pytest.mark.root

HA, CN, FAR, HOME = "10.77.0.1", "10.77.0.2", "10.77.0.3", "10.77.0.100"
PY = sys.executable


def ha_config(member: Member, role: str = "active") -> dict[str, Any]:
    return {
        "homeagent": {"address": HA, "listen": "0.0.0.0", "port": 434, "max_lifetime": 600},
        "security_association": [
            {"spi": SPI, "algorithm": "hmac-md5", "key": KEY, "home_addresses": ["10.77.0.0/24"]}
        ],
        "control": {"listen": "127.0.0.1:8434"},
        "vrrp": {"driver": "static", "role": role},
        "dataplane": {
            "backend": "userspace",
            "home_interface": member.ifname,
            "tun_name": "mip0",
            "garp_rounds": 2,
            "garp_interval": 0.3,
        },
    }


REGISTER = f"""
import sys
from ipaddress import IPv4Address as A, IPv4Network as N
from mobileip.core.security import SecurityAssociation
from mobileip.agents.client import MobileNode, RegistrationClient
home, coa, flags, lifetime = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
sa = SecurityAssociation({SPI}, "hmac-md5", bytes.fromhex("{KEY}"), (N("10.77.0.0/24"),))
mn = MobileNode(A(home), A(coa), A("{HA}"), sa)
with RegistrationClient(mn, ("{HA}", 434), timeout=0.5) as c:
    r = c.register(lifetime, flags)
print("code", r.code)
sys.exit(0 if r.accepted else 1)
"""

FETCH = """
import sys, json
from mobileip.agents.client import fetch_json
print(json.dumps(fetch_json(("127.0.0.1", 8434), sys.argv[1])))
"""

REVERSE = f"""
import socket
from ipaddress import IPv4Address as A
from mobileip.dataplane.encap import Encapsulation, IPv4Header, build_ipv4, encapsulate
udp = bytes.fromhex("d431" "2710" "0010" "0000") + b"reverse!"
inner = build_ipv4(IPv4Header(0, 0, 1, 0, 64, 17, A("{HOME}"), A("{CN}")), udp)
outer = encapsulate(inner, Encapsulation.IPIP, A("{FAR}"), A("{HA}"))
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
s.sendto(outer, ("{HA}", 0))
print("sent")
"""

LISTEN = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 10000))
print("listening", flush=True)
s.settimeout(15)
data, src = s.recvfrom(100)
print("got", data.decode(), src[0], src[1], flush=True)
"""


def register(seg: Segment, where: Member, coa: str, flags: int = 0, lifetime: int = 60) -> None:
    res = seg.run(where, [PY, "-c", REGISTER, HOME, coa, str(flags), str(lifetime)])
    assert res.returncode == 0, res.stdout + res.stderr


def dataplane(seg: Segment, ha: Member) -> dict[str, Any]:
    res = seg.run(ha, [PY, "-c", FETCH, "/api/v1/dataplane"])
    assert res.returncode == 0, res.stderr
    data: dict[str, Any] = json.loads(res.stdout)
    return data


def wait_dataplane(seg: Segment, ha: Member, check: Any, timeout: float = 10) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        data = dataplane(seg, ha)
        if check(data):
            return data
        if time.monotonic() > deadline:
            raise AssertionError(f"data plane never got there: {data}")
        time.sleep(0.1)


def add_ha_and_cn(seg: Segment) -> tuple[Member, Member]:
    """The Home Agent (``HA``) and the correspondent (``CN``) added to the home link."""
    return seg.add_member("ha", f"{HA}/24"), seg.add_member("cn", f"{CN}/24")


def start_homeagent(
    seg: Segment, ha: Member, tmp_path: Path, cfg: dict[str, Any], ready: str = "dataplane.started"
) -> Process:
    """``mobileip homeagent`` on ``ha`` with ``cfg`` (written to ``tmp_path``/ha.toml); returns
    once it logged ``ready`` (a pattern)."""
    conf = tmp_path / "ha.toml"
    conf.write_text(to_toml(cfg))
    daemon = seg.spawn(ha, [PY, "-m", "mobileip", "homeagent", "--config", str(conf)], "ha")
    daemon.wait_for(ready, 15)
    return daemon


def assert_pings_return(seg: Segment, cn: Member, home: str) -> None:
    """The correspondent pings ``home`` every 0.1 s for 1 s: all but at most one come back."""
    argv = [PY, "-m", "mobileip.tools.traffic", "ping", home, "--interval", "0.1",
            "--duration", "1"]  # fmt: skip
    result = json.loads(seg.run(cn, argv).stdout.strip().splitlines()[-1])
    assert result["received"] >= result["sent"] - 1 > 0, result


def ping(seg: Segment, cn: Member, count: int = 2) -> None:
    argv = [PY, "-m", "mobileip.tools.traffic", "ping", HOME, "--interval", "0.2"]
    seg.run(cn, [*argv, "--duration", str(count * 0.2)], timeout=20)


def capture(seg: Segment, pcap: Path) -> Process:
    proc = seg.spawn(
        seg.hub,
        ["tshark", "-i", seg.bridge, "-f", "arp or ip proto 4 or ip proto 47 or ip proto 55 "
         "or udp port 10000", "-w", str(pcap)],
        "tshark",
    )  # fmt: skip
    proc.wait_for(r"Capturing on", 15)
    return proc


def test_userspace_tunnels_proxy_arp_reverse_tunnel_and_withdrawal(
    segment_fixture: Segment,  # noqa: F811
    tmp_path: Path,
) -> None:
    seg = segment_fixture
    ha, cn = add_ha_and_cn(seg)
    far = seg.add_member("far", f"{FAR}/24")
    pcap = tmp_path / "home.pcap"
    cap = capture(seg, pcap)
    daemon = start_homeagent(seg, ha, tmp_path, ha_config(ha))

    # 1. IP-in-IP: register, then the correspondent pings the home address
    register(seg, far, FAR)
    data = wait_dataplane(seg, ha, lambda d: d["tunnels"] == 1)
    assert data["active"] and data["homes"] == [HOME] and data["rule_installed"]
    assert data["installed"] == data["desired"] == 1 and data["pending"] == 0
    assert not seg.run(ha, ["ip", "neigh", "show", "proxy"]).stdout.strip()  # no per-binding
    routes = seg.run(ha, ["ip", "route", "show", "table", "100"]).stdout
    assert f"{HOME} dev mip0" in routes
    assert "lookup 100" in seg.run(ha, ["ip", "rule"]).stdout
    assert "dev mip0" in seg.run(ha, ["ip", "route", "get", HOME]).stdout
    ping(seg, cn)
    # 2. GRE, 3. minimal encapsulation: re-register with the G, then the M flag
    register(seg, far, FAR, flags=0x08)
    wait_dataplane(seg, ha, lambda d: d["backend"]["counters"].get("encap-ipip", 0) >= 1)
    time.sleep(0.3)
    ping(seg, cn)
    register(seg, far, FAR, flags=0x10 | 0x02)  # M and T
    time.sleep(0.3)
    ping(seg, cn)
    # 4. reverse tunnel (T): the far end tunnels a UDP datagram from the home address
    listener = seg.spawn(cn, [PY, "-c", LISTEN], "listener")
    listener.wait_for("listening", 10)
    assert seg.run(far, [PY, "-c", REVERSE]).returncode == 0
    got = listener.wait_for(r"^got ", 10).text
    assert got == f"got reverse! {HOME} 54321"
    status = dataplane(seg, ha)
    counters = status["backend"]["counters"]
    assert counters.get("encap-ipip", 0) >= 2, counters
    assert counters.get("encap-gre", 0) >= 2, counters
    assert counters.get("encap-minimal", 0) >= 2, counters
    assert counters.get("decap-ipip") == 1, counters

    # 5. a standby keeps its routes (hot) but drops the rule; active again re-announces
    post = (
        "import sys, json; from mobileip.agents.client import post_json; "
        "print(json.dumps(post_json(('127.0.0.1', 8434), '/api/v1/role', {'role': sys.argv[1]})))"
    )
    assert seg.run(ha, [PY, "-c", post, "standby"]).returncode == 0
    wait_dataplane(seg, ha, lambda d: not d["active"] and not d["rule_installed"])
    assert f"{HOME} dev mip0" in seg.run(ha, ["ip", "route", "show", "table", "100"]).stdout
    assert "lookup 100" not in seg.run(ha, ["ip", "rule"]).stdout
    assert "mip0" not in seg.run(ha, ["ip", "route", "get", HOME]).stdout
    assert seg.run(ha, [PY, "-c", post, "active"]).returncode == 0
    data = wait_dataplane(seg, ha, lambda d: d["tunnels"] == 1 and d["rule_installed"])
    assert data["takeovers"] == 1 and data["last_takeover_ms"] is not None
    time.sleep(0.3 * 2 + 0.2)  # let both paced re-announcement rounds go out (garp_interval)

    # 6. the mobile node returns home: deregister all (CoA = home address), proxying stops
    register(seg, far, HOME, lifetime=0)
    wait_dataplane(seg, ha, lambda d: d["tunnels"] == 0)
    assert HOME not in seg.run(ha, ["ip", "route", "show", "table", "100"]).stdout
    time.sleep(0.5)
    daemon.stop()
    cap.stop()
    # a clean stop leaves nothing: no rule, no routes in table 100, sysctls as they were
    assert "lookup 100" not in seg.run(ha, ["ip", "rule"]).stdout
    assert not seg.run(ha, ["ip", "route", "show", "table", "100"]).stdout.strip()
    assert seg.run(ha, ["sysctl", "-n", f"net.ipv4.conf.{ha.ifname}.proxy_arp"]).stdout == "0\n"

    # what went over the wire
    tunnels = tshark_fields(
        pcap,
        ["ip.proto", "ip.src", "ip.dst", "ip.ttl", "icmp.type", "data.data"],
        "ip.check_checksum:TRUE",
    )
    kinds = {row[0].split(",")[0] for row in tunnels if row[0]}
    assert {"4", "47", "55"} <= kinds, tunnels
    for proto, src, dst, ttl, icmp_type, data_hex in tunnels:
        first = proto.split(",")[0]
        if first == "4" and src.startswith(HA):  # IP-in-IP from the HA: echo request inside
            assert src == f"{HA},{CN}" and dst == f"{FAR},{HOME}" and ttl == "64,63"
            assert icmp_type.startswith("8")
        if first == "47" and src.startswith(HA):
            assert src == f"{HA},{CN}" and dst == f"{FAR},{HOME}"
        if first == "55":  # no dissector: the minimal header then the ICMP echo request
            assert (src, dst, ttl) == (HA, FAR, "63")
            header = bytes.fromhex(data_hex)[:12]
            assert header[0] == 1 and header[1] & 0x80  # protocol ICMP, S bit
            assert header[4:8].hex() == "0a4d0064" and header[8:12].hex() == "0a4d0002"
    arps = tshark_fields(
        pcap, ["arp.opcode", "arp.src.proto_ipv4", "arp.dst.proto_ipv4", "arp.src.hw_mac"]
    )
    garps = [r for r in arps if r[0] == "1" and r[1] == HOME and r[2] == HOME]
    replies = [r for r in arps if r[0] == "2" and r[1] == HOME]
    assert len(garps) >= 3, arps  # binding created, takeover (2 rounds)
    assert replies, arps  # proxy ARP answered the correspondent
    ha_mac = {r[3] for r in garps}
    assert len(ha_mac) == 1 and {r[3] for r in replies} == ha_mac


def test_colocated_mobile_node_decapsulates_itself(
    segment_fixture: Segment,  # noqa: F811
    tmp_path: Path,
) -> None:
    """``mobileip mobilenode`` with a co-located care-of address registers straight with the HA
    (D flag) and is its own tunnel exit: the correspondent's pings to the home address come
    back."""
    seg = segment_fixture
    ha, cn = add_ha_and_cn(seg)
    mn = seg.add_member("mn", "10.77.0.50/24")  # the co-located care-of address
    seg.run(mn, ["ip", "addr", "add", f"{HOME}/32", "dev", "lo"])
    seg.run(mn, ["sysctl", "-q", "-w", "net.ipv4.conf.all.arp_ignore=1"])  # HA proxies .100
    start_homeagent(seg, ha, tmp_path, ha_config(ha))
    mn_conf = tmp_path / "mn.toml"
    mn_conf.write_text(
        to_toml(
            {
                "mobilenode": {
                    "interface": mn.ifname,
                    "home_address": HOME,
                    "home_agent": HA,
                    "home_network": "10.77.0.0/24",
                    "spi": SPI,
                    "key": KEY,
                    "lifetime": 30,
                    "colocated_care_of_address": "10.77.0.50",
                    "manage_routes": False,
                }
            }
        )
    )
    node = seg.spawn(mn, [PY, "-m", "mobileip", "mobilenode", "--config", str(mn_conf)], "mn")
    node.wait_for(r"mn\.registered care_of_address=10\.77\.0\.50", 15)
    wait_dataplane(seg, ha, lambda d: d["tunnels"] == 1)
    assert_pings_return(seg, cn, HOME)
    node.stop()
    line = node.wait_for(r"mn\.decapsulated", 10).text
    assert "packets=0" not in line


PROBE = (
    "import asyncio; from mobileip.dataplane.tunnels import kernel_supports_tunnels as k; "
    "ok, why = asyncio.run(k()); print(ok); print(why)"
)


def _probe(seg: Segment, member: Member) -> tuple[bool, str]:
    out = seg.run(member, [PY, "-c", PROBE]).stdout.splitlines()
    return out[0] == "True", out[1]


def kernel_homeagent(seg: Segment, ha: Member, tmp_path: Path, **dataplane: Any) -> Process:
    """The Home Agent daemon on ``ha`` with the kernel backend (``dataplane``: more
    ``[dataplane]`` keys), started; the test skipped where the kernel cannot tunnel (tests
    marked ``kernel``: CI fails a skip)."""
    ok, why = _probe(seg, ha)
    if not ok:
        pytest.skip(f"kernel backend unavailable here: {why}")
    cfg = ha_config(ha)
    cfg["dataplane"]["backend"] = "kernel"
    cfg["dataplane"].update(dataplane)
    return start_homeagent(seg, ha, tmp_path, cfg, r"dataplane.started backend=kernel")


def test_auto_backend_follows_what_the_kernel_can(
    segment_fixture: Segment,  # noqa: F811
    tmp_path: Path,
) -> None:
    seg = segment_fixture
    ha = seg.add_member("ha", f"{HA}/24")
    ok, why = _probe(seg, ha)
    cfg = ha_config(ha)
    cfg["dataplane"]["backend"] = "auto"
    conf = tmp_path / "ha.toml"
    conf.write_text(to_toml(cfg))
    daemon = seg.spawn(ha, [PY, "-m", "mobileip", "homeagent", "--config", str(conf)], "ha")
    line = daemon.wait_for(r"dataplane.backend_chosen", 15).text
    print(f"\nkernel tunnels: {ok} ({why}); {line}")
    assert f"backend={'kernel' if ok else 'userspace'}" in line
    # the probe leaves no device behind
    assert "mipprobe" not in seg.run(ha, ["ip", "link"]).stdout
