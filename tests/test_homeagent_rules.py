"""The Home Agent's registration rules (RFC 5944 3.8), sans-IO: HomeAgentCore with fixed clocks."""

from __future__ import annotations

import hashlib
import hmac
import itertools
from collections.abc import Callable, Iterator
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network
from typing import Any

import pytest
import vectors as v

from mobileip.core import homeagent as ha
from mobileip.core.bindings import make_version
from mobileip.core.replay import ntp_from_unix
from mobileip.core.security import (
    SecurityAssociation,
    SecurityAssociations,
    append_auth,
    verify_auth,
)
from mobileip.wire import registration as wire

HMAC_SA = SecurityAssociation(v.HMAC_SPI, "hmac-md5", v.HMAC_KEY, (IPv4Network(v.HOME_PREFIX),))
PS_SA = SecurityAssociation(v.PS_SPI, "prefix-suffix-md5", v.PS_KEY, (IPv4Network(v.HOME_PREFIX),))
OTHER_SA = SecurityAssociation(300, "hmac-md5", b"\x42" * 16, (IPv4Network("10.2.0.0/16"),))
NOW = 1000.0  # monotonic seconds
NODE_ID = 0x0A000001
COA3 = IPv4Address("203.0.113.3")
COA4 = IPv4Address("203.0.113.4")


def make_core(*, next_nonce: Callable[[], int] | None = None, **overrides: Any) -> ha.HomeAgentCore:
    settings = replace(ha.HomeAgentSettings(address=v.HA, node_id=NODE_ID), **overrides)
    return ha.HomeAgentCore(
        settings, SecurityAssociations([HMAC_SA, PS_SA, OTHER_SA]), next_nonce=next_nonce
    )


class Clock:
    """Identifications for one mobile node: NTP time of WALL plus a counter in the fraction."""

    def __init__(self) -> None:
        self._n = itertools.count(1)

    def __call__(self, wall: float = v.WALL) -> int:
        return (ntp_from_unix(wall) & ~0xFFFFFFFF) | next(self._n)


def request(
    ident: int,
    *,
    home: IPv4Address = v.HOME,
    coa: IPv4Address = v.COA,
    lifetime: int = 1800,
    flags: int = 0,
    home_agent: IPv4Address = v.HA,
    nai: bytes | None = None,
    sa: SecurityAssociation = HMAC_SA,
    spi: int | None = None,
) -> bytes:
    exts: tuple[wire.Extension, ...] = (wire.NaiExtension(nai),) if nai is not None else ()
    body = wire.encode(
        wire.RegistrationRequest(wire.Flags(flags), lifetime, home, home_agent, coa, ident, exts)
    )
    if spi is not None:
        sa = replace(sa, spi=spi)
    return append_auth(body, wire.EXT_MN_HA_AUTH, sa)


def reply_of(out: ha.Outcome, sa: SecurityAssociation | None = HMAC_SA) -> wire.RegistrationReply:
    """Decode the reply; when ``sa`` is given, check its MN-HA authenticator independently."""
    assert out.reply is not None
    rep = wire.decode_reply(out.reply)
    assert rep.code == out.code
    if sa is not None:
        assert out.reply[-22:-16] == bytes([32, 20]) + sa.spi.to_bytes(4, "big")
        protected = out.reply[:-16]
        if sa.algorithm == "hmac-md5":
            expected = hmac.new(sa.key, protected, hashlib.md5).digest()
        else:
            expected = hashlib.md5(sa.key + protected + sa.key).digest()
        assert out.reply[-16:] == expected
        assert verify_auth(out.reply, rep, wire.EXT_MN_HA_AUTH, sa)[0]
    else:
        assert wire.find_auth(rep, wire.EXT_MN_HA_AUTH) is None
    return rep


def register(core: ha.HomeAgentCore, data: bytes, now: float = NOW) -> ha.Outcome:
    return core.handle_request(data, now, v.WALL)


# --- golden exchanges -------------------------------------------------------------------------


