"""``[[pool]]`` and NAI security associations: parsing, building, errors naming file/key/line."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from mobileip.config import ConfigError
from mobileip.config.build import address_pools, security_associations
from mobileip.config.load import parse_config

BASE = """\
[homeagent]
address = "10.1.128.1"

[[security_association]]
spi = 256
key = "00112233445566778899aabbccddeeff"
home_addresses = ["10.1.0.0/24"]
"""

POOLS = """
[[security_association]]
spi = 512
key = "00112233445566778899aabbccddeeff"
nai = "*@example.net"
pool = "subs"

[[security_association]]
spi = 512
key = "42424242424242424242424242424242"
nai = "bob@example.net"
pool = "subs"

[[pool]]
name = "subs"
network = "10.1.128.0/29"
exclude = ["10.1.128.2"]

[[pool]]
name = "other"
first = "10.1.129.10"
last = "10.1.129.20"
"""


def error_of(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "ha.toml")
    return str(info.value)


def line_of(text: str, needle: str, nth: int = 1) -> int:
    hits = [i for i, line in enumerate(text.splitlines(), 1) if needle in line]
    return hits[nth - 1] if nth > 0 else hits[nth]


def test_pools_and_nai_sas_parse_and_build() -> None:
    config = parse_config(BASE + POOLS, "ha.toml")
    subs, other = config.pools
    assert (subs.first, subs.last) == (IPv4Address("10.1.128.1"), IPv4Address("10.1.128.6"))
    assert (other.first, other.last) == (IPv4Address("10.1.129.10"), IPv4Address("10.1.129.20"))
    pool = address_pools(config)[0]
    # the Home Agent's own address and the excluded one are never handed out
    assert int(IPv4Address("10.1.128.1")) not in pool
    assert int(IPv4Address("10.1.128.2")) not in pool
    assert int(IPv4Address("10.1.128.3")) in pool and pool.size == 4
    sas = security_associations(config)
    assert len(sas) == 3
    chosen = sas.select(512, b"bob@example.net")
    assert chosen is not None and chosen.key == b"\x42" * 16
    realm = sas.select(512, b"Alice@Example.NET")
    assert realm is not None and realm.pool == "subs" and realm.nai == b"*@example.net"
    assert sas.select(512, None) is None and sas.get(512) is None
    assert sas.select(512, b"eve@example.org") is None


@pytest.mark.parametrize(
    ("old", "new", "key", "what", "needle", "nth"),
    [
        (
            'network = "10.1.128.0/29"',
            'network = "10.1.128.0/33"',
            "pool[0].network",
            "prefix",
            "network =",
            1,
        ),
        (
            'network = "10.1.128.0/29"',
            'network = "10.1.128.0/29"\nfirst = "10.1.128.1"',
            "pool[0].network",
            "not both",
            "network =",
            1,
        ),
        (
            'first = "10.1.129.10"',
            'first = "10.1.129.30"',
            "pool[1].last",
            "before first",
            "last =",
            1,
        ),
        (
            'exclude = ["10.1.128.2"]',
            'exclude = ["nope"]',
            "pool[0].exclude",
            "not an IPv4",
            "exclude =",
            1,
        ),
        (
            'exclude = ["10.1.128.2"]',
            'exclude = ["10.1.182.2"]',  # a typo: outside the pool, excluding nothing
            "pool[0].exclude",
            "10.1.182.2 is not in the pool (10.1.128.1 - 10.1.128.6)",
            "exclude =",
            1,
        ),
        (
            'last = "10.1.129.20"',
            'last = "10.1.129.11"\nexclude = ["10.1.129.10", "10.1.129.11"]',
            "pool[1].exclude",
            "leaves no address to hand out",
            "exclude =",
            2,
        ),
        ('name = "other"', 'name = "subs"', "pool[1].name", "also pool[0]", 'name = "subs"', 2),
        (
            'first = "10.1.129.10"',
            'first = "10.1.128.5"',
            "pool[1].first",
            "overlaps pool[0]",
            "first =",
            1,
        ),
        (
            'last = "10.1.129.20"',
            'last = "10.1.129.20"\ncolour = 1',
            "pool[1].colour",
            "unknown",
            "colour =",
            1,
        ),
        (
            'pool = "subs"',
            'pool = "nosuch"',
            "security_association[1].pool",
            "no [[pool]]",
            "pool =",
            1,
        ),
        (
            'nai = "bob@example.net"',
            'nai = "*@example.net"',
            "security_association[2].spi",
            "SPI",
            "spi =",
            3,
        ),
        (  # NAIs compare case-insensitively: this SA would never be chosen
            'nai = "bob@example.net"',
            'nai = "*@EXAMPLE.net"',
            "security_association[2].spi",
            "duplicate SPI 512 (also security_association[1])",
            "spi =",
            3,
        ),
        (
            'nai = "bob@example.net"',
            'nai = "bob smith"',
            "security_association[2].nai",
            "not an",
            "nai =",
            2,
        ),
    ],
)
def test_errors_name_file_key_and_line(
    old: str, new: str, key: str, what: str, needle: str, nth: int
) -> None:
    text = (BASE + POOLS).replace(old, new, 1)
    message = error_of(text)
    assert message.startswith(f"ha.toml: line {line_of(text, needle, nth)}: "), message
    assert f": {key}: " in message and what in message, message


def test_pool_key_needs_nai_and_nai_sa_needs_prefix_or_pool() -> None:
    text = BASE.replace('home_addresses = ["10.1.0.0/24"]', 'pool = "subs"') + POOLS
    assert "security_association[0].pool: needs nai" in error_of(text)
    text = BASE.replace('home_addresses = ["10.1.0.0/24"]', 'nai = "a@b"')
    assert "security_association[0].home_addresses: required key is missing" in error_of(text)


def test_pool_needs_network_or_range_and_not_with_groups() -> None:
    assert "[pool[0]]: needs network" in error_of(BASE + '\n[[pool]]\nname = "p"\n')
    text = BASE + '\n[[pool]]\nname = "p"\nnetwork = "10.2.0.0/24"\n\n[[group]]\nname = "g"\n'
    assert "[[pool]]: not with [[group]]" in error_of(text)
