"""Every rejection reason, table-driven: registrations (HomeAgentCore) and HA-HA sync messages
(SyncEngine). Each case asserts the message is rejected with its code or reason, counted exactly
once under that reason, and changes no state (binding table, digest, members, replay window)."""

from __future__ import annotations

import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "fuzz"))

import targets as world

from mobileip.core.homeagent import HomeAgentCore
from mobileip.core.replay import ntp_from_unix
from mobileip.core.security import SecurityAssociation, append_auth
from mobileip.sync.engine import SyncEngine
from mobileip.sync.keyring import KeyRollover
from mobileip.wire import registration as reg
from mobileip.wire import sync as sw

HOME = IPv4Address("10.1.0.5")  # has a binding in the seeded table
NEW_HOME = IPv4Address("10.1.0.50")
COA = IPv4Address("198.51.100.99")
GOOD_ID = ntp_from_unix(world.WALL + 1)


def request(
    *,
    home: IPv4Address = HOME,
    ha: IPv4Address = world.HA,
    ident: int = GOOD_ID,
    lifetime: int = 300,
    flags: int = 0,
    sa: SecurityAssociation | None = world.SA,
    tail: bytes = b"",
    coa: IPv4Address = COA,
) -> bytes:
    body = reg.encode(reg.RegistrationRequest(reg.Flags(flags), lifetime, home, ha, coa, ident))
    body += tail
    return append_auth(body, reg.EXT_MN_HA_AUTH, sa) if sa is not None else body


WRONG_KEY = SecurityAssociation(world.SPI, "hmac-md5", b"not the key", (IPv4Network("0.0.0.0/0"),))
UNKNOWN_SPI = SecurityAssociation(999, "hmac-md5", world.KEY, (IPv4Network("0.0.0.0/0"),))
# SPI 257 exists but covers 10.0.0.0/8 only


@dataclass(frozen=True)
class RegCase:
    name: str
    data: Callable[[], bytes]
    code: int | None  # reply code, None: dropped without a reply
    counter: str  # "violations:<reason>", "dropped:<reason>" or "replies:<code>"
    core: Callable[[], HomeAgentCore] = lambda: world._core("timestamp")


def _full_core() -> HomeAgentCore:
    core = world._core("timestamp")
    # the world's table has 3 live records and max_bindings=4: add a fourth
    core.handle_request(request(home=IPv4Address("10.1.0.40")), world.NOW, world.WALL)
    assert len(core.table) == 4
    return core


REG_CASES = [
    RegCase("missing-extension", lambda: request(sa=None), 131, "violations:missing-extension"),
    RegCase("bad-spi", lambda: request(sa=UNKNOWN_SPI), 131, "violations:bad-spi"),
    RegCase(
        "no-sa",
        lambda: request(home=IPv4Address("192.0.2.5"), sa=world.SA_PS),
        131,
        "violations:no-sa",
    ),
    RegCase(
        "bad-authenticator", lambda: request(sa=WRONG_KEY), 131, "violations:bad-authenticator"
    ),
    RegCase(
        "tampered-after-signing", lambda: _flip(request(), 10), 131, "violations:bad-authenticator"
    ),
    RegCase("reserved-bits", lambda: request(flags=int(reg.Flags.r)), 134, "replies:134"),
    RegCase(
        "malformed-extension",
        lambda: request(sa=None, tail=b"\x20\x10\x00"),
        134,
        "dropped:truncated-extension",
    ),
    RegCase("unknown-home-agent", lambda: request(ha=IPv4Address("10.9.9.9")), 136, "replies:136"),
    RegCase(
        "stale-timestamp",
        lambda: request(ident=ntp_from_unix(world.WALL - 3600)),
        133,
        "violations:bad-identification",
    ),
    RegCase(
        "replayed-identification",
        lambda: request(ident=ntp_from_unix(world.WALL - 60)),
        133,
        "violations:bad-identification",
    ),
    RegCase(
        "too-many-bindings",
        lambda: request(flags=int(reg.Flags.S), coa=IPv4Address("198.51.100.1")),
        None,
        "",
    ),  # placeholder, replaced below
    RegCase("max-bindings", lambda: request(home=NEW_HOME), 130, "replies:130", _full_core),
    RegCase("truncated", lambda: request()[:20], None, "dropped:truncated"),
    RegCase(
        "unknown-critical-extension",
        lambda: request(sa=None, tail=b"\x7f\x00"),
        None,
        "dropped:unknown-critical-extension",
    ),
]


