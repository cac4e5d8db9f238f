"""HA-HA sync messages: the redundancy group's wire codec (patent FIG 10 to FIG 14, plus a digest).

Pure codec: frozen dataclasses in, bytes out, and back. Every message is

    common header (28 bytes) | type-specific body | HA-HA authentication extension (always last)

and ``encode(decode(b, auth), auth) == b`` for every ``b`` that decodes. The byte layouts, with
diagrams, are in ``docs/sync-protocol.md``.

:func:`decode` checks, in this order: the header is complete, the version, the type, then the
authentication extension (found from the end of the datagram, whose length is fixed by the
algorithm) and its authenticator, and only then parses the body. Nothing is parsed from an
unauthenticated body. Every failure is a :class:`SyncDecodeError` whose ``reason`` is a stable
token suitable for a counter label; ``code`` is ``None`` because a bad sync message is dropped
and counted, never answered.

Replay protection (the ``sequence`` field) is not checked here: see
:mod:`mobileip.sync.replay`.
"""

from __future__ import annotations

import enum
import hmac
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

from mobileip.wire.errors import DecodeError
from mobileip.wire.mac import Hmac

SYNC_VERSION = 1
INFINITE_MS = 0xFFFFFFFF
INFINITE_LIFETIME = 0xFFFF
EXT_HA_HA_AUTH = 40
MAX_PAYLOAD = 1400  # default datagram budget in bytes of UDP payload (docs: "Datagram budget")
MAX_DATAGRAM = 65507  # largest UDP payload over IPv4
ALL_HOME_AGENTS = 0xFFFF  # NumHA value meaning "every home agent"


class MsgType(enum.IntEnum):
    BINDING_UPDATE = 64  # FIG 10
    BINDING_UPDATE_ACK = 65  # FIG 11
    TABLE_REQUEST = 66  # FIG 12
    TABLE_SYNC = 67  # FIG 13
    TABLE_SYNC_ACK = 68  # FIG 14
    DIGEST = 69  # anti-entropy, beyond the patent


class SyncCode(enum.IntEnum):
    ACCEPTED = 0
    UNSPECIFIED = 128
    ADMIN_PROHIBITED = 129  # includes failed authentication (patent FIG 11, FIG 14)
    INSUFFICIENT_RESOURCES = 130
    NOT_SYNCED = 131  # the answering member's table is not initialised (patent FIG 5 block 508)


class HeaderFlag(enum.IntFlag):
    FINAL = 0x01  # TableSync: last chunk of a download
    PEERS = 0x02  # TableSync: a peer list follows MoreBind
    SYNCED = 0x04  # Digest: the sender is SYNCED
    ALL = 0x08  # TableRequest: every home agent (NumHA 0xFFFF)


class RecordFlag(enum.IntFlag):
    TOMBSTONE = 0x01


PEER_FLAG_SYNCED = 0x0001
_TOMBSTONE = int(RecordFlag.TOMBSTONE)  # a plain int: IntFlag arithmetic is slow per record

_HEADER = struct.Struct("!BBBBHHIQQ")  # type version code flags group count sender seq ident
_RECORD = struct.Struct("!IIQQBBHI")  # home ha version last_id state nbind reserved tomb_age
_BINDING = struct.Struct("!IHBBI")  # coa granted flags reserved remaining_ms
# a record with exactly one binding, in one struct call (the bulk download's common case)
_RECORD_ONE = struct.Struct("!IIQQBBHIIHBBI")
_PEER = struct.Struct("!IIHH")  # node_id address port flags
_PEERS_HEAD = struct.Struct("!HH")  # npeers reserved
_U32 = struct.Struct("!I")
_U64 = struct.Struct("!Q")
_AUTH_HEAD = struct.Struct("!BBI")  # type length spi

RECORD_ONE = _RECORD_ONE  # for the bulk codec (sync/records.py)
RECORD_ONE_LEN = _RECORD_ONE.size  # 44
HEADER_LEN = _HEADER.size  # 28
RECORD_HEADER_LEN = _RECORD.size  # 32
BINDING_LEN = _BINDING.size  # 12
PEER_LEN = _PEER.size  # 12
PEERS_HEADER_LEN = _PEERS_HEAD.size  # 4
MORE_BIND_LEN = 4
AUTH_HEADER_LEN = _AUTH_HEAD.size  # 6
MAX_BINDINGS = 255

