"""RFC 3543 revocation across a redundancy group, sans-IO: the Revocation State codec (types 70,
71: golden vectors, hypothesis), the agent's merge and resume rules (core/revocation.py), and
whole members (SyncEngine + RevocationReplicator + RevocationAgent) on an in-memory network with
our foreign agent's rules, where the active dies in the middle of a retransmission.

"Never duplicated" (docs/revocation.md, "Failover"): for one binding end the foreign agent sees
exactly one revocation identifier (copies of it, retransmissions from either member, are
allowed by RFC 3543 and acked again without a second removal)."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import itertools
import os
import random
import re
import shutil
import subprocess
from collections import Counter
from ipaddress import IPv4Network
from pathlib import Path

import pytest
import vectors as v
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mobileip.agents.fa import rules as fa
from mobileip.core import homeagent as ha
from mobileip.core import revocation as rev
from mobileip.core.bindings import BindingTable
from mobileip.core.replay import ntp_from_unix
from mobileip.core.security import SecurityAssociation, SecurityAssociations, append_auth
from mobileip.sync.engine import SyncEngine, SyncSettings
from mobileip.sync.revocation import RevocationReplicator
from mobileip.wire import registration as reg
from mobileip.wire import revocation as rw
from mobileip.wire import sync as w

KEY = bytes.fromhex("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f")
AUTH = w.GroupAuth([w.GroupKey(1000, "hmac-sha256", KEY)], send_spi=1000)
MN_SA = SecurityAssociation(v.HMAC_SPI, "hmac-md5", v.HMAC_KEY, (IPv4Network(v.HOME_PREFIX),))
FA_HA = SecurityAssociation(0x1000, "hmac-md5", b"fa-ha-shared-key", (IPv4Network("0.0.0.0/0"),))
FA_ADDR = v.COA
FA_SRC = (str(FA_ADDR), 4340)
MN = (str(v.HOME), 50000)
WALL = v.WALL
SETTINGS = rev.RevocationSettings(v.HA, {FA_ADDR: FA_HA})


def hexb(text: str) -> bytes:
    return bytes.fromhex(re.sub(r"\|[^\n]*", "", text))


def trailer(body: bytes) -> bytes:
    """``body`` + HA-HA authentication extension, computed without the codec."""
    head = bytes([40, 4 + 32]) + (1000).to_bytes(4, "big")
    return body + head + hmac.new(KEY, body + head, hashlib.sha256).digest()


# --- golden vectors ---------------------------------------------------------------------------

STATE_BODY = hexb("""
46 01 00 00              | type 70 REVOCATION_STATE, version 1, code 0, flags 0
00 07                    | group 7
00 01                    | count: 1 entry
00 00 00 0b              | sender node 11
65 00 00 00 00 00 00 2a  | sequence
65 00 00 00 00 00 00 05  | identification
0a 01 00 05              | home address 10.1.0.5
c0 00 02 07              | care-of address 192.0.2.7
c0 00 02 07              | foreign agent 192.0.2.7
10 f4                    | foreign agent port 4340
02                       | state 2: PENDING
80                       | flags: I (the FA can inform the mobile node)
00 00 00 00 00 00 00 09  | version 9
65 53 f1 00              | since 1700000000
65 53 f1 05              | revocation identifier 1700000005
00 00 01 8b cf e5 68 00  | first send, Unix ms 1700000000000
00 00 01 00              | MN-HA SPI 256
02                       | attempts 2
01                       | reason 1: operator
00 00                    | reserved
""")
STATE = w.RevocationState(
    7,
    11,
    0x650000000000002A,
    0x6500000000000005,
    False,
    (
        w.RevocationEntry(
            int(v.HOME),
            int(v.COA),
            int(v.COA),
            4340,
            w.EntryState.PENDING,
            True,
            9,
            1_700_000_000,
            1_700_000_005,
            1_700_000_000_000,
            256,
            2,
            int(w.Reason.OPERATOR),
        ),
    ),
)
REQUEST_BODY = hexb("""
46 01 00 10              | type 70, flags 0x10 REQUEST
00 07 00 00              | group 7, count 0
00 00 00 0b              | sender 11
65 00 00 00 00 00 00 2b  | sequence
65 00 00 00 00 00 00 06  | identification
""")
REQUEST = w.RevocationState(7, 11, 0x650000000000002B, 0x6500000000000006, True, ())
ACK_BODY = hexb("""
47 01 00 00              | type 71 REVOCATION_STATE_ACK
00 07 00 00              | group 7, count 0
00 00 00 0c              | sender 12
66 00 00 00 00 00 00 01  | sequence
65 00 00 00 00 00 00 05  | identification: the acked message's
""")
ACK = w.RevocationStateAck(7, 12, 0x6600000000000001, 0x6500000000000005)
# a NEGOTIATED entry: its identifier field is the writer's last identifier (here the one of the
# PENDING entry above, since acked), not a revocation of its own (seed 1298)
NEGOTIATED_BODY = hexb("""
46 01 00 00              | type 70 REVOCATION_STATE, version 1, code 0, flags 0
00 07                    | group 7
00 01                    | count: 1 entry
00 00 00 0b              | sender node 11
65 00 00 00 00 00 00 2c  | sequence
65 00 00 00 00 00 00 07  | identification
0a 01 00 05              | home address 10.1.0.5
c0 00 02 07              | care-of address 192.0.2.7
c0 00 02 07              | foreign agent 192.0.2.7
10 f4                    | foreign agent port 4340
01                       | state 1: NEGOTIATED
80                       | flags: I
00 00 00 00 00 00 00 0c  | version 12
65 53 f1 06              | since 1700000006
65 53 f1 05              | identifier field: the writer's last identifier 1700000005
00 00 00 00 00 00 00 00  | first send: none
00 00 01 00              | MN-HA SPI 256
00                       | attempts 0
00                       | reason 0: none
00 00                    | reserved
""")
NEGOTIATED = w.RevocationState(
    7,
    11,
    0x650000000000002C,
    0x6500000000000007,
    False,
    (
        w.RevocationEntry(
            int(v.HOME),
            int(v.COA),
            int(v.COA),
            4340,
            w.EntryState.NEGOTIATED,
            True,
            12,
            1_700_000_006,
            1_700_000_005,
            0,
            256,
            0,
            int(w.Reason.NONE),
        ),
    ),
)
GOLDEN = [
    ("state", STATE_BODY, STATE),
    ("request", REQUEST_BODY, REQUEST),
    ("ack", ACK_BODY, ACK),
    ("negotiated", NEGOTIATED_BODY, NEGOTIATED),
]


@pytest.mark.parametrize(("name", "body", "msg"), GOLDEN, ids=[g[0] for g in GOLDEN])
def test_golden_vectors(name: str, body: bytes, msg: w.SyncMessage) -> None:
    assert len(STATE_BODY) == w.HEADER_LEN + w.ENTRY_LEN
    assert w.encode(msg, AUTH) == trailer(body)
    assert w.decode(trailer(body), AUTH) == msg
    assert w.message_size(msg, AUTH) == len(trailer(body))


@pytest.mark.parametrize(
    ("offset", "value", "reason"),
    [
        (28 + 14, 0, "bad-state"),
        (28 + 14, 5, "bad-state"),
        (28 + 15, 0x40, "bad-reserved"),  # only the I flag is defined
        (28 + 47, 1, "bad-reserved"),
        (3, 0x01, "bad-flags"),
        (2, 0x01, "bad-reserved"),  # no code in type 70
    ],
)
def test_bad_fields_are_refused(offset: int, value: int, reason: str) -> None:
    body = bytearray(STATE_BODY)
    body[offset] = value
    with pytest.raises(w.SyncDecodeError) as info:
        w.decode(trailer(bytes(body)), AUTH)
    assert info.value.reason == reason


def test_bad_counts_are_refused() -> None:
    req = bytearray(REQUEST_BODY)
    req[7] = 1  # a request with an entry count
    ack = bytearray(ACK_BODY)
    ack[7] = 1
    short = bytearray(STATE_BODY)
    short[7] = 2  # two entries announced, one present
    for data, reason in ((req, "bad-count"), (ack, "bad-count"), (short, "bad-length")):
        with pytest.raises(w.SyncDecodeError) as info:
            w.decode(trailer(bytes(data)), AUTH)
        assert info.value.reason == reason
    with pytest.raises(ValueError, match="no entries"):
        w.encode(w.RevocationState(7, 11, 1, 1, True, STATE.entries), AUTH)


u32 = st.integers(0, 0xFFFFFFFF)
entries = st.builds(
    w.RevocationEntry,
    u32,
    u32,
    u32,
    st.integers(0, 0xFFFF),
    st.sampled_from(list(w.EntryState)),
    st.booleans(),
    st.integers(0, 2**64 - 1),
    u32,
    u32,
    st.integers(0, 2**64 - 1),
    u32,
    st.integers(0, 255),
    st.integers(0, 255),
)


@given(entries=st.lists(entries, max_size=30), ident=st.integers(0, 2**64 - 1))
def test_round_trip(entries: list[w.RevocationEntry], ident: int) -> None:
    msg = w.RevocationState(3, 9, 77, ident, False, tuple(entries))
    data = w.encode(msg, AUTH)
    assert w.decode(data, AUTH) == msg
    assert w.decode_chunked(data, AUTH) == msg
    assert w.encode(w.decode(data, AUTH), AUTH) == data


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(
    mtype=st.sampled_from([70, 71]),
    flags=st.integers(0, 255),
    count=st.integers(0, 0xFFFF),
    body=st.binary(max_size=200),
)
def test_any_authentic_body_decodes_or_is_a_sync_decode_error(
    mtype: int, flags: int, count: int, body: bytes
) -> None:
    head = bytes([mtype, 1, 0, flags]) + (7).to_bytes(2, "big") + count.to_bytes(2, "big")
    data = trailer(head + bytes(20) + body)
    try:
        msg = w.decode(data, AUTH)
    except w.SyncDecodeError:
        return
    assert isinstance(msg, w.RevocationState | w.RevocationStateAck)
    assert w.encode(msg, AUTH) == data


@given(st.binary(max_size=300))
def test_any_bytes_decode_or_are_a_sync_decode_error(data: bytes) -> None:
    for raw in (data, b"\x46\x01" + data, b"\x47\x01" + data):
        with contextlib.suppress(w.SyncDecodeError):
            w.decode_chunked(raw, AUTH)


# --- the agent's replication rules ----------------------------------------------------------


class Home:
    """The home side of one member: its core and revocation agent."""

    def __init__(self, node_id: int, active: bool) -> None:
        self.core = ha.HomeAgentCore(
            ha.HomeAgentSettings(address=v.HA, node_id=node_id), SecurityAssociations([MN_SA])
        )
        self.agent = rev.RevocationAgent(SETTINGS, active=active)


class Visited:
    """Our foreign agent and the mobile node's requests; drops the first ``drop`` revocations."""

    def __init__(self, drop: int = 0) -> None:
        self.fa = fa.ForeignAgentCore(
            fa.ForeignAgentSettings(frozenset({v.COA}), fa_ha=FA_HA, ha_port=434)
        )
        self._ids = itertools.count(1)
        self.drop = drop
        self.lose_acks = 0  # acks lost on the way back (the member that would get them died)
        self.seen: list[int] = []  # revocation identifiers that reached the FA
        self.removed = 0

    def request(self) -> bytes:
        ident = (ntp_from_unix(WALL) & ~0xFFFFFFFF) | next(self._ids)
        body = reg.encode(reg.RegistrationRequest(reg.Flags(0), 600, v.HOME, v.HA, v.COA, ident))
        return append_auth(body, reg.EXT_MN_HA_AUTH, MN_SA)

    def register(self, home: Home, now: float) -> None:
        [relayed] = self.fa.handle_request(self.request(), MN, now, WALL).sends
        outcome = home.core.handle_request(relayed.data, now, WALL)
        assert outcome.reply is not None
        reply = home.agent.on_reply(relayed.data, FA_SRC, outcome.reply, WALL)
        [to_mn] = self.fa.handle_reply(reply, (str(v.HA), 434), now).sends
        assert reg.decode_reply(to_mn.data).code == 0

    def deliver(self, sends: list[rev.Send], now: float) -> list[bytes]:
        """Revocations to the FA; returns the acks it sent back."""
        acks: list[bytes] = []
        for send in sends:
            if self.drop > 0:
                self.drop -= 1
                continue
            msg = rw.decode(send.data)
            assert isinstance(msg, rw.RegistrationRevocation)
            self.seen.append(msg.revocation_id)
            out = self.fa.handle_revocation(send.data, (str(v.HA), 434), now)
            self.removed += sum(isinstance(e, fa.VisitorRemoved) for e in out.events)
            for s in out.sends:
                if s.dest[1] != 434:
                    continue
                if self.lose_acks > 0:
                    self.lose_acks -= 1
                else:
                    acks.append(s.data)
        return acks


