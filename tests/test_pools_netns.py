"""Our own mobile node gets a dynamic home address from the real Home Agent (namespaces).

``mobileip mobilenode`` with an NAI and no home address registers straight with the Home Agent
(co-located care-of address, D flag); the reply assigns an address from the HA's ``[[pool]]``;
the mobile node takes it (on ``lo``) and renews with it; the correspondent on the home link
pings the assigned address through the Home Agent's tunnel; on SIGTERM the mobile node
deregisters, the address goes back to the pool and off the mobile node's ``lo``. Before that, the
address is made another NAI's: the mobile node's renewal is refused 129, it takes the address
off ``lo`` and gets another one.
"""

from __future__ import annotations

import json
import re
import signal
import sys
import time
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest
from netns import Member, Process, Segment, segment_fixture  # noqa: F401
from test_dataplane_netns import (
    CN,
    FETCH,
    HA,
    add_ha_and_cn,
    assert_pings_return,
    ha_config,
    start_homeagent,
    wait_dataplane,
)

from mobileip.config import to_toml

pytestmark = pytest.mark.root

PY = sys.executable
POOL = "10.77.0.128/28"
NAI_SPI, NAI_KEY = 700, "99" * 16
BOB = f"""
import sys
from ipaddress import IPv4Address as A
from mobileip.agents.client import MobileNode, RegistrationClient
from mobileip.core.security import SecurityAssociation
sa = SecurityAssociation({NAI_SPI}, "hmac-md5", bytes.fromhex("{NAI_KEY}"), ())
mn = MobileNode(A(sys.argv[1]), A("{CN}"), A("{HA}"), sa, nai=b"bob@pool.test")
with RegistrationClient(mn, ("{HA}", 434), timeout=0.5) as c:
    print("code", c.register(600).code)
"""


def pools(seg: Segment, ha: object) -> dict[str, object]:
    out = seg.run(ha, [PY, "-c", FETCH, "/api/v1/pools"])  # type: ignore[arg-type]
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert isinstance(data, dict)
    return data


def start_pool_ha(seg: Segment, ha: Member, tmp_path: Path) -> Process:
    """``mobileip homeagent`` on ``ha`` with the pool ``home-link`` (POOL) for NAIs *@pool.test
    (NAI_SPI); returns once its data plane started."""
    cfg = ha_config(ha)
    cfg["security_association"].append(
        {"spi": NAI_SPI, "key": NAI_KEY, "nai": "*@pool.test", "pool": "home-link"}
    )
    cfg["pool"] = [{"name": "home-link", "network": POOL}]
    return start_homeagent(seg, ha, tmp_path, cfg)


def test_mobile_node_learns_its_address_from_the_reply(
    segment_fixture: Segment,  # noqa: F811
    tmp_path: Path,
) -> None:
    seg = segment_fixture
    ha, cn = add_ha_and_cn(seg)
    mn = seg.add_member("mn", "10.77.0.50/24")  # the co-located care-of address
    seg.run(mn, ["sysctl", "-q", "-w", "net.ipv4.conf.all.arp_ignore=1"])  # the HA proxies
    start_pool_ha(seg, ha, tmp_path)
    mn_conf = tmp_path / "mn.toml"
    mn_conf.write_text(
        to_toml(
            {
                "mobilenode": {
                    "interface": mn.ifname,
                    "nai": "alice@pool.test",
                    "home_agent": HA,
                    "home_network": "10.77.0.0/24",
                    "spi": NAI_SPI,
                    "key": NAI_KEY,
                    "lifetime": 4,  # renewed every second: renewals carry the assigned address
                    "colocated_care_of_address": "10.77.0.50",
                    "manage_routes": False,
                }
            }
        )
    )
    node = seg.spawn(mn, [PY, "-m", "mobileip", "mobilenode", "--config", str(mn_conf)], "mn")
    assigned = node.wait_for(r"mn\.assigned home=(\S+)", 15).text
    home = re.search(r"home=(\S+)", assigned).group(1)  # type: ignore[union-attr]
    assert IPv4Address(home) in IPv4Network(POOL)
    assert IPv4Address(home) != IPv4Network(POOL).network_address
    node.wait_for(rf"mn\.registered .*home={re.escape(home)}", 10)
    # the renewal (lifetime 4 s: renewed after 1) carries the assigned address, not 0.0.0.0
    node.wait_for(rf"mn\.registered .*home={re.escape(home)}", 10)
    assert node.output().count("mn.assigned") == 1
    status = pools(seg, ha)
    assert status["pools"][0]["in_use"] == 1  # type: ignore[index]
    assert f"{home}/32" in seg.run(mn, ["ip", "-4", "addr", "show", "dev", "lo"]).stdout
    wait_dataplane(seg, ha, lambda d: d["tunnels"] == 1)
    assert_pings_return(seg, cn, home)

    # the address becomes another NAI's (the mobile node paused meanwhile: the operator clears
    # its binding, bob registers the freed address): alice's next renewal is refused 129, and
    # she gives the address up (off lo) and gets another one
    node.signal(signal.SIGSTOP)
    try:
        cleared = seg.run(ha, [PY, "-m", "mobileip", "clear", "binding", home,
                               "--control", "127.0.0.1:8434"])  # fmt: skip
        assert cleared.returncode == 0, cleared.stdout + cleared.stderr
        bob = seg.run(cn, [PY, "-c", BOB, home])
        assert bob.stdout.strip() == "code 0", bob.stdout + bob.stderr
    finally:
        since = time.monotonic()
        node.signal(signal.SIGCONT)
    node.wait_for(rf"mn\.released home={re.escape(home)}", 10, since=since)
    node.wait_for(r"mn\.denied code=129", 10, since=since)
    again = node.wait_for(r"mn\.assigned home=(\S+)", 10, since=since).text
    old, home = home, re.search(r"home=(\S+)", again).group(1)  # type: ignore[union-attr]
    assert home != old and IPv4Address(home) in IPv4Network(POOL)
    lo = seg.run(mn, ["ip", "-4", "addr", "show", "dev", "lo"]).stdout
    assert f"{home}/32" in lo and f"{old}/32" not in lo
    node.wait_for(rf"mn\.registered .*home={re.escape(home)}", 10, since=since)

    node.stop()  # SIGTERM: deregisters on the way out
    node.wait_for(r"mn\.deregistered code=0", 10)
    # the address went back to the pool: the mobile node takes it off lo (mn.released)
    node.wait_for(rf"mn\.released home={re.escape(home)}", 10)
    assert f"{home}/32" not in seg.run(mn, ["ip", "-4", "addr", "show", "dev", "lo"]).stdout
    wait_dataplane(seg, ha, lambda d: d["tunnels"] == 1)  # bob's
    assert pools(seg, ha)["pools"][0]["in_use"] == 1  # type: ignore[index]
