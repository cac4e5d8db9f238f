"""Dynamic home address pools plugged into one daemon (docs/pools.md).

The rules are in :mod:`mobileip.core.pools`; this only wires them: the pools of the config over
the core's binding table (after persistence replaced it), the NAI hint rebuilt at start (a
journal replay filled the table without the core), ``GET /api/v1/pools``, and a reload (SIGHUP,
``POST /api/v1/reload``) that swaps in the config's new ``[[pool]]`` sections (a daemon started
without pools needs a restart to get its first one).
"""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import Any

from mobileip.config import Config, GroupConfig
from mobileip.config.build import address_pools
from mobileip.core.pools import AddressPools
from mobileip.daemon.ports import ServiceHost


def attach_pools(host: ServiceHost) -> AddressPools:
    core = host.core
    pools = AddressPools(address_pools(host.config), core.table)
    core.pools = pools

    def static(address: int) -> bool:
        """Whether some SA covers ``address`` as a static home address."""
        home = IPv4Address(address)
        return any(
            home in net for sa in host.config.security_associations for net in sa.home_addresses
        )

    async def rebuild() -> None:
        pools.table = core.table
        pools.rebuild()
        retired = pools.retire_orphans(static)  # a shrink before a restart: kept till they end
        if retired:
            host.log.info("pools.retired", addresses=retired, reason="outside every pool")

    def status(request: Any) -> dict[str, object]:
        return pools.status()

    def reload(config: Config) -> tuple[str, ...]:
        whole = config
        if config.groups:  # a group's own /api/v1/reload read the whole file: take its part
            mine = GroupConfig("", host.config).address
            found = [g.config for g in config.groups if g.address == mine]
            if not found:
                host.log.warning("pools.reload_skipped", reason=f"no group has address {mine}")
                return ()
            config = found[0]
        changes = pools.reconfigure(address_pools(config))
        host.log.info(
            "pools.reloaded",
            pools=len(config.pools),
            added=",".join(changes["added"]) or "-",
            removed=",".join(changes["removed"]) or "-",
            changed=",".join(changes["changed"]) or "-",
            retired=len(pools.retired),
        )
        # the fields applied, as the reloaded config names them (a group's are not the file's)
        return () if whole.groups else ("pools",)

    host.startup_hooks.append(rebuild)
    host.config_hooks.append(reload)
    host.control.add_json_route("GET", "/api/v1/pools", status)
    return pools
