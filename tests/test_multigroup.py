"""Several groups in one daemon ([[group]], docs/load-sharing.md): config, routing, per-group sync.

The daemons run as real ``mobileip homeagent`` processes on 127.0.0.x; each group has its own
binding table, its own sync port and its own control API under ``/group/NAME/``.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import pytest
from helpers import KEY, SPI, DaemonHandle, free_port, wait_for_control, wait_until

from mobileip.agents.client import (
    ControlError,
    MobileNode,
    RegistrationClient,
    check_reply,
    fetch_json,
)
from mobileip.config import ConfigError, load_config, parse_config, to_toml
from mobileip.core.dynamic_ha import dynamic_request, redirected_to
from mobileip.core.replay import ntp_from_unix
from mobileip.core.security import SecurityAssociation

PREFIX = "10.1.0.0/16"
SYNC_KEY = "5a" * 32


def group_file(top: dict[str, Any], groups: list[dict[str, Any]]) -> str:
    """TOML text: the shared sections, then one [[group]] with [group.X] tables per group."""
    text = to_toml(top)
    for g in groups:
        text += f'\n[[group]]\nname = "{g["name"]}"\n'
        for section, body in g.items():
            if section != "name":
                text += "\n" + to_toml({section: body}).replace(
                    f"[{section}]", f"[group.{section}]"
                )
    return text


def shared(host: str, port: int, control: int) -> dict[str, Any]:
    return {
        "homeagent": {"address": host, "listen": host, "port": port},
        "security_association": [
            {"spi": SPI, "algorithm": "hmac-md5", "key": KEY, "home_addresses": [PREFIX]}
        ],
        "control": {"listen": f"{host}:{control}"},
    }


# --- configuration ------------------------------------------------------------------------------

GOOD = [
    {"name": "g1", "homeagent": {"address": "10.9.1.1", "max_bindings": 10}},
    {
        "name": "g2",
        "homeagent": {"address": "10.9.2.1"},
        "vrrp": {"driver": "static", "role": "standby", "virtual_address": "10.9.2.100/24"},
        "redundancy": {"node_id": "10.0.0.1", "port": 4342, "spi": 1000, "key": SYNC_KEY,
                       "peers": ["10.0.0.2:4342"]},
        "dynamic_ha": {"redirect_above": 0.8, "peers": ["10.9.1.100"]},
    },
]  # fmt: skip


def test_two_groups_parse_into_whole_configs_sharing_socket_control_and_sas() -> None:
    config = parse_config(group_file(shared("127.0.0.1", 434, 8434), GOOD), "two.toml")
    g1, g2 = config.groups
    assert (g1.name, str(g1.address), g1.config.homeagent.max_bindings) == ("g1", "10.9.1.1", 10)
    assert str(g2.address) == "10.9.2.100"  # the virtual address names the group
    for g in (g1, g2):
        assert g.config.security_associations == config.security_associations
        assert g.config.control == config.control
        assert g.config.homeagent.port == 434 and str(g.config.homeagent.listen) == "127.0.0.1"
    assert g1.config.redundancy is None and g2.config.redundancy is not None
    assert g2.config.dynamic_ha is not None and g2.config.dynamic_ha.redirect_above == 0.8
    assert [str(p) for p in g2.config.dynamic_ha.peers] == ["10.9.1.100"]


def bad(groups: list[dict[str, Any]], **top: Any) -> str:
    base = shared("127.0.0.1", 434, 8434)
    base.update(top)
    with pytest.raises(ConfigError) as info:
        parse_config(group_file(base, groups), "bad.toml")
    return str(info.value)


def test_group_errors_name_the_group_key_and_line() -> None:
    text = group_file(
        shared("127.0.0.1", 434, 8434), [GOOD[0], {**GOOD[1], "homeagent": {"address": "x"}}]
    )
    with pytest.raises(ConfigError) as info:
        parse_config(text, "bad.toml")
    line = next(i for i, ln in enumerate(text.splitlines(), 1) if ln.startswith('address = "x"'))
    assert (
        str(info.value)
        == f"bad.toml: line {line}: group.homeagent[1].address: 'x' is not an IPv4 address"
    )


G3 = {"name": "g3", "homeagent": {"address": "10.9.1.1"}}
G2_TWIN = {**GOOD[1], "name": "g3", "vrrp": {**GOOD[1]["vrrp"], "virtual_address": "10.9.3.1/24"}}
STATIC = {"driver": "static", "role": "active"}
ERRORS: list[tuple[list[dict[str, Any]], dict[str, Any], str]] = [
    ([GOOD[0], {**GOOD[0]}], {}, "name 'g1' is taken"),
    ([GOOD[0], G3], {}, "address 10.9.1.1 is taken"),
    ([{"name": "g1", "homeagent": {"port": 435}}], {}, "groups share the [homeagent] socket"),
    ([{"name": "g1", "dataplane": {}}], {}, "unknown key"),
    ([{"name": "bad name"}], {}, "use 1-32 letters"),
    ([GOOD[0]], {"vrrp": STATIC}, "[vrrp]: inside each [[group]]"),
    ([GOOD[0]], {"dataplane": {}}, "[dataplane]: not with [[group]]"),
    (
        [{**GOOD[1], "redundancy": {**GOOD[1]["redundancy"], "port": 434}}],
        {},
        "each group syncs on its own port",
    ),
    ([GOOD[1], G2_TWIN], {}, "sync port 4342 is taken"),
    ([{**GOOD[1], "dynamic_ha": {"peers": ["0.0.0.0"]}}], {}, "not a Home Agent address"),
    ([{**GOOD[1], "dynamic_ha": {"redirect_above": 0}}], {}, "out of range"),
]


@pytest.mark.parametrize(("groups", "top", "message"), ERRORS)
def test_group_config_errors(
    groups: list[dict[str, Any]], top: dict[str, Any], message: str
) -> None:
    assert message in bad(groups, **top)


# --- running daemons ----------------------------------------------------------------------------


def start(tmp: Path, name: str, text: str, host: str, port: int, control: int) -> DaemonHandle:
    path = tmp / f"{name}.toml"
    path.write_text(text)
    log_path = tmp / f"{name}.log"
    with open(log_path, "wb") as log:
        argv = [sys.executable, "-m", "mobileip", "homeagent", "--config", str(path)]
        proc = subprocess.Popen(argv, stdout=log, stderr=log)
    cfg = {"homeagent": {"listen": host, "port": port}, "control": {"listen": f"{host}:{control}"}}
    handle = DaemonHandle(proc, cfg, path, log_path)
    try:
        wait_for_control(handle)
    except BaseException:
        handle.stop(signal.SIGKILL)
        raise
    return handle


@pytest.fixture
def daemons() -> Iterator[list[DaemonHandle]]:
    started: list[DaemonHandle] = []
    yield started
    for h in started:
        h.stop(signal.SIGKILL)


def mn(home: str, ha_field: str) -> MobileNode:
    sa = SecurityAssociation(SPI, "hmac-md5", bytes.fromhex(KEY), (IPv4Network(PREFIX),))
    return MobileNode(IPv4Address(home), IPv4Address("192.0.2.10"), IPv4Address(ha_field), sa)


def register(handle: DaemonHandle, home: str, ha_field: str, to: str | None = None) -> int | None:
    dest = (to or handle.address[0], handle.port)
    with RegistrationClient(mn(home, ha_field), dest, timeout=0.5, retries=3) as client:
        return client.register(600).code


def homes(handle: DaemonHandle, group: str) -> set[str]:
    rows = fetch_json(handle.control, f"/group/{group}/api/v1/bindings")
    assert isinstance(rows, list)
    return {r["home_address"] for r in rows}


def start_two_groups(tmp_path: Path, daemons: list[DaemonHandle], name: str) -> DaemonHandle:
    """One daemon on loopback serving g1 (10.9.1.1) and g2 (10.9.2.1) on one shared socket."""
    host, port, control = "127.0.0.1", free_port(), free_port()
    text = group_file(
        shared(host, port, control),
        [*GOOD[:1], {"name": "g2", "homeagent": {"address": "10.9.2.1"}}],
    )
    h = start(tmp_path, name, text, host, port, control)
    daemons.append(h)
    return h


def test_requests_go_to_the_group_their_home_agent_field_names(
    tmp_path: Path, daemons: list[DaemonHandle]
) -> None:
    h = start_two_groups(tmp_path, daemons, "two")
    host, control = h.control
    try:
        assert register(h, "10.1.0.5", "10.9.1.1") == 0
        assert register(h, "10.1.0.6", "10.9.2.1") == 0
        assert register(h, "10.1.0.7", "10.9.2.1") == 0
        assert register(h, "10.1.0.8", "10.9.3.1") == 136  # nobody's address: first group, 136
        assert homes(h, "g1") == {"10.1.0.5"}
        assert homes(h, "g2") == {"10.1.0.6", "10.1.0.7"}
        rows = h.get("/api/v1/groups")
        assert [(r["name"], r["address"], r["bindings"], r["requests"]) for r in rows] == [
            ("g1", "10.9.1.1", 1, 2),
            ("g2", "10.9.2.1", 2, 2),
        ]
        assert h.get("/healthz") == {"status": "ok", "groups": {"g1": 1, "g2": 2}}
        stats = h.get("/group/g1/api/v1/stats")
        assert stats["replies"] == {"0": 1, "136": 1}
        with pytest.raises(ControlError):
            h.get("/group/g9/api/v1/bindings")
        show = subprocess.run(
            [sys.executable, "-m", "mobileip", "show", "groups", "--control", f"{host}:{control}"],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout  # fmt: skip
        assert "g1" in show and "10.9.2.1" in show
        one = subprocess.run(
            [sys.executable, "-m", "mobileip", "show", "bindings", "--json", "--group", "g2",
             "--control", f"{host}:{control}"],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout  # fmt: skip
        assert {r["home_address"] for r in json.loads(one)} == {"10.1.0.6", "10.1.0.7"}
        assert "ha_group=g2" in h.log() and "event=groups.started" in h.log()
    except BaseException:
        print(h.log())
        raise


def test_each_group_syncs_its_own_table_to_its_own_peers(
    tmp_path: Path, daemons: list[DaemonHandle]
) -> None:
    """Two daemons, two groups each; a registration in g1 reaches the peer's g1 table only."""
    hosts = ["127.0.0.2", "127.0.0.3"]
    port, control, sync1, sync2 = free_port(), free_port(), free_port(), free_port()
    handles = []
    for i, host in enumerate(hosts):
        peer = hosts[1 - i]
        groups = []
        for name, addr, sport in (("g1", "10.9.1.1", sync1), ("g2", "10.9.2.1", sync2)):
            groups.append({
                "name": name,
                "homeagent": {"address": addr},
                "redundancy": {"node_id": host, "port": sport, "spi": 1000, "key": SYNC_KEY,
                               "peers": [f"{peer}:{sport}"], "boot_wait": 0.2,
                               "digest_interval": 0.3},
            })  # fmt: skip
        text = group_file(shared(host, port, control), groups)
        handles.append(start(tmp_path, f"ha{i}", text, host, port, control))
        daemons.append(handles[-1])
    a, b = handles
    try:
        wait_until(
            lambda: all(r["synced"] for h in handles for r in h.get("/api/v1/groups")), 15, "SYNCED"
        )
        assert register(a, "10.1.0.5", "10.9.1.1") == 0
        assert register(b, "10.1.0.6", "10.9.2.1") == 0
        wait_until(lambda: homes(b, "g1") == {"10.1.0.5"}, 10, "g1 binding on b")
        wait_until(lambda: homes(a, "g2") == {"10.1.0.6"}, 10, "g2 binding on a")
        assert homes(a, "g1") == {"10.1.0.5"} and homes(b, "g2") == {"10.1.0.6"}
        red = b.get("/group/g1/api/v1/redundancy")
        assert red["state"] == "SYNCED"
        # b knows a's g1 binding: a newer identification from the same mobile node is accepted
        with RegistrationClient(mn("10.1.0.5", "10.9.1.1"), b.address, timeout=0.5) as client:
            assert client.register(600).code == 0
    except BaseException:
        print(a.log(), b.log())
        raise


