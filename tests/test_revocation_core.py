"""RFC 3543 revocation, sans-IO: the Home Agent's core and RevocationAgent (core/revocation.py)
with our foreign agent's rules (agents/fa/rules.py), wired by hand; datagrams can be dropped."""

from __future__ import annotations

import itertools
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest
import vectors as v
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mobileip.agents.fa import rules as fa
from mobileip.core import homeagent as ha
from mobileip.core import revocation as rev
from mobileip.core.replay import ntp_from_unix
from mobileip.core.security import (
    SecurityAssociation,
    SecurityAssociations,
    append_auth,
    verify_auth,
)
from mobileip.wire import registration as wire
from mobileip.wire import revocation as rw

A = IPv4Address
FA_ADDR = v.COA  # our FA relays from its care-of address
FA_PORT = (str(FA_ADDR), 4340)
MN = (str(v.HOME), 50000)
MN_SA = SecurityAssociation(v.HMAC_SPI, "hmac-md5", v.HMAC_KEY, (IPv4Network(v.HOME_PREFIX),))
FA_HA = SecurityAssociation(0x1000, "hmac-md5", b"fa-ha-shared-key", (IPv4Network("0.0.0.0/0"),))
WRONG = replace(FA_HA, key=b"not-the-right-key")
WALL = v.WALL
NOW = 1000.0


class World:
    """One HA (core + revocation agent) and one FA; the MN is a request builder."""

    def __init__(self, *, fa_sa: SecurityAssociation | None = FA_HA, inform: bool = True) -> None:
        self.core = ha.HomeAgentCore(
            ha.HomeAgentSettings(address=v.HA, node_id=1), SecurityAssociations([MN_SA])
        )
        self.agent = rev.RevocationAgent(rev.RevocationSettings(v.HA, {FA_ADDR: FA_HA}))
        self.fa = fa.ForeignAgentCore(
            fa.ForeignAgentSettings(
                frozenset({v.COA}), fa_ha=fa_sa, inform_mobile_node=inform, ha_port=434
            )
        )
        self._ids = itertools.count(1)
        self.to_mn: list[bytes] = []

    def mn_request(self, lifetime: int = 600, flags: int = 0, coa: IPv4Address = v.COA) -> bytes:
        ident = (ntp_from_unix(WALL) & ~0xFFFFFFFF) | next(self._ids)
        body = wire.encode(
            wire.RegistrationRequest(wire.Flags(flags), lifetime, v.HOME, v.HA, coa, ident)
        )
        return append_auth(body, wire.EXT_MN_HA_AUTH, MN_SA)

    def register(self, lifetime: int = 600, now: float = NOW) -> bytes:
        """MN -> FA -> HA -> FA -> MN; returns what reached the MN."""
        out = self.fa.handle_request(self.mn_request(lifetime), MN, now, WALL)
        [relayed] = out.sends
        assert relayed.dest == (str(v.HA), 434)
        outcome = self.core.handle_request(relayed.data, now, WALL)
        assert outcome.reply is not None
        reply = self.agent.on_reply(relayed.data, FA_PORT, outcome.reply, WALL)
        back = self.fa.handle_reply(reply, (str(v.HA), 434), now)
        [to_mn] = back.sends
        assert to_mn.dest == MN
        return to_mn.data

    def clear(self, now: float = NOW + 5) -> list[rev.Send]:
        self.core.administrative_deregister(v.HOME, now)
        return self.agent.revoke(v.HOME, now, WALL + 5, "operator")


def test_negotiation_marks_the_visitor_and_the_mobile_node_still_authenticates_the_reply() -> None:
    w = World()
    data = w.register()
    reply = wire.decode_reply(data)
    assert reply.code == 0
    ok, _ = verify_auth(data, reply, wire.EXT_MN_HA_AUTH, MN_SA)
    assert ok, "the MN-HA authenticator still covers what the MN checks"
    support = rw.find_support(reply.extensions)
    assert support is not None and support.inform and support.timestamp == int(WALL)
    assert rev.verify_fa_ha(data, reply, FA_HA)
    visitor = w.fa.visitors[v.HOME]
    assert visitor.revocation_since == int(WALL)
    assert [b.home_address for b in w.agent.bindings_of(v.HOME)] == [v.HOME]
    assert w.agent.counters["negotiated"] == 1