def _flip(data: bytes, pos: int) -> bytes:
    return data[:pos] + bytes([data[pos] ^ 0x01]) + data[pos + 1 :]


def _three_bindings_core() -> HomeAgentCore:
    core = world._core("timestamp")  # max_simultaneous = 2
    for i, coa in enumerate(("198.51.100.1", "198.51.100.2")):
        out = core.handle_request(
            request(flags=int(reg.Flags.S), coa=IPv4Address(coa), ident=GOOD_ID + i + 1),
            world.NOW,
            world.WALL,
        )
        assert out.code == 0
    return core


REG_CASES[10] = RegCase(
    "too-many-simultaneous",
    lambda: request(flags=int(reg.Flags.S), coa=IPv4Address("198.51.100.3"), ident=GOOD_ID + 9),
    135,
    "replies:135",
    _three_bindings_core,
)


def _counter(core: HomeAgentCore, spec: str) -> int:
    kind, _, key = spec.partition(":")
    stats: Any = getattr(core.stats, kind)
    return int(stats[int(key)] if kind == "replies" else stats[key])


def _counters(core: HomeAgentCore) -> dict[str, int]:
    out = {f"replies:{k}": v for k, v in core.stats.replies.items()}
    out.update({f"violations:{k}": v for k, v in core.stats.violations.items()})
    out.update({f"dropped:{k}": v for k, v in core.stats.dropped.items()})
    return out


@pytest.mark.parametrize("case", REG_CASES, ids=[c.name for c in REG_CASES])
def test_registration_rejections(case: RegCase) -> None:
    core = case.core()
    data = case.data()
    state = world._table_state(core.table)
    nonces = dict(core._pending_nonces)
    counters = _counters(core)
    out = core.handle_request(data, world.NOW, world.WALL)
    assert out.code == case.code, out
    assert (out.reply is None) == (case.code is None)
    if out.reply is not None:
        assert reg.decode_reply(out.reply).code == case.code
    after = _counters(core)
    changed = {
        k: after.get(k, 0) - counters.get(k, 0) for k in after if after[k] != counters.get(k)
    }
    assert changed.get(case.counter) == 1, changed
    assert world._table_state(core.table) == state
    assert core._pending_nonces == nonces


def test_registration_nonce_mismatch_is_133_and_keeps_bindings() -> None:
    core = world._core("nonce")
    state = world._table_state(core.table)
    out = core.handle_request(request(ident=(12345 << 32) | 7), world.NOW, world.WALL)
    assert out.code == 133
    assert core.stats.violations["bad-identification"] == 1
    assert world._table_state(core.table) == state


def test_accepted_request_is_the_control() -> None:
    """The same world accepts a good request (so each rejection above is caused by its defect)."""
    core = world._core("timestamp")
    assert core.handle_request(request(), world.NOW, world.WALL).code == 0
    assert _full_core().handle_request(request(), world.NOW, world.WALL).code == 0


# --- sync messages ----------------------------------------------------------------------------

SENDER = int(IPv4Address(world.PEER[0]))
NEW_KEY = sw.GroupKey(5000, "hmac-sha256", b"the new group key")
STRANGER = sw.GroupAuth([sw.GroupKey(777, "hmac-sha256", b"someone else")], 777)
FORGER = sw.GroupAuth(
    [sw.GroupKey(world.GROUP_SPI, "hmac-sha256", b"guessed key")], world.GROUP_SPI
)


def update(
    seq: int = 1, sender: int = SENDER, group: int = 1, version: int = 9
) -> sw.BindingUpdate:
    b = sw.BindingState(int(COA), 300, 0, 100_000)
    rec = sw.RecordState(int(NEW_HOME), int(world.HA), (version << 32) | SENDER, 5, 0, (b,))
    return sw.BindingUpdate(group, sender, (300 << 32) | seq, 77, (rec,))


GOOD = sw.encode(update(), world.GROUP_AUTH)


@dataclass(frozen=True)
class SyncCase:
    name: str
    data: Callable[[], bytes]
    reason: str
    security: bool  # counted as a security violation (cmiHaRedunSecViolations)


