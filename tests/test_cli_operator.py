"""Operator surfaces for pools, NAT traversal and revocation, run as a user would: ``mobileip
register --nai``, ``mobileip show pools|nat|revocation``, ``mobileip config check`` counting
pools, the pool summary of ``GET /api/v1/status`` and the status page, and the pool changes in
the ``POST /api/v1/reload`` reply. Real daemons on loopback (``show nat``: the real control API
server and the real UDP tunnel service in this process, whose status needs a data plane)."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import time
import urllib.request
from collections.abc import Callable
from ipaddress import IPv4Address
from typing import Any

from helpers import HOME_PREFIX, KEY, SPI, DaemonHandle, free_port
from test_cli import mobileip

from mobileip.agents.client import post_json
from mobileip.config import to_toml

NAI_SPI = 600
NAI_KEY = "77" * 16
SAS = [
    {"spi": SPI, "algorithm": "hmac-md5", "key": KEY, "home_addresses": [HOME_PREFIX]},
    {"spi": NAI_SPI, "key": NAI_KEY, "nai": "*@pool.test", "pool": "p"},
]
POOL = [{"name": "p", "first": "10.9.0.1", "last": "10.9.0.3"}]


def pool_ha(homeagent: Callable[..., DaemonHandle], **sections: Any) -> DaemonHandle:
    return homeagent(security_association=SAS, pool=POOL, **sections)


def register_nai(ha: DaemonHandle, nai: str, *extra: str) -> Any:
    return mobileip(
        "register",
        "--ha",
        "{}:{}".format(*ha.address),
        "--nai",
        nai,
        "--care-of-address",
        "192.0.2.10",
        "--home-agent-address",
        "10.1.0.1",
        "--spi",
        str(NAI_SPI),
        "--key",
        NAI_KEY,
        "--timeout",
        "0.3",
        *extra,
    )


def control(ha: DaemonHandle) -> str:
    return "{}:{}".format(*ha.control)


def wait_until(what: str, check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_register_with_an_nai_gets_an_address_and_prints_it(homeagent: Any) -> None:
    ha = pool_ha(homeagent)
    first = register_nai(ha, "one@pool.test")
    assert first.returncode == 0, first.stdout + first.stderr
    assert first.stdout.startswith("code 0: registration accepted; lifetime 1800; ")
    assert "; assigned home address 10.9.0.1 " in first.stdout
    second = register_nai(ha, "two@pool.test", "--json")
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["home_address"] == "10.9.0.2"
    assert {r["home_address"] for r in ha.bindings()} == {"10.9.0.1", "10.9.0.2"}
    # the same NAI asking again (0.0.0.0) keeps its address; a renewal names it
    assert "assigned home address 10.9.0.1 " in register_nai(ha, "ONE@pool.test").stdout
    renewal = register_nai(ha, "one@pool.test", "--home-address", "10.9.0.1")
    assert renewal.returncode == 0 and "assigned" not in renewal.stdout
    # the pool runs out: 130, exit status 1
    assert register_nai(ha, "three@pool.test").returncode == 0
    full = register_nai(ha, "four@pool.test")
    assert full.returncode == 1 and full.stdout.startswith("code 130: ")
    # deregistration of the assigned address returns it to the pool
    dereg = register_nai(ha, "one@pool.test", "--home-address", "10.9.0.1", "--deregister")
    assert dereg.returncode == 0, dereg.stdout
    assert ha.get("/api/v1/pools")["pools"][0]["in_use"] == 2
    # usage errors, before anything is sent
    for bad in (
        ("--home-address", "0.0.0.0", "--nai", "a b@pool.test"),
        ("--home-address", "0.0.0.0"),
        (),
    ):
        done = mobileip(
            "register",
            "--ha",
            "{}:{}".format(*ha.address),
            "--care-of-address",
            "192.0.2.10",
            "--spi",
            str(NAI_SPI),
            "--key",
            NAI_KEY,
            *bad,
        )
        assert done.returncode == 2, (bad, done.stdout, done.stderr)
    assert "needs --nai" in mobileip(
        "register", "--ha", "127.0.0.1", "--home-address", "0.0.0.0", "--care-of-address",
        "192.0.2.10", "--spi", "600", "--key", NAI_KEY,
    ).stderr  # fmt: skip


def test_show_pools_status_summary_config_check_and_reload_changes(homeagent: Any) -> None:
    ha = pool_ha(homeagent)
    assert register_nai(ha, "one@pool.test").returncode == 0
    assert register_nai(ha, "two@pool.test").returncode == 0

    shown = mobileip("show", "pools", "--control", control(ha), "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout) == ha.get("/api/v1/pools")
    text = mobileip("show", "pools", "--control", control(ha))
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0].split() == ["Pool", "First", "Last", "Addresses", "In", "use", "Used"]
    assert lines[1].split() == ["p", "10.9.0.1", "10.9.0.3", "3", "2", "66.7%"]
    assert lines[2].startswith("Retired 0 ")
    assert lines[3] == "Assigned 2, reassigned 0, denied 0"

    def summary() -> Any:
        return ha.get("/api/v1/status")["pools"]

    wait_until(
        "the status summary",
        lambda: summary()["pools"] == [{"name": "p", "addresses": 3, "in_use": 2}],
    )
    assert summary()["retired"] == 0
    with urllib.request.urlopen(f"http://{control(ha)}/", timeout=5) as page:
        assert '<b id="pools">p 2/3 in use, 0 retired</b>' in page.read().decode()

    # the file changes: p shrinks to one address (10.9.0.2 stays with its NAI: retired), q is new
    changed = dict(ha.config, pool=[
        {"name": "p", "first": "10.9.0.1", "last": "10.9.0.1"},
        {"name": "q", "network": "10.9.1.0/29"},
    ])  # fmt: skip
    ha.config_path.write_text(to_toml(changed))
    check = mobileip("config", "check", str(ha.config_path))
    assert check.returncode == 0, check.stderr
    assert ", 2 pool(s) of 7 address(es): p=1 q=6" in check.stdout
    reply = post_json(ha.control, "/api/v1/reload")
    assert isinstance(reply, dict) and reply["ok"] is True
    assert reply["pools"] == {"added": ["q"], "removed": [], "changed": ["p"], "retired": 1}
    assert (reply["added"], reply["removed"], reply["changed"]) == ([], [], [])  # the SAs
    wait_until("the summary after the reload", lambda: summary()["retired"] == 1)
    assert summary()["pools"] == [
        {"name": "p", "addresses": 1, "in_use": 1},
        {"name": "q", "addresses": 6, "in_use": 0},
    ]
    assert "Retired 1 " in mobileip("show", "pools", "--control", control(ha)).stdout
    # a reload that changes no pool says so
    again = post_json(ha.control, "/api/v1/reload")
    assert isinstance(again, dict)
    assert again["pools"] == {"added": [], "removed": [], "changed": [], "retired": 1}


def test_a_daemon_without_pools_shows_none(homeagent: Any, tmp_path: Any) -> None:
    ha = homeagent()
    assert ha.get("/api/v1/status")["pools"] is None
    reply = post_json(ha.control, "/api/v1/reload")
    assert isinstance(reply, dict) and reply["pools"] is None
    done = mobileip("show", "pools", "--control", control(ha))
    assert done.returncode == 4 and "404" in done.stderr  # no such route: no pools here
    check = mobileip("config", "check", str(ha.config_path))
    assert check.returncode == 0 and "pool(s)" not in check.stdout


def test_show_revocation(homeagent: Any) -> None:
    # [[revocation.peer]]: to_toml writes a dotted key's array of tables as it is
    ha = homeagent(**{"revocation.peer": [{"address": "127.0.0.1", "spi": 700, "key": "55" * 16}]})
    as_json = mobileip("show", "revocation", "--control", control(ha), "--json")
    assert as_json.returncode == 0, as_json.stderr
    data = json.loads(as_json.stdout)
    assert data["summary"]["pending"] == 0 and data["pending"] == []
    text = mobileip("show", "revocation", "--control", control(ha))
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0] == "Revocation active, negotiated bindings 0, pending 0 (dormant 0), deferred 0"
    assert lines[1] == "Sent 0, retransmitted 0, acked 0, gave up 0, resumed on takeover 0"


def test_show_nat_from_the_udp_tunnel_service() -> None:
    """The tunnel service's own status over the real control API server, read by the CLI."""
    from test_nat_dataplane import HA, NAT_IP
    from tunnel_service_host import Plane, ServiceHost

    from mobileip.config import ControlConfig
    from mobileip.dataplane.backend import TunnelSpec
    from mobileip.dataplane.udp_tunnel import UdpTunnelService
    from mobileip.dataplane.userspace import UserspaceBackend
    from mobileip.web.control import ControlServer

    port = free_port(kind=socket.SOCK_STREAM)
    server = ControlServer(ControlConfig(host="127.0.0.1", port=port))
    host = ServiceHost()
    host.control = server  # type: ignore[assignment]
    backend = UserspaceBackend(lambda *a, **k: None, "x", HA, own=frozenset({HA}))
    UdpTunnelService(host, Plane(backend), HA)  # type: ignore[arg-type]
    for i, last in enumerate((9, 7)):
        home = IPv4Address(f"10.1.0.{last}")
        backend.track(TunnelSpec(home, (), (), ((NAT_IP, 40000 + i),)))

    async def cli(*args: str) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "mobileip", *args, stdout=asyncio.subprocess.PIPE
        )
        out, _ = await proc.communicate()
        assert proc.returncode is not None
        return proc.returncode, out.decode()

    async def run() -> list[tuple[int, str]]:
        await server.start()
        try:
            where = ("--control", f"127.0.0.1:{port}")
            return [await cli("show", "nat", *where), await cli("show", "nat", *where, "--json")]
        finally:
            await server.stop()

    (code, out), (json_code, json_out) = asyncio.run(run())
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0] == "UDP tunnelling NOT attached (source 10.1.0.1), NAT-ed homes 2"
    assert lines[1].split() == ["10.1.0.7", "via", f"{NAT_IP}:40001"]
    assert lines[2].split() == ["10.1.0.9", "via", f"{NAT_IP}:40000"]
    assert lines[3] == "Counters:"
    assert json_code == 0 and json.loads(json_out)["udp_homes"] == 2


