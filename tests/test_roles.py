"""Roles without root: keepalived's notify-FIFO lines, the FIFO reader, the track file, and the
static driver switched through the control API and ``mobileip role`` on a real daemon."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import running_homeagent

from mobileip.agents.client import ControlError, post_json
from mobileip.config import VrrpConfig
from mobileip.daemon.keepalived import FifoReader, NotifyLine, parse_notify_line, write_track_file
from mobileip.daemon.roles import (
    TRACK_FILE_DEMOTION,
    KeepalivedDriver,
    Role,
    StaticDriver,
    format_vrrp,
)

# --- the notify FIFO line parser ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('INSTANCE "VI_1" MASTER 100', NotifyLine("VI_1", "MASTER", 100)),
        ('INSTANCE "VI_1" BACKUP 50\n', NotifyLine("VI_1", "BACKUP", 50)),
        ('INSTANCE "VI 2" FAULT 0', NotifyLine("VI 2", "FAULT", 0)),
        ('INSTANCE "VI_1" STOP', NotifyLine("VI_1", "STOP", None)),
        ('  INSTANCE "x" DELETED 7  ', NotifyLine("x", "DELETED", 7)),
    ],
)
def test_notify_lines_that_name_an_instance(line: str, expected: NotifyLine) -> None:
    assert parse_notify_line(line) == expected


@pytest.mark.parametrize(
    "line",
    [
        "",
        'GROUP "G1" MASTER',  # sync groups are not instances
        'INSTANCE "VI_1" SLEEPING 100',  # unknown state
        "INSTANCE VI_1 MASTER 100",  # unquoted name
        'INSTANCE "VI_1" MASTER abc',
        'INSTANCE "VI_1"',
        "\x00\xff garbage",
        'VS "10.0.0.1:80" UP',
    ],
)
def test_anything_else_is_not_a_notify_line(line: str) -> None:
    assert parse_notify_line(line) is None


def test_keepalived_driver_follows_its_instance_only(tmp_path: Path) -> None:
    logged: list[tuple[str, dict[str, Any]]] = []
    cfg = VrrpConfig(
        "keepalived",
        notify_fifo=str(tmp_path / "fifo"),
        instance="VI_1",
        track_file=str(tmp_path / "weight"),
    )
    driver = KeepalivedDriver(cfg, lambda event, **kw: logged.append((event, kw)), synced=False)
    changes: list[Role] = []
    driver.callbacks.append(lambda role, reason: changes.append(role))
    assert driver.role is Role.STANDBY
    driver.handle_line('INSTANCE "VI_2" MASTER 100')  # another instance
    driver.handle_line("garbage")
    assert driver.role is Role.STANDBY and changes == []
    driver.handle_line('INSTANCE "VI_1" MASTER 150')
    assert driver.role is Role.ACTIVE and driver.reason == "keepalived-master"
    driver.handle_line('INSTANCE "VI_1" MASTER 150')  # repeated: no new transition
    driver.handle_line('INSTANCE "VI_1" FAULT 0')
    assert driver.role is Role.STANDBY
    assert changes == [Role.ACTIVE, Role.STANDBY]
    status = driver.status()
    assert status["vrrp_state"] == "FAULT"
    assert status["transitions"] == 2
    assert status["counters"] == {"lines": 5, "ignored": 2}
    assert [e for e, _ in logged].count("role.changed") == 2


def test_keepalived_driver_writes_the_track_file_weight(tmp_path: Path) -> None:
    weight = tmp_path / "weight"
    cfg = VrrpConfig(
        "keepalived", notify_fifo=str(tmp_path / "fifo"), instance="VI_1", track_file=str(weight)
    )
    driver = KeepalivedDriver(cfg, lambda event, **kw: None, synced=False)

    async def run() -> None:
        await driver.start()
        assert weight.read_text() == f"{TRACK_FILE_DEMOTION}\n"
        assert driver.status()["demoted"] is True
        driver.set_synced(True)
        assert weight.read_text() == "0\n"
        driver.set_synced(False)
        assert weight.read_text() == f"{TRACK_FILE_DEMOTION}\n"
        driver.set_synced(True)
        weight.write_text("-100\n")  # keepalived's `init_file ... overwrite` on its restart
        driver._next_check = 0.0
        driver.tick()
        assert weight.read_text() == "0\n"
        await driver.stop()  # a stopped daemon leaves keepalived demoted
        assert weight.read_text() == f"{TRACK_FILE_DEMOTION}\n"

    asyncio.run(run())
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_write_track_file_reports_an_unwritable_directory(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        write_track_file(str(tmp_path / "missing" / "weight"), 0)


def test_fifo_reader_survives_writers_coming_and_going(tmp_path: Path) -> None:
    path = tmp_path / "notify.fifo"
    lines: list[str] = []

    async def run() -> None:
        reader = FifoReader(str(path), lines.append)
        reader.open()  # creates the FIFO
        try:
            for batch in (['INSTANCE "VI_1" BACKUP 100'], ['INSTANCE "VI_1" MASTER 100', "x"]):
                # each writer opens, writes (the last line in two pieces), closes: as keepalived
                # does across restarts
                fd = os.open(path, os.O_WRONLY)
                text = "".join(f"{line}\n" for line in batch)
                os.write(fd, text[:5].encode())
                await asyncio.sleep(0.05)
                os.write(fd, text[5:].encode())
                os.close(fd)
                await asyncio.sleep(0.05)
        finally:
            reader.close()

    asyncio.run(run())
    assert lines == ['INSTANCE "VI_1" BACKUP 100', 'INSTANCE "VI_1" MASTER 100', "x"]


def test_fifo_reader_refuses_a_regular_file(tmp_path: Path) -> None:
    path = tmp_path / "not-a-fifo"
    path.write_text("")

    async def run() -> None:
        FifoReader(str(path), print).open()

    with pytest.raises(OSError, match="not a FIFO"):
        asyncio.run(run())


def test_static_driver_history() -> None:
    driver = StaticDriver(Role.STANDBY, lambda event, **kw: None)
    driver.set_role(Role.ACTIVE, "operator")
    driver.set_role(Role.ACTIVE, "operator")
    status = driver.status()
    assert status["role"] == "active" and status["transitions"] == 1
    assert "ACTIVE" in format_vrrp(status) and "-> active (operator)" in format_vrrp(status)


# --- the static driver in a real daemon --------------------------------------------------------

VIP_HOST = "127.0.0.31"


def mobileip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mobileip", *args], capture_output=True, text=True, timeout=30
    )


def test_static_standby_ignores_the_virtual_address_until_switched(tmp_path: Path) -> None:
    # The daemon listens on the virtual address itself, so every request is sent to it.
    vrrp = {"driver": "static", "role": "standby", "virtual_address": f"{VIP_HOST}/8"}
    with running_homeagent(tmp_path, VIP_HOST, vrrp=vrrp) as ha:
        status = ha.get("/api/v1/vrrp")
        assert (status["driver"], status["role"], status["transitions"]) == ("static", "standby", 0)

        client = ha.client(timeout=0.2, retries=1)
        assert client.register(60).code is None  # standby: no answer at all
        assert ha.stats()["dropped"]["standby"] == 2  # the request and its retransmission
        assert ha.bindings() == []

        control = f"{ha.control[0]}:{ha.control[1]}"
        result = mobileip("role", "active", "--control", control, "--json")
        assert result.returncode == 0, result.stderr
        assert '"role": "active"' in result.stdout
        assert client.register(60).code == 0
        assert len(ha.bindings()) == 1

        shown = mobileip("show", "vrrp", "--control", control)
        assert shown.returncode == 0, shown.stderr
        assert "Role ACTIVE (operator), driver static" in shown.stdout
        assert "dropped as standby 2" in shown.stdout

        # back to standby through the API itself
        data = post_json(ha.control, "/api/v1/role", {"role": "standby"})
        assert isinstance(data, dict) and data["role"] == "standby" and data["transitions"] == 2
        assert client.register(60).code is None
        assert ha.stats()["dropped"]["standby"] == 4
        assert "role.changed role=standby reason=operator driver=static" in ha.log()


def test_role_api_rejects_bad_requests(tmp_path: Path) -> None:
    vrrp = {"driver": "static", "role": "active"}
    with running_homeagent(tmp_path, vrrp=vrrp) as ha:
        for body in ({"role": "master"}, {}, ["active"], "active"):
            with pytest.raises(ControlError, match="HTTP 400"):
                post_json(ha.control, "/api/v1/role", body)
        assert ha.get("/api/v1/vrrp")["role"] == "active"
        control = f"{ha.control[0]}:{ha.control[1]}"
        bad = mobileip("role", "master", "--control", control)
        assert bad.returncode == 2
        # without a virtual address an active member answers every request
        assert ha.client().register(60).code == 0


def test_role_api_refuses_to_override_an_elected_role(tmp_path: Path) -> None:
    fifo = tmp_path / "notify.fifo"
    vrrp = {"driver": "keepalived", "notify_fifo": str(fifo), "instance": "VI_1"}
    with running_homeagent(tmp_path, vrrp=vrrp) as ha:
        with pytest.raises(ControlError, match="HTTP 409"):
            post_json(ha.control, "/api/v1/role", {"role": "active"})
        # keepalived says MASTER through the FIFO: we follow
        with open(fifo, "w") as f:
            f.write('INSTANCE "VI_1" MASTER 110\n')
        for _ in range(100):
            status = ha.get("/api/v1/vrrp")
            if status["role"] == "active":
                break
            time.sleep(0.05)
        assert status["role"] == "active" and status["priority"]["advertised"] == 110
        assert ha.client().register(60).code == 0


def test_role_cli_reports_an_unreachable_daemon() -> None:
    result = mobileip("role", "active", "--control", "127.0.0.1:1")
    assert result.returncode == 4
    assert "cannot connect" in result.stderr
