"""``mobileip bench --quick`` runs end to end (issue 7). Its numbers are printed, never asserted:
the machine is shared and noisy. What is asserted is that every measurement produced a value."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time

import pytest


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_bench_quick_smoke() -> None:
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "mobileip", "bench", "--quick", "--json", "--no-failover"],
        capture_output=True,
        text=True,
        timeout=230,
    )
    took = time.monotonic() - start
    print(proc.stderr)
    print(proc.stdout)
    print(f"bench --quick took {took:.0f} s")
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    for name in ("echo", "ha", "async", "semisync"):
        row = report["throughput"][name]
        assert row["median_per_s"] > 0 and len(row["runs_per_s"]) == 2
        assert not math.isnan(row["median_per_s"])
    for size in ("20000", "100000"):
        bulk = report["bulk_sync"][size]
        assert bulk["bindings"] == int(size)  # every record reached the booting member
        assert bulk["sync_s"] > 0
    assert report["sync_lag"]["acks"] > 0
    assert report["failover"]["skipped"].startswith("not measured")


def test_bulk_sync_knobs_reach_the_engine() -> None:
    from mobileip.config import ConfigError, parse_config
    from mobileip.daemon.redundancy import sync_settings

    base = """
[homeagent]
address = "10.1.0.1"
[[security_association]]
spi = 256
key = "00112233445566778899aabbccddeeff"
home_addresses = ["10.1.0.0/16"]
[redundancy]
node_id = "127.0.0.1"
spi = 1000
key = "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a"
peers = ["127.0.0.2"]
"""
    default = sync_settings(parse_config(base).redundancy)  # type: ignore[arg-type]
    assert (default.payload_budget, default.bulk_window) == (1400, 16)
    cfg = parse_config(base + "payload_budget = 8000\nbulk_window = 64\n")
    tuned = sync_settings(cfg.redundancy)  # type: ignore[arg-type]
    assert (tuned.payload_budget, tuned.bulk_window) == (8000, 64)
    with pytest.raises(ConfigError, match="payload_budget"):
        parse_config(base + "payload_budget = 100\n")


def test_report_table_has_every_row_and_the_ratios() -> None:
    from mobileip.tools.bench import BenchPlan, BenchReport, format_report

    report = BenchReport(BenchPlan.quick(), "uvloop", "test machine")
    for name, runs in {
        "echo": [20000.0, 30000.0],
        "ha": [10000.0, 12000.0],
        "async": [8000.0, 9000.0],
        "semisync": [5000.0, 6000.0],
    }.items():
        report.throughput[name] = runs
        report.cpu_us[name] = [10.0, 20.0]
    report.bulk["100000"] = {
        "bindings": 100000,
        "sync_s": 2.5,
        "bytes_per_binding": 440.0,
        "payload_budget": 1400,
    }
    report.lag = {"offered_per_s": 5000.0, "achieved_per_s": 4990.0, "p50_ms": 1.5, "p99_ms": 9.0}
    text = format_report(report)
    print(text)
    assert "asyncio UDP echo (baseline)" in text and "25,000" in text
    assert "HA alone" in text and "0.44" in text  # 11000 / 25000
    assert "HA + 2 peers, semisync" in text and "0.50" in text  # 5500 / 11000
    assert "bulk sync   100,000 bindings (payload_budget 1400): 2.50 s" in text
    assert "p99 9.0 ms" in text
    assert "failover: not measured" in text
    data = report.as_dict()
    assert data["throughput"]["async"]["server_cpu_us_per_reg"] == 15.0  # type: ignore[index]


def test_failover_section_formatting() -> None:
    """The failover section's lines: one row per size with the fill, the sampled outage (median,
    worst, ratio to the first size), the booting standby's install cost; skipped sizes with
    their reason; the after-load convergence per member. Formatting only, no speed."""
    from mobileip.tools.bench import BenchPlan, BenchReport, format_report
    from mobileip.tools.failover_bench import FailoverResult, format_failover, installed_count

    def row(n: int, median: float, worst: float, per: float | None) -> dict[str, object]:
        inst: dict[str, object] = {"installed": n if per else 0, "table": n, "field": "tunnels"}
        if per is not None:
            inst["us_per_binding"] = per
            inst["seconds"] = per * n / 1e6
            inst["control_ms"] = {"n": 40, "p50": 1.5, "p99": 30.0, "max": 47.0}
        return {
            "bindings": n,
            "registration": {"accepted": n, "wall_s": n / 5000, "throughput_per_s": 5000.0},
            "outage": {
                "outage_ms": {"median": median, "worst": worst},
                "recovered_after_kill_ms": {"median": median + 20, "worst": worst + 30},
                "sampled": 50,
                "recovered": 50,
            },
            "standby_install": inst,
        }

    result = FailoverResult(
        sizes={
            "1000": row(1000, 13000.0, 26000.0, None),
            "10000": row(10000, 130000.0, 260000.0, 12.5),
            "100000": {"bindings": 100000, "skipped": "skipped: 26.0 ms per binding predicts"},
        },
        load={
            "registrations": 10000,
            "offered_per_s": 5000.0,
            "registration": {"throughput_per_s": 4990.0},
            "members": {
                "ha1": {
                    "role": "active",
                    "seconds": 1.5,
                    "installed": 10000,
                    "table": 10000,
                    "longest_convergence_ms": 23.25,
                },
                "ha2": {
                    "role": "standby",
                    "seconds": None,
                    "installed": 0,
                    "table": 10000,
                    "why": "no progress for 10 s",
                },
            },
            "actives_after_load": ["ha1", "ha2"],
        },
        notes=["tables filled by registrations"],
    )
    lines = format_failover(result.as_dict())
    text = "\n".join(lines)
    print(text)
    assert lines[0].startswith("failover (lab")
    assert "     1,000" in text and "13,000 ms" in text and "26,000 ms" in text
    assert "10.0" in text  # worst at 10,000 over worst at 1,000
    assert "never (0/1,000)" in text and "12.5" in text  # standby install cost per binding
    assert "100,000 skipped: 26.0 ms per binding" in text
    assert "ha1 (active): 1.5 s after the load (longest change-to-installed 23.2 ms)" in text
    assert "0.12" in text and "47 ms" in text  # standby ready 0.125 s after SYNCED, loop max
    assert "ha2 (standby): not equal (0/10,000, no progress for 10 s)" in text
    assert "split brain after the load" in text
    assert "note: tables filled by registrations" in text

    skipped = FailoverResult(skipped="not measured (not root: ...)")
    assert format_failover(skipped.as_dict()) == ["failover: not measured (not root: ...)"]
    report = BenchReport(BenchPlan.quick(), "asyncio", "test machine")
    report.failover = result.as_dict()
    assert "failover (lab" in format_report(report)  # no throughput rows: none measured
    assert "scenario" not in format_report(report)

    # the data plane's installed count: ``installed`` when the data plane has it, else tunnels
    assert installed_count({"installed": 7, "tunnels": 3}) == (7, "installed")
    assert installed_count({"tunnels": 3}) == (3, "tunnels")
    assert installed_count({}) == (0, "none")


def test_outage_arithmetic() -> None:
    from mobileip.tools.simnodes import node_outage, sample_indices, summarize

    arrivals = [0.0, 0.05, 0.10, 0.15, 1.20, 1.25]
    got = node_outage(arrivals, kill_at=0.16, interval=0.05)
    assert got == {"outage_s": 1.0, "recovered_s": 1.04}
    assert node_outage([0.0, 0.05], kill_at=0.06, interval=0.05)["recovered_s"] is None
    s = summarize({"a": got, "b": {"outage_s": None, "recovered_s": None}})
    assert s["sampled"] == 2 and s["recovered"] == 1 and s["not_recovered"] == ["b"]
    assert s["outage_ms"] == {"median": 1000.0, "worst": 1000.0}
    assert sample_indices(200, 50)[0] == 0 and sample_indices(200, 50)[-1] == 199
    assert len(sample_indices(199, 50)) == 50 and sample_indices(3, 50) == [0, 1, 2]
