"""Bulk table download (the patent's FIG 4 and FIG 5) as two small state holders.

The responder (:class:`BulkSender`) first sends one TableSync carrying only the peer list (FIG 5
block 512). Only when the requester acknowledges *that* message does it stream the bindings, in
chunks of at most the datagram budget, with a go-back-N window: acks are cumulative (``more_bind``
counts the records received in order), a timeout resends every chunk in flight. Chunks are
rebuilt from the table at each (re)send, so they carry the current state, never a stale copy.

The requester (:class:`BulkReceiver`) accepts chunks only in order, applies them by version
(records for homes it holds nothing of are stored in bulk, the others merged: see
:func:`mobileip.sync.records.apply_chunk`), and is done when the chunk flagged ``final`` arrives
in order.

The protocol logic that drives them (both sides) is :mod:`mobileip.sync.download`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mobileip.sync.members import Endpoint


@dataclass
class Chunk:
    start: int  # index into the snapshot
    end: int
    more_bind: int  # cumulative records up to and including this chunk
    final: bool


@dataclass
class BulkSender:
    requester: Endpoint
    identification: int
    snapshot: list[int]  # home addresses, taken when the request arrived
    peers_acked: bool = False
    position: int = 0  # next snapshot index to put in a chunk
    sent_records: int = 0  # records put in chunks so far
    in_flight: list[Chunk] = field(default_factory=list)
    done_sending: bool = False
    deadline: float = 0.0  # when the oldest unacked message times out
    timeouts: int = 0

    @property
    def finished(self) -> bool:
        return self.done_sending and not self.in_flight and self.peers_acked


@dataclass
class BulkReceiver:
    identification: int
    started: float
    responder: Endpoint | None = None
    received: int = 0
    chunks: int = 0  # chunks with records accepted in order
    last_progress: float = 0.0
    answers: dict[Endpoint, int] = field(default_factory=dict)  # endpoint -> code of its answer
    rounds: int = 1
