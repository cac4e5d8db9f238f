"""Building the core's objects from a :class:`Config`: settings and security associations."""

from __future__ import annotations

from ipaddress import IPv4Address

from mobileip.config.model import Config
from mobileip.core.homeagent import HomeAgentSettings
from mobileip.core.pools import AddressPool
from mobileip.core.security import SecurityAssociation, SecurityAssociations


def home_agent_settings(config: Config) -> HomeAgentSettings:
    """The core's settings: the VRRP virtual address is also ours, node id from [redundancy]."""
    ha = config.homeagent
    extra: set[IPv4Address] = set()
    if config.vrrp is not None and config.vrrp.virtual_address is not None:
        extra.add(config.vrrp.virtual_address.ip)
    node_id = int(config.redundancy.node_id) if config.redundancy is not None else 0
    return HomeAgentSettings(
        address=ha.address,
        max_lifetime=ha.max_lifetime,
        replay=ha.replay,
        replay_window=ha.replay_window,
        max_bindings=ha.max_bindings,
        max_simultaneous=ha.max_simultaneous,
        extra_addresses=frozenset(extra - {ha.address}),
        node_id=node_id,
    )


def security_associations(config: Config) -> SecurityAssociations:
    return SecurityAssociations(
        SecurityAssociation(
            sa.spi,
            sa.algorithm,
            sa.key,
            sa.home_addresses,
            sa.nai.encode() if sa.nai is not None else None,
            sa.pool,
        )
        for sa in config.security_associations
    )


def address_pools(config: Config) -> list[AddressPool]:
    """The ``[[pool]]`` sections, less the Home Agent's own and virtual addresses."""
    ours = {config.homeagent.address}
    if config.vrrp is not None and config.vrrp.virtual_address is not None:
        ours.add(config.vrrp.virtual_address.ip)
    return [
        AddressPool(
            p.name, int(p.first), int(p.last), frozenset(int(a) for a in (*p.exclude, *ours))
        )
        for p in config.pools
    ]


def build_core_settings(config: Config) -> tuple[HomeAgentSettings, SecurityAssociations]:
    """Everything :class:`~mobileip.core.homeagent.HomeAgentCore` needs from the config."""
    return home_agent_settings(config), security_associations(config)
