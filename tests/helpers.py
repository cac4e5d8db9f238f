"""Start real daemons for tests: write a config, run ``python -m mobileip homeagent`` on
127.0.0.x with free ports, wait until its control API answers, and always stop it.

    with running_homeagent(tmp_path, homeagent={"max_lifetime": 2}) as ha:
        client = ha.client(home="10.1.0.5")
        assert client.register(60).code == 0
        assert ha.bindings()[0]["home_address"] == "10.1.0.5"

Other suites reuse :func:`homeagent_config`, :func:`start_homeagent` and :class:`DaemonHandle`
(e.g. several daemons with ``[redundancy]`` sections pointing at each other).
"""

from __future__ import annotations

import contextlib
import copy
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

from mobileip.agents.client import ControlError, MobileNode, RegistrationClient, fetch_json
from mobileip.config import to_toml
from mobileip.core.security import SecurityAssociation

KEY = "00112233445566778899aabbccddeeff"
SPI = 256
HA_ADDRESS = "10.1.0.1"
HOME_PREFIX = "10.1.0.0/24"
STARTUP_TIMEOUT = 15.0


def free_port(host: str = "127.0.0.1", kind: socket.SocketKind = socket.SOCK_DGRAM) -> int:
    """A port that is free on ``host`` right now (for UDP by default)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def free_udp_tcp_port(host: str = "127.0.0.1") -> int:
    """A port free for both UDP and TCP on ``host``."""
    for _ in range(50):
        port = free_port(host, socket.SOCK_DGRAM)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port")


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in extra.items():
        if value is None:
            base.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


def homeagent_config(host: str = "127.0.0.1", **sections: Any) -> dict[str, Any]:
    """A config dict for one daemon on ``host`` with free ports.

    Keyword arguments are merged into the sections (``homeagent={"replay": "nonce"}``); a value
    of None removes a key; ``security_association=[...]`` replaces the SA list.
    """
    data: dict[str, Any] = {
        "homeagent": {
            "address": HA_ADDRESS,
            "listen": host,
            "port": free_port(host),
            "max_lifetime": 1800,
            "replay": "timestamp",
        },
        "security_association": [
            {"spi": SPI, "algorithm": "hmac-md5", "key": KEY, "home_addresses": [HOME_PREFIX]}
        ],
        "control": {"listen": f"{host}:{free_port(host, socket.SOCK_STREAM)}"},
    }
    return _merge(data, sections)


def mobile_node_for(
    config: Mapping[str, Any],
    home: str = "10.1.0.5",
    coa: str = "192.0.2.10",
    *,
    sa: int = 0,
    key: str | None = None,
    ha_field: str | None = None,
) -> MobileNode:
    """A mobile node using the config's ``sa``-th SA (optionally with a different key)."""
    sa_cfg = config["security_association"][sa]
    the_sa = SecurityAssociation(
        int(sa_cfg["spi"]),
        str(sa_cfg.get("algorithm", "hmac-md5")),
        bytes.fromhex(key or sa_cfg["key"]),
        tuple(IPv4Network(p) for p in sa_cfg["home_addresses"]),
    )
    return MobileNode(
        IPv4Address(home),
        IPv4Address(coa),
        IPv4Address(ha_field or config["homeagent"]["address"]),
        the_sa,
        str(config["homeagent"].get("replay", "timestamp")),
    )


@dataclass
class DaemonHandle:
    """A running ``mobileip homeagent`` subprocess."""

    proc: subprocess.Popen[bytes]
    config: dict[str, Any]
    config_path: Path
    log_path: Path
    token: str | None = None
    clients: list[RegistrationClient] = field(default_factory=list)

    @property
    def host(self) -> str:
        return str(self.config["homeagent"]["listen"])

    @property
    def port(self) -> int:
        return int(self.config["homeagent"]["port"])

    @property
    def address(self) -> tuple[str, int]:
        host = "127.0.0.1" if self.host == "0.0.0.0" else self.host
        return host, self.port

    @property
    def control(self) -> tuple[str, int]:
        host, _, port = str(self.config["control"]["listen"]).rpartition(":")
        return host, int(port)

    def get(self, path: str) -> Any:
        return fetch_json(self.control, path, self.token)

    def bindings(self) -> list[dict[str, Any]]:
        rows = self.get("/api/v1/bindings")
        assert isinstance(rows, list)
        return rows

    def stats(self) -> dict[str, Any]:
        stats = self.get("/api/v1/stats")
        assert isinstance(stats, dict)
        return stats

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def mobile_node(self, home: str = "10.1.0.5", coa: str = "192.0.2.10", **kw: Any) -> MobileNode:
        """A mobile node for this daemon (see :func:`mobile_node_for`)."""
        return mobile_node_for(self.config, home, coa, **kw)

    def client(self, *args: Any, timeout: float = 0.3, retries: int = 2, **kw: Any) -> Any:
        """A :class:`RegistrationClient` for :meth:`mobile_node`, closed with the daemon."""
        client = RegistrationClient(
            self.mobile_node(*args, **kw), self.address, timeout=timeout, retries=retries
        )
        self.clients.append(client)
        return client

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        """Signal the daemon and wait for it; return its exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for client in self.clients:
            client.close()
        self.clients.clear()
        return int(self.proc.returncode)


def start_homeagent(
    directory: Path,
    config: dict[str, Any],
    *,
    name: str = "homeagent",
    args: tuple[str, ...] = (),
    env: Mapping[str, str] | None = None,
) -> DaemonHandle:
    """Write ``config`` to ``directory``, start the daemon, wait for its control API."""
    directory.mkdir(parents=True, exist_ok=True)
    config_path = directory / f"{name}.toml"
    config_path.write_text(to_toml(config))
    log_path = directory / f"{name}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mobileip", "homeagent", "--config", str(config_path), *args],
            stdout=log,
            stderr=log,
            env={**os.environ, **(env or {})},
        )
    token = config.get("control", {}).get("token")
    handle = DaemonHandle(proc, config, config_path, log_path, token)
    try:
        wait_for_control(handle)
    except BaseException:
        handle.stop(signal.SIGKILL)
        raise
    return handle


def wait_for_control(handle: DaemonHandle, timeout: float = STARTUP_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if handle.proc.poll() is not None:
            raise RuntimeError(
                f"daemon exited with status {handle.proc.returncode}:\n{handle.log()}"
            )
        try:
            handle.get("/healthz")
            return
        except ControlError:
            time.sleep(0.03)
    raise RuntimeError(f"daemon control API did not answer in {timeout}s:\n{handle.log()}")


@contextlib.contextmanager
def running_homeagent(
    directory: Path, host: str = "127.0.0.1", *, name: str = "homeagent", **sections: Any
) -> Iterator[DaemonHandle]:
    """A daemon for the ``with`` block, killed at the end even when the block fails."""
    handle = start_homeagent(directory, homeagent_config(host, **sections), name=name)
    try:
        yield handle
    finally:
        if handle.proc.poll() is None:
            handle.stop(signal.SIGKILL)
        else:
            handle.stop()


def wait_until(
    cond: Callable[[], bool], timeout: float, what: str, interval: float = 0.05
) -> float:
    """Poll ``cond`` until it holds; return how long that took, or fail naming ``what``."""
    start = time.monotonic()
    while not cond():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
    return time.monotonic() - start
