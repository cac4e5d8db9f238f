"""The foreign agent's side of dynamic home addresses (RFC 2794), sans-IO: a request with home
address 0.0.0.0 and an NAI is pending under the NAI until the reply assigns the address; replies
to a mobile node without an address go to the link broadcast address; codes 97-99."""

from __future__ import annotations

import shutil
import subprocess
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pcapio import ipv4_udp, tshark_fields, write_pcap

from mobileip.agents.fa import rules as fa
from mobileip.wire import registration as wire

A = IPv4Address
COA = A("10.2.0.1")
HA = A("10.1.0.1")
ANY = A("0.0.0.0")
ASSIGNED = A("10.1.0.130")
NAI = b"Alice@Pool.Test"
MN_NO_ADDRESS = ("0.0.0.0", 50000)
BROADCAST = ("255.255.255.255", 50000)
HA_PORT = (str(HA), 434)
AUTH = bytes.fromhex("2014000001000123456789abcdef0123456789abcdef")


def request(
    home: IPv4Address = ANY,
    nai: bytes | None = NAI,
    ident: int = 0x1122334455667788,
    ha: IPv4Address = HA,
    lifetime: int = 600,
) -> bytes:
    exts = (wire.NaiExtension(nai),) if nai is not None else ()
    req = wire.RegistrationRequest(wire.Flags(0), lifetime, home, ha, COA, ident, exts)
    return wire.encode(req) + AUTH


def reply(
    home: IPv4Address = ASSIGNED,
    code: int = 0,
    lifetime: int = 600,
    ident: int = 0x99AABBCC55667788,
    nai: bytes | None = b"alice@pool.test",
) -> bytes:
    exts = (wire.NaiExtension(nai),) if nai is not None else ()
    return wire.encode(wire.RegistrationReply(code, lifetime, home, HA, ident, exts)) + AUTH


def core() -> fa.ForeignAgentCore:
    return fa.ForeignAgentCore(fa.ForeignAgentSettings(frozenset({COA})))


def test_pending_by_nai_until_the_reply_assigns_the_address() -> None:
    c = core()
    data = request()
    out = c.handle_request(data, MN_NO_ADDRESS, now=1.0)
    assert out.sends == [fa.Send(data, HA_PORT)]  # relayed unchanged
    assert list(c.pending) == [(b"alice@pool.test", 0x55667788)]
    assert not c.is_pending(ANY)
    out = c.handle_reply(reply(), HA_PORT, now=1.5)
    # the mobile node owns no address yet: the reply goes to the link broadcast, its port
    assert out.sends == [fa.Send(reply(), BROADCAST)]
    [added] = out.events
    assert isinstance(added, fa.VisitorAdded) and not added.renewed
    v = added.visitor
    assert (v.home_address, v.mn_address) == (ASSIGNED, (str(ASSIGNED), 50000))
    assert c.visitors == {ASSIGNED: v} and not c.pending
    # the renewal comes from the assigned address, an ordinary request
    renewal = request(home=ASSIGNED, ident=0x1122334455667799)
    c.handle_request(renewal, (str(ASSIGNED), 50000), now=2.0)
    out = c.handle_reply(reply(ident=0x99AABBCC55667799), HA_PORT, now=2.1)
    assert out.sends == [fa.Send(reply(ident=0x99AABBCC55667799), (str(ASSIGNED), 50000))]
    [renewed] = out.events
    assert isinstance(renewed, fa.VisitorAdded) and renewed.renewed


def test_reply_matched_by_nai_and_identification_only() -> None:
    c = core()
    c.handle_request(request(), MN_NO_ADDRESS, now=0.0)
    assert not c.handle_reply(reply(nai=b"bob@pool.test"), HA_PORT, 0.0).sends
    assert not c.handle_reply(reply(ident=0x99AABBCC00000001), HA_PORT, 0.0).sends
    assert c.counters["reply-dropped-unexpected"] == 2
    assert c.handle_reply(reply(), HA_PORT, 0.0).sends  # still pending, now it matches


