"""A deterministic simulator of a redundancy group: virtual time, seeded faults, no sockets.

``Simulation(seed).run()`` drives N members (each a :class:`HomeAgentCore` and a
:class:`SyncEngine` over one :class:`BindingTable`) and a population of mobile nodes through
random registrations, renewals and deregistrations, while a seeded schedule injects loss,
duplication, reordering, delay, partitions that heal, and crashes with restarts (a restarted
member loses its table and must download it again). After the faults heal and the group goes
quiet it checks the invariants and returns a :class:`Report` whose ``violations`` list is empty
when all held. The same seed always replays the same run.

Some mobile nodes have dynamic home addresses (RFC 5944 3.6, RFC 2794; docs/pools.md): they
register with 0.0.0.0 and an NAI, take the address the reply assigns, renew with it, sometimes
forget it (a reboot) and ask again. "No address assigned twice": in a run without a crash, no
reply ever assigns an address that another mobile node still holds (an unexpired accepted
registration it was not told to give up); with crashes, an assignment the crashed member had not
replicated may be handed out again (counted as a conflict), and it must resolve: the converged
tables hold each NAI on at most one address, and a loser renewing its old address is refused
(129).

Some mobile nodes are behind NATs (RFC 3519; docs/nat-traversal.md): they register with a
co-located care-of address in private space, D set and a UDP Tunnel Request, from their NAT's
public address and port, so each binding carries a NAT mapping (``udp_address``, ``udp_port``).
Their NAT sometimes rebinds (a new public port): the next keepalive reaches the active member from
the new port, and its data plane's rule (``UdpTunnelPath.received``: same address, another port)
calls :meth:`HomeAgentCore.nat_rebind`, a new version of the record. Invariant: after
convergence, every member holds, for each NAT-ed home, the version and mapping of one accepted
change, never older than the newest change whose member did not crash after accepting it (no
older mapping resurrects after crashes and partitions), and the mapping is exactly the one that
change recorded.

Why one file of ~900 lines: the simulated group, its fault model, the invariants it checks and
the sweep command share the run's state; a tool, not part of the daemon.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address

from mobileip.core.bindings import BindingTable
from mobileip.core.homeagent import BindingChanged, HomeAgentCore, HomeAgentSettings
from mobileip.core.nat import NatSettings, NatTraversal
from mobileip.core.pools import AddressPool, AddressPools
from mobileip.core.replay import ntp_from_unix
from mobileip.core.security import SecurityAssociation, SecurityAssociations, append_auth
from mobileip.sync.engine import (
    Protected,
    RecordsApplied,
    SyncEngine,
    SyncState,
    SyncStateChanged,
)
from mobileip.sync.members import Endpoint
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
from mobileip.wire import nat as wire_nat
from mobileip.wire import registration as reg
from mobileip.wire import sync as wire

# dynamic home addresses: an SA for the NAIs of a realm, and a small pool to contend for
NAI_SA = SecurityAssociation(600, "hmac-md5", bytes(range(16, 32)), (), b"*@sim.test", "sim")
POOL = AddressPool("sim", int(IPv4Address("10.9.0.1")), int(IPv4Address("10.9.0.12")))
# NAT-ed mobile nodes (RFC 3519): home addresses, private care-of addresses, NAT public addresses
NAT_HOME_BASE = int(IPv4Address("10.1.2.0"))
NAT_COA_BASE = int(IPv4Address("172.16.0.0"))
NAT_PUBLIC_BASE = int(IPv4Address("198.51.100.0"))
NAT_REQUEST = wire_nat.UdpTunnelRequest().extension()


@dataclass
class Faults:
    loss: float
    duplicate: float
    max_delay: float
    partitions: list[tuple[float, float, int]]  # (start, end, isolated member)
    crashes: list[tuple[float, float, int]]  # (down at, up at, member)


@dataclass
class Report:
    seed: int
    mode: str
    members: int
    registrations: int = 0
    deregistrations: int = 0
    replied: int = 0
    protected: int = 0
    datagrams: int = 0
    dynamic: int = 0  # accepted registrations of dynamic-address mobile nodes
    conflicts: int = 0  # an address assigned again after a crash lost its assignment
    resolved: int = 0  # an NAI's second live address ended by the active member
    told: int = 0  # losers refused (129) when renewing an address that is another NAI's
    nat_registrations: int = 0  # accepted registrations of NAT-ed mobile nodes (UDP tunnel)
    nat_rebinds: int = 0  # mapping changes taken from a keepalive on a new port
    nat_lost: int = 0  # NAT changes lost with a member that crashed before replicating them
    violations: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations


class Member(SimMember):
    def __init__(self, sim: Simulation, index: int) -> None:
        super().__init__(index)
        self.sim = sim
        self.versions_seen: dict[int, int] = {}
        self.pending_replies: dict[tuple[int, int], int] = {}  # (home, version) -> mn index
        self.core: HomeAgentCore
        self.engine: SyncEngine

    def boot(self, now: float) -> None:
        self.boots += 1
        table = BindingTable(tombstone_ttl=self.sim.tombstone_ttl)
        settings = HomeAgentSettings(
            HA_ADDRESS, max_lifetime=1800, replay="timestamp", node_id=self.node_id
        )
        self.core = HomeAgentCore(settings, SecurityAssociations([SA, NAI_SA]), table)
        self.core.pools = AddressPools([POOL], table)
        self.core.nat = NatTraversal(NatSettings())
        peers = tuple(m.endpoint for m in self.sim.members if m is not self)
        self.engine = self.new_engine(peers, table, now, self.sim.mode)
        self.alive = True
        self.armed = None
        self.versions_seen = {}
        self.pending_replies = {}
        self.engine.start(now)


class Simulation(EventQueue):
    def __init__(
        self,
        seed: int,
        members: int = 3,
        mobile_nodes: int = 20,
        mode: str = "async",
        dynamic_nodes: int = 8,
        nat_nodes: int = 6,
        duration: float = 30.0,
        quiet: float = 40.0,
    ) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.mode = mode
        self.duration = duration
        self.quiet = quiet
        self.tombstone_ttl = 1900.0  # > max_lifetime: an older binding expires first
        self.members: list[Member] = []
        self.members = [Member(self, i) for i in range(members)]
        self.by_endpoint = {m.endpoint: m for m in self.members}
        self.mobile_nodes = mobile_nodes
        self.report = Report(seed, mode, members)
        EventQueue.__init__(self)
        self.faults = self._draw_faults()
        # oracle: per MN, the accepted operations in order: (version, deregistration, replied)
        self.accepted: dict[int, list[tuple[int, bool]]] = {}
        self.protected_by: list[tuple[int, int, int, float]] = []  # home, version, node, time
        self.crash_times: dict[int, list[float]] = {m.node_id: [] for m in self.members}
        # (requester, identification, responder) -> the responder's table when asked
        self.snapshots: dict[tuple[Endpoint, int, Endpoint], dict[int, int]] = {}
        self.mn_last_id: dict[int, int] = {}
        # dynamic-address mobile nodes: what each believes it holds (address, until), 0: none
        self.dynamic_nodes = dynamic_nodes
        self.dyn_rng = random.Random(seed * 7919 + 1)
        self.dyn_home: dict[int, int] = {}
        self.dyn_until: dict[int, float] = {}
        self.dyn_last_id: dict[int, int] = {}
        self.dyn_pending: dict[tuple[int, int], tuple[int, int, int]] = {}
        # NAT-ed mobile nodes: their NAT's current public port; per home, every accepted change
        # (version, mapping or None for a deregistration, accepting node, time)
        self.nat_nodes = nat_nodes
        self.nat_rng = random.Random(seed * 104729 + 3)
        self.nat_port: dict[int, int] = {}
        self.nat_last_id: dict[int, int] = {}
        self.nat_ops: dict[int, list[tuple[int, tuple[int, int] | None, int, float]]] = {}

    # --- scheduling ---------------------------------------------------------------------------

    def _draw_faults(self) -> Faults:
        r = self.rng
        n = len(self.members)
        partitions = draw_partitions(r, n, self.duration, 0.5, 8.0)
        crashes = []
        for _ in range(r.randint(0, 2)):
            down = r.uniform(1.0, self.duration - 2)
            crashes.append((down, down + r.uniform(0.2, 6.0), r.randrange(n)))
        return Faults(
            loss=r.choice([0.0, 0.01, 0.05, 0.15]),
            duplicate=r.choice([0.0, 0.02, 0.1]),
            max_delay=r.choice([0.0005, 0.005, 0.03]),
            partitions=partitions,
            crashes=crashes,
        )

    def _faulty(self) -> bool:
        return self.now < self.duration

    def _cut_off(self, a: Member, b: Member, start: float, end: float) -> bool:
        """Whether a partition separated ``a`` and ``b`` at any time in [start, end]."""
        return any(
            s < end and e > start and (a.index == who) != (b.index == who)
            for s, e, who in self.faults.partitions
        )

    # --- network ------------------------------------------------------------------------------

    def _drain(self, m: Member) -> None:
        f = self.faults
        link = LinkFaults(self._faulty(), f.partitions, f.loss, f.duplicate, f.max_delay)
        datagrams = m.engine.datagrams_to_send()
        self.report.datagrams += self._sync_send(m, datagrams, self.by_endpoint, "deliver", link)
        self._after_events(m)
        self._arm(m)

    def _arm(self, m: Member) -> None:
        deadlines = [t for t in (m.engine.next_timer(), m.core.next_deadline()) if t is not None]
        if deadlines:
            when = max(min(deadlines), self.now)
            if m.armed is None or when < m.armed:
                m.armed = when
                self._at(when, "timer", (m, m.boots))

    def _after_events(self, m: Member) -> None:
        for ev in m.engine.events():
            if isinstance(ev, Protected):
                mn = m.pending_replies.pop((ev.home_address, ev.version), None)
                if mn is not None:
                    self._replied(mn, ev.home_address, ev.version, ev.acked, m, ev.node_id)
            elif isinstance(ev, SyncStateChanged) and ev.state is SyncState.SYNCED:
                self._check_download(m, ev.reason)
            elif isinstance(ev, RecordsApplied) and m.core.pools is not None:
                m.core.pools.refresh(ev.homes)
        if m.core.pools is not None and self._active() is m:
            self._end_losers(m)

    def _end_losers(self, m: Member) -> None:
        """The active member ends each binding whose NAI holds another live address that
        prevails (``AddressPools.losers``), as the daemon does: a replicated tombstone."""
        assert m.core.pools is not None
        losers = m.core.pools.losers()
        for home in losers:
            for ev in m.core.administrative_deregister(IPv4Address(home), self.now):
                if isinstance(ev, BindingChanged):
                    rec = ev.record
                    self.accepted.setdefault(home, []).append((rec.version, True))
                    self.report.resolved += 1
                    m.engine.local_change(rec, self.now)
        if losers:
            self._drain(m)

    # --- mobile nodes -------------------------------------------------------------------------

    def _active(self) -> Member | None:
        alive = [m for m in self.members if m.alive]
        synced = [m for m in alive if m.engine.state is SyncState.SYNCED]
        pool = synced or alive
        return pool[0] if pool else None

    def _mn_op(self, mn: int) -> None:
        m = self._active()
        home = int(IPv4Address("10.1.1.0")) + mn
        if m is not None:
            r = self.rng.random()
            if r < 0.25:
                lifetime, coa = 0, IPv4Address(home)  # deregister all
            else:
                lifetime = self.rng.choice([3, 20, 600, 1800])
                coa = IPv4Address(f"192.0.{2 + self.rng.randrange(3)}.{1 + mn}")
            wall = WALL_BASE + self.now
            ident = max(ntp_from_unix(wall), self.mn_last_id.get(mn, 0) + 1)
            self.mn_last_id[mn] = ident
            req = reg.RegistrationRequest(
                reg.Flags(0), lifetime, IPv4Address(home), HA_ADDRESS, coa, ident
            )
            raw = append_auth(reg.encode(req), reg.EXT_MN_HA_AUTH, SA)
            out = m.core.handle_request(raw, self.now, wall)
            for ev in out.events:
                if isinstance(ev, BindingChanged):
                    rec = ev.record
                    self.accepted.setdefault(home, []).append((rec.version, ev.deregistration))
                    if ev.deregistration:
                        self.report.deregistrations += 1
                    else:
                        self.report.registrations += 1
                    m.engine.local_change(rec, self.now)
                    if self.mode == "semisync":
                        m.pending_replies[(home, rec.version)] = mn
                        m.engine.watch(home, rec.version, self.now)
                    else:
                        self.report.replied += 1
            self._drain(m)
        if self.now < self.duration:
            self._at(self.now + self.rng.expovariate(1 / 3.0), "mn", mn)

    def _replied(self, mn: int, home: int, version: int, acked: bool, m: Member, node: int) -> None:
        self.report.replied += 1
        if mn < 0:  # a dynamic-address mobile node: its reply arrives now
            dn, code, lifetime = self.dyn_pending.pop((home, version))
            self._dyn_reply(dn, code, home, lifetime)
        if acked:
            self.report.protected += 1
            self.protected_by.append((home, version, node, self.now))

    # --- dynamic home addresses -------------------------------------------------------------

    def _dyn_op(self, dn: int) -> None:
        m = self._active()
        r = self.dyn_rng
        if m is not None:
            held = self.dyn_home.get(dn, 0)
            if held and r.random() < 0.1:
                self._dyn_forget(dn)  # a reboot: it asks for 0.0.0.0 again
                held = 0
            dereg = bool(held) and r.random() < 0.2
            lifetime = 0 if dereg else r.choice([3, 20, 600])
            wall = WALL_BASE + self.now
            ident = max(ntp_from_unix(wall), self.dyn_last_id.get(dn, 0) + 1)
            self.dyn_last_id[dn] = ident
            nai = f"d{dn}@sim.test".encode()
            home = IPv4Address(held)
            req = reg.RegistrationRequest(
                reg.Flags(0),
                lifetime,
                home,
                HA_ADDRESS,
                home if dereg else IPv4Address(f"192.0.5.{1 + dn}"),
                ident,
                (reg.NaiExtension(nai),),
            )
            raw = append_auth(reg.encode(req), reg.EXT_MN_HA_AUTH, NAI_SA)
            out = m.core.handle_request(raw, self.now, wall)
            assert out.reply is not None and out.code is not None
            reply = reg.decode_reply(out.reply)
            assigned = int(reply.home_address)
            held_back = False
            for ev in out.events:
                if isinstance(ev, BindingChanged):
                    rec = ev.record
                    self.accepted.setdefault(rec.home_address, []).append(
                        (rec.version, ev.deregistration)
                    )
                    m.engine.local_change(rec, self.now)
                    if self.mode == "semisync":
                        m.pending_replies[(rec.home_address, rec.version)] = -1 - dn
                        self.dyn_pending[(rec.home_address, rec.version)] = (
                            dn,
                            out.code,
                            reply.lifetime,
                        )
                        m.engine.watch(rec.home_address, rec.version, self.now)
                        held_back = True
                    else:
                        self.report.replied += 1
            if not held_back:
                self._dyn_reply(dn, out.code, assigned, reply.lifetime, lifetime == 0)
            self._drain(m)
        if self.now < self.duration:
            self._at(self.now + r.expovariate(1 / 3.0), "dyn", dn)

    def _dyn_forget(self, dn: int) -> None:
        self.dyn_home[dn] = 0
        self.dyn_until[dn] = 0.0

    def _dyn_reply(
        self, dn: int, code: int, address: int, lifetime: int, dereg: bool = False
    ) -> None:
        """Mobile node ``dn`` gets its reply: what it now believes it holds."""
        if code == 129:
            self.report.told += 1
            self._dyn_forget(dn)  # the address is another NAI's: ask again next time
            return
        if code > 1:
            return
        if dereg or lifetime == 0:
            self._dyn_forget(dn)
            return
        self.report.dynamic += 1
        for other, held in self.dyn_home.items():
            if other != dn and held == address and self.dyn_until.get(other, 0.0) > self.now:
                crashed = any(t <= self.now for ts in self.crash_times.values() for t in ts)
                if crashed:
                    self.report.conflicts += 1
                else:
                    self._violation(
                        f"{IPv4Address(address)} assigned to d{dn} while d{other} holds it"
                    )
        self.dyn_home[dn] = address
        self.dyn_until[dn] = self.now + lifetime

    def _check_pools(self, synced: list[Member]) -> None:
        """Converged: each NAI on at most one live pool address; a loser is refused (129)."""
        for m in synced:
            owners: dict[bytes, int] = {}
            for rec in m.core.table.records():
                if rec.bindings and rec.home_address in POOL:
                    if rec.nai in owners:
                        self._violation(
                            f"{m.endpoint[0]}: {rec.nai!r} live on {IPv4Address(owners[rec.nai])}"
                            f" and {IPv4Address(rec.home_address)}"
                        )
                    owners[rec.nai] = rec.home_address
        if not synced:
            return
        m = synced[0]
        for dn, held in sorted(self.dyn_home.items()):
            if not held or self.dyn_until.get(dn, 0.0) <= self.now:
                continue
            holder = m.core.table.live(held)
            nai = f"d{dn}@sim.test".encode()
            if holder is None or holder.nai == nai:
                continue
            # another NAI holds what dn believes is its own: renewing must be refused (129)
            wall = WALL_BASE + self.now
            ident = max(ntp_from_unix(wall), self.dyn_last_id.get(dn, 0) + 1)
            self.dyn_last_id[dn] = ident
            req = reg.RegistrationRequest(
                reg.Flags(0),
                20,
                IPv4Address(held),
                HA_ADDRESS,
                IPv4Address("192.0.5.250"),
                ident,
                (reg.NaiExtension(nai),),
            )
            raw = append_auth(reg.encode(req), reg.EXT_MN_HA_AUTH, NAI_SA)
            before = m.core.table.get(held)
            out = m.core.handle_request(raw, self.now, wall)
            if out.code != 129:
                self._violation(f"d{dn} renewing {IPv4Address(held)} of {holder.nai!r}: {out.code}")
            elif m.core.table.get(held) != before:
                self._violation(f"d{dn}'s refused renewal changed {IPv4Address(held)}")
            else:
                self.report.told += 1

    # --- NAT-ed mobile nodes (RFC 3519) -------------------------------------------------------

    def _nat_op(self, k: int) -> None:
        """NAT-ed mobile node ``k``: its NAT may rebind (a new public port), then it sends a
        keepalive (the active member's data plane sees the new port), or registers, renews or
        deregisters from its NAT's current mapping."""
        m = self._active()
        r = self.nat_rng
        home = NAT_HOME_BASE + 1 + k
        public = NAT_PUBLIC_BASE + 1 + k
        if m is not None:
            if r.random() < 0.3:
                self.nat_port[k] = 20000 + r.randrange(40000)
            mapping = (public, self.nat_port[k])
            source = (str(IPv4Address(public)), mapping[1])
            x = r.random()
            if x < 0.35:
                self._nat_keepalive(m, home, mapping)
            else:
                dereg = x < 0.5
                lifetime = 0 if dereg else r.choice([3, 20, 600, 1800])
                wall = WALL_BASE + self.now
                ident = max(ntp_from_unix(wall), self.nat_last_id.get(k, 0) + 1)
                self.nat_last_id[k] = ident
                req = reg.RegistrationRequest(
                    reg.Flags.D,
                    lifetime,
                    IPv4Address(home),
                    HA_ADDRESS,
                    IPv4Address(NAT_COA_BASE + 1 + k),
                    ident,
                    () if dereg else (NAT_REQUEST,),
                )
                raw = append_auth(reg.encode(req), reg.EXT_MN_HA_AUTH, SA)
                out = m.core.handle_request(raw, self.now, wall, source)
                if not dereg and out.code is not None and out.code <= 1 and out.events:
                    self.report.nat_registrations += 1
                    granted = out.reply is not None and wire_nat.find_reply(
                        reg.decode_reply(out.reply).extensions
                    )
                    if not granted or not granted.accepted:
                        self._violation(f"NAT-ed home {IPv4Address(home)}: no UDP tunnel granted")
                self._nat_changes(m, out.events, k)
            self._drain(m)
        if self.now < self.duration:
            self._at(self.now + r.expovariate(1 / 3.0), "nat", k)

    def _nat_keepalive(self, m: Member, home: int, mapping: tuple[int, int]) -> None:
        """A keepalive from ``mapping`` reaches ``m``'s data plane: the rule of
        ``UdpTunnelPath.received``: a binding of ``home`` with the same address and another
        port means the NAT rebound; another address, or no binding, is dropped."""
        rec = m.core.table.live(home)
        if rec is None:
            return
        udp = [(b.udp_address, b.udp_port) for b in rec.bindings if b.udp_port]
        if mapping in udp:
            return
        old = next((u for u in udp if u[0] == mapping[0]), None)
        if old is None:
            return
        events = m.core.nat_rebind(home, old, mapping, self.now)
        if events:
            self.report.nat_rebinds += 1
        self._nat_changes(m, events, -1)

    def _nat_changes(self, m: Member, events: Sequence[object], k: int) -> None:
        for ev in events:
            if not isinstance(ev, BindingChanged):
                continue
            rec = ev.record
            mapping = next(((b.udp_address, b.udp_port) for b in rec.bindings if b.udp_port), None)
            if not ev.deregistration and mapping is None:
                self._violation(f"NAT-ed home {IPv4Address(rec.home_address)} without a mapping")
            self.nat_ops.setdefault(rec.home_address, []).append(
                (rec.version, mapping, m.node_id, self.now)
            )
            self.accepted.setdefault(rec.home_address, []).append((rec.version, ev.deregistration))
            m.engine.local_change(rec, self.now)
            if self.mode == "semisync" and k >= 0:
                m.pending_replies[(rec.home_address, rec.version)] = self.mobile_nodes + k
                m.engine.watch(rec.home_address, rec.version, self.now)
            else:
                self.report.replied += 1

    def _check_nat(self, synced: list[Member]) -> None:
        """Converged: each member holds, per NAT-ed home, the version and exact mapping of one
        accepted change, no older than the newest change its member kept (did not crash after)."""
        if not synced:
            return
        for home, ops in sorted(self.nat_ops.items()):
            by_version = {v: mapping for v, mapping, _node, _t in ops}
            kept = [
                v
                for v, _mapping, node, t in ops
                if not any(c > t for c in self.crash_times.get(node, []))
            ]
            newest_kept = max(kept, default=-1)
            if ops[-1][0] != newest_kept:
                self.report.nat_lost += 1
            for m in synced:
                rec = m.core.table.get(home)
                held = rec.version if rec is not None else -1
                where = f"{m.endpoint[0]} home {IPv4Address(home)}"
                if held < newest_kept:
                    self._violation(f"{where}: v{held} older than kept change v{newest_kept}")
                    continue
                if rec is None:
                    continue
                if rec.version not in by_version:
                    self._violation(f"{where}: v{rec.version} was never accepted")
                    continue
                live = {
                    (b.udp_address, b.udp_port) for b in rec.bindings if b.expires > self.now + 1.0
                }
                want = by_version[rec.version]
                if live and live != {want}:
                    shown = sorted(f"{IPv4Address(a)}:{p}" for a, p in live)
                    self._violation(f"{where} v{rec.version}: mapping {shown}, accepted {want}")

    # --- faults -------------------------------------------------------------------------------

    def _crash(self, idx: int, up_at: float) -> None:
        m = self.members[idx]
        if not m.alive:
            return
        m.alive = False
        self.crash_times[m.node_id].append(self.now)
        self._at(up_at, "boot", idx)

    def _boot(self, idx: int) -> None:
        m = self.members[idx]
        if m.alive:
            return
        m.boot(self.now)
        self._drain(m)

    # --- the run ------------------------------------------------------------------------------

    def run(self) -> Report:
        for i in range(len(self.members)):
            self._at(self.rng.uniform(0.0, 0.3), "boot", i)
        for mn in range(self.mobile_nodes):
            self._at(self.rng.uniform(1.0, 3.0), "mn", mn)
        for dn in range(self.dynamic_nodes):
            self._at(self.dyn_rng.uniform(1.0, 3.0), "dyn", dn)
        for k in range(self.nat_nodes):
            self.nat_port[k] = 20000 + self.nat_rng.randrange(40000)
            self._at(self.nat_rng.uniform(1.0, 3.0), "nat", k)
        for down, up, who in self.faults.crashes:
            self._at(down, "crash", (who, up))
        end = self.duration + self.quiet
        self._at(end, "end", None)
        next_check = 1.0
        while (event := self._next_event()) is not None:
            kind, payload = event
            if kind == "end":
                break
            if kind == "boot":
                assert isinstance(payload, int)
                self._boot(payload)
            elif kind == "crash":
                assert isinstance(payload, tuple)
                self._crash(payload[0], payload[1])
            elif kind == "mn":
                assert isinstance(payload, int)
                self._mn_op(payload)
            elif kind == "dyn":
                assert isinstance(payload, int)
                self._dyn_op(payload)
            elif kind == "nat":
                assert isinstance(payload, int)
                self._nat_op(payload)
            elif kind == "deliver":
                assert isinstance(payload, tuple)
                data, src, target = payload
                if target.alive:
                    self._deliver(target, data, src)
            elif kind == "timer":
                assert isinstance(payload, tuple)
                m, boots = payload
                if m.alive and m.boots == boots and m.armed == self.now:
                    m.armed = None
                    self._timer(m)
            if self.now >= next_check:
                next_check = self.now + 1.0
                self._check_monotonic()
        self._final_checks()
        return self.report

    def _deliver(self, m: Member, data: bytes, src: Endpoint) -> None:
        if data[0] == wire.MsgType.TABLE_REQUEST and m.engine.state is SyncState.SYNCED:
            # The responder's table when it *serves* this request: only when the engine starts
            # a download for it (sends its peer list, a first Table Sync). A duplicated copy is
            # dropped by the replay window, a copy with another sequence as a duplicate
            # request; neither serves anything, so neither may replace the snapshot of the
            # copy that was served (seed 102448: a record registered between two copies, whose
            # Binding Update was lost, was expected in a download that never promised it).
            msg = wire.decode(data, m.engine.auth)
            snapshot = {r.home_address: r.version for r in m.core.table.records()}
            first_sends = m.engine.counters.sent_bi_reps
            m.engine.handle_datagram(data, src, self.now)
            if m.engine.counters.sent_bi_reps > first_sends:
                self.snapshots[(src, msg.identification, m.endpoint)] = snapshot
        else:
            m.engine.handle_datagram(data, src, self.now)
        self._drain(m)

    def _timer(self, m: Member) -> None:
        deadline = m.core.next_deadline()
        if deadline is not None and deadline <= self.now:
            m.core.tick(self.now)
        timer = m.engine.next_timer()
        if timer is not None and timer <= self.now:
            m.engine.handle_timer(self.now)
        self._drain(m)

    # --- invariants ---------------------------------------------------------------------------

    def _violation(self, text: str) -> None:
        if len(self.report.violations) < 20:
            self.report.violations.append(f"t={self.now:.3f} {text}")

    def _check_monotonic(self) -> None:
        """A member's version of a record never goes back (no older update wins)."""
        for m in self.members:
            if not m.alive:
                continue
            table = m.core.table
            for home in table.homes():
                version = table.version_of(home)
                assert version is not None
                if version < m.versions_seen.get(home, -1):
                    self._violation(f"{m.endpoint[0]} home {home} went back")
                m.versions_seen[home] = version

    def _check_download(self, m: Member, reason: str) -> None:
        if not reason.startswith("table downloaded"):
            # declared itself SYNCED: no SYNCED member with a table may be reachable from it
            for other in self.members:
                if (
                    other is not m
                    and other.alive
                    and other.engine.state is SyncState.SYNCED
                    and other.core.table.record_count
                    and not self._cut_off(m, other, self.now - 2.0, self.now)
                ):
                    self._violation(
                        f"{m.endpoint[0]} declared SYNCED ({reason}) while "
                        f"{other.endpoint[0]} was SYNCED and reachable"
                    )
            return
        last = m.engine.last_download
        if last is None or not reason.startswith("table downloaded"):
            return
        snap = self.snapshots.get((m.endpoint, *last))
        if snap is None:
            self._violation(f"{m.endpoint[0]} SYNCED from a download nobody snapshotted")
            return
        table = m.core.table
        for home, version in snap.items():
            rec = table.get(home)
            if rec is None or rec.version < version:
                self._violation(f"{m.endpoint[0]} SYNCED without home {home} v{version}")
                return

    def _final_checks(self) -> None:
        alive = [m for m in self.members if m.alive]
        for m in alive:
            if m.engine.state is not SyncState.SYNCED:
                self._violation(f"{m.endpoint[0]} not SYNCED after the quiet period")
        synced = [m for m in alive if m.engine.state is SyncState.SYNCED]
        self._check_pools(synced)
        self._check_nat(synced)
        views = {m.endpoint[0]: self._live_view(m) for m in synced}
        first = next(iter(views.values()), None)
        for name, view in views.items():
            if view != first:
                diff = set(view.items()) ^ set((first or {}).items())
                self._violation(f"{name} table differs: {sorted(diff)[:3]}")
        # no deregistered binding comes back; semisync: nothing acked by a survivor is lost
        for home, ops in self.accepted.items():
            version, dereg = ops[-1]
            for m in synced:
                rec = m.core.table.get(home)
                held = rec.version if rec is not None else -1
                if dereg and rec is not None and rec.bindings and held < version:
                    has_tomb = any(
                        (x.core.table.get(home) or rec).version >= version for x in synced
                    )
                    if has_tomb:
                        self._violation(f"home {home}: deregistered binding came back")
        for home, version, node, when in self.protected_by:
            if any(t > when for t in self.crash_times.get(node, [])):
                continue
            if node not in {m.node_id for m in synced}:
                continue
            for m in synced:
                rec = m.core.table.get(home)
                if rec is None or rec.version < version:
                    self._violation(f"home {home} v{version} acked by a survivor but lost")
                    break

    def _live_view(self, m: Member) -> dict[int, tuple[int, tuple[tuple[int, int, int], ...]]]:
        """Every record's version (tombstones too) and its care-of addresses with their NAT
        mappings, of bindings not about to expire (expiry times differ between members by
        transmission delays)."""
        view = {}
        for rec in m.core.table.records():
            live = tuple(
                sorted(
                    (b.care_of_address, b.udp_address, b.udp_port)
                    for b in rec.bindings
                    if b.expires > self.now + 1.0
                )
            )
            view[rec.home_address] = (rec.version, live)
        return view


MODES = ("async", "semisync")


def run_seed(seed: int, mode: str = "async", members: int = 3) -> Report:
    return Simulation(seed, members=members, mode=mode).run()


def replay_command(seed: int, mode: str, members: int) -> str:
    if mode == "revocation":  # the RFC 3543 model, tools/sim_revocation.py
        return f"python -m mobileip.tools.sim_revocation --seed {seed} --members {members}"
    return f"python -m mobileip.tools.sim --seed {seed} --mode {mode} --members {members}"


@dataclass
class Failure:
    seed: int
    mode: str
    members: int
    violations: list[str]

    @property
    def command(self) -> str:
        return replay_command(self.seed, self.mode, self.members)


@dataclass
class SweepReport:
    """What a sweep ran (seeds ``start`` .. ``start + seeds - 1`` in every mode) and found."""

    start: int
    seeds: int = 0
    runs: int = 0
    modes: tuple[str, ...] = MODES
    jobs: int = 1
    seconds: float = 0.0
    members: dict[int, int] = field(default_factory=dict)  # members -> runs
    failures: list[Failure] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def text(self) -> str:
        last = self.start + self.seeds - 1
        spread = ", ".join(f"{n}: {c}" for n, c in sorted(self.members.items()))
        rate = self.runs / self.seconds if self.seconds else 0.0
        lines = [
            f"sim sweep: seeds {self.start}..{last} ({self.seeds} seeds), "
            f"modes {'+'.join(self.modes)}: {self.runs} runs",
            f"members (runs): {spread}",
            f"time: {self.seconds:.1f} s on {self.jobs} process(es), {rate:.1f} runs/s",
            f"failures: {len(self.failures)}",
        ]
        for f in self.failures:
            lines.append(f"  {f.command}")
            lines.extend(f"    {v}" for v in f.violations[:3])
        return "\n".join(lines)

    def as_json(self) -> dict[str, object]:
        return {
            "start": self.start,
            "seeds": self.seeds,
            "runs": self.runs,
            "modes": list(self.modes),
            "jobs": self.jobs,
            "seconds": round(self.seconds, 3),
            "members": {str(n): c for n, c in sorted(self.members.items())},
            "failures": [
                {
                    "seed": f.seed,
                    "mode": f.mode,
                    "members": f.members,
                    "command": f.command,
                    "violations": f.violations,
                }
                for f in self.failures
            ],
        }


def _run_batch(
    seeds: range, modes: tuple[str, ...], members: int | None
) -> tuple[int, dict[int, int], list[Failure]]:
    """Run ``seeds`` in every mode: (runs, runs per member count, failures)."""
    runs = 0
    spread: dict[int, int] = {}
    failures = []
    for seed in seeds:
        n = members if members is not None else members_for(seed)
        for mode in modes:
            report = run_seed(seed, mode=mode, members=n)
            runs += 1
            spread[n] = spread.get(n, 0) + 1
            if not report.ok or report.registrations == 0:
                failures.append(Failure(seed, mode, n, report.violations or ["registered nothing"]))
        from mobileip.tools.sim_revocation import run_revocation_seed  # RFC 3543, once a seed

        rev = run_revocation_seed(seed, members=n)
        if not rev.ok or rev.revocations == 0:
            failures.append(Failure(seed, "revocation", n, rev.violations or ["revoked nothing"]))
    return runs, spread, failures


def sweep(
    start: int,
    count: int,
    jobs: int = 1,
    modes: tuple[str, ...] = MODES,
    members: int | None = None,
    budget: float | None = None,
    batch: int = 20,
    progress: Callable[[SweepReport], None] | None = None,
) -> SweepReport:
    """Run seeds ``start`` .. ``start + count - 1`` in each of ``modes`` (members
    :func:`members_for` the seed unless ``members`` is given) on ``jobs`` processes.

    With ``budget`` (seconds), no batch starts after it has passed: the report then covers the
    seeds actually run, always a prefix of the range. ``progress`` is called after each batch.
    """
    import time
    from concurrent.futures import Future, ProcessPoolExecutor

    report = SweepReport(start, modes=modes, jobs=jobs)
    began = time.monotonic()
    batches = [range(s, min(s + batch, start + count)) for s in range(start, start + count, batch)]

    def absorb(seeds: range, result: tuple[int, dict[int, int], list[Failure]]) -> None:
        runs, spread, failures = result
        report.seeds += len(seeds)
        report.runs += runs
        for n, c in spread.items():
            report.members[n] = report.members.get(n, 0) + c
        report.failures.extend(failures)
        report.seconds = time.monotonic() - began
        if progress is not None:
            progress(report)

    def out_of_time() -> bool:
        return budget is not None and time.monotonic() - began >= budget

    if jobs <= 1:
        for seeds in batches:
            if out_of_time():
                break
            absorb(seeds, _run_batch(seeds, modes, members))
    else:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            # in order, at most 2 batches per process in flight: what is done is a prefix
            pending: list[tuple[range, Future[tuple[int, dict[int, int], list[Failure]]]]] = []
            queue = iter(batches)
            while True:
                while len(pending) < 2 * jobs and not out_of_time():
                    todo = next(queue, None)
                    if todo is None:
                        break
                    pending.append((todo, pool.submit(_run_batch, todo, modes, members)))
                if not pending:
                    break
                seeds, future = pending.pop(0)
                absorb(seeds, future.result())
    report.seconds = time.monotonic() - began
    report.failures.sort(key=lambda f: (f.seed, f.mode))
    return report


def main(argv: list[str] | None = None) -> int:
    """Replay one seed, or sweep a range of seeds.

    ``python -m mobileip.tools.sim --seed N [--mode semisync] [--members 3]`` replays a seed.
    ``python -m mobileip.tools.sim --sweep COUNT [--start S] [--jobs 2] [--minutes M]`` runs
    COUNT seeds from S (a random start when not given) in both modes with 2-5 members, and
    prints what ran, each failure with the command that replays it, and the time taken.
    """
    import argparse
    import json
    import sys

    parser = argparse.ArgumentParser(
        prog="python -m mobileip.tools.sim",
        description=main.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--seed", type=int, help="replay this seed")
    what.add_argument("--sweep", type=int, metavar="COUNT", help="run COUNT seeds")
    parser.add_argument("--mode", choices=MODES, help="one mode (sweep: both by default)")
    parser.add_argument(
        "--members", type=int, help="members (default: 3 for --seed, 2 + seed %% 4 for --sweep)"
    )
    parser.add_argument("--start", type=int, help="first seed of a sweep (default: random)")
    parser.add_argument("--jobs", type=int, default=1, help="sweep processes (default 1)")
    parser.add_argument("--minutes", type=float, help="sweep: start no batch after this")
    parser.add_argument("--json", metavar="FILE", help="sweep: also write the report as JSON")
    args = parser.parse_args(argv)
    if args.seed is not None:
        mode = args.mode or "async"
        sim = Simulation(args.seed, members=args.members or 3, mode=mode)
        print(f"faults: {sim.faults}")
        report = sim.run()
        print(report)
        return 0 if report.ok else 1
    if args.sweep < 1 or args.jobs < 1:
        parser.error("--sweep and --jobs take a positive count")
    start = args.start if args.start is not None else random.SystemRandom().randrange(10**9)
    modes = (args.mode,) if args.mode else MODES
    total = args.sweep

    shown = [0.0]  # when progress was last printed (sweep seconds)

    def progress(r: SweepReport) -> None:
        if r.seconds - shown[0] >= 60 or r.seeds == total:  # a line a minute
            shown[0] = r.seconds
            print(
                f"  {r.seeds}/{total} seeds, {len(r.failures)} failing runs, {r.seconds:.0f} s",
                file=sys.stderr,
                flush=True,
            )

    budget = args.minutes * 60 if args.minutes is not None else None
    swept = sweep(start, total, args.jobs, modes, args.members, budget, progress=progress)
    print(swept.text())
    if args.json:
        with open(args.json, "w") as f:
            json.dump(swept.as_json(), f, indent=1)
            f.write("\n")
    return 0 if swept.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
