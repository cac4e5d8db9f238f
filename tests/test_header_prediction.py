"""Header prediction (HomeAgentCore._predicted) against the full rules, on generated streams.

Two cores get the same stream of requests at the same times: one with prediction on, one with it
off. Every outcome (reply bytes, code, events), the statistics and the binding table must be the
same; and the streams must actually exercise the predicted path (else the comparison says nothing).
"""

from __future__ import annotations

import random
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network
from typing import Any

import vectors as v
from hypothesis import given, settings
from hypothesis import strategies as st
from test_homeagent_rules import HMAC_SA, NODE_ID, OTHER_SA, PS_SA, request

from mobileip.core import homeagent as ha
from mobileip.core.replay import ntp_from_unix
from mobileip.core.security import SecurityAssociation, SecurityAssociations

VIRTUAL = IPv4Address("10.1.0.254")
HOMES = [IPv4Address(int(v.HOME) + i) for i in range(4)] + [IPv4Address("10.2.0.9")]
COAS = [v.COA, IPv4Address("203.0.113.3"), IPv4Address("203.0.113.4")]
AGENTS = [v.HA, VIRTUAL, IPv4Address("10.1.0.77")]
LIFETIMES = [0, 1, 20, 21, 30, 1800, 1801, 4000, 0xFFFE, 0xFFFF]
UNKNOWN_SA = SecurityAssociation(999, "hmac-md5", b"\x01" * 16, (IPv4Network(v.HOME_PREFIX),))
SAS = [HMAC_SA, HMAC_SA, PS_SA, OTHER_SA, UNKNOWN_SA]


def pair(**overrides: Any) -> tuple[ha.HomeAgentCore, ha.HomeAgentCore]:
    cores = []
    for predict in (True, False):
        base = ha.HomeAgentSettings(
            address=v.HA, node_id=NODE_ID, extra_addresses=frozenset({VIRTUAL})
        )
        core = ha.HomeAgentCore(
            replace(base, **overrides),
            SecurityAssociations([HMAC_SA, PS_SA, OTHER_SA]),
            next_nonce=iter(range(1, 1 << 30)).__next__,
        )
        core.predict = predict
        cores.append(core)
    return cores[0], cores[1]


def table_state(core: ha.HomeAgentCore) -> tuple[Any, ...]:
    records = sorted(core.table.records(), key=lambda r: r.home_address)
    return tuple(records), core.table.digest(), len(core.table), core.table.next_deadline()


def stats_state(core: ha.HomeAgentCore) -> tuple[Any, ...]:
    s = core.stats
    return dict(s.replies), dict(s.violations), dict(s.dropped), s.expired


step = st.fixed_dictionaries(
    {
        "home": st.integers(0, len(HOMES) - 1),
        "coa": st.integers(0, len(COAS) - 1),
        "agent": st.sampled_from([0, 0, 0, 1, 2]),
        "lifetime": st.sampled_from(LIFETIMES),
        "flags": st.sampled_from([0, 0, 0, 0x02, 0x10 | 0x02, 0x80, 0x04, 0x01, 0xFF]),
        "sa": st.sampled_from(range(len(SAS))),
        "corrupt": st.sampled_from([False, False, False, True]),
        "ident": st.sampled_from(["fresh", "fresh", "fresh", "same", "old", "future", "nonce"]),
        "nai": st.sampled_from([None, None, None, b"mn@example.net"]),
        "advance": st.sampled_from([0.0, 0.0, 0.5, 2.0, 40.0]),
        "tick": st.booleans(),
    }
)


def run_stream(steps: list[dict[str, Any]], **overrides: Any) -> ha.HomeAgentCore:
    """Feed ``steps`` to a predicting core and a non-predicting one, comparing after each."""
    fast, full = pair(**overrides)
    now, wall = 1000.0, v.WALL
    last: dict[int, int] = {}
    for s in steps:
        now += s["advance"]
        wall += s["advance"]
        home = HOMES[s["home"]]
        seconds = ntp_from_unix(wall) & ~0xFFFFFFFF
        previous = last.get(int(home), seconds)
        ident = {
            "fresh": max(seconds, previous) + 1,
            "same": previous,
            "old": previous - (1 << 32),
            "future": seconds + (60 << 32),
            "nonce": (7 << 32) | 5,
        }[s["ident"]]
        last[int(home)] = max(previous, ident)
        data = request(
            ident,
            home=home,
            coa=COAS[s["coa"]],
            lifetime=s["lifetime"],
            flags=s["flags"],
            home_agent=AGENTS[s["agent"]],
            nai=s["nai"],
            sa=SAS[s["sa"]],
        )
        if s["corrupt"]:
            data = data[:-1] + bytes([data[-1] ^ 0x40])
        a = fast.handle_request(data, now, wall)
        b = full.handle_request(data, now, wall)
        assert (a.reply, a.code, a.events) == (b.reply, b.code, b.events)
        if s["tick"]:
            assert fast.tick(now) == full.tick(now)
        assert table_state(fast) == table_state(full)
        assert stats_state(fast) == stats_state(full)
    assert full.stats.predicted == 0
    return fast