# flags each message type may carry; any other bit set is "bad-flags"
_ALLOWED_FLAGS: dict[MsgType, int] = {
    MsgType.BINDING_UPDATE: 0,
    MsgType.BINDING_UPDATE_ACK: 0,
    MsgType.TABLE_REQUEST: int(HeaderFlag.ALL),
    MsgType.TABLE_SYNC: int(HeaderFlag.FINAL | HeaderFlag.PEERS),
    MsgType.TABLE_SYNC_ACK: 0,
    MsgType.DIGEST: int(HeaderFlag.SYNCED),
}
_HAS_CODE = frozenset({MsgType.BINDING_UPDATE_ACK, MsgType.TABLE_SYNC, MsgType.TABLE_SYNC_ACK})


class SyncDecodeError(DecodeError):
    """The bytes are not a valid, authentic sync message. Dropped and counted, never answered."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason, detail, code=None)


# --- state carried by the messages ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BindingState:
    """One care-of address binding, time-independent (remaining lifetime, not an expiry time)."""

    care_of_address: int  # IPv4 as int
    granted_lifetime: int  # u16 seconds (0xffff infinite)
    flags: int  # u8, the registration request flags
    remaining_ms: int  # u32 milliseconds left (INFINITE_MS = infinite)


@dataclass(frozen=True, slots=True)
class RecordState:
    """One mobile node's record; a tombstone when ``bindings == ()``."""

    home_address: int  # u32
    home_agent: int  # u32
    version: int  # u64 (counter << 32 | origin node id)
    last_id: int  # u64 last identification answered
    tombstone_age_ms: int  # u32, ms since it became a tombstone (0 for live records)
    bindings: tuple[BindingState, ...]  # up to 255

    @property
    def is_tombstone(self) -> bool:
        return not self.bindings


@dataclass(frozen=True, slots=True)
class PeerInfo:
    node_id: int  # u32
    address: int  # u32 IPv4 unicast address of its sync endpoint
    port: int  # u16
    flags: int  # u16; bit 0 = SYNCED


# --- messages ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BindingUpdate:
    """FIG 10: records (live or tombstones) the sender wants every member to hold."""

    group: int
    sender: int
    sequence: int
    identification: int
    records: tuple[RecordState, ...]


@dataclass(frozen=True, slots=True)
class BindingUpdateAck:
    """FIG 11: the result of a BindingUpdate, echoing its identification and home addresses."""

    group: int
    sender: int
    sequence: int
    identification: int
    code: int
    homes: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class TableRequest:
    """FIG 12: ask for the bindings of some home agents (``None``: all of them)."""

    group: int
    sender: int
    sequence: int
    identification: int
    home_agents: tuple[int, ...] | None


@dataclass(frozen=True, slots=True)
class TableSync:
    """FIG 13: one chunk of a table download; the first carries the group's members."""

    group: int
    sender: int
    sequence: int
    identification: int
    code: int
    more_bind: int
    final: bool
    peers: tuple[PeerInfo, ...]
    records: tuple[RecordState, ...]


@dataclass(frozen=True, slots=True)
class TableSyncAck:
    """FIG 14: acknowledges the TableSync chunk with this identification and MoreBind."""

    group: int
    sender: int
    sequence: int
    identification: int
    code: int
    more_bind: int


@dataclass(frozen=True, slots=True)
class Digest:
    """Anti-entropy: one 64-bit hash per bucket of the sender's table."""

    group: int
    sender: int
    sequence: int
    identification: int
    synced: bool
    buckets: tuple[int, ...]


SyncMessage = BindingUpdate | BindingUpdateAck | TableRequest | TableSync | TableSyncAck | Digest


