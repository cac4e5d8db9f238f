"""Operator actions on real daemons: ``mobileip clear binding`` (group-wide) and SIGHUP reloading
the security associations without dropping bindings."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

import pytest
from helpers import KEY, SPI, DaemonHandle, running_homeagent, start_homeagent
from test_redundancy_loopback import member_configs, wait_until

from mobileip.agents.client import ControlError, post_json
from mobileip.config import to_toml

NEW_KEY = "ffeeddccbbaa99887766554433221100"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mobileip", *args], capture_output=True, text=True, timeout=30
    )


def control_arg(ha: DaemonHandle) -> str:
    host, port = ha.control
    return f"{host}:{port}"


def test_clear_binding_deregisters_on_every_member(tmp_path: Path) -> None:
    configs = member_configs(2)
    with ExitStack() as stack:
        a, b = (
            start_homeagent(tmp_path / f"m{i}", cfg, name=f"m{i}") for i, cfg in enumerate(configs)
        )
        for ha in (a, b):
            stack.callback(ha.stop, signal.SIGKILL)
        wait_until(
            "both SYNCED",
            lambda: all(h.get("/api/v1/redundancy")["state"] == "SYNCED" for h in (a, b)),
        )
        assert a.client(home="10.1.4.1").register(600).code == 0
        assert a.client(home="10.1.4.2").register(600).code == 0
        wait_until("b to hold both", lambda: len(b.bindings()) == 2)

        # cleared on b (not the member that accepted it): a must hear it too
        done = cli("clear", "binding", "10.1.4.1", "--control", control_arg(b), "--json")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == {"home_address": "10.1.4.1", "cleared": 1}
        assert [r["home_address"] for r in b.bindings()] == ["10.1.4.2"]
        wait_until(
            "a to drop it", lambda: [r["home_address"] for r in a.bindings()] == ["10.1.4.2"]
        )
        assert "event=binding.cleared home=10.1.4.1 bindings=1 by=operator" in b.log()

        # the mobile node can register again afterwards (the tombstone's version is older)
        assert a.client(home="10.1.4.1").register(600).code == 0
        wait_until("b to hold it again", lambda: len(b.bindings()) == 2)

        again = cli("clear", "binding", "10.1.4.9", "--control", control_arg(a))
        assert again.returncode == 1
        assert "no binding for 10.1.4.9" in again.stderr
        bad = cli("clear", "binding", "not-an-ip", "--control", control_arg(a))
        assert bad.returncode == 2 and "not-an-ip" in bad.stderr


def test_sighup_reloads_security_associations_and_keeps_bindings(tmp_path: Path) -> None:
    with running_homeagent(tmp_path) as ha:
        assert ha.client(home="10.1.0.5").register(600).code == 0

        # new key for SPI 256 and a new SPI 300; reload with SIGHUP
        sas = [
            {
                "spi": SPI,
                "algorithm": "hmac-md5",
                "key": NEW_KEY,
                "home_addresses": ["10.1.0.0/24"],
            },
            {"spi": 300, "algorithm": "hmac-md5", "key": KEY, "home_addresses": ["10.1.0.0/24"]},
        ]
        ha.config["security_association"] = sas
        ha.config_path.write_text(to_toml(ha.config))
        ha.proc.send_signal(signal.SIGHUP)
        wait_until("the reload", lambda: "event=config.reloaded" in ha.log(), 10)
        line = next(x for x in ha.log().splitlines() if "event=config.reloaded" in x)
        assert "added=300" in line and "removed=-" in line and f"changed={SPI}" in line, line
        assert "bindings=1" in line
        assert ha.proc.poll() is None
        assert [r["home_address"] for r in ha.bindings()] == ["10.1.0.5"]  # nothing dropped

        assert ha.client(home="10.1.0.6", key=KEY).register(600).code == 131  # old key
        assert ha.client(home="10.1.0.6", key=NEW_KEY).register(600).code == 0
        assert ha.client(home="10.1.0.7", sa=1).register(600).code == 0  # the new SPI

        # a broken file: the old SAs stay, the error is logged, the daemon keeps running
        ha.config_path.write_text("[homeagent]\naddress = 'not an address'\n")
        ha.proc.send_signal(signal.SIGHUP)
        wait_until("the failure", lambda: "event=config.reload_failed" in ha.log(), 10)
        assert ha.proc.poll() is None
        assert ha.client(home="10.1.0.8", key=NEW_KEY).register(600).code == 0
        assert len(ha.bindings()) == 4

        # the same through the control API
        try:
            post_json(ha.control, "/api/v1/reload", token=ha.token)
            raise AssertionError("a bad config must answer 400")
        except ControlError as exc:
            assert "HTTP 400" in str(exc)
        ha.config_path.write_text(to_toml(ha.config))
        result = post_json(ha.control, "/api/v1/reload", token=ha.token)
        assert result["ok"] is True and result["added"] == [] and result["changed"] == []
        assert ha.stop() == 0


UNIT = Path(__file__).resolve().parent.parent / "contrib" / "systemd" / "mobileip-homeagent.service"


def test_systemd_unit_has_only_the_needed_capabilities_and_verifies(tmp_path: Path) -> None:
    text = UNIT.read_text()
    settings = [line.split("=", 1) for line in text.splitlines() if "=" in line and line[0] != "#"]
    values = dict(settings)
    caps = {"CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_NET_BIND_SERVICE", "CAP_BPF"}
    assert set(values["CapabilityBoundingSet"].split()) == caps
    assert set(values["AmbientCapabilities"].split()) == caps
    assert values["Restart"] == "on-failure"
    assert values["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert values["StandardError"] == "journal"
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed")
    mobileip = shutil.which("mobileip") or str(Path(sys.executable).parent / "mobileip")
    unit = tmp_path / "mobileip-homeagent.service"
    unit.write_text(text.replace("/usr/local/bin/mobileip", mobileip))
    done = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    problems = [
        line
        for line in done.stderr.splitlines()
        if "mobileip-homeagent" in line and "Documentation" not in line
    ]
    assert done.returncode == 0 and not problems, done.stderr
