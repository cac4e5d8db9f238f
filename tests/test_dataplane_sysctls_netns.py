"""The data plane's sysctls come back after SIGKILL + restart + clean stop (in a namespace).

The data plane sets ``ip_forward`` and, on the home interface, ``forwarding``, ``proxy_arp`` and
``proxy_delay``; a clean stop writes back what it found. A restart after SIGKILL used to find
the killed run's values and "restore" those. The originals are now kept in a file
(dataplane/sysctl_state.py) until they are put back.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest
from netns import Member, Segment, segment_fixture  # noqa: F401
from test_dataplane_netns import HA, ha_config

from mobileip.config import to_toml

pytestmark = pytest.mark.root

PY = sys.executable
NETNS_ID = "from mobileip.net.sysctls import netns_id; print(netns_id())"


def _paths(member: Member) -> list[str]:
    name = member.ifname
    return [
        "net/ipv4/ip_forward",
        f"net/ipv4/conf/{name}/forwarding",
        f"net/ipv4/conf/{name}/proxy_arp",
        f"net/ipv4/neigh/{name}/proxy_delay",
    ]


def _read(seg: Segment, member: Member) -> dict[str, str]:
    out = {}
    for path in _paths(member):
        res = seg.run(member, ["cat", f"/proc/sys/{path}"])
        assert res.returncode == 0, res.stderr
        out[path] = res.stdout.strip()
    return out


def test_sigkill_then_restart_then_clean_stop_leaves_the_original_values(
    segment_fixture: Segment,  # noqa: F811
    tmp_path: Path,
) -> None:
    seg = segment_fixture
    ha = seg.add_member("ha", f"{HA}/24")
    name = ha.ifname
    # originals that differ from what the data plane sets (a fresh namespace's defaults may not)
    for path, value in (("net/ipv4/ip_forward", "0"), (f"net/ipv4/neigh/{name}/proxy_delay", "37")):
        assert seg.run(ha, ["sh", "-c", f"echo {value} > /proc/sys/{path}"]).returncode == 0
    original = _read(seg, ha)
    assert original[f"net/ipv4/conf/{name}/proxy_arp"] == "0"
    conf = tmp_path / "ha.toml"
    conf.write_text(to_toml(ha_config(ha)))
    argv = [PY, "-m", "mobileip", "homeagent", "--config", str(conf)]

    first = seg.spawn(ha, argv, "ha-1")
    first.wait_for(r"dataplane.started", 15)
    changed = _read(seg, ha)
    assert changed["net/ipv4/ip_forward"] == "1"
    assert changed[f"net/ipv4/conf/{name}/proxy_arp"] == "1"
    assert changed[f"net/ipv4/neigh/{name}/proxy_delay"] == "0"
    first.signal(signal.SIGKILL)
    first.popen.wait(10)
    assert _read(seg, ha) == changed  # nobody put them back

    second = seg.spawn(ha, argv, "ha-2")
    started = second.wait_for(r"dataplane.started", 15).text
    assert "sysctls_inherited=" in started and "sysctls_inherited=0" not in started, started
    assert _read(seg, ha) == changed
    assert second.stop(10) == 0
    assert _read(seg, ha) == original
    leftovers = seg.run(ha, ["sh", "-c", "ls /run/mobileip 2>/dev/null || true"]).stdout
    netns = seg.run(ha, [PY, "-c", NETNS_ID]).stdout.strip()
    assert netns and f"net{netns}-" not in leftovers  # the record went with the restore
