"""HA-HA group key rollover, sans-IO: which keys sign and verify at a given wall-clock time.

Rolling the group key without a moment where two members cannot read each other:

1. every member is reconfigured (one at a time, in any order) with the new ``spi``/``key`` and
   the old one as ``previous_spi``/``previous_key``, and the same ``key_switch`` time in the
   future. Until then they sign with the *old* key and accept both, so reconfigured and not yet
   reconfigured members understand each other;
2. at ``key_switch`` every member signs with the new key; both keys still verify for
   ``key_overlap`` seconds, which covers clock skew between members and messages in flight;
3. after ``key_switch + key_overlap`` only the new key verifies: a message signed with the old
   one is a security violation ("bad-spi").

:meth:`KeyRollover.auth_at` gives the :class:`GroupAuth` for a wall-clock time and
:meth:`KeyRollover.next_change` when it next changes; the caller (daemon/keyroll.py) swaps the
engine's ``auth`` at those times. Nothing here reads a clock.
"""

from __future__ import annotations

from dataclasses import dataclass

from mobileip.wire.sync import GroupAuth, GroupKey


@dataclass(frozen=True, slots=True)
class KeyRollover:
    current: GroupKey
    previous: GroupKey | None = None
    switch_at: float = 0.0  # Unix seconds
    overlap: float = 300.0

    def __post_init__(self) -> None:
        if self.previous is not None and self.previous.spi == self.current.spi:
            raise ValueError("the previous key needs its own SPI")
        if self.overlap < 0:
            raise ValueError(f"overlap {self.overlap} < 0")

    def phase(self, wall: float) -> str:
        """ "single", "before-switch", "overlap" or "done"."""
        if self.previous is None:
            return "single"
        if wall < self.switch_at:
            return "before-switch"
        if wall < self.switch_at + self.overlap:
            return "overlap"
        return "done"

    def auth_at(self, wall: float) -> GroupAuth:
        phase = self.phase(wall)
        if phase in ("single", "done") or self.previous is None:
            return GroupAuth([self.current], self.current.spi)
        send = self.previous.spi if phase == "before-switch" else self.current.spi
        return GroupAuth([self.current, self.previous], send)

    def next_change(self, wall: float) -> float | None:
        """The wall-clock time :meth:`auth_at` next gives something different, or None."""
        phase = self.phase(wall)
        if phase == "before-switch":
            return self.switch_at
        if phase == "overlap":
            return self.switch_at + self.overlap
        return None
