"""``GET /metrics`` shows the pools (docs/operations.md, "Dynamic home addresses"): per pool its
size and live addresses, retired addresses and the assignment counters, the same numbers as
``GET /api/v1/pools``, on a real daemon."""

from __future__ import annotations

import signal
from ipaddress import IPv4Address
from pathlib import Path

from helpers import homeagent_config, start_homeagent, wait_until
from test_metrics import scrape_at, value
from test_pools_loopback import NAI_KEY, NAI_SPI, register

from mobileip.config import to_toml


def test_pool_metrics_follow_assignments_denials_and_a_reload(tmp_path: Path) -> None:
    cfg = homeagent_config()
    cfg["security_association"].append(
        {"spi": NAI_SPI, "key": NAI_KEY, "nai": "*@pool.test", "pool": "p"}
    )
    cfg["pool"] = [{"name": "p", "first": "10.9.0.1", "last": "10.9.0.2"}]
    ha = start_homeagent(tmp_path, cfg)
    try:
        assert register(ha, "a@pool.test")[0] == 0
        assert register(ha, "a@pool.test")[0] == 0  # the same address again
        code, b_home = register(ha, "b@pool.test")
        assert code == 0
        assert register(ha, "c@pool.test")[0] == 130  # exhausted
        assert register(ha, "c@pool.test", IPv4Address("10.9.0.1"))[0] == 129  # a's
        m = scrape_at(ha.control)
        assert value(m, "mobileip_pool_addresses", pool="p") == 2
        assert value(m, "mobileip_pool_in_use", pool="p") == 2
        assert value(m, "mobileip_pool_assigned_total") == 2
        assert value(m, "mobileip_pool_reassigned_total") == 1
        assert value(m, "mobileip_pool_denied_total", reason="pool-exhausted") == 1
        assert value(m, "mobileip_pool_denied_total", reason="address-of-another-nai") == 1
        assert value(m, "mobileip_pool_retired") == 0
        # a reload that shrinks the pool to one address retires b's (still held)
        kept = "10.9.0.2" if b_home == IPv4Address("10.9.0.1") else "10.9.0.1"
        cfg["pool"] = [{"name": "p", "first": kept, "last": kept}]
        ha.config_path.write_text(to_toml(cfg))
        ha.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "event=pools.reloaded" in ha.log(), 10, "the reload")
        m = scrape_at(ha.control)
        assert value(m, "mobileip_pool_addresses", pool="p") == 1
        assert value(m, "mobileip_pool_in_use", pool="p") == 1
        assert value(m, "mobileip_pool_retired") == 1
        assert ha.get("/api/v1/pools")["retired"] == [str(b_home)]
    finally:
        ha.stop()
