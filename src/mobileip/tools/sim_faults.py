"""What the seeded simulators share (``tools/sim.py``, the bindings and pools model, and
``tools/sim_revocation.py``, the RFC 3543 model): the virtual wall clock and the group's keys,
a member's identity and sync engine, the event queue, and the faults of the sync link
(partitions of one member, loss, duplicates, delay).

The order in which these draw random numbers is part of each simulator's contract (a seed
always replays the same run), so each helper draws exactly what the code it replaced drew, in
the same order.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

from mobileip.core.bindings import BindingTable
from mobileip.core.security import SecurityAssociation
from mobileip.sync.engine import SyncEngine, SyncSettings
from mobileip.sync.members import Endpoint
from mobileip.wire import sync as wire

WALL_BASE = 1_800_000_000.0  # virtual wall clock at t=0 (2027)
HA_ADDRESS = IPv4Address("10.1.0.1")  # the virtual address the mobile nodes register with
SA = SecurityAssociation(256, "hmac-md5", bytes(range(16)), (IPv4Network("10.1.0.0/16"),))
GROUP_KEY = wire.GroupKey(1000, "hmac-sha256", b"k" * 32)

Partition = tuple[float, float, int]  # (start, end, the member cut off from the others)


def members_for(seed: int) -> int:
    """How many members a sweep runs ``seed`` with: 2 to 5, by the seed (CI and nightly)."""
    return 2 + seed % 4


class SimMember:
    """A member's identity across its lives: index, sync endpoint, node id, boots, and the
    virtual time its timer event is queued for."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.endpoint: Endpoint = (f"10.1.0.{11 + index}", 434)
        self.node_id = int(IPv4Address(self.endpoint[0]))
        self.alive = False
        self.boots = 0
        self.armed: float | None = None

    def new_engine(
        self, peers: tuple[Endpoint, ...], table: BindingTable, now: float, mode: str = "async"
    ) -> SyncEngine:
        """A fresh sync engine for this boot (not started): the simulators' timers, and an
        epoch that is later for every later boot."""
        sync = SyncSettings(
            node_id=self.node_id,
            peers=peers,
            mode=mode,
            boot_wait=0.5,
            digest_interval=1.0,
            unreachable_after=3.5,
            ordered_identifications=True,  # timestamps
        )
        epoch = int(WALL_BASE + now) + self.boots  # a later boot always has a later epoch
        return SyncEngine(sync, table, wire.GroupAuth([GROUP_KEY], 1000), epoch)


class EventQueue:
    """Virtual time: events ordered by time, then by when they were queued; and the sync link
    between members, which draws its faults from the simulation's ``rng``."""

    rng: random.Random

    def __init__(self) -> None:
        self.now = 0.0
        self._queue: list[tuple[float, int, str, object]] = []
        self._seq = 0

    def _at(self, when: float, kind: str, payload: object) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (when, self._seq, kind, payload))

    def _next_event(self) -> tuple[str, object] | None:
        """Pop the next event and move the clock to it; None when the queue is empty."""
        if not self._queue:
            return None
        when, _, kind, payload = heapq.heappop(self._queue)
        self.now = when
        return kind, payload

    def _sync_send(
        self,
        sender: SimMember,
        datagrams: Iterable[tuple[bytes, Endpoint]],
        members: Mapping[Endpoint, SimMember],
        kind: str,
        link: LinkFaults,
    ) -> int:
        """Queue each datagram for the member it is addressed to as event ``kind`` (payload:
        data, sender's endpoint, target), through the link's faults. Returns how many the
        sender sent (those to unknown endpoints or itself included)."""
        sent = 0
        for data, dest in datagrams:
            sent += 1
            target = members.get(dest)
            if target is None or target is sender:
                continue
            faulty = link.faulty
            cut = faulty and split(link.partitions, self.now, sender.index, target.index)
            for delay in sync_delays(
                self.rng, faulty, cut, link.loss, link.duplicate, link.max_delay
            ):
                self._at(self.now + delay, kind, (data, sender.endpoint, target))
        return sent


@dataclass(frozen=True, slots=True)
class LinkFaults:
    """The sync link's faults at one moment: ``faulty`` (still in the faulty period: loss and
    duplicates apply), partitions, loss and duplicate rates, the longest delay."""

    faulty: bool
    partitions: list[Partition]
    loss: float
    duplicate: float
    max_delay: float


def draw_partitions(
    rng: random.Random, members: int, duration: float, shortest: float, longest: float
) -> list[Partition]:
    """0 to 2 partitions, each cutting one member off the sync for ``shortest``-``longest`` s,
    starting between 1 s and ``duration`` - 2 s (the faulty period)."""
    partitions = []
    for _ in range(rng.randint(0, 2)):
        start = rng.uniform(1.0, duration - 2)
        partitions.append((start, start + rng.uniform(shortest, longest), rng.randrange(members)))
    return partitions


def split(partitions: list[Partition], now: float, a: int, b: int) -> bool:
    """Whether a partition separates members ``a`` and ``b`` (indices) at ``now``."""
    return any(s <= now < e and (a == who) != (b == who) for s, e, who in partitions)


def sync_delays(
    rng: random.Random,
    faulty: bool,
    cut: bool,
    loss: float,
    duplicate: float,
    max_delay: float,
) -> list[float]:
    """The delays of the copies of one sync datagram that arrive: none when it is lost (``cut``
    off by a partition, or lost at random), two when duplicated. Outside the ``faulty`` period
    nothing is lost or duplicated, only delayed."""
    copies = 1
    if faulty:
        if cut or rng.random() < loss:
            return []
        copies = 2 if rng.random() < duplicate else 1
    return [rng.uniform(0.0001, max_delay) for _ in range(copies)]