SYNC_CASES = [
    SyncCase("forged", lambda: sw.encode(update(), FORGER), "bad-authenticator", True),
    SyncCase("tampered", lambda: _flip(GOOD, 40), "bad-authenticator", True),
    SyncCase("wrong-spi", lambda: sw.encode(update(), STRANGER), "bad-spi", True),
    SyncCase(
        "no-auth", lambda: GOOD[: -sw.auth_trailer_len(world.GROUP_AUTH)], "missing-auth", True
    ),
    SyncCase("truncated-tail", lambda: GOOD[:-5], "missing-auth", True),
    SyncCase("truncated-header", lambda: GOOD[:20], "truncated", False),
    SyncCase("bad-version", lambda: GOOD[:1] + b"\x09" + GOOD[2:], "bad-version", False),
    SyncCase("unknown-type", lambda: b"\x63" + GOOD[1:], "unknown-type", False),
    SyncCase(
        "trailing-bytes-signed",
        lambda: world.GROUP_AUTH.sign(GOOD[: -sw.auth_trailer_len(world.GROUP_AUTH)] + b"\0\0"),
        "trailing-bytes",
        False,
    ),
    SyncCase(
        "wrong-group", lambda: sw.encode(update(group=2), world.GROUP_AUTH), "wrong-group", False
    ),
    SyncCase(
        "own-message",
        lambda: sw.encode(update(sender=world.NODE), world.GROUP_AUTH),
        "own-message",
        False,
    ),
]


def _engine_with_history() -> SyncEngine:
    engine = world._engine(waiting=False)
    engine.handle_datagram(
        sw.encode(update(seq=5, version=3), world.GROUP_AUTH), world.PEER, world.NOW
    )
    engine.datagrams_to_send()
    engine.events()
    return engine


@pytest.mark.parametrize("case", SYNC_CASES, ids=[c.name for c in SYNC_CASES])
def test_sync_rejections(case: SyncCase) -> None:
    engine = _engine_with_history()
    state = world._engine_state(engine)
    dropped = dict(engine.counters.dropped)
    violations = engine.counters.sec_violations
    engine.handle_datagram(case.data(), world.PEER, world.NOW + 1)
    grew = {
        k: v - dropped.get(k, 0)
        for k, v in engine.counters.dropped.items()
        if v != dropped.get(k, 0)
    }
    assert grew == {case.reason: 1}
    assert engine.counters.sec_violations == violations + (1 if case.security else 0)
    assert world._engine_state(engine) == state
    assert engine.datagrams_to_send() == []  # no ack for a rejected message
    if case.security:
        assert [type(e).__name__ for e in engine.events()] == ["SyncViolation"]


def test_sync_replay_is_rejected_counted_and_changes_nothing() -> None:
    engine = _engine_with_history()
    first = sw.encode(update(seq=6, version=4), world.GROUP_AUTH)
    engine.handle_datagram(first, world.PEER, world.NOW + 1)
    assert engine.table.get(int(NEW_HOME)) is not None  # the original was applied
    engine.datagrams_to_send()
    state = world._engine_state(engine)
    for seq in (6, 5):  # the same datagram again, and an older one
        old = sw.encode(update(seq=seq, version=4 + seq), world.GROUP_AUTH)
        engine.handle_datagram(first if seq == 6 else old, world.PEER, world.NOW + 2)
    assert engine.counters.dropped["replayed"] == 2
    assert engine.counters.sec_violations == 2
    assert world._engine_state(engine) == state
    assert engine.datagrams_to_send() == []


def test_good_sync_message_is_the_control() -> None:
    engine = _engine_with_history()
    msg = sw.encode(update(seq=9, version=7), world.GROUP_AUTH)
    engine.handle_datagram(msg, world.PEER, world.NOW + 1)
    assert engine.table.get(int(NEW_HOME)) is not None
    assert engine.datagrams_to_send()  # acked


# --- HA-HA key rollover -----------------------------------------------------------------------

OLD_KEY = sw.GroupKey(4000, "hmac-sha256", b"the old group key")


def test_key_rollover_phases() -> None:
    roll = KeyRollover(NEW_KEY, OLD_KEY, switch_at=1000.0, overlap=60.0)
    assert roll.phase(999.0) == "before-switch"
    assert roll.auth_at(999.0).send_spi == OLD_KEY.spi
    assert set(roll.auth_at(999.0).spis) == {OLD_KEY.spi, NEW_KEY.spi}
    assert roll.next_change(999.0) == 1000.0
    assert roll.phase(1000.0) == "overlap"
    assert roll.auth_at(1030.0).send_spi == NEW_KEY.spi
    assert set(roll.auth_at(1030.0).spis) == {OLD_KEY.spi, NEW_KEY.spi}
    assert roll.next_change(1030.0) == 1060.0
    assert roll.phase(1060.0) == "done"
    assert roll.auth_at(1060.0).spis == (NEW_KEY.spi,)
    assert roll.next_change(1060.0) is None
    assert KeyRollover(NEW_KEY).auth_at(0.0).spis == (NEW_KEY.spi,)
    with pytest.raises(ValueError):
        KeyRollover(NEW_KEY, sw.GroupKey(NEW_KEY.spi, "hmac-md5", b"x"))


