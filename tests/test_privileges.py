"""The daemon keeps only the capabilities it needs once its sockets are open (issue 8)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from helpers import running_homeagent

from mobileip.daemon.privileges import KEEP, capability_sets, keep_mask


@pytest.mark.root
def test_daemon_started_as_root_keeps_three_capabilities(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: only root has capabilities to drop")
    with running_homeagent(tmp_path) as ha:
        client = ha.client()
        assert client.register(60).code == 0  # still serves after dropping
        deadline = time.monotonic() + 5
        while "homeagent.privileges" not in ha.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert 'result="kept CAP_NET_BIND_SERVICE,CAP_NET_ADMIN,CAP_NET_RAW"' in ha.log() or (
            "kept CAP_NET_BIND_SERVICE,CAP_NET_ADMIN,CAP_NET_RAW" in ha.log()
        ), ha.log()
        caps = capability_sets(ha.proc.pid)
        want = keep_mask(KEEP)
        assert caps["CapEff"] == want
        assert caps["CapPrm"] == want
        assert caps["CapInh"] == 0
        assert caps["CapBnd"] == want
        assert caps.get("CapAmb", 0) == 0


def test_drop_privileges_can_be_turned_off(tmp_path: Path) -> None:
    with running_homeagent(tmp_path, homeagent={"drop_privileges": False}) as ha:
        assert ha.client().register(60).code == 0
        assert "homeagent.privileges" not in ha.log()
        if os.geteuid() == 0:
            assert capability_sets(ha.proc.pid)["CapEff"] != keep_mask(KEEP)
