"""HA-HA sync: encoding and decoding whole messages (docs/sync-protocol.md, "Message bodies",
"Decoding order and drop reasons" and "Datagram budget").

Every message is

    common header (28 bytes) | type-specific body | HA-HA authentication extension (always last)

and ``encode(decode(b, auth), auth) == b`` for every ``b`` that decodes.

:func:`decode` checks, in this order: the header is complete, the version, the type, then the
authentication extension (found from the end of the datagram, whose length is fixed by the
algorithm) and its authenticator, and only then parses the body. Nothing is parsed from an
unauthenticated body. Every failure is a :class:`SyncDecodeError` whose ``reason`` is a stable
token suitable for a counter label; ``code`` is ``None`` because a bad sync message is dropped
and counted, never answered.

The messages themselves are defined by family in :mod:`.updates`, :mod:`.bulk` and
:mod:`.digest`; this module dispatches on the type. :func:`encode_binding_update_ack` (the Ack's
two-``struct``-call fast path) is here because it falls back on :func:`encode`.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from mobileip.wire.sync.auth import GroupAuth, auth_trailer_len
from mobileip.wire.sync.bulk import (
    MORE_BIND_LEN,
    PEER_LEN,
    PEERS_HEADER_LEN,
    PeerInfo,
    TableRequest,
    TableSync,
    TableSyncAck,
    TableSyncChunk,
    _decode_peers,
    _encode_peers,
)
from mobileip.wire.sync.digest import Digest, _decode_buckets, _encode_buckets
from mobileip.wire.sync.header import (
    _ALLOWED_FLAGS,
    _HAS_CODE,
    _HEADER,
    _U32,
    ALL_HOME_AGENTS,
    HEADER_LEN,
    MAX_DATAGRAM,
    SYNC_VERSION,
    HeaderFlag,
    MsgType,
    SyncCode,
    SyncDecodeError,
    _check,
    _check_count,
    _decode_u32s,
    _encode_addresses,
    _Reader,
)
from mobileip.wire.sync.records import (
    _decode_records,
    _encode_record,
    _one_binding_body,
    record_size,
)
from mobileip.wire.sync.revocation import (
    ENTRY_LEN,
    RevocationState,
    RevocationStateAck,
    _decode_entries,
    _encode_entries,
)
from mobileip.wire.sync.updates import BindingUpdate, BindingUpdateAck, BindingUpdateChunk

SyncMessage = (
    BindingUpdate
    | BindingUpdateAck
    | TableRequest
    | TableSync
    | TableSyncAck
    | Digest
    | RevocationState
    | RevocationStateAck
)

_TYPE_OF: dict[type, MsgType] = {
    BindingUpdate: MsgType.BINDING_UPDATE,
    BindingUpdateAck: MsgType.BINDING_UPDATE_ACK,
    TableRequest: MsgType.TABLE_REQUEST,
    TableSync: MsgType.TABLE_SYNC,
    TableSyncAck: MsgType.TABLE_SYNC_ACK,
    Digest: MsgType.DIGEST,
    RevocationState: MsgType.REVOCATION_STATE,
    RevocationStateAck: MsgType.REVOCATION_STATE_ACK,
}


# --- sizes ------------------------------------------------------------------------------------


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
    if isinstance(msg, RevocationState):
        return ENTRY_LEN * len(msg.entries)
    if isinstance(msg, RevocationStateAck):
        return 0
    return 8 * len(msg.buckets)


def message_size(msg: SyncMessage, auth: GroupAuth) -> int:
    """Length of ``encode(msg, auth)``, without encoding it."""
    return HEADER_LEN + body_size(msg) + auth_trailer_len(auth)


# --- encoding ---------------------------------------------------------------------------------


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
            _encode_peers(msg.peers, body)
        for r in msg.records:
            _encode_record(r, body)
    elif isinstance(msg, TableSyncAck):
        code, count = msg.code, 0
        _check("more_bind", msg.more_bind, 32)
        body.append(_U32.pack(msg.more_bind))
    elif isinstance(msg, RevocationState):
        if msg.request and msg.entries:
            raise ValueError("a revocation state request carries no entries")
        count = len(msg.entries)
        flags = int(HeaderFlag.REQUEST) if msg.request else 0
        _encode_entries(msg.entries, body)
    elif isinstance(msg, RevocationStateAck):
        pass
    else:
        count = len(msg.buckets)
        flags = int(HeaderFlag.SYNCED) if msg.synced else 0
        _encode_buckets(msg.buckets, body)
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
            peers = _decode_peers(r)
        records = _decode_records(r, count)
        final = bool(flags & HeaderFlag.FINAL)
        msg = TableSync(group, sender, seq, ident, code, more_bind, final, peers, records)
    elif mtype is MsgType.TABLE_SYNC_ACK:
        if count:
            raise SyncDecodeError("bad-count", f"TABLE_SYNC_ACK with count {count}")
        (more_bind,) = r.take(_U32, "MoreBind")
        msg = TableSyncAck(group, sender, seq, ident, code, more_bind)
    elif mtype is MsgType.REVOCATION_STATE:
        request = bool(flags & HeaderFlag.REQUEST)
        if request and count:
            raise SyncDecodeError("bad-count", f"REVOCATION_STATE request with count {count}")
        msg = RevocationState(group, sender, seq, ident, request, _decode_entries(r, count))
    elif mtype is MsgType.REVOCATION_STATE_ACK:
        if count:
            raise SyncDecodeError("bad-count", f"REVOCATION_STATE_ACK with count {count}")
        msg = RevocationStateAck(group, sender, seq, ident)
    else:
        buckets = _decode_buckets(r, count)
        msg = Digest(group, sender, seq, ident, bool(flags & HeaderFlag.SYNCED), buckets)
    r.finish()
    return msg