def test_clear_binding_revokes_acks_removes_the_visitor_and_informs_the_mobile_node() -> None:
    w = World()
    w.register()
    [send] = w.clear()
    assert send.dest == FA_PORT
    msg = rw.decode(send.data)
    assert isinstance(msg, rw.RegistrationRevocation)
    assert msg.by_home_agent and msg.inform
    assert (msg.home_domain_address, msg.foreign_domain_address) == (v.HA, v.COA)
    assert msg.revocation_id >= int(WALL)
    out = w.fa.handle_revocation(send.data, (str(v.HA), 434), NOW + 5)
    assert out.events == [fa.VisitorRemoved(v.HOME, "revoked")]
    assert v.HOME not in w.fa.visitors
    tell, ack = out.sends
    assert tell.dest == MN
    told = wire.decode_reply(tell.data)
    assert (told.code, told.lifetime, told.home_address) == (65, 0, v.HOME)
    assert ack.dest == (str(v.HA), 434)
    result = w.agent.handle_ack(ack.data, (str(FA_ADDR), 4340))
    assert result.acked is not None and result.acked.informed and result.acked.attempts == 1
    assert not w.agent.pending and w.agent.next_deadline() is None
    assert w.agent.counters["revocations-acked"] == 1
    # nothing left to revoke
    assert w.agent.revoke(v.HOME, NOW + 6, WALL + 6, "operator") == []


def test_a_lost_revocation_is_retransmitted_with_backoff_until_acked() -> None:
    w = World()
    w.register()
    [lost] = w.clear(now=NOW)  # dropped on the way
    assert w.agent.next_deadline() == NOW + 1.0
    assert w.agent.tick(NOW + 0.99) == ([], [])
    sends, gave_up = w.agent.tick(NOW + 1.0)
    assert not gave_up and [s.data for s in sends] == [lost.data]  # same message, same id
    assert w.agent.next_deadline() == NOW + 1.0 + 2.0
    out = w.fa.handle_revocation(sends[0].data, (str(v.HA), 434), NOW + 1.0)
    ack = out.sends[-1]
    result = w.agent.handle_ack(ack.data, (str(FA_ADDR), 4340))
    assert result.acked is not None and result.acked.attempts == 2
    assert w.agent.counters["revocations-retransmitted"] == 1
    assert w.agent.counters["revocations-acked-after-retransmission"] == 1
    assert not w.agent.pending


def test_a_lost_ack_gets_the_same_ack_again_without_a_second_removal() -> None:
    w = World()
    w.register()
    [send] = w.clear(now=NOW)
    first = w.fa.handle_revocation(send.data, (str(v.HA), 434), NOW)
    [retx], _ = w.agent.tick(NOW + 1.0)
    again = w.fa.handle_revocation(retx.data, (str(v.HA), 434), NOW + 1.0)
    assert again.events == [] and again.sends == [first.sends[-1]]
    assert w.fa.counters["revocation-duplicates"] == 1
    assert w.agent.handle_ack(again.sends[0].data, FA_PORT).acked is not None


def test_backoff_doubles_to_the_cap_then_gives_up_and_counts() -> None:
    w = World()
    w.agent.settings = replace(w.agent.settings, max_timeout=4.0, max_attempts=5)
    w.register()
    w.clear(now=0.0)
    times = []
    now = 0.0
    while (deadline := w.agent.next_deadline()) is not None:
        now = deadline
        sends, gave_up = w.agent.tick(now)
        times.append((now, len(sends), len(gave_up)))
    # sends at 0 (revoke), 1, 3, 7, 11; gives up at 15
    assert times == [(1.0, 1, 0), (3.0, 1, 0), (7.0, 1, 0), (11.0, 1, 0), (15.0, 0, 1)]
    assert w.agent.counters["revocations-sent"] == 1
    assert w.agent.counters["revocations-retransmitted"] == 4
    assert w.agent.counters["revocation-gave-up"] == 1


