"""``Config``, the whole file, and ``GroupConfig``, one ``[[group]]`` of it.

The section dataclasses live in their sections' modules; this one only ties them together.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address

from mobileip.config.control import ControlConfig
from mobileip.config.dataplane import DataplaneConfig
from mobileip.config.dynamic_ha import DynamicHaConfig
from mobileip.config.homeagent import HomeAgentConfig
from mobileip.config.persistence import PersistenceConfig
from mobileip.config.pools import PoolConfig
from mobileip.config.redundancy import RedundancyConfig
from mobileip.config.revocation import RevocationConfig
from mobileip.config.security import SecurityAssociationConfig
from mobileip.config.vrrp import VrrpConfig


@dataclass(frozen=True, slots=True)
class Config:
    path: str
    homeagent: HomeAgentConfig
    security_associations: tuple[SecurityAssociationConfig, ...]
    control: ControlConfig
    redundancy: RedundancyConfig | None = None
    vrrp: VrrpConfig | None = None
    dataplane: DataplaneConfig | None = None
    persistence: PersistenceConfig | None = None
    dynamic_ha: DynamicHaConfig | None = None
    revocation: RevocationConfig | None = None  # RFC 3543 (docs/revocation.md)
    pools: tuple[PoolConfig, ...] = ()  # [[pool]]: dynamic home addresses (docs/pools.md)
    # [[group]]: several binding sets in one daemon (docs/load-sharing.md); each is a whole
    # single-group Config sharing this file's [homeagent] socket, [control] and SAs
    groups: tuple[GroupConfig, ...] = ()


@dataclass(frozen=True, slots=True)
class GroupConfig:
    name: str
    config: Config

    @property
    def address(self) -> IPv4Address:
        """The group's own address: its virtual address, else its [homeagent] address."""
        vrrp = self.config.vrrp
        if vrrp is not None and vrrp.virtual_address is not None:
            return vrrp.virtual_address.ip
        return self.config.homeagent.address
