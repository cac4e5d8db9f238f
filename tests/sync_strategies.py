"""Shared fixtures of the sync tests: a group key, two endpoints, and hypothesis strategies for
wire records (one-binding records are what the packed fast paths take)."""

from __future__ import annotations

import struct

from hypothesis import strategies as st

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
