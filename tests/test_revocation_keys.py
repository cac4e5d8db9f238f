"""RFC 3543 when a key is revoked: a reload that removes a mobile node's security association
ends its bindings on the Home Agent and revokes them at the foreign agent (the real daemon in
process on loopback, ``POST /api/v1/reload``, our FA's rules on a UDP socket)."""

from __future__ import annotations

import asyncio
import time
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from helpers import homeagent_config, mobile_node_for
from test_revocation_loopback import FA_HA, FA_IP, HA_IP, fa_loopback

from mobileip.agents.client import fetch_json, post_json
from mobileip.config import load_config, to_toml
from mobileip.core.replay import ntp_from_unix
from mobileip.core.revocation import RevocationSettings
from mobileip.daemon.homeagent import HomeAgentDaemon
from mobileip.daemon.revocation import RevocationService
from mobileip.wire import registration as wire


def test_a_reload_that_removes_the_key_revokes_the_binding(tmp_path: Path) -> None:
    raw = homeagent_config(HA_IP, homeagent={"address": HA_IP})
    path = tmp_path / "ha.toml"
    path.write_text(to_toml(raw))
    config = load_config(str(path))

    def revocation(daemon: HomeAgentDaemon) -> RevocationService:
        settings = RevocationSettings(IPv4Address(HA_IP), {IPv4Address(FA_IP): FA_HA})
        return RevocationService(daemon, settings)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        async with fa_loopback(config, raw["homeagent"]["port"], revocation) as lab:
            daemon, service, fa_core, control = lab.daemon, lab.service, lab.fa_core, lab.control
            mn = mobile_node_for(raw, coa=FA_IP)
            await lab.register(mn, 600, ntp_from_unix(time.time()))
            home = IPv4Address(mn.home_address)
            assert service.agent.counters["negotiated"] == 1

            # a reload that keeps the key changes nothing
            await loop.run_in_executor(None, post_json, control, "/api/v1/reload")
            await asyncio.sleep(1.0)
            assert service.agent.counters["revocations-sent"] == 0
            assert daemon.core.table.get(int(home)) is not None

            # the operator revokes the mobile node's key: another SPI replaces it
            sa = dict(raw["security_association"][0], spi=raw["security_association"][0]["spi"] + 1)
            path.write_text(to_toml(dict(raw, security_association=[sa])))
            result: Any = await loop.run_in_executor(None, post_json, control, "/api/v1/reload")
            assert result["removed"] == [raw["security_association"][0]["spi"]]
            told = wire.decode_reply(await lab.recv())
            assert (told.code, told.lifetime, told.home_address) == (65, 0, home)
            deadline = time.monotonic() + 5
            while service.agent.counters["revocations-acked"] == 0 and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            assert service.agent.counters["revocations-acked"] == 1
            assert home not in fa_core.visitors
            rec = daemon.core.table.get(int(home))
            assert rec is None or not rec.bindings
            status: Any = await loop.run_in_executor(
                None, fetch_json, control, "/api/v1/revocation"
            )
            assert status["negotiated"] == 0 and status["pending"] == []

    asyncio.run(main())