def test_entries_merge_by_version_and_a_standby_keeps_pending_dormant() -> None:
    a, b = Home(1, active=True), Home(2, active=False)
    Visited().register(a, 0.0)
    [neg] = a.agent.take_changes()
    assert neg.state is w.EntryState.NEGOTIATED and neg.spi == v.HMAC_SPI
    assert b.agent.apply(neg, 0.0)
    assert not b.agent.apply(neg, 0.0), "the same version twice changes nothing"
    assert b.agent.counters["replicated-stale"] == 1
    assert [x.care_of_address for x in b.agent.bindings_of(v.HOME)] == [v.COA]
    assert a.agent.revoke(v.HOME, 1.0, WALL + 1, "operator", hold=0.5) == []
    [pending] = a.agent.take_changes()
    assert pending.state is w.EntryState.PENDING and pending.attempts == 0
    assert b.agent.apply(pending, 1.0)
    assert b.agent.next_deadline() is None and b.agent.tick(9.0) == ([], [])
    assert not b.agent.bindings_of(v.HOME)
    assert not b.agent.apply(neg, 1.0), "an older NEGOTIATED does not undo the revocation"
    # the peer acked: the held first send leaves
    [send] = a.agent.release(neg.key, 1.01, WALL + 1)
    assert rw.decode(send.data).revocation_id == pending.revocation_id
    assert a.agent.take_changes()[0].attempts == 1