def test_two_mobile_nodes_without_addresses_do_not_mix() -> None:
    c = core()
    c.handle_request(request(nai=b"a@x"), ("0.0.0.0", 1), 0.0)
    c.handle_request(request(nai=b"b@x"), ("0.0.0.0", 2), 0.0)
    out = c.handle_reply(reply(home=A("10.1.0.131"), nai=b"b@x"), HA_PORT, 0.0)
    assert out.sends[0].dest == ("255.255.255.255", 2)
    assert set(c.visitors) == {A("10.1.0.131")}
    assert c.visitors[A("10.1.0.131")].mn_address == ("10.1.0.131", 2)


def test_a_mobile_node_with_some_source_address_gets_its_reply_there() -> None:
    c = core()
    src = ("10.2.0.77", 4000)
    c.handle_request(request(), src, 0.0)
    out = c.handle_reply(reply(), HA_PORT, 0.0)
    assert out.sends[0].dest == src and c.visitors[ASSIGNED].mn_address == src


def test_missing_nai_is_97_to_the_link_broadcast() -> None:
    c = core()
    out = c.handle_request(request(nai=None), MN_NO_ADDRESS, 0.0)
    [send] = out.sends
    assert send.dest == BROADCAST
    denial = wire.decode_reply(send.data)
    assert denial.code == fa.FA_MISSING_NAI == 97 and denial.home_address == ANY
    assert not c.pending


def test_missing_home_agent_is_98_and_echoes_the_nai() -> None:
    for ha in (ANY, A("255.255.255.255")):
        c = core()
        [send] = c.handle_request(request(ha=ha), MN_NO_ADDRESS, 0.0).sends
        denial = wire.decode_reply(send.data)
        assert denial.code == fa.FA_MISSING_HOME_AGENT == 98
        assert wire.NaiExtension(NAI) in denial.extensions
        assert not c.pending


def test_accepted_reply_without_an_address_is_99() -> None:
    c = core()
    c.handle_request(request(), MN_NO_ADDRESS, 0.0)
    out = c.handle_reply(reply(home=ANY), HA_PORT, 0.0)
    [send] = out.sends
    assert send.dest == BROADCAST
    assert wire.decode_reply(send.data).code == fa.FA_MISSING_HOME_ADDRESS == 99
    assert not c.visitors and not c.pending


def test_denial_from_the_home_agent_is_relayed_to_the_broadcast() -> None:
    c = core()
    c.handle_request(request(), MN_NO_ADDRESS, 0.0)
    denial = reply(home=ANY, code=130, lifetime=0)
    assert c.handle_reply(denial, HA_PORT, 0.0).sends == [fa.Send(denial, BROADCAST)]
    assert not c.visitors


def test_timeout_of_a_dynamic_request_is_78_to_the_broadcast() -> None:
    c = core()
    c.handle_request(request(), MN_NO_ADDRESS, 0.0)
    [send] = c.tick(100.0).sends
    assert send.dest == BROADCAST
    assert wire.decode_reply(send.data).code == fa.FA_REGISTRATION_TIMEOUT
    assert not c.pending


def test_dynamic_deregistration_removes_the_assigned_visitor() -> None:
    c = core()
    c.handle_request(request(), MN_NO_ADDRESS, 0.0)
    c.handle_reply(reply(), HA_PORT, 0.0)
    c.handle_request(request(home=ANY, lifetime=0, ident=7), (str(ASSIGNED), 50000), 1.0)
    out = c.handle_reply(reply(lifetime=0, ident=7), HA_PORT, 1.0)
    assert fa.VisitorRemoved(ASSIGNED, "deregistered") in out.events and not c.visitors


@given(st.binary(max_size=200), st.sampled_from([MN_NO_ADDRESS, ("10.2.0.9", 1)]))
def test_any_bytes_never_crash(data: bytes, src: tuple[str, int]) -> None:
    c = core()
    out = c.handle_request(data, src, 0.0)
    for send in out.sends:
        assert send.dest in (src, BROADCAST) or send.dest[1] == 434  # a relay to some HA
    c.handle_reply(data, HA_PORT, 0.0)


