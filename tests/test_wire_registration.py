"""Golden-vector tests of the RFC 5944 registration codec (mobileip.wire.registration)."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest
import vectors as v

from mobileip.wire import registration as wire
from mobileip.wire.errors import DecodeError, UnknownCriticalExtension


def test_flag_bits_follow_rfc_order() -> None:
    # RFC 5944 3.3: S B D M G r T x, most significant bit first.
    names = ["S", "B", "D", "M", "G", "r", "T", "x"]
    assert [wire.Flags[n].value for n in names] == [0x80, 0x40, 0x20, 0x10, 8, 4, 2, 1]


def test_decode_hmac_request_fields() -> None:
    req = wire.decode(v.REQ_HMAC)
    assert isinstance(req, wire.RegistrationRequest)
    assert req.flags == 0
    assert req.lifetime == 1800
    assert req.home_address == v.HOME
    assert req.home_agent == v.HA
    assert req.care_of_address == v.COA
    assert req.identification == 0xE8FE6F80_80000000
    assert not req.is_deregistration
    assert req.extensions == (
        wire.NaiExtension(v.NAI),
        wire.AuthExtension(32, 256, bytes.fromhex("0c34b19198d83c4373d73152a055f2ab")),
    )
    assert req.ext_offsets == (24, v.REQ_HMAC_AUTH_OFFSET)
    found = wire.find_auth(req, wire.EXT_MN_HA_AUTH)
    assert found is not None and found[0] == 1
    assert wire.find_auth(req, wire.EXT_MN_FA_AUTH) is None


def test_decode_full_request_every_extension_kind() -> None:
    req = wire.decode_request(v.REQ_FULL)
    assert req.flags == (
        wire.Flags.S | wire.Flags.B | wire.Flags.D | wire.Flags.M | wire.Flags.G | wire.Flags.T
    )
    assert not req.flags & (wire.Flags.r | wire.Flags.x)
    assert req.lifetime == wire.INFINITE_LIFETIME
    assert req.care_of_address == v.COA2
    assert req.identification == 0xE8FE6F80_00000002
    assert req.extensions == (
        wire.PadExtension(),
        wire.NaiExtension(v.NAI),
        wire.UnknownExtension(200, b"abc"),
        wire.LongExtension(38, 0, bytes.fromhex("0000000900 01abcd")),
        wire.AuthExtension(32, 256, bytes.fromhex("1b65025e0339aaaa9aef9d532997ff9f")),
        wire.AuthExtension(33, 0x200, b"\x11" * 16),
        wire.AuthExtension(34, 0x300, b"\x22" * 16),
    )
    assert req.ext_offsets == v.REQ_FULL_EXT_OFFSETS


def test_decode_long_generalized_auth() -> None:
    req = wire.decode_request(v.REQ_GENAUTH_ONLY)
    assert req.extensions == (wire.LongExtension(36, 1, bytes.fromhex("00000100") + bytes(16)),)
    assert wire.find_auth(req, wire.EXT_MN_HA_AUTH) is None


@pytest.mark.parametrize(
    ("name", "code", "lifetime", "home", "ident", "spi"),
    [
        ("REP_HMAC", 0, 1800, v.HOME, 0xE8FE6F80_80000000, 256),
        ("REP_PS", 0, 600, v.HOME_PS, 0xE8FE6F80_00000001, 257),
        ("REP_133", 133, 0, v.HOME, 0xE8FE6F80_12345678, 256),
        ("REP_DEREG", 0, 0, v.HOME, 0xE8FE6F80_00000003, 256),
    ],
)
def test_decode_replies(
    name: str, code: int, lifetime: int, home: IPv4Address, ident: int, spi: int
) -> None:
    data = getattr(v, name)
    rep = wire.decode(data)
    assert isinstance(rep, wire.RegistrationReply)
    assert (rep.code, rep.lifetime, rep.home_address, rep.home_agent, rep.identification) == (
        code,
        lifetime,
        home,
        v.HA,
        ident,
    )
    auth = rep.extensions[-1]
    assert isinstance(auth, wire.AuthExtension)
    assert (auth.type, auth.spi, len(auth.authenticator)) == (32, spi, 16)
    assert auth.authenticator == data[-16:]


@pytest.mark.parametrize(
    "name",
    [
        "REQ_HMAC",
        "REQ_PS",
        "REQ_STALE",
        "REQ_FULL",
        "REQ_DEREG_ALL",
        "REQ_GENAUTH_ONLY",
        "REP_HMAC",
        "REP_PS",
        "REP_133",
        "REP_DEREG",
    ],
)
def test_vectors_reencode_byte_for_byte(name: str) -> None:
    data = getattr(v, name)
    assert wire.encode(wire.decode(data)) == data


def test_encode_request_built_in_code_matches_vector() -> None:
    req = wire.RegistrationRequest(
        flags=wire.Flags.S
        | wire.Flags.B
        | wire.Flags.D
        | wire.Flags.M
        | wire.Flags.G
        | wire.Flags.T,
        lifetime=0xFFFF,
        home_address=v.HOME,
        home_agent=v.HA,
        care_of_address=v.COA2,
        identification=0xE8FE6F80_00000002,
        extensions=(
            wire.PadExtension(),
            wire.NaiExtension(v.NAI),
            wire.UnknownExtension(200, b"abc"),
            wire.LongExtension(38, 0, bytes.fromhex("0000000900 01abcd")),
            wire.AuthExtension(32, 256, bytes.fromhex("1b65025e0339aaaa9aef9d532997ff9f")),
            wire.AuthExtension(33, 0x200, b"\x11" * 16),
            wire.AuthExtension(34, 0x300, b"\x22" * 16),
        ),
    )
    assert wire.encode(req) == v.REQ_FULL
    # offsets do not take part in equality: a built message equals the decoded one
    assert wire.decode(v.REQ_FULL) == req


def test_encode_reply_built_in_code_matches_vector() -> None:
    rep = wire.RegistrationReply(
        133,
        0,
        v.HOME,
        v.HA,
        0xE8FE6F80_12345678,
        (wire.AuthExtension(32, 256, bytes.fromhex("38bf24052043093f4cef05cf497444f2")),),
    )
    assert wire.encode(rep) == v.REP_133


def test_unknown_critical_extension_discards_message() -> None:
    with pytest.raises(UnknownCriticalExtension) as info:
        wire.decode(v.REQ_UNKNOWN_CRITICAL)
    assert info.value.ext_type == 100
    assert info.value.code is None  # silent discard, never answered
    assert isinstance(info.value, DecodeError)


@pytest.mark.parametrize("ext_type", [1, 31, 35, 39, 127])
def test_every_unknown_type_below_128_is_critical(ext_type: int) -> None:
    data = v.REQ_PS[:24] + bytes([ext_type, 0])
    with pytest.raises(UnknownCriticalExtension):
        wire.decode(data)


@pytest.mark.parametrize("ext_type", [128, 130, 200, 255])
def test_unknown_type_from_128_is_skipped(ext_type: int) -> None:
    data = v.REQ_PS[:24] + bytes([ext_type, 2, 0xAB, 0xCD]) + v.REQ_PS[24:]
    req = wire.decode_request(data)
    assert req.extensions[0] == wire.UnknownExtension(ext_type, b"\xab\xcd")
    assert isinstance(req.extensions[1], wire.AuthExtension)
    assert req.ext_offsets == (24, 28)


def test_truncated_requests() -> None:
    data = v.REQ_FULL
    boundaries = {*v.REQ_FULL_EXT_OFFSETS, len(data)}
    for n in range(len(data)):
        cut = data[:n]
        if n in boundaries:
            req = wire.decode_request(cut)
            assert wire.encode(req) == cut
            continue
        with pytest.raises(DecodeError) as info:
            wire.decode(cut)
        if n == 0:
            assert info.value.reason == "empty"
        elif n < wire.REQUEST_HEADER_LEN:
            assert info.value.reason == "truncated"
        else:
            # the header is intact: the request is answered 134 (poorly formed)
            assert info.value.reason == "truncated-extension"
            assert info.value.code == 134


def test_truncated_replies_are_never_answered() -> None:
    data = v.REP_HMAC
    for n in (1, 19, 21, 25, 41, 43, 47, len(data) - 1):
        with pytest.raises(DecodeError) as info:
            wire.decode(data[:n])
        assert info.value.code is None
    assert wire.decode_reply(data[:20]).extensions == ()


def test_auth_extension_shorter_than_spi() -> None:
    data = v.REQ_PS[:24] + bytes.fromhex("2003 000001")
    with pytest.raises(DecodeError) as info:
        wire.decode(data)
    assert info.value.reason == "bad-auth-extension"
    assert info.value.code == 134


def test_truncated_long_extension() -> None:
    head = v.REQ_PS[:24]
    for tail in ("26", "2600", "260000", "26000008 00000009"):
        with pytest.raises(DecodeError) as info:
            wire.decode(head + bytes.fromhex(tail))
        assert info.value.reason == "truncated-extension"


def test_wrong_and_unknown_types() -> None:
    with pytest.raises(DecodeError) as info:
        wire.decode_request(v.REP_HMAC)
    assert (info.value.reason, info.value.code) == ("wrong-type", None)
    with pytest.raises(DecodeError) as info:
        wire.decode_reply(v.REQ_HMAC)
    assert (info.value.reason, info.value.code) == ("wrong-type", None)
    with pytest.raises(DecodeError) as info:
        wire.decode(b"\x02" + v.REQ_HMAC[1:])
    assert (info.value.reason, info.value.code) == ("unknown-type", None)


def test_encode_rejects_oversized_extensions() -> None:
    with pytest.raises(ValueError):
        wire.encode_extension(wire.AuthExtension(32, 256, bytes(252)))
    with pytest.raises(ValueError):
        wire.encode_extension(wire.NaiExtension(bytes(256)))
    with pytest.raises(ValueError):
        wire.encode_extension(wire.UnknownExtension(200, bytes(256)))
    with pytest.raises(ValueError):
        wire.encode_extension(wire.LongExtension(38, 0, bytes(0x10000)))
    # the largest of each still round trips
    for ext in (
        wire.AuthExtension(32, 256, bytes(251)),
        wire.NaiExtension(bytes(255)),
        wire.UnknownExtension(200, bytes(255)),
        wire.LongExtension(38, 0, bytes(0xFFFF)),
    ):
        exts, offsets = wire.decode_extensions(wire.encode_extension(ext), 0)
        assert exts == (ext,) and offsets == (0,)