def test_a_loaded_group_redirects_new_mobile_nodes_to_the_other_group(
    tmp_path: Path, daemons: list[DaemonHandle]
) -> None:
    """RFC 4433 between groups: g1 (load 1/2 reaches redirect_above) sends newcomers to g2."""
    host, port, control = "127.0.0.1", free_port(), free_port()
    groups = [
        {
            "name": "g1",
            "homeagent": {"address": "10.9.1.1", "max_bindings": 2},
            "dynamic_ha": {"redirect_above": 0.5, "peers": ["10.9.2.1"]},
        },
        {"name": "g2", "homeagent": {"address": "10.9.2.1"}, "dynamic_ha": {}},
    ]
    h = start(tmp_path, "dyn", group_file(shared(host, port, control), groups), host, port, control)
    daemons.append(h)

    def exchange(data: bytes) -> bytes:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(1.0)
            s.sendto(data, (host, port))
            return s.recvfrom(2048)[0]

    try:
        got = {}
        for home in ("10.1.0.5", "10.1.0.6"):
            node = mn(home, "255.255.255.255")
            ident = ntp_from_unix(time.time())
            req = dynamic_request(node.home_address, node.care_of_address, node.sa, 600, ident)
            check = check_reply(node, exchange(req), ident)
            assert check.ok and check.reply is not None, check.error
            target = redirected_to(check.reply)
            if target is not None:
                ident += 1
                req = dynamic_request(
                    node.home_address, node.care_of_address, node.sa, 600, ident, target
                )
                check = check_reply(node, exchange(req), ident)
                assert check.ok and check.reply is not None, check.error
            assert check.reply.code == 0
            got[home] = (str(check.reply.home_agent), target)
        assert got == {
            "10.1.0.5": ("10.9.1.1", None),
            "10.1.0.6": ("10.9.2.1", IPv4Address("10.9.2.1")),
        }
        assert homes(h, "g1") == {"10.1.0.5"} and homes(h, "g2") == {"10.1.0.6"}
        rows = {r["name"]: r for r in h.get("/api/v1/groups")}
        assert rows["g1"]["dynamic_ha"]["counters"]["redirected"] == 1
        assert rows["g2"]["dynamic_ha"]["counters"]["assigned-requested"] == 1
    except BaseException:
        print(h.log())
        raise


def test_the_example_two_groups_file_is_valid() -> None:
    path = Path(__file__).parent.parent / "examples" / "two-groups.toml"
    config = load_config(path)
    assert [(g.name, str(g.address)) for g in config.groups] == [
        ("g1", "10.1.0.101"),
        ("g2", "10.1.0.102"),
    ]
    prios = [g.config.vrrp.priority for g in config.groups if g.config.vrrp is not None]
    assert prios == [200, 100]
    dyn = [g.config.dynamic_ha for g in config.groups]
    assert [str(d.peers[0]) for d in dyn if d is not None] == ["10.1.0.102", "10.1.0.101"]


@pytest.mark.root
def test_a_groups_daemon_drops_privileges_too(tmp_path: Path, daemons: list[DaemonHandle]) -> None:
    from mobileip.daemon.privileges import KEEP, capability_sets, keep_mask

    h = start_two_groups(tmp_path, daemons, "caps")
    assert register(h, "10.1.0.5", "10.9.1.1") == 0  # serves after the drop
    wait_until(lambda: "homeagent.privileges" in h.log(), 5, "the privileges log line")
    assert capability_sets(h.proc.pid)["CapEff"] == keep_mask(KEEP)
