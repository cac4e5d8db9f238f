"""Cold start: when a member that found no SYNCED member may declare itself SYNCED.

docs/sync-protocol.md "Cold start". If every member boots at once, every Table Request is
answered NOT_SYNCED. After ``cold_start_rounds`` request rounds of ``boot_wait`` with no SYNCED
member heard recently, the member with the lowest node id among those it heard declares itself
SYNCED and the others download from it; a member that heard nobody for those rounds is alone and
declares itself SYNCED. The download requester (:mod:`~mobileip.sync.download`) asks
:func:`cold_start_verdict` each time a request round passes without an answer it can use.
"""

from __future__ import annotations

from collections.abc import Iterable

from mobileip.sync.context import SyncSettings
from mobileip.sync.members import Member


def cold_start_verdict(
    settings: SyncSettings, members: Iterable[Member], started: float, rounds: int, now: float
) -> str | None:
    """Why this member should declare itself SYNCED after request round ``rounds`` (started at
    ``started``) passed unanswered, or None to request the table again."""
    heard = [
        m
        for m in members
        if m.last_heard is not None and m.last_heard >= started - settings.boot_wait
    ]
    synced_alive = [
        m
        for m in heard
        if m.synced and m.last_heard is not None and now - m.last_heard < settings.unreachable_after
    ]
    lowest = min([settings.node_id, *(m.node_id for m in heard)])
    if not synced_alive and rounds >= settings.cold_start_rounds and lowest == settings.node_id:
        return f"cold start: lowest node id of {len(heard) + 1}"
    if not heard and rounds >= settings.cold_start_rounds:
        return "no member answered"
    return None