def test_golden_request_gets_golden_reply() -> None:
    core = make_core()
    out = register(core, v.REQ_HMAC)
    assert out.code == 0
    assert out.reply == v.REP_HMAC  # byte for byte: NAI echoed, HMAC-MD5 authenticator
    (event,) = out.events
    assert isinstance(event, ha.BindingChanged)
    assert not event.deregistration
    rec = core.table.live(int(v.HOME))
    assert rec is not None and rec == event.record
    assert rec.last_id == 0xE8FE6F80_80000000
    assert rec.home_agent == int(v.HA)
    (b,) = rec.bindings
    assert (b.care_of_address, b.granted_lifetime, b.expires, b.flags) == (
        int(v.COA),
        1800,
        NOW + 1800,
        0,
    )
    assert b.remaining(NOW + 0.5) == 1800
    assert core.stats.replies[0] == 1


def test_golden_prefix_suffix_request_gets_golden_reply() -> None:
    core = make_core()
    out = register(core, v.REQ_PS)
    assert out.code == 0 and out.reply == v.REP_PS
    rec = core.table.live(int(v.HOME_PS))
    assert rec is not None and rec.bindings[0].flags == int(wire.Flags.T)


def test_golden_stale_request_gets_golden_133() -> None:
    core = make_core()
    out = register(core, v.REQ_STALE)
    assert out.code == 133 and out.reply == v.REP_133
    assert core.table.get(int(v.HOME)) is None
    assert ha.SecurityViolation("bad-identification", v.HOME) in out.events
    assert ha.RequestDenied(133, "timestamp-outside-window", v.HOME) in out.events


def test_golden_full_request_accepted() -> None:
    # every extension kind: pad, NAI, skippable unknown, CVSE, MN-HA, MN-FA, FA-HA
    core = make_core()
    out = register(core, v.REQ_FULL)
    rep = reply_of(out)
    assert rep.code == 0 and rep.lifetime == 1800  # 0xffff capped at max_lifetime
    assert rep.extensions[0] == wire.NaiExtension(v.NAI)


def test_golden_deregistration_of_all() -> None:
    core = make_core()
    first = request(0xE8FE6F80_00000001)
    assert register(core, first).code == 0
    out = register(core, v.REQ_DEREG_ALL, NOW + 10)
    assert out.code == 0 and out.reply == v.REP_DEREG
    rec = core.table.get(int(v.HOME))
    assert rec is not None and rec.is_tombstone and rec.deleted_at == NOW + 10
    assert rec.last_id == 0xE8FE6F80_00000003
    assert len(core.table) == 0
    (event,) = out.events
    assert isinstance(event, ha.BindingChanged) and event.deregistration


# --- authentication: 131 ----------------------------------------------------------------------


@pytest.mark.parametrize("sa", [HMAC_SA, PS_SA], ids=["hmac-md5", "prefix-suffix-md5"])
def test_both_algorithms_accepted_with_valid_reply_authenticator(sa: SecurityAssociation) -> None:
    core = make_core()
    ident = Clock()()
    out = register(core, request(ident, sa=sa, nai=b"alice@example.org"))
    rep = reply_of(out, sa)
    assert (rep.code, rep.lifetime, rep.home_address, rep.home_agent, rep.identification) == (
        0,
        1800,
        v.HOME,
        v.HA,
        ident,
    )
    assert rep.extensions[0] == wire.NaiExtension(b"alice@example.org")


def test_wrong_key_is_131() -> None:
    core = make_core()
    wrong = replace(HMAC_SA, key=bytes(16))
    out = register(core, request(Clock()(), sa=wrong))
    rep = reply_of(out, None)  # we cannot authenticate to a node that failed to authenticate
    assert rep.code == 131 and rep.lifetime == 0
    assert ha.SecurityViolation("bad-authenticator", v.HOME) in out.events
    assert ha.RequestDenied(131, "bad-authenticator", v.HOME) in out.events
    assert core.stats.violations["bad-authenticator"] == 1
    assert core.table.get(int(v.HOME)) is None


def test_wrong_algorithm_is_131() -> None:
    core = make_core()
    out = register(core, request(Clock()(), sa=replace(HMAC_SA, algorithm="prefix-suffix-md5")))
    assert out.code == 131


def test_unknown_spi_is_131() -> None:
    out = register(make_core(), request(Clock()(), spi=4242))
    assert out.code == 131
    assert ha.SecurityViolation("bad-spi", v.HOME) in out.events


