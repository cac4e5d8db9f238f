"""daemon/pools.py: the active member ends an NAI's second live address (docs/pools.md, "One NAI
on two addresses"), in process, without sockets: the records of two members meet in the table
as a peer's update would bring them; a standby waits for its takeover."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from ipaddress import IPv4Address
from types import SimpleNamespace
from typing import Any

from helpers import homeagent_config

from mobileip.config import parse_config, to_toml
from mobileip.core.bindings import Binding, MobilityRecord
from mobileip.core.homeagent import BindingChanged, Event
from mobileip.core.pools import prevails
from mobileip.daemon.homeagent import HomeAgentDaemon
from mobileip.daemon.pools import attach_pools
from mobileip.daemon.roles import Role
from mobileip.log import Logger
from mobileip.web.control import ControlServer

NAI = b"alice@pool.test"
A1, A2 = int(IPv4Address("10.9.0.1")), int(IPv4Address("10.9.0.7"))


def _daemon() -> HomeAgentDaemon:
    raw = homeagent_config()
    raw["security_association"].append(
        {"spi": 600, "key": "77" * 16, "nai": "*@pool.test", "pool": "p"}
    )
    raw["pool"] = [{"name": "p", "network": "10.9.0.0/24"}]
    config = parse_config(to_toml(raw))
    return HomeAgentDaemon(config, ControlServer(config.control), Logger(level="error"))


def _live(home: int, version: int, now: float) -> MobilityRecord:
    binding = Binding(int(IPv4Address("192.0.2.9")), 600, now + 600, 0)
    return MobilityRecord(home, version, 1, int(IPv4Address("10.1.0.1")), (binding,), 0.0, NAI)


def _run(role: Role | None) -> None:
    async def main() -> None:
        daemon = _daemon()
        roles: Any = None
        if role is not None:
            roles = SimpleNamespace(driver=SimpleNamespace(role=role, callbacks=[]))
        pools = attach_pools(daemon, roles)
        published: list[Event] = []
        revoked: list[tuple[IPv4Address, str]] = []

        def subscriber(batch: Sequence[Event], now: float) -> None:
            published.extend(batch)

        daemon.subscribers.append(subscriber)
        daemon.cleared_hooks.append(lambda home, by: revoked.append((home, by)))
        now = asyncio.get_running_loop().time()
        # two members each gave alice an address; both records arrive here (a peer's update)
        r1, r2 = _live(A1, 7 << 32 | 1, now), _live(A2, 7 << 32 | 2, now)
        daemon.core.table.store(r1, now)
        daemon.core.table.store(r2, now)
        pools.refresh([A1, A2])
        loser, winner = (A2, A1) if prevails(r1, r2) else (A1, A2)
        assert loser == A1  # the higher version (origin 2) prevails
        await asyncio.sleep(0.01)
        if role is Role.STANDBY:
            assert published == [] and daemon.core.table.is_live(loser)
            roles.driver.role = Role.ACTIVE  # a takeover
            for callback in roles.driver.callbacks:
                callback(Role.ACTIVE, "test")
            await asyncio.sleep(0.01)
        assert not daemon.core.table.is_live(loser) and daemon.core.table.is_live(winner)
        ended = daemon.core.table.get(loser)
        assert ended is not None and ended.nai == NAI and ended.version > r1.version
        assert [
            (type(e), e.deregistration) for e in published if isinstance(e, BindingChanged)
        ] == [(BindingChanged, True)]
        assert revoked == [(IPv4Address(loser), "pool-duplicate")]
        assert pools.losers() == []

    asyncio.run(main())


def test_the_active_member_ends_the_second_address() -> None:
    _run(Role.ACTIVE)


def test_without_roles_every_member_ends_it() -> None:
    _run(None)


def test_a_standby_leaves_it_to_the_active_and_ends_it_on_its_takeover() -> None:
    _run(Role.STANDBY)
