"""RFC 4433 dynamic Home Agent assignment plugged into one daemon (or one group of several).

The rules are in :mod:`mobileip.core.dynamic_ha`; this only wires them: which address is handed
out, the load limit, and ``GET /api/v1/dynamic_ha`` (its load, peers and counters).
"""

from __future__ import annotations

from typing import Any

from mobileip.config import DynamicHaConfig
from mobileip.core.dynamic_ha import DynamicAssignment, DynamicHaSettings
from mobileip.daemon.ports import ServiceHost


def attach_dynamic_ha(host: ServiceHost, cfg: DynamicHaConfig) -> DynamicAssignment:
    """Dynamic assignment for ``host``'s binding set: it hands out its virtual address (else
    its own) and redirects above ``redirect_above`` of ``max_bindings``."""
    ha = host.config.homeagent
    vrrp = host.config.vrrp
    assigned = vrrp.virtual_address.ip if vrrp and vrrp.virtual_address else ha.address
    settings = DynamicHaSettings(assigned, ha.max_bindings, cfg.redirect_above, cfg.peers)
    core = host.core
    dynamic = DynamicAssignment(settings, core.settings.our_addresses())
    core.dynamic = dynamic

    def status(request: Any) -> dict[str, object]:
        return dynamic.status(len(core.table))

    host.control.add_json_route("GET", "/api/v1/dynamic_ha", status)
    return dynamic
