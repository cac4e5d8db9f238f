"""``[revocation]`` in the config file: parsed with located errors, and built into the daemon by
the composition root (RFC 3543; the protocol itself: test_revocation_*.py)."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from mobileip.compose.homeagent import build_home_agent
from mobileip.config import ConfigError, parse_config
from mobileip.wire.revocation import TYPE_REVOCATION_ACK

BASE = """\
[homeagent]
address = "10.1.0.1"

[[security_association]]
spi = 256
key = "00112233445566778899aabbccddeeff"
home_addresses = ["10.1.0.0/24"]
"""

REVOCATION = """
[revocation]
inform = false
initial_timeout = 0.5

[[revocation.peer]]
address = "10.2.0.1"
spi = 4096
key = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"

[[revocation.peer]]
address = "10.3.0.1"
spi = 4097
algorithm = "prefix-suffix-md5"
key = "00112233445566778899aabbccddeeff"
"""


def error_of(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "ha.toml")
    return str(info.value)


def test_section_parsed() -> None:
    rev = parse_config(BASE + REVOCATION).revocation
    assert rev is not None
    assert [p.address for p in rev.peers] == [IPv4Address("10.2.0.1"), IPv4Address("10.3.0.1")]
    assert rev.peers[1].algorithm == "prefix-suffix-md5"
    assert rev.peers[0].key == bytes.fromhex("0f1e2d3c4b5a69788796a5b4c3d2e1f0")
    assert (rev.inform, rev.initial_timeout, rev.max_timeout, rev.max_attempts) == (
        False,
        0.5,
        8.0,
        5,
    )
    assert parse_config(BASE).revocation is None


def test_errors_name_file_key_and_line() -> None:
    text = BASE + REVOCATION.replace('address = "10.3.0.1"', 'address = "10.3.0"')
    line = text.splitlines().index('address = "10.3.0"') + 1
    assert error_of(text) == (
        f"ha.toml: line {line}: revocation.peer[1].address: '10.3.0' is not an IPv4 address"
    )
    twice = BASE + REVOCATION.replace("10.3.0.1", "10.2.0.1")
    assert "revocation.peer[1].address: 10.2.0.1 is also revocation.peer[0]" in error_of(twice)
    assert "needs at least one [[revocation.peer]]" in error_of(BASE + "[revocation]\n")
    unknown = BASE + REVOCATION.replace("spi = 4096", "spi = 4096\ncolour = 1")
    assert "revocation.peer[0].colour: unknown key" in error_of(unknown)
    small = BASE + REVOCATION.replace(
        "initial_timeout = 0.5", "initial_timeout = 0.5\nmax_timeout = 0.1"
    )
    assert "revocation.max_timeout" in error_of(small)


def test_composition_root_attaches_the_service() -> None:
    without = build_home_agent(parse_config(BASE)).daemon
    assert TYPE_REVOCATION_ACK not in without.type_handlers
    daemon = build_home_agent(parse_config(BASE + REVOCATION)).daemon
    assert TYPE_REVOCATION_ACK in daemon.type_handlers
    assert len(daemon.reply_filters) == 1 and len(daemon.cleared_hooks) == 1


def test_replication_keys() -> None:
    rev = parse_config(BASE + REVOCATION).revocation
    assert rev is not None and rev.replicate_hold == 0.5 and rev.revoke_on_key_removal
    text = REVOCATION.replace(
        "initial_timeout = 0.5",
        "initial_timeout = 0.5\nreplicate_hold = 0\nrevoke_on_key_removal = false",
    )
    rev = parse_config(BASE + text).revocation
    assert rev is not None and rev.replicate_hold == 0.0 and not rev.revoke_on_key_removal
    bad = REVOCATION.replace("initial_timeout = 0.5", "initial_timeout = 0.5\nreplicate_hold = 11")
    assert "replicate_hold" in error_of(BASE + bad)
