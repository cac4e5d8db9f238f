"""Tunnel codecs: golden vectors (checked by tshark), RFC 2003 outer-header rules, totality."""

from __future__ import annotations

import contextlib
import shutil
import struct
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pcapio import tshark_fields, write_pcap

from mobileip.dataplane.encap import (
    FLAG_DF,
    FLAG_MF,
    IPPROTO_MINENC,
    Encapsulation,
    IPv4Header,
    TunnelRefused,
    build_ipv4,
    decapsulate,
    encapsulate,
    gre_header,
    internet_checksum,
    parse_ipv4,
)
from mobileip.wire.errors import DecodeError

A = IPv4Address
HA = A("10.1.0.1")
COA = A("10.2.0.2")
CN = A("192.0.2.10")
MN_HOME = A("10.1.0.100")

# ICMP echo request 192.0.2.10 -> 10.1.0.100, TOS 0x10, DF, TTL 64, payload "mobileip"
INNER = bytes.fromhex("45100024abcd40004001c28cc000020a0a0100640800401c123400016d6f62696c656970")
# the same packet after one hop (TTL 63, checksum adjusted)
INNER_FWD = bytes.fromhex(
    "45100024abcd40003f01c38cc000020a0a0100640800401c123400016d6f62696c656970"
)
GOLDEN = {
    Encapsulation.IPIP: bytes.fromhex("4510003801014000400425ac0a0100010a020002") + INNER_FWD,
    Encapsulation.GRE: bytes.fromhex("4510003c01014000402f257d0a0100010a020002")
    + bytes.fromhex("00000800")
    + INNER_FWD,
    # RFC 2004: the original header modified (proto 55, dst CoA, src HA), then the minimal
    # header (proto 1, S bit, checksum, original dst, original src), then the ICMP payload
    Encapsulation.MINIMAL: bytes.fromhex(
        "45100030abcd40003f377bb40a0100010a020002"
        "018032100a010064c000020a"
        "0800401c123400016d6f62696c656970"
    ),
}


def test_inner_vector_is_valid() -> None:
    header, payload = parse_ipv4(INNER)
    assert (header.src, header.dst, header.ttl, header.tos) == (CN, MN_HOME, 64, 0x10)
    assert header.dont_fragment and internet_checksum(INNER[:20]) == 0
    assert payload[8:] == b"mobileip"


@pytest.mark.parametrize("kind", list(Encapsulation), ids=lambda k: k.name)
def test_golden_encapsulation(kind: Encapsulation) -> None:
    assert encapsulate(INNER, kind, HA, COA, ident=0x0101) == GOLDEN[kind]


@pytest.mark.parametrize("kind", list(Encapsulation), ids=lambda k: k.name)
def test_golden_decapsulation(kind: Encapsulation) -> None:
    d = decapsulate(GOLDEN[kind])
    assert (d.kind, d.outer_src, d.outer_dst) == (kind, HA, COA)
    assert d.inner == INNER_FWD
    assert (d.inner_src, d.inner_dst) == (CN, MN_HOME)


IP_FIELDS = ("frame.protocols", "ip.proto", "ip.checksum.status", "ip.src", "ip.dst", "ip.ttl")


@pytest.mark.skipif(shutil.which("tshark") is None, reason="needs tshark")
def test_golden_vectors_dissect_in_tshark(tmp_path: Path) -> None:
    pcap = tmp_path / "encap.pcap"
    kinds = list(Encapsulation)
    write_pcap(pcap, [GOLDEN[k] for k in kinds])
    rows = tshark_fields(
        pcap,
        [*IP_FIELDS, "ip.dsfield", "ip.flags.df", "icmp.seq", "data.data", "gre.proto"],
        "ip.check_checksum:TRUE",
    )
    by_kind = dict(zip(kinds, rows, strict=True))
    ipip = by_kind[Encapsulation.IPIP]
    assert ipip[0] == "ip:ip:icmp:data"
    assert ipip[1:6] == ["4,1", "1,1", f"{HA},{CN}", f"{COA},{MN_HOME}", "64,63"]
    assert ipip[6:9] == ["0x10,0x10", "1,1", "1"]  # TOS and DF copied, ICMP seq intact
    assert ipip[9] == b"mobileip".hex()
    gre = by_kind[Encapsulation.GRE]
    assert gre[0] == "ip:gre:ip:icmp:data"
    assert gre[1:6] == ["47,1", "1,1", f"{HA},{CN}", f"{COA},{MN_HOME}", "64,63"]
    assert gre[10] == "0x0800" and gre[9] == b"mobileip".hex()
    # Wireshark has no minimal-encapsulation dissector: protocol 55 with our header as data
    minimal = by_kind[Encapsulation.MINIMAL]
    assert minimal[0] == "ip:data"
    assert minimal[1:6] == ["55", "1", str(HA), str(COA), "63"]
    assert bytes.fromhex(minimal[9]) == GOLDEN[Encapsulation.MINIMAL][20:]


