"""Dynamic home addresses (RFC 5944 3.6, RFC 2794), sans-IO: HomeAgentCore with AddressPools."""

from __future__ import annotations

import itertools
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network

import pytest

from mobileip.core import homeagent as ha
from mobileip.core.bindings import BindingTable, MobilityRecord
from mobileip.core.pools import AddressPool, AddressPools, prevails
from mobileip.core.replay import ntp_from_unix
from mobileip.core.security import SecurityAssociation, SecurityAssociations, append_auth
from mobileip.wire import registration as wire

HA = IPv4Address("10.1.0.1")
COA = IPv4Address("192.0.2.7")
ANY = IPv4Address("0.0.0.0")
WALL = 1_700_000_000.5
NOW = 1000.0
KEY = bytes(range(16))
POOL = AddressPool("subs", int(IPv4Address("10.1.128.1")), int(IPv4Address("10.1.128.4")))
# one SPI, chosen among by NAI: a pattern for the realm, an exact NAI with its own key
REALM_SA = SecurityAssociation(512, "hmac-md5", KEY, (), b"*@example.net", "subs")
BOB_SA = SecurityAssociation(512, "hmac-md5", b"\x42" * 16, (), b"bob@example.net", "subs")
STATIC_SA = SecurityAssociation(256, "hmac-md5", KEY, (IPv4Network("10.1.0.0/24"),))

_counter = itertools.count(1)


def ident(wall: float = WALL) -> int:
    return (ntp_from_unix(wall) & ~0xFFFFFFFF) | next(_counter)


def make_core(pool: AddressPool = POOL, node_id: int = 1) -> ha.HomeAgentCore:
    settings = ha.HomeAgentSettings(address=HA, node_id=node_id)
    core = ha.HomeAgentCore(settings, SecurityAssociations([REALM_SA, BOB_SA, STATIC_SA]))
    core.pools = AddressPools([pool], core.table)
    return core


def request(
    nai: bytes | None,
    home: IPv4Address = ANY,
    *,
    lifetime: int = 1800,
    sa: SecurityAssociation = REALM_SA,
    nai_after_auth: bool = False,
) -> bytes:
    exts = (wire.NaiExtension(nai),) if nai is not None and not nai_after_auth else ()
    body = wire.encode(
        wire.RegistrationRequest(wire.Flags(0), lifetime, home, HA, COA, ident(), exts)
    )
    signed = append_auth(body, wire.EXT_MN_HA_AUTH, sa)
    if nai is not None and nai_after_auth:
        signed += wire.encode_extension(wire.NaiExtension(nai))
    return signed


def send(core: ha.HomeAgentCore, data: bytes, now: float = NOW) -> wire.RegistrationReply:
    out = core.handle_request(data, now, WALL)
    assert out.reply is not None
    return wire.decode_reply(out.reply)


def test_assigns_from_pool_and_reply_carries_address() -> None:
    core = make_core()
    rep = send(core, request(b"alice@example.net"))
    assert rep.code == 0
    assert rep.home_address == IPv4Address("10.1.128.1")
    assert wire.NaiExtension(b"alice@example.net") in rep.extensions
    rec = core.table.live(int(rep.home_address))
    assert rec is not None and rec.nai == b"alice@example.net"
    assert core.table.live(0) is None  # nothing is ever stored under 0.0.0.0


def test_same_nai_keeps_address_on_renewal_and_on_a_new_zero_request() -> None:
    core = make_core()
    first = send(core, request(b"alice@example.net")).home_address
    other = send(core, request(b"carol@example.net")).home_address
    assert other != first
    assert send(core, request(b"alice@example.net", first)).home_address == first
    assert send(core, request(b"alice@example.net")).home_address == first  # MN lost its state
    assert core.pools is not None and core.pools.stats.assigned == 2


