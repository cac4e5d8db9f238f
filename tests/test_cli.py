"""The ``mobileip`` command line, run as a user would (subprocesses), and the conftest CI guard."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from helpers import KEY, SPI, free_port, homeagent_config

from mobileip.agents.client import ControlError, fetch_json
from mobileip.cli import _cisco_flags, format_bindings
from mobileip.config import to_toml

ROOT = Path(__file__).resolve().parents[1]
pytest_plugins = ["pytester"]


def mobileip(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mobileip", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def register_args(ha: Any, *extra: str, home: str = "10.1.0.5") -> list[str]:
    return [
        "register",
        "--ha",
        f"{ha.address[0]}:{ha.address[1]}",
        "--home-address",
        home,
        "--care-of-address",
        "192.0.2.10",
        "--home-agent-address",
        "10.1.0.1",
        "--spi",
        str(SPI),
        "--key",
        KEY,
        "--timeout",
        "0.3",
        *extra,
    ]


def test_register_show_bindings_and_deregister(homeagent: Any) -> None:
    ha = homeagent()
    control = "{}:{}".format(*ha.control)
    done = mobileip(*register_args(ha, "--lifetime", "900", "--reverse-tunnel"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("code 0: registration accepted; lifetime 900")

    shown = mobileip("show", "bindings", "--control", control, "--json")
    assert shown.returncode == 0, shown.stderr
    rows = json.loads(shown.stdout)
    assert len(rows) == 1
    row = rows[0]
    for key in ("home_address", "care_of_address", "granted_lifetime", "remaining_lifetime"):
        assert key in row
    assert (row["home_address"], row["care_of_address"]) == ("10.1.0.5", "192.0.2.10")
    assert row["granted_lifetime"] == 900 and 0 < row["remaining_lifetime"] <= 900
    assert row["flag_letters"] == "T" and row["home_agent"] == "10.1.0.1"

    table = mobileip("show", "bindings", "--control", control)
    assert table.returncode == 0
    assert "Mobility Binding List:\nTotal 1\n10.1.0.5:\n" in table.stdout
    assert "Care-of Addr 192.0.2.10" in table.stdout
    assert "Lifetime granted 00:15:00 (900)" in table.stdout
    assert "Flags sbdmgrTx" in table.stdout

    stats = json.loads(mobileip("show", "stats", "--control", control).stdout)
    assert stats["replies"] == {"0": 1} and stats["bindings"] == 1

    dereg = mobileip(*register_args(ha, "--deregister", "--json"))
    assert dereg.returncode == 0, dereg.stderr
    result = json.loads(dereg.stdout)
    assert result["code"] == 0 and result["accepted"] and result["lifetime"] == 0
    assert json.loads(mobileip("show", "bindings", "--control", control, "--json").stdout) == []


def test_register_exit_codes(homeagent: Any) -> None:
    ha = homeagent(homeagent={"replay": "nonce"})
    nonce = mobileip(*register_args(ha, "--replay", "nonce", "--json"))
    assert nonce.returncode == 0, nonce.stdout
    assert json.loads(nonce.stdout)["retried_133"] is True

    # a later --key wins: the wrong key
    denied = mobileip(*register_args(ha, "--key", "ff" * 16, "--replay", "nonce", home="10.1.0.6"))
    assert denied.returncode == 1
    assert "code 131: denied by HA: mobile node failed authentication" in denied.stdout

    port = free_port()
    silent = mobileip(
        "register",
        "--ha",
        f"127.0.0.1:{port}",
        "--home-address",
        "10.1.0.5",
        "--care-of-address",
        "192.0.2.10",
        "--spi",
        "256",
        "--key",
        KEY,
        "--timeout",
        "0.05",
        "--retries",
        "1",
    )
    assert silent.returncode == 3
    assert "no valid reply after 2 attempts" in silent.stdout

    bad = mobileip(
        "register",
        "--ha",
        "nowhere",
        "--home-address",
        "10.1.0.5",
        "--care-of-address",
        "1.2.3.4",
        "--spi",
        "256",
        "--key",
        KEY,
    )
    assert bad.returncode == 2 and "HOST[:PORT]" in bad.stderr
    assert mobileip(*register_args(ha), "--spi", "12").returncode == 2


def test_show_bindings_when_no_daemon() -> None:
    port = free_port(kind=socket.SOCK_STREAM)
    done = mobileip("show", "bindings", "--control", f"127.0.0.1:{port}")
    assert done.returncode == 4
    assert "cannot connect" in done.stderr


def test_control_token_is_required_when_configured(homeagent: Any) -> None:
    ha = homeagent(control={"token": "s3cret"})
    with pytest.raises(ControlError, match="HTTP 401"):
        fetch_json(ha.control, "/api/v1/bindings")
    with pytest.raises(ControlError, match="HTTP 401"):
        fetch_json(ha.control, "/api/v1/bindings", token="wrong")
    assert fetch_json(ha.control, "/api/v1/bindings", token="s3cret") == []
    assert ha.get("/healthz") == {"status": "ok", "bindings": 0}
    control = "{}:{}".format(*ha.control)
    assert mobileip("show", "bindings", "--control", control, "--token", "s3cret").returncode == 0
    assert mobileip("show", "bindings", "--control", control).returncode == 4
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"http://{control}/api/v1/nothing", timeout=5)
    assert info.value.code == 401  # the guard answers before the router


def test_non_loopback_clients_are_refused_without_a_token() -> None:
    from mobileip.web.control import is_loopback

    assert is_loopback("127.0.0.1") and is_loopback("127.5.6.7") and is_loopback("::1")
    assert not is_loopback("10.1.0.1") and not is_loopback(None) and not is_loopback("x")


def test_config_check(tmp_path: Path) -> None:
    ok = mobileip("config", "check", str(ROOT / "examples" / "homeagent.toml"))
    assert ok.returncode == 0 and ": ok (home agent 10.1.0.1" in ok.stdout
    config = homeagent_config()
    config["homeagent"]["replay"] = "sequence"
    bad = tmp_path / "bad.toml"
    bad.write_text(to_toml(config))
    done = mobileip("config", "check", str(bad))
    assert done.returncode == 2
    assert f"{bad}: line 6: homeagent.replay: 'sequence' is not one of" in done.stderr


def test_demo_runs_end_to_end() -> None:
    done = mobileip("demo", timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "code 0: registration accepted; lifetime 600" in out
    assert "Total 1\n10.1.0.5:" in out and "Total 0" in out
    assert "event=registration.accepted home=10.1.0.5" in out
    assert "Home Agent stopped (exit status 0)" in out
    assert out.rstrip().endswith("== demo succeeded")


def test_format_bindings_and_flags() -> None:
    assert _cisco_flags(0x82) == "SbdmgrTx"
    text = format_bindings(
        [
            {
                "home_address": "10.1.0.5",
                "care_of_address": "192.0.2.1",
                "home_agent": "10.1.0.1",
                "granted_lifetime": 0xFFFF,
                "remaining_lifetime": 0xFFFF,
                "identification": (0xABCDEF01 << 32) | 0x2,
                "flags": 0,
            }
        ]
    )
    assert "Lifetime granted infinite (65535), remaining infinite" in text
    assert "Identification ABCDEF01.00000002" in text


CI_PROBE = """
import pytest

