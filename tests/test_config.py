"""The configuration loader: defaults, validation, and errors that say file, key and line."""

from __future__ import annotations

import tomllib
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path

import pytest

from mobileip.config import (
    ConfigError,
    Peer,
    build_core_settings,
    load_config,
    parse_config,
    to_toml,
)
from mobileip.core.homeagent import HomeAgentCore

ROOT = Path(__file__).resolve().parents[1]

MINIMAL = """\
[homeagent]
address = "10.1.0.1"

[[security_association]]
spi = 256
key = "00112233445566778899aabbccddeeff"
home_addresses = ["10.1.0.0/24"]
"""

REDUNDANCY = """
[redundancy]
listen = "10.1.0.11"
port = 4341
peers = ["10.1.0.12", "10.1.0.13:4342"]
spi = 1000
key = "abcdef0123456789"
mode = "semisync"
semisync_timeout = 0.25
"""


def error_of(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "ha.toml")
    return str(info.value)


def line_of(text: str, needle: str, nth: int = 1) -> int:
    """The line of the ``nth`` line containing ``needle`` (-1: the last)."""
    hits = [i for i, line in enumerate(text.splitlines(), 1) if needle in line]
    return hits[nth - 1] if nth > 0 else hits[nth]


def test_example_config_is_valid() -> None:
    config = load_config(ROOT / "examples" / "homeagent.toml")
    assert config.homeagent.address == IPv4Address("10.1.0.1")
    assert config.homeagent.port == 434
    assert config.control.port == 8434
    assert config.security_associations[0].home_addresses == (IPv4Network("10.1.0.0/24"),)


def test_defaults() -> None:
    config = parse_config(MINIMAL)
    ha = config.homeagent
    assert (ha.listen, ha.port, ha.max_lifetime, ha.replay) == (
        IPv4Address("0.0.0.0"),
        434,
        1800,
        "timestamp",
    )
    assert (ha.replay_window, ha.max_bindings, ha.max_simultaneous) == (7.0, 1_000_000, 5)
    sa = config.security_associations[0]
    assert (sa.spi, sa.algorithm, sa.key) == (
        256,
        "hmac-md5",
        bytes.fromhex("00112233445566778899aabbccddeeff"),
    )
    assert (config.control.host, config.control.port, config.control.token) == (
        "127.0.0.1",
        8434,
        None,
    )
    assert config.redundancy is None and config.vrrp is None


def test_builds_the_core() -> None:
    text = MINIMAL.replace('address = "10.1.0.1"', 'address = "10.1.0.1"\nmax_lifetime = 60')
    text += '\n[vrrp]\ndriver = "static"\nrole = "active"\nvirtual_address = "10.1.0.100/24"\n'
    text += REDUNDANCY
    settings, sas = build_core_settings(parse_config(text))
    assert settings.max_lifetime == 60
    assert settings.our_addresses() == {IPv4Address("10.1.0.1"), IPv4Address("10.1.0.100")}
    assert settings.node_id == int(IPv4Address("10.1.0.11"))
    sa = sas.get(256)
    assert sa is not None and sa.covers(IPv4Address("10.1.0.9"))
    assert sas.get(257) is None
    HomeAgentCore(settings, sas)  # the core accepts them


@pytest.mark.parametrize(
    ("old", "new", "key", "what"),
    [
        ('address = "10.1.0.1"', 'address = "10.1.0"', "homeagent.address", "not an IPv4 address"),
        ('address = "10.1.0.1"', "address = 7", "homeagent.address", "must be a string"),
        ("spi = 256", "spi = 255", "security_association[0].spi", "out of range"),
        ("spi = 256", 'spi = "256"', "security_association[0].spi", "must be an integer"),
        ('key = "0011', 'key = "zz11', "security_association[0].key", "not valid hex"),
        ('["10.1.0.0/24"]', '["10.1.0.1/24"]', "security_association[0].home_addresses", "prefix"),
        ('["10.1.0.0/24"]', "[]", "security_association[0].home_addresses", "at least one"),
        (
            "spi = 256",
            "spi = 256\nalgorithm = 'sha1'",
            "security_association[0].algorithm",
            "not one of",
        ),
        ("spi = 256", "spi = 256\ncolour = 'red'", "security_association[0].colour", "unknown key"),
    ],
)
def test_errors_name_file_key_and_line(old: str, new: str, key: str, what: str) -> None:
    text = MINIMAL.replace(old, new)
    assert text != MINIMAL
    message = error_of(text)
    needle = new.splitlines()[-1].split("=")[0].strip()
    assert message.startswith(f"ha.toml: line {line_of(text, needle)}: {key}: "), message
    assert what in message


