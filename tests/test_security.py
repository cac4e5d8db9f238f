"""Mobility security associations and MN-HA authenticators (mobileip.core.security).

Expected authenticators are recomputed here with hmac/hashlib over the hand-built vectors' bytes,
independently of the code under test.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Network

import pytest
import vectors as v

from mobileip.core import security
from mobileip.wire import registration as wire
from mobileip.wire.errors import DecodeError

HMAC_SA = security.SecurityAssociation(
    v.HMAC_SPI, "hmac-md5", v.HMAC_KEY, (IPv4Network(v.HOME_PREFIX),)
)
PS_SA = security.SecurityAssociation(
    v.PS_SPI, "prefix-suffix-md5", v.PS_KEY, (IPv4Network(v.HOME_PREFIX),)
)


def hmac_md5(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.md5).digest()


def keyed_md5(key: bytes, data: bytes) -> bytes:
    return hashlib.md5(key + data + key).digest()


# (vector, offset of its MN-HA extension, independent digest function, key, SA)
CASES = [
    ("REQ_HMAC", v.REQ_HMAC_AUTH_OFFSET, hmac_md5, v.HMAC_KEY, HMAC_SA),
    ("REQ_PS", v.REQ_PS_AUTH_OFFSET, keyed_md5, v.PS_KEY, PS_SA),
    ("REQ_STALE", 24, hmac_md5, v.HMAC_KEY, HMAC_SA),
    ("REQ_FULL", 59, hmac_md5, v.HMAC_KEY, HMAC_SA),
    ("REQ_DEREG_ALL", 24, hmac_md5, v.HMAC_KEY, HMAC_SA),
    ("REP_HMAC", 37, hmac_md5, v.HMAC_KEY, HMAC_SA),
    ("REP_PS", 20, keyed_md5, v.PS_KEY, PS_SA),
    ("REP_133", 20, hmac_md5, v.HMAC_KEY, HMAC_SA),
    ("REP_DEREG", 20, hmac_md5, v.HMAC_KEY, HMAC_SA),
]


@pytest.mark.parametrize(("name", "offset", "digest", "key", "sa"), CASES)
def test_vector_authenticators(
    name: str,
    offset: int,
    digest: Callable[[bytes, bytes], bytes],
    key: bytes,
    sa: security.SecurityAssociation,
) -> None:
    data: bytes = getattr(v, name)
    # The protected bytes run through the extension's type, length and SPI (RFC 5944 3.5.1).
    protected = data[: offset + 6]
    expected = digest(key, protected)
    assert data[offset] == wire.EXT_MN_HA_AUTH
    assert data[offset + 6 : offset + 22] == expected
    assert sa.authenticator(protected) == expected
    assert security.compute_authenticator(sa.algorithm, key, protected) == expected
    msg = wire.decode(data)
    ok, ext = security.verify_auth(data, msg, wire.EXT_MN_HA_AUTH, sa)
    assert ok
    assert ext is not None and ext.spi == sa.spi and ext.authenticator == expected


@pytest.mark.parametrize(
    ("name", "offset", "sa"),
    [
        ("REQ_HMAC", v.REQ_HMAC_AUTH_OFFSET, HMAC_SA),
        ("REQ_PS", v.REQ_PS_AUTH_OFFSET, PS_SA),
        ("REP_HMAC", 37, HMAC_SA),
        ("REP_PS", 20, PS_SA),
    ],
)
def test_append_auth_rebuilds_vector(
    name: str, offset: int, sa: security.SecurityAssociation
) -> None:
    data: bytes = getattr(v, name)
    assert security.append_auth(data[:offset], wire.EXT_MN_HA_AUTH, sa) == data


def test_every_protected_byte_counts() -> None:
    data = v.REQ_HMAC
    for i in range(v.REQ_HMAC_AUTH_OFFSET + 22):
        if v.REQ_HMAC_AUTH_OFFSET <= i < v.REQ_HMAC_AUTH_OFFSET + 2:
            continue  # type/length changes make a different (or undecodable) extension
        bad = bytearray(data)
        bad[i] ^= 0x01
        try:
            msg = wire.decode(bytes(bad))
        except DecodeError:
            continue  # e.g. a damaged NAI length: the message does not even decode
        found = wire.find_auth(msg, wire.EXT_MN_HA_AUTH)
        assert found is not None
        ok, _ = security.verify_auth(bytes(bad), msg, wire.EXT_MN_HA_AUTH, HMAC_SA)
        assert not ok, f"flipping byte {i} went unnoticed"


def test_bytes_after_mn_ha_extension_are_not_covered() -> None:
    bad = bytearray(v.REQ_FULL)
    bad[-1] ^= 0xFF  # inside the FA-HA authenticator
    bad[88] ^= 0xFF  # inside the MN-FA authenticator
    msg = wire.decode(bytes(bad))
    assert security.verify_auth(bytes(bad), msg, wire.EXT_MN_HA_AUTH, HMAC_SA)[0]


def test_wrong_key_and_wrong_algorithm_fail() -> None:
    msg = wire.decode(v.REQ_HMAC)
    wrong_key = security.SecurityAssociation(256, "hmac-md5", v.PS_KEY, HMAC_SA.prefixes)
    wrong_alg = security.SecurityAssociation(256, "prefix-suffix-md5", v.HMAC_KEY, HMAC_SA.prefixes)
    assert not security.verify_auth(v.REQ_HMAC, msg, wire.EXT_MN_HA_AUTH, wrong_key)[0]
    assert not security.verify_auth(v.REQ_HMAC, msg, wire.EXT_MN_HA_AUTH, wrong_alg)[0]


def test_missing_extension() -> None:
    msg = wire.decode(v.REQ_GENAUTH_ONLY)
    assert security.verify_auth(v.REQ_GENAUTH_ONLY, msg, wire.EXT_MN_HA_AUTH, HMAC_SA) == (
        False,
        None,
    )


def test_short_authenticator_fails_cleanly() -> None:
    data = v.REQ_PS[:24] + bytes.fromhex("2008 00000101 01020304")
    msg = wire.decode(data)
    assert not security.verify_auth(data, msg, wire.EXT_MN_HA_AUTH, PS_SA)[0]


def test_unknown_algorithm() -> None:
    with pytest.raises(ValueError, match="unknown algorithm"):
        security.compute_authenticator("sha1", b"k", b"data")


def test_security_associations_lookup() -> None:
    other = security.SecurityAssociation(
        300, "hmac-md5", b"k" * 16, (IPv4Network("10.2.0.0/16"), IPv4Network("10.3.0.0/24"))
    )
    sas = security.SecurityAssociations([HMAC_SA, PS_SA, other])
    assert len(sas) == 3
    assert sas.get(256) is HMAC_SA and sas.get(257) is PS_SA and sas.get(999) is None
    assert other.covers(IPv4Address("10.2.200.1"))
    assert other.covers(IPv4Address("10.3.0.255"))
    assert not other.covers(IPv4Address("10.3.1.0"))
    assert sas.for_home(IPv4Address("10.3.0.1")) is other
    assert sas.for_home(IPv4Address("10.1.0.9")) in (HMAC_SA, PS_SA)
    assert sas.for_home(IPv4Address("192.0.2.1")) is None
    with pytest.raises(ValueError, match="duplicate SPI 256"):
        security.SecurityAssociations([HMAC_SA, HMAC_SA])