def test_sa_not_covering_home_is_131() -> None:
    out = register(make_core(), request(Clock()(), sa=OTHER_SA))
    assert out.code == 131
    assert ha.SecurityViolation("no-sa", v.HOME) in out.events


def test_missing_mn_ha_extension_is_131() -> None:
    core = make_core()
    out = register(core, v.REQ_GENAUTH_ONLY)
    assert reply_of(out, None).code == 131
    assert ha.SecurityViolation("missing-extension", v.HOME) in out.events
    # a body without any extension at all
    out = register(core, v.REQ_HMAC[:24])
    assert out.code == 131


def test_tampered_request_is_131() -> None:
    data = bytearray(request(Clock()()))
    data[2] ^= 0x01  # lifetime
    assert register(make_core(), bytes(data)).code == 131


# --- identification: 133 ----------------------------------------------------------------------


def test_replayed_identification_is_133_with_ha_time() -> None:
    core = make_core()
    assert register(core, v.REQ_HMAC).code == 0
    wall = v.WALL + 2.0
    out = core.handle_request(v.REQ_HMAC, NOW + 2, wall)
    rep = reply_of(out)
    assert rep.code == 133
    assert rep.identification >> 32 == ntp_from_unix(wall) >> 32 == v.NTP_SECONDS + 2
    assert rep.identification & 0xFFFFFFFF == 0x80000000
    assert ha.RequestDenied(133, "identification-not-increasing", v.HOME) in out.events
    # the binding is untouched
    rec = core.table.live(int(v.HOME))
    assert rec is not None and rec.version == make_version(v.NTP_SECONDS, NODE_ID)


def test_older_identification_is_133() -> None:
    core = make_core()
    assert register(core, request(0xE8FE6F80_00000010)).code == 0
    assert register(core, request(0xE8FE6F80_0000000F)).code == 133


@pytest.mark.parametrize("skew", [-8.0, 8.0, -86400.0])
def test_stale_timestamp_is_133_with_ha_time(skew: float) -> None:
    core = make_core()
    ident = (ntp_from_unix(v.WALL + skew) & ~0xFFFFFFFF) | 0xCAFEF00D
    out = register(core, request(ident))
    rep = reply_of(out)
    assert rep.code == 133
    assert rep.identification == (v.NTP_SECONDS << 32) | 0xCAFEF00D


def test_replay_window_setting() -> None:
    ident = (ntp_from_unix(v.WALL - 20) & ~0xFFFFFFFF) | 1
    assert register(make_core(), request(ident)).code == 133
    assert register(make_core(replay_window=30.0), request(ident)).code == 0


def test_deregistration_tombstone_blocks_replay_of_old_registration() -> None:
    core = make_core()
    reg = request(0xE8FE6F80_00000001)
    assert register(core, reg).code == 0
    assert register(core, v.REQ_DEREG_ALL).code == 0
    assert register(core, reg).code == 133
    assert core.table.live(int(v.HOME)) is None


# --- home agent field: 136 --------------------------------------------------------------------


def test_foreign_home_agent_field_is_136() -> None:
    core = make_core()
    out = register(core, request(Clock()(), home_agent=IPv4Address("10.9.9.9")))
    rep = reply_of(out)  # authenticated: the MN proved who it is
    assert rep.code == 136
    assert rep.home_agent == v.HA  # tells the MN our address
    assert core.table.get(int(v.HOME)) is None


def test_extra_addresses_are_ours() -> None:
    virtual = IPv4Address("10.1.0.254")
    core = make_core(extra_addresses=frozenset({virtual}))
    out = register(core, request(Clock()(), home_agent=virtual))
    rep = reply_of(out)
    assert rep.code == 0 and rep.home_agent == virtual
    rec = core.table.live(int(v.HOME))
    assert rec is not None and rec.home_agent == int(virtual)


# --- lifetimes --------------------------------------------------------------------------------


def test_lifetime_capped_at_max_lifetime() -> None:
    core = make_core(max_lifetime=300)
    out = register(core, request(Clock()(), lifetime=5000))
    assert reply_of(out).lifetime == 300
    rec = core.table.live(int(v.HOME))
    assert rec is not None
    assert rec.bindings[0].granted_lifetime == 300 and rec.bindings[0].expires == NOW + 300


