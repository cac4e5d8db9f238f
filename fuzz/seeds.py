"""Seed inputs for every fuzz target: valid messages of each kind, in the target's input format
(a mode byte first where the target has one), so the fuzzer starts deep inside each decoder."""

from __future__ import annotations

from ipaddress import IPv4Address

import targets as t

from mobileip.wire import registration as reg
from mobileip.wire import sync as sync_wire
from mobileip.wire import vrrp as vrrp_wire

HOME = IPv4Address("10.1.0.5")
COA = IPv4Address("198.51.100.7")


def _request(flags: int = 0, lifetime: int = 300, ident: int = 0, *exts: reg.Extension) -> bytes:
    req = reg.RegistrationRequest(reg.Flags(flags), lifetime, HOME, t.HA, COA, ident, exts)
    return reg.encode(req)


def registration_seeds() -> list[bytes]:
    nai = reg.NaiExtension(b"mn@example.net")
    auth = reg.AuthExtension(reg.EXT_MN_HA_AUTH, t.SPI, bytes(16))
    long = reg.LongExtension(reg.EXT_CVSE, 0, b"\x00\x00\x00\x09vendor")
    reply = reg.RegistrationReply(0, 300, HOME, t.HA, 7, (nai, auth))
    return [
        _request(),
        _request(0x10, 0, 5, nai, reg.PadExtension(), auth),
        _request(0x80, 0xFFFF, 9, long, reg.UnknownExtension(200, b"xx"), auth),
        reg.encode(reply),
    ]


def _records() -> tuple[sync_wire.RecordState, ...]:
    b = sync_wire.BindingState(int(COA), 300, 0, 250_000)
    live = sync_wire.RecordState(int(HOME), int(t.HA), (4 << 32) | 7, 99, 0, (b, b))
    tomb = sync_wire.RecordState(int(HOME) + 1, int(t.HA), (5 << 32) | 7, 98, 1200, ())
    # issue 16: an NAI and NAT mappings (the EXTENDED state bit and its extension block)
    nat = sync_wire.BindingState(int(COA), 300, 0, 250_000, int(IPv4Address("203.0.113.9")), 4500)
    ext = sync_wire.RecordState(
        int(HOME) + 2, int(t.HA), (6 << 32) | 7, 97, 0, (b, nat), b"mn@example.com"
    )
    ext_tomb = sync_wire.RecordState(int(HOME) + 3, int(t.HA), (7 << 32) | 7, 96, 5, (), b"x@y")
    return live, tomb, ext, ext_tomb


def sync_messages() -> list[sync_wire.SyncMessage]:
    peer = sync_wire.PeerInfo(7, int(IPv4Address("192.0.2.2")), 434, 1)
    sender = int(IPv4Address(t.PEER[0]))
    seq = (200 << 32) | 1
    return [
        sync_wire.BindingUpdate(1, sender, seq, 11, _records()),
        sync_wire.BindingUpdateAck(1, sender, seq + 1, 11, 0, (int(HOME),)),
        sync_wire.TableRequest(1, sender, seq + 2, 12, None),
        sync_wire.TableRequest(1, sender, seq + 3, 13, (int(t.HA),)),
        sync_wire.TableSync(1, sender, seq + 4, 14, 0, 2, False, (peer,), _records()),
        sync_wire.TableSync(1, sender, seq + 5, 14, 0, 0, True, (), ()),
        sync_wire.TableSyncAck(1, sender, seq + 6, 14, 0, 2),
        sync_wire.Digest(1, sender, seq + 7, 15, True, tuple(range(128))),
        sync_wire.RevocationState(1, sender, seq + 8, 16, False, _revocation_entries()),
        sync_wire.RevocationState(1, sender, seq + 9, 17, True, ()),
        sync_wire.RevocationStateAck(1, sender, seq + 10, 16),
    ]