@settings(max_examples=300, deadline=None)
@given(
    steps=st.lists(step, min_size=1, max_size=30),
    mode=st.sampled_from(["timestamp", "timestamp", "nonce"]),
    max_bindings=st.sampled_from([1_000_000, 2]),
    max_simultaneous=st.sampled_from([5, 1]),
    max_lifetime=st.sampled_from([1800, 20]),
)
def test_prediction_gives_the_same_outcomes_as_the_rules(
    steps: list[dict[str, Any]],
    mode: str,
    max_bindings: int,
    max_simultaneous: int,
    max_lifetime: int,
) -> None:
    run_stream(
        steps,
        replay=mode,
        max_bindings=max_bindings,
        max_simultaneous=max_simultaneous,
        max_lifetime=max_lifetime,
    )


def test_a_long_seeded_stream_takes_both_paths() -> None:
    """2,000 steps drawn from the same strategy with a fixed seed: the prediction must carry a
    good share of them, the rules the rest (denials of every kind), with equal results."""
    rng = random.Random(20261127)
    steps = [_draw(rng) for _ in range(2000)]
    fast = run_stream(steps, max_lifetime=20)
    replies = fast.stats.replies
    assert fast.stats.predicted > 150  # 209 with this seed (of 340 accepted)
    assert replies[0] > fast.stats.predicted  # deregistrations and S-flag ones took the rules
    for code in (131, 133, 134, 136):
        assert replies[code] > 0, code


def _draw(rng: random.Random) -> dict[str, Any]:
    return {
        "home": rng.randrange(len(HOMES)),
        "coa": rng.randrange(len(COAS)),
        "agent": rng.choice([0, 0, 0, 1, 2]),
        "lifetime": rng.choice(LIFETIMES),
        "flags": rng.choice([0, 0, 0, 0x02, 0x12, 0x80, 0x04, 0x01]),
        "sa": rng.randrange(len(SAS)),
        "corrupt": rng.random() < 0.1,
        "ident": rng.choice(["fresh"] * 6 + ["same", "old", "future"]),
        "nai": rng.choice([None] * 5 + [b"mn@example.net"]),
        "advance": rng.choice([0.0, 0.0, 0.5, 2.0, 40.0]),
        "tick": rng.random() < 0.3,
    }


def test_a_plain_registration_is_predicted_and_equal() -> None:
    fast, full = pair()
    ident = ntp_from_unix(v.WALL) + 1
    data = request(ident)
    a = fast.handle_request(data, 1000.0, v.WALL)
    b = full.handle_request(data, 1000.0, v.WALL)
    assert fast.stats.predicted == 1 and full.stats.predicted == 0
    assert a == b and a.code == 0
    assert table_state(fast) == table_state(full)
    # a second one re-registers through the prediction too, and the rules agree
    data = request(ident + 1, coa=COAS[1], lifetime=0xFFFF)
    assert fast.handle_request(data, 1001.0, v.WALL + 1) == full.handle_request(
        data, 1001.0, v.WALL + 1
    )
    assert fast.stats.predicted == 2
    assert table_state(fast) == table_state(full)


def test_shapes_and_outcomes_the_prediction_leaves_to_the_rules() -> None:
    ident = ntp_from_unix(v.WALL) + 1
    cases = {
        "deregistration": request(ident, lifetime=0),
        "S flag": request(ident, flags=0x80),
        "reserved flag": request(ident, flags=0x01),
        "NAI extension": request(ident, nai=b"mn@example.net"),
        "prefix-suffix SA": request(ident, sa=PS_SA),
        "SA not covering the home": request(ident, home=HOMES[-1], sa=HMAC_SA),
        "unknown SPI": request(ident, sa=UNKNOWN_SA),
        "not our agent": request(ident, home_agent=AGENTS[2]),
        "stale identification": request(ident - (100 << 32)),
    }
    for name, data in cases.items():
        fast, full = pair()
        a = fast.handle_request(data, 1000.0, v.WALL)
        b = full.handle_request(data, 1000.0, v.WALL)
        assert a == b, name
        predicted = fast.stats.predicted
        # only the prefix-suffix SA is the predicted shape with a different algorithm
        assert predicted == (1 if name == "prefix-suffix SA" else 0), name
