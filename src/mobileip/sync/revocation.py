"""RFC 3543 revocation state across the redundancy group, sans-IO (docs/revocation.md,
"Failover"; wire layout in docs/sync-protocol.md, "Revocation State (types 70, 71)").

:class:`RevocationReplicator` is the engine's :class:`~mobileip.sync.context.SyncExtension`: it
sends the :class:`~mobileip.core.revocation.RevocationAgent`'s changed entries to every member in
Revocation State messages (type 70), acked (type 71) and retransmitted with backoff like Binding
Updates (a retransmission carries the *current* entry of each binding end), and merges what
peers send into the agent (newer version wins). Each member it learns of gets one ``REQUEST``: a
member answers it with its whole state, so a booting member gets the revocation state after (and
independently of) the bulk download.

Old members drop types 70 and 71 as ``unknown-type`` and never ack: a member that never acked
any of ours is given up on after ``max_retransmits`` rounds and gets no more revocation state
(counted ``peers_unsupported``); one that acked before and goes silent keeps its missed keys and
gets them when it is heard again.

Sends go through ``ctx.send_now`` when the transport set one (the daemon), else into ``ctx.out``
(the engine's :meth:`datagrams_to_send`). Nothing here reads a clock.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from mobileip.core.revocation import Key, RevocationAgent
from mobileip.sync.context import SyncContext
from mobileip.sync.members import Endpoint, Member
from mobileip.wire import sync as wire

WINDOW = 4  # Revocation State messages in flight per member
MAX_BACKOFF = 2.0  # seconds: cap of the retransmission interval
READY_TIMEOUT = 3.0  # seconds after start: ready even without every member's end of snapshot


@dataclass(slots=True)
class _InFlight:
    keys: tuple[Key, ...]
    request: bool
    sent_at: float
    tries: int = 0


@dataclass(slots=True)
class _Peer:
    supported: bool | None = None  # None: not known yet
    dirty: dict[Key, None] = field(default_factory=dict)
    inflight: dict[int, _InFlight] = field(default_factory=dict)
    missed: dict[Key, None] = field(default_factory=dict)
    gave_up_at: float | None = None
    reachable: bool | None = None  # as the engine last saw it (None: not looked yet)
    epoch: int = 0  # its boot epoch as the engine last saw it
    snapshot_owed: bool = False  # it asked for our state: an end marker once all of it is acked
    snapshot_done: bool = False  # it sent us its end marker (its whole state is applied)


class RevocationReplicator:
    def __init__(self, ctx: SyncContext, agent: RevocationAgent) -> None:
        self.ctx = ctx
        self.agent = agent
        self.peers: dict[Endpoint, _Peer] = {}
        self.counters: Counter[str] = Counter()
        # keys whose entries a member acked (the daemon releases held first sends) and whether
        # anything changed the agent; the daemon drains both after each call (``notify``)
        self.acked_keys: list[Key] = []
        self.notify: Callable[[], None] | None = None
        self._now = 0.0
        self._started: float | None = None
        self.ready = False  # latched by snapshot_complete

    # --- outgoing --------------------------------------------------------------------------

    def _peer(self, ep: Endpoint, now: float) -> _Peer:
        peer = self.peers.get(ep)
        if peer is None:
            peer = self.peers[ep] = _Peer()
            self._send(ep, peer, (), True, now)  # a member we did not know: ask for its state
        return peer

    def has_peers(self) -> bool:
        """True when some reachable member may take our state (held first sends wait for it)."""
        return any(
            m.reachable and self.peers.get(m.endpoint, _Peer()).supported is not False
            for m in self.ctx.members.values()
        )

    def publish(self, now: float) -> None:
        """Send the agent's changes to every member that takes them."""
        self._now = now
        changes = self.agent.take_changes()
        for ep in list(self.ctx.members):
            peer = self._peer(ep, now)
            if peer.supported is False:
                continue
            for e in changes:
                peer.dirty[e.key] = None
            self._flush(ep, peer, now)

    def request_snapshot(self, now: float) -> None:
        """Ask every known member for its whole revocation state (at start)."""
        self._now = now
        self._started = now
        for ep in list(self.ctx.members):
            self._peer(ep, now)

    def resync(self, now: float) -> None:
        """The member became active: ask every reachable member for its whole state again.
        The old active replicated its last entries to some members only (sync loss) and
        nobody forwards what it applied, so a new active that missed a pending revocation
        picked a second identifier for the same negotiation on the next `clear binding`
        (found by the simulator, seed 1471 with 5 members). The answers merge like any other
        entries (a pending one is resumed at once). New revocations are not deferred for it:
        deferring them moved them into the next role change, where a stale view's FORGOTTEN
        outranked them (the simulator, seed 71), docs/revocation.md."""
        self._now = now
        for ep, member in self.ctx.members.items():
            peer = self.peers.get(ep)
            if peer is None or peer.supported is False or not member.reachable:
                continue
            self.counters["requests-on-takeover"] += 1
            self._send(ep, peer, (), True, now)

    def snapshot_complete(self, now: float) -> bool:
        """True (and latched) once every member that takes our state sent its end of snapshot
        (an empty, non-request Revocation State after all its entries were acked), or
        :data:`READY_TIMEOUT` after start. Until then the agent defers revocations: its view
        may be stale (found by the simulator: a restarted member that preempted before the
        state arrived revoked a negotiation the group had already ended)."""
        if self.ready:
            return True
        if self._started is not None and now >= self._started + READY_TIMEOUT:
            self.counters["ready-by-timeout"] += 1
            self.ready = True
        elif all(
            p.snapshot_done or p.supported is False
            for ep, p in self.peers.items()
            if ep in self.ctx.members
        ):
            self.ready = True
        return self.ready

    def _flush(self, ep: Endpoint, peer: _Peer, now: float) -> None:
        per_message = max(1, self.ctx.budget() // wire.ENTRY_LEN)
        while peer.dirty and len(peer.inflight) < WINDOW:
            keys: list[Key] = []
            while peer.dirty and len(keys) < per_message:
                key, _ = peer.dirty.popitem()  # O(1), newest first: order does not matter
                if key in self.agent.entries:
                    keys.append(key)
            if keys:
                self._send(ep, peer, tuple(keys), False, now)
        if peer.snapshot_owed and not peer.dirty and not peer.inflight:
            peer.snapshot_owed = False  # everything before it was acked: the end marker
            self.counters["snapshot-ends-sent"] += 1
            self._send(ep, peer, (), False, now)

    def _send(
        self, ep: Endpoint, peer: _Peer, keys: tuple[Key, ...], request: bool, now: float
    ) -> _InFlight:
        ctx = self.ctx
        entries = tuple(self.agent.entries[k] for k in keys if k in self.agent.entries)
        ident = ctx.next_ident()
        msg = wire.RevocationState(
            ctx.settings.group, ctx.settings.node_id, ctx.next_sequence(), ident, request, entries
        )
        sent = peer.inflight[ident] = _InFlight(tuple(e.key for e in entries), request, now)
        self.counters["requests-sent" if request else "states-sent"] += 1
        self.counters["entries-sent"] += len(entries)
        self._transmit(msg, ep)
        return sent

    def _transmit(self, msg: wire.SyncMessage, ep: Endpoint) -> None:
        ctx = self.ctx
        if ctx.send_now is not None:
            ctx.send_now(wire.encode(msg, ctx.auth), ep)
        else:
            ctx.send(msg, ep)

    # --- incoming (SyncExtension) ------------------------------------------------------------

    def on_message(self, msg: wire.SyncMessage, member: Member, now: float) -> None:
        self._now = now
        ep = member.endpoint
        peer = self._peer(ep, now)
        if peer.supported is not True:
            peer.supported = True
            self._resend_missed(ep, peer, now)
        if isinstance(msg, wire.RevocationStateAck):
            sent = peer.inflight.pop(msg.identification, None)
            if sent is None:
                self.counters["acks-unexpected"] += 1
                return
            self.counters["acks-received"] += 1
            self.acked_keys.extend(sent.keys)
            self._flush(ep, peer, now)
            self._notify()
            return
        if not isinstance(msg, wire.RevocationState):
            return
        ctx = self.ctx
        ack = wire.RevocationStateAck(
            ctx.settings.group, ctx.settings.node_id, ctx.next_sequence(), msg.identification
        )
        self._transmit(ack, ep)
        self.counters["states-received"] += 1
        if not msg.request and not msg.entries:
            peer.snapshot_done = True  # its end of snapshot: we have its whole state
            self.counters["snapshot-ends-received"] += 1
            changed_ready = not self.ready and self.snapshot_complete(now)
        else:
            changed_ready = False
        changed = sum(self.agent.apply(e, now) for e in msg.entries)
        self.counters["entries-applied"] += changed
        if msg.request:
            self.counters["snapshots-sent"] += 1
            peer.snapshot_owed = True
            for key in self.agent.entries:
                peer.dirty[key] = None
        self._flush(ep, peer, now)
        if changed or changed_ready:
            self._notify()

    def _notify(self) -> None:
        if self.notify is not None:
            self.notify()

    def _resend_missed(self, ep: Endpoint, peer: _Peer, now: float) -> None:
        if peer.missed:
            peer.dirty.update(peer.missed)
            peer.missed.clear()
            self._flush(ep, peer, now)

    # --- time --------------------------------------------------------------------------------

    def _retx_at(self, sent: _InFlight) -> float:
        interval: float = self.ctx.settings.retransmit_interval * (2.0**sent.tries)
        return sent.sent_at + min(interval, MAX_BACKOFF)

    def _watch_reachability(self, now: float) -> None:
        """Anti-entropy on membership changes (found by the simulator: a member cut off while
        the active replicated to the others never got those entries once the active died, as
        nobody forwards what it applied). A member that became reachable again is asked for its
        whole state; when a member became unreachable or restarted (a new epoch), every still
        reachable one is (what the lost member sent some of us, the others may have missed)."""
        lost = False
        for ep, member in self.ctx.members.items():
            peer = self.peers.get(ep)
            if peer is None:
                continue
            if member.epoch != peer.epoch:
                lost = lost or peer.epoch != 0  # it restarted: its earlier life is lost
                peer.epoch = member.epoch
            was, peer.reachable = peer.reachable, member.reachable
            if was is None or peer.supported is False:
                continue
            if member.reachable and not was:
                self.counters["requests-on-reachable"] += 1
                self._send(ep, peer, (), True, now)
            elif was and not member.reachable:
                lost = True
        if lost:
            for ep, member in self.ctx.members.items():
                peer = self.peers.get(ep)
                if peer is not None and member.reachable and peer.supported is not False:
                    self.counters["requests-on-member-lost"] += 1
                    self._send(ep, peer, (), True, now)

    def on_timer(self, now: float) -> None:
        self._now = now
        limit = self.ctx.settings.max_retransmits
        self._watch_reachability(now)
        for ep, peer in list(self.peers.items()):
            member = self.ctx.members.get(ep)
            if (
                peer.missed
                and member is not None
                and member.last_heard is not None
                and peer.gave_up_at is not None
                and member.last_heard > peer.gave_up_at
            ):
                self._resend_missed(ep, peer, now)  # heard again after we gave up
            for ident, sent in list(peer.inflight.items()):
                if now < self._retx_at(sent):
                    continue
                del peer.inflight[ident]
                if sent.tries >= limit:
                    peer.gave_up_at = now
                    if peer.supported is None:
                        peer.supported = False
                        peer.dirty.clear()
                        peer.inflight.clear()
                        self.counters["peers-unsupported"] += 1
                        break
                    self.counters["gave-up"] += 1
                    peer.missed.update(dict.fromkeys(sent.keys))
                    continue
                self.counters["retransmitted"] += 1
                again = self._send(ep, peer, sent.keys, sent.request, now)
                again.tries = sent.tries + 1
            if peer.supported is not False:
                self._flush(ep, peer, now)
        for ep in self.ctx.members:
            if ep not in self.peers:
                self._peer(ep, now)  # a member learned since: ask it for its state

    def deadline(self) -> float | None:
        times = [self._retx_at(s) for p in self.peers.values() for s in p.inflight.values()]
        if any(ep not in self.peers for ep in self.ctx.members):
            times.append(self._now)
        if not self.ready and self._started is not None:
            times.append(self._started + READY_TIMEOUT)
        return min(times, default=None)

    def status(self) -> dict[str, object]:
        return {
            "peers": {
                f"{ep[0]}:{ep[1]}": {
                    "supported": p.supported,
                    "in_flight": len(p.inflight),
                    "queued": len(p.dirty),
                    "missed": len(p.missed),
                    "snapshot_done": p.snapshot_done,
                }
                for ep, p in self.peers.items()
            },
            "ready": self.ready,
            "counters": dict(self.counters),
        }
