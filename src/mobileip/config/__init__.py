"""The configuration file: one TOML file loaded into frozen dataclasses.

Every problem is a :class:`ConfigError` whose message names the file, the key (dotted, with a
0-based index for arrays of tables, e.g. ``security_association[1].key``), the line in the file and
what is wrong. Unknown keys are errors too. docs/configuration.md documents every key.

One module per section, each with its dataclass and ``parse_<section>``:

=====================  ============================================================
``homeagent``          ``[homeagent]`` (required)
``security``           ``[[security_association]]`` (at least one)
``control``            ``[control]``
``redundancy``         ``[redundancy]`` (with its key rollover)
``vrrp``               ``[vrrp]``
``dataplane``          ``[dataplane]``
``persistence``        ``[persistence]``
``dynamic_ha``         ``[dynamic_ha]``
``groups``             ``[[group]]`` (each a whole :class:`Config`)
=====================  ============================================================

and around them: ``errors`` (:class:`ConfigError`, the line locator, typed getters: every
section module imports it), ``model`` (:class:`Config`, :class:`GroupConfig`), ``load``
(:func:`load_config`, :func:`parse_config`), ``build`` (the core's settings) and ``write``
(:func:`to_toml`). Import from this package, not from the modules: the names below are the API.
"""

from __future__ import annotations

from mobileip.config.build import build_core_settings, home_agent_settings, security_associations
from mobileip.config.control import ControlConfig
from mobileip.config.dataplane import DataplaneConfig
from mobileip.config.dynamic_ha import DynamicHaConfig
from mobileip.config.errors import ConfigError
from mobileip.config.homeagent import ANY_ADDRESS, HomeAgentConfig
from mobileip.config.load import load_config, parse_config
from mobileip.config.model import Config, GroupConfig
from mobileip.config.persistence import PersistenceConfig
from mobileip.config.redundancy import Peer, RedundancyConfig
from mobileip.config.revocation import RevocationConfig, RevocationPeerConfig
from mobileip.config.security import SecurityAssociationConfig
from mobileip.config.vrrp import VrrpConfig
from mobileip.config.write import to_toml

__all__ = [
    "ANY_ADDRESS",
    "Config",
    "ConfigError",
    "ControlConfig",
    "DataplaneConfig",
    "DynamicHaConfig",
    "GroupConfig",
    "HomeAgentConfig",
    "Peer",
    "PersistenceConfig",
    "RedundancyConfig",
    "RevocationConfig",
    "RevocationPeerConfig",
    "SecurityAssociationConfig",
    "VrrpConfig",
    "build_core_settings",
    "home_agent_settings",
    "load_config",
    "parse_config",
    "security_associations",
    "to_toml",
]