def test_a_held_first_send_leaves_after_the_hold_when_no_peer_acks() -> None:
    a = Home(1, active=True)
    Visited().register(a, 0.0)
    assert a.agent.revoke(v.HOME, 1.0, WALL + 1, "operator", hold=0.5) == []
    assert a.agent.next_deadline() == 1.5
    [send], _ = a.agent.tick(1.5, WALL + 1.5)
    assert rw.decode(send.data).revocation_id >= int(WALL + 1)
    assert a.agent.counters["revocations-sent-unreplicated"] == 1
    assert a.agent.next_deadline() == 2.5


def test_takeover_resumes_with_the_same_identifier_and_counts_attempts_on() -> None:
    a, b = Home(1, active=True), Home(2, active=False)
    Visited().register(a, 0.0)
    [first] = a.agent.revoke(v.HOME, 1.0, WALL + 1, "operator")
    a.agent.tick(2.0, WALL + 2)  # attempt 2
    for e in a.agent.take_changes():
        b.agent.apply(e, 2.0)
    assert b.agent.set_active(True, 3.0) == 1
    [again], _ = b.agent.tick(3.0, WALL + 3)
    assert again.data == first.data, "the same datagram, so the same identifier"
    [p] = b.agent.pending.values()
    assert p.attempts == 3 and p.timeout == 4.0  # backoff goes on: 1, 2, then 4
    assert b.agent.counters["revocations-resumed"] == 1
    assert b.agent.set_active(False, 4.0) == 0 and b.agent.next_deadline() is None