@dataclass(frozen=True, slots=True)
class TableSyncChunk:
    """A Table Sync (code ACCEPTED, no peer list, at least one record) whose records all have
    exactly one binding, left in wire form: ``body`` is ``count`` records of ``RECORD_ONE_LEN``
    bytes (``RECORD_ONE`` layout), already checked as :func:`decode` checks them.

    Only :func:`decode_chunked` returns it: the bulk download applies such chunks without
    building a :class:`RecordState` per record. :meth:`as_table_sync` gives what :func:`decode`
    returns for the same bytes.
    """

    group: int
    sender: int
    sequence: int
    identification: int
    more_bind: int
    final: bool
    count: int
    body: bytes

    @property
    def code(self) -> int:
        return SyncCode.ACCEPTED

    def as_table_sync(self) -> TableSync:
        records = tuple(
            [
                RecordState(home, ha, version, last_id, 0, (BindingState(coa, g, f, rem),))
                for home, ha, version, last_id, _s, _n, _r, _a, coa, g, f, _b, rem in (
                    _RECORD_ONE.iter_unpack(self.body)
                )
            ]
        )
        return TableSync(
            self.group,
            self.sender,
            self.sequence,
            self.identification,
            SyncCode.ACCEPTED,
            self.more_bind,
            self.final,
            (),
            records,
        )


_HOME_OF_ONE = struct.Struct("!I40x")  # the home address of a RECORD_ONE record


@dataclass(frozen=True, slots=True)
class BindingUpdateChunk:
    """A Binding Update whose records all have exactly one binding (registrations: the common
    case), left in wire form: ``body`` is ``count`` records in the ``RECORD_ONE`` layout, already
    checked as :func:`decode` checks them. Only :func:`decode_chunked` returns it, so a member
    merges Binding Updates without a :class:`RecordState` per record; :meth:`as_binding_update`
    gives what :func:`decode` returns for the same bytes."""

    group: int
    sender: int
    sequence: int
    identification: int
    count: int
    body: bytes

    @property
    def homes(self) -> tuple[int, ...]:
        return tuple([h for (h,) in _HOME_OF_ONE.iter_unpack(self.body)])

    def as_binding_update(self) -> BindingUpdate:
        records = tuple(
            [
                RecordState(home, ha, version, last_id, 0, (BindingState(coa, g, f, rem),))
                for home, ha, version, last_id, _s, _n, _r, _a, coa, g, f, _b, rem in (
                    _RECORD_ONE.iter_unpack(self.body)
                )
            ]
        )
        return BindingUpdate(self.group, self.sender, self.sequence, self.identification, records)


_TYPE_OF: dict[type, MsgType] = {
    BindingUpdate: MsgType.BINDING_UPDATE,
    BindingUpdateAck: MsgType.BINDING_UPDATE_ACK,
    TableRequest: MsgType.TABLE_REQUEST,
    TableSync: MsgType.TABLE_SYNC,
    TableSyncAck: MsgType.TABLE_SYNC_ACK,
    Digest: MsgType.DIGEST,
}


# --- authentication ---------------------------------------------------------------------------

ALGORITHMS = ("hmac-sha256", "hmac-md5")
_DIGEST_NAME = {"hmac-sha256": "sha256", "hmac-md5": "md5"}
AUTHENTICATOR_LEN = {"hmac-sha256": 32, "hmac-md5": 16}
# authenticator lengths looked for at the end of a datagram, longest first (every algorithm's,
# so a trailer made with a key we do not hold is reported as "bad-spi", not "missing-auth")
_TRAILER_LENGTHS = tuple(sorted(set(AUTHENTICATOR_LEN.values()), reverse=True))


@dataclass(frozen=True, slots=True)
class GroupKey:
    """A group key, selected by SPI. SPIs 0-255 are reserved (RFC 5944 3.5)."""

    spi: int
    algorithm: str
    key: bytes
    # the key schedule, done once (hmac.digest fetches the hash by name at every call: 3 us)
    _mac: Hmac = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 256 <= self.spi <= 0xFFFFFFFF:
            raise ValueError(f"SPI {self.spi} out of range 256..4294967295 (0-255 are reserved)")
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"unknown algorithm {self.algorithm!r}; expected one of {ALGORITHMS}")
        if not self.key:
            raise ValueError(f"empty key for SPI {self.spi}")
        object.__setattr__(self, "_mac", Hmac(self.key, _DIGEST_NAME[self.algorithm]))

    @property
    def authenticator_len(self) -> int:
        return AUTHENTICATOR_LEN[self.algorithm]

    def authenticator(self, protected: bytes) -> bytes:
        return self._mac.digest(protected)

    def __repr__(self) -> str:  # never print the key
        return (
            f"GroupKey(spi={self.spi}, algorithm={self.algorithm!r}, key=<{len(self.key)} bytes>)"
        )