def test_gre_with_checksum_round_trips() -> None:
    out = encapsulate(INNER, Encapsulation.GRE, HA, COA, gre_checksum=True)
    assert out[20:24] == b"\x80\x00\x08\x00"
    assert internet_checksum(out[20:]) == 0
    assert decapsulate(out).inner == INNER_FWD
    bad = out[:24] + bytes([out[24] ^ 0xFF]) + out[25:]
    with pytest.raises(DecodeError, match="gre-checksum"):
        decapsulate(bad)


def _inner(
    ttl: int = 64, flags: int = FLAG_DF, src: IPv4Address = CN, tos: int = 0, proto: int = 17
) -> bytes:
    return build_ipv4(IPv4Header(tos, 0, 7, flags, ttl, proto, src, MN_HOME), b"payload!")


def test_outer_ttl_is_ours_and_inner_ttl_is_decremented() -> None:
    out = encapsulate(_inner(ttl=2), Encapsulation.IPIP, HA, COA, ttl=17)
    outer, payload = parse_ipv4(out)
    inner, _ = parse_ipv4(payload)
    assert (outer.ttl, inner.ttl) == (17, 1)


def test_packet_the_kernel_already_forwarded_keeps_its_ttl() -> None:
    out = encapsulate(_inner(ttl=1), Encapsulation.IPIP, HA, COA, forwarding=False)
    assert parse_ipv4(parse_ipv4(out)[1])[0].ttl == 1


@pytest.mark.parametrize("ttl", [0, 1])
def test_expiring_ttl_is_not_tunnelled(ttl: int) -> None:
    with pytest.raises(TunnelRefused) as info:
        encapsulate(_inner(ttl=ttl), Encapsulation.IPIP, HA, COA)
    assert info.value.reason == "ttl-exceeded"


@pytest.mark.parametrize("df", [0, FLAG_DF])
@pytest.mark.parametrize("kind", [Encapsulation.IPIP, Encapsulation.GRE])
def test_tos_and_df_are_copied(kind: Encapsulation, df: int) -> None:
    outer, _ = parse_ipv4(encapsulate(_inner(flags=df, tos=0xB8), kind, HA, COA))
    assert outer.tos == 0xB8
    assert outer.dont_fragment == bool(df)
    assert outer.flags_fragment & FLAG_MF == 0


@pytest.mark.parametrize("kind", list(Encapsulation), ids=lambda k: k.name)
@pytest.mark.parametrize("src", [COA, HA, A("10.1.0.2")])
def test_loops_are_refused(kind: Encapsulation, src: IPv4Address) -> None:
    # inner source = the tunnel exit, or one of our addresses (forwarded traffic)
    with pytest.raises(TunnelRefused) as info:
        encapsulate(_inner(src=src), kind, HA, COA, own=frozenset({HA, A("10.1.0.2")}))
    assert info.value.reason == "loop"


