"""HA-HA sync messages: the redundancy group's wire codec (patent FIG 10 to FIG 14, plus a digest).

Pure codec: frozen dataclasses in, bytes out, and back. The byte layouts, with diagrams, are in
``docs/sync-protocol.md``; each module implements some of its sections:

============  ==============================================================================
``header``    "Message types", "Codes", "Common header": :class:`MsgType`, :class:`SyncCode`,
              :class:`HeaderFlag`, :class:`SyncDecodeError`, the datagram budget
``auth``      "HA-HA authentication extension": :class:`GroupKey`, :class:`GroupAuth` (several
              keys for rollover), :func:`auth_trailer_len`
``records``   "Records and bindings": :class:`RecordState`, :class:`BindingState`, the record
              codec and its one-binding fast path (:func:`encode_record_one`)
``updates``   "Binding Update" and "Binding Update Ack" (FIG 10, 11), :class:`BindingUpdateChunk`
``bulk``      "Table Request", "Table Sync" (with the peer list), "Table Sync Ack" (FIG 12-14),
              :class:`TableSyncChunk`
``digest``    "Digest" (anti-entropy)
``revocation`` "Revocation State" and its ack (types 70, 71): RFC 3543 revocation state
``codec``     whole messages: :func:`encode`, :func:`decode`, :func:`decode_chunked`, sizes
============  ==============================================================================

Import from this package (``from mobileip.wire import sync as wire``), not from the modules.
Replay protection (the ``sequence`` field) is not checked here: see :mod:`mobileip.sync.replay`.
"""

from __future__ import annotations

from mobileip.wire.sync.auth import (
    ALGORITHMS,
    AUTH_HEADER_LEN,
    AUTHENTICATOR_LEN,
    EXT_HA_HA_AUTH,
    GroupAuth,
    GroupKey,
    auth_trailer_len,
)
from mobileip.wire.sync.bulk import (
    MORE_BIND_LEN,
    PEER_FLAG_SYNCED,
    PEER_LEN,
    PEERS_HEADER_LEN,
    PeerInfo,
    TableRequest,
    TableSync,
    TableSyncAck,
    TableSyncChunk,
    encode_table_sync_records,
)
from mobileip.wire.sync.codec import (
    _TYPE_OF,
    SyncMessage,
    body_size,
    decode,
    decode_chunked,
    encode,
    encode_binding_update_ack,
    message_size,
)
from mobileip.wire.sync.digest import Digest
from mobileip.wire.sync.header import (
    ALL_HOME_AGENTS,
    HEADER_LEN,
    MAX_DATAGRAM,
    MAX_PAYLOAD,
    SYNC_VERSION,
    HeaderFlag,
    MsgType,
    SyncCode,
    SyncDecodeError,
)
from mobileip.wire.sync.records import (
    BINDING_LEN,
    INFINITE_LIFETIME,
    INFINITE_MS,
    MAX_BINDINGS,
    RECORD_HEADER_LEN,
    RECORD_ONE,
    RECORD_ONE_LEN,
    BindingState,
    RecordFlag,
    RecordState,
    encode_record,
    encode_record_one,
    record_size,
)
from mobileip.wire.sync.revocation import (
    ENTRY_LEN,
    EntryState,
    Reason,
    RevocationEntry,
    RevocationState,
    RevocationStateAck,
)
from mobileip.wire.sync.updates import (
    BindingUpdate,
    BindingUpdateAck,
    BindingUpdateChunk,
    encode_binding_update_records,
)

__all__ = [
    "ALGORITHMS",
    "ALL_HOME_AGENTS",
    "AUTHENTICATOR_LEN",
    "AUTH_HEADER_LEN",
    "BINDING_LEN",
    "ENTRY_LEN",
    "EXT_HA_HA_AUTH",
    "HEADER_LEN",
    "INFINITE_LIFETIME",
    "INFINITE_MS",
    "MAX_BINDINGS",
    "MAX_DATAGRAM",
    "MAX_PAYLOAD",
    "MORE_BIND_LEN",
    "PEERS_HEADER_LEN",
    "PEER_FLAG_SYNCED",
    "PEER_LEN",
    "RECORD_HEADER_LEN",
    "RECORD_ONE",
    "RECORD_ONE_LEN",
    "SYNC_VERSION",
    "_TYPE_OF",
    "BindingState",
    "BindingUpdate",
    "BindingUpdateAck",
    "BindingUpdateChunk",
    "Digest",
    "EntryState",
    "GroupAuth",
    "GroupKey",
    "HeaderFlag",
    "MsgType",
    "PeerInfo",
    "Reason",
    "RecordFlag",
    "RecordState",
    "RevocationEntry",
    "RevocationState",
    "RevocationStateAck",
    "SyncCode",
    "SyncDecodeError",
    "SyncMessage",
    "TableRequest",
    "TableSync",
    "TableSyncAck",
    "TableSyncChunk",
    "auth_trailer_len",
    "body_size",
    "decode",
    "decode_chunked",
    "encode",
    "encode_binding_update_ack",
    "encode_binding_update_records",
    "encode_record",
    "encode_record_one",
    "encode_table_sync_records",
    "message_size",
    "record_size",
]