class GroupAuth:
    """The group's keys: every key is accepted on receipt (key rollover), ``send_spi`` signs."""

    def __init__(self, keys: Sequence[GroupKey], send_spi: int) -> None:
        self._by_spi: dict[int, GroupKey] = {}
        for k in keys:
            if k.spi in self._by_spi:
                raise ValueError(f"duplicate SPI {k.spi}")
            self._by_spi[k.spi] = k
        if send_spi not in self._by_spi:
            raise ValueError(f"send SPI {send_spi} is not among the keys")
        self.send_key = self._by_spi[send_spi]

    @property
    def send_spi(self) -> int:
        return self.send_key.spi

    @property
    def spis(self) -> tuple[int, ...]:
        return tuple(self._by_spi)

    def get(self, spi: int) -> GroupKey | None:
        return self._by_spi.get(spi)

    def sign(self, body: bytes) -> bytes:
        """Return ``body`` followed by the HA-HA authentication extension."""
        k = self.send_key
        head = _AUTH_HEAD.pack(EXT_HA_HA_AUTH, 4 + k.authenticator_len, k.spi)
        return body + head + k.authenticator(body + head)

    def verify(self, data: bytes) -> int:
        """Check the trailing authentication extension; return where it starts (= body end)."""
        shaped = False
        for alen in _TRAILER_LENGTHS:
            start = len(data) - AUTH_HEADER_LEN - alen
            if start < HEADER_LEN:
                continue
            etype, elen, spi = _AUTH_HEAD.unpack_from(data, start)
            if etype != EXT_HA_HA_AUTH or elen != 4 + alen:
                continue
            shaped = True
            key = self._by_spi.get(spi)
            if key is None or key.authenticator_len != alen:
                continue
            protected = data[: start + AUTH_HEADER_LEN]
            if not hmac.compare_digest(key.authenticator(protected), data[-alen:]):
                raise SyncDecodeError("bad-authenticator", f"SPI {spi}")
            return start
        if shaped:
            raise SyncDecodeError("bad-spi", "no key with the extension's SPI and length")
        raise SyncDecodeError("missing-auth", "no HA-HA authentication extension at the end")


def auth_trailer_len(auth: GroupAuth) -> int:
    """Bytes the authentication extension adds to every message this member sends."""
    return AUTH_HEADER_LEN + auth.send_key.authenticator_len


# --- sizes ------------------------------------------------------------------------------------


def record_size(rec: RecordState) -> int:
    """Bytes ``rec`` takes on the wire."""
    return RECORD_HEADER_LEN + BINDING_LEN * len(rec.bindings)


def body_size(msg: SyncMessage) -> int:
    """Bytes of ``msg``'s type-specific body (between the header and the auth extension)."""
    if isinstance(msg, BindingUpdate):
        return sum(record_size(r) for r in msg.records)
    if isinstance(msg, BindingUpdateAck):
        return 4 * len(msg.homes)
    if isinstance(msg, TableRequest):
        return 0 if msg.home_agents is None else 4 * len(msg.home_agents)
    if isinstance(msg, TableSync):
        peers = PEERS_HEADER_LEN + PEER_LEN * len(msg.peers) if msg.peers else 0
        return MORE_BIND_LEN + peers + sum(record_size(r) for r in msg.records)
    if isinstance(msg, TableSyncAck):
        return MORE_BIND_LEN
    return 8 * len(msg.buckets)


def message_size(msg: SyncMessage, auth: GroupAuth) -> int:
    """Length of ``encode(msg, auth)``, without encoding it."""
    return HEADER_LEN + body_size(msg) + auth_trailer_len(auth)


# --- encoding ---------------------------------------------------------------------------------


def _check(name: str, value: int, bits: int) -> None:
    if not 0 <= value < (1 << bits):
        raise ValueError(f"{name} {value} does not fit in {bits} bits")


def _check_count(name: str, n: int, limit: int = 0xFFFF) -> None:
    if n > limit:
        raise ValueError(f"too many {name}: {n} > {limit}")