def test_a_settled_revocation_is_not_resent_and_its_late_ack_is_only_counted() -> None:
    a, b = Home(1, active=True), Home(2, active=False)
    vis = Visited()
    vis.register(a, 0.0)
    sends = a.agent.revoke(v.HOME, 1.0, WALL + 1, "operator")
    [ack] = vis.deliver(sends, 1.0)
    assert a.agent.handle_ack(ack, FA_SRC).acked is not None
    for e in a.agent.take_changes():
        b.agent.apply(e, 1.0)
    assert b.agent.set_active(True, 2.0) == 0
    assert b.agent.tick(99.0) == ([], [])
    assert b.agent.handle_ack(ack, FA_SRC).reason == "settled"
    assert b.agent.counters["ack-for-settled"] == 1


def test_the_ack_reaching_the_standby_settles_it_too() -> None:
    a, b = Home(1, active=True), Home(2, active=False)
    vis = Visited()
    vis.register(a, 0.0)
    sends = a.agent.revoke(v.HOME, 1.0, WALL + 1, "operator")
    for e in a.agent.take_changes():
        b.agent.apply(e, 1.0)
    [ack] = vis.deliver(sends, 1.0)
    assert b.agent.handle_ack(ack, FA_SRC).acked is not None
    [settled] = b.agent.take_changes()
    assert settled.state is w.EntryState.SETTLED and settled.reason == w.Reason.ACKED
    assert a.agent.apply(settled, 1.1)
    assert not a.agent.pending and a.agent.tick(9.0) == ([], [])


def test_a_member_that_got_only_the_newer_negotiation_does_not_reuse_its_identifier() -> None:
    """Simulator seed 1298: member b missed the PENDING and SETTLED entries of a binding end
    (sync loss) and got only the NEGOTIATED one of the mobile node's next registration. That
    entry carries the writer's last identifier, so b, active and revoking in the same second,
    picks another number: the FA removes the visitor instead of acking a copy it knows."""
    a, b = Home(1, active=True), Home(2, active=False)
    vis = Visited()
    vis.register(a, 0.0)
    b.agent.apply(a.agent.take_changes()[0], 0.0)
    [first] = a.agent.revoke(v.HOME, 1.0, WALL + 1, "operator")
    [ack] = vis.deliver([first], 1.0)
    assert a.agent.handle_ack(ack, FA_SRC).acked is not None and vis.removed == 1
    a.agent.take_changes()  # PENDING, SETTLED: lost on the way to b
    vis.register(a, 1.5)
    [neg] = a.agent.take_changes()
    used = rw.decode(first.data).revocation_id
    assert b.agent.apply(neg, 1.5)
    b.agent.set_active(True, 1.6)
    [second] = b.agent.revoke(v.HOME, 1.6, WALL + 1, "operator")  # the same second
    [ack2] = vis.deliver([second], 1.6)
    assert vis.removed == 2, "the FA took the second revocation for a copy of the first"
    assert vis.fa.counters["revocation-duplicates"] == 0
    assert rw.decode(second.data).revocation_id == used + 1
    assert b.agent.handle_ack(ack2, FA_SRC).acked is not None
    assert neg.state is w.EntryState.NEGOTIATED and neg.revocation_id == used


