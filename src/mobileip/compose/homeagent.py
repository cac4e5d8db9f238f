"""The composition root: one Home Agent built from its config.

:func:`build_daemon` creates the control API server, the daemon (core, registration socket,
expiry timer) and every service the config asks for, in dependency order, and hands each
service only the interfaces it uses (:mod:`mobileip.daemon.ports`) and the services it depends
on. Nothing else in the package wires services together; no service imports this module.
``mobileip homeagent`` itself is :func:`mobileip.compose.run.run_homeagent`.
"""

from __future__ import annotations

from dataclasses import dataclass

from mobileip.config import Config
from mobileip.daemon.homeagent import HomeAgentDaemon
from mobileip.daemon.redundancy import RedundancyService
from mobileip.daemon.roles import RoleService
from mobileip.dataplane.service import DataPlaneService
from mobileip.log import Logger
from mobileip.web.control import ControlServer, add_core_routes


@dataclass(frozen=True, slots=True)
class HomeAgent:
    """A built Home Agent: the daemon and the services others read (groups, bench)."""

    daemon: HomeAgentDaemon
    control: ControlServer
    redundancy: RedundancyService | None
    roles: RoleService | None
    dataplane: DataPlaneService | None


def build_daemon(config: Config, logger: Logger | None = None) -> HomeAgentDaemon:
    """The daemon with every service its config asks for (redundancy, roles, data plane, ...)."""
    return build_home_agent(config, logger).daemon


def build_home_agent(
    config: Config, logger: Logger | None = None, control: ControlServer | None = None
) -> HomeAgent:
    """:func:`build_daemon`, with the services. ``control``: the control API server to use (a
    group of several mounts its app under ``/group/NAME/``); by default one on ``[control]
    listen``."""
    if control is None:
        control = ControlServer(config.control)
    daemon = HomeAgentDaemon(config, control, logger)
    add_core_routes(control, daemon)
    if config.persistence is not None:  # first: it replaces the core's table
        from mobileip.daemon.persist import attach

        attach(daemon, config.persistence)
    redundancy = None
    if config.redundancy is not None:
        from mobileip.daemon.keyroll import KeyRolloverService

        redundancy = RedundancyService(daemon, config.redundancy)
        KeyRolloverService(daemon, redundancy)
    roles = None
    if config.vrrp is not None:
        roles = RoleService(daemon, config.vrrp, redundancy)
    if config.dynamic_ha is not None:
        from mobileip.daemon.dynamic_ha import attach_dynamic_ha

        attach_dynamic_ha(daemon, config.dynamic_ha)
    pools = None
    if config.pools:  # after persistence: the pools read the table it installed
        from mobileip.daemon.pools import attach_pools

        pools = attach_pools(daemon, roles)
    revocation = None
    if config.revocation is not None:
        from mobileip.daemon.revocation import attach_revocation

        revocation = attach_revocation(daemon, config.revocation, redundancy, roles)
    dataplane = None
    if config.dataplane is not None:
        dataplane = DataPlaneService(daemon, config.dataplane, roles, redundancy)
        if config.homeagent.nat_traversal:  # RFC 3519 tunnel data on the registration socket
            from mobileip.dataplane.udp_tunnel import UdpTunnelService

            UdpTunnelService(daemon, dataplane, dataplane.virtual or config.homeagent.address)
    from mobileip.web.admin import AdminService
    from mobileip.web.metrics import MetricsService
    from mobileip.web.status_page import StatusPage

    AdminService(daemon)
    metrics = MetricsService(
        daemon,
        redundancy=redundancy,
        roles=roles,
        dataplane=dataplane,
        revocation=revocation,
        pools=pools,
    )
    StatusPage(daemon, metrics, redundancy=redundancy, roles=roles)
    return HomeAgent(daemon, control, redundancy, roles, dataplane)