def _encode_record(rec: RecordState, out: list[bytes]) -> None:
    bindings = rec.bindings
    if bindings and rec.tombstone_age_ms:
        _check_record(rec)  # raises the precise error
    if len(bindings) > MAX_BINDINGS:
        _check_record(rec)
    try:
        # struct refuses every out-of-range field: the checks only run to name the culprit
        out.append(
            _RECORD.pack(
                rec.home_address,
                rec.home_agent,
                rec.version,
                rec.last_id,
                0 if bindings else _TOMBSTONE,
                len(bindings),
                0,
                rec.tombstone_age_ms,
            )
        )
        for b in bindings:
            out.append(
                _BINDING.pack(b.care_of_address, b.granted_lifetime, b.flags, 0, b.remaining_ms)
            )
    except struct.error:
        _check_record(rec)
        raise  # pragma: no cover - _check_record raised already


def encode_record_one(
    home: int,
    home_agent: int,
    version: int,
    last_id: int,
    care_of_address: int,
    granted_lifetime: int,
    flags: int,
    remaining_ms: int,
) -> bytes:
    """The wire form of a live record with one binding: the same bytes as encoding
    ``RecordState(home, home_agent, version, last_id, 0, (BindingState(...),))``."""
    try:
        return _RECORD_ONE.pack(
            home,
            home_agent,
            version,
            last_id,
            0,
            1,
            0,
            0,
            care_of_address,
            granted_lifetime,
            flags,
            0,
            remaining_ms,
        )
    except struct.error:
        binding = BindingState(care_of_address, granted_lifetime, flags, remaining_ms)
        _check_record(RecordState(home, home_agent, version, last_id, 0, (binding,)))
        raise  # pragma: no cover - _check_record raised already


def encode_record(rec: RecordState) -> bytes:
    """The wire form of one record (as it appears in a Binding Update or Table Sync body)."""
    out: list[bytes] = []
    _encode_record(rec, out)
    return b"".join(out)


def _check_record(rec: RecordState) -> None:
    _check("home_address", rec.home_address, 32)
    _check("home_agent", rec.home_agent, 32)
    _check("version", rec.version, 64)
    _check("last_id", rec.last_id, 64)
    _check("tombstone_age_ms", rec.tombstone_age_ms, 32)
    _check_count("bindings in a record", len(rec.bindings), MAX_BINDINGS)
    if rec.bindings and rec.tombstone_age_ms:
        raise ValueError("a live record (with bindings) must have tombstone_age_ms 0")
    for b in rec.bindings:
        _check("care_of_address", b.care_of_address, 32)
        _check("granted_lifetime", b.granted_lifetime, 16)
        _check("binding flags", b.flags, 8)
        _check("remaining_ms", b.remaining_ms, 32)


def _encode_addresses(name: str, addrs: tuple[int, ...], out: list[bytes]) -> None:
    for a in addrs:
        _check(name, a, 32)
        out.append(_U32.pack(a))


def encode(msg: SyncMessage, auth: GroupAuth) -> bytes:
    """Encode ``msg`` and append the HA-HA authentication extension (``auth.send_spi``).

    Raises ``ValueError`` when a field does not fit its wire size.
    """
    _check("group", msg.group, 16)
    _check("sender", msg.sender, 32)
    _check("sequence", msg.sequence, 64)
    _check("identification", msg.identification, 64)
    mtype = _TYPE_OF[type(msg)]
    code = 0
    flags = 0
    count = 0
    body: list[bytes] = []
    if isinstance(msg, BindingUpdate):
        count = len(msg.records)
        for r in msg.records:
            _encode_record(r, body)
    elif isinstance(msg, BindingUpdateAck):
        code, count = msg.code, len(msg.homes)
        _encode_addresses("home address", msg.homes, body)
    elif isinstance(msg, TableRequest):
        if msg.home_agents is None:
            count, flags = ALL_HOME_AGENTS, int(HeaderFlag.ALL)
        else:
            count = len(msg.home_agents)
            _check_count("home agents", count, ALL_HOME_AGENTS - 1)
            _encode_addresses("home agent address", msg.home_agents, body)
    elif isinstance(msg, TableSync):
        code, count = msg.code, len(msg.records)
        _check("more_bind", msg.more_bind, 32)
        body.append(_U32.pack(msg.more_bind))
        if msg.final:
            flags |= int(HeaderFlag.FINAL)
        if msg.peers:
            flags |= int(HeaderFlag.PEERS)
            _check_count("peers", len(msg.peers))
            body.append(_PEERS_HEAD.pack(len(msg.peers), 0))
            for p in msg.peers:
                _check("peer node_id", p.node_id, 32)
                _check("peer address", p.address, 32)
                _check("peer port", p.port, 16)
                _check("peer flags", p.flags, 16)
                body.append(_PEER.pack(p.node_id, p.address, p.port, p.flags))
        for r in msg.records:
            _encode_record(r, body)
    elif isinstance(msg, TableSyncAck):
        code, count = msg.code, 0
        _check("more_bind", msg.more_bind, 32)
        body.append(_U32.pack(msg.more_bind))
    else:
        count = len(msg.buckets)
        flags = int(HeaderFlag.SYNCED) if msg.synced else 0
        for h in msg.buckets:
            _check("bucket hash", h, 64)
            body.append(_U64.pack(h))
    _check("code", code, 8)
    _check_count(f"items in a {mtype.name} message", count)
    head = _HEADER.pack(
        mtype,
        SYNC_VERSION,
        code,
        flags,
        msg.group,
        count,
        msg.sender,
        msg.sequence,
        msg.identification,
    )
    data = auth.sign(head + b"".join(body))
    if len(data) > MAX_DATAGRAM:
        raise ValueError(f"message of {len(data)} bytes exceeds a UDP datagram ({MAX_DATAGRAM})")
    return data


