"""Dynamic home addresses on the wire: golden request/reply read by tshark, and properties.

RFC 2794's Mobile-Node-NAI extension is type 131, in the skippable range (128-255): a Home Agent
that does not know it skips it (wire/registration.py keeps it as ``NaiExtension``). The NAI comes
before the MN-HA authentication extension, which covers it.
"""

from __future__ import annotations

import shutil
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pcapio import ipv4_udp, tshark_fields, write_pcap

from mobileip.core import homeagent as ha
from mobileip.core.pools import AddressPool, AddressPools, request_nai
from mobileip.core.replay import ntp_from_unix
from mobileip.core.security import SecurityAssociation, SecurityAssociations, append_auth
from mobileip.wire import registration as wire
from mobileip.wire.errors import DecodeError

KEY = bytes.fromhex("00112233445566778899aabbccddeeff")
SA = SecurityAssociation(512, "hmac-md5", KEY, (), b"*@example.net", "subs")
POOL = AddressPool("subs", int(IPv4Address("10.1.128.1")), int(IPv4Address("10.1.128.254")))
HA = IPv4Address("10.1.0.1")
WALL, NOW = 1_700_000_000.5, 1000.0

# Registration Request: home 0.0.0.0, HA 10.1.0.1, CoA 192.0.2.7, lifetime 1800, then the NAI
# extension (131, 17, "alice@example.net") and the MN-HA extension (32, 20, SPI 512, HMAC-MD5)
GOLDEN_REQUEST = bytes.fromhex(
    "01000708" "00000000" "0a010001" "c0000207" "e8fe6f8080000001"
    "8311" "616c696365406578616d706c652e6e6574"
    "2014" "00000200" "f65d934c2e932163b03eb0d1a30dc6ee"
)  # fmt: skip
# Its reply: accepted, lifetime 1800, home 10.1.128.1 (assigned), the NAI echoed, MN-HA
GOLDEN_REPLY = bytes.fromhex(
    "03000708" "0a018001" "0a010001" "e8fe6f8080000001"
    "8311" "616c696365406578616d706c652e6e6574"
    "2014" "00000200" "c61ce2c6954ece9f57691222b022fc99"
)  # fmt: skip


def core() -> ha.HomeAgentCore:
    c = ha.HomeAgentCore(ha.HomeAgentSettings(address=HA, node_id=1), SecurityAssociations([SA]))
    c.pools = AddressPools([POOL], c.table)
    return c


def test_golden_request_is_what_we_encode_and_gets_the_golden_reply() -> None:
    req = wire.RegistrationRequest(
        wire.Flags(0), 1800, IPv4Address("0.0.0.0"), HA, IPv4Address("192.0.2.7"),
        0xE8FE6F80_80000001, (wire.NaiExtension(b"alice@example.net"),),
    )  # fmt: skip
    assert append_auth(wire.encode(req), wire.EXT_MN_HA_AUTH, SA) == GOLDEN_REQUEST
    decoded = wire.decode_request(GOLDEN_REQUEST)
    assert request_nai(decoded) == b"alice@example.net"
    out = core().handle_request(GOLDEN_REQUEST, NOW, WALL)
    assert out.code == 0 and out.reply == GOLDEN_REPLY


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
def test_tshark_reads_the_golden_exchange_like_we_do(tmp_path: Path) -> None:
    pcap = tmp_path / "pool.pcap"
    write_pcap(
        pcap,
        [
            ipv4_udp(GOLDEN_REQUEST, "192.0.2.7", "10.1.0.1", 40000, 434),
            ipv4_udp(GOLDEN_REPLY, "10.1.0.1", "192.0.2.7", 434, 40000),
        ],
    )
    fields = ["mip.type", "mip.code", "mip.homeaddr", "mip.haaddr", "mip.ext.type", "mip.nai",
              "mip.auth.spi", "_ws.malformed"]  # fmt: skip
    rows = tshark_fields(pcap, fields)
    for row in rows:  # tshark versions show the NAI as text or hex, the SPI in hex or decimal
        if row[5] == b"alice@example.net".hex():
            row[5] = "alice@example.net"
        row[6] = str(int(row[6], 0))
    assert rows == [
        ["1", "", "0.0.0.0", "10.1.0.1", "131,32", "alice@example.net", "512", ""],
        ["3", "0", "10.1.128.1", "10.1.0.1", "131,32", "alice@example.net", "512", ""],
    ], rows


# --- properties -------------------------------------------------------------------------------


@given(st.binary(max_size=80))
def test_any_bytes_after_the_header_decode_or_raise_decode_error(tail: bytes) -> None:
    """A 0.0.0.0 request with anything after its header: a message (whose NAI, if any, is
    the first NAI before the MN-HA extension) or DecodeError, and the core never crashes."""
    data = GOLDEN_REQUEST[:24] + tail
    try:
        req = wire.decode_request(data)
    except DecodeError:
        pass
    else:
        nai = request_nai(req)
        assert nai is None or any(
            isinstance(e, wire.NaiExtension) and e.nai == nai for e in req.extensions
        )
    out = core().handle_request(data, NOW, WALL)
    assert out.code is None or out.code != 0 or out.reply is not None


OPS = st.lists(
    st.tuples(
        st.integers(0, 5),  # which NAI
        st.sampled_from(["zero", "held", "other", "dereg", "forget", "expire"]),
        st.sampled_from([3, 600]),
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(OPS)
def test_pool_rules_keep_one_nai_per_address_and_one_address_per_nai(
    ops: list[tuple[int, str, int]],
) -> None:
    small = AddressPool("subs", POOL.first, POOL.first + 3)  # 4 addresses for 6 NAIs
    c = ha.HomeAgentCore(ha.HomeAgentSettings(address=HA, node_id=1), SecurityAssociations([SA]))
    c.pools = AddressPools([small], c.table)
    held: dict[int, IPv4Address] = {}
    now, wall = NOW, WALL
    for who, op, lifetime in ops:
        now += 1.0
        wall += 1.0
        if op == "expire":
            now += 700.0
            wall += 700.0
            c.tick(now)
            continue
        if op == "forget":
            held.pop(who, None)
            continue
        home = held.get(who, IPv4Address("0.0.0.0"))
        if op == "other":
            home = IPv4Address(small.first + who % 4)
        life = 0 if op == "dereg" else lifetime
        nai = f"n{who}@example.net".encode()
        ident = ntp_from_unix(wall) | who
        body = wire.encode(
            wire.RegistrationRequest(
                wire.Flags(0), life, home, HA, IPv4Address("192.0.2.7"), ident,
                (wire.NaiExtension(nai),),
            )
        )  # fmt: skip
        out = c.handle_request(append_auth(body, wire.EXT_MN_HA_AUTH, SA), now, wall)
        assert out.reply is not None
        reply = wire.decode_reply(out.reply)
        if out.code == 0 and life:
            assert int(reply.home_address) in small
            held[who] = reply.home_address
        elif out.code == 0:
            held.pop(who, None)
        else:
            assert out.code in (129, 130, 133), out.code
            assert not out.events or all(not isinstance(e, ha.BindingChanged) for e in out.events)
        owners: dict[bytes, int] = {}
        for rec in c.table.records():
            if rec.bindings:
                assert rec.home_address in small and rec.nai
                assert rec.nai not in owners, "an NAI live on two addresses"
                owners[rec.nai] = rec.home_address
