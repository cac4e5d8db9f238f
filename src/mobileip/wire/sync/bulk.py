"""HA-HA sync: the bulk download's messages, Table Request, Table Sync (with the peer list) and
Table Sync Ack (docs/sync-protocol.md, "Table Request (type 66, FIG 12)", "Table Sync (type 67,
FIG 13)" and "Table Sync Ack (type 68, FIG 14)").

A booting member asks for the table with a Table Request; the answering member sends it in
Table Sync chunks, the first of which carries the group's members (the peer list), and the
requester acknowledges each chunk with a Table Sync Ack. :class:`TableSyncChunk` and
:func:`encode_table_sync_records` are the download's fast paths (records of one binding kept in
wire form).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from mobileip.wire.sync.auth import GroupAuth
from mobileip.wire.sync.header import (
    _HEADER,
    _U32,
    MAX_DATAGRAM,
    SYNC_VERSION,
    HeaderFlag,
    MsgType,
    SyncCode,
    SyncDecodeError,
    _check,
    _check_count,
    _Reader,
)
from mobileip.wire.sync.records import RecordState, _records_of_one

PEER_FLAG_SYNCED = 0x0001

_PEER = struct.Struct("!IIHH")  # node_id address port flags
_PEERS_HEAD = struct.Struct("!HH")  # npeers reserved

PEER_LEN = _PEER.size  # 12
PEERS_HEADER_LEN = _PEERS_HEAD.size  # 4
MORE_BIND_LEN = 4


@dataclass(frozen=True, slots=True)
class PeerInfo:
    node_id: int  # u32
    address: int  # u32 IPv4 unicast address of its sync endpoint
    port: int  # u16
    flags: int  # u16; bit 0 = SYNCED


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
        records = _records_of_one(self.body)
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


# --- the peer list ----------------------------------------------------------------------------


def _encode_peers(peers: tuple[PeerInfo, ...], out: list[bytes]) -> None:
    """The peer list (NPeers, reserved, the peers) of a Table Sync with flag PEERS."""
    _check_count("peers", len(peers))
    out.append(_PEERS_HEAD.pack(len(peers), 0))
    for p in peers:
        _check("peer node_id", p.node_id, 32)
        _check("peer address", p.address, 32)
        _check("peer port", p.port, 16)
        _check("peer flags", p.flags, 16)
        out.append(_PEER.pack(p.node_id, p.address, p.port, p.flags))


def _decode_peers(r: _Reader) -> tuple[PeerInfo, ...]:
    """The peer list of a Table Sync with flag PEERS (at least one peer)."""
    npeers, reserved = r.take(_PEERS_HEAD, "the peer list header")
    if reserved:
        raise SyncDecodeError("bad-reserved", "peer list reserved field is not zero")
    if npeers == 0:
        raise SyncDecodeError("bad-count", "PEERS flag with an empty peer list")
    r.need(PEER_LEN * npeers, "peers")
    return tuple(PeerInfo(*r.take(_PEER, "a peer")) for _ in range(npeers))


# --- the download's fast path -----------------------------------------------------------------


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