def _revocation_entries() -> tuple[sync_wire.RevocationEntry, ...]:
    """RFC 3543 revocation state (types 70, 71): a negotiated and a pending binding end."""
    fa, since = int(COA), 1_700_000_000
    states = (sync_wire.EntryState.NEGOTIATED, sync_wire.EntryState.PENDING)
    return tuple(
        sync_wire.RevocationEntry(
            int(HOME) + i, int(COA), fa, 434, st, True, 5 + i, since, since + i, 0, 256, i, i
        )
        for i, st in enumerate(states)
    )


def _unsigned(msg: sync_wire.SyncMessage) -> bytes:
    signed = sync_wire.encode(msg, t.GROUP_AUTH)
    return signed[: -sync_wire.auth_trailer_len(t.GROUP_AUTH)]


def sync_seeds() -> list[bytes]:
    out = []
    for msg in sync_messages():
        out.append(b"\x01" + _unsigned(msg))  # the harness signs it
        out.append(b"\x00" + sync_wire.encode(msg, t.GROUP_AUTH))  # already signed
    return out


def vrrp_seeds() -> list[bytes]:
    adv = vrrp_wire.Advertisement(51, 100, 100, (IPv4Address("10.1.0.254"),))
    two = vrrp_wire.Advertisement(7, 255, 4095, (IPv4Address("10.1.0.254"), t.HA))
    return [
        b"\x00" + vrrp_wire.encode(adv, t.VRRP_SRC),
        b"\x01" + vrrp_wire.encode(two, t.VRRP_SRC),
        b"\x02" + vrrp_wire.encode(adv, t.VRRP_SRC, v2_checksum=True),
    ]


CONFIG = """\
[homeagent]
address = "10.1.0.1"
listen = "127.0.0.1"
port = 4434
max_lifetime = 1800
replay = "nonce"
replay_window = 7.0
max_bindings = 1000
max_simultaneous = 3

[[security_association]]
spi = 256
algorithm = "hmac-md5"
key = "00112233445566778899aabbccddeeff"
home_addresses = ["10.1.0.0/24"]

[[security_association]]
spi = 257
algorithm = "prefix-suffix-md5"
key = "0011"
home_addresses = ["10.2.0.0/16", "10.3.0.0/16"]

[control]
listen = "127.0.0.1:8434"
token = "secret"

[redundancy]
node_id = "192.0.2.1"
spi = 4096
key = "aabbccdd"
peers = ["192.0.2.2", "192.0.2.3:4435"]
group = "239.1.2.3"
interface = "eth0"
mode = "semisync"
max_queue = 1000

[vrrp]
driver = "native"
interface = "eth0"
vrid = 51
priority = 150
virtual_address = "10.1.0.254/24"
"""


def config_seeds() -> list[bytes]:
    minimal = CONFIG.split("[control]")[0]
    static = minimal + '[vrrp]\ndriver = "static"\nrole = "standby"\n'
    return [CONFIG.encode(), minimal.encode(), static.encode()]


def homeagent_seeds() -> list[bytes]:
    out = []
    for mode in (0x0F, 0x2F, 0x1F, 0x4F, 0x01):
        out.append(bytes([mode]) + _request(0, 300))
        out.append(bytes([mode]) + _request(0x80, 0))
        out.append(bytes([mode]) + _request(0, 0, 0, reg.NaiExtension(b"mn@example.net")))
    out.append(b"\x0f" + reg.encode(reg.RegistrationRequest(reg.Flags(0), 5, HOME, t.HA, HOME, 0)))
    return out


def syncengine_seeds() -> list[bytes]:
    out = []
    for msg in sync_messages():
        out.append(b"\x0f" + _unsigned(msg))
        out.append(b"\x1f" + _unsigned(msg))
    return out


SEEDS = {
    "registration": registration_seeds,
    "sync": sync_seeds,
    "vrrp": vrrp_seeds,
    "config": config_seeds,
    "homeagent": homeagent_seeds,
    "syncengine": syncengine_seeds,
}