# --- golden: the RFC 2794 exchange through the agent, and its denials, read by tshark ----------

# the agent's own denials, to the link broadcast (port 40000): 97 for the golden request without
# its NAI, 98 for it with home agent 0.0.0.0 (NAI echoed), 99 for an accepted reply assigning
# 0.0.0.0 (NAI echoed); no MN-HA authenticator (the agent has no key for it)
GOLDEN_97 = bytes.fromhex("03610000000000000a010001e8fe6f8080000001")
GOLDEN_98 = bytes.fromhex(
    "036200000000000000000000e8fe6f80800000018311" + b"alice@example.net".hex()
)
GOLDEN_99 = bytes.fromhex(
    "03630000000000000a010001e8fe6f80800000018311" + b"alice@example.net".hex()
)


def test_golden_exchange_through_the_agent_and_its_denials() -> None:
    from test_pools_wire import GOLDEN_REPLY, GOLDEN_REQUEST

    req = wire.decode_request(GOLDEN_REQUEST)
    c = fa.ForeignAgentCore(fa.ForeignAgentSettings(frozenset({req.care_of_address})))
    src = ("0.0.0.0", 40000)
    assert c.handle_request(GOLDEN_REQUEST, src, 0.0).sends == [
        fa.Send(GOLDEN_REQUEST, ("10.1.0.1", 434))
    ]
    assert c.handle_reply(GOLDEN_REPLY, ("10.1.0.1", 434), 0.0).sends == [
        fa.Send(GOLDEN_REPLY, ("255.255.255.255", 40000))
    ]
    assert list(c.visitors) == [A("10.1.128.1")]
    plain = wire.RegistrationRequest(
        req.flags, req.lifetime, req.home_address, req.home_agent, req.care_of_address,
        req.identification,
    )  # fmt: skip
    no_nai = wire.encode(plain) + GOLDEN_REQUEST[-22:]
    assert c.handle_request(no_nai, src, 0.0).sends == [fa.Send(GOLDEN_97, BROADCAST_40000)]
    no_ha = GOLDEN_REQUEST[:8] + bytes(4) + GOLDEN_REQUEST[12:]
    assert c.handle_request(no_ha, src, 0.0).sends == [fa.Send(GOLDEN_98, BROADCAST_40000)]
    c.handle_request(GOLDEN_REQUEST, src, 0.0)
    zero = GOLDEN_REPLY[:4] + bytes(4) + GOLDEN_REPLY[8:]
    assert c.handle_reply(zero, ("10.1.0.1", 434), 0.0).sends == [
        fa.Send(GOLDEN_99, BROADCAST_40000)
    ]


BROADCAST_40000 = ("255.255.255.255", 40000)


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
def test_tshark_reads_the_agents_denials_as_rfc_2794_codes(tmp_path: Path) -> None:
    pcap = tmp_path / "fa.pcap"
    frames = [ipv4_udp(d, "192.0.2.7", "255.255.255.255", 434, 40000)
              for d in (GOLDEN_97, GOLDEN_98, GOLDEN_99)]  # fmt: skip
    write_pcap(pcap, frames)
    rows = tshark_fields(pcap, ["mip.type", "mip.code", "mip.homeaddr", "mip.ext.type",
                                "_ws.malformed"])  # fmt: skip
    assert rows == [
        ["3", "97", "0.0.0.0", "", ""],
        ["3", "98", "0.0.0.0", "131", ""],
        ["3", "99", "0.0.0.0", "131", ""],
    ], rows
    text = subprocess.run(
        ["tshark", "-r", str(pcap), "-V"], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    for meaning in ("Missing NAI", "Missing Home Agent", "Missing Home Address"):
        assert f"Reg Deny (FA)(NAI) - {meaning}" in text
