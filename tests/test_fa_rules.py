"""Foreign agent relay rules and visitor list (sans-IO), RFC 5944 3.7."""

from __future__ import annotations

import math
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mobileip.agents.fa import rules as fa
from mobileip.wire import registration as wire

A = IPv4Address
COA = A("10.2.0.1")
HA = A("10.1.0.1")
HOME = A("10.1.0.100")
MN = (str(HOME), 50000)
HA_PORT = (str(HA), 434)


def request(
    lifetime: int = 600, flags: int = 0, coa: IPv4Address = COA, ident: int = 0x1122334455667788
) -> bytes:
    req = wire.RegistrationRequest(wire.Flags(flags), lifetime, HOME, HA, coa, ident)
    return wire.encode(req) + bytes.fromhex("2014000001000123456789abcdef0123456789abcdef")


def reply(code: int = 0, lifetime: int = 600, ident: int = 0x99AABBCC55667788) -> bytes:
    # the HA may change the high 32 bits (timestamp/nonce); the low 32 bits match the request
    return wire.encode(wire.RegistrationReply(code, lifetime, HOME, HA, ident))


def core(**kw: object) -> fa.ForeignAgentCore:
    return fa.ForeignAgentCore(fa.ForeignAgentSettings(frozenset({COA}), **kw))  # type: ignore[arg-type]


def test_request_is_relayed_unchanged_and_reply_makes_a_visitor() -> None:
    c = core()
    data = request(flags=int(wire.Flags.T))
    out = c.handle_request(data, MN, now=10.0)
    assert out.sends == [fa.Send(data, HA_PORT)] and not out.events
    out = c.handle_reply(reply(), HA_PORT, now=10.5)
    assert out.sends == [fa.Send(reply(), MN)]
    [added] = out.events
    assert isinstance(added, fa.VisitorAdded) and not added.renewed
    v = added.visitor
    assert (v.home_address, v.home_agent, v.care_of_address, v.mn_address) == (HOME, HA, COA, MN)
    assert v.reverse_tunnel and v.expires == 610.5
    assert c.visitor_for_reverse(HOME) == v
    assert not c.pending


def test_granted_lifetime_is_the_smaller_of_request_and_reply() -> None:
    c = core()
    c.handle_request(request(lifetime=100), MN, 0.0)
    [ev] = c.handle_reply(reply(lifetime=300), HA_PORT, 0.0).events
    assert isinstance(ev, fa.VisitorAdded) and ev.visitor.lifetime == 100


def test_denied_reply_is_relayed_without_a_visitor() -> None:
    c = core()
    c.handle_request(request(), MN, 0.0)
    out = c.handle_reply(reply(code=131), HA_PORT, 0.0)
    assert out.sends == [fa.Send(reply(code=131), MN)] and not out.events
    assert not c.visitors


def test_unexpected_reply_is_dropped() -> None:
    c = core()
    out = c.handle_reply(reply(), HA_PORT, 0.0)
    assert not out.sends and c.counters["reply-dropped-unexpected"] == 1
    c.handle_request(request(ident=5), MN, 0.0)
    assert not c.handle_reply(reply(ident=6), HA_PORT, 0.0).sends  # low 32 bits differ


def test_deregistration_removes_the_visitor() -> None:
    c = core()
    c.handle_request(request(), MN, 0.0)
    c.handle_reply(reply(), HA_PORT, 0.0)
    c.handle_request(request(lifetime=0, ident=7), MN, 1.0)
    out = c.handle_reply(reply(lifetime=0, ident=7), HA_PORT, 1.0)
    assert out.events == [fa.VisitorRemoved(HOME, "deregistered")]
    assert not c.visitors


def _denial(out: fa.Output) -> wire.RegistrationReply:
    [send] = out.sends
    assert send.dest == MN
    msg = wire.decode_reply(send.data)
    [ev] = out.events
    assert isinstance(ev, fa.Denied) and ev.code == msg.code
    return msg