def test_shorter_lifetime_granted_as_asked() -> None:
    core = make_core()
    assert reply_of(register(core, request(Clock()(), lifetime=42))).lifetime == 42


def test_infinite_lifetime_capped_when_max_is_finite() -> None:
    core = make_core(max_lifetime=1800)
    assert reply_of(register(core, request(Clock()(), lifetime=0xFFFF))).lifetime == 1800


def test_infinite_lifetime_when_allowed() -> None:
    core = make_core(max_lifetime=0xFFFF)
    out = register(core, request(Clock()(), lifetime=0xFFFF))
    assert reply_of(out).lifetime == 0xFFFF
    rec = core.table.live(int(v.HOME))
    assert rec is not None and rec.bindings[0].remaining(1e9) == 0xFFFF
    assert core.next_deadline() is None
    assert core.tick(1e9) == []
    assert core.table.live(int(v.HOME)) is not None


# --- deregistration ---------------------------------------------------------------------------


def test_deregistration_of_one_care_of_address() -> None:
    core = make_core()
    ids = Clock()
    S = int(wire.Flags.S)
    assert register(core, request(ids(), coa=v.COA, flags=S)).code == 0
    assert register(core, request(ids(), coa=v.COA2, flags=S)).code == 0
    out = register(core, request(ids(), coa=v.COA, lifetime=0))
    assert reply_of(out).lifetime == 0 and out.code == 0
    rec = core.table.live(int(v.HOME))
    assert rec is not None and [b.care_of_address for b in rec.bindings] == [int(v.COA2)]
    assert isinstance(out.events[0], ha.BindingChanged) and out.events[0].deregistration
    out = register(core, request(ids(), coa=v.COA2, lifetime=0))
    tomb = core.table.get(int(v.HOME))
    assert tomb is not None and tomb.is_tombstone


def test_deregistration_of_all_with_home_as_care_of_address() -> None:
    core = make_core()
    ids = Clock()
    S = int(wire.Flags.S)
    for coa in (v.COA, v.COA2, COA3):
        assert register(core, request(ids(), coa=coa, flags=S)).code == 0
    live = core.table.live(int(v.HOME))
    assert live is not None and len(live.bindings) == 3
    out = register(core, request(ids(), coa=v.HOME, lifetime=0), NOW + 5)
    assert out.code == 0
    rec = core.table.get(int(v.HOME))
    assert rec is not None and rec.is_tombstone and rec.deleted_at == NOW + 5
    assert len(core.table) == 0 and core.table.record_count == 1


def test_deregistration_without_binding_is_accepted() -> None:
    core = make_core()
    out = register(core, request(Clock()(), lifetime=0))
    assert out.code == 0
    rec = core.table.get(int(v.HOME))
    assert rec is not None and rec.is_tombstone


# --- simultaneous bindings --------------------------------------------------------------------


def test_without_s_flag_new_care_of_address_replaces_the_old() -> None:
    core = make_core()
    ids = Clock()
    assert register(core, request(ids(), coa=v.COA)).code == 0
    assert register(core, request(ids(), coa=v.COA2)).code == 0
    rec = core.table.live(int(v.HOME))
    assert rec is not None and [b.care_of_address for b in rec.bindings] == [int(v.COA2)]


def test_simultaneous_bindings_up_to_limit_then_135() -> None:
    core = make_core(max_simultaneous=3)
    ids = Clock()
    S = int(wire.Flags.S)
    for coa in (v.COA, v.COA2, COA3):
        assert register(core, request(ids(), coa=coa, flags=S)).code == 0
    out = register(core, request(ids(), coa=COA4, flags=S))
    assert reply_of(out).code == 135
    rec = core.table.live(int(v.HOME))
    assert rec is not None and len(rec.bindings) == 3
    assert rec.binding_for(int(COA4)) is None
    # refreshing one of the three is still fine
    out = register(core, request(ids(), coa=v.COA2, flags=S, lifetime=99), NOW + 1)
    assert out.code == 0
    rec = core.table.live(int(v.HOME))
    assert rec is not None and len(rec.bindings) == 3
    refreshed = rec.binding_for(int(v.COA2))
    assert refreshed is not None and refreshed.expires == NOW + 1 + 99


