"""The load generator against a real daemon, a silent socket and an echo (issue 7)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest
from helpers import HA_ADDRESS, KEY, SPI, DaemonHandle, running_homeagent

from mobileip.tools.loadgen import LoadSpec, format_result, run_load

PREFIX = "10.1.0.0/16"


@pytest.fixture(scope="module")
def ha(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonHandle]:
    directory = tmp_path_factory.mktemp("loadgen")
    sa = [{"spi": SPI, "algorithm": "hmac-md5", "key": KEY, "home_addresses": [PREFIX]}]
    with running_homeagent(directory, security_association=sa) as handle:
        yield handle


def spec(target: tuple[str, int], **kw: object) -> LoadSpec:
    values: dict[str, object] = {
        "ha": target,
        "mobile_nodes": 200,
        "spi": SPI,
        "key": bytes.fromhex(KEY),
        "home_agent_address": IPv4Address(HA_ADDRESS),
        "home_prefix": IPv4Network(PREFIX),
        "duration": 1.0,
        "window": 32,
        "timeout": 2.0,
    }
    values.update(kw)
    return LoadSpec(**values)  # type: ignore[arg-type]


def test_every_request_gets_a_verified_accepting_reply(ha: DaemonHandle) -> None:
    res = run_load(spec(ha.address, max_requests=600))
    print(format_result(res))
    assert res.sent == 600
    assert res.replies == 600 and res.accepted == 600
    assert res.codes == {0: 600}
    assert not res.invalid and res.timeouts == 0 and res.late == 0
    assert len(res.latencies) == 600 and res.throughput > 0
    assert 0 < res.percentile(50) <= res.percentile(99) <= max(res.latencies)
    # 200 mobile nodes, each registered three times with increasing identifications
    rows = ha.bindings()
    homes = {r["home_address"] for r in rows}
    assert {f"10.1.0.{2 + i}" for i in range(200)} <= homes


def test_rate_limits_what_is_offered(ha: DaemonHandle) -> None:
    res = run_load(spec(ha.address, rate=200.0, duration=1.0, mobile_nodes=50))
    print(format_result(res))
    # loose bounds: the machine is shared
    assert 120 <= res.sent <= 260
    assert res.replies == res.sent and not res.invalid


def test_wrong_key_replies_are_not_verified(ha: DaemonHandle) -> None:
    res = run_load(spec(ha.address, key=b"\x01" * 16, max_requests=20, timeout=0.5))
    # The HA answers 131 without an MN-HA extension: not a verified reply, so a timeout.
    assert res.replies == 0
    assert res.invalid["no-mn-ha-authentication"] == 20
    assert res.timeouts == 20


def test_silent_home_agent_gives_timeouts() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        res = run_load(spec(silent.getsockname(), max_requests=10, window=4, timeout=0.2))
    assert res.sent == 10 and res.timeouts == 10 and res.replies == 0
    assert res.as_dict()["latency_ms"] == {"p50": None, "p90": None, "p99": None, "max": None}


def test_echo_mode_checks_the_authenticator_of_the_echo() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    stop = threading.Event()
    corrupt = [0]

    def echo() -> None:
        while not stop.is_set():
            try:
                data, addr = sock.recvfrom(2048)
            except TimeoutError:
                continue
            if corrupt[0]:
                corrupt[0] -= 1
                data = data[:-1] + bytes([data[-1] ^ 1])
            sock.sendto(data, addr)

    thread = threading.Thread(target=echo, daemon=True)
    thread.start()
    try:
        ok = run_load(spec(sock.getsockname(), echo=True, max_requests=100))
        assert ok.replies == 100 and ok.codes == {0: 100} and not ok.invalid
        corrupt[0] = 5
        bad = run_load(spec(sock.getsockname(), echo=True, max_requests=50, timeout=0.3))
        assert bad.invalid["bad-authenticator"] == 5
        assert bad.replies == 45 and bad.timeouts == 5
    finally:
        stop.set()
        thread.join()
        sock.close()


def test_spec_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="do not fit"):
        spec(("127.0.0.1", 1), mobile_nodes=70_000).check()
    with pytest.raises(ValueError, match="window"):
        spec(("127.0.0.1", 1), window=0).check()


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mobileip", "loadgen", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_json(ha: DaemonHandle, tmp_path: Path) -> None:
    host, port = ha.address
    proc = run_cli(
        "--ha", f"{host}:{port}", "--home-agent-address", HA_ADDRESS,
        "--mobile-nodes", "100", "--max", "--duration", "0.5", "--requests", "300",
        "--spi", str(SPI), "--key", KEY, "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["sent"] == 300 and out["replies"] == 300 and out["codes"] == {"0": 300}
    assert out["latency_ms"]["p50"] <= out["latency_ms"]["p99"] <= out["latency_ms"]["max"]
    assert proc.stderr == ""  # no progress bar when stderr is not a terminal


def test_cli_bad_usage() -> None:
    proc = run_cli("--ha", "nothost:1", "--max", "--spi", "256", "--key", KEY)
    assert proc.returncode == 2 and "not an IPv4 address" in proc.stderr
    proc = run_cli("--ha", "127.0.0.1:9", "--max", "--spi", "256", "--key", "zz")
    assert proc.returncode == 2 and "hex" in proc.stderr
    proc = run_cli("--ha", "127.0.0.1:9", "--spi", "256", "--key", KEY)  # neither --rate nor --max
    assert proc.returncode == 2
