"""RFC 4433 dynamic HA assignment: extension codec, sans-IO rules, and the core using them."""

from __future__ import annotations

import shutil
import signal
import socket
import time
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest
import vectors as v
from helpers import free_port, homeagent_config, start_homeagent
from hypothesis import given
from hypothesis import strategies as st
from pcapio import ipv4_udp, tshark_fields, write_pcap

from mobileip.agents.client import MobileNode, build_request, check_reply
from mobileip.core import homeagent as ha
from mobileip.core.dynamic_ha import (
    Assign,
    DynamicAssignment,
    DynamicHaSettings,
    Redirect,
    dynamic_request,
    redirected_to,
)
from mobileip.core.replay import ntp_from_unix
from mobileip.core.security import SecurityAssociation, SecurityAssociations, append_auth
from mobileip.wire import dynamic_ha as dha
from mobileip.wire import registration as wire
from mobileip.wire.codes import ReplyCode, meaning
from mobileip.wire.errors import DecodeError

SA = SecurityAssociation(v.HMAC_SPI, "hmac-md5", v.HMAC_KEY, (IPv4Network(v.HOME_PREFIX),))
ASSIGNED = IPv4Address("10.1.0.100")  # the group's virtual address
PEER1 = IPv4Address("10.1.0.101")
PEER2 = IPv4Address("10.1.0.102")
ANY = dha.ALL_ONE_ADDR
NOW = 1000.0

# --- the extension codec ------------------------------------------------------------------------

# Golden vectors written from the layout (type 139, length 5, sub-type, address).
REQUESTED_GOLDEN = v.hexbytes(
    """
    8b          # type 139: Dynamic HA extension
    05          # length 5
    01          # sub-type 1: Requested HA
    0a 01 00 65 # 10.1.0.101
    """
)
REDIRECTED_GOLDEN = v.hexbytes(
    """
    8b 05
    02          # sub-type 2: Redirected HA
    c0 00 02 01 # 192.0.2.1
    """
)
ANY_GOLDEN = bytes.fromhex("8b0501ffffffff")


def test_golden_vectors_encode_and_decode() -> None:
    req = dha.DynamicHaExtension(dha.SUBTYPE_REQUESTED_HA, PEER1)
    red = dha.DynamicHaExtension(dha.SUBTYPE_REDIRECTED_HA, IPv4Address("192.0.2.1"))
    assert dha.encode(req) == REQUESTED_GOLDEN
    assert dha.encode(red) == REDIRECTED_GOLDEN
    assert dha.decode(REQUESTED_GOLDEN) == req and req.requested and not req.redirected
    assert dha.decode(REDIRECTED_GOLDEN) == red and red.redirected
    any_ha = dha.decode(ANY_GOLDEN)
    assert dha.is_all_zero_one(any_ha.home_agent) and dha.is_all_zero_one(dha.ALL_ZERO_ADDR)
    assert not dha.is_all_zero_one(PEER1)


def test_registration_codec_carries_it_as_a_skippable_extension() -> None:
    """Type 139 is >= 128: the registration codec keeps it byte-exact, parse() reads it."""
    body = wire.encode(wire.RegistrationRequest(wire.Flags(0), 600, v.HOME, ANY, v.COA, 7))
    msg = wire.decode_request(body + REQUESTED_GOLDEN)
    assert msg.extensions == (dha.to_extension(dha.decode(REQUESTED_GOLDEN)),)
    assert wire.encode(msg) == body + REQUESTED_GOLDEN
    assert dha.find(msg, dha.SUBTYPE_REQUESTED_HA) == dha.decode(REQUESTED_GOLDEN)
    assert dha.find(msg, dha.SUBTYPE_REDIRECTED_HA) is None
    assert dha.find(msg, dha.SUBTYPE_REQUESTED_HA, before=0) is None
    assert dha.parse(wire.NaiExtension(b"x")) is None


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x8b",
        b"\x8b\x04\x01\x0a\x01\x00",
        b"\x8b\x06\x01\x0a\x01\x00\x65\x00",
        b"\x20\x05" + bytes(5),
    ],
)
def test_bad_extensions_are_decode_errors(data: bytes) -> None:
    with pytest.raises(DecodeError) as info:
        dha.decode(data)
    assert info.value.reason == "bad-dynamic-ha-extension"