def test_max_simultaneous_one_answers_code_1() -> None:
    core = make_core(max_simultaneous=1)
    ids = Clock()
    S = int(wire.Flags.S)
    out = register(core, request(ids(), coa=v.COA, flags=S))
    assert out.code == 1  # the request asked for simultaneous bindings we do not support
    out = register(core, request(ids(), coa=v.COA2, flags=S))
    rep = reply_of(out)
    assert rep.code == 1 and rep.lifetime == 1800
    rec = core.table.live(int(v.HOME))
    assert rec is not None and [b.care_of_address for b in rec.bindings] == [int(v.COA2)]


# --- resources and malformed requests ---------------------------------------------------------


def test_max_bindings_is_130() -> None:
    core = make_core(max_bindings=1)
    ids = Clock()
    other = IPv4Address("10.1.0.77")
    assert register(core, request(ids())).code == 0
    out = register(core, request(ids(), home=other))
    assert reply_of(out).code == 130
    assert ha.RequestDenied(130, "max-bindings", other) in out.events
    # the mobile node already bound may still re-register
    assert register(core, request(ids())).code == 0
    # once it deregisters there is room again
    assert register(core, request(ids(), lifetime=0)).code == 0
    assert register(core, request(ids(), home=other)).code == 0


@pytest.mark.parametrize("bit", [wire.Flags.r, wire.Flags.x])
def test_reserved_bits_are_134(bit: wire.Flags) -> None:
    core = make_core()
    out = register(core, request(Clock()(), flags=int(bit)))
    rep = reply_of(out, None)
    assert rep.code == 134
    assert ha.RequestDenied(134, "reserved-bits-set", v.HOME) in out.events
    assert core.table.get(int(v.HOME)) is None


def test_intact_header_with_bad_extensions_is_134() -> None:
    core = make_core()
    data = v.REQ_HMAC[:-3]  # the MN-HA extension runs past the end of the datagram
    out = register(core, data)
    rep = reply_of(out, None)
    assert rep.code == 134
    assert (rep.home_address, rep.home_agent, rep.identification) == (
        v.HOME,
        v.HA,
        0xE8FE6F80_80000000,
    )
    assert out.events == (ha.DatagramDropped("truncated-extension"),)
    assert core.stats.dropped["truncated-extension"] == 1
    assert core.stats.replies[134] == 1


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x01",
        v.REQ_HMAC[:23],
        v.REP_HMAC,
        b"\x07" + v.REQ_HMAC[1:],
        v.REQ_UNKNOWN_CRITICAL,
    ],
    ids=["empty", "one-byte", "short-header", "a-reply", "unknown-type", "unknown-critical"],
)
def test_garbage_is_dropped_silently(data: bytes) -> None:
    core = make_core()
    out = register(core, data)
    assert out.reply is None and out.code is None
    (event,) = out.events
    assert isinstance(event, ha.DatagramDropped)
    assert sum(core.stats.dropped.values()) == 1


# --- nonces -----------------------------------------------------------------------------------


def nonce_source() -> tuple[Callable[[], int], Iterator[int]]:
    values = iter([0x11111111, 0x22222222, 0x33333333, 0x44444444, 0x55555555, 0x66666666])
    return (lambda: next(values)), values


def test_nonce_mode_needs_a_nonce_source() -> None:
    with pytest.raises(ValueError, match="next_nonce"):
        make_core(replay="nonce")


def test_nonce_handshake() -> None:
    source, _ = nonce_source()
    core = make_core(replay="nonce", next_nonce=source)
    # 1. the MN does not know a nonce yet: 133 carrying the HA's nonce and the MN's low bits
    out = register(core, request(0x00000000_0000AAAA))
    rep = reply_of(out)
    assert rep.code == 133 and rep.identification == 0x11111111_0000AAAA
    assert core.table.get(int(v.HOME)) is None
    # 2. the retry with that nonce is accepted; the reply carries a fresh nonce
    out = register(core, request(0x11111111_0000BBBB))
    rep = reply_of(out)
    assert rep.code == 0 and rep.identification == 0x22222222_0000BBBB
    # 3. the next request uses the new nonce
    out = register(core, request(0x22222222_0000CCCC))
    rep = reply_of(out)
    assert rep.code == 0 and rep.identification == 0x33333333_0000CCCC
    # 4. a replay of an accepted request fails and hands out another nonce
    out = register(core, request(0x22222222_0000CCCC))
    rep = reply_of(out)
    assert rep.code == 133 and rep.identification == 0x44444444_0000CCCC
    # 5. ... which the mobile node can then use to get back in sync
    out = register(core, request(0x44444444_0000DDDD))
    assert reply_of(out).code == 0


