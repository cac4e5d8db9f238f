"""Anti-replay for HA-HA sync messages: a per-sender sliding window on the 64-bit ``sequence``.

``sequence = (epoch << 32) | counter``. The epoch is the sender's boot time in whole seconds, so
a restarted sender starts a new, larger epoch; the counter starts at 1 and grows by one for every
datagram the sender emits (a retransmission is a new datagram with a new sequence and the same
identification, so a receiver that already applied the original still answers it).

Within an epoch the receiver keeps an IPsec-style window (RFC 4303 3.4.3) of the last ``size``
counters below the highest one seen: newer counters are accepted and slide the window, counters
inside it are accepted once, counters below it are "too-old". A newer epoch resets the window;
an older epoch is rejected. At most ``max_senders`` senders are tracked; the least recently
accepted one is forgotten first (the group has a handful of members, and a message reaches this
window only after its authenticator checked out, so only group members can fill it).

Pure code, no clock. ``check`` is read-only, so a message can be parsed and authenticated,
checked, applied, and only then recorded with ``accept``.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

DEFAULT_WINDOW = 128
MIN_WINDOW = 64
DEFAULT_MAX_SENDERS = 1024
_U32 = 0xFFFFFFFF


def make_sequence(epoch: int, counter: int) -> int:
    """The 64-bit sequence for ``counter`` in ``epoch``."""
    if not 0 <= epoch <= _U32 or not 0 <= counter <= _U32:
        raise ValueError(f"epoch {epoch} and counter {counter} must each fit in 32 bits")
    return (epoch << 32) | counter


def split_sequence(sequence: int) -> tuple[int, int]:
    """``(epoch, counter)`` of a 64-bit sequence."""
    return sequence >> 32, sequence & _U32


class SequenceCounter:
    """A sender's sequence source: one epoch, counters 1, 2, 3, ...

    ``epoch`` must be larger than every epoch an earlier run of this member used: the boot time
    in whole seconds does that as long as the member does not send before the wall clock has
    passed the second its previous run started in (see docs/sync-protocol.md, "Replay window").
    """

    def __init__(self, epoch: int) -> None:
        if not 0 <= epoch <= _U32:
            raise ValueError(f"epoch {epoch} does not fit in 32 bits")
        self.epoch = epoch
        self._counter = 0

    def next(self) -> int:
        if self._counter == _U32:
            raise OverflowError("sequence counter exhausted in this epoch; restart with a new one")
        self._counter += 1
        return make_sequence(self.epoch, self._counter)


@dataclass(slots=True)
class _SenderWindow:
    epoch: int
    highest: int  # highest counter accepted in this epoch
    bitmap: int  # bit i set: counter (highest - i) was accepted


class ReplayWindow:
    """Per-sender anti-replay state for the redundancy group."""

    def __init__(self, size: int = DEFAULT_WINDOW, max_senders: int = DEFAULT_MAX_SENDERS) -> None:
        if size < MIN_WINDOW:
            raise ValueError(f"window size {size} < {MIN_WINDOW}")
        if max_senders < 1:
            raise ValueError(f"max_senders {max_senders} < 1")
        self.size = size
        self.max_senders = max_senders
        self.evicted = 0  # senders forgotten to stay within max_senders
        self._senders: OrderedDict[int, _SenderWindow] = OrderedDict()

    def verdict(self, sender: int, sequence: int) -> str | None:
        """``None`` when acceptable, else why not: "old-epoch", "too-old" or "duplicate"."""
        w = self._senders.get(sender)
        if w is None:
            return None
        epoch, counter = split_sequence(sequence)
        if epoch > w.epoch:
            return None
        if epoch < w.epoch:
            return "old-epoch"
        if counter > w.highest:
            return None
        offset = w.highest - counter
        if offset >= self.size:
            return "too-old"
        return "duplicate" if (w.bitmap >> offset) & 1 else None

    def check(self, sender: int, sequence: int) -> bool:
        """Whether ``sequence`` from ``sender`` would be accepted. Changes nothing."""
        return self.verdict(sender, sequence) is None

    def accept(self, sender: int, sequence: int) -> bool:
        """Record ``sequence`` from ``sender``; ``False`` (and nothing recorded) if a replay."""
        if not 0 <= sequence <= 0xFFFF_FFFF_FFFF_FFFF:
            raise ValueError(f"sequence {sequence} does not fit in 64 bits")
        if self.verdict(sender, sequence) is not None:
            return False
        epoch, counter = split_sequence(sequence)
        w = self._senders.get(sender)
        if w is None or epoch > w.epoch:
            self._senders[sender] = _SenderWindow(epoch, counter, 1)
            self._senders.move_to_end(sender)
            while len(self._senders) > self.max_senders:
                self._senders.popitem(last=False)
                self.evicted += 1
            return True
        mask = (1 << self.size) - 1
        if counter > w.highest:
            shift = counter - w.highest
            w.bitmap = ((w.bitmap << shift) | 1) & mask if shift < self.size else 1
            w.highest = counter
        else:
            w.bitmap |= 1 << (w.highest - counter)
        self._senders.move_to_end(sender)
        return True

    def forget(self, sender: int) -> None:
        """Drop ``sender``'s state (e.g. it left the group). Its next message starts afresh."""
        self._senders.pop(sender, None)

    def __contains__(self, sender: int) -> bool:
        return sender in self._senders

    def __len__(self) -> int:
        return len(self._senders)
