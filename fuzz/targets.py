"""Fuzz targets: bytes in, only protocol errors out, and no state change from a rejected message.

Each target is a function ``target(data: bytes) -> None`` that raises ``AssertionError`` (or any
other exception) only on a bug. ``scripts/fuzz`` runs them under atheris (coverage-guided);
tests/test_fuzz_smoke.py runs them on their seeds and on random inputs.

Several targets read the first input byte as a *mode* so the fuzzer also reaches the code behind
authentication: mode bits ask the harness to sign the rest of the input with the key it knows
(an MN-HA authenticator for registrations, the group key for sync messages), to put our address
in the Home Agent field, or to put an acceptable identification in. Without that, random bytes
would almost never get past an HMAC.

Targets:

* ``registration``: :func:`mobileip.wire.registration.decode` (requests, replies, extensions);
  a decoded message re-encodes to the same bytes.
* ``sync``: :func:`mobileip.wire.sync.decode` with and without a valid authenticator; a decoded
  message re-encodes to the same bytes.
* ``vrrp``: :func:`mobileip.wire.vrrp.decode`, optionally with the checksum fixed up.
* ``config``: :func:`mobileip.config.parse_config` on the input as text.
* ``homeagent``: :meth:`HomeAgentCore.handle_request` on a core holding a few bindings: never
  raises; when the request is not accepted the table, the pending nonces and the digest are as
  before.
* ``syncengine``: :meth:`SyncEngine.handle_datagram` on a SYNCED engine and on one waiting for a
  table: never raises; a dropped datagram changes no table, replay window or member.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from mobileip.config import ConfigError, parse_config
from mobileip.core.bindings import Binding, BindingTable, MobilityRecord, make_version
from mobileip.core.homeagent import HomeAgentCore, HomeAgentSettings
from mobileip.core.replay import NTP_EPOCH_OFFSET
from mobileip.core.security import SecurityAssociation, SecurityAssociations, append_auth
from mobileip.sync.engine import SyncEngine, SyncSettings
from mobileip.wire import registration as reg
from mobileip.wire import sync as sync_wire
from mobileip.wire import vrrp as vrrp_wire
from mobileip.wire.errors import DecodeError

Target = Callable[[bytes], None]

# --- fixed world the targets run in ----------------------------------------------------------

HA = IPv4Address("10.1.0.1")
VIRTUAL = IPv4Address("10.1.0.254")
SPI = 256
KEY = bytes.fromhex("00112233445566778899aabbccddeeff")
SA = SecurityAssociation(SPI, "hmac-md5", KEY, (IPv4Network("0.0.0.0/0"),))
SA_PS = SecurityAssociation(257, "prefix-suffix-md5", KEY, (IPv4Network("10.0.0.0/8"),))
NOW = 1000.0
WALL = 1_700_000_000.0
GROUP_SPI = 4096
GROUP_KEY = sync_wire.GroupKey(GROUP_SPI, "hmac-sha256", b"group-key-0123456789")
OLD_GROUP_KEY = sync_wire.GroupKey(4095, "hmac-md5", b"old-group-key")
GROUP_AUTH = sync_wire.GroupAuth([GROUP_KEY, OLD_GROUP_KEY], GROUP_SPI)
NODE = int(IPv4Address("192.0.2.1"))
PEER = ("192.0.2.2", 434)


def _ntp(wall: float) -> int:
    return int(wall + NTP_EPOCH_OFFSET) << 32


# --- decoders --------------------------------------------------------------------------------


def registration(data: bytes) -> None:
    try:
        msg = reg.decode(data)
    except DecodeError:
        return
    again = reg.encode(msg)
    assert again == data, f"round trip differs for {data.hex()}: {msg!r}"


def sync(data: bytes) -> None:
    if not data:
        return
    mode, body = data[0], data[1:]
    if mode & 1:
        body = GROUP_AUTH.sign(body)
    try:
        msg = sync_wire.decode(body, GROUP_AUTH)
    except sync_wire.SyncDecodeError:
        return
    # signed again with the key that verified it, the message is the same bytes
    for key in (GROUP_KEY, OLD_GROUP_KEY):
        auth = sync_wire.GroupAuth([GROUP_KEY, OLD_GROUP_KEY], key.spi)
        if sync_wire.encode(msg, auth) == body:
            return
    raise AssertionError(f"round trip differs for {body.hex()}: {msg!r}")


VRRP_SRC = IPv4Address("192.0.2.10")


def vrrp(data: bytes) -> None:
    if not data:
        return
    mode, body = data[0], data[1:]
    if mode & 1 and len(body) >= vrrp_wire.HEADER_LEN:
        # fix the checksum up so the decoder's later checks are reached
        zeroed = body[:6] + b"\0\0" + body[8:]
        pseudo = vrrp_wire.pseudo_header(VRRP_SRC, vrrp_wire.MULTICAST_GROUP, len(body))
        csum = vrrp_wire.internet_checksum(pseudo + zeroed)
        body = zeroed[:6] + struct.pack("!H", csum) + zeroed[8:]
    try:
        vrrp_wire.decode(body, VRRP_SRC, accept_v2_checksum=bool(mode & 2))
    except DecodeError:
        return


def config(data: bytes) -> None:
    text = data.decode("utf-8", "replace")
    try:
        parse_config(text, "fuzz.toml")
    except ConfigError:
        return


# --- the Home Agent's datagram entry point ---------------------------------------------------


def _core(replay: str) -> HomeAgentCore:
    settings = HomeAgentSettings(
        address=HA,
        max_lifetime=600,
        replay=replay,
        max_bindings=4,
        max_simultaneous=2,
        extra_addresses=frozenset({VIRTUAL}),
    )
    table = BindingTable(tombstone_ttl=60.0)
    for i in range(3):
        home = int(IPv4Address("10.1.0.5")) + i
        b = Binding(int(IPv4Address("198.51.100.1")) + i, 300, NOW + 300, 0)
        table.put(MobilityRecord(home, make_version(1, 1), _ntp(WALL - 60), int(HA), (b,)), NOW)
    table.put(
        MobilityRecord(int(IPv4Address("10.1.0.9")), make_version(2, 1), 0, int(HA), ()), NOW - 5
    )
    nonces = iter(range(1, 1 << 30))
    return HomeAgentCore(
        settings, SecurityAssociations([SA, SA_PS]), table, next_nonce=lambda: next(nonces)
    )


def _table_state(table: BindingTable) -> tuple[Any, ...]:
    return (sorted(table.records(), key=lambda r: r.home_address), table.digest(), len(table))


def homeagent(data: bytes) -> None:
    if not data:
        return
    mode, body = data[0], bytearray(data[1:])
    core = _core("nonce" if mode & 0x10 else "timestamp")
    if len(body) >= reg.REQUEST_HEADER_LEN:
        if mode & 2:
            body[0] = reg.TYPE_REQUEST
        if mode & 4:
            body[8:12] = (VIRTUAL if mode & 0x20 else HA).packed
        if mode & 8:  # an acceptable timestamp (the low bits stay the fuzzer's)
            ident = _ntp(WALL + 1) | int.from_bytes(body[20:24], "big")
            body[16:24] = ident.to_bytes(8, "big")
    raw = bytes(body)
    if mode & 1 and len(raw) >= reg.REQUEST_HEADER_LEN:
        raw = append_auth(raw, reg.EXT_MN_HA_AUTH, SA_PS if mode & 0x40 else SA)
    before = _table_state(core.table)
    nonces_before = dict(core._pending_nonces)
    outcome = core.handle_request(raw, NOW, WALL)
    assert (outcome.reply is None) == (outcome.code is None) or outcome.code is None
    if outcome.code not in (0, 1):
        assert _table_state(core.table) == before, f"rejected ({outcome.code}) changed the table"
        if outcome.code != 133:  # a 133 in nonce mode hands out the next nonce
            assert core._pending_nonces == nonces_before
    if outcome.reply is not None:
        rep = reg.decode_reply(outcome.reply)
        assert rep.code == outcome.code


# --- the sync engine's datagram entry point --------------------------------------------------


def _engine(waiting: bool) -> SyncEngine:
    table = BindingTable(tombstone_ttl=60.0)
    for i in range(3):
        home = int(IPv4Address("10.1.0.5")) + i
        b = Binding(int(IPv4Address("198.51.100.1")) + i, 300, NOW + 300, 0)
        table.put(MobilityRecord(home, make_version(3, NODE), 0, int(HA), (b,)), NOW)
    peers = (PEER,) if waiting else ()
    settings = SyncSettings(node_id=NODE, peers=peers, max_queue=8, max_sent_log=8)
    engine = SyncEngine(settings, table, GROUP_AUTH, epoch=100)
    engine.start(NOW)
    engine.datagrams_to_send()
    engine.events()
    return engine


def _engine_state(engine: SyncEngine) -> tuple[Any, ...]:
    members = sorted((m.endpoint, m.node_id, m.epoch, m.last_heard) for m in engine.members)
    replay = sorted((s, w.epoch, w.highest, w.bitmap) for s, w in engine._replay._senders.items())
    return (_table_state(engine.table), members, replay, engine.state)


def _rejected(raw: bytes, engine: SyncEngine) -> bool:
    """Whether the engine must drop ``raw`` before acting on it (decided independently)."""
    try:
        msg = sync_wire.decode(raw, GROUP_AUTH)
    except sync_wire.SyncDecodeError:
        return True
    return msg.sender == NODE or msg.group != engine.settings.group


def syncengine(data: bytes) -> None:
    if not data:
        return
    mode, body = data[0], bytearray(data[1:])
    engine = _engine(waiting=bool(mode & 0x10))
    if len(body) >= sync_wire.HEADER_LEN:
        if mode & 2:
            body[1] = sync_wire.SYNC_VERSION
        if mode & 4:
            body[4:6] = struct.pack("!H", engine.settings.group)
        if mode & 8:
            body[8:12] = struct.pack("!I", int(IPv4Address(PEER[0])))
    raw = bytes(body)
    if mode & 1:
        raw = GROUP_AUTH.sign(raw)
    before = _engine_state(engine)
    dropped_before = sum(engine.counters.dropped.values())
    engine.handle_datagram(raw, PEER, NOW + 0.5)
    if _rejected(raw, engine):
        assert _engine_state(engine) == before, "a rejected sync datagram changed state"
        assert sum(engine.counters.dropped.values()) == dropped_before + 1, "not counted"
    engine.datagrams_to_send()
    engine.events()
    engine.handle_timer(NOW + 5.0)
    engine.datagrams_to_send()


TARGETS: dict[str, Target] = {
    "registration": registration,
    "sync": sync,
    "vrrp": vrrp,
    "config": config,
    "homeagent": homeagent,
    "syncengine": syncengine,
}
