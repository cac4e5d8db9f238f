"""RFC 3543 revocation in ``GET /metrics`` (Prometheus text) and the status API's summary.

On loopback, the real Home Agent daemon with the revocation service and the metrics service, our
foreign agent's rules on a UDP socket (tests/test_revocation_loopback.py's shell): a ``clear
binding`` whose first copy is lost moves sent, retransmitted and acked, and the pending gauge
goes back to 0. The replication numbers (resumed on takeover, ack for settled, peers
unsupported, dormant pending, ready) are read from the service's status like the other
services' metrics, checked here on a status with every field set.
"""

from __future__ import annotations

import asyncio
import time
from ipaddress import IPv4Address
from types import SimpleNamespace
from typing import Any

from helpers import homeagent_config, mobile_node_for
from test_metrics import Samples, scrape_at
from test_revocation_loopback import FA_HA, FA_IP, HA_IP, DropFirst, fa_loopback

from mobileip.agents.client import fetch_json, post_json
from mobileip.config import parse_config, to_toml
from mobileip.core.replay import ntp_from_unix
from mobileip.core.revocation import RevocationSettings
from mobileip.daemon.homeagent import HomeAgentDaemon
from mobileip.daemon.revocation import RevocationService
from mobileip.web.metrics import MetricsService, _revocation_metrics


def value(samples: Samples, name: str, **labels: str) -> float:
    """Strict, unlike test_metrics.value: a family missing from the scrape fails the test."""
    return samples[(name, frozenset(labels.items()))]


def test_metrics_move_with_a_revocation_and_its_retransmission() -> None:
    raw = homeagent_config(HA_IP, homeagent={"address": HA_IP})
    config = parse_config(to_toml(raw))
    drop = DropFirst()

    def revocation(daemon: HomeAgentDaemon) -> RevocationService:
        settings = RevocationSettings(
            IPv4Address(HA_IP), {IPv4Address(FA_IP): FA_HA}, initial_timeout=0.2
        )
        service = RevocationService(daemon, settings, drop=drop)
        MetricsService(daemon, revocation=service)
        return service

    async def main() -> None:
        loop = asyncio.get_running_loop()
        async with fa_loopback(config, raw["homeagent"]["port"], revocation) as lab:
            service, control = lab.service, lab.control
            before = await loop.run_in_executor(None, scrape_at, control)
            assert value(before, "mobileip_revocation_sent_total") == 0
            assert value(before, "mobileip_revocation_negotiated") == 0
            mn = mobile_node_for(raw, coa=FA_IP)
            await lab.register(mn, 600, ntp_from_unix(time.time()))
            negotiated = await loop.run_in_executor(None, scrape_at, control)
            assert value(negotiated, "mobileip_revocation_negotiated") == 1
            home = IPv4Address(mn.home_address)
            path = f"/api/v1/bindings/{home}/clear"
            await loop.run_in_executor(None, post_json, control, path)
            pending = await loop.run_in_executor(None, scrape_at, control)
            assert value(pending, "mobileip_revocation_pending", kind="sending") == 1
            assert value(pending, "mobileip_revocation_sent_total") == 1
            deadline = time.monotonic() + 10
            while service.agent.pending and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            after = await loop.run_in_executor(None, scrape_at, control)
            assert value(after, "mobileip_revocation_sent_total") == 1
            assert value(after, "mobileip_revocation_retransmitted_total") >= 1
            assert value(after, "mobileip_revocation_acked_total") == 1
            assert value(after, "mobileip_revocation_pending", kind="sending") == 0
            assert value(after, "mobileip_revocation_resumed_total") == 0
            assert value(after, "mobileip_revocation_events_total", event="negotiated") == 1
            status: Any = await loop.run_in_executor(
                None, fetch_json, control, "/api/v1/revocation"
            )
            summary = status["summary"]
            assert summary["sent"] == 1 and summary["acked"] == 1 and summary["pending"] == 0
            assert summary["retransmitted"] == value(
                after, "mobileip_revocation_retransmitted_total"
            )

    asyncio.run(main())


def test_replication_numbers_are_exported() -> None:
    status = {
        "negotiated": 3,
        "pending": [{"dormant": True}, {"dormant": False}, {"dormant": True}],
        "counters": {
            "revocations-sent": 5,
            "revocations-resumed": 2,
            "ack-for-settled": 1,
            "revocations-deferred": 4,
        },
        "replication": {
            "ready": True,
            "peers": {"10.0.0.2:434": {"queued": 7, "in_flight": 1, "missed": 0}},
            "counters": {"peers-unsupported": 1, "snapshot-ends-received": 2},
        },
    }
    got: Samples = {}
    for family in _revocation_metrics(SimpleNamespace(status=lambda: status)):
        for s in family.samples:
            got[(s.name, frozenset(s.labels.items()))] = s.value
    assert value(got, "mobileip_revocation_sent_total") == 5
    assert value(got, "mobileip_revocation_resumed_total") == 2
    assert value(got, "mobileip_revocation_ack_for_settled_total") == 1
    assert value(got, "mobileip_revocation_deferred_total") == 4
    assert value(got, "mobileip_revocation_acked_total") == 0
    assert value(got, "mobileip_revocation_pending", kind="dormant") == 2
    assert value(got, "mobileip_revocation_pending", kind="sending") == 1
    assert value(got, "mobileip_revocation_peers_unsupported_total") == 1
    assert value(got, "mobileip_revocation_ready") == 1
    assert (
        value(got, "mobileip_revocation_replication_queued", member="10.0.0.2:434", kind="queued")
        == 7
    )
    assert (
        value(got, "mobileip_revocation_replication_events_total", event="snapshot-ends-received")
        == 2
    )
    assert list(_revocation_metrics(None)) == []