@pytest.mark.parametrize(
    ("kwargs", "settings_kw", "code"),
    [
        ({"coa": A("10.9.9.9")}, {}, 77),
        ({"lifetime": 5000}, {"max_lifetime": 1800}, 69),
        ({"flags": int(wire.Flags.M)}, {"minimal_encapsulation": False}, 72),
        ({"flags": int(wire.Flags.G)}, {"gre": False}, 72),
        ({"flags": int(wire.Flags.T)}, {"reverse_tunnel": False}, 74),
    ],
)
def test_fa_denials(kwargs: dict[str, object], settings_kw: dict[str, object], code: int) -> None:
    c = core(**settings_kw)
    msg = _denial(c.handle_request(request(**kwargs), MN, 0.0))  # type: ignore[arg-type]
    assert msg.code == code
    assert (msg.home_address, msg.home_agent) == (HOME, HA)
    assert msg.identification == 0x1122334455667788
    assert not c.pending
    if code == 69:
        assert msg.lifetime == 1800  # what we would accept


def test_poorly_formed_request_gets_70() -> None:
    c = core()
    bad = request()[:24] + b"\x20\x02"  # truncated MN-HA extension
    msg = _denial(c.handle_request(bad, MN, 0.0))
    assert msg.code == 70 and msg.home_address == HOME
    assert not c.handle_request(b"\x01\x00", MN, 0.0).sends  # too short to answer


def test_pending_times_out_with_78_and_visitors_expire() -> None:
    c = core(pending_timeout=7.0)
    c.handle_request(request(ident=1), MN, 0.0)
    assert c.next_deadline() == 7.0
    assert not c.tick(6.9).sends
    msg = _denial(c.tick(7.0))
    assert msg.code == 78 and not c.pending
    c.handle_request(request(lifetime=30, ident=2), MN, 10.0)
    c.handle_reply(reply(lifetime=30, ident=2), HA_PORT, 10.0)
    assert c.next_deadline() == 40.0
    assert c.tick(40.0).events == [fa.VisitorRemoved(HOME, "expired")]


def test_infinite_lifetime_never_expires() -> None:
    c = core(max_lifetime=0xFFFF)
    c.handle_request(request(lifetime=0xFFFF), MN, 0.0)
    [ev] = c.handle_reply(reply(lifetime=0xFFFF), HA_PORT, 0.0).events
    assert isinstance(ev, fa.VisitorAdded) and ev.visitor.expires == math.inf
    assert c.next_deadline() is None


def test_limits_answer_66() -> None:
    c = core(max_pending=1)
    c.handle_request(request(ident=1), MN, 0.0)
    assert _denial(c.handle_request(request(ident=2), MN, 0.0)).code == 66


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=80), st.binary(max_size=80))
def test_garbage_never_crashes(req: bytes, rep: bytes) -> None:
    c = core()
    c.handle_request(b"\x01" + req, MN, 0.0)
    c.handle_reply(b"\x03" + rep, HA_PORT, 0.0)
    c.tick(100.0)


def test_example_configs_load_and_errors_are_located(tmp_path: Path) -> None:
    from mobileip.agents.fa.config import load_fa_config
    from mobileip.agents.mn.daemon import load_mn_config
    from mobileip.config import ConfigError, load_config

    root = Path(__file__).parent.parent / "examples"
    fa_cfg = load_fa_config(root / "foreignagent.toml")
    assert fa_cfg.care_of_address == A("10.2.0.1") and fa_cfg.reverse_tunnel
    mn_cfg = load_mn_config(str(root / "mobilenode.toml"))
    assert mn_cfg.home_address == A("10.1.0.100") and mn_cfg.flags == 0
    dp = load_config(root / "homeagent-dataplane.toml").dataplane
    assert dp is not None and dp.backend == "auto" and dp.home_interface == "eth0"
    bad = tmp_path / "fa.toml"
    bad.write_text('[foreignagent]\ninterface = "eth1"\ncare_of_address = "10.2.0.1"\nport = 0\n')
    with pytest.raises(ConfigError, match=r"fa.toml: line 4: foreignagent.port: 0 is out of range"):
        load_fa_config(bad)
    bad.write_text('[mobilenode]\ninterface = "e"\nhome_address = "10.9.0.1"\n'
                   'home_agent = "10.1.0.1"\nhome_network = "10.1.0.0/24"\nspi = 256\n'
                   'key = "00"\n')  # fmt: skip
    with pytest.raises(ConfigError, match="home_network: does not contain home_address"):
        load_mn_config(str(bad))
    bad.write_text('[foreignagent]\ninterface = "eth1"\ncare_of_address = "10.2.0.1"\nx = 1\n')
    with pytest.raises(ConfigError, match=r"line 4: foreignagent\.x: unknown key"):
        load_fa_config(bad)
