"""The kernel tunnel backend in the daemon (collect-metadata ipip/gre devices), in a namespace.

Marked ``kernel``: where the host kernel lacks ipip and gre (as on our machines) it runs inside
User-Mode Linux through tests/test_uml_tier.py; a skip in CI (no UML, no tunnel modules) fails
the session (the kernel tier's guard, not the root one).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from netns import Segment
from test_dataplane_netns import FAR, HA, HOME, kernel_homeagent, register, wait_dataplane

pytestmark = pytest.mark.kernel


def test_kernel_backend(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    with Segment() as seg:
        ha = seg.add_member("ha", f"{HA}/24")
        far = seg.add_member("far", f"{FAR}/24")
        daemon = kernel_homeagent(seg, ha, tmp_path)
        register(seg, far, FAR)
        wait_dataplane(seg, ha, lambda d: d["tunnels"] == 1)
        # one encap route in the service's table through the one collect-metadata device
        routes = seg.run(ha, ["ip", "route", "show", "table", "all", "proto", "77"]).stdout
        route = " ".join(line for line in routes.splitlines() if line.startswith(f"{HOME} "))
        assert "encap ip" in route and f"dst {FAR}" in route and "dev mip-ipip" in route, routes
        register(seg, far, HOME, lifetime=0)
        wait_dataplane(seg, ha, lambda d: d["tunnels"] == 0)
        routes = seg.run(ha, ["ip", "route", "show", "table", "all", "proto", "77"]).stdout
        assert HOME not in routes, routes
        # a clean stop removes the two devices (and with them any route or filter through
        # them); the modules' per-namespace fallback devices (tunl0, gre0, ...) stay
        assert daemon.stop() is not None
        names = [
            line.split(": ")[1] for line in seg.run(ha, ["ip", "-o", "link"]).stdout.splitlines()
        ]
        assert not [name for name in names if name.startswith("mip")], names
        assert seg.run(ha, ["ip", "route", "show", "table", "all", "proto", "77"]).stdout == ""