def test_an_fa_without_revocation_negotiates_nothing() -> None:
    w = World(fa_sa=None)
    data = w.register()
    reply = wire.decode_reply(data)
    assert rw.find_support(reply.extensions) is None
    assert w.fa.visitors[v.HOME].revocation_since is None
    assert w.clear() == []


def test_support_without_a_valid_fa_ha_authenticator_negotiates_nothing() -> None:
    w = World(fa_sa=WRONG)  # the FA signs with a key the HA does not share
    data = w.register()
    assert rw.find_support(wire.decode_reply(data).extensions) is None
    assert w.agent.counters["support-bad-fa-ha-auth"] == 1
    assert w.clear() == []


def test_support_from_an_unknown_agent_negotiates_nothing() -> None:
    w = World()
    relayed = w.fa.handle_request(w.mn_request(), MN, NOW, WALL).sends[0].data
    outcome = w.core.handle_request(relayed, NOW, WALL)
    assert outcome.reply is not None
    assert w.agent.on_reply(relayed, ("198.18.0.9", 434), outcome.reply, WALL) == outcome.reply
    assert w.agent.counters["support-from-unknown-agent"] == 1


def test_forged_or_stale_revocations_are_dropped_by_the_fa() -> None:
    w = World()
    w.register()
    good = rw.RegistrationRevocation(rw.REVOCATION_A, v.HOME, v.HA, v.COA, int(WALL) + 9)
    forged = append_auth(rw.encode(good), wire.EXT_FA_HA_AUTH, WRONG)
    assert w.fa.handle_revocation(forged, (str(v.HA), 434), NOW).sends == []
    assert w.fa.counters["revocation-dropped-bad-auth"] == 1
    stale = replace(good, revocation_id=int(WALL) - 1)  # older than the registration
    data = append_auth(rw.encode(stale), wire.EXT_FA_HA_AUTH, FA_HA)
    assert w.fa.handle_revocation(data, (str(v.HA), 434), NOW).sends == []
    assert w.fa.counters["revocation-dropped-stale"] == 1
    not_ha = replace(good, flags=0)  # an FA-initiated revocation: not ours to take
    data = append_auth(rw.encode(not_ha), wire.EXT_FA_HA_AUTH, FA_HA)
    assert w.fa.handle_revocation(data, (str(v.HA), 434), NOW).sends == []
    assert v.HOME in w.fa.visitors


def test_a_forged_ack_does_not_stop_the_retransmission() -> None:
    w = World()
    w.register()
    [send] = w.clear(now=NOW)
    msg = rw.decode(send.data)
    forged = append_auth(
        rw.encode(rw.RevocationAck(0, v.HOME, msg.revocation_id)), wire.EXT_FA_HA_AUTH, WRONG
    )
    assert w.agent.handle_ack(forged, FA_PORT).reason == "bad-auth"
    assert w.agent.pending


@pytest.mark.parametrize("inform", [True, False])
def test_the_i_bit_follows_what_the_fa_offered(inform: bool) -> None:
    w = World(inform=inform)
    w.register()
    [send] = w.clear()
    msg = rw.decode(send.data)
    assert isinstance(msg, rw.RegistrationRevocation) and msg.inform == inform
    out = w.fa.handle_revocation(send.data, (str(v.HA), 434), NOW + 5)
    assert len(out.sends) == (2 if inform else 1)  # (reply to the MN,) ack
    ack = rw.decode(out.sends[-1].data)
    assert isinstance(ack, rw.RevocationAck) and ack.informed == inform


def test_deregistration_and_a_move_to_another_fa_forget_the_negotiation() -> None:
    w = World()
    w.register()
    w.register(lifetime=0)
    assert w.agent.bindings_of(v.HOME) == []
    w.register()
    # the MN moves and registers directly (co-located, no FA): the old FA's binding is replaced
    direct = w.mn_request(coa=A("203.0.113.50"))
    outcome = w.core.handle_request(direct, NOW + 1, WALL + 1)
    assert outcome.reply is not None and wire.decode_reply(outcome.reply).code == 0
    assert w.agent.on_reply(direct, ("203.0.113.50", 434), outcome.reply, WALL) == outcome.reply
    assert w.agent.bindings_of(v.HOME) == []


