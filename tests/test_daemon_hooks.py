"""The daemon's extension points, in process: event subscribers, a reply policy that defers the
reply (as semisync mode will), the extra datagram handler, and extra control routes."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Sequence

from helpers import homeagent_config, mobile_node_for

from mobileip.agents.client import RegistrationClient, fetch_json
from mobileip.config import parse_config, to_toml
from mobileip.core.homeagent import BindingChanged, Event, Outcome
from mobileip.daemon.homeagent import HomeAgentDaemon, PendingReply
from mobileip.log import Logger
from mobileip.web.control import ControlServer


def test_subscribers_deferred_replies_extra_handler_and_routes() -> None:
    raw = homeagent_config()
    config = parse_config(to_toml(raw))

    async def main() -> None:
        loop = asyncio.get_running_loop()
        daemon = HomeAgentDaemon(config, ControlServer(config.control), Logger(level="error"))
        events: list[Event] = []
        extra: list[tuple[bytes, str | None]] = []
        deferred: list[float] = []

        def subscriber(batch: Sequence[Event], now: float) -> None:
            events.extend(batch)

        def policy(outcome: Outcome, pending: PendingReply) -> bool:
            if outcome.code != 0:
                return False  # send at once
            deferred.append(time.monotonic())
            loop.call_later(0.3, daemon.send_reply, pending)
            return True

        daemon.subscribers.append(subscriber)
        daemon.reply_policy = policy
        daemon.extra_handler = lambda data, src, dst: extra.append((data, dst))
        daemon.control.add_json_route("GET", "/api/v1/extra", lambda request: {"extra": 1})
        await daemon.start()
        try:
            mn = mobile_node_for(raw)
            with RegistrationClient(mn, ("127.0.0.1", raw["homeagent"]["port"])) as client:
                started = time.monotonic()
                result = await loop.run_in_executor(None, client.register, 100)
                waited = time.monotonic() - started
            assert result.code == 0
            assert waited >= 0.3 and len(deferred) == 1  # the reply waited for the policy
            assert [type(e) for e in events] == [BindingChanged]

            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.sendto(b"\xc8sync", ("127.0.0.1", raw["homeagent"]["port"]))
            for _ in range(100):
                if extra:
                    break
                await asyncio.sleep(0.01)
            assert extra == [(b"\xc8sync", "127.0.0.1")]
            assert daemon.dropped == {}  # handed over, not counted as garbage

            control = (config.control.host, config.control.port)
            body = await loop.run_in_executor(None, fetch_json, control, "/api/v1/extra")
            assert body == {"extra": 1}
        finally:
            await daemon.stop()

    asyncio.run(main())
