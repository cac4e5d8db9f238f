"""A dynamic home address survives SIGKILL of the active Home Agent (namespaces, native VRRP).

Two ``mobileip homeagent`` members share a virtual address; ``mobileip mobilenode`` (NAI, no home
address, co-located care-of address) registers through it and gets a pool address from the
active. The active is killed (SIGKILL); the standby takes the virtual address, and the mobile
node's next renewal, with the assigned address, is accepted by it: no new assignment, no 129,
the new active's pool shows the address in use. (Cisco's Home Agent does not synchronise
dynamic address state; its mobile nodes re-request after a takeover.)
"""

from __future__ import annotations

import re
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import wait_until
from netns import Member, Segment
from test_failover_netns import ACTIVE, VIP, Group

from mobileip.config import to_toml

pytestmark = [pytest.mark.root, pytest.mark.timeout(90)]

POOL = "10.9.0.0/28"
NAI_SPI, NAI_KEY = 700, "99" * 16


class PoolGroup(Group):
    def config(self, m: Member, vrrp: dict[str, Any]) -> dict[str, Any]:
        cfg = super().config(m, vrrp)
        cfg["security_association"].append(
            {"spi": NAI_SPI, "key": NAI_KEY, "nai": "*@pool.test", "pool": "p"}
        )
        cfg["pool"] = [{"name": "p", "network": POOL}]
        return cfg


def test_dynamic_address_survives_sigkill_of_the_active(seg: Segment, tmp_path: Path) -> None:
    g = PoolGroup(seg, tmp_path, ["a", "b"])
    pa = g.start_native("a", 200)
    pb = g.start_native("b", 100)
    node = None
    try:
        pa.wait_for(ACTIVE, 20)
        wait_until(lambda: g.owners() == ["a"], 15, "a (priority 200) to own the address")
        conf = tmp_path / "mn.toml"
        conf.write_text(
            to_toml(
                {
                    "mobilenode": {
                        "interface": g.mn.ifname,
                        "nai": "alice@pool.test",
                        "home_agent": VIP,
                        "home_network": POOL,
                        "spi": NAI_SPI,
                        "key": NAI_KEY,
                        "lifetime": 4,  # renewed every second (max(1, 4 - 3))
                        "colocated_care_of_address": "10.77.0.50",
                        "manage_routes": False,
                    }
                }
            )
        )
        argv = [sys.executable, "-m", "mobileip", "mobilenode", "--config", str(conf)]
        node = seg.spawn(g.mn, argv, "mn")
        line = node.wait_for(r"mn\.assigned home=(\S+)", 20).text
        home = re.search(r"home=(\S+)", line).group(1)  # type: ignore[union-attr]
        node.wait_for(rf"mn\.registered .*home={re.escape(home)}", 10)
        wait_until(
            lambda: home in {r["home_address"] for r in g.cli("b", "show", "bindings", "--json")},
            10,
            "the assignment on the standby",
        )

        killed = time.monotonic()
        pa.signal(signal.SIGKILL)
        pb.wait_for(ACTIVE, 10, since=killed)
        wait_until(lambda: g.owners(["b"]) == ["b"], 5, "b to own the address")
        # renewals after the takeover: the same address, answered by b
        renewed = node.wait_for(rf"mn\.registered .*home={re.escape(home)}", 15, since=killed)
        again = node.wait_for(rf"mn\.registered .*home={re.escape(home)}", 10, since=renewed.at)
        print(
            f"\nfirst renewal after SIGKILL of the active: {renewed.at - killed:.2f} s "
            f"(renewals every second), next {again.at - renewed.at:.2f} s later"
        )
        out = "\n".join(ln.text for ln in node.lines)
        assert out.count("mn.assigned") == 1, out  # never re-requested
        assert "mn.denied" not in out, out
        rows = g.cli("b", "show", "bindings", "--json")
        assert [r["home_address"] for r in rows] == [home]
    except BaseException:
        print(g.dump())
        if node is not None:
            print(node.output())
        raise