def encode_table_sync_records(
    group: int,
    sender: int,
    sequence: int,
    identification: int,
    more_bind: int,
    final: bool,
    count: int,
    body: bytes,
    auth: GroupAuth,
) -> bytes:
    """A Table Sync chunk (code ACCEPTED, no peer list) whose ``count`` records are already
    encoded in ``body`` (:func:`encode_record_one`, :func:`encode_record`): the same bytes as
    :func:`encode` of the :class:`TableSync` with those records."""
    _check("group", group, 16)
    _check("sender", sender, 32)
    _check("sequence", sequence, 64)
    _check("identification", identification, 64)
    _check("more_bind", more_bind, 32)
    _check_count("items in a TABLE_SYNC message", count)
    head = _HEADER.pack(
        MsgType.TABLE_SYNC,
        SYNC_VERSION,
        SyncCode.ACCEPTED,
        int(HeaderFlag.FINAL) if final else 0,
        group,
        count,
        sender,
        sequence,
        identification,
    )
    data = auth.sign(head + _U32.pack(more_bind) + body)
    if len(data) > MAX_DATAGRAM:
        raise ValueError(f"message of {len(data)} bytes exceeds a UDP datagram ({MAX_DATAGRAM})")
    return data


def encode_binding_update_records(
    group: int,
    sender: int,
    sequence: int,
    identification: int,
    count: int,
    body: bytes,
    auth: GroupAuth,
) -> bytes:
    """A Binding Update whose ``count`` records are already encoded in ``body``
    (:func:`encode_record_one`, :func:`encode_record`): the same bytes as :func:`encode` of the
    :class:`BindingUpdate` with those records."""
    _check("group", group, 16)
    _check("sender", sender, 32)
    _check("sequence", sequence, 64)
    _check("identification", identification, 64)
    _check_count("items in a BINDING_UPDATE message", count)
    head = _HEADER.pack(
        MsgType.BINDING_UPDATE, SYNC_VERSION, 0, 0, group, count, sender, sequence, identification
    )
    data = auth.sign(head + body)
    if len(data) > MAX_DATAGRAM:
        raise ValueError(f"message of {len(data)} bytes exceeds a UDP datagram ({MAX_DATAGRAM})")
    return data


def encode_binding_update_ack(
    group: int,
    sender: int,
    sequence: int,
    identification: int,
    code: int,
    homes: Sequence[int],
    auth: GroupAuth,
) -> bytes:
    """The same bytes as :func:`encode` of ``BindingUpdateAck(group, sender, sequence,
    identification, code, tuple(homes))``, in two ``struct`` calls."""
    try:
        head = _HEADER.pack(
            MsgType.BINDING_UPDATE_ACK,
            SYNC_VERSION,
            code,
            0,
            group,
            len(homes),
            sender,
            sequence,
            identification,
        )
        body = struct.pack(f"!{len(homes)}I", *homes)
    except struct.error:
        msg = BindingUpdateAck(group, sender, sequence, identification, code, tuple(homes))
        return encode(msg, auth)  # raises the precise ValueError
    data = auth.sign(head + body)
    if len(data) > MAX_DATAGRAM:
        raise ValueError(f"message of {len(data)} bytes exceeds a UDP datagram ({MAX_DATAGRAM})")
    return data