def test_a_forgotten_entry_carries_the_last_identifier_too() -> None:
    a, b = Home(1, active=True), Home(2, active=False)
    vis = Visited()
    vis.register(a, 0.0)
    [first] = a.agent.revoke(v.HOME, 1.0, WALL + 1, "operator")
    vis.register(a, 1.5)  # supersedes it
    a.agent.take_changes()
    a.agent._forget((v.HOME, v.COA))  # deregistered
    [gone] = a.agent.take_changes()
    assert gone.state is w.EntryState.FORGOTTEN
    assert gone.revocation_id == rw.decode(first.data).revocation_id
    b.agent.apply(gone, 2.0)
    assert b.agent.last_id == gone.revocation_id


def _clear_on_both(b_wall: float, b_ahead: int) -> tuple[Home, Home, Visited]:
    """`clear binding` of one home on the active (a) and, before either entry arrived, on the
    standby (b) at ``b_wall``, b's Lamport clock ``b_ahead`` changes ahead; then the entries
    cross and the active sends what it holds."""
    a, b = Home(1, active=True), Home(2, active=False)
    vis = Visited()
    vis.register(a, 0.0)
    b.agent.apply(a.agent.take_changes()[0], 0.0)
    b.agent.clock += b_ahead
    sends = a.agent.revoke(v.HOME, 1.0, WALL + 1, "operator")
    assert b.agent.revoke(v.HOME, 1.0, b_wall, "operator") == []  # a standby only records
    from_a, from_b = a.agent.take_changes(), b.agent.take_changes()
    for e in from_b:
        a.agent.apply(e, 1.01)
    for e in from_a:
        b.agent.apply(e, 1.01)
    more, _ = a.agent.tick(1.02, WALL + 1.02)
    vis.deliver(sends + more, 1.02)
    return a, b, vis


def test_two_members_clearing_one_home_in_the_same_second_pick_one_identifier() -> None:
    """The documented gap (docs/revocation.md, "Where it can still go wrong"), its common case:
    both picks are int(wall) of the same second, so the FA gets copies of one identifier."""
    a, b, vis = _clear_on_both(WALL + 1.4, 0)
    assert len(set(vis.seen)) == 1 and vis.removed == 1
    assert list(a.agent.pending) == list(b.agent.pending)


def test_two_members_clearing_one_home_across_a_second_send_two_identifiers() -> None:
    """The gap itself, pinned: the standby's pick falls in the next second and its entry is
    the newer one, so the active drops its own (already sent) identifier for the standby's and
    sends it too: the FA sees two identifiers, the second finds no visitor and is acked."""
    a, b, vis = _clear_on_both(WALL + 2, 5)
    assert vis.seen == [int(WALL + 1), int(WALL + 2)] and vis.removed == 1
    assert [k[1] for k in a.agent.pending] == [k[1] for k in b.agent.pending] == [int(WALL + 2)]


def test_homes_without_key() -> None:
    a = Home(1, active=True)
    Visited().register(a, 0.0)
    assert a.agent.homes_without_key(lambda spi, home: True) == []
    assert a.agent.homes_without_key(lambda spi, home: spi != v.HMAC_SPI) == [v.HOME]


# --- whole members on an in-memory network ------------------------------------------------


class Member:
    def __init__(self, node_id: int, peers: tuple[tuple[str, int], ...], active: bool) -> None:
        self.endpoint = (f"10.9.0.{node_id}", 4500)
        self.home = Home(node_id, active)
        self.engine = SyncEngine(
            SyncSettings(node_id=node_id, group=7, peers=peers),
            BindingTable(),
            AUTH,
            epoch=0x65000000 + node_id,
        )
        self.replicator = RevocationReplicator(self.engine.context, self.home.agent)
        self.engine.extension = self.replicator
        self.alive = True

    @property
    def agent(self) -> rev.RevocationAgent:
        return self.home.agent


