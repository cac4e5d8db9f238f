"""Agent advertisement codec: golden vector, field order checked by tshark, totality."""

from __future__ import annotations

import contextlib
import shutil
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pcapio import tshark_fields, write_pcap

from mobileip.dataplane.encap import IPv4Header, build_ipv4, internet_checksum
from mobileip.wire import agent_adv as aa
from mobileip.wire.errors import DecodeError

A = IPv4Address
ADV = aa.AgentAdvertisement(
    sequence=0x1234,
    registration_lifetime=600,
    flags=aa.FLAG_R | aa.FLAG_F | aa.FLAG_G | aa.FLAG_T,
    flags2=aa.FLAG_X,
    care_of_addresses=(A("10.2.0.1"), A("10.2.0.9")),
    router_addresses=((A("10.2.0.1"), 5),),
    lifetime=1800,
    prefix_lengths=(24,),
)
GOLDEN = bytes.fromhex(
    "0900ec03"
    "01020708"
    "0a020001"
    "00000005"  # ICMP type 9, 1 router entry, lifetime 1800
    "100e"
    "1234"
    "0258"
    "95"
    "40"
    "0a020001"
    "0a020009"  # ext 16: seq, reg lifetime, flags, CoAs
    "130118"  # prefix lengths: /24
)


def test_golden_encode_and_decode() -> None:
    assert ADV.encode() == GOLDEN
    assert aa.decode_advertisement(GOLDEN) == ADV
    assert ADV.is_foreign_agent and ADV.registration_required and not ADV.is_home_agent


@pytest.mark.skipif(shutil.which("tshark") is None, reason="needs tshark")
def test_field_order_matches_wireshark(tmp_path: Path) -> None:
    pkt = build_ipv4(IPv4Header(0, 0, 1, 0, 1, 1, A("10.2.0.1"), aa.ALL_SYSTEMS), GOLDEN)
    pcap = tmp_path / "adv.pcap"
    write_pcap(pcap, [pkt])
    fields = ["icmp.type", "icmp.checksum.status", "icmp.lifetime", "icmp.mip.seq"]
    fields += ["icmp.mip.life", "icmp.mip.flags", "icmp.mip.f", "icmp.mip.r", "icmp.mip.h"]
    fields += ["icmp.mip.g", "icmp.mip.rt", "icmp.mip.x", "icmp.mip.coa", "icmp.mip.prefixlength"]
    [row] = tshark_fields(pcap, fields)
    assert row[:12] == ["9", "1", "1800", "4660", "600", "0x9540", "1", "1", "0", "1", "1", "1"]
    assert row[12:] == ["10.2.0.1,10.2.0.9", "24"]


def test_solicitation() -> None:
    data = aa.AgentSolicitation().encode()
    assert data == bytes.fromhex("0a00f5ff00000000")
    assert aa.is_solicitation(data) and not aa.is_solicitation(GOLDEN)


def _plain_router_advertisement() -> bytes:
    msg = bytes.fromhex("0900000000020708")
    csum = internet_checksum(msg)
    return msg[:2] + csum.to_bytes(2, "big") + msg[4:]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (GOLDEN[:6], "icmp-short"),
        (b"\x08" + GOLDEN[1:], "not-advertisement"),
        (GOLDEN[:-1] + b"\x19", "icmp-checksum"),
        (_plain_router_advertisement(), "no-mobility-extension"),
    ],
)
def test_bad_advertisements(data: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as info:
        aa.decode_advertisement(data)
    assert info.value.reason == reason and info.value.code is None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=80))
def test_decode_is_total(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        aa.decode_advertisement(data)


@settings(max_examples=200, deadline=None)
@given(
    seq=st.integers(0, 0xFFFF),
    life=st.integers(0, 0xFFFF),
    flags=st.integers(0, 255),
    flags2=st.integers(0, 255),
    coas=st.lists(st.integers(0, 2**32 - 1).map(A), max_size=10),
)
def test_round_trip(seq: int, life: int, flags: int, flags2: int, coas: list[IPv4Address]) -> None:
    adv = aa.AgentAdvertisement(seq, life, flags, flags2, tuple(coas))
    assert aa.decode_advertisement(adv.encode()) == adv
