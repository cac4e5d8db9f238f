"""Replay protection for registrations (RFC 5944 5.7): timestamps and nonces.

Timestamps: the identification is an NTP timestamp (high 32 bits seconds since 1900, low 32 bits
fraction). It must lie within ``window`` seconds of the home agent's clock and be greater than the
last identification accepted for the mobile node. On failure the reply carries the home agent's
time in the high 32 bits and the request's low 32 bits.

Nonces: the high 32 bits must equal the nonce the home agent handed to that mobile node in its
last reply; the low 32 bits are the mobile node's. Every reply carries a fresh home-agent nonce in
the high 32 bits and the request's low 32 bits.

Pure functions: the wall clock (Unix seconds) and fresh nonces are passed in.
"""

from __future__ import annotations

from dataclasses import dataclass

NTP_EPOCH_OFFSET = 2_208_988_800  # seconds from 1900-01-01 to 1970-01-01
MODES = ("timestamp", "nonce")


def ntp_from_unix(wall: float) -> int:
    """64-bit NTP timestamp for Unix time ``wall``."""
    seconds = int(wall)
    frac = int((wall - seconds) * (1 << 32)) & 0xFFFFFFFF
    return (((seconds + NTP_EPOCH_OFFSET) & 0xFFFFFFFF) << 32) | frac


def unix_from_ntp(ntp: int) -> float:
    return (ntp >> 32) - NTP_EPOCH_OFFSET + (ntp & 0xFFFFFFFF) / (1 << 32)


@dataclass(frozen=True, slots=True)
class ReplayVerdict:
    ok: bool
    reply_identification: int  # what the reply (accepting or 133) carries
    reason: str = ""


def check_timestamp(ident: int, last_id: int | None, wall: float, window: float) -> ReplayVerdict:
    if timestamp_acceptable(ident, last_id, wall, window):
        return ReplayVerdict(True, ident)
    mismatch = (ntp_from_unix(wall) & 0xFFFFFFFF00000000) | (ident & 0xFFFFFFFF)
    if abs(unix_from_ntp(ident) - wall) > window:
        return ReplayVerdict(False, mismatch, "timestamp-outside-window")
    return ReplayVerdict(False, mismatch, "identification-not-increasing")


def timestamp_acceptable(ident: int, last_id: int | None, wall: float, window: float) -> bool:
    """The timestamp rule alone: within ``window`` seconds of ``wall`` and above ``last_id``."""
    return abs(unix_from_ntp(ident) - wall) <= window and (last_id is None or ident > last_id)


def check_nonce(ident: int, expected_nonce: int | None, fresh_nonce: int) -> ReplayVerdict:
    reply = ((fresh_nonce & 0xFFFFFFFF) << 32) | (ident & 0xFFFFFFFF)
    if expected_nonce is None or (ident >> 32) != expected_nonce:
        return ReplayVerdict(False, reply, "nonce-mismatch")
    return ReplayVerdict(True, reply)