# --- decoding ---------------------------------------------------------------------------------


class _Reader:
    """Reads the body ``data[pos:end]``; running short is "bad-length"."""

    __slots__ = ("data", "end", "pos")

    def __init__(self, data: bytes, pos: int, end: int) -> None:
        self.data, self.pos, self.end = data, pos, end

    def take(self, st: struct.Struct, what: str) -> tuple[int, ...]:
        if self.pos + st.size > self.end:
            raise SyncDecodeError("bad-length", f"body ends inside {what} at offset {self.pos}")
        values = st.unpack_from(self.data, self.pos)
        self.pos += st.size
        return values

    def need(self, n: int, what: str) -> None:
        """Fail early when fewer than ``n`` bytes remain (cheap check before a loop)."""
        if self.pos + n > self.end:
            raise SyncDecodeError(
                "bad-length", f"{what} need {n} bytes, {self.end - self.pos} left"
            )

    def finish(self) -> None:
        if self.pos != self.end:
            raise SyncDecodeError("trailing-bytes", f"{self.end - self.pos} bytes after the body")


def _decode_record(r: _Reader) -> RecordState:
    home, ha, version, last_id, state, nbind, reserved, tomb_age = r.take(_RECORD, "a record")
    if reserved:
        raise SyncDecodeError("bad-reserved", "record reserved field is not zero")
    if state & ~_TOMBSTONE:
        raise SyncDecodeError("bad-record", f"unknown record state bits {state:#04x}")
    tombstone = state == _TOMBSTONE
    if tombstone != (nbind == 0):
        raise SyncDecodeError("bad-record", f"tombstone bit {int(tombstone)} with {nbind} bindings")
    if not tombstone and tomb_age:
        raise SyncDecodeError("bad-record", "live record with a tombstone age")
    if nbind == 0:
        return RecordState(home, ha, version, last_id, tomb_age, ())
    r.need(BINDING_LEN * nbind, "bindings")
    bindings = []
    data, pos = r.data, r.pos
    for _ in range(nbind):
        coa, granted, flags, bres, remaining = _BINDING.unpack_from(data, pos)
        pos += BINDING_LEN
        if bres:
            raise SyncDecodeError("bad-reserved", "binding reserved field is not zero")
        bindings.append(BindingState(coa, granted, flags, remaining))
    r.pos = pos
    return RecordState(home, ha, version, last_id, tomb_age, tuple(bindings))


def _decode_records(r: _Reader, count: int) -> tuple[RecordState, ...]:
    r.need(RECORD_HEADER_LEN * count, "records")
    return tuple(_decode_record(r) for _ in range(count))


def _decode_u32s(r: _Reader, count: int, what: str) -> tuple[int, ...]:
    r.need(4 * count, what)
    values: tuple[int, ...] = struct.unpack_from(f"!{count}I", r.data, r.pos)
    r.pos += 4 * count
    return values


def decode(data: bytes, auth: GroupAuth) -> SyncMessage:
    """Decode one datagram. Verifies the authenticator before parsing the body.

    Raises :class:`SyncDecodeError` (and nothing else) for any bytes that are not an authentic,
    well-formed sync message.
    """
    msg = _decode(data, auth, False)
    assert not isinstance(msg, TableSyncChunk | BindingUpdateChunk)
    return msg


def decode_chunked(
    data: bytes, auth: GroupAuth
) -> SyncMessage | TableSyncChunk | BindingUpdateChunk:
    """:func:`decode`, except that a Table Sync or a Binding Update whose records all have one
    binding (the bulk download's and the registrations' common case) comes back as a
    :class:`TableSyncChunk` or a :class:`BindingUpdateChunk`. Accepts and refuses exactly the
    same bytes as :func:`decode`, for the same reasons."""
    return _decode(data, auth, True)


