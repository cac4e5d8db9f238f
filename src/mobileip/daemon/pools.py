"""Dynamic home address pools plugged into one daemon (docs/pools.md).

The rules are in :mod:`mobileip.core.pools`; this only wires them: the pools of the config over
the core's binding table (after persistence replaced it), the NAI hint rebuilt at start (a
journal replay filled the table without the core), and ``GET /api/v1/pools``.
"""

from __future__ import annotations

from typing import Any

from mobileip.config.build import address_pools
from mobileip.core.pools import AddressPools
from mobileip.daemon.ports import ServiceHost


def attach_pools(host: ServiceHost) -> AddressPools:
    core = host.core
    pools = AddressPools(address_pools(host.config), core.table)
    core.pools = pools

    async def rebuild() -> None:
        pools.table = core.table
        pools.rebuild()

    def status(request: Any) -> dict[str, object]:
        return pools.status()

    host.startup_hooks.append(rebuild)
    host.control.add_json_route("GET", "/api/v1/pools", status)
    return pools