def test_address_returns_to_pool_on_deregistration_expiry_and_clear() -> None:
    core = make_core(AddressPool("subs", POOL.first, POOL.first))  # one address
    addr = send(core, request(b"alice@example.net")).home_address
    assert send(core, request(b"carol@example.net")).code == 130  # exhausted
    assert send(core, request(b"alice@example.net", addr, lifetime=0)).code == 0
    rec = core.table.get(int(addr))
    assert rec is not None and rec.is_tombstone and rec.nai == b"alice@example.net"
    assert send(core, request(b"carol@example.net")).home_address == addr  # freed
    # expiry
    core.tick(NOW + 1801)
    assert core.table.live(int(addr)) is None
    assert send(core, request(b"dave@example.net"), NOW + 1802).home_address == addr
    # the operator's clear binding keeps the NAI in the tombstone
    core.administrative_deregister(addr, NOW + 1803)
    rec = core.table.get(int(addr))
    assert rec is not None and rec.is_tombstone and rec.nai == b"dave@example.net"
    assert send(core, request(b"alice@example.net"), NOW + 1804).home_address == addr


def test_tombstone_gives_the_same_nai_its_address_back() -> None:
    core = make_core()
    a = send(core, request(b"alice@example.net")).home_address
    send(core, request(b"alice@example.net", a, lifetime=0))
    send(core, request(b"carol@example.net"))  # takes a never-used address, not alice's
    assert send(core, request(b"alice@example.net")).home_address == a


def test_exhausted_pool_is_130_and_nothing_stored() -> None:
    core = make_core()
    for i in range(4):
        assert send(core, request(f"n{i}@example.net".encode())).code == 0
    rep = send(core, request(b"late@example.net"))
    assert rep.code == 130 and rep.home_address == ANY
    assert len(core.table) == 4
    assert core.pools is not None and core.pools.stats.denied["pool-exhausted"] == 1


def test_ha_and_excluded_addresses_never_handed_out() -> None:
    pool = AddressPool("subs", POOL.first, POOL.first + 2, frozenset({POOL.first + 1}))
    core = make_core(pool)
    got = {send(core, request(f"n{i}@example.net".encode())).home_address for i in range(2)}
    assert got == {IPv4Address(POOL.first), IPv4Address(POOL.first + 2)}
    assert send(core, request(b"x@example.net")).code == 130


def test_sa_chosen_by_nai() -> None:
    core = make_core()
    # bob has his own SA (same SPI, other key): the realm's key does not authenticate him
    assert send(core, request(b"bob@example.net", sa=REALM_SA)).code == 131
    assert send(core, request(b"bob@example.net", sa=BOB_SA)).code == 0
    # an NAI outside the pattern, or none at all, has no SA for 0.0.0.0
    assert send(core, request(b"eve@example.org")).code == 131
    assert send(core, request(None)).code == 131
    # an NAI after the MN-HA extension is not covered by it (RFC 2794): it does not count
    assert send(core, request(b"carol@example.net", nai_after_auth=True)).code == 131


def test_another_nais_address_is_refused_129() -> None:
    core = make_core()
    a = send(core, request(b"alice@example.net")).home_address
    rep = send(core, request(b"carol@example.net", a))
    assert rep.code == 129
    assert core.table.live(int(a)) is not None
    assert core.table.live(int(a)).nai == b"alice@example.net"  # type: ignore[union-attr]


def test_free_pool_address_can_be_claimed_back_by_its_nai() -> None:
    """A member that never heard of the assignment (async sync lost it) lets the mobile node
    keep the address it names, when it is free and in its SA's pool."""
    core = make_core()
    addr = IPv4Address(POOL.first + 2)
    rep = send(core, request(b"alice@example.net", addr))
    assert rep.code == 0 and rep.home_address == addr
    assert send(core, request(b"carol@example.net")).home_address == IPv4Address(POOL.first)
    assert send(core, request(b"alice@example.net")).home_address == addr


