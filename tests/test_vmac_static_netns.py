"""A standby with a static role holds the state and forwards nothing (issue 13).

Two ``mobileip homeagent`` daemons with ``[vrrp] driver = "static"`` (a active, b standby),
binding sync, userspace data plane with ``virtual_mac``: without a VRRP speaker the data plane
makes the macvlan ``vrrp.51`` itself and drives its link by role. Mobile nodes register with a.
Checked:

* b holds a route per away binding in table 100 but has no ``ip rule`` and its macvlan is down;
  ARP for a home address is answered once, from a's virtual MAC; while the correspondent's
  stream runs, a tunnels and b tunnels nothing;
* the operator switches the roles (``mobileip role``): b tunnels, a stops;
* a clean stop of both leaves nothing (no macvlan, no rule, no route in table 100, sysctls).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import KEY, SPI, wait_until
from netns import Member, Process, Segment
from test_dataplane_standby_netns import dataplane, ha_config, link_flags
from test_vmac_keepalived_netns import encapsulated, proc_sysctl
from test_vmac_wire_netns import arp_repliers, has_link

from mobileip.config import to_toml
from mobileip.tools.takeover import RECEIVER, SENDER

pytestmark = [
    pytest.mark.root,
    pytest.mark.timeout(180),
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
]

PY = sys.executable
VMAC = "00:00:5e:00:01:33"
VMAC_IF = "vrrp.51"
N = 50
HOME_PREFIX = "10.77.128.0/17"


def config(m: Member, peer: Member, role: str) -> dict[str, Any]:
    cfg = ha_config(m, [peer], 100)
    cfg["vrrp"] = {"driver": "static", "role": role, "vrid": 51}
    return cfg


def role(seg: Segment, m: Member, which: str) -> None:
    res = seg.run(m, [PY, "-m", "mobileip", "role", which, "--control", "127.0.0.1:8434"])
    assert res.returncode == 0, res.stdout + res.stderr


def test_static_standby_holds_state_and_forwards_nothing(seg: Segment, tmp_path: Path) -> None:
    a = seg.add_member("a", "10.77.0.1/16")
    b = seg.add_member("b", "10.77.0.2/16")
    cn = seg.add_member("cn", "10.77.0.10/16")
    far = seg.add_member("far", "10.77.0.20/16")
    procs: dict[str, Process] = {}
    for m, peer, r in ((a, b, "active"), (b, a, "standby")):
        conf = tmp_path / f"{m.name}.toml"
        conf.write_text(to_toml(config(m, peer, r)))
        argv = [PY, "-m", "mobileip", "homeagent", "--config", str(conf)]
        procs[m.name] = seg.spawn(m, argv, f"ha-{m.name}")
    try:
        for m in (a, b):
            procs[m.name].wait_for(r"event=dataplane\.started", 30)
        load = seg.run(
            cn,
            [
                PY, "-m", "mobileip", "loadgen", "--ha", f"{a.ip}:434",
                "--mobile-nodes", str(N), "--requests", str(N), "--max",
                "--spi", str(SPI), "--key", KEY, "--home-prefix", HOME_PREFIX,
                "--home-agent-address", a.ip, "--care-of-address", far.ip,
                "--lifetime", "3600", "--window", "16", "--timeout", "2", "--json",
            ],
            timeout=60,
        )  # fmt: skip
        assert load.returncode == 0, load.stdout + load.stderr
        assert json.loads(load.stdout)["accepted"] == N
        wait_until(lambda: all(dataplane(seg, m)["installed"] == N for m in (a, b)), 20, "routes")
        db = dataplane(seg, b)
        assert not db["active"] and not db["rule_installed"]
        assert "lookup 100" not in seg.run(b, ["ip", "rule"]).stdout
        assert len(seg.run(b, ["ip", "route", "show", "table", "100"]).stdout.splitlines()) == N
        assert "UP" not in link_flags(seg, b, VMAC_IF) and "UP" in link_flags(seg, a, VMAC_IF)
        homes = [f"10.77.128.{2 + i * 5}" for i in range(5)]
        assert arp_repliers(seg, cn, homes[0]) == [VMAC]

        stop = tmp_path / "stop-traffic"  # the sender and the receiver end when it appears
        rx = seg.spawn(far, [PY, "-c", RECEIVER, str(stop)], "receiver")
        rx.wait_for("receiving", 10)
        tx = seg.spawn(cn, [PY, "-c", SENDER, ",".join(homes), "0.01", str(stop)], "sender")
        tx.wait_for("sending", 10)
        time.sleep(1.5)
        ea, eb = encapsulated(dataplane(seg, a)), encapsulated(dataplane(seg, b))
        assert ea > 0 and eb == 0, (ea, eb)  # the standby forwards nothing

        switched = time.monotonic()
        role(seg, a, "standby")
        role(seg, b, "active")
        time.sleep(2.0)
        ea2, eb2 = encapsulated(dataplane(seg, a)), encapsulated(dataplane(seg, b))
        stop.touch()
        got = json.loads(rx.wait_for(r"^RESULT ", 20).text[len("RESULT ") :])
        after = [t for t, _, _ in got if t > switched + 1.0]
        print(
            f"\nstatic roles: a tunnelled {ea} while active, b {eb} while standby; after the "
            f"manual switch b tunnelled {eb2}, a {ea2 - ea} more; {len(after)} arrivals at "
            f"the care-of side from 1 s after the switch"
        )
        assert eb2 > 0 and after
        assert "UP" in link_flags(seg, b, VMAC_IF) and "UP" not in link_flags(seg, a, VMAC_IF)
    except BaseException:
        for p in procs.values():
            print(p.output())
        raise
    for m in (a, b):
        assert procs[m.name].stop(15) == 0, procs[m.name].output()
        assert not has_link(seg, m, VMAC_IF)
        assert "lookup 100" not in seg.run(m, ["ip", "rule"]).stdout
        assert not seg.run(m, ["ip", "route", "show", "table", "100"]).stdout.strip()
        for key in ("arp_ignore", "arp_announce", "medium_id", "proxy_arp"):
            assert proc_sysctl(seg, m, m.ifname, key) == "0", (m.name, key)
