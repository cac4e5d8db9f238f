"""HA-HA sync: message types, codes, flags and the common header (docs/sync-protocol.md,
"Message types", "Codes", "Common header (28 bytes)", "Datagram budget").

Also the pieces every body codec shares: :class:`SyncDecodeError` (the drop reasons of
"Decoding order and drop reasons"), the field range checks of the encoders and the body reader
of the decoders.
"""

from __future__ import annotations

import enum
import struct

from mobileip.wire.errors import DecodeError

SYNC_VERSION = 1
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
    REVOCATION_STATE = 70  # RFC 3543 revocation state (wire/sync/revocation.py)
    REVOCATION_STATE_ACK = 71


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
    REQUEST = 0x10  # RevocationState: send me your whole revocation state (no entries)


_HEADER = struct.Struct("!BBBBHHIQQ")  # type version code flags group count sender seq ident
_U32 = struct.Struct("!I")
_U64 = struct.Struct("!Q")

HEADER_LEN = _HEADER.size  # 28

# flags each message type may carry; any other bit set is "bad-flags"
_ALLOWED_FLAGS: dict[MsgType, int] = {
    MsgType.BINDING_UPDATE: 0,
    MsgType.BINDING_UPDATE_ACK: 0,
    MsgType.TABLE_REQUEST: int(HeaderFlag.ALL),
    MsgType.TABLE_SYNC: int(HeaderFlag.FINAL | HeaderFlag.PEERS),
    MsgType.TABLE_SYNC_ACK: 0,
    MsgType.DIGEST: int(HeaderFlag.SYNCED),
    MsgType.REVOCATION_STATE: int(HeaderFlag.REQUEST),
    MsgType.REVOCATION_STATE_ACK: 0,
}
_HAS_CODE = frozenset({MsgType.BINDING_UPDATE_ACK, MsgType.TABLE_SYNC, MsgType.TABLE_SYNC_ACK})


class SyncDecodeError(DecodeError):
    """The bytes are not a valid, authentic sync message. Dropped and counted, never answered."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason, detail, code=None)


# --- encoding: field range checks --------------------------------------------------------------


def _check(name: str, value: int, bits: int) -> None:
    if not 0 <= value < (1 << bits):
        raise ValueError(f"{name} {value} does not fit in {bits} bits")


def _check_count(name: str, n: int, limit: int = 0xFFFF) -> None:
    if n > limit:
        raise ValueError(f"too many {name}: {n} > {limit}")


def _encode_addresses(name: str, addrs: tuple[int, ...], out: list[bytes]) -> None:
    for a in addrs:
        _check(name, a, 32)
        out.append(_U32.pack(a))


# --- decoding: the body reader -----------------------------------------------------------------


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


def _decode_u32s(r: _Reader, count: int, what: str) -> tuple[int, ...]:
    r.need(4 * count, what)
    values: tuple[int, ...] = struct.unpack_from(f"!{count}I", r.data, r.pos)
    r.pos += 4 * count
    return values