def _one_binding_body(data: bytes, start: int, end: int, count: int) -> bytes | None:
    """``data[start:end]`` when it is exactly ``count`` well-formed one-binding records, else
    None (then the general decoder parses it, and names what is wrong)."""
    if count == 0 or end - start != RECORD_ONE_LEN * count:
        return None
    body = data[start:end]
    zeros = bytes(count)
    # state 0 (live), nbind 1, record reserved 0, tombstone age 0, binding reserved 0
    for offset in (24, 26, 27, 28, 29, 30, 31, 39):
        if body[offset::RECORD_ONE_LEN] != zeros:
            return None
    if body[25::RECORD_ONE_LEN] != b"\x01" * count:
        return None
    return body


def _decode(
    data: bytes, auth: GroupAuth, chunked: bool
) -> SyncMessage | TableSyncChunk | BindingUpdateChunk:
    data = bytes(data)
    if len(data) < HEADER_LEN:
        raise SyncDecodeError("truncated", f"{len(data)} bytes < {HEADER_LEN}-byte header")
    mtype_raw, version, code, flags, group, count, sender, seq, ident = _HEADER.unpack_from(data)
    if version != SYNC_VERSION:
        raise SyncDecodeError("bad-version", f"version {version}")
    try:
        mtype = MsgType(mtype_raw)
    except ValueError:
        raise SyncDecodeError("unknown-type", f"type {mtype_raw}") from None
    end = auth.verify(data)
    # authentic from here on
    if flags & ~_ALLOWED_FLAGS[mtype]:
        raise SyncDecodeError("bad-flags", f"{mtype.name} with flags {flags:#04x}")
    if code and mtype not in _HAS_CODE:
        raise SyncDecodeError("bad-reserved", f"{mtype.name} with code {code}")
    r = _Reader(data, HEADER_LEN, end)
    msg: SyncMessage
    if mtype is MsgType.BINDING_UPDATE:
        if chunked:
            body = _one_binding_body(data, r.pos, end, count)
            if body is not None:
                return BindingUpdateChunk(group, sender, seq, ident, count, body)
        msg = BindingUpdate(group, sender, seq, ident, _decode_records(r, count))
    elif mtype is MsgType.BINDING_UPDATE_ACK:
        msg = BindingUpdateAck(group, sender, seq, ident, code, _decode_u32s(r, count, "homes"))
    elif mtype is MsgType.TABLE_REQUEST:
        everything = bool(flags & HeaderFlag.ALL)
        if everything != (count == ALL_HOME_AGENTS):
            raise SyncDecodeError("bad-count", f"NumHA {count} with ALL flag {int(everything)}")
        has = None if everything else _decode_u32s(r, count, "home agents")
        msg = TableRequest(group, sender, seq, ident, has)
    elif mtype is MsgType.TABLE_SYNC:
        (more_bind,) = r.take(_U32, "MoreBind")
        if chunked and code == SyncCode.ACCEPTED and not flags & HeaderFlag.PEERS:
            body = _one_binding_body(data, r.pos, end, count)
            if body is not None:
                final = bool(flags & HeaderFlag.FINAL)
                return TableSyncChunk(group, sender, seq, ident, more_bind, final, count, body)
        peers: tuple[PeerInfo, ...] = ()
        if flags & HeaderFlag.PEERS:
            npeers, reserved = r.take(_PEERS_HEAD, "the peer list header")
            if reserved:
                raise SyncDecodeError("bad-reserved", "peer list reserved field is not zero")
            if npeers == 0:
                raise SyncDecodeError("bad-count", "PEERS flag with an empty peer list")
            r.need(PEER_LEN * npeers, "peers")
            peers = tuple(PeerInfo(*r.take(_PEER, "a peer")) for _ in range(npeers))
        records = _decode_records(r, count)
        final = bool(flags & HeaderFlag.FINAL)
        msg = TableSync(group, sender, seq, ident, code, more_bind, final, peers, records)
    elif mtype is MsgType.TABLE_SYNC_ACK:
        if count:
            raise SyncDecodeError("bad-count", f"TABLE_SYNC_ACK with count {count}")
        (more_bind,) = r.take(_U32, "MoreBind")
        msg = TableSyncAck(group, sender, seq, ident, code, more_bind)
    else:
        r.need(8 * count, "bucket hashes")
        buckets = tuple(r.take(_U64, "a bucket hash")[0] for _ in range(count))
        msg = Digest(group, sender, seq, ident, bool(flags & HeaderFlag.SYNCED), buckets)
    r.finish()
    return msg