def test_encode_rejects_a_subtype_outside_a_byte() -> None:
    with pytest.raises(ValueError):
        dha.encode(dha.DynamicHaExtension(256, PEER1))


@given(st.integers(0, 255), st.integers(0, 0xFFFFFFFF))
def test_round_trip(subtype: int, addr: int) -> None:
    ext = dha.DynamicHaExtension(subtype, IPv4Address(addr))
    data = dha.encode(ext)
    assert len(data) == 7 and data[:2] == b"\x8b\x05"
    assert dha.decode(data) == ext
    assert wire.encode_extension(dha.to_extension(ext)) == data
    assert dha.parse(dha.to_extension(ext)) == ext


@given(st.binary(max_size=12))
def test_garbage_bodies_decode_or_raise_decode_error(body: bytes) -> None:
    try:
        ext = dha.decode_body(body)
    except DecodeError:
        assert len(body) != 5
    else:
        assert len(body) == 5 and dha.encode(ext)[2:] == body


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
def test_tshark_reads_the_golden_vectors_like_we_do(tmp_path: Path) -> None:
    req = wire.encode(wire.RegistrationRequest(wire.Flags(0), 600, v.HOME, ANY, v.COA, 7))
    rep = wire.encode(wire.RegistrationReply(143, 0, v.HOME, ASSIGNED, 7))
    pcap = tmp_path / "dynha.pcap"
    write_pcap(
        pcap,
        [
            ipv4_udp(req + REQUESTED_GOLDEN, "192.0.2.7", ASSIGNED),
            ipv4_udp(rep + REDIRECTED_GOLDEN, "192.0.2.7", ASSIGNED),
        ],
    )
    rows = tshark_fields(
        pcap,
        ["mip.haaddr", "mip.ext.type", "mip.ext.dynha.subtype", "mip.ext.dynha.ha", "mip.code"],
    )
    assert rows == [
        ["255.255.255.255", "139", "1", "10.1.0.101", ""],
        ["10.1.0.100", "139", "2", "192.0.2.1", "143"],
    ]


def test_reply_code_143_has_a_meaning() -> None:
    assert ReplyCode.REDIRECTED_HA == 143 and "redirected" in meaning(143)


# --- the rules ----------------------------------------------------------------------------------


def rules(
    redirect_above: float = 0.5, peers: tuple[IPv4Address, ...] = (PEER1, PEER2)
) -> DynamicAssignment:
    settings = DynamicHaSettings(ASSIGNED, 10, redirect_above, peers)
    return DynamicAssignment(settings, frozenset({v.HA}))


def decide(d: DynamicAssignment, bindings: int, **kw: object) -> Assign | Redirect:
    args: dict[str, object] = {"deregistration": False, "bound_here": False, "requested": None}
    args.update(kw)
    return d.decide(bindings=bindings, **args)  # type: ignore[arg-type]


def test_spare_capacity_assigns_here() -> None:
    d = rules()
    assert decide(d, 4) == Assign(ASSIGNED, "spare-capacity")


def test_loaded_redirects_to_peers_in_turn() -> None:
    d = rules()
    got = [decide(d, 5) for _ in range(3)]
    assert got == [
        Redirect(PEER1, "loaded"),
        Redirect(PEER2, "loaded"),
        Redirect(PEER1, "loaded"),
    ]
    assert d.counters["redirected"] == 3 and d.counters["redirected-loaded"] == 3


def test_loaded_prefers_the_requested_peer() -> None:
    assert decide(rules(), 9, requested=PEER2) == Redirect(PEER2, "loaded-requested-peer")


def test_requested_us_is_never_redirected() -> None:
    d = rules()
    for ours in (ASSIGNED, v.HA):
        assert decide(d, 10, requested=ours) == Assign(ASSIGNED, "requested")