class Group:
    """Members, a lossless in-memory network, and the foreign agent."""

    def __init__(self, n: int = 2, drop: int = 0, old: int = 0, loss: float = 0.0) -> None:
        self.rng = random.Random(n * 1000 + drop)
        self.loss = loss  # share of sync datagrams lost
        eps = [(f"10.9.0.{i}", 4500) for i in range(1, n + 1)]
        self.members = [
            Member(i, tuple(e for e in eps if e != eps[i - 1]), active=(i == 1))
            for i in range(1, n + 1)
        ]
        self.visited = Visited(drop)
        self.now = 0.0
        for m in self.members:
            if m.endpoint[0] == f"10.9.0.{old}":  # an old member: drops types 70 and 71
                m.engine.extension = None
            m.engine.start(self.now)
            if m.engine.extension is not None:
                m.replicator.request_snapshot(self.now)

    def by_endpoint(self, ep: tuple[str, int]) -> Member | None:
        return next((m for m in self.members if m.endpoint == ep and m.alive), None)

    def settle(self, until: float) -> None:
        """Run every member's timers and deliver every datagram, in 10 ms steps."""
        while self.now < until:
            self.now = round(self.now + 0.01, 6)
            for m in self.members:
                if not m.alive:
                    continue
                m.agent.changes and m.replicator.publish(self.now)
                when = m.engine.next_timer()
                if when is not None and when <= self.now:
                    m.engine.handle_timer(self.now)
                self.fa_round(m)
            for _ in range(20):  # deliver until quiet
                moved = False
                for m in self.members:
                    if not m.alive:
                        continue
                    for data, dest in m.engine.datagrams_to_send():
                        moved = True
                        peer = self.by_endpoint(dest)
                        if self.loss and self.rng.random() < self.loss:
                            continue
                        if peer is not None:
                            peer.engine.handle_datagram(data, m.endpoint, self.now)
                    self.release(m)
                if not moved:
                    break

    def release(self, m: Member) -> None:
        keys, m.replicator.acked_keys = m.replicator.acked_keys, []
        sends = [s for k in keys for s in m.agent.release(k, self.now, WALL + self.now)]
        self.to_fa(m, sends)

    def fa_round(self, m: Member) -> None:
        sends, _ = m.agent.tick(self.now, WALL + self.now)
        self.to_fa(m, sends)

    def to_fa(self, m: Member, sends: list[rev.Send]) -> None:
        for ack in self.visited.deliver(sends, self.now):
            m.agent.handle_ack(ack, FA_SRC)  # the ack goes back to the member that sent it
        if m.agent.changes:
            m.replicator.publish(self.now)


def test_takeover_mid_retransmission_neither_loses_nor_duplicates() -> None:
    g = Group(drop=2)  # the FA never sees the first two copies
    a, b = g.members
    g.visited.register(a.home, g.now)
    g.settle(0.5)
    assert b.agent.bindings_of(v.HOME), "the standby has the negotiated binding"
    a.agent.revoke(v.HOME, g.now, WALL + g.now, "operator", hold=0.5)
    g.settle(0.6)
    [held] = b.agent.pending.values()
    assert held.attempts >= 1, "first send released by the standby's ack"
    assert a.agent.counters["revocations-sent-unreplicated"] == 0
    g.settle(1.7)  # the retransmission at +1 s is dropped too
    assert g.visited.seen == [] and b.agent.pending
    [replica] = b.agent.pending.values()
    assert replica.attempts == 2
    a.alive = False  # SIGKILL
    assert b.agent.set_active(True, g.now) == 1
    g.settle(1.8)
    assert g.visited.seen == [replica.revocation_id]
    assert g.visited.removed == 1 and v.HOME not in g.visited.fa.visitors
    assert not b.agent.pending and b.agent.counters["revocations-acked"] == 1


def test_takeover_after_the_fa_removed_it_but_before_the_ack_came_back() -> None:
    g = Group()
    a, b = g.members
    g.visited.register(a.home, g.now)
    g.settle(0.5)
    g.visited.lose_acks = 1  # the FA gets the first copy, but its ack dies with the active
    a.agent.revoke(v.HOME, g.now, WALL + g.now, "operator", hold=0.5)
    g.settle(0.52)
    assert len(g.visited.seen) == 1 and g.visited.removed == 1
    a.alive = False
    assert b.agent.set_active(True, g.now) == 1
    g.settle(0.6)
    assert Counter(g.visited.seen) == Counter({g.visited.seen[0]: 2}), "one identifier, twice"
    assert g.visited.removed == 1 and g.visited.fa.counters["revocation-duplicates"] == 1
    assert not b.agent.pending


