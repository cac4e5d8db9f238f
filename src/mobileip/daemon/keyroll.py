"""Applies a [redundancy] key rollover (mobileip.sync.keyring) to a running RedundancyService."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from mobileip.daemon.ports import ServiceHost
from mobileip.sync.keyring import KeyRollover
from mobileip.wire.sync import GroupKey

if TYPE_CHECKING:
    from mobileip.config import RedundancyConfig
    from mobileip.daemon.redundancy import RedundancyService


def rollover_from_config(cfg: RedundancyConfig) -> KeyRollover:
    current = GroupKey(cfg.spi, cfg.algorithm, cfg.key)
    if cfg.previous_key is None or cfg.previous_spi is None or cfg.key_switch is None:
        return KeyRollover(current)
    previous = GroupKey(cfg.previous_spi, cfg.previous_algorithm, cfg.previous_key)
    return KeyRollover(current, previous, cfg.key_switch, cfg.key_overlap)


class KeyRolloverService:
    """Sets the service's group keys for now, and swaps them at the switch and overlap end."""

    def __init__(self, daemon: ServiceHost, service: RedundancyService) -> None:
        self.daemon = daemon
        self.service = service
        self.rollover = rollover_from_config(service.cfg)
        self._timer: asyncio.TimerHandle | None = None
        service.auth = self.rollover.auth_at(time.time())
        if self.rollover.previous is not None:
            daemon.startup_hooks.append(self._start)
            daemon.shutdown_hooks.append(self._stop)

    async def _start(self) -> None:
        self.apply()

    async def _stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def apply(self) -> None:
        """Install the keys for the current time and arm the next change."""
        self._timer = None
        wall = time.time()
        auth = self.rollover.auth_at(wall)
        self.service.auth = auth
        if self.service.engine is not None:
            self.service.engine.auth = auth
        self.daemon.log.info(
            "sync.keys",
            phase=self.rollover.phase(wall),
            send_spi=auth.send_spi,
            accepted=",".join(str(s) for s in auth.spis),
        )
        when = self.rollover.next_change(wall)
        if when is not None:
            delay = max(0.0, when - time.time()) + 0.001
            self._timer = asyncio.get_running_loop().call_later(delay, self.apply)
