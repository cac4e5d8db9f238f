"""Per-group pools: ``[[group.pool]]`` (docs/pools.md). Each group of a ``[[group]]`` daemon has its
own pools, disjoint from every other group's, so two groups (each with its own active member)
never hand out the same address, even in a split brain of one group. Config errors name the
group's pool table and its line; a real groups daemon hands each group's mobile nodes addresses
from that group's pool, shows them under ``/group/NAME/api/v1/pools``, and SIGHUP reloads them."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest
from helpers import DaemonHandle, free_port, wait_until
from test_multigroup import group_file, shared, start

from mobileip.agents.client import MobileNode, RegistrationClient, fetch_json, post_json
from mobileip.config import ConfigError, parse_config
from mobileip.core.security import SecurityAssociation

NAI_SPI, NAI_KEY = 600, "77" * 16
NAI_SA = SecurityAssociation(NAI_SPI, "hmac-md5", bytes.fromhex(NAI_KEY), ())
A = IPv4Address


def top(host: str = "127.0.0.1", port: int = 434, control: int = 8434) -> dict[str, Any]:
    cfg = shared(host, port, control)
    cfg["security_association"].append(
        {"spi": NAI_SPI, "key": NAI_KEY, "nai": "*@pool.test", "pool": "subs"}
    )
    return cfg


def groups(p1: dict[str, Any], p2: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"name": "g1", "homeagent": {"address": "10.9.1.1"}, "pool": [p1]},
        {"name": "g2", "homeagent": {"address": "10.9.2.1"}, "pool": [p2]},
    ]


def test_each_group_parses_its_own_pools() -> None:
    text = group_file(
        top(),
        groups(
            {"name": "subs", "network": "10.1.128.0/29"},
            {"name": "subs", "first": "10.1.129.1", "last": "10.1.129.4"},
        ),
    )
    assert "[[group.pool]]" in text
    config = parse_config(text, "g.toml")
    assert config.pools == ()
    g1, g2 = config.groups
    assert [(p.name, str(p.first), str(p.last)) for p in g1.config.pools] == [
        ("subs", "10.1.128.1", "10.1.128.6")
    ]
    assert [(p.name, str(p.first), str(p.last)) for p in g2.config.pools] == [
        ("subs", "10.1.129.1", "10.1.129.4")
    ]


def error(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "g.toml")
    return str(info.value)


def line_of(text: str, start: str, nth: int = 0) -> int:
    return [i for i, ln in enumerate(text.splitlines(), 1) if ln.startswith(start)][nth]


def test_pools_of_two_groups_may_not_overlap_and_errors_say_where() -> None:
    text = group_file(
        top(),
        groups(
            {"name": "subs", "network": "10.1.128.0/24"},
            {"name": "subs", "network": "10.1.128.128/25"},
        ),
    )
    line = line_of(text, 'network = "10.1.128.128/25"')
    assert error(text) == (
        f"g.toml: line {line}: group.pool[1].network: overlaps group.pool[0] ('subs')"
    )
    text = group_file(top(), groups({"name": "subs", "network": "x"}, {"name": "subs"}))
    assert error(text).startswith(f"g.toml: line {line_of(text, 'network')}: group.pool[0].network")
    text = group_file(top(), groups({"name": "subs", "network": "10.1.128.0/24"}, {"name": "subs"}))
    second = line_of(text, "[[group.pool]]", 1)
    assert (
        error(text)
        == f"g.toml: line {second}: [group.pool[1]]: needs network (a prefix), or first and last"
    )


def test_an_sa_pool_must_exist_in_some_group_and_top_level_pool_is_refused() -> None:
    cfg = top()
    cfg["security_association"][-1]["pool"] = "other"
    text = group_file(
        cfg,
        groups(
            {"name": "subs", "network": "10.1.128.0/29"}, {"name": "x", "network": "10.1.9.0/29"}
        ),
    )
    assert "security_association[1].pool: no [[pool]] is named 'other'" in error(text)
    cfg = top()
    cfg["pool"] = [{"name": "subs", "network": "10.1.128.0/29"}]
    assert "[[pool]]: not with [[group]]: give each group its own [[group.pool]]" in error(
        group_file(
            cfg,
            groups(
                {"name": "a", "network": "10.1.7.0/29"}, {"name": "b", "network": "10.1.8.0/29"}
            ),
        )
    )


@pytest.fixture
def daemons() -> Iterator[list[DaemonHandle]]:
    started: list[DaemonHandle] = []
    yield started
    for h in started:
        h.stop(signal.SIGKILL)


def register(h: DaemonHandle, nai: str, group_address: str) -> tuple[int | None, IPv4Address]:
    mn = MobileNode(A("0.0.0.0"), A("192.0.2.10"), A(group_address), NAI_SA, nai=nai.encode())
    with RegistrationClient(mn, h.address, timeout=0.4, retries=3) as client:
        result = client.register(600)
    return result.code, A(result.home_address or "0.0.0.0")


def test_a_groups_daemon_hands_out_each_groups_own_addresses(
    tmp_path: Path, daemons: list[DaemonHandle]
) -> None:
    host, port, control = "127.0.0.1", free_port(), free_port()
    text = group_file(
        top(host, port, control),
        groups(
            {"name": "subs", "first": "10.1.128.1", "last": "10.1.128.2"},
            {"name": "subs", "first": "10.1.129.1", "last": "10.1.129.2"},
        ),
    )
    h = start(tmp_path, "pools", text, host, port, control)
    daemons.append(h)
    try:
        assert register(h, "a@pool.test", "10.9.1.1") == (0, A("10.1.128.1"))
        assert register(h, "b@pool.test", "10.9.2.1") == (0, A("10.1.129.1"))
        assert register(h, "c@pool.test", "10.9.2.1") == (0, A("10.1.129.2"))
        assert register(h, "d@pool.test", "10.9.2.1")[0] == 130  # g2's pool is full
        assert register(h, "d@pool.test", "10.9.1.1") == (0, A("10.1.128.2"))  # g1's is not

        def in_use(group: str) -> list[tuple[str, int, int]]:
            data = fetch_json(h.control, f"/group/{group}/api/v1/pools")
            assert isinstance(data, dict)
            return [(p["first"], p["size"], p["in_use"]) for p in data["pools"]]

        assert in_use("g1") == [("10.1.128.1", 2, 2)]
        assert in_use("g2") == [("10.1.129.1", 2, 2)]

        # SIGHUP: g2's pool grows; g1's stays
        h.config_path.write_text(
            group_file(
                top(host, port, control),
                groups(
                    {"name": "subs", "first": "10.1.128.1", "last": "10.1.128.2"},
                    {"name": "subs", "first": "10.1.129.1", "last": "10.1.129.3"},
                ),
            )
        )
        h.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: in_use("g2") == [("10.1.129.1", 3, 2)], 10, "g2's pool to grow")
        assert in_use("g1") == [("10.1.128.1", 2, 2)]
        assert register(h, "e@pool.test", "10.9.2.1") == (0, A("10.1.129.3"))
        assert "ha_group=g2" in h.log() and "event=pools.reloaded" in h.log()
        # a group's own POST /group/g1/api/v1/reload reads the whole file and takes g1's part
        h.config_path.write_text(
            group_file(
                top(host, port, control),
                groups(
                    {"name": "subs", "first": "10.1.128.1", "last": "10.1.128.4"},
                    {"name": "subs", "first": "10.1.129.1", "last": "10.1.129.3"},
                ),
            )
        )
        answer = post_json(h.control, "/group/g1/api/v1/reload")
        assert answer["ok"], answer
        assert in_use("g1") == [("10.1.128.1", 4, 2)]
        assert in_use("g2") == [("10.1.129.1", 3, 3)]
    except BaseException:
        print(h.log())
        raise