def test_a_booting_member_gets_the_state_and_an_old_member_is_given_up_on() -> None:
    g = Group(n=3, old=3)
    a, b, c = g.members
    g.visited.register(a.home, g.now)
    g.settle(0.3)
    assert b.agent.bindings_of(v.HOME) and not c.agent.bindings_of(v.HOME)
    assert c.engine.counters.dropped["unsupported"] >= 1
    g.settle(60.0)
    assert a.replicator.peers[c.endpoint].supported is False
    assert a.replicator.counters["peers-unsupported"] == 1
    assert not a.replicator.peers[c.endpoint].inflight
    # a new member boots: it asks, and gets the negotiated binding
    d = Member(4, (a.endpoint, b.endpoint), active=False)
    g.members.append(d)
    d.engine.start(g.now)
    d.replicator.request_snapshot(g.now)
    g.settle(61.0)
    assert [x.care_of_address for x in d.agent.bindings_of(v.HOME)] == [v.COA]


def test_a_revocation_the_old_active_only_held_is_sent_by_the_new_one() -> None:
    a, b = Home(1, active=True), Home(2, active=False)
    vis = Visited()
    vis.register(a, 0.0)
    for e in a.agent.take_changes():
        b.agent.apply(e, 0.0)
    assert a.agent.revoke(v.HOME, 1.0, WALL + 1, "operator", hold=0.5) == []
    for e in a.agent.take_changes():  # b has it, but a dies before the ack reached it
        b.agent.apply(e, 1.0)
    assert b.agent.set_active(True, 1.2) == 1
    [send], _ = b.agent.tick(1.2, WALL + 1.2)
    assert b.agent.counters["revocations-sent-unreplicated"] == 0
    [ack] = vis.deliver([send], 1.2)
    assert b.agent.handle_ack(ack, FA_SRC).acked is not None
    assert vis.removed == 1 and len(set(vis.seen)) == 1


def test_a_standby_clear_binding_is_sent_by_the_active() -> None:
    a, b = Home(1, active=True), Home(2, active=False)
    vis = Visited()
    vis.register(a, 0.0)
    for e in a.agent.take_changes():
        b.agent.apply(e, 0.0)
    assert b.agent.revoke(v.HOME, 1.0, WALL + 1, "operator") == []  # a standby does not send
    [pending] = b.agent.take_changes()
    assert pending.state is w.EntryState.PENDING and pending.attempts == 0
    assert a.agent.apply(pending, 1.1)
    [send], _ = a.agent.tick(1.1, WALL + 1.1)
    assert rw.decode(send.data).revocation_id == pending.revocation_id
    assert a.agent.revoke(v.HOME, 1.2, WALL + 1.2, "operator") == [], "nothing left to revoke"
    [ack] = vis.deliver([send], 1.2)
    assert a.agent.handle_ack(ack, FA_SRC).acked is not None
    assert vis.seen == [pending.revocation_id]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    loss=st.sampled_from([0.0, 0.1, 0.3, 0.6]),
    fa_drops=st.integers(0, 3),
    kill_after=st.floats(0.0, 4.0),
    seed=st.integers(0, 2**16),
)
def test_takeover_at_any_moment_never_duplicates_and_loses_only_what_no_peer_had(
    loss: float, fa_drops: int, kill_after: float, seed: int
) -> None:
    """Sync datagrams lost at random, the FA losing the first copies, the active killed at any
    moment after the revocation: the FA never sees two identifiers for the binding, and the
    revocation is lost only if the standby never had it and no copy reached the FA."""
    g = Group(drop=fa_drops, loss=loss)
    g.rng.seed(seed)
    a, b = g.members
    g.visited.register(a.home, g.now)
    g.settle(1.0)
    start = g.now
    a.agent.revoke(v.HOME, g.now, WALL + g.now, "operator", hold=0.5)
    g.settle(start + kill_after)
    a.alive = False
    key = (int(v.HOME), int(v.COA))
    entry = b.agent.entries.get(key)
    b_had_it = entry is not None and entry.state in (w.EntryState.PENDING, w.EntryState.SETTLED)
    reached_fa = bool(g.visited.seen)
    b.agent.set_active(True, g.now)
    g.settle(g.now + 40.0)
    assert len(set(g.visited.seen)) <= 1, g.visited.seen
    assert g.visited.removed <= 1
    if b_had_it or reached_fa:
        assert g.visited.removed == 1 or g.visited.seen, "not lost"
        if b_had_it:
            assert g.visited.removed == 1
            assert not b.agent.pending


