"""What one member knows about another member of its redundancy group.

Members are keyed by their sync endpoint ``(ip, port)``: that is where we send to, and the source
of every datagram they send. Their node id is learned from the first authenticated message.
"""

from __future__ import annotations

from dataclasses import dataclass, field

Endpoint = tuple[str, int]


@dataclass
class Member:
    endpoint: Endpoint
    node_id: int = 0  # 0 until heard from
    configured: bool = False
    last_heard: float | None = None
    reachable: bool = True  # configured peers start False: not heard from yet
    synced: bool = False
    epoch: int = 0  # high 32 bits of its last sequence: its boot time
    # reliable updates: home address -> version it still has to acknowledge
    pending: dict[int, int] = field(default_factory=dict)
    next_retx: float | None = None
    retx_count: int = 0
    # anti-entropy: the last digest it sent and ours at that moment, to repair only stable diffs
    last_digest: tuple[int, ...] = ()
    our_digest_then: tuple[int, ...] = ()

    def heard(self, now: float) -> None:
        self.last_heard = now

    def describe(self, now: float) -> dict[str, object]:
        host, port = self.endpoint
        return {
            "node_id": _dotted(self.node_id) if self.node_id else None,
            "address": host,
            "port": port,
            "configured": self.configured,
            "reachable": self.reachable,
            "synced": self.synced,
            "last_contact": None if self.last_heard is None else round(now - self.last_heard, 3),
            "pending_updates": len(self.pending),
        }


def _dotted(n: int) -> str:
    return ".".join(str((n >> s) & 0xFF) for s in (24, 16, 8, 0))
