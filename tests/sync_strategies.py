"""Shared fixtures of the sync tests: a group key, two endpoints, and hypothesis strategies for
wire records (one-binding records are what the packed fast paths take)."""

from __future__ import annotations

import math
import struct

from hypothesis import strategies as st

from mobileip.core.bindings import Binding, BindingTable, MobilityRecord, make_version
from mobileip.wire import sync as w

KEY = bytes(range(32))
AUTH = w.GroupAuth([w.GroupKey(1000, "hmac-sha256", KEY)], 1000)
HA = 0x0A000001
NOW = 5000.0
A = ("127.0.0.1", 1)
B = ("127.0.0.2", 2)

u8 = st.integers(0, 255)
u16 = st.integers(0, 2**16 - 1)
u32 = st.integers(0, 2**32 - 1)
u64 = st.integers(0, 2**64 - 1)
bindings = st.builds(w.BindingState, u32, u16, u8, u32)
one_binding = st.builds(w.RecordState, u32, u32, u64, u64, st.just(0), st.tuples(bindings))


def authentic(msg_type: int, raw: bytes) -> bytes:
    """``raw`` (at least 28 bytes) as a message of ``msg_type``, version 1, signed with AUTH:
    garbage that passes authentication, to compare the decoders on."""
    k = AUTH.send_key
    body = bytes([msg_type, 1]) + raw[2:]
    head = struct.pack("!BBI", 40, 36, k.spi)
    return body + head + k.authenticator(body + head)


def both_decoders(data: bytes) -> list[object]:
    """What ``decode`` and ``decode_chunked`` make of ``data`` (chunks as their general form)."""
    outcomes: list[object] = []
    for decoder in (w.decode, w.decode_chunked):
        try:
            msg = decoder(data, AUTH)
        except w.SyncDecodeError as exc:
            outcomes.append(exc.reason)
            continue
        if isinstance(msg, w.TableSyncChunk):
            outcomes.append(msg.as_table_sync())
        elif isinstance(msg, w.BindingUpdateChunk):
            outcomes.append(msg.as_binding_update())
        else:
            outcomes.append(msg)
    return outcomes


def mixed_table(n: int = 200, expired: bool = False) -> BindingTable:
    """One-binding records (finite and infinite lifetimes, some about to run out), tombstones,
    records with several bindings, records with an NAI and NAT mappings (issue 16: they leave the
    fast paths); with ``expired``, also bindings that ran out but were not yet swept by the
    expiry wheel."""
    t = BindingTable(tombstone_ttl=900.0)
    for i in range(n):
        home = 0x0A010000 + i
        version = make_version(10 + i % 7, 0x0A000005)
        kind = i % 10
        if kind == 0:
            bindings: tuple[Binding, ...] = ()
        elif kind == 1:
            bindings = (Binding(0xC0000001, 0xFFFF, math.inf, 0x40),)
        elif kind == 2:
            bindings = (Binding(0xC0000001, 300, NOW + 300, 0), Binding(0xC0000002, 60, NOW + 5, 0))
        elif kind == 3:
            bindings = (Binding(0xC0000001, 30, NOW + 0.0004, 0),)  # 0 ms left on the wire
        elif kind == 4 and expired:
            bindings = (Binding(0xC0000001, 30, NOW - 3, 0),)  # expired, not yet swept
        elif kind == 5 and i % 20 == 5:  # an NAI and a NAT mapping
            bindings = (Binding(0xC0000100 + i, 1800, NOW + 17.25 + i, 0, 0xCB007100 + i, 4500),)
        elif kind == 6 and i % 20 == 6:  # several bindings, the second NAT-mapped
            bindings = (
                Binding(0xC0000001, 300, NOW + 300, 0x80),
                Binding(0xC0000002, 300, NOW + 200, 0x80, 0xCB007101, 40001 + i),
            )
        else:
            bindings = (Binding(0xC0000100 + i, 1800, NOW + 17.25 + i, i & 0xFF),)
        nai = f"mn{i}@example.com".encode() if kind == 5 or (kind == 0 and i % 20 == 0) else b""
        t.put(MobilityRecord(home, version, 1000 + i, HA, bindings, 0.0, nai), NOW - 40.0)
    return t