def test_bound_mobile_nodes_and_deregistrations_stay() -> None:
    d = rules()
    assert decide(d, 10, bound_here=True) == Assign(ASSIGNED, "already-bound")
    assert decide(d, 10, deregistration=True) == Assign(ASSIGNED, "deregistration")


def test_no_peer_left_assigns_here() -> None:
    d = rules(peers=(ASSIGNED, v.HA))  # only our own addresses: nobody to redirect to
    assert d.peers == ()
    assert decide(d, 10) == Assign(ASSIGNED, "no-peer")


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError):
        DynamicHaSettings(ASSIGNED, 0)
    with pytest.raises(ValueError):
        DynamicHaSettings(ASSIGNED, 10, 0.0)
    with pytest.raises(ValueError):
        DynamicHaSettings(ASSIGNED, 10, 1.5)
    with pytest.raises(ValueError):
        DynamicHaSettings(ANY, 10)


def test_status_shows_load_and_counters() -> None:
    d = rules()
    decide(d, 5)
    status = d.status(5)
    assert status["load"] == 0.5 and status["peers"] == ["10.1.0.101", "10.1.0.102"]
    assert status["counters"] == {"redirected": 1, "redirected-loaded": 1}


# --- through the core ---------------------------------------------------------------------------


def make_core(max_bindings: int = 2, dynamic: bool = True) -> ha.HomeAgentCore:
    settings = ha.HomeAgentSettings(
        address=v.HA, max_bindings=max_bindings, extra_addresses=frozenset({ASSIGNED})
    )
    core = ha.HomeAgentCore(settings, SecurityAssociations([SA]))
    if dynamic:
        dyn = DynamicHaSettings(ASSIGNED, max_bindings, 0.5, (PEER1,))
        core.dynamic = DynamicAssignment(dyn, settings.our_addresses())
    return core


def request(
    home: IPv4Address,
    ident: int,
    *,
    home_agent: IPv4Address = ANY,
    lifetime: int = 600,
    pre: bytes = b"",
    post: bytes = b"",
) -> bytes:
    body = wire.encode(
        wire.RegistrationRequest(wire.Flags(0), lifetime, home, home_agent, v.COA, ident)
    )
    return append_auth(body + pre, wire.EXT_MN_HA_AUTH, SA) + post


def ident(n: int) -> int:
    return (ntp_from_unix(v.WALL) & ~0xFFFFFFFF) | n


def reply(out: ha.Outcome) -> wire.RegistrationReply:
    assert out.reply is not None
    rep = wire.decode_reply(out.reply)
    assert rep.code == out.code
    auth = wire.find_auth(rep, wire.EXT_MN_HA_AUTH)
    assert auth is not None  # every answer here is authenticated
    return rep


HOMES = [IPv4Address(f"10.1.0.{n}") for n in (10, 11, 12)]


def test_core_assigns_then_redirects_when_loaded() -> None:
    core = make_core()
    first = core.handle_request(request(HOMES[0], ident(1)), NOW, v.WALL)
    rep = reply(first)
    assert rep.code == 0 and rep.home_agent == ASSIGNED  # the MN learns its HA here
    rec = core.table.get(int(HOMES[0]))
    assert rec is not None and rec.home_agent == int(ASSIGNED)

    second = core.handle_request(request(HOMES[1], ident(2)), NOW, v.WALL)
    rep = reply(second)
    assert rep.code == ReplyCode.REDIRECTED_HA and rep.lifetime == 0
    assert rep.home_agent == ASSIGNED and rep.identification == ident(2)
    auth = wire.find_auth(rep, wire.EXT_MN_HA_AUTH)
    assert auth is not None
    red = dha.find(rep, dha.SUBTYPE_REDIRECTED_HA, before=auth[0])
    assert red == dha.DynamicHaExtension(dha.SUBTYPE_REDIRECTED_HA, PEER1)  # authenticated
    assert core.table.get(int(HOMES[1])) is None  # nothing kept for a redirected MN
    assert any(isinstance(e, ha.RequestDenied) and e.code == 143 for e in second.events)
    assert core.stats.replies[143] == 1


