"""HA-HA sync: RFC 3543 revocation state (docs/sync-protocol.md, "Revocation State (types 70,
71)").

A Revocation State message (type 70) carries entries, one per binding end (home address,
care-of address) for which revocation was negotiated with a foreign agent: its foreign agent, the
I bit it offered, the SPI the mobile node registered with, and, once the binding ended on the
active member's side, the pending revocation (identifier, attempts, first send) or the fact that
it was settled. A ``NEGOTIATED`` or ``FORGOTTEN`` entry's identifier field is its writer's last
identifier used, so a member that gets only the newest entry of a binding end still learns
which numbers not to pick again. Entries merge by ``version`` (a Lamport clock: the receiver
keeps the newer). Flag ``REQUEST`` (no entries) asks the receiver for its whole state. A
Revocation State Ack (type 71, no body) echoes the identification of the message it acks.

Old members (before types 70 and 71) drop both as ``unknown-type`` and never ack: the sender
gives up on them after its retransmissions and stops sending them revocation state.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from mobileip.wire.sync.header import SyncDecodeError, _check, _Reader

ENTRY_LEN = 48
ENTRY_FLAG_INFORM = 0x80  # the foreign agent can inform the mobile node (its I bit)
# home coa fa fa_port state flags version since rid first_sent_ms spi attempts reason reserved
_ENTRY = struct.Struct("!IIIHBBQIIQIBBH")
assert _ENTRY.size == ENTRY_LEN


class EntryState(enum.IntEnum):
    NEGOTIATED = 1  # revocation negotiated, the binding is live
    PENDING = 2  # the binding ended on our side: the revocation is being (or about to be) sent
    SETTLED = 3  # the foreign agent acked the revocation, or the sender gave up
    FORGOTTEN = 4  # the binding ended without a revocation (deregistered, replaced, refused)


class Reason(enum.IntEnum):
    """Why a binding was revoked (``PENDING``/``SETTLED`` entries)."""

    NONE = 0
    OPERATOR = 1  # mobileip clear binding
    KEY_REMOVED = 2  # the mobile node's security association went away in a reload
    ACKED = 3  # SETTLED: the foreign agent acked
    GAVE_UP = 4  # SETTLED: no ack after max_attempts


@dataclass(frozen=True, slots=True)
class RevocationEntry:
    home_address: int
    care_of_address: int
    foreign_agent: int  # address the registration was relayed from: where revocations go
    foreign_agent_port: int
    state: EntryState
    inform: bool
    version: int  # Lamport clock: the newer version wins
    since: int  # the timestamp of our Revocation Support extension (Unix seconds)
    # PENDING, SETTLED: the revocation's identifier; NEGOTIATED, FORGOTTEN: the writer's last
    # identifier used (a receiver never picks one at or below it; not part of the merge)
    revocation_id: int
    first_sent_ms: int  # Unix milliseconds of the first send, 0 before it
    spi: int  # the mobile node's MN-HA SPI at registration
    attempts: int  # sends so far (PENDING), sends in all (SETTLED)
    reason: int  # a Reason value (unknown values are kept)

    @property
    def key(self) -> tuple[int, int]:
        return (self.home_address, self.care_of_address)


@dataclass(frozen=True, slots=True)
class RevocationState:
    """Type 70: revocation state entries, or (``request``) a request for the whole state."""

    group: int
    sender: int
    sequence: int
    identification: int
    request: bool
    entries: tuple[RevocationEntry, ...]


@dataclass(frozen=True, slots=True)
class RevocationStateAck:
    """Type 71: acks the Revocation State whose identification it carries."""

    group: int
    sender: int
    sequence: int
    identification: int


def _encode_entries(entries: tuple[RevocationEntry, ...], out: list[bytes]) -> None:
    for e in entries:
        _check("home address", e.home_address, 32)
        _check("care-of address", e.care_of_address, 32)
        _check("foreign agent", e.foreign_agent, 32)
        _check("foreign agent port", e.foreign_agent_port, 16)
        _check("version", e.version, 64)
        _check("since", e.since, 32)
        _check("revocation identifier", e.revocation_id, 32)
        _check("first send", e.first_sent_ms, 64)
        _check("spi", e.spi, 32)
        _check("attempts", e.attempts, 8)
        _check("reason", e.reason, 8)
        out.append(
            _ENTRY.pack(
                e.home_address,
                e.care_of_address,
                e.foreign_agent,
                e.foreign_agent_port,
                int(e.state),
                ENTRY_FLAG_INFORM if e.inform else 0,
                e.version,
                e.since,
                e.revocation_id,
                e.first_sent_ms,
                e.spi,
                e.attempts,
                e.reason,
                0,
            )
        )


def _decode_entries(r: _Reader, count: int) -> tuple[RevocationEntry, ...]:
    r.need(ENTRY_LEN * count, "revocation entries")
    entries: list[RevocationEntry] = []
    for _ in range(count):
        at = r.pos
        (
            home,
            coa,
            fa,
            port,
            state,
            flags,
            version,
            since,
            rid,
            first,
            spi,
            attempts,
            reason,
            rsv,
        ) = r.take(_ENTRY, "revocation entry")
        if flags & ~ENTRY_FLAG_INFORM or rsv:
            raise SyncDecodeError("bad-reserved", f"revocation entry at offset {at}")
        try:
            st = EntryState(state)
        except ValueError:
            raise SyncDecodeError("bad-state", f"revocation entry state {state}") from None
        entries.append(
            RevocationEntry(
                home,
                coa,
                fa,
                port,
                st,
                bool(flags & ENTRY_FLAG_INFORM),
                version,
                since,
                rid,
                first,
                spi,
                attempts,
                reason,
            )
        )
    return tuple(entries)
