"""contrib/wireshark/mobileip-sync.lua on a capture of REAL sync traffic between two daemons.

Two members on 127.0.0.x; dumpcap on ``lo`` with a filter on their sync ports; member A boots
alone, takes registrations (one with two simultaneous bindings, one deregistered: a tombstone),
then member B boots and downloads the table (Table Request, Table Sync with the peer list and the
records, Table Sync Ack), A sends a Binding Update that B acks, and both send Digests. Every
frame is decoded with our own codec (``mobileip.wire.sync.decode`` with the group key) and every
field tshark reports through the Lua dissector must carry the same value, in the same order.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from contextlib import ExitStack
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from helpers import start_homeagent
from test_redundancy_loopback import SYNC_KEY, SYNC_SPI, member_configs, wait_until

from mobileip.wire import sync as wire

ROOT = Path(__file__).resolve().parent.parent
LUA = ROOT / "contrib" / "wireshark" / "mobileip-sync.lua"

FIELDS = [
    "udp.payload",
    "mipsync.type",
    "mipsync.version",
    "mipsync.code",
    "mipsync.flags",
    "mipsync.flags.final",
    "mipsync.flags.peers",
    "mipsync.flags.synced",
    "mipsync.flags.all",
    "mipsync.group",
    "mipsync.count",
    "mipsync.sender",
    "mipsync.sequence",
    "mipsync.sequence.epoch",
    "mipsync.sequence.counter",
    "mipsync.identification",
    "mipsync.record.home_address",
    "mipsync.record.home_agent",
    "mipsync.record.version",
    "mipsync.record.version.counter",
    "mipsync.record.version.origin",
    "mipsync.record.last_id",
    "mipsync.record.state",
    "mipsync.record.tombstone",
    "mipsync.record.nbind",
    "mipsync.record.reserved",
    "mipsync.record.tombstone_age",
    "mipsync.binding.care_of_address",
    "mipsync.binding.granted_lifetime",
    "mipsync.binding.flags",
    "mipsync.binding.reserved",
    "mipsync.binding.remaining_ms",
    "mipsync.ack.home_address",
    "mipsync.request.home_agent",
    "mipsync.more_bind",
    "mipsync.npeers",
    "mipsync.peers_reserved",
    "mipsync.peer.node_id",
    "mipsync.peer.address",
    "mipsync.peer.port",
    "mipsync.peer.flags",
    "mipsync.peer.synced",
    "mipsync.digest.bucket",
    "mipsync.auth.type",
    "mipsync.auth.length",
    "mipsync.auth.spi",
    "mipsync.auth.authenticator",
    "_ws.expert",
    "_ws.malformed",
]


def ip(n: int) -> str:
    return str(IPv4Address(n))


def hx(n: int, size: int) -> str:
    return f"0x{n:0{2 * size}x}"


def bit(flag: bool) -> str:
    return "1" if flag else "0"


def expected_fields(payload: bytes, msg: wire.SyncMessage) -> dict[str, list[str]]:
    """What the dissector must show for ``msg``, from our decoder's view of it."""
    out: dict[str, list[str]] = {name: [] for name in FIELDS}

    def put(name: str, *values: str) -> None:
        out[name].extend(values)

    mtype = wire._TYPE_OF[type(msg)]
    flags = 0
    code = 0
    count = 0
    records: tuple[wire.RecordState, ...] = ()
    if isinstance(msg, wire.BindingUpdate):
        records, count = msg.records, len(msg.records)
    elif isinstance(msg, wire.BindingUpdateAck):
        code, count = msg.code, len(msg.homes)
        put("mipsync.ack.home_address", *map(ip, msg.homes))
    elif isinstance(msg, wire.TableRequest):
        if msg.home_agents is None:
            flags, count = int(wire.HeaderFlag.ALL), wire.ALL_HOME_AGENTS
        else:
            count = len(msg.home_agents)
            put("mipsync.request.home_agent", *map(ip, msg.home_agents))
    elif isinstance(msg, wire.TableSync):
        code, count, records = msg.code, len(msg.records), msg.records
        flags = (int(wire.HeaderFlag.FINAL) if msg.final else 0) | (
            int(wire.HeaderFlag.PEERS) if msg.peers else 0
        )
        put("mipsync.more_bind", str(msg.more_bind))
        if msg.peers:
            put("mipsync.npeers", str(len(msg.peers)))
            put("mipsync.peers_reserved", hx(0, 2))
        for p in msg.peers:
            put("mipsync.peer.node_id", ip(p.node_id))
            put("mipsync.peer.address", ip(p.address))
            put("mipsync.peer.port", str(p.port))
            put("mipsync.peer.flags", hx(p.flags, 2))
            put("mipsync.peer.synced", bit(bool(p.flags & wire.PEER_FLAG_SYNCED)))
    elif isinstance(msg, wire.TableSyncAck):
        code = msg.code
        put("mipsync.more_bind", str(msg.more_bind))
    elif isinstance(msg, wire.Digest):
        flags = int(wire.HeaderFlag.SYNCED) if msg.synced else 0
        count = len(msg.buckets)
        put("mipsync.digest.bucket", *(hx(b, 8) for b in msg.buckets))

    put("mipsync.type", str(int(mtype)))
    put("mipsync.version", str(wire.SYNC_VERSION))
    put("mipsync.code", str(code))
    put("mipsync.flags", hx(flags, 1))
    for name, flag in (
        ("final", wire.HeaderFlag.FINAL),
        ("peers", wire.HeaderFlag.PEERS),
        ("synced", wire.HeaderFlag.SYNCED),
        ("all", wire.HeaderFlag.ALL),
    ):
        put(f"mipsync.flags.{name}", bit(bool(flags & flag)))
    put("mipsync.group", str(msg.group))
    put("mipsync.count", str(count))
    put("mipsync.sender", ip(msg.sender))
    put("mipsync.sequence", str(msg.sequence))
    put("mipsync.sequence.epoch", str(msg.sequence >> 32))
    put("mipsync.sequence.counter", str(msg.sequence & 0xFFFFFFFF))
    put("mipsync.identification", str(msg.identification))
    for rec in records:
        put("mipsync.record.home_address", ip(rec.home_address))
        put("mipsync.record.home_agent", ip(rec.home_agent))
        put("mipsync.record.version", str(rec.version))
        put("mipsync.record.version.counter", str(rec.version >> 32))
        put("mipsync.record.version.origin", ip(rec.version & 0xFFFFFFFF))
        put("mipsync.record.last_id", str(rec.last_id))
        put("mipsync.record.state", hx(1 if rec.is_tombstone else 0, 1))
        put("mipsync.record.tombstone", bit(rec.is_tombstone))
        put("mipsync.record.nbind", str(len(rec.bindings)))
        put("mipsync.record.reserved", hx(0, 2))
        put("mipsync.record.tombstone_age", str(rec.tombstone_age_ms))
        for b in rec.bindings:
            put("mipsync.binding.care_of_address", ip(b.care_of_address))
            put("mipsync.binding.granted_lifetime", str(b.granted_lifetime))
            put("mipsync.binding.flags", hx(b.flags, 1))
            put("mipsync.binding.reserved", hx(0, 1))
            put("mipsync.binding.remaining_ms", str(b.remaining_ms))
    alen = 32  # hmac-sha256, the group's algorithm here
    put("mipsync.auth.type", str(wire.EXT_HA_HA_AUTH))
    put("mipsync.auth.length", str(4 + alen))
    put("mipsync.auth.spi", str(SYNC_SPI))
    put("mipsync.auth.authenticator", payload[-alen:].hex())
    put("udp.payload", payload.hex())
    return out


