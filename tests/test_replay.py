"""Replay protection (mobileip.core.replay): NTP timestamps and nonces, RFC 5944 5.7."""

from __future__ import annotations

import pytest
import vectors as v

from mobileip.core import replay


def test_ntp_epoch_and_vector_clock() -> None:
    # 1970-01-01 is 2_208_988_800 s after the NTP epoch 1900-01-01.
    assert replay.ntp_from_unix(0.0) == 2_208_988_800 << 32
    assert replay.ntp_from_unix(v.WALL) == (v.NTP_SECONDS << 32) | 0x80000000
    assert replay.ntp_from_unix(1.25) & 0xFFFFFFFF == 0x40000000
    assert replay.unix_from_ntp((v.NTP_SECONDS << 32) | 0x80000000) == v.WALL
    for wall in (0.0, 1.5, 1_234_567_890.75, v.WALL):
        assert abs(replay.unix_from_ntp(replay.ntp_from_unix(wall)) - wall) < 1e-6


def test_timestamp_inside_window_accepted() -> None:
    ident = replay.ntp_from_unix(v.WALL - 6.9)
    verdict = replay.check_timestamp(ident, None, v.WALL, 7.0)
    assert verdict.ok and verdict.reply_identification == ident and verdict.reason == ""
    future = replay.ntp_from_unix(v.WALL + 6.9)
    assert replay.check_timestamp(future, ident, v.WALL, 7.0).ok


@pytest.mark.parametrize("offset", [-7.5, 7.5, -3600.0, 86400.0])
def test_timestamp_outside_window_gets_ha_time(offset: float) -> None:
    ident = (replay.ntp_from_unix(v.WALL + offset) & ~0xFFFFFFFF) | 0x12345678
    verdict = replay.check_timestamp(ident, None, v.WALL, 7.0)
    assert not verdict.ok
    assert verdict.reason == "timestamp-outside-window"
    # RFC 5944 5.7: the HA's time in the high 32 bits, the request's low 32 bits kept.
    assert verdict.reply_identification == (v.NTP_SECONDS << 32) | 0x12345678


def test_window_is_configurable() -> None:
    ident = replay.ntp_from_unix(v.WALL - 20)
    assert not replay.check_timestamp(ident, None, v.WALL, 7.0).ok
    assert replay.check_timestamp(ident, None, v.WALL, 30.0).ok


@pytest.mark.parametrize("delta", [0, -1, -(1 << 32)])
def test_identification_must_increase(delta: int) -> None:
    last = replay.ntp_from_unix(v.WALL - 1)
    verdict = replay.check_timestamp(last + delta, last, v.WALL, 7.0)
    assert not verdict.ok
    assert verdict.reason == "identification-not-increasing"
    assert verdict.reply_identification >> 32 == v.NTP_SECONDS
    assert verdict.reply_identification & 0xFFFFFFFF == (last + delta) & 0xFFFFFFFF
    assert replay.check_timestamp(last + 1, last, v.WALL, 7.0).ok


def test_nonce_without_expectation_fails_with_fresh_nonce() -> None:
    verdict = replay.check_nonce(0xAAAAAAAA_0000BEEF, None, 0x1234ABCD)
    assert not verdict.ok and verdict.reason == "nonce-mismatch"
    assert verdict.reply_identification == 0x1234ABCD_0000BEEF


def test_nonce_match_and_mismatch() -> None:
    ok = replay.check_nonce(0x1234ABCD_00000001, 0x1234ABCD, 0x55667788)
    assert ok.ok and ok.reply_identification == 0x55667788_00000001
    bad = replay.check_nonce(0x1234ABCE_00000001, 0x1234ABCD, 0x99999999)
    assert not bad.ok and bad.reply_identification == 0x99999999_00000001
