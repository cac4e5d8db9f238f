"""``mobileip homeagent``: load the config, build one Home Agent or several groups, serve."""

from __future__ import annotations

import sys

from mobileip.compose.groups import GroupsDaemon
from mobileip.compose.homeagent import build_daemon
from mobileip.config import ConfigError, load_config
from mobileip.daemon.homeagent import HomeAgentDaemon, run_event_loop
from mobileip.log import Logger


def run_homeagent(config_path: str, log_format: str = "text", log_level: str = "info") -> int:
    """``mobileip homeagent``: 0 after a clean stop, 2 on a bad config, 1 on a start failure."""
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        print(f"mobileip: config error: {exc}", file=sys.stderr)
        return 2
    logger = Logger(log_format, log_level)
    daemon: GroupsDaemon | HomeAgentDaemon = (
        GroupsDaemon(config, logger) if config.groups else build_daemon(config, logger)
    )
    try:
        run_event_loop(daemon.serve())
    except OSError as exc:
        logger.error("homeagent.failed", error=str(exc))
        return 1
    return 0