def capture(path: Path, ports: list[int]) -> subprocess.Popen[bytes]:
    filt = " or ".join(f"udp port {p}" for p in ports)
    proc = subprocess.Popen(
        ["dumpcap", "-i", "lo", "-f", filt, "-w", str(path), "-P"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None
    deadline = time.monotonic() + 15
    seen = b""
    while time.monotonic() < deadline:  # dumpcap says "File: ..." once it captures
        line = proc.stderr.readline()
        seen += line
        if line.startswith(b"File:") or not line:
            break
    if proc.poll() is not None:
        raise AssertionError(f"dumpcap failed: {seen.decode(errors='replace')}")
    return proc


@pytest.mark.root
def test_lua_dissector_matches_our_decoder_on_real_sync_traffic(tmp_path: Path) -> None:
    if shutil.which("tshark") is None or shutil.which("dumpcap") is None:
        pytest.fail("tshark/dumpcap missing: scripts/test installs tshark when root")
    configs = member_configs(2, digest_interval=0.5)
    ports = [int(c["redundancy"]["port"]) for c in configs]
    pcap = tmp_path / "sync.pcap"
    with ExitStack() as stack:
        cap = capture(pcap, ports)
        stack.callback(lambda: cap.poll() is None and (cap.kill(), cap.wait()))
        a = start_homeagent(tmp_path / "a", configs[0], name="a")
        stack.callback(a.stop, signal.SIGKILL)
        wait_until("a SYNCED", lambda: a.get("/api/v1/redundancy")["state"] == "SYNCED")
        assert a.client(home="10.1.7.1").register(600).code == 0
        s_flag = 0x80
        assert a.client(home="10.1.7.2").register(600, flags=s_flag).code == 0
        assert a.client(home="10.1.7.2", coa="192.0.2.99").register(600, flags=s_flag).code == 0
        gone = a.client(home="10.1.7.3")
        assert gone.register(600).code == 0
        assert gone.deregister(all_bindings=True).code == 0

        b = start_homeagent(tmp_path / "b", configs[1], name="b")
        stack.callback(b.stop, signal.SIGKILL)
        wait_until("b SYNCED", lambda: b.get("/api/v1/redundancy")["state"] == "SYNCED")
        assert a.client(home="10.1.7.4").register(600).code == 0
        wait_until("b to hold 4 bindings", lambda: len(b.bindings()) == 4)
        time.sleep(1.2)  # digests both ways
        b.stop()
        a.stop()
        time.sleep(0.3)
        cap.send_signal(signal.SIGINT)
        cap.wait(10)

    result = subprocess.run(
        [
            "tshark",
            "-r",
            str(pcap),
            "-X",
            f"lua_script:{LUA}",
            "-Y",
            "udp && !icmp",
            "-T",
            "fields",
            "-E",
            "occurrence=a",
            "-E",
            "aggregator=|",
            "-E",
            "separator=\t",
            *(arg for name in FIELDS for arg in ("-e", name)),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    auth = wire.GroupAuth(
        [wire.GroupKey(SYNC_SPI, "hmac-sha256", bytes.fromhex(SYNC_KEY))], SYNC_SPI
    )
    lines = [x for x in result.stdout.splitlines() if x.strip()]
    seen_types: set[int] = set()
    seen: dict[str, int] = {}
    for line in lines:
        values = line.split("\t")
        got = {name: (v.split("|") if v else []) for name, v in zip(FIELDS, values, strict=True)}
        payload = bytes.fromhex(got["udp.payload"][0])
        msg = wire.decode(payload, auth)
        want = expected_fields(payload, msg)
        for name in FIELDS:
            assert got[name] == want[name], (name, type(msg).__name__, got[name], want[name])
        seen_types.add(int(wire._TYPE_OF[type(msg)]))
        for name in FIELDS:
            seen[name] = seen.get(name, 0) + len(got[name])
    print(f"{len(lines)} sync datagrams dissected; types {sorted(seen_types)}")
    assert seen_types == {64, 65, 66, 67, 68, 69}
    # the capture exercised records, bindings (two on one record), tombstones, peers, digests
    for name in (
        "mipsync.record.home_address",
        "mipsync.binding.care_of_address",
        "mipsync.peer.node_id",
        "mipsync.ack.home_address",
        "mipsync.digest.bucket",
        "mipsync.auth.authenticator",
    ):
        assert seen[name] > 0, name
    tomb = subprocess.run(
        ["tshark", "-r", str(pcap), "-X", f"lua_script:{LUA}", "-Y", "mipsync.record.tombstone"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "TABLE_SYNC" in tomb.stdout  # the deregistered MN travels as a tombstone


@pytest.mark.skipif(shutil.which("tshark") is None, reason="needs tshark")
def test_lua_dissector_flags_a_truncated_message_and_hands_registrations_to_mip(
    tmp_path: Path,
) -> None:
    """Port 434: a sync message goes to our dissector, a registration to Wireshark's MIP one;
    a body shorter than its count is flagged as malformed."""
    from pcapio import write_pcap

    auth = wire.GroupAuth([wire.GroupKey(SYNC_SPI, "hmac-md5", b"k" * 16)], SYNC_SPI)
    ack = wire.BindingUpdateAck(1, int(IPv4Address("127.0.0.1")), 5, 9, 0, (0x0A010101,))
    good = wire.encode(ack, auth)
    short = bytearray(good)
    short[7] = 3  # Count says 3 home addresses, one is there
    registration = bytes([1, 0, 0, 60]) + bytes(20)
    path = tmp_path / "x.pcap"
    write_pcap(path, [_udp(good), _udp(bytes(short)), _udp(registration)])
    out = subprocess.run(
        [
            "tshark",
            "-r",
            str(path),
            "-X",
            f"lua_script:{LUA}",
            "-T",
            "fields",
            "-E",
            "occurrence=a",
            "-E",
            "aggregator=|",
            "-e",
            "frame.protocols",
            "-e",
            "mipsync.ack.home_address",
            "-e",
            "mipsync.auth.length",
            "-e",
            "_ws.expert.message",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    rows = [line.split("\t") for line in out.stdout.splitlines()]
    assert rows[0][0].endswith("udp:mipsync")
    assert rows[0][1:] == ["10.1.1.1", "20", ""]
    assert "body shorter than its counts announce" in rows[1][3]
    assert rows[2][0].endswith(":mip")  # handed to Wireshark's Mobile IP dissector


def _udp(payload: bytes) -> bytes:
    """An IPv4/UDP packet 127.0.0.1:434 -> 127.0.0.2:434 around ``payload``."""
    import struct

    udp = struct.pack("!HHHH", 434, 434, 8 + len(payload), 0) + payload
    total = 20 + len(udp)
    hdr = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        total,
        0,
        0,
        64,
        17,
        0,
        bytes([127, 0, 0, 1]),
        bytes([127, 0, 0, 2]),
    )
    return hdr + udp
