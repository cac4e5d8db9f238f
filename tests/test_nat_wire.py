"""RFC 3519 codecs (wire/nat.py): golden vectors, what tshark's ``mip`` dissector reads in them,
and properties (any bytes decode to a message or raise DecodeError; exact round trips)."""

from __future__ import annotations

import shutil
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pcapio import ipv4_udp, tshark_rows, write_pcap

from mobileip.wire import nat
from mobileip.wire import registration as reg
from mobileip.wire.codes import ReplyCode, meaning
from mobileip.wire.errors import DecodeError, UnknownCriticalExtension

PROFILE = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

HOME = IPv4Address("10.1.0.5")
HA = IPv4Address("10.1.0.1")
COA = IPv4Address("192.168.77.2")  # the mobile node's private address behind the NAT
NAT_PUBLIC = IPv4Address("192.0.2.7")

# UDP Tunnel Request: F set, IP-in-IP.
REQUEST_EXT_GOLDEN = bytes.fromhex("90" "06" "00" "00" "80" "04" "0000")  # fmt: skip
# UDP Tunnel Reply: will tunnel, F clear, keepalive 110 s.
REPLY_EXT_GOLDEN = bytes.fromhex("2c" "06" "00" "00" "0000" "006e")  # fmt: skip
# Tunnel data carrying a 28-byte ICMP echo request (a keepalive) from 10.1.0.5 to 10.1.0.1.
KEEPALIVE_GOLDEN = bytes.fromhex(
    "04" "04" "0000"  # type 4, next header 4 (IP-in-IP), reserved
    "4500001c00004000400126da0a0100050a010001"  # IPv4, ICMP, 10.1.0.5 -> 10.1.0.1
    "0800c2df35190007"  # echo request, id 0x3519, sequence 7
)  # fmt: skip


def test_request_extension_golden() -> None:
    ext = nat.UdpTunnelRequest(nat.ENCAP_IPIP, nat.REQUEST_F).extension()
    assert reg.encode_extension(ext) == REQUEST_EXT_GOLDEN
    (decoded,), _ = reg.decode_extensions(REQUEST_EXT_GOLDEN, 0)
    assert isinstance(decoded, reg.UnknownExtension)
    parsed = nat.parse_request(decoded)
    assert parsed.force and not parsed.via_fa and parsed.encapsulation == 4


def test_reply_extension_golden_is_recognised_though_critical() -> None:
    ext = nat.UdpTunnelReply(nat.CODE_WILL_TUNNEL, 110).extension()
    assert reg.encode_extension(ext) == REPLY_EXT_GOLDEN
    rep = reg.RegistrationReply(0, 600, HOME, HA, 9, (ext,))
    decoded = reg.decode_reply(reg.encode(rep))  # type 44 < 128 but known: no discard
    found = nat.find_reply(decoded.extensions)
    assert found == nat.UdpTunnelReply(0, 110)
    assert found.accepted and not found.forced


def test_keepalive_golden() -> None:
    assert nat.keepalive(HOME, HA, 7) == KEEPALIVE_GOLDEN
    msg = nat.decode_data(KEEPALIVE_GOLDEN)
    assert msg.next_header == 4 and msg.reserved == 0
    assert nat.echo_request_to(msg.payload, int(HA)) == (0x3519, 7)
    assert nat.echo_request_to(msg.payload, int(HOME)) is None
    assert nat.encode_data(msg) == KEEPALIVE_GOLDEN


def test_other_critical_types_still_discard() -> None:
    data = reg.encode(reg.RegistrationReply(0, 600, HOME, HA, 9)) + bytes([45, 0])
    with pytest.raises(UnknownCriticalExtension):
        reg.decode(data)


def test_malformed_request_extension_is_134() -> None:
    bad = reg.UnknownExtension(nat.EXT_UDP_TUNNEL_REQUEST, b"\x00\x00\x80")
    with pytest.raises(DecodeError) as info:
        nat.find_request((bad,))
    assert info.value.code == ReplyCode.POORLY_FORMED
    assert nat.find_reply((reg.UnknownExtension(44, b"\x00"),)) is None


def test_code_142() -> None:
    assert ReplyCode.UDP_ENCAPSULATION_UNAVAILABLE == 142
    assert "UDP encapsulation unavailable" in meaning(142)


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
def test_tshark_reads_the_golden_vectors_like_we_do(tmp_path: Path) -> None:
    """Wireshark's ``mip`` dissector on a request with 144, a reply with 44 and a keepalive."""
    flags = reg.Flags.D | reg.Flags.T
    req = reg.encode(reg.RegistrationRequest(flags, 600, HOME, HA, COA, 7)) + REQUEST_EXT_GOLDEN
    reply_ext = nat.UdpTunnelReply(nat.CODE_DECLINED, 0x1234, nat.REPLY_F).extension()
    rep = reg.encode(reg.RegistrationReply(142, 0, HOME, HA, 7, (reply_ext,)))
    pcap = tmp_path / "nat.pcap"
    write_pcap(
        pcap,
        [
            ipv4_udp(req, NAT_PUBLIC, HA),
            ipv4_udp(rep, HA, NAT_PUBLIC),
            ipv4_udp(KEEPALIVE_GOLDEN, NAT_PUBLIC, HA),
        ],
    )
    fields = [
        "mip.type",
        "mip.ext.type",
        "mip.ext.utrq.subtype",
        "mip.ext.utrq.f",
        "mip.ext.utrq.r",
        "mip.ext.utrq.encaptype",
        "mip.ext.utrp.subtype",
        "mip.ext.utrp.code",
        "mip.ext.utrp.f",
        "mip.ext.utrp.keepalive",
        "mip.code",
        "mip.nattt.nexthdr",
        "icmp.type",
        "icmp.ident",
        "icmp.seq",
        "ip.src",
        "_ws.malformed",
    ]
    got = tshark_rows(pcap, fields)
    assert len(got) == 3
    assert got[0]["mip.type"] == "1"
    assert got[0]["mip.ext.type"] == "144"
    assert got[0]["mip.ext.utrq.subtype"] == "0"
    assert (got[0]["mip.ext.utrq.f"], got[0]["mip.ext.utrq.r"]) == ("1", "0")
    assert got[0]["mip.ext.utrq.encaptype"] == "4"
    assert got[1]["mip.type"] == "3"
    assert got[1]["mip.code"] == "142"
    assert got[1]["mip.ext.type"] == "44"
    assert got[1]["mip.ext.utrp.code"] == "64"
    assert got[1]["mip.ext.utrp.f"] == "1"
    assert got[1]["mip.ext.utrp.keepalive"] == str(0x1234)
    keep = got[2]
    assert keep["mip.type"] == "4"
    assert keep["mip.nattt.nexthdr"] == "4"
    assert keep["icmp.type"] == "8"
    assert keep["icmp.ident"].split(",")[0] in ("13593", "0x3519")
    assert keep["icmp.seq"].split(",")[0] == "7"
    assert keep["ip.src"].split(",") == [str(NAT_PUBLIC), str(HOME)]
    assert all(row.get("_ws.malformed", "") == "" for row in got)