def test_core_renewal_of_a_bound_node_with_any_ha_stays() -> None:
    core = make_core()
    assert reply(core.handle_request(request(HOMES[0], ident(1)), NOW, v.WALL)).code == 0
    again = reply(core.handle_request(request(HOMES[0], ident(2)), NOW, v.WALL))
    assert again.code == 0 and again.home_agent == ASSIGNED
    # and with the assigned address in the Home Agent field, as a mobile node uses it afterwards
    named = reply(
        core.handle_request(request(HOMES[0], ident(3), home_agent=ASSIGNED), NOW, v.WALL)
    )
    assert named.code == 0


def test_core_requested_us_is_not_redirected_but_limited() -> None:
    core = make_core(max_bindings=1)
    assert reply(core.handle_request(request(HOMES[0], ident(1)), NOW, v.WALL)).code == 0
    asked = dha.encode(dha.DynamicHaExtension(dha.SUBTYPE_REQUESTED_HA, ASSIGNED))
    out = core.handle_request(request(HOMES[1], ident(2), pre=asked), NOW, v.WALL)
    assert reply(out).code == ReplyCode.INSUFFICIENT_RESOURCES  # full, and no second bounce


def test_core_ignores_an_unauthenticated_requested_ha() -> None:
    core = make_core()
    assert reply(core.handle_request(request(HOMES[0], ident(1)), NOW, v.WALL)).code == 0
    asked = dha.encode(dha.DynamicHaExtension(dha.SUBTYPE_REQUESTED_HA, ASSIGNED))
    out = core.handle_request(request(HOMES[1], ident(2), post=asked), NOW, v.WALL)
    assert reply(out).code == 143  # after the authenticator it counts for nothing


def test_core_bad_requested_ha_length_is_134() -> None:
    core = make_core()
    bad = b"\x8b\x03\x01\x0a\x01"
    out = core.handle_request(request(HOMES[0], ident(1), pre=bad), NOW, v.WALL)
    assert reply(out).code == ReplyCode.POORLY_FORMED


def test_core_replay_is_refused_before_any_redirect() -> None:
    core = make_core()
    assert reply(core.handle_request(request(HOMES[0], ident(5)), NOW, v.WALL)).code == 0
    old = core.handle_request(request(HOMES[0], ident(4)), NOW, v.WALL)
    assert reply(old).code == ReplyCode.IDENTIFICATION_MISMATCH


def test_core_bad_authenticator_gets_no_redirect() -> None:
    core = make_core()
    data = bytearray(request(HOMES[0], ident(1)))
    data[-1] ^= 1
    out = core.handle_request(bytes(data), NOW, v.WALL)
    assert out.code == ReplyCode.MN_FAILED_AUTH and core.dynamic is not None
    assert not core.dynamic.counters  # the rules never saw it


def test_core_without_dynamic_assignment_denies_136() -> None:
    core = make_core(dynamic=False)
    for any_ha in (dha.ALL_ONE_ADDR, dha.ALL_ZERO_ADDR):
        out = core.handle_request(request(HOMES[0], ident(1), home_agent=any_ha), NOW, v.WALL)
        assert reply(out).code == ReplyCode.UNKNOWN_HOME_AGENT


def test_core_all_zero_also_asks_for_assignment() -> None:
    core = make_core()
    out = core.handle_request(
        request(HOMES[0], ident(1), home_agent=dha.ALL_ZERO_ADDR), NOW, v.WALL
    )
    assert reply(out).code == 0 and reply(out).home_agent == ASSIGNED


def test_core_dynamic_deregistration_is_served_here() -> None:
    core = make_core(max_bindings=1)
    assert reply(core.handle_request(request(HOMES[0], ident(1)), NOW, v.WALL)).code == 0
    out = core.handle_request(request(HOMES[0], ident(2), lifetime=0), NOW, v.WALL)
    assert reply(out).code == 0
    rec = core.table.get(int(HOMES[0]))
    assert rec is not None and rec.bindings == ()