def test_nonce_mode_ignores_wall_clock() -> None:
    source, _ = nonce_source()
    core = make_core(replay="nonce", next_nonce=source)
    register(core, request(0x1))
    out = core.handle_request(request(0x11111111_00000002), NOW, 0.0)
    assert out.code == 0


# --- expiry and versions ----------------------------------------------------------------------


def test_expiry_by_tick_then_tombstone_purge() -> None:
    core = make_core()
    core.table.tombstone_ttl = 60.0
    assert register(core, request(Clock()(), lifetime=10)).code == 0
    assert core.next_deadline() == NOW + 10
    assert core.tick(NOW + 9) == []
    events = core.tick(NOW + 10)
    assert len(events) == 1 and isinstance(events[0], ha.BindingsExpired)
    assert events[0].record.is_tombstone
    assert core.stats.expired == 1
    assert len(core.table) == 0
    tomb = core.table.get(int(v.HOME))
    assert tomb is not None and tomb.deleted_at == NOW + 10
    assert core.tick(NOW + 69) == []
    assert core.table.get(int(v.HOME)) is not None
    assert core.tick(NOW + 70) == []
    assert core.table.get(int(v.HOME)) is None and core.table.record_count == 0


def test_versions_strictly_increase_and_embed_node_id() -> None:
    # timestamp mode: the counter is at least the identification's NTP seconds, so a member
    # that missed an update still orders the next registration after it
    core = make_core()
    ids = Clock()
    versions = []
    for lifetime in (100, 200, 0, 300):
        out = register(core, request(ids(), lifetime=lifetime))
        assert out.code == 0
        event = out.events[0]
        assert isinstance(event, ha.BindingChanged)
        versions.append(event.record.version)
    assert [ver >> 32 for ver in versions] == [v.NTP_SECONDS + i for i in range(4)]
    assert all(ver & 0xFFFFFFFF == NODE_ID for ver in versions)
    later = v.WALL + 5
    out = core.handle_request(request(ids(later)), NOW + 5, later)
    event = out.events[0]
    assert isinstance(event, ha.BindingChanged)
    versions.append(event.record.version)
    assert versions[-1] == make_version(v.NTP_SECONDS + 5, NODE_ID)
    assert versions == sorted(set(versions))
    # denied requests do not change the version
    register(core, request(ids(later), home_agent=IPv4Address("10.9.9.9")))
    rec = core.table.get(int(v.HOME))
    assert rec is not None and rec.version == versions[-1]


def test_versions_count_from_one_in_nonce_mode() -> None:
    source, _ = nonce_source()
    core = make_core(replay="nonce", next_nonce=source)
    register(core, request(0x1))
    versions = []
    for ident in (0x11111111_00000002, 0x22222222_00000003, 0x33333333_00000004):
        out = register(core, request(ident))
        event = out.events[0]
        assert isinstance(event, ha.BindingChanged)
        versions.append(event.record.version)
    assert versions == [make_version(n, NODE_ID) for n in (1, 2, 3)]


def test_node_id_defaults_to_home_agent_address() -> None:
    core = make_core(node_id=0)
    out = register(core, request(Clock()()))
    event = out.events[0]
    assert isinstance(event, ha.BindingChanged)
    assert event.record.version & 0xFFFFFFFF == int(v.HA)


def test_version_continues_from_merged_peer_record() -> None:
    core = make_core()
    ids = Clock()
    register(core, request(ids()))
    rec = core.table.get(int(v.HOME))
    assert rec is not None
    peer = replace(rec, version=make_version(v.NTP_SECONDS + 9, 0x0A000002), last_id=ids())
    assert core.table.merge(peer, NOW)
    out = register(core, request(ids()))
    event = out.events[0]
    assert isinstance(event, ha.BindingChanged)
    assert event.record.version == make_version(v.NTP_SECONDS + 10, NODE_ID)
