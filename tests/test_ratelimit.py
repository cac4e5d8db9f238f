"""Per-source rate limiting of registration requests: the token bucket (sans-IO), and a real
daemon where a flood from one address does not starve a mobile node registering from another."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest
from helpers import running_homeagent

from mobileip.agents.client import RegistrationClient, build_request
from mobileip.core.ratelimit import RateLimiter
from mobileip.core.replay import ntp_from_unix


def test_burst_then_refill() -> None:
    rl = RateLimiter(rate=10.0, burst=5)
    assert [rl.allow("a", 0.0) for _ in range(7)] == [True] * 5 + [False] * 2
    assert rl.stats.allowed == 5 and rl.stats.limited == 2
    assert not rl.allow("a", 0.05)  # half a token
    assert rl.allow("a", 0.2)  # two tokens' worth of time since the last refusal... at least one
    assert rl.tokens("a", 100.0) == 5.0  # never more than the burst


def test_sources_are_independent() -> None:
    rl = RateLimiter(rate=1.0, burst=3)
    for _ in range(100):
        rl.allow("flooder", 0.0)
    assert rl.allow("victim", 0.0)
    assert rl.stats.limited_by_source["flooder"] == 97
    assert "victim" not in rl.stats.limited_by_source


def test_table_is_bounded_and_evictions_are_counted() -> None:
    rl = RateLimiter(rate=1.0, burst=2, max_sources=100)
    for i in range(1000):
        rl.allow(f"10.0.{i // 256}.{i % 256}", 0.0)
    assert len(rl) <= 100
    assert rl.stats.evicted == 900
    # an evicted source starts again with a full bucket: never refused because of others
    assert rl.allow("10.0.0.0", 0.0)
    assert rl.status()["max_sources"] == 100


def test_refilled_buckets_are_forgotten() -> None:
    rl = RateLimiter(rate=100.0, burst=2)
    for i in range(50):
        rl.allow(i, float(i))  # each source is full again a second later
    assert len(rl) < 5


def test_bad_parameters() -> None:
    for kwargs in ({"rate": 0, "burst": 1}, {"rate": 1, "burst": 0.5}):
        with pytest.raises(ValueError):
            RateLimiter(**kwargs)  # type: ignore[arg-type]


def test_flood_from_one_address_does_not_starve_another(tmp_path: Path) -> None:
    rate, burst = 20, 5
    with running_homeagent(tmp_path, homeagent={"rate_limit": rate, "rate_burst": burst}) as ha:
        flood_mn = ha.mobile_node(home="10.1.0.66")
        stop = threading.Event()
        counts = {"sent": 0, "replies": 0}

        def flood() -> None:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.bind(("127.0.0.2", 0))
                s.setblocking(False)
                while not stop.is_set():
                    data = build_request(flood_mn, 300, ntp_from_unix(time.time()))
                    try:
                        s.sendto(data, ha.address)
                        counts["sent"] += 1
                    except BlockingIOError:
                        time.sleep(0.001)
                    try:
                        while s.recv(2048):
                            counts["replies"] += 1
                    except BlockingIOError:
                        pass

        started = time.monotonic()
        thread = threading.Thread(target=flood, daemon=True)
        thread.start()
        try:
            time.sleep(0.3)
            client = RegistrationClient(
                ha.mobile_node(home="10.1.0.77"),
                ha.address,
                timeout=1.0,
                retries=2,
                bind=("127.0.0.3", 0),
            )
            ha.clients.append(client)
            codes = [client.register(300).code for _ in range(5)]
        finally:
            stop.set()
            thread.join(5)
        elapsed = time.monotonic() - started
        stats = ha.stats()
        print(
            f"flood sent {counts['sent']} in {elapsed:.2f}s, got {counts['replies']} replies; "
            f"rate-limited {stats['dropped'].get('rate-limited')}; victim codes {codes}"
        )
        assert codes == [0] * 5
        assert counts["sent"] > 500  # it really was a flood
        allowed = burst + rate * (elapsed + 1.0)
        assert counts["replies"] <= allowed
        assert stats["dropped"]["rate-limited"] >= counts["sent"] // 2
