"""wire/mac.py: HMAC with the key schedule done once, against the standard library and RFC 2202."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mobileip.wire.mac import Hmac, keyed_md5


def test_rfc2202_hmac_md5_vectors() -> None:
    assert Hmac(b"\x0b" * 16, "md5").digest(b"Hi There").hex() == (
        "9294727a3638bb1c13f48ef8158bfc9d"
    )
    assert Hmac(b"Jefe", "md5").digest(b"what do ya want for nothing?").hex() == (
        "750c783e6ab0b503eaa86e310a5db738"
    )
    # a key longer than the block is hashed first (RFC 2202 test case 6)
    msg = b"Test Using Larger Than Block-Size Key - Hash Key First"
    assert Hmac(b"\xaa" * 80, "md5").digest(msg).hex() == "6b1ab7fe4bd7bf8f0b62e6ce61b9d0cd"


@given(
    key=st.binary(max_size=150),
    msg=st.binary(max_size=300),
    name=st.sampled_from(["md5", "sha256"]),
)
def test_equals_the_standard_library(key: bytes, msg: bytes, name: str) -> None:
    mac = Hmac(key, name)
    assert mac.digest(msg) == hmac.new(key, msg, name).digest()
    assert mac.digest(msg) == mac.digest(msg)  # the prepared states are not consumed
    assert mac.digest_size == hashlib.new(name).digest_size


def test_prefix_suffix_md5_and_unsupported_hash() -> None:
    assert keyed_md5(b"k", b"msg") == hashlib.md5(b"kmsgk").digest()
    with pytest.raises(ValueError):
        Hmac(b"k", "sha512")  # 128-byte blocks: not supported