# --- the Wireshark dissector (contrib/wireshark/mobileip-sync.lua) ----------------------------


def test_lua_dissector_reads_the_golden_vectors(tmp_path: Path) -> None:
    """tshark with our Lua dissector shows every field of the golden Revocation State, the
    request flag and the ack, with no expert info."""
    if shutil.which("tshark") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("tshark missing: scripts/test installs it when root")
        pytest.skip("needs tshark")
    from pcapio import write_pcap
    from test_records_ext import _udp434

    pcap = tmp_path / "revocation-state.pcap"
    write_pcap(pcap, [_udp434(trailer(body)) for _, body, _ in GOLDEN])
    lua = Path(__file__).resolve().parent.parent / "contrib" / "wireshark" / "mobileip-sync.lua"
    fields = [
        "mipsync.type",
        "mipsync.flags.request",
        "mipsync.count",
        "mipsync.identification",
        "mipsync.rev.home_address",
        "mipsync.rev.care_of_address",
        "mipsync.rev.foreign_agent",
        "mipsync.rev.foreign_agent_port",
        "mipsync.rev.state",
        "mipsync.rev.inform",
        "mipsync.rev.version",
        "mipsync.rev.since",
        "mipsync.rev.revocation_id",
        "mipsync.rev.first_sent_ms",
        "mipsync.rev.spi",
        "mipsync.rev.attempts",
        "mipsync.rev.reason",
        "mipsync.auth.spi",
        "_ws.expert.message",
    ]
    cmd = ["tshark", "-r", str(pcap), "-X", f"lua_script:{lua}", "-T", "fields"]
    for name in fields:
        cmd += ["-e", name]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    state, request, ack, negotiated = (
        dict(zip(fields, line.split("\t"), strict=True)) for line in out.stdout.splitlines()
    )
    entry = STATE.entries[0]
    assert state == {
        "mipsync.type": "70",
        "mipsync.flags.request": state["mipsync.flags.request"],
        "mipsync.count": "1",
        "mipsync.identification": str(STATE.identification),
        "mipsync.rev.home_address": "10.1.0.5",
        "mipsync.rev.care_of_address": "192.0.2.7",
        "mipsync.rev.foreign_agent": "192.0.2.7",
        "mipsync.rev.foreign_agent_port": "4340",
        "mipsync.rev.state": "2",
        "mipsync.rev.inform": state["mipsync.rev.inform"],
        "mipsync.rev.version": "9",
        "mipsync.rev.since": str(entry.since),
        "mipsync.rev.revocation_id": str(entry.revocation_id),
        "mipsync.rev.first_sent_ms": str(entry.first_sent_ms),
        "mipsync.rev.spi": "256",
        "mipsync.rev.attempts": "2",
        "mipsync.rev.reason": "1",
        "mipsync.auth.spi": "1000",
        "_ws.expert.message": "",
    }
    assert state["mipsync.flags.request"] in ("0", "False")
    assert state["mipsync.rev.inform"] in ("1", "True")
    assert (request["mipsync.type"], request["mipsync.count"]) == ("70", "0")
    assert request["mipsync.flags.request"] in ("1", "True") and not request["mipsync.rev.state"]
    assert (ack["mipsync.type"], ack["mipsync.identification"]) == ("71", str(ACK.identification))
    assert request["_ws.expert.message"] == ack["_ws.expert.message"] == ""
    assert (negotiated["mipsync.rev.state"], negotiated["mipsync.rev.revocation_id"]) == (
        "1",
        str(NEGOTIATED.entries[0].revocation_id),
    )
    assert negotiated["_ws.expert.message"] == ""


def test_a_new_registration_supersedes_a_revocation_still_being_sent() -> None:
    """The FA removed the visitor and told the MN, the ack was lost, the MN registered again:
    the old revocation stops (it could remove the new visitor) and the replicas keep the new
    negotiation (an ack arriving later must not settle it away)."""
    a, b = Home(1, active=True), Home(2, active=False)
    vis = Visited()
    vis.lose_acks = 1
    vis.register(a, 0.0)
    sends = a.agent.revoke(v.HOME, 1.0, WALL + 1, "operator")
    assert vis.deliver(sends, 1.0) == [] and vis.removed == 1
    vis.register(a, 1.5)
    assert not a.agent.pending and a.agent.counters["revocations-superseded"] == 1
    assert a.agent.tick(9.0) == ([], [])
    for e in a.agent.take_changes():
        b.agent.apply(e, 2.0)
    assert [x.care_of_address for x in b.agent.bindings_of(v.HOME)] == [v.COA]
    assert not b.agent.pending