def test_static_mobile_nodes_unchanged_and_pool_addresses_skip_prediction() -> None:
    core = make_core()
    static = IPv4Address("10.1.0.9")
    body = wire.encode(wire.RegistrationRequest(wire.Flags(0), 1800, static, HA, COA, ident()))
    assert send(core, append_auth(body, wire.EXT_MN_HA_AUTH, STATIC_SA)).code == 0
    assert core.stats.predicted == 1
    # a pool address without NAI under the static SA: not covered
    pooled = IPv4Address(POOL.first)
    body = wire.encode(wire.RegistrationRequest(wire.Flags(0), 1800, pooled, HA, COA, ident()))
    assert send(core, append_auth(body, wire.EXT_MN_HA_AUTH, STATIC_SA)).code == 131
    assert core.stats.predicted == 1


def _copy(src: BindingTable, dst: ha.HomeAgentCore) -> None:
    """What replication does: merge every record by version, then tell the pools."""
    applied = [r.home_address for r in src.records() if dst.table.merge(r, NOW)]
    assert dst.pools is not None
    dst.pools.refresh(applied)


def test_replicated_table_keeps_assignments_after_takeover() -> None:
    active, standby = make_core(node_id=1), make_core(node_id=2)
    a = send(active, request(b"alice@example.net")).home_address
    c = send(active, request(b"carol@example.net")).home_address
    _copy(active.table, standby)
    # the standby takes over: renewals keep their addresses, a 0.0.0.0 request too
    assert send(standby, request(b"alice@example.net", a)).home_address == a
    assert send(standby, request(b"carol@example.net")).home_address == c
    fresh = send(standby, request(b"dave@example.net")).home_address
    assert fresh not in (a, c)


def test_rebuild_from_table_alone() -> None:
    """A member that boots from a bulk download (or a journal) knows nothing but its table."""
    active = make_core()
    a = send(active, request(b"alice@example.net")).home_address
    booted = make_core(node_id=2)
    for rec in active.table.records():
        booted.table.store(rec, NOW)
    assert booted.pools is not None
    booted.pools.rebuild()
    assert send(booted, request(b"alice@example.net")).home_address == a


def test_concurrent_assignment_split_brain_resolves_by_version() -> None:
    """Two members answering at once may hand out one address twice; merging by version picks
    one NAI on both, and the other is refused (129) at its next renewal and gets a new one."""
    m1, m2 = make_core(node_id=1), make_core(node_id=2)
    a1 = send(m1, request(b"alice@example.net")).home_address
    a2 = send(m2, request(b"carol@example.net")).home_address
    assert a1 == a2  # both took the first free address
    t1, t2 = BindingTable(), BindingTable()
    for r in m1.table.records():
        t1.store(r, NOW)
    for r in m2.table.records():
        t2.store(r, NOW)
    _copy(t2, m1)
    _copy(t1, m2)
    r1, r2 = m1.table.live(int(a1)), m2.table.live(int(a1))
    assert r1 is not None and r1 == r2  # the same winner on both
    loser = b"carol@example.net" if r1.nai == b"alice@example.net" else b"alice@example.net"
    assert send(m1, request(loser, a1)).code == 129
    again = send(m1, request(loser))
    assert again.code == 0 and again.home_address != a1


def _live_addresses(core: ha.HomeAgentCore, nai: bytes) -> list[int]:
    return sorted(r.home_address for r in core.table.records() if r.bindings and r.nai == nai)


def test_prevails_higher_version_then_lower_address() -> None:
    def rec(home: str, version: int) -> MobilityRecord:
        return MobilityRecord(
            int(IPv4Address(home)), version, 0, int(HA), (), 0.0, b"a@example.net"
        )

    old, new = rec("10.1.128.1", 5 << 32 | 1), rec("10.1.128.2", 6 << 32 | 1)
    assert prevails(new, old) and not prevails(old, new)
    low, high = rec("10.1.128.1", 7 << 32 | 2), rec("10.1.128.2", 7 << 32 | 2)
    assert prevails(low, high) and not prevails(high, low)


