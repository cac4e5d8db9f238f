"""The command-line entry shared by ``mobileip foreignagent`` and ``mobileip mobilenode``."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from mobileip.config import ConfigError
from mobileip.log import Logger

C = TypeVar("C")


def run_agent(
    load: Callable[[str], C],
    serve: Callable[[C, Logger], Coroutine[Any, Any, None]],
    failed_event: str,
    path: str,
    log_format: str,
    log_level: str,
) -> int:
    """Load the config at ``path`` and run ``serve`` on it: 0 after a clean stop, 2 on a bad
    config, 1 on a start failure (logged as ``failed_event``)."""
    try:
        cfg = load(path)
    except ConfigError as exc:
        print(f"mobileip: config error: {exc}", file=sys.stderr)
        return 2
    log = Logger(log_format, log_level)
    try:
        asyncio.run(serve(cfg, log))
    except OSError as exc:
        log.error(failed_event, error=str(exc))
        return 1
    return 0
