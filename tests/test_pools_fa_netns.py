"""Our mobile node gets a dynamic home address through our foreign agent (RFC 2794, namespaces).

The home link (one bridge): the Home Agent with a ``[[pool]]``, a correspondent, and the foreign
agent's uplink. The foreign link (a veth of its own between the foreign agent and the mobile
node, so the Home Agent's proxy ARP for the home address is not heard there): the mobile node has
no IPv4 address at all. It hears the agent's advertisements, broadcasts its request (home address
0.0.0.0, NAI) from 0.0.0.0; the foreign agent relays it, keeps it pending under the NAI, and
broadcasts the reply that assigns the address back on the foreign link; the visitor is entered
under the assigned address. The mobile node takes it (``lo``), renews through the agent from it,
the correspondent pings it through the Home Agent's tunnel and the agent's decapsulation, and on
SIGTERM it deregisters: the address goes back to the pool and off ``lo``.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest
from netns import Member, Process, Segment, ip, segment_fixture  # noqa: F401
from pcapio import read_capture_until
from test_dataplane_netns import HA, add_ha_and_cn, assert_pings_return, wait_dataplane
from test_pools_netns import NAI_KEY, NAI_SPI, POOL, pools, start_pool_ha

from mobileip.config import to_toml

pytestmark = pytest.mark.root

PY = sys.executable
FA_UPLINK = "10.77.0.3"
COA = "10.76.0.1"


def test_mobile_node_gets_an_address_through_the_foreign_agent(
    segment_fixture: Segment,  # noqa: F811
    tmp_path: Path,
) -> None:
    seg = segment_fixture
    ha, cn = add_ha_and_cn(seg)
    fa = seg.add_member("fa", f"{FA_UPLINK}/24")
    # the foreign link: a veth between the agent and a mobile node without an address
    mn_netns = f"{seg.prefix}-mn"
    seg._add_netns(mn_netns)
    fa_if, mn_if = f"{seg.prefix}f", f"{seg.prefix}m"
    ip("-n", fa.netns, "link", "add", fa_if, "type", "veth", "peer", "name", mn_if,
       "netns", mn_netns)  # fmt: skip
    ip("-n", fa.netns, "addr", "add", f"{COA}/24", "dev", fa_if)
    ip("-n", fa.netns, "link", "set", fa_if, "up")
    ip("-n", mn_netns, "link", "set", mn_if, "up")
    mn = Member("mn", mn_netns, mn_if, "")
    seg.run(ha, ["ip", "route", "add", "10.76.0.0/24", "via", FA_UPLINK])

    start_pool_ha(seg, ha, tmp_path)
    fa_cfg = {
        "foreignagent": {
            "interface": fa_if,
            "care_of_address": COA,
            "advertisement_interval": 0.5,
            "max_lifetime": 600,
            "tun_name": f"{seg.prefix}t",
        }
    }
    (tmp_path / "fa.toml").write_text(to_toml(fa_cfg))
    agent = seg.spawn(
        fa, [PY, "-m", "mobileip", "foreignagent", "--config", str(tmp_path / "fa.toml")], "fa"
    )
    agent.wait_for(r"foreignagent\.started", 30)
    mn_cfg = {
        "mobilenode": {
            "interface": mn_if,
            "nai": "alice@pool.test",
            "home_agent": HA,
            "home_network": "10.77.0.0/24",
            "spi": NAI_SPI,
            "key": NAI_KEY,
            "lifetime": 4,  # renewed every second, through the agent, from the address
            "agent_timeout": 3.0,
        }
    }
    (tmp_path / "mn.toml").write_text(to_toml(mn_cfg))
    assert not re.search(r"inet ", seg.run(mn, ["ip", "-4", "addr", "show", "dev", mn_if]).stdout)
    pcap = tmp_path / "foreign-link.pcap"
    cap = None
    if shutil.which("dumpcap") is not None:
        argv = ["dumpcap", "-i", mn_if, "-f", "udp port 434", "-w", str(pcap)]
        cap = seg.spawn(mn, argv, "cap")
        cap.wait_for(r"Capturing on", 20)
    else:
        assert os.environ.get("CI") != "true", "CI needs dumpcap for this test"
    node = seg.spawn(
        mn, [PY, "-m", "mobileip", "mobilenode", "--config", str(tmp_path / "mn.toml")], "mn"
    )
    assigned = node.wait_for(r"mn\.assigned home=(\S+)", 30).text
    home = re.search(r"home=(\S+)", assigned).group(1)  # type: ignore[union-attr]
    assert IPv4Address(home) in IPv4Network(POOL)
    added = agent.wait_for(r"visitor\.added", 10).text
    assert f"home={home}" in added, added
    node.wait_for(rf"mn\.registered .*via={COA}.*home={re.escape(home)}", 10)
    agent.wait_for(rf"visitor\.renewed home={re.escape(home)}", 10)  # from the address now
    assert node.output().count("mn.assigned") == 1
    assert f"{home}/32" in seg.run(mn, ["ip", "-4", "addr", "show", "dev", "lo"]).stdout
    assert pools(seg, ha)["pools"][0]["in_use"] == 1  # type: ignore[index]
    wait_dataplane(seg, ha, lambda d: d["tunnels"] == 1)

    if cap is not None:
        check_capture(cap, pcap, home)

    assert_pings_return(seg, cn, home)

    node.stop()  # SIGTERM: deregisters through the agent, drops the address
    node.wait_for(r"mn\.deregistered code=0", 10)
    node.wait_for(rf"mn\.released home={re.escape(home)}", 10)
    agent.wait_for(rf"visitor\.removed home={re.escape(home)} reason=deregistered", 10)
    wait_dataplane(seg, ha, lambda d: d["tunnels"] == 0)
    assert pools(seg, ha)["pools"][0]["in_use"] == 0  # type: ignore[index]
    assert f"{home}/32" not in seg.run(mn, ["ip", "-4", "addr", "show", "dev", "lo"]).stdout


def check_capture(cap: Process, pcap: Path, home: str) -> None:
    """What crossed the foreign link, as Wireshark's mip dissector reads it: the first request a
    link broadcast from 0.0.0.0 (home 0.0.0.0, NAI), the agent's reply to the link broadcast
    assigning the address, then renewals unicast from the address."""
    fields = ["ip.src", "ip.dst", "mip.type", "mip.code", "mip.homeaddr", "mip.ext.type",
              "_ws.malformed"]  # fmt: skip
    rows = read_capture_until(
        pcap,
        fields,
        lambda rows: any(r["mip.type"] == "1" and r["ip.src"] == home for r in rows),
    )
    cap.stop()
    assert all(not r.get("_ws.malformed") for r in rows), rows
    first = next(r for r in rows if r["mip.type"] == "1")
    assert (first["ip.src"], first["ip.dst"], first["mip.homeaddr"]) == (
        "0.0.0.0", "255.255.255.255", "0.0.0.0"
    ), rows  # fmt: skip
    assert "131" in first["mip.ext.type"].split(","), first  # the NAI
    assigned = next(r for r in rows if r["mip.type"] == "3")
    assert (assigned["ip.src"], assigned["ip.dst"], assigned["mip.code"]) == (
        COA, "255.255.255.255", "0"
    ), rows  # fmt: skip
    assert assigned["mip.homeaddr"] == home
    renewal = next(r for r in rows if r["mip.type"] == "1" and r["ip.src"] == home)
    assert (renewal["ip.dst"], renewal["mip.homeaddr"]) == (COA, home), rows