def test_homeagent_key_errors() -> None:
    for key, value, what in [
        ("port", "0", "out of range"),
        ("port", "70000", "out of range"),
        ("max_lifetime", "0", "out of range"),
        ("replay", '"sequence"', "not one of"),
        ("replay_window", "-1", "out of range"),
        ("replay_window", "true", "must be a number"),
        ("max_bindings", "0", "out of range"),
        ("max_simultaneous", "1.5", "must be an integer"),
        ("listen", '"::"', "not an IPv4 address"),
        ("bogus", "1", "unknown key"),
    ]:
        text = MINIMAL.replace("[homeagent]\n", f"[homeagent]\n{key} = {value}\n")
        message = error_of(text)
        assert message.startswith(f"ha.toml: line 2: homeagent.{key}: "), message
        assert what in message


def test_missing_things_point_at_the_table_header() -> None:
    text = MINIMAL.replace('address = "10.1.0.1"\n', "")
    assert "line 1: homeagent.address: required key is missing" in error_of(text)
    text = MINIMAL.replace("spi = 256\n", "")
    assert "line 4: security_association[0].spi: required key is missing" in error_of(text)
    assert "[[security_association]]: at least one" in error_of(MINIMAL.split("\n[[")[0])
    assert "[homeagent]: required section" in error_of(MINIMAL.split("[[")[1].join(["[[", ""]))


def test_second_sa_is_indexed_and_located() -> None:
    second = MINIMAL.split("\n", 3)[3].replace("spi = 256", "spi = 300")
    second = second.replace('key = "00112233445566778899aabbccddeeff"', 'key = "00x"')
    text = MINIMAL + "\n" + second
    message = error_of(text)
    assert message.startswith(f"ha.toml: line {line_of(text, 'key =', 2)}: ")
    assert "security_association[1].key" in message
    dup = MINIMAL + "\n" + MINIMAL.split("\n", 3)[3]
    assert "duplicate SPI 256" in error_of(dup)
    assert "security_association[1].spi" in error_of(dup)


def test_toml_syntax_errors_and_unknown_sections() -> None:
    message = error_of(MINIMAL + "\n[control]\nlisten = 127.0.0.1\n")
    assert message.startswith("ha.toml: line 10: not valid TOML")
    assert "line 9: extra: unknown section" in error_of(MINIMAL + "\n[extra]\nx = 1\n")
    assert "control.listen" in error_of(MINIMAL + '\n[control]\nlisten = "localhost:80"\n')
    assert "control.listen" in error_of(MINIMAL + '\n[control]\nlisten = "127.0.0.1"\n')
    assert "control.token: must not be empty" in error_of(MINIMAL + '\n[control]\ntoken = ""\n')


def test_load_config_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing\.toml: cannot read"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bin.toml"
    bad.write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match=r"bin\.toml"):
        load_config(bad)


def test_redundancy_section() -> None:
    config = parse_config(MINIMAL + REDUNDANCY)
    red = config.redundancy
    assert red is not None
    assert red.node_id == IPv4Address("10.1.0.11")
    assert red.peers == (
        Peer(IPv4Address("10.1.0.12"), 4341),
        Peer(IPv4Address("10.1.0.13"), 4342),
    )
    assert (red.mode, red.semisync_timeout, red.algorithm) == ("semisync", 0.25, "hmac-sha256")
    assert (red.retransmit_interval, red.max_retransmits, red.boot_wait) == (0.2, 8, 1.0)
    assert (red.tombstone_ttl, red.digest_interval, red.unreachable_after) == (600.0, 1.0, 3.5)
    assert (red.max_queue, red.ttl, red.group) == (100_000, 1, None)