@pytest.mark.root
def test_needs_root():
    pytest.skip("pretend we are not root")

def test_plain():
    pass
"""


@pytest.mark.parametrize(("ci", "status"), [("true", 1), ("", 0)])
def test_ci_fails_the_session_when_root_tests_skip(
    pytester: pytest.Pytester, ci: str, status: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makeconftest((Path(__file__).parent / "conftest.py").read_text())
    pytester.makepyfile(helpers=(Path(__file__).parent / "helpers.py").read_text())
    pytester.makeini("[pytest]\nmarkers =\n    root: needs root\n")
    pytester.makepyfile(test_probe=CI_PROBE)
    monkeypatch.setenv("CI", ci)
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    assert result.ret == status
    if status:
        result.stdout.fnmatch_lines(["*SKIPPED root test (CI must run it): *test_needs_root*"])


def test_identification_source_adopts_the_ha_clock_and_nonce() -> None:
    from ipaddress import IPv4Address

    from mobileip.agents.client import IdentificationSource
    from mobileip.core.replay import ntp_from_unix
    from mobileip.wire.registration import RegistrationReply

    ids = IdentificationSource("timestamp")
    wall = 1_700_000_000.25
    first = ids.next(wall)
    assert first == ntp_from_unix(wall)
    assert ids.next(wall) == first + 1  # strictly increasing even on the same clock reading
    ha_now = ntp_from_unix(wall + 500.7)
    home, ha = IPv4Address("10.1.0.5"), IPv4Address("10.1.0.1")
    mismatch = RegistrationReply(133, 0, home, ha, (ha_now & ~0xFFFFFFFF) | (first & 0xFFFFFFFF))
    ids.learn(mismatch, wall)
    adopted = ids.next(wall)
    assert ha_now < adopted <= ha_now + (1 << 32)  # within a second after the HA's time

    nonces = IdentificationSource("nonce")
    low = nonces.next(wall) & 0xFFFFFFFF
    nonces.learn(RegistrationReply(133, 0, home, ha, (0xCAFE << 32) | low), wall)
    assert nonces.next(wall) >> 32 == 0xCAFE