def test_the_pool_summary_is_counted_at_most_once_per_max_age() -> None:
    """Bounded cost at any number of live bindings: pages polling ``/api/v1/status`` share one
    count (O(addresses in use)) per ``POOL_SUMMARY_MAX_AGE``; scripts/perf/status_pools.py
    measures it."""
    from types import SimpleNamespace

    from mobileip.core.bindings import Binding, BindingTable, MobilityRecord
    from mobileip.core.homeagent import HomeAgentStats
    from mobileip.core.pools import AddressPool, AddressPools
    from mobileip.log import Logger
    from mobileip.web.status_page import POOL_SUMMARY_MAX_AGE, StatusPage

    first = int(IPv4Address("10.9.0.1"))
    table = BindingTable()
    pools = AddressPools([AddressPool("p", first, first + 9)], table)
    counted = []
    real = pools.in_use_counts
    pools.in_use_counts = lambda: counted.append(1) or real()  # type: ignore[method-assign]
    core = SimpleNamespace(table=table, pools=pools, stats=HomeAgentStats())
    host = SimpleNamespace(
        core=core,
        control=SimpleNamespace(add_json_route=lambda *a: None),
        config=SimpleNamespace(homeagent=SimpleNamespace(address=IPv4Address("10.1.0.1"))),
        log=Logger(level="error"),
    )
    page = StatusPage(host)  # type: ignore[arg-type]
    assert page.pool_summary(100.0) == {
        "pools": [{"name": "p", "addresses": 10, "in_use": 0}],
        "retired": 0,
    }
    rec = MobilityRecord(first, 1, 1, 1, (Binding(1, 600, 1e9, 0),), 0.0, b"a@x")
    table.store(rec, 0.0)
    pools.note(rec)
    for k in range(100):  # many pages within the max age: the kept summary
        assert page.pool_summary(100.0 + k * POOL_SUMMARY_MAX_AGE / 200)["pools"][0]["in_use"] == 0
    assert len(counted) == 1
    later = page.pool_summary(100.0 + POOL_SUMMARY_MAX_AGE)
    assert later is not None and later["pools"][0]["in_use"] == 1 and len(counted) == 2