def test_fa_config_turns_revocation_on_and_the_advertisement_carries_the_x_bit(
    tmp_path: Path,
) -> None:
    from mobileip.agents.fa.config import load_fa_config
    from mobileip.agents.fa.daemon import ForeignAgentDaemon
    from mobileip.config import ConfigError
    from mobileip.log import Logger
    from mobileip.wire import agent_adv as adv

    base = '[foreignagent]\ninterface = "eth1"\ncare_of_address = "10.2.0.1"\n'
    path = tmp_path / "fa.toml"
    path.write_text(base)
    off = ForeignAgentDaemon(load_fa_config(path), Logger(level="error"))
    assert off.core.settings.fa_ha is None
    assert adv.decode_advertisement(off.advertisement()).flags2 & adv.FLAG_X == 0
    path.write_text(
        base + 'revocation_spi = 4096\nrevocation_key = "00112233445566778899aabbccddeeff"\n'
        "inform_mobile_node = false\n"
    )
    cfg = load_fa_config(path)
    on = ForeignAgentDaemon(cfg, Logger(level="error"))
    sa = on.core.settings.fa_ha
    assert sa is not None and (sa.spi, sa.algorithm, sa.key.hex()) == (
        4096,
        "hmac-md5",
        "00112233445566778899aabbccddeeff",
    )
    assert on.core.settings.inform_mobile_node is False
    assert adv.decode_advertisement(on.advertisement()).flags2 & adv.FLAG_X
    path.write_text(base + "revocation_spi = 4096\n")
    with pytest.raises(ConfigError, match="revocation_key and revocation_spi go together"):
        load_fa_config(path)


def test_a_renewal_without_support_forgets_and_plain_requests_skip_decoding() -> None:
    w = World()
    w.register()
    assert w.agent.negotiated_count == 1
    plain = w.mn_request()  # straight from the MN: no Revocation Support, no FA-HA
    outcome = w.core.handle_request(plain, NOW + 1, WALL + 1)
    assert outcome.reply is not None
    assert w.agent.on_reply(plain, FA_PORT, outcome.reply, WALL) is outcome.reply
    assert w.agent.bindings_of(v.HOME) == [] and w.agent.negotiated_count == 0
    assert w.agent.counters["negotiated-ended"] == 1
    # nothing negotiated for this home and no marker: the reply is returned untouched
    again = w.mn_request()
    outcome = w.core.handle_request(again, NOW + 2, WALL + 2)
    assert outcome.reply is not None
    assert w.agent.on_reply(again, FA_PORT, outcome.reply, WALL) is outcome.reply


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from([7, 15, 1, 3]),
    st.binary(max_size=90),
    st.sampled_from([b"", bytes((rw.EXT_REVOCATION_SUPPORT, 6))]),
)
def test_garbage_never_crashes_either_side(first: int, body: bytes, tail: bytes) -> None:
    data = bytes([first]) + body + tail
    w = World()
    w.agent.handle_ack(data, FA_PORT)
    w.fa.handle_revocation(data, (str(v.HA), 434), NOW)
    w.fa.handle_reply(data, (str(v.HA), 434), NOW)
    reply = wire.encode(wire.RegistrationReply(0, 600, v.HOME, v.HA, 1))
    assert w.agent.on_reply(data, FA_PORT, reply, WALL) == reply  # nothing valid negotiates


def test_expired_bindings_are_forgotten_without_a_revocation() -> None:
    w = World()
    w.register(lifetime=10)
    assert w.agent.negotiated_count == 1
    assert w.core.tick(NOW + 5) == []  # not yet
    events = w.core.tick(NOW + 11)
    expired = [e for e in events if isinstance(e, ha.BindingsExpired)]
    assert expired, events
    for e in expired:  # what RevocationService's event subscriber does
        w.agent.on_expired(e.record.home_address, (b.care_of_address for b in e.record.bindings))
    assert w.agent.negotiated_count == 0 and w.agent.negotiated == {}
    assert w.agent.counters["negotiated-expired"] == 1
    assert w.agent.revoke(v.HOME, NOW + 12, WALL + 12, "operator") == []