# UDP Tunnel Request as our mobile node sends it through a foreign agent: R set, F clear, IP-in-IP.
REQUEST_R_GOLDEN = bytes.fromhex("90" "06" "00" "00" "40" "04" "0000")  # fmt: skip


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
def test_r_flag_golden_and_what_tshark_reads(tmp_path: Path) -> None:
    """R (0x40, "Registration through FA Required") as our mobile node encodes it, and as
    Wireshark's ``mip`` dissector reads it in a co-located (D) request relayed by an agent."""
    ext = nat.UdpTunnelRequest(nat.ENCAP_IPIP, nat.REQUEST_R).extension()
    assert reg.encode_extension(ext) == REQUEST_R_GOLDEN
    (decoded,), _ = reg.decode_extensions(REQUEST_R_GOLDEN, 0)
    assert isinstance(decoded, reg.UnknownExtension)
    parsed = nat.parse_request(decoded)
    assert parsed.via_fa and not parsed.force
    req = reg.encode(reg.RegistrationRequest(reg.Flags.D, 600, HOME, HA, COA, 7, (ext,)))
    pcap = tmp_path / "r.pcap"
    write_pcap(pcap, [ipv4_udp(req, NAT_PUBLIC, HA)])
    fields = ["mip.d", "mip.coa", "mip.ext.utrq.flags", "mip.ext.utrq.f", "mip.ext.utrq.r",
              "mip.ext.utrq.encaptype", "_ws.malformed"]  # fmt: skip
    [row] = tshark_rows(pcap, fields)
    assert row["mip.ext.utrq.flags"] in ("0x40", "64"), row
    assert (row["mip.ext.utrq.f"], row["mip.ext.utrq.r"]) == ("0", "1"), row
    assert row["mip.d"] == "1" and row["mip.coa"] == str(COA), row
    assert row["mip.ext.utrq.encaptype"] == "4" and row.get("_ws.malformed", "") == ""


# --- properties -------------------------------------------------------------------------------

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)


@PROFILE
@given(st.binary(max_size=10))
def test_any_extension_body_parses_or_raises(body: bytes) -> None:
    for ext_type, parse in ((144, nat.parse_request), (44, nat.parse_reply)):
        try:
            parsed = parse(reg.UnknownExtension(ext_type, body))
        except DecodeError:
            assert len(body) != 6
            continue
        assert parsed.extension() == reg.UnknownExtension(ext_type, body)


@PROFILE
@given(st.one_of(st.binary(max_size=40), st.binary(max_size=40).map(lambda b: b"\x04" + b)))
def test_any_bytes_decode_as_tunnel_data_or_raise(data: bytes) -> None:
    try:
        msg = nat.decode_data(data)
    except DecodeError as exc:
        assert exc.code is None
        return
    assert nat.encode_data(msg) == data
    nat.echo_request_to(msg.payload, int(HA))  # never raises


@PROFILE
@given(u8, u8, u8, u8, u16)
def test_request_round_trips(subtype: int, r1: int, flags: int, encap: int, r2: int) -> None:
    req = nat.UdpTunnelRequest(encap, flags, subtype, r1, r2)
    data = reg.encode_extension(req.extension())
    (ext,), _ = reg.decode_extensions(data, 0)
    assert isinstance(ext, reg.UnknownExtension)
    assert nat.parse_request(ext) == req


@PROFILE
@given(u8, u8, u16, u16)
def test_reply_round_trips_inside_a_reply(subtype: int, code: int, flags: int, ka: int) -> None:
    ext = nat.UdpTunnelReply(code, ka, flags, subtype).extension()
    data = reg.encode(reg.RegistrationReply(0, 1, HOME, HA, 2, (ext,)))
    decoded = reg.decode_reply(data)
    assert nat.find_reply(decoded.extensions) == nat.UdpTunnelReply(code, ka, flags, subtype)
    assert reg.encode(decoded) == data


@PROFILE
@given(st.binary(max_size=80), st.integers(0, 0xFFFF))
def test_echo_request_detection_is_total(tail: bytes, seq: int) -> None:
    packet = nat.icmp_echo(HOME, HA, 1, seq) + tail
    assert nat.echo_request_to(packet, int(HA)) == (1, seq)
    for cut in range(len(packet)):
        nat.echo_request_to(packet[:cut], int(HA))
