"""The virtual MAC's macvlan and sysctls after SIGKILL: a restart cleans up, a clean stop leaves
the system as it was before the first run (issue 13's caveat; in a namespace).

The macvlan's owner (the native VRRP speaker, or the data plane with the static driver) sets
``arp_ignore``, ``arp_announce`` and ``medium_id`` on the base interface and ``disable_ipv6``,
``arp_ignore``, ``rp_filter``, ``medium_id`` on the macvlan (net/vmac.py ``ensure``). A SIGKILL
left them and the macvlan as they were, and the next run took the killed run's values for the
originals: even its clean stop left ``arp_ignore=1``, ``arp_announce=2``, ``medium_id=1`` on the
base, and with the static driver the macvlan itself (adopted, so never deleted). Now the
originals are kept in ``/run/mobileip`` until put back, and a macvlan a killed run of ours made
is deleted and made anew at the next start.

Checked for the native and the static driver: SIGKILL leaves the changed values and the macvlan
(nobody put them back); SIGKILL once more after a restart; the third run replaces the killed
run's macvlan (another interface index, down on a standby) and its clean stop leaves the base's
original values (non-default ones, set before the first run), no macvlan and no record file.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Any

import pytest
from netns import Member, Process, Segment
from test_dataplane_standby_netns import VMAC, VRID, ha_config

from mobileip.config import to_toml

pytestmark = [pytest.mark.root, pytest.mark.timeout(180)]

PY = sys.executable
NETNS_ID = "from mobileip.net.sysctls import netns_id; print(netns_id())"
VMAC_IF = f"vrrp.{VRID}"
# the base interface's originals before the first run: none equal to what the owner sets, and
# not all the kernel's defaults (a clean stop must put these back, not the defaults)
ORIGINAL = {"arp_ignore": "2", "arp_announce": "1", "medium_id": "7"}
SET_BY_US = {"arp_ignore": "1", "arp_announce": "2", "medium_id": "1"}


def config(m: Member, driver: str) -> dict[str, Any]:
    """The standby test's member (native VRRP, userspace data plane with the virtual MAC), alone:
    no peers to sync with; with ``static`` it is active by configuration."""
    cfg = ha_config(m, [], 200)
    del cfg["redundancy"]
    if driver == "static":
        cfg["vrrp"] = {"driver": "static", "role": "active", "vrid": VRID}
    return cfg


def base_sysctls(seg: Segment, m: Member) -> dict[str, str]:
    out = {}
    for key in ORIGINAL:
        res = seg.run(m, ["cat", f"/proc/sys/net/ipv4/conf/{m.ifname}/{key}"])
        assert res.returncode == 0, res.stderr
        out[key] = res.stdout.strip()
    return out


def vmac_state(seg: Segment, m: Member) -> tuple[int, str, bool] | None:
    """The macvlan's (interface index, MAC, up), or None when there is none."""
    res = seg.run(
        m, ["cat", *(f"/sys/class/net/{VMAC_IF}/{f}" for f in ("ifindex", "address", "flags"))]
    )
    if res.returncode != 0:
        return None
    index, mac, flags = res.stdout.split()
    return int(index), mac, bool(int(flags, 16) & 1)


def records(seg: Segment, m: Member) -> list[str]:
    """This namespace's record files in /run/mobileip (the data plane's and the macvlan's)."""
    netns = seg.run(m, [PY, "-c", NETNS_ID]).stdout.strip()
    assert netns
    listing = seg.run(m, ["sh", "-c", "ls /run/mobileip 2>/dev/null || true"]).stdout.split()
    return [f for f in listing if f"net{netns}-" in f]


def start(seg: Segment, m: Member, argv: list[str], label: str, driver: str) -> Process:
    p = seg.spawn(m, argv, label)
    p.wait_for(r"event=dataplane\.started", 20)
    if driver == "native":
        p.wait_for(r"event=role\.changed role=active", 20)
    return p


@pytest.mark.parametrize("driver", ["native", "static"])
def test_sigkill_twice_then_clean_stop_leaves_no_macvlan_and_the_original_sysctls(
    seg: Segment, tmp_path: Path, driver: str
) -> None:
    ha = seg.add_member("ha", "10.77.0.1/16")
    for key, value in ORIGINAL.items():
        path = f"/proc/sys/net/ipv4/conf/{ha.ifname}/{key}"
        assert seg.run(ha, ["sh", "-c", f"echo {value} > {path}"]).returncode == 0
    assert base_sysctls(seg, ha) == ORIGINAL
    assert vmac_state(seg, ha) is None and not records(seg, ha)
    conf = tmp_path / "ha.toml"
    conf.write_text(to_toml(config(ha, driver)))
    argv = [PY, "-m", "mobileip", "homeagent", "--config", str(conf)]
    procs: list[Process] = []
    try:
        indexes = []
        for run in (1, 2):
            p = start(seg, ha, argv, f"ha-{run}", driver)
            procs.append(p)
            state = vmac_state(seg, ha)
            assert state is not None and state[1] == VMAC and state[2], state  # up: active
            indexes.append(state[0])
            assert base_sysctls(seg, ha) == SET_BY_US
            assert records(seg, ha), "no record of the originals"
            p.signal(signal.SIGKILL)
            p.popen.wait(10)
            # nobody put anything back: the killed run's macvlan and values stay
            assert vmac_state(seg, ha) == state
            assert base_sysctls(seg, ha) == SET_BY_US
        # each start replaced the killed run's macvlan with a fresh one
        assert indexes[1] != indexes[0]

        last = start(seg, ha, argv, "ha-3", driver)
        procs.append(last)
        state = vmac_state(seg, ha)
        assert state is not None and state[0] not in indexes, (state, indexes)
        assert base_sysctls(seg, ha) == SET_BY_US
        for key in ("arp_ignore", "medium_id"):
            res = seg.run(ha, ["cat", f"/proc/sys/net/ipv4/conf/{VMAC_IF}/{key}"])
            assert res.stdout.strip() == "1", (key, res.stdout)
        assert last.stop(15) == 0, last.output()
    except BaseException:
        for p in procs:
            print(p.output())
        raise
    assert vmac_state(seg, ha) is None, "the macvlan outlived the clean stop"
    assert base_sysctls(seg, ha) == ORIGINAL
    assert not records(seg, ha), records(seg, ha)