def test_key_rollover_two_keys_accepted_during_overlap_then_old_rejected() -> None:
    roll = KeyRollover(NEW_KEY, OLD_KEY, switch_at=1000.0, overlap=60.0)
    signed_old = sw.GroupAuth([OLD_KEY], OLD_KEY.spi)
    signed_new = sw.GroupAuth([NEW_KEY], NEW_KEY.spi)
    engine = world._engine(waiting=False)
    engine.auth = roll.auth_at(1010.0)  # overlap: both verify
    engine.handle_datagram(sw.encode(update(seq=1, version=3), signed_old), world.PEER, world.NOW)
    engine.handle_datagram(sw.encode(update(seq=2, version=4), signed_new), world.PEER, world.NOW)
    assert engine.counters.sec_violations == 0
    assert engine.table.get(int(NEW_HOME)) is not None
    assert engine.table.get(int(NEW_HOME)).counter == 4  # type: ignore[union-attr]
    engine.auth = roll.auth_at(1061.0)  # overlap over: the old key is a stranger
    state = world._engine_state(engine)
    engine.handle_datagram(sw.encode(update(seq=3, version=5), signed_old), world.PEER, world.NOW)
    assert engine.counters.dropped["bad-spi"] == 1 and engine.counters.sec_violations == 1
    assert world._engine_state(engine) == state
    engine.handle_datagram(sw.encode(update(seq=4, version=6), signed_new), world.PEER, world.NOW)
    assert engine.table.get(int(NEW_HOME)).counter == 6  # type: ignore[union-attr]


def test_key_rollover_config() -> None:
    from helpers import homeagent_config

    from mobileip.config import ConfigError, parse_config, to_toml
    from mobileip.daemon.keyroll import rollover_from_config

    red = {"node_id": "127.0.0.1", "spi": 5000, "key": "aa" * 16, "peers": ["127.0.0.2"]}
    roll = {
        "previous_spi": 4000,
        "previous_key": "bb" * 16,
        "key_switch": 1_000_000.0,
        "key_overlap": 30.0,
    }
    cfg = parse_config(to_toml(homeagent_config(redundancy={**red, **roll})))
    assert cfg.redundancy is not None
    r = rollover_from_config(cfg.redundancy)
    assert r.previous is not None and r.previous.spi == 4000 and r.overlap == 30.0
    assert r.auth_at(999_999.0).send_spi == 4000
    text = to_toml(homeagent_config(redundancy=red)).replace(
        "[redundancy]",
        "[redundancy]\nkey_switch = 2030-01-01T00:00:00Z\nprevious_spi = 4000\n"
        'previous_key = "bbbb"',
    )
    assert parse_config(text).redundancy.key_switch == 1893456000.0  # type: ignore[union-attr]
    with pytest.raises(ConfigError, match="key_switch"):
        parse_config(
            to_toml(
                homeagent_config(redundancy={**red, "previous_spi": 4000, "previous_key": "bb"})
            )
        )
    with pytest.raises(ConfigError, match="previous_spi"):
        parse_config(to_toml(homeagent_config(redundancy={**red, **roll, "previous_spi": 5000})))


def test_stranger_datagram_struct_sanity() -> None:
    # the wrong-spi case really carries an SPI the engine does not hold
    data = sw.encode(update(), STRANGER)
    (spi,) = struct.unpack_from("!I", data, len(data) - 32 - 4)
    assert spi == 777


# --- the control API's write calls ------------------------------------------------------------


def _post(control: tuple[str, int], path: str, token: str | None) -> int:
    import urllib.error
    import urllib.request

    req = urllib.request.Request(f"http://{control[0]}:{control[1]}{path}", data=b"", method="POST")
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_control_write_calls_need_the_token(tmp_path: Path) -> None:
    from helpers import running_homeagent

    with running_homeagent(tmp_path, control={"token": "s3cret"}) as ha:
        ha.token = "s3cret"
        assert ha.client(home="10.1.0.5").register(300).code == 0
        clear = "/api/v1/bindings/10.1.0.5/clear"
        assert _post(ha.control, clear, None) == 401
        assert _post(ha.control, clear, "wrong") == 401
        assert _post(ha.control, "/api/v1/reload", None) == 401
        assert len(ha.bindings()) == 1  # nothing was cleared by the refused calls
        assert _post(ha.control, clear, "s3cret") == 200
        assert ha.bindings() == []