# --- two real daemons on loopback: the loaded one redirects -------------------------------------


def exchange(dest: tuple[str, int], data: bytes, timeout: float = 1.0) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        for _ in range(3):
            s.sendto(data, dest)
            try:
                return s.recvfrom(2048)[0]
            except TimeoutError:
                continue
    raise AssertionError(f"no reply from {dest}")


def test_two_daemons_loaded_one_redirects_new_mobile_nodes(tmp_path: Path) -> None:
    port = free_port("127.0.0.2")
    sa_cfg = {"spi": v.HMAC_SPI, "algorithm": "hmac-md5", "key": v.HMAC_KEY.hex(),
              "home_addresses": [v.HOME_PREFIX]}  # fmt: skip
    a_cfg = homeagent_config(
        "127.0.0.2",
        homeagent={"address": "127.0.0.2", "port": port, "max_bindings": 4},
        security_association=[sa_cfg],
        dynamic_ha={"redirect_above": 0.5, "peers": ["127.0.0.3"]},
    )
    b_cfg = homeagent_config(
        "127.0.0.3",
        homeagent={"address": "127.0.0.3", "port": port},
        security_association=[sa_cfg],
        dynamic_ha={"redirect_above": 0.9},
    )
    a = start_homeagent(tmp_path / "a", a_cfg, name="a")
    try:
        b = start_homeagent(tmp_path / "b", b_cfg, name="b")
    except BaseException:
        a.stop(signal.SIGKILL)
        raise
    try:
        served: dict[str, str] = {}
        redirects = 0
        for n in range(4):
            home = IPv4Address(f"10.1.0.{20 + n}")
            mn = MobileNode(home, v.COA, ANY, SA)
            ident = ntp_from_unix(time.time())
            data = exchange(a.address, dynamic_request(home, v.COA, SA, 600, ident))
            check = check_reply(mn, data, ident)
            assert check.ok and check.reply is not None, check.error
            if check.reply.code == 0:
                served[str(home)] = str(check.reply.home_agent)
                continue
            assert check.reply.code == ReplyCode.REDIRECTED_HA
            target = redirected_to(check.reply)
            assert target == IPv4Address("127.0.0.3")
            redirects += 1
            # follow it: ask the peer, naming it in an authenticated Requested HA extension
            ident2 = ident + 1
            req = dynamic_request(home, v.COA, SA, 600, ident2, requested=target)
            again = check_reply(mn, exchange((str(target), port), req), ident2)
            assert again.ok and again.reply is not None and again.reply.code == 0, again
            served[str(home)] = str(again.reply.home_agent)
        # load 2/4 = 0.5 reached after two: the other two were sent to b
        assert served == {
            "10.1.0.20": "127.0.0.2",
            "10.1.0.21": "127.0.0.2",
            "10.1.0.22": "127.0.0.3",
            "10.1.0.23": "127.0.0.3",
        }
        assert redirects == 2
        assert {r["home_address"] for r in a.bindings()} == {"10.1.0.20", "10.1.0.21"}
        assert {r["home_agent"] for r in b.bindings()} == {"127.0.0.3"}
        status = a.get("/api/v1/dynamic_ha")
        assert status["load"] == 0.5 and status["counters"]["redirected-loaded"] == 2
        assert b.get("/api/v1/dynamic_ha")["counters"]["assigned-requested"] == 2
        # a bound MN renews under its assigned address as usual
        mn = MobileNode(IPv4Address("10.1.0.22"), v.COA, IPv4Address("127.0.0.3"), SA)
        ident = ntp_from_unix(time.time()) + 10
        renewed = check_reply(mn, exchange(b.address, build_request(mn, 600, ident)), ident)
        assert renewed.ok and renewed.reply is not None and renewed.reply.code == 0
        assert "registration.denied" in a.log() and "redirected-to-127.0.0.3" in a.log()
    except BaseException:
        print(a.log(), b.log())
        raise
    finally:
        a.stop()
        b.stop()