def test_one_nai_on_two_addresses_resolves_to_one_on_every_member() -> None:
    """Split brain: each member gives the same NAI another address (seed 580 of the simulator:
    a member rebooted empty inside a partition). When the records meet, both members name the
    same loser; the active ends it by a replicated tombstone that keeps the NAI, both converge
    on one address, the loser's renewal is refused 129 and a 0.0.0.0 request gets the winner."""
    alice = b"alice@example.net"
    m1, m2 = make_core(node_id=1), make_core(node_id=2)
    a1 = int(send(m1, request(alice)).home_address)  # the first free address
    a2 = int(IPv4Address("10.1.128.3"))
    assert send(m2, request(alice, IPv4Address(a2))).code == 0  # a free address it names
    assert m1.pools is not None and m2.pools is not None
    assert m1.pools.losers() == [] and m2.pools.losers() == []
    t1, t2 = BindingTable(), BindingTable()
    for r in m1.table.records():
        t1.store(r, NOW)
    for r in m2.table.records():
        t2.store(r, NOW)
    _copy(t2, m1)
    _copy(t1, m2)
    assert _live_addresses(m1, alice) == _live_addresses(m2, alice) == sorted([a1, a2])
    r1, r2 = m1.table.live(a1), m1.table.live(a2)
    assert r1 is not None and r2 is not None
    winner, loser = (a1, a2) if prevails(r1, r2) else (a2, a1)
    assert m1.pools.losers() == m2.pools.losers() == [loser]  # the same rule on both
    # the active member (m1) ends the loser: an ordinary change, replicated
    (ended,) = m1.administrative_deregister(IPv4Address(loser), NOW)
    assert isinstance(ended, ha.BindingChanged) and ended.deregistration
    assert ended.record.nai == alice and not ended.record.bindings  # the tombstone keeps the NAI
    assert m2.table.merge(ended.record, NOW)
    m2.pools.refresh([loser])
    for m in (m1, m2):
        assert _live_addresses(m, alice) == [winner]
        assert m.pools is not None and m.pools.losers() == []
    before = m2.table.get(loser)
    assert send(m2, request(alice, IPv4Address(loser))).code == 129  # NAI now on another address
    assert m2.table.get(loser) == before
    assert send(m2, request(alice)).home_address == IPv4Address(winner)


def test_losers_found_by_a_rebuild_and_dropped_once_resolved_otherwise() -> None:
    alice = b"alice@example.net"
    m1, m2 = make_core(node_id=1), make_core(node_id=2)
    a1 = int(send(m1, request(alice)).home_address)
    a2 = int(IPv4Address("10.1.128.4"))
    assert send(m2, request(alice, IPv4Address(a2))).code == 0
    booted = make_core(node_id=3)  # a journal replay holding both
    for core in (m1, m2):
        for r in core.table.records():
            booted.table.store(r, NOW)
    assert booted.pools is not None
    booted.pools.rebuild()
    (loser,) = booted.pools.losers()
    winner = a1 if loser == a2 else a2
    booted.administrative_deregister(IPv4Address(winner), NOW)  # the winner ends first
    assert booted.pools.losers() == []  # one live address left: nothing to end


@pytest.mark.parametrize("replay", ["timestamp", "nonce"])
def test_identification_by_nai_record(replay: str) -> None:
    nonces = itertools.count(0x1000)
    settings = ha.HomeAgentSettings(address=HA, node_id=1, replay=replay)
    core = ha.HomeAgentCore(
        settings, SecurityAssociations([REALM_SA]), next_nonce=lambda: next(nonces)
    )
    core.pools = AddressPools([POOL], core.table)
    first = request(b"alice@example.net")
    rep = send(core, first)
    if replay == "nonce":  # a first contact learns its nonce (133), then registers
        assert rep.code == 133
        req = wire.decode_request(first)
        body = wire.encode(
            replace(req, identification=(rep.identification & ~0xFFFFFFFF) | 7, ext_offsets=())
        )
        body = body[:-22]  # drop the old authenticator, sign again
        rep = send(core, append_auth(body, wire.EXT_MN_HA_AUTH, REALM_SA))
    assert rep.code == 0
    addr = rep.home_address
    # a replay of an accepted 0.0.0.0 request is refused: its identification is the NAI's
    if replay == "timestamp":
        assert send(core, first).code == 133
        assert core.table.live(int(addr)) is not None