def test_redundancy_errors() -> None:
    any_listen = REDUNDANCY.replace('listen = "10.1.0.11"', 'listen = "0.0.0.0"')
    assert "redundancy.node_id: required when listen is 0.0.0.0" in error_of(MINIMAL + any_listen)
    ok = parse_config(
        MINIMAL + any_listen.replace("[redundancy]", '[redundancy]\nnode_id = "1.2.3.4"')
    )
    assert ok.redundancy is not None and ok.redundancy.node_id == IPv4Address("1.2.3.4")
    for old, new, key in [
        ('"10.1.0.12"', '"10.1.0.12:x"', "redundancy.peers"),
        ('"10.1.0.12"', '"host"', "redundancy.peers"),
        ('mode = "semisync"', 'mode = "sync"', "redundancy.mode"),
        ("spi = 1000", "spi = 256", "redundancy.spi"),  # clashes with the MN SA
        ('key = "abcdef0123456789"', 'key = "abc"', "redundancy.key"),
        ("port = 4341", 'group = "10.0.0.1"', "redundancy.group"),
        ("port = 4341", 'group = "224.0.0.100"', "redundancy.interface"),
        ("port = 4341", 'algorithm = "sha1"', "redundancy.algorithm"),
        ("port = 4341", "retransmit_interval = 0", "redundancy.retransmit_interval"),
        ("port = 4341", "unknown_timer = 1", "redundancy.unknown_timer"),
    ]:
        text = MINIMAL + REDUNDANCY.replace(old, new)
        message = error_of(text)
        assert f": {key}: " in message, message
        needle = new.split("=")[0].strip() if "=" in new else new
        if key == "redundancy.interface":  # missing: the table's header line
            needle = "[redundancy]"
        assert f"line {line_of(text, needle, -1)}: " in message, message
    no_peers = REDUNDANCY.replace('peers = ["10.1.0.12", "10.1.0.13:4342"]\n', "")
    assert "needs peers, a multicast group" in error_of(MINIMAL + no_peers)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            'driver = "native"\ninterface = "eth0"\nvrid = 51\npriority = 110\n'
            'advert_interval = 0.1\npreempt = false\nvirtual_address = "10.1.0.1/24"',
            {"vrid": 51, "priority": 110, "advert_interval": 0.1, "preempt": False},
        ),
        (
            'driver = "keepalived"\nnotify_fifo = "/run/k.fifo"\ninstance = "VI_1"\n'
            'track_file = "/run/mobileip.track"',
            {"instance": "VI_1", "track_file": "/run/mobileip.track"},
        ),
        ('driver = "static"\nrole = "standby"', {"role": "standby"}),
    ],
)
def test_vrrp_section(body: str, expected: dict[str, object]) -> None:
    vrrp = parse_config(MINIMAL + "\n[vrrp]\n" + body + "\n").vrrp
    assert vrrp is not None
    for key, value in expected.items():
        assert getattr(vrrp, key) == value
    if vrrp.driver == "native":
        assert vrrp.virtual_address == IPv4Interface("10.1.0.1/24")


def test_vrrp_errors() -> None:
    for body, key in [
        ('driver = "carp"', "vrrp.driver"),
        ('driver = "native"\ninterface = "eth0"\nvrid = 51', "vrrp.virtual_address"),
        (
            'driver = "native"\ninterface = "eth0"\nvrid = 0\nvirtual_address = "10.1.0.1/24"',
            "vrrp.vrid",
        ),
        ('driver = "static"', "vrrp.role"),
        ('driver = "static"\nrole = "master"', "vrrp.role"),
        ('driver = "static"\nrole = "active"\npreempt = "yes"', "vrrp.preempt"),
        ('driver = "static"\nrole = "active"\nadvert_interval = 0.001', "vrrp.advert_interval"),
        ('driver = "keepalived"\ninstance = "VI_1"', "vrrp.notify_fifo"),
    ]:
        assert f": {key}: " in error_of(MINIMAL + "\n[vrrp]\n" + body + "\n"), body


def test_to_toml_round_trips() -> None:
    data = tomllib.loads(MINIMAL + REDUNDANCY)
    data["control"] = {"listen": "127.0.0.1:9000", "token": 'quote"and\\slash'}
    assert tomllib.loads(to_toml(data)) == data
    assert parse_config(to_toml(data)).control.token == 'quote"and\\slash'
