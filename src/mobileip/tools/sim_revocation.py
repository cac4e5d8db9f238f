"""RFC 3543 revocation in the seeded fault simulator: virtual time, seeded faults, no sockets.

``RevocationSimulation(seed).run()`` drives N Home Agent members (each a :class:`HomeAgentCore`,
a :class:`SyncEngine` with the :class:`RevocationReplicator` extension and a
:class:`RevocationAgent`), two of our foreign agents (``agents/fa/rules.py``, the real rules) on
lossy links, and mobile nodes that register through them with revocation negotiated. The
operator clears bindings and removes keys on the active member; a seeded schedule crashes
members (mostly the active: a takeover after VRRP's Master_Down_Interval), restarts them (a
restarted member lost everything and asks for the revocation state again; once SYNCED it
preempts, as the role driver lets it), isolates members from the sync (partitions), loses,
duplicates and delays sync datagrams, and loses revocations and acks on the foreign agents'
links. The same seed always replays the same run (``python -m mobileip.tools.sim_revocation
--seed N --members M``); ``python -m mobileip.tools.sim --sweep`` runs it for every seed.

Invariants (docs/revocation.md, "Failover"; checked as the run goes and after a quiet period):

* **never duplicated**: for each negotiation of a binding end (home, care-of address, our
  Revocation Support timestamp), the foreign agent sees at most one revocation identifier
  (copies of it are allowed). The one exception it allows and counts
  (``unreplicated_duplicates``): an identifier first sent while no peer held it (the hold ran
  out, the active was cut off from the group) by an active that then died: the new active does
  not know it and a later ``clear binding`` picks another; and (``stale_active_duplicates``) an
  identifier made by a member that was cut off from the sync since the first one was made
  (roles come from VRRP, which the model keeps working: a split of the sync link alone).
  The same identifier made again for the same negotiation (a member that missed the first)
  is a copy. An identifier picked again for another negotiation is a violation, unless it was
  first sent while no peer held it and every member that held it is dead
  (``unreplicated_reuses``: nobody alive can know it);
* **never lost**: every revocation that a member still alive at the end held (the creator, or a
  peer that took its replicated entry) is acked by the foreign agent, unless a new registration
  of the binding end superseded it or it gave up after ``max_attempts`` copies (the FA link lost
  them all: the protocol's own limit, counted ``gave_up``), or a registration of its home
  through another care-of address was accepted after it by an active cut off from the sync
  since before it was made (``stale_active_losses``: that stale view forgot the negotiation, a
  newer entry than the pending revocation);
* **nothing settled re-sent**: no member sends a revocation it holds as settled (after a
  takeover, only copies already in flight may reach the FA again);
* **agreement**: after convergence every member holds the same revocation entries (state,
  version, identifier, attempts) and the same pending revocations.

Not modelled: split brain (the roles come from an oracle: the first alive, SYNCED member by
priority; partitions cut the sync only), binding expiry (lifetimes outlast the run), the
mobile node's reaction to being told (it registers again at its next operation).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from ipaddress import IPv4Address

from mobileip.agents.fa import rules as fa
from mobileip.core.bindings import BindingTable
from mobileip.core.homeagent import BindingChanged, HomeAgentCore, HomeAgentSettings
from mobileip.core.replay import ntp_from_unix
from mobileip.core.revocation import RevocationAgent, RevocationSettings, Send
from mobileip.core.security import SecurityAssociation, SecurityAssociations, append_auth
from mobileip.sync.engine import SyncEngine, SyncState
from mobileip.sync.members import Endpoint
from mobileip.sync.revocation import RevocationReplicator
from mobileip.tools.sim_faults import (
    HA_ADDRESS,
    SA,
    WALL_BASE,
    EventQueue,
    LinkFaults,
    SimMember,
    draw_partitions,
    members_for,
)
from mobileip.wire import registration as reg
from mobileip.wire import revocation as rw
from mobileip.wire.sync.revocation import EntryState

FA_HA = SecurityAssociation(0x1000, "hmac-md5", b"fa-ha-shared-key", ())
FA_ADDRESSES = (IPv4Address("192.0.2.1"), IPv4Address("192.0.2.2"))
FA_PORT = 434
MASTER_DOWN = 0.35  # VRRP Master_Down_Interval at 0.1 s adverts
REPLICATE_HOLD = 0.5
NegotiationId = tuple[int, int, int]  # home, care-of address, our Revocation Support timestamp
RevId = tuple[int, int]  # home, revocation identifier
# entries whose identifier is their own revocation's (NEGOTIATED and FORGOTTEN ones carry their
# writer's last identifier, docs/sync-protocol.md)
_REVOKING = (EntryState.PENDING, EntryState.SETTLED)


@dataclass
class RevocationFaults:
    sync_loss: float
    duplicate: float
    max_delay: float
    fa_loss: float  # each revocation, each ack, each relayed request or reply
    fa_outages: list[tuple[float, float, int]]  # (start, end, foreign agent): its link is down
    partitions: list[tuple[float, float, int]]  # (start, end, member): cut off from the sync
    crashes: list[tuple[float, float, bool, int]]  # (down, up, the active?, else this member)
    # the next revocations after t=5 each kill the active mid-retransmission: its FA's link is
    # down for 1.5 s from the revocation, the active dies 0-1.2 s after it, for good or a while
    kill_after_revoke: int = 0


@dataclass
class RevocationReport:
    seed: int
    members: int
    negotiated: int = 0  # accepted registrations that negotiated revocation
    revocations: int = 0  # identifiers created (clear binding, key removed)
    acked: int = 0  # identifiers the foreign agents acked
    takeovers: int = 0
    resumed: int = 0  # pending revocations a new active resumed
    copies: int = 0  # extra copies of an identifier at a foreign agent (allowed)
    superseded: int = 0
    gave_up: int = 0
    lost_with_holders: int = 0  # every member that held it crashed (allowed)
    unreplicated_duplicates: int = 0  # a second identifier after an unreplicated one (allowed)
    stale_active_duplicates: int = 0  # a second one by an active cut off from the sync (allowed)
    unreplicated_reuses: int = 0  # an unreplicated identifier, its holders dead, picked again
    stale_active_losses: int = 0  # ended by a registration at an active cut off from the sync
    revoked_otherwise: int = 0  # never acked, its negotiation acked under another identifier
    violations: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations


class RevMember(SimMember):
    def __init__(self, sim: RevocationSimulation, index: int) -> None:
        super().__init__(index)
        self.sim = sim
        self.core: HomeAgentCore
        self.engine: SyncEngine
        self.agent: RevocationAgent
        self.replicator: RevocationReplicator

    def boot(self, now: float) -> None:
        self.boots += 1
        table = BindingTable(tombstone_ttl=1900.0)
        settings = HomeAgentSettings(HA_ADDRESS, replay="timestamp", node_id=self.node_id)
        self.core = HomeAgentCore(settings, SecurityAssociations([SA]), table)
        peers = tuple(m.endpoint for m in self.sim.members if m is not self)
        self.engine = self.new_engine(peers, table, now)
        rev = RevocationSettings(HA_ADDRESS, {a: FA_HA for a in FA_ADDRESSES})
        self.agent = RevocationAgent(rev, active=False, boot_wall=WALL_BASE + now)
        self.replicator = RevocationReplicator(self.engine.context, self.agent)
        self.agent.ready = False  # until the group's revocation state arrived
        self.engine.extension = self.replicator
        self.alive = True
        self.armed = None
        self.engine.start(now)
        self.replicator.request_snapshot(now)

    @property
    def incarnation(self) -> tuple[int, int]:
        return (self.index, self.boots)


class RevocationSimulation(EventQueue):
    def __init__(
        self,
        seed: int,
        members: int = 3,
        mobile_nodes: int = 24,
        duration: float = 30.0,
        quiet: float = 40.0,
    ) -> None:
        self.seed = seed
        self.rng = random.Random(seed * 104_729 + 3543)
        self.duration = duration
        self.quiet = quiet
        self.members = [RevMember(self, i) for i in range(members)]
        self.by_endpoint = {m.endpoint: m for m in self.members}
        self.fas = [
            fa.ForeignAgentCore(fa.ForeignAgentSettings(frozenset({a}), fa_ha=FA_HA, ha_port=434))
            for a in FA_ADDRESSES
        ]
        self.mobile_nodes = mobile_nodes
        self.report = RevocationReport(seed, members)
        EventQueue.__init__(self)
        self.faults = self._draw_faults()
        self.active: RevMember | None = None
        self.active_since = 0.0
        self.dead_since: float | None = None  # the active died: a takeover is due
        self.mn_last_id: dict[int, int] = {}
        # the oracle
        self.created: dict[RevId, tuple[NegotiationId, float]] = {}  # -> negotiation, when
        self.holders: dict[RevId, set[tuple[int, int]]] = {}  # member incarnations that held it
        self.fa_seen: dict[NegotiationId, set[int]] = {}  # identifiers that reached the FA
        self.fa_acked: set[RevId] = set()
        self.gave_up: set[RevId] = set()
        self.sent: set[RevId] = set()
        self.unreplicated: set[RevId] = set()  # first sent while no peer held it
        self.creator: dict[RevId, int] = {}
        self.registered_at: dict[tuple[int, int], list[float]] = {}  # binding end -> accepts
        self.accepted_by: dict[int, list[tuple[float, int]]] = {}  # home -> (when, member)

    # --- scheduling ---------------------------------------------------------------------------

    def _draw_faults(self) -> RevocationFaults:
        r = self.rng
        n = len(self.members)
        partitions = draw_partitions(r, n, self.duration, 0.3, 6.0)
        crashes = []
        for _ in range(r.randint(1, 3)):
            down = r.uniform(3.0, self.duration - 2)
            up = down + r.uniform(0.5, 6.0) if r.random() < 0.7 else float("inf")  # or never
            crashes.append((down, up, r.random() < 0.75, r.randrange(n)))
        outages = []
        for _ in range(r.randint(0, 2)):
            start = r.uniform(2.0, self.duration - 2)
            outages.append((start, start + r.uniform(0.5, 4.0), r.randrange(len(FA_ADDRESSES))))
        kill_after_revoke = r.choice([0, 0, 1, 2])
        return RevocationFaults(
            kill_after_revoke=kill_after_revoke,
            sync_loss=r.choice([0.0, 0.02, 0.1, 0.3]),
            duplicate=r.choice([0.0, 0.05]),
            max_delay=r.choice([0.0005, 0.005, 0.03]),
            fa_loss=r.choice([0.0, 0.05, 0.2]),
            fa_outages=outages,
            partitions=partitions,
            crashes=crashes,
        )

    def _faulty(self) -> bool:
        return self.now < self.duration

    def _fa_link_down(self, f: int) -> bool:
        if not self._faulty():
            return False
        if any(s <= self.now < e and who == f for s, e, who in self.faults.fa_outages):
            return True
        return self.rng.random() < self.faults.fa_loss

    # --- members ------------------------------------------------------------------------------

    def _pump(self, m: RevMember) -> None:
        """After anything happened at ``m``: publish its changes, send held first copies a peer
        released, put its sync datagrams on the network, note what it holds, re-arm its timer."""
        if not m.agent.ready and m.replicator.snapshot_complete(self.now):
            wall = WALL_BASE + self.now
            before = set(m.agent.pending)
            sends = m.agent.make_ready(self.now, wall)
            self._note_created(m, before)
            self._send_revocations(m, sends)
        if m.agent.changes:
            m.replicator.publish(self.now)
        for _ in range(3):
            keys, m.replicator.acked_keys = m.replicator.acked_keys, []
            if not keys:
                break
            wall = WALL_BASE + self.now
            self._send_revocations(m, [s for k in keys for s in m.agent.release(k, self.now, wall)])
            if m.agent.changes:
                m.replicator.publish(self.now)
        m.engine.events()
        f = self.faults
        link = LinkFaults(self._faulty(), f.partitions, f.sync_loss, f.duplicate, f.max_delay)
        self._sync_send(m, m.engine.datagrams_to_send(), self.by_endpoint, "sync", link)
        self._note_holders(m)
        self._arm(m)

    def _arm(self, m: RevMember) -> None:
        times = (m.engine.next_timer(), m.agent.next_deadline(), m.core.next_deadline())
        deadlines = [t for t in times if t is not None]
        if deadlines:
            when = max(min(deadlines), self.now)
            if m.armed is None or when < m.armed or m.armed < self.now:
                m.armed = when
                self._at(when, "timer", (m, m.boots))

    def _timer(self, m: RevMember) -> None:
        m.armed = None
        timer = m.engine.next_timer()
        if timer is not None and timer <= self.now:
            m.engine.handle_timer(self.now)
        deadline = m.core.next_deadline()
        if deadline is not None and deadline <= self.now:
            m.core.tick(self.now)
        sends, gave_up = m.agent.tick(self.now, WALL_BASE + self.now)
        for g in gave_up:
            self.gave_up.add((int(g.binding.home_address), g.revocation_id))
        self._send_revocations(m, sends)
        self._pump(m)

    def _note_holders(self, m: RevMember) -> None:
        for rid, (neg, _) in self.created.items():
            e = m.agent.entries.get((neg[0], neg[1]))
            if e is not None and e.revocation_id == rid[1] and e.state in _REVOKING:
                self.holders[rid].add(m.incarnation)

    def _boot(self, idx: int) -> None:
        m = self.members[idx]
        if m.alive:
            return
        m.boot(self.now)
        self._pump(m)

    def _crash(self, down: tuple[float, bool, int]) -> None:
        up, the_active, idx = down
        m = self.active if the_active and self.active is not None else self.members[idx]
        if not m.alive:
            return
        m.alive = False
        if m is self.active:
            self.dead_since = self.now
        if up < self.duration + self.quiet:
            self._at(up, "boot", m.index)

    def _roles(self) -> None:
        """The VRRP oracle: the first alive member that is SYNCED (a member that is not does not
        preempt); a dead active is replaced after Master_Down_Interval."""
        want = next(
            (m for m in self.members if m.alive and m.engine.state is SyncState.SYNCED), None
        )
        cur = self.active
        if cur is not None and not cur.alive:
            if self.dead_since is not None and self.now - self.dead_since < MASTER_DOWN:
                return
            cur = self.active = None
        if want is None or want is cur:
            return
        if cur is not None:
            if want.index > cur.index:
                return  # a lower priority member never preempts
            cur.agent.set_active(False, self.now)
            self._pump(cur)
        resumed = want.agent.set_active(True, self.now)
        want.replicator.resync(self.now)  # what the old active replicated to some only
        self.report.takeovers += cur is None and self.dead_since is not None
        self.report.resumed += resumed
        self.active, self.active_since, self.dead_since = want, self.now, None
        self._timer(want)

    # --- foreign agents and mobile nodes ------------------------------------------------------

    def _send_revocations(self, m: RevMember, sends: list[Send]) -> None:
        for send in sends:
            msg = rw.decode(send.data)
            assert isinstance(msg, rw.RegistrationRevocation)
            rid: RevId = (int(msg.home_address), msg.revocation_id)
            if rid in m.agent.settled:
                self._violation(f"{m.endpoint[0]} re-sent settled {_fmt(rid)}")
            if rid not in self.sent:
                self.sent.add(rid)
                if len(self.holders.get(rid, ())) <= 1:
                    self.unreplicated.add(rid)  # its hold ran out before any peer had it
            f = FA_ADDRESSES.index(IPv4Address(send.dest[0]))
            if self._fa_link_down(f):
                continue
            delay = self.rng.uniform(0.0001, self.faults.max_delay)
            self._at(self.now + delay, "to_fa", (f, send.data, m))

    def _to_fa(self, f: int, data: bytes, m: RevMember) -> None:
        msg = rw.decode(data)
        assert isinstance(msg, rw.RegistrationRevocation)
        rid: RevId = (int(msg.home_address), msg.revocation_id)
        made = self.created.get(rid)
        if made is None:
            self._violation(f"FA {f} got {_fmt(rid)} that no member created")
            return
        seen = self.fa_seen.setdefault(made[0], set())
        if rid[1] in seen:
            self.report.copies += 1
        seen.add(rid[1])
        out = self.fas[f].handle_revocation(data, (m.endpoint[0], 434), self.now)
        for s in out.sends:
            if s.dest[1] != 434:
                continue  # the code 65 reply to the mobile node
            self.fa_acked.add(rid)
            if self._fa_link_down(f):
                continue
            delay = self.rng.uniform(0.0001, self.faults.max_delay)
            self._at(self.now + delay, "ack", (m, m.boots, s.data, f))

    def _ack(self, m: RevMember, boots: int, data: bytes, f: int) -> None:
        if not m.alive or m.boots != boots:
            return  # the member that sent the revocation died: its ack is lost
        m.agent.handle_ack(data, (str(FA_ADDRESSES[f]), FA_PORT))
        self._pump(m)

    def _mn_op(self, mn: int) -> None:
        if self.now < self.duration:
            self._at(self.now + 1.0 + self.rng.expovariate(1 / 8.0), "mn", mn)
        home = IPv4Address(int(IPv4Address("10.1.1.0")) + mn)
        f = self.rng.randrange(len(FA_ADDRESSES)) if self.rng.random() < 0.3 else mn % 2
        dereg = self.rng.random() < 0.15
        coa = FA_ADDRESSES[f]
        wall = WALL_BASE + self.now
        ident = max(ntp_from_unix(wall), self.mn_last_id.get(mn, 0) + 1)
        self.mn_last_id[mn] = ident
        req = reg.RegistrationRequest(
            reg.Flags(0), 0 if dereg else 600, home, HA_ADDRESS, coa, ident
        )
        raw = append_auth(reg.encode(req), reg.EXT_MN_HA_AUTH, SA)
        out = self.fas[f].handle_request(raw, (str(home), 50000 + mn), self.now, wall)
        for s in out.sends:
            if s.dest[1] == 434 and not self._fa_link_down(f):
                delay = self.rng.uniform(0.0001, self.faults.max_delay)
                self._at(self.now + delay, "to_ha", (f, s.data))

    def _to_ha(self, f: int, data: bytes) -> None:
        m = self.active
        if m is None or not m.alive:
            return  # the virtual address has no owner right now: lost
        wall = WALL_BASE + self.now
        out = m.core.handle_request(data, self.now, wall)
        if out.reply is None:
            return
        src = (str(FA_ADDRESSES[f]), FA_PORT)
        reply = m.agent.on_reply(data, src, out.reply, wall)
        req = reg.decode_request(data)
        if out.code in (0, 1) and req.lifetime:
            end = (int(req.home_address), int(req.care_of_address))
            self.registered_at.setdefault(end, []).append(self.now)
            self.accepted_by.setdefault(end[0], []).append((self.now, m.index))
            if reply != out.reply:
                self.report.negotiated += 1
        for ev in out.events:
            if isinstance(ev, BindingChanged):
                m.engine.local_change(ev.record, self.now)
        if not self._fa_link_down(f):
            delay = self.rng.uniform(0.0001, self.faults.max_delay)
            self._at(self.now + delay, "reply", (f, reply, m.endpoint))
        self._pump(m)

    def _reply(self, f: int, data: bytes, src: Endpoint) -> None:
        self.fas[f].handle_reply(data, (src[0], 434), self.now)

    # --- the operator -------------------------------------------------------------------------

    def _operator(self, _: object) -> None:
        if self.now < self.duration:
            self._at(self.now + self.rng.expovariate(1 / 1.5), "operator", None)
        m = self.active
        if m is None or not m.alive or not m.agent.negotiated:
            return
        homes = sorted(m.agent.negotiated)
        victim = IPv4Address(homes[self.rng.randrange(len(homes))])
        if self.rng.random() < 0.7:
            self._revoke(m, victim, "operator")  # mobileip clear binding
            return
        # a reload removed the key the victim registered with (daemon/revocation.py _check_keys)
        for home in m.agent.homes_without_key(lambda spi, h: h != victim):
            self._revoke(m, home, "key-removed")

    def _revoke(self, m: RevMember, home: IPv4Address, reason: str) -> None:
        for ev in m.core.administrative_deregister(home, self.now):
            if isinstance(ev, BindingChanged):
                m.engine.local_change(ev.record, self.now)
        hold = REPLICATE_HOLD if m.replicator.has_peers() else 0.0
        before = set(m.agent.pending)
        sends = m.agent.revoke(home, self.now, WALL_BASE + self.now, reason, hold=hold)
        fresh = [p for k, p in m.agent.pending.items() if k not in before]
        if fresh and self.faults.kill_after_revoke > 0 and 5.0 < self.now < self.duration - 3:
            self.faults.kill_after_revoke -= 1
            f = FA_ADDRESSES.index(IPv4Address(fresh[0].binding.foreign_agent[0]))
            self.faults.fa_outages.append((self.now, self.now + 1.5, f))
            down = self.now + self.rng.uniform(0.0, 1.2)
            up = down + self.rng.uniform(0.5, 6.0) if self.rng.random() < 0.5 else float("inf")
            self._at(down, "crash", (up, True, 0))
        self._note_created(m, before)
        self._send_revocations(m, sends)
        self._pump(m)

    def _note_created(self, m: RevMember, before: set[tuple[IPv4Address, int]]) -> None:
        for key, p in m.agent.pending.items():
            if key in before:
                continue
            b = p.binding
            rid: RevId = (int(b.home_address), p.revocation_id)
            neg: NegotiationId = (b.key[0], b.key[1], b.since)
            if rid in self.created and self.created[rid][0] == neg:
                # the same identifier for the same negotiation, made again by a member that
                # missed the first (byte-identical datagrams): the FA sees copies, not a reuse
                # (seeds 1975 and 1994 were reported as reuses)
                self.holders[rid].add(m.incarnation)
                continue
            if rid in self.created and rid in self.sent:
                if not self._unknowable(rid):
                    # the FA would take it for a copy of the one it already acked
                    self._violation(f"{m.endpoint[0]} reused {_fmt(rid)} for another negotiation")
                    continue
                # allowed: first sent while no peer held it, by a member now dead with every
                # holder; the same number, the same documented cause as a second identifier
                self.report.unreplicated_reuses += 1
                for seen in (self.fa_acked, self.gave_up, self.sent, self.unreplicated):
                    seen.discard(rid)
            self.created[rid] = (neg, self.now)
            self.holders[rid] = {m.incarnation}
            self.creator[rid] = m.index
            self.report.revocations += 1

    # --- the run ------------------------------------------------------------------------------

    def run(self) -> RevocationReport:
        for i in range(len(self.members)):
            self._at(self.rng.uniform(0.0, 0.3), "boot", i)
        for mn in range(self.mobile_nodes):
            self._at(self.rng.uniform(1.0, 3.0), "mn", mn)
        self._at(3.0, "operator", None)
        for down, up, the_active, who in self.faults.crashes:
            self._at(down, "crash", (up, the_active, who))
        self._at(self.duration + self.quiet, "end", None)
        self._at(0.05, "roles", None)
        while (event := self._next_event()) is not None:
            kind, payload = event
            if kind == "end":
                break
            self._dispatch(kind, payload)
        self._final_checks()
        return self.report

    def _dispatch(self, kind: str, payload: object) -> None:
        if kind == "boot":
            assert isinstance(payload, int)
            self._boot(payload)
        elif kind == "crash":
            assert isinstance(payload, tuple)
            self._crash(payload)
        elif kind == "mn":
            assert isinstance(payload, int)
            self._mn_op(payload)
        elif kind == "operator":
            self._operator(payload)
        elif kind == "timer":
            assert isinstance(payload, tuple)
            m, boots = payload
            if m.alive and m.boots == boots and m.armed is not None and m.armed <= self.now:
                self._timer(m)
        elif kind == "sync":
            assert isinstance(payload, tuple)
            data, src, target = payload
            if target.alive:
                target.engine.handle_datagram(data, src, self.now)
                self._pump(target)
        elif kind == "to_fa":
            assert isinstance(payload, tuple)
            self._to_fa(*payload)
        elif kind == "ack":
            assert isinstance(payload, tuple)
            self._ack(*payload)
        elif kind == "to_ha":
            assert isinstance(payload, tuple)
            self._to_ha(*payload)
        elif kind == "reply":
            assert isinstance(payload, tuple)
            self._reply(*payload)
        elif kind == "roles":  # VRRP: a look every 50 ms
            self._roles()
            self._at(self.now + 0.05, "roles", None)

    # --- invariants ---------------------------------------------------------------------------

    def _violation(self, text: str) -> None:
        if len(self.report.violations) < 20:
            self.report.violations.append(f"t={self.now:.3f} {text}")

    def _unknowable(self, rid: RevId) -> bool:
        """An identifier no member alive can know: first sent while no peer held it (the hold
        ran out, its active cut off from the group), and every member that held it is dead.
        A new active then picks identifiers from what it knows, possibly the same number
        (seed 665 with 3 members; docs/revocation.md, "Where it can still go wrong")."""
        alive = {m.incarnation for m in self.members if m.alive}
        return rid in self.unreplicated and not self.holders[rid] & alive

    def _ended_by_stale_active(self, home: int, when: float) -> bool:
        """Allowed too: after the revocation was made, a registration of its home (through
        another care-of address: it replaced the binding end) was accepted by an active cut
        off from the sync since before the revocation was made. Its stale view still had the
        negotiation, so it forgot it, and that later entry outranks the pending one (seed 637
        with 3 members; docs/revocation.md, "Where it can still go wrong")."""
        return any(
            t > when and s < when and e > t and w == who
            for t, who in self.accepted_by.get(home, [])
            for s, e, w in self.faults.partitions
        )

    def _stale_creator(self, home: int, ids: list[int]) -> bool:
        """Allowed too: each later identifier was made by a member cut off from the sync since
        the first one was made (it became active with a stale view: a split of the sync link
        from the VRRP link; docs/revocation.md, "Where it can still go wrong")."""
        start = self.created[(home, ids[0])][1]
        for rid in ids[1:]:
            made = self.created[(home, rid)][1]
            who = self.creator[(home, rid)]
            if not any(s < made and e > start and w == who for s, e, w in self.faults.partitions):
                return False
        return True

    def _final_checks(self) -> None:
        r = self.report
        for neg, ids in sorted(self.fa_seen.items()):
            # allowed: an identifier sent before any peer had it, by an active that then died
            # (the new active cannot know it); docs/revocation.md, "Where it can still go wrong"
            strict = [i for i in ids if (neg[0], i) not in self.unreplicated]
            if len(ids) > 1 and len(strict) <= 1:
                r.unreplicated_duplicates += 1
            elif len(ids) > 1 and self._stale_creator(neg[0], sorted(ids)):
                r.stale_active_duplicates += 1
            elif len(ids) > 1:
                self._violation(
                    f"binding end {IPv4Address(neg[0])} via {IPv4Address(neg[1])} (since "
                    f"{neg[2]}): the FA saw identifiers {sorted(ids)}"
                )
        alive = {m.incarnation for m in self.members if m.alive}
        acked_negs = {neg for rid, (neg, _) in self.created.items() if rid in self.fa_acked}
        for rid, (neg, when) in sorted(self.created.items()):
            if rid in self.fa_acked:
                r.acked += 1
                continue
            if rid in self.gave_up:
                r.gave_up += 1
                continue
            if any(t > when for t in self.registered_at.get((neg[0], neg[1]), [])):
                r.superseded += 1
                continue  # superseded by a new registration of the binding end
            if neg in acked_negs:
                # the FA acked another identifier for this negotiation: it was revoked (a
                # stale active's second one, dropped by the group's SETTLED entry before it
                # went out: seed 1251 with 5 members; had it gone out, the FA check above)
                r.revoked_otherwise += 1
                continue
            if not self.holders[rid] & alive:
                r.lost_with_holders += 1
                continue
            if self._ended_by_stale_active(neg[0], when):
                r.stale_active_losses += 1
                continue
            self._violation(f"{_fmt(rid)} lost: held by {sorted(self.holders[rid])}, never acked")
        views = {}
        for m in self.members:
            if not m.alive:
                continue
            entries = {
                k: (e.state, e.version, e.revocation_id, e.attempts)
                for k, e in m.agent.entries.items()
            }
            views[m.endpoint[0]] = (entries, sorted((int(h), i) for h, i in m.agent.pending))
        first = next(iter(views.values()), None)
        for name, view in views.items():
            if view != first and first is not None:
                diff = set(view[0].items()) ^ set(first[0].items())
                self._violation(
                    f"{name} revocation state differs: {sorted(diff)[:2]} "
                    f"pending {view[1]} vs {first[1]}"
                )
        for m in self.members:
            if m.alive and m.agent.pending:
                self._violation(f"{m.endpoint[0]} still has {len(m.agent.pending)} pending")


def _fmt(rid: RevId) -> str:
    return f"revocation {rid[1]} of {IPv4Address(rid[0])}"


def run_revocation_seed(seed: int, members: int = 3) -> RevocationReport:
    return RevocationSimulation(seed, members=members).run()


def replay_command(seed: int, members: int) -> str:
    return f"python -m mobileip.tools.sim_revocation --seed {seed} --members {members}"


_TOTALS = (
    "revocations",
    "acked",
    "takeovers",
    "resumed",
    "copies",
    "superseded",
    "gave_up",
    "lost_with_holders",
    "unreplicated_duplicates",
    "stale_active_duplicates",
    "unreplicated_reuses",
    "stale_active_losses",
    "revoked_otherwise",
)


def sweep_batch(seeds: range) -> tuple[dict[str, int], list[tuple[int, int, list[str]]]]:
    """Run ``seeds`` (members ``2 + seed % 4``): the report's counts summed, and each failing
    seed with its members and first violations."""
    totals = dict.fromkeys(_TOTALS, 0)
    failures = []
    for seed in seeds:
        n = members_for(seed)
        r = run_revocation_seed(seed, members=n)
        for k in _TOTALS:
            totals[k] += getattr(r, k)
        if not r.ok or r.revocations == 0:
            failures.append((seed, n, r.violations[:3] or ["revoked nothing"]))
    return totals, failures


def main(argv: list[str] | None = None) -> int:
    """Replay one seed of the revocation model: ``--seed N [--members 3]``; or sweep this model
    alone: ``--sweep COUNT [--start 0] [--jobs 2]`` (members ``2 + seed % 4``, as
    ``python -m mobileip.tools.sim --sweep``, which also runs the binding modes), printing the
    summed counts and each failing seed's replay command."""
    import argparse
    import contextlib
    import time
    from concurrent.futures import ProcessPoolExecutor

    parser = argparse.ArgumentParser(prog="python -m mobileip.tools.sim_revocation")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--seed", type=int)
    what.add_argument("--sweep", type=int, metavar="COUNT")
    parser.add_argument("--members", type=int, default=3)
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=1)
    args = parser.parse_args(argv)
    if args.seed is not None:
        sim = RevocationSimulation(args.seed, members=args.members)
        print(f"faults: {sim.faults}")
        report = sim.run()
        print(report)
        return 0 if report.ok else 1
    began = time.monotonic()
    end = args.start + args.sweep
    batches = [range(s, min(s + 20, end)) for s in range(args.start, end, 20)]
    totals = dict.fromkeys(_TOTALS, 0)
    failures: list[tuple[int, int, list[str]]] = []
    with ProcessPoolExecutor(args.jobs) if args.jobs > 1 else contextlib.nullcontext() as pool:
        results = pool.map(sweep_batch, batches) if pool is not None else map(sweep_batch, batches)
        for part, failed in results:
            for k, v in part.items():
                totals[k] += v
            failures.extend(failed)
    seconds = time.monotonic() - began
    print(
        f"revocation sweep: seeds {args.start}..{end - 1}: {len(failures)} failures, "
        f"{seconds:.0f} s on {args.jobs} process(es)"
    )
    print(", ".join(f"{k} {v}" for k, v in totals.items()))
    for seed, n, violations in failures:
        print(f"  {replay_command(seed, n)}")
        print("\n".join(f"    {v}" for v in violations))
    return 0 if not failures else 1


if __name__ == "__main__":
    raise SystemExit(main())
