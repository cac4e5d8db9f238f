"""VRRPv3 advertisement codec (RFC 5798 section 5)."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mobileip.wire import vrrp
from mobileip.wire.errors import DecodeError

SRC = IPv4Address("10.0.0.1")
DST = vrrp.MULTICAST_GROUP
VIP = IPv4Address("10.0.0.100")

# Built by hand: VRID 51, priority 100, one address, interval 100 cs, from 10.0.0.1 to 224.0.0.18.
# Pseudo-header words 0a00 0001 e000 0012 0070 000c sum to 0xea8f; message words
# 3133 6401 0064 0000 0a00 0064 add 0x9ffc: 0x18a8b -> folded 0x8a8c -> checksum 0x7573.
GOLDEN = bytes.fromhex("3133 6401 0064 7573 0a00 0064")
# The same message with a v2-style checksum (no pseudo-header): ~0x9ffc = 0x6003.
GOLDEN_V2 = bytes.fromhex("3133 6401 0064 6003 0a00 0064")
GOLDEN_ADV = vrrp.Advertisement(vrid=51, priority=100, max_advert_interval=100, addresses=(VIP,))


def test_encode_matches_hand_built_vector() -> None:
    assert vrrp.encode(GOLDEN_ADV, SRC, DST) == GOLDEN


def test_decode_hand_built_vector() -> None:
    assert vrrp.decode(GOLDEN, SRC, DST) == GOLDEN_ADV


def test_v2_checksum_vector() -> None:
    assert vrrp.encode(GOLDEN_ADV, SRC, DST, v2_checksum=True) == GOLDEN_V2
    with pytest.raises(DecodeError) as err:
        vrrp.decode(GOLDEN_V2, SRC, DST)
    assert err.value.reason == "bad-checksum"
    assert err.value.code is None
    assert vrrp.decode(GOLDEN_V2, SRC, DST, accept_v2_checksum=True) == GOLDEN_ADV


def test_checksum_depends_on_pseudo_header() -> None:
    with pytest.raises(DecodeError, match="bad-checksum"):
        vrrp.decode(GOLDEN, IPv4Address("10.0.0.2"), DST)


def test_two_addresses_and_max_interval() -> None:
    # Priority 255 (owner), interval 4095 cs, two addresses; reserved bits in front of the
    # interval are sent as zero and ignored on receipt.
    adv = vrrp.Advertisement(1, 255, 4095, (IPv4Address("192.0.2.1"), IPv4Address("192.0.2.2")))
    data = vrrp.encode(adv, SRC)
    assert data[:6] == bytes.fromhex("3101 ff02 0fff")
    assert len(data) == 16
    assert vrrp.decode(data, SRC) == adv
    with_reserved = bytearray(data)
    with_reserved[4] |= 0xF0
    # Setting reserved bits changes the checksum, so fix it up and check they are ignored.
    with_reserved[6:8] = b"\x00\x00"
    csum = vrrp.internet_checksum(vrrp.pseudo_header(SRC, DST, 16) + bytes(with_reserved))
    with_reserved[6:8] = csum.to_bytes(2, "big")
    assert vrrp.decode(bytes(with_reserved), SRC) == adv


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "truncated"),
        (GOLDEN[:7], "truncated"),
        (bytes.fromhex("2133 6401 0064 0000 0a00 0064"), "bad-version"),
        (bytes.fromhex("3233 6401 0064 0000 0a00 0064"), "bad-type"),
        (bytes.fromhex("3100 6401 0064 0000 0a00 0064"), "bad-vrid"),
        (GOLDEN[:10], "bad-length"),
        (GOLDEN + b"\x00\x00\x00\x00", "bad-length"),
        (bytes.fromhex("3133 6401 f000 0000 0a00 0064"), "bad-interval"),
        (GOLDEN[:6] + b"\x00\x00" + GOLDEN[8:], "bad-checksum"),
    ],
)
def test_decode_rejects(data: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as err:
        vrrp.decode(data, SRC)
    assert err.value.reason == reason
    assert err.value.code is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"vrid": 0},
        {"vrid": 256},
        {"priority": 256},
        {"priority": -1},
        {"max_advert_interval": 0},
        {"max_advert_interval": 4096},
    ],
)
def test_advertisement_validates_fields(kwargs: dict[str, int]) -> None:
    fields: dict[str, object] = {
        "vrid": 1,
        "priority": 100,
        "max_advert_interval": 100,
        "addresses": (),
    }
    fields.update(kwargs)
    with pytest.raises(ValueError):
        vrrp.Advertisement(**fields)  # type: ignore[arg-type]


@given(st.binary(max_size=64), st.booleans())
def test_decode_any_bytes_gives_message_or_decode_error(data: bytes, v2: bool) -> None:
    try:
        adv = vrrp.decode(data, SRC, accept_v2_checksum=v2)
    except DecodeError:
        return
    assert isinstance(adv, vrrp.Advertisement)


addresses = st.lists(st.integers(0, 2**32 - 1).map(IPv4Address), max_size=20).map(tuple)


@given(
    st.integers(1, 255),
    st.integers(0, 255),
    st.integers(1, 4095),
    addresses,
    st.integers(0, 2**32 - 1).map(IPv4Address),
)
def test_roundtrip(
    vrid: int, prio: int, interval: int, addrs: tuple[IPv4Address, ...], src: IPv4Address
) -> None:
    adv = vrrp.Advertisement(vrid, prio, interval, addrs)
    data = vrrp.encode(adv, src)
    assert vrrp.decode(data, src) == adv
    # Any single flipped bit is caught (by the checksum or a structural check).
    for i in range(len(data)):
        broken = bytearray(data)
        broken[i] ^= 0x01
        with pytest.raises(DecodeError):
            vrrp.decode(bytes(broken), src)
