"""RFC 3543 codecs (wire/revocation.py): golden vectors, what tshark's ``mip`` dissector reads in
them, and properties (any bytes decode to a message or raise DecodeError; exact round trips)."""

from __future__ import annotations

import shutil
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pcapio import ipv4_udp, tshark_rows, write_pcap
from test_wire_properties import extension_lists

from mobileip.core.security import SecurityAssociation, append_auth
from mobileip.wire import registration as reg
from mobileip.wire import revocation as r
from mobileip.wire.errors import DecodeError

PROFILE = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

HOME = IPv4Address("10.1.0.5")
HA = IPv4Address("10.1.0.1")
FA = IPv4Address("192.0.2.7")
RID = 1_700_000_123
FA_HA = SecurityAssociation(0x1000, "hmac-md5", bytes(range(16)), (IPv4Network("0.0.0.0/0"),))

# Registration Revocation from the home agent (A) asking to inform the MN (I), FA-HA protected.
REVOCATION_GOLDEN = bytes.fromhex(
    "07" "00" "c000"  # type 7, reserved, flags A|I
    "0a010005"  # home address 10.1.0.5
    "0a010001"  # home domain address 10.1.0.1 (the home agent)
    "c0000207"  # foreign domain address 192.0.2.7 (the foreign agent)
    "6553f17b"  # revocation identifier 1700000123
    "22" "14" "00001000"  # FA-HA authentication, length 20, SPI 0x1000
    "9b0b956acbc6e6464115ac2cfd6f0155"  # HMAC-MD5 over everything before it
)  # fmt: skip
ACK_GOLDEN = bytes.fromhex(
    "0f" "00" "8000"  # type 15, reserved, flags I (the MN was informed)
    "0a010005"  # home address
    "6553f17b"  # revocation identifier
    "22" "14" "00001000" "9d9ee870d069e7e1f1250b70e80a6574"
)  # fmt: skip
SUPPORT_GOLDEN = bytes.fromhex("890680006553f100")  # type 137, I, timestamp 1700000000


def test_golden_revocation_decodes_and_reencodes() -> None:
    msg = r.decode(REVOCATION_GOLDEN)
    assert isinstance(msg, r.RegistrationRevocation)
    assert (msg.home_address, msg.home_domain_address, msg.foreign_domain_address) == (HOME, HA, FA)
    assert msg.revocation_id == RID and msg.by_home_agent and msg.inform
    assert msg.ext_offsets == (20,)
    found = r.find_fa_ha_auth(msg)
    assert found is not None and found[1].spi == 0x1000
    assert r.encode(msg) == REVOCATION_GOLDEN
    built = r.RegistrationRevocation(r.REVOCATION_A | r.REVOCATION_I, HOME, HA, FA, RID)
    assert append_auth(r.encode(built), reg.EXT_FA_HA_AUTH, FA_HA) == REVOCATION_GOLDEN


def test_golden_ack_decodes_and_reencodes() -> None:
    msg = r.decode(ACK_GOLDEN)
    assert isinstance(msg, r.RevocationAck)
    assert (msg.home_address, msg.revocation_id, msg.informed) == (HOME, RID, True)
    assert r.encode(msg) == ACK_GOLDEN
    built = r.RevocationAck(r.ACK_I, HOME, RID)
    assert append_auth(r.encode(built), reg.EXT_FA_HA_AUTH, FA_HA) == ACK_GOLDEN


def test_support_extension_in_a_request() -> None:
    ext = r.make_support(inform=True, timestamp=1_700_000_000).extension()
    assert reg.encode_extension(ext) == SUPPORT_GOLDEN
    req = reg.RegistrationRequest(reg.Flags(0), 600, HOME, HA, FA, 7, (ext,))
    decoded = reg.decode_request(reg.encode(req))
    support = r.find_support(decoded.extensions)
    assert support is not None and support.inform and support.timestamp == 1_700_000_000
    # a wrong length is no support at all
    bad = reg.UnknownExtension(r.EXT_REVOCATION_SUPPORT, b"\x80\x00\x00")
    assert r.find_support((bad,)) is None
    with pytest.raises(DecodeError):
        r.parse_support(bad)