def test_minimal_refuses_fragments_and_omits_source_when_encapsulator_is_source() -> None:
    frag = _inner(flags=FLAG_MF)
    with pytest.raises(TunnelRefused, match="fragment"):
        encapsulate(frag, Encapsulation.MINIMAL, HA, COA)
    # a packet the encapsulator originates itself needs no original source (S bit clear)
    pkt = build_ipv4(IPv4Header(0, 0, 9, 0, 64, 17, HA, MN_HOME), b"x" * 5)
    out = encapsulate(pkt, Encapsulation.MINIMAL, HA, COA)
    assert parse_ipv4(out)[0].protocol == IPPROTO_MINENC
    assert out[21] == 0 and len(out) == 20 + 8 + 5  # S bit clear, 8-byte minimal header


def test_encapsulate_gre_header_helper() -> None:
    assert gre_header() == b"\x00\x00\x08\x00"


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda b: b[:10], "ipv4-short"),
        (lambda b: b"\x65" + b[1:], "ipv4-version"),
        (lambda b: b"\x44" + b[1:], "ipv4-ihl"),
        (lambda b: b[:2] + struct.pack("!H", 500) + b[4:], "ipv4-length"),
        (lambda b: b[:11] + bytes([b[11] ^ 1]) + b[12:], "ipv4-checksum"),
    ],
)
def test_bad_outer_headers(mutate: object, reason: str) -> None:
    assert callable(mutate)
    with pytest.raises(DecodeError) as info:
        decapsulate(mutate(GOLDEN[Encapsulation.IPIP]))
    assert info.value.reason == reason and info.value.code is None


def test_non_tunnel_protocol_and_bad_gre_are_decode_errors() -> None:
    with pytest.raises(DecodeError, match="not-tunnel"):
        decapsulate(INNER)
    gre = GOLDEN[Encapsulation.GRE]

    def with_gre(word: bytes) -> bytes:
        body = word + gre[24:]
        return build_ipv4(parse_ipv4(gre)[0], body)

    for word, reason in [
        (b"\x00\x01\x08\x00", "gre-version"),
        (b"\x10\x00\x08\x00", "gre-reserved"),
        (b"\x00\x00\x86\xdd", "gre-protocol"),
    ]:
        with pytest.raises(DecodeError) as info:
            decapsulate(with_gre(word))
        assert info.value.reason == reason


PROFILE = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
addresses = st.integers(0, 0xFFFFFFFF).map(IPv4Address)


@PROFILE
@given(st.binary(max_size=200))
def test_decapsulate_is_total(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decapsulate(data)


@PROFILE
@given(st.binary(min_size=20, max_size=120), st.sampled_from([4, 47, 55]))
def test_decapsulate_is_total_on_valid_outer_headers(body: bytes, proto: int) -> None:
    pkt = build_ipv4(IPv4Header(0, 0, 1, 0, 64, proto, HA, COA), body)
    try:
        d = decapsulate(pkt)
    except DecodeError:
        return
    parse_ipv4(d.inner)  # whatever comes out is a valid IPv4 packet


@PROFILE
@given(
    kind=st.sampled_from(list(Encapsulation)),
    tos=st.integers(0, 255),
    ident=st.integers(0, 0xFFFF),
    df=st.booleans(),
    ttl=st.integers(2, 255),
    proto=st.integers(0, 255),
    src=addresses,
    dst=addresses,
    payload=st.binary(max_size=300),
)
def test_round_trip_restores_the_forwarded_packet(
    kind: Encapsulation,
    tos: int,
    ident: int,
    df: bool,
    ttl: int,
    proto: int,
    src: IPv4Address,
    dst: IPv4Address,
    payload: bytes,
) -> None:
    inner = build_ipv4(
        IPv4Header(tos, 0, ident, FLAG_DF if df else 0, ttl, proto, src, dst), payload
    )
    try:
        out = encapsulate(inner, kind, HA, COA, ident=5)
    except TunnelRefused as exc:
        assert exc.reason == "loop" and src == COA
        return
    d = decapsulate(out)
    header, body = parse_ipv4(d.inner)
    flags = FLAG_DF if df else 0
    assert header == IPv4Header(tos, len(d.inner), ident, flags, ttl - 1, proto, src, dst)
    assert body == payload
    outer, _ = parse_ipv4(out)
    assert (outer.tos, outer.dont_fragment, outer.src, outer.dst) == (tos, df, HA, COA)
