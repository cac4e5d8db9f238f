"""Anti-replay window for sync messages (mobileip.sync.replay)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mobileip.sync.replay import (
    DEFAULT_WINDOW,
    ReplayWindow,
    SequenceCounter,
    make_sequence,
    split_sequence,
)

A, B = 11, 12
E = 0x65000000  # an epoch (boot time in seconds)


def seq(counter: int, epoch: int = E) -> int:
    return make_sequence(epoch, counter)


def test_sequence_layout() -> None:
    assert make_sequence(0x65000000, 42) == 0x65000000_0000002A
    assert split_sequence(0x65000000_0000002A) == (0x65000000, 42)
    with pytest.raises(ValueError):
        make_sequence(2**32, 0)
    with pytest.raises(ValueError):
        make_sequence(0, 2**32)


def test_first_message_from_a_sender_is_accepted() -> None:
    win = ReplayWindow()
    assert win.check(A, seq(1000))
    assert A not in win  # check records nothing
    assert win.accept(A, seq(1000))
    assert A in win and len(win) == 1


def test_duplicate_is_rejected() -> None:
    win = ReplayWindow()
    assert win.accept(A, seq(5))
    assert not win.check(A, seq(5))
    assert win.verdict(A, seq(5)) == "duplicate"
    assert not win.accept(A, seq(5))


def test_check_is_read_only() -> None:
    win = ReplayWindow()
    win.accept(A, seq(5))
    for _ in range(3):
        assert win.check(A, seq(6))
    assert win.accept(A, seq(6))
    assert not win.check(A, seq(6))


def test_reordered_within_window_accepted_once() -> None:
    win = ReplayWindow(size=64)
    for c in (10, 7, 9, 8, 12, 11):
        assert win.accept(A, seq(c)), c
    for c in range(7, 13):
        assert win.verdict(A, seq(c)) == "duplicate"
    # gaps below the highest stay open
    assert win.accept(A, seq(3))
    assert win.accept(A, seq(1))
    assert not win.accept(A, seq(3))


def test_window_edges() -> None:
    win = ReplayWindow(size=64)
    assert win.accept(A, seq(100))
    assert win.check(A, seq(100 - 63))  # the oldest counter inside the window
    assert win.verdict(A, seq(100 - 64)) == "too-old"
    assert win.accept(A, seq(37))
    assert not win.accept(A, seq(37))
    # sliding forward by one pushes 37 out: now too old rather than duplicate
    assert win.accept(A, seq(101))
    assert win.verdict(A, seq(37)) == "too-old"
    assert win.verdict(A, seq(38)) is None


def test_too_old_is_rejected() -> None:
    win = ReplayWindow()
    assert win.accept(A, seq(1000))
    assert win.verdict(A, seq(1000 - DEFAULT_WINDOW)) == "too-old"
    assert win.verdict(A, seq(1)) == "too-old"
    assert not win.accept(A, seq(1))


def test_big_jump_clears_the_window_cheaply() -> None:
    win = ReplayWindow()
    assert win.accept(A, seq(1))
    assert win.accept(A, seq(2**32 - 1))  # a shift of 2**32 must not build a huge bitmap
    assert win.verdict(A, seq(2**32 - 1)) == "duplicate"
    assert win.verdict(A, seq(1)) == "too-old"
    assert win.accept(A, seq(2**32 - 2))


def test_new_epoch_resets_and_old_epoch_rejected() -> None:
    win = ReplayWindow()
    assert win.accept(A, seq(5000, E))
    # the sender restarted: new epoch, counter starts again at 1
    assert win.accept(A, seq(1, E + 30))
    assert win.accept(A, seq(2, E + 30))
    assert win.verdict(A, seq(1, E + 30)) == "duplicate"
    # anything from the previous run is now a replay, however new its counter
    assert win.verdict(A, seq(5001, E)) == "old-epoch"
    assert not win.accept(A, seq(6000, E))
    # a restart within the same second would reuse the epoch: its low counters are refused,
    # which is why a member must not send before its epoch second has passed (see the docs)
    assert win.verdict(A, seq(1, E + 30)) == "duplicate"


def test_senders_are_independent() -> None:
    win = ReplayWindow()
    assert win.accept(A, seq(7))
    assert win.accept(B, seq(7))
    assert not win.accept(A, seq(7))
    assert not win.accept(B, seq(7))


def test_bounded_senders_forget_least_recently_accepted() -> None:
    win = ReplayWindow(max_senders=3)
    for s in (1, 2, 3):
        assert win.accept(s, seq(10))
    assert win.accept(1, seq(11))  # 1 is now the most recent; 2 the least
    assert win.accept(4, seq(10))
    assert len(win) == 3
    assert 2 not in win and {1, 3, 4} <= {s for s in (1, 2, 3, 4) if s in win}
    assert win.check(2, seq(10))  # forgotten: starts afresh


def test_forget() -> None:
    win = ReplayWindow()
    win.accept(A, seq(10))
    win.forget(A)
    win.forget(B)  # unknown: no error
    assert win.accept(A, seq(10))


def test_rejected_accept_changes_nothing() -> None:
    win = ReplayWindow(size=64)
    win.accept(A, seq(100))
    assert not win.accept(A, seq(1))
    assert not win.accept(A, seq(50, E - 1))
    assert win.check(A, seq(99)) and win.verdict(A, seq(100)) == "duplicate"


def test_parameters_validated() -> None:
    with pytest.raises(ValueError):
        ReplayWindow(size=32)
    with pytest.raises(ValueError):
        ReplayWindow(max_senders=0)
    with pytest.raises(ValueError):
        ReplayWindow().accept(A, 2**64)


def test_sequence_counter() -> None:
    c = SequenceCounter(E)
    assert [c.next() for _ in range(3)] == [seq(1), seq(2), seq(3)]
    c._counter = 2**32 - 2
    assert c.next() == seq(2**32 - 1)
    with pytest.raises(OverflowError):
        c.next()
    with pytest.raises(ValueError):
        SequenceCounter(2**32)


@given(
    st.integers(64, 200),
    st.lists(st.tuples(st.integers(0, 3), st.integers(0, 400)), max_size=300),
)
def test_matches_reference_model(size: int, events: list[tuple[int, int]]) -> None:
    """Against a naive model: remember everything, accept if unseen and within the window."""
    win = ReplayWindow(size=size)
    seen: dict[int, set[int]] = {}
    top: dict[int, int] = {}  # highest epoch seen
    high: dict[int, int] = {}  # highest counter in that epoch
    for epoch_off, counter in events:
        epoch = E + epoch_off
        s = seq(counter, epoch)
        if A not in top or epoch > top[A]:
            expected = True
        elif epoch < top[A]:
            expected = False
        else:
            expected = s not in seen[A] and counter > high[A] - size
        assert win.check(A, s) == expected
        assert win.accept(A, s) == expected
        if expected:
            if A not in top or epoch > top[A]:
                top[A], high[A], seen[A] = epoch, counter, set()
            high[A] = max(high[A], counter)
            seen[A].add(s)