@pytest.mark.parametrize(
    "data",
    [b"", b"\x07", REVOCATION_GOLDEN[:19], ACK_GOLDEN[:11], b"\x08" + bytes(30),
     REVOCATION_GOLDEN[:20] + b"\x22\x14\x00", REVOCATION_GOLDEN[:20] + b"\x05\x00"],
)  # fmt: skip
def test_bad_bytes_are_dropped_never_answered(data: bytes) -> None:
    with pytest.raises(DecodeError) as info:
        r.decode(data)
    assert info.value.code is None


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
def test_tshark_reads_the_golden_vectors_like_we_do(tmp_path: Path) -> None:
    """Wireshark's ``mip`` dissector on our three golden vectors: every field it shows."""
    req = reg.encode(reg.RegistrationRequest(reg.Flags(0), 600, HOME, HA, FA, 7)) + SUPPORT_GOLDEN
    pcap = tmp_path / "revocation.pcap"
    write_pcap(
        pcap,
        [
            ipv4_udp(req, HA, FA, 434),
            ipv4_udp(REVOCATION_GOLDEN, HA, FA, 434),
            ipv4_udp(ACK_GOLDEN, HA, FA, 434),
        ],
    )
    fields = [
        "mip.type",
        "mip.homeaddr",
        "mip.flags2",
        "mip.rev.a",
        "mip.rev.i",
        "mip.rev.hda",
        "mip.rev.fda",
        "mip.revid",
        "mip.ack.i",
        "mip.ext.type",
        "mip.ext.rev.flags",
        "mip.ext.rev.i",
        "mip.ext.rev.tstamp",
        "mip.auth.spi",
        "mip.auth.auth",
        "_ws.malformed",
    ]
    got = tshark_rows(pcap, fields)
    assert len(got) == 3
    assert got[0]["mip.type"] == "1"
    assert got[0]["mip.ext.type"] == "137"
    assert got[0]["mip.ext.rev.flags"] == "0x8000"
    assert got[0]["mip.ext.rev.i"] == "1"
    assert got[0]["mip.ext.rev.tstamp"] == "1700000000"
    rev = got[1]
    assert rev["mip.type"] == "7"
    assert rev["mip.homeaddr"] == "10.1.0.5"
    assert rev["mip.flags2"] == "0xc000"
    assert (rev["mip.rev.a"], rev["mip.rev.i"]) == ("1", "1")
    assert (rev["mip.rev.hda"], rev["mip.rev.fda"]) == ("10.1.0.1", "192.0.2.7")
    assert rev["mip.revid"] == str(RID)
    assert rev["mip.ext.type"] == "34"
    assert rev["mip.auth.spi"] == "0x00001000"
    assert rev["mip.auth.auth"] == "9b0b956acbc6e6464115ac2cfd6f0155"
    ack = got[2]
    assert ack["mip.type"] == "15"
    assert ack["mip.homeaddr"] == "10.1.0.5"
    assert ack["mip.flags2"] == "0x8000"
    assert ack["mip.ack.i"] == "1"
    assert ack["mip.revid"] == str(RID)
    assert ack["mip.ext.type"] == "34"
    assert ack["mip.auth.auth"] == "9d9ee870d069e7e1f1250b70e80a6574"
    assert all(row.get("_ws.malformed", "") == "" for row in got)


# --- properties -------------------------------------------------------------------------------

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
addresses = u32.map(IPv4Address)
revocations = st.builds(
    r.RegistrationRevocation,
    flags=u16,
    home_address=addresses,
    home_domain_address=addresses,
    foreign_domain_address=addresses,
    revocation_id=u32,
    extensions=extension_lists,
    reserved=u8,
)
acks = st.builds(
    r.RevocationAck,
    flags=u16,
    home_address=addresses,
    revocation_id=u32,
    extensions=extension_lists,
    reserved=u8,
)


@PROFILE
@given(
    st.one_of(st.binary(max_size=80), st.tuples(st.sampled_from([7, 15]), st.binary(max_size=80)))
)
def test_any_bytes_decode_or_raise_decode_error(data: bytes | tuple[int, bytes]) -> None:
    if isinstance(data, tuple):  # mostly a revocation or an ack type byte
        data = bytes([data[0]]) + data[1]
    try:
        msg = r.decode(data)
    except DecodeError as exc:
        assert exc.code is None
        return
    assert r.encode(msg) == data


@PROFILE
@given(st.sampled_from([REVOCATION_GOLDEN, ACK_GOLDEN]), st.integers(0, 39), u8)
def test_mutated_golden_vectors_decode_or_raise_decode_error(
    base: bytes, pos: int, value: int
) -> None:
    data = bytearray(base)
    data[pos % len(data)] = value
    try:
        msg = r.decode(bytes(data))
    except DecodeError:
        return
    assert r.encode(msg) == bytes(data)


@PROFILE
@given(st.one_of(revocations, acks))
def test_messages_round_trip(msg: r.Message) -> None:
    assert r.decode(r.encode(msg)) == msg


@PROFILE
@given(u16, u32)
def test_support_round_trips(flags: int, timestamp: int) -> None:
    support = r.RevocationSupport(flags, timestamp)
    ext = support.extension()
    data = reg.encode_extension(ext)
    (decoded,), _ = reg.decode_extensions(data, 0)
    assert r.parse_support(decoded) == support
    assert support.inform == bool(flags & 0x8000)
