"""Dynamic home address pools plugged into one daemon (docs/pools.md).

The rules are in :mod:`mobileip.core.pools`; this only wires them: the pools of the config over
the core's binding table (after persistence replaced it), the NAI hint rebuilt at start (a
journal replay filled the table without the core), ``GET /api/v1/pools``, and a reload (SIGHUP,
``POST /api/v1/reload``) that swaps in the config's new ``[[pool]]`` sections (a daemon started
without pools needs a restart to get its first one), and the end of an NAI's second live
address: when the table holds one NAI live on two addresses (two members assigned while they
did not see each other), the active member ends the one that does not prevail
(``AddressPools.losers``) as the operator's ``clear binding`` would: a replicated tombstone.
"""

from __future__ import annotations

import asyncio
import time
from ipaddress import IPv4Address
from typing import TYPE_CHECKING, Any

from mobileip.config import Config, GroupConfig
from mobileip.config.build import address_pools
from mobileip.core.pools import AddressPools
from mobileip.daemon.ports import EventHost

if TYPE_CHECKING:
    from mobileip.daemon.roles import Role, RoleService


def attach_pools(host: EventHost, roles: RoleService | None = None) -> AddressPools:
    core = host.core
    pools = AddressPools(address_pools(host.config), core.table)
    core.pools = pools
    scheduled = False

    def end_losers() -> None:
        """On the active member (every member without roles): end each NAI's second live
        address that does not prevail, as a replicated tombstone keeping the NAI."""
        nonlocal scheduled
        scheduled = False
        if roles is not None and roles.driver.role.value != "active":
            return  # the active member does it; a takeover runs this again
        for address in pools.losers():
            home = IPv4Address(address)
            rec = core.table.get(address)
            now = time.monotonic()
            events = core.administrative_deregister(home, now)
            if not events:
                continue
            host.log.info(
                "pools.duplicate_ended",
                home=home,
                nai=rec.nai.decode("utf-8", "replace") if rec is not None else "-",
                reason="its NAI holds another live address",
            )
            host.publish(events, now)
            host.reschedule_expiry()
            for hook in host.cleared_hooks:  # RFC 3543: revoke at the foreign agent
                hook(home, "pool-duplicate")

    def loser_found() -> None:
        nonlocal scheduled
        if scheduled:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # not serving yet: the rebuild at start runs it
        scheduled = True
        loop.call_soon(end_losers)  # not inside the sync engine's event dispatch

    pools.on_loser = loser_found

    def on_role(role: Role, reason: str) -> None:
        if role.value == "active":
            loser_found()

    if roles is not None:
        roles.driver.callbacks.append(on_role)

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
        if pools.losers():  # a journal replay may hold both addresses of one NAI
            loser_found()

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
