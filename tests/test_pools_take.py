"""Taking a free address from a pool costs O(1) table reads once the pool is full or every
address has a record (tombstones), and never answers 130 while an address is free.

Before: ``AddressPools._take`` read (and unpacked) every address of the pool for each 0.0.0.0
request of a full pool, and for each assignment once every address had a record: 0.64 s per
request on a full /16 (scripts/perf/pools_take.py), and the event loop stalled for it."""

from __future__ import annotations

import random
from ipaddress import IPv4Address
from typing import Any

import pytest
from test_pools_rules import COA, HA, REALM_SA, STATIC_SA, WALL, ident

from mobileip.core import homeagent as ha
from mobileip.core.bindings import Binding, BindingTable, MobilityRecord
from mobileip.core.pools import AddressPool, AddressPools
from mobileip.core.security import SecurityAssociations, append_auth
from mobileip.wire import registration as wire

A = IPv4Address
ANY = A("0.0.0.0")
FIRST = int(A("10.1.128.1"))


class CountingDict(dict[int, bytes]):
    """The table's record store, counting point reads (every read path goes through get)."""

    reads = 0

    def get(self, key: Any, default: Any = None) -> Any:
        self.reads += 1
        return super().get(key, default)


def counted(table: BindingTable) -> CountingDict:
    store = CountingDict(table._records)
    table._records = store
    return store


def request(nai: bytes, home: IPv4Address = ANY, lifetime: int = 600) -> bytes:
    body = wire.encode(
        wire.RegistrationRequest(
            wire.Flags(0), lifetime, home, HA, COA, ident(), (wire.NaiExtension(nai),)
        )
    )
    return append_auth(body, wire.EXT_MN_HA_AUTH, REALM_SA)


def send(core: ha.HomeAgentCore, data: bytes, now: float = 1000.0) -> wire.RegistrationReply:
    out = core.handle_request(data, now, WALL)
    assert out.reply is not None
    return wire.decode_reply(out.reply)


def full_core(size: int) -> tuple[ha.HomeAgentCore, AddressPool]:
    """A core whose pool of ``size`` addresses is entirely assigned (records stored directly,
    as a bulk download would, then the hint rebuilt)."""
    pool = AddressPool("subs", FIRST, FIRST + size - 1)
    core = ha.HomeAgentCore(
        ha.HomeAgentSettings(address=HA, node_id=1), SecurityAssociations([REALM_SA, STATIC_SA])
    )
    for i in range(size):
        rec = MobilityRecord(
            FIRST + i, (1 << 32) | 2, 1, int(HA), (Binding(int(COA), 600, 1600.0, 0),), 0.0,
            f"old{i}@example.net".encode(),
        )  # fmt: skip
        core.table.store(rec, 1000.0)
    core.pools = AddressPools([pool], core.table)
    core.pools.rebuild()
    return core, pool


def test_a_full_pool_answers_130_without_reading_every_address() -> None:
    core, _ = full_core(4000)
    assert send(core, request(b"first@example.net")).code == 130  # finds out: one scan
    store = counted(core.table)
    for i in range(3):
        assert send(core, request(f"more{i}@example.net".encode())).code == 130
    assert store.reads < 50, store.reads  # before: > 8000 (every address, twice)


def test_when_every_address_has_a_record_a_tombstone_is_found_without_a_scan() -> None:
    core, _ = full_core(4000)
    assert send(core, request(b"first@example.net")).code == 130
    store = counted(core.table)
    for k in range(3):  # a holder deregisters; a new NAI gets that address
        victim = FIRST + 1000 * k + 7
        nai = f"old{1000 * k + 7}@example.net".encode()
        assert send(core, request(nai, A(victim), lifetime=0)).code == 0
        rep = send(core, request(f"new{k}@example.net".encode()))
        assert rep.code == 0 and int(rep.home_address) == victim
        assert send(core, request(f"none{k}@example.net".encode())).code == 130
    assert store.reads < 200, store.reads  # before: > 20000


def test_an_address_freed_by_expiry_or_clear_or_a_peer_is_handed_out_again() -> None:
    core, _ = full_core(50)
    assert send(core, request(b"first@example.net")).code == 130
    # expiry: one binding expires at 1600 (all do: renew the others first)
    for i in range(1, 50):
        nai = f"old{i}@example.net".encode()
        assert send(core, request(nai, A(FIRST + i), lifetime=1800), now=1001.0).code == 0
    core.tick(1601.0)
    rep = send(core, request(b"a@example.net"), now=1602.0)
    assert rep.code == 0 and int(rep.home_address) == FIRST
    assert send(core, request(b"x@example.net"), now=1602.0).code == 130
    # clear binding
    core.administrative_deregister(A(FIRST + 5), 1603.0)
    rep = send(core, request(b"b@example.net"), now=1603.0)
    assert rep.code == 0 and int(rep.home_address) == FIRST + 5
    # a peer's tombstone
    rec = core.table.get(FIRST + 9)
    assert rec is not None
    tomb = MobilityRecord(FIRST + 9, core.table.next_version(FIRST + 9, 2), rec.last_id,
                          rec.home_agent, (), 1604.0, rec.nai)  # fmt: skip
    assert core.table.merge(tomb, 1604.0)
    core.pools.refresh([FIRST + 9])  # type: ignore[union-attr]
    rep = send(core, request(b"c@example.net"), now=1604.0)
    assert rep.code == 0 and int(rep.home_address) == FIRST + 9


@pytest.mark.parametrize("seed", range(30))
def test_130_exactly_when_no_address_is_free(seed: int) -> None:
    """Random mixes of assignments, renewals, deregistrations, expiry, clears, a peer's records,
    purges, reloads and rebuilds: a new NAI's 0.0.0.0 request is refused 130 exactly when a
    scan of the pool finds no free address, and otherwise gets a free one."""
    rnd = random.Random(seed)
    pool = AddressPool("subs", FIRST, FIRST + 7)
    core = ha.HomeAgentCore(
        ha.HomeAgentSettings(address=HA, node_id=1), SecurityAssociations([REALM_SA, STATIC_SA])
    )
    core.table.tombstone_ttl = 4.0
    core.pools = pools = AddressPools([pool], core.table)
    homes: dict[bytes, IPv4Address] = {}
    now = 1000.0
    refused = 0
    for fresh in range(200):
        now += rnd.choice([0.0, 0.5, 3.0])
        op = rnd.random()
        nai = f"n{rnd.randrange(14)}@example.net".encode()
        if op < 0.3:
            rep = send(core, request(nai, ANY, rnd.choice([2, 5, 600])), now)
            if rep.code == 0:
                homes[nai] = rep.home_address
        elif op < 0.45 and nai in homes:
            send(core, request(nai, homes[nai], rnd.choice([0, 5, 600])), now)
        elif op < 0.6:
            core.tick(now + rnd.choice([1.0, 10.0]))  # expiry and purges
        elif op < 0.7 and homes:
            core.administrative_deregister(rnd.choice(list(homes.values())), now)
        elif op < 0.85:
            address = pool.first + rnd.randrange(8)
            live = rnd.random() < 0.6
            bindings = (Binding(int(COA), 600, now + 600, 0),) if live else ()
            rec = MobilityRecord(address, core.table.next_version(address, 2), 1, int(HA),
                                 bindings, 0.0 if live else now, b"peer@x")  # fmt: skip
            if core.table.merge(rec, now):
                pools.refresh([address])
        elif op < 0.93:
            pools.reconfigure([AddressPool("subs", pool.first, pool.first + rnd.choice([3, 7]))])
        else:
            pools.rebuild()
        current = pools.pool("subs")
        assert current is not None
        free = [a for a in range(current.first, current.last + 1) if not core.table.is_live(a)]
        rep = send(core, request(f"probe{fresh}@example.net".encode(), ANY, 0), now)
        assert rep.code == 0  # a deregistration of 0.0.0.0 by an NAI holding nothing
        rep = send(core, request(f"probe{fresh}@example.net".encode(), ANY, 1), now)
        if free:
            assert rep.code == 0 and int(rep.home_address) in free, (rep, free)
        else:
            assert rep.code == 130, rep
            refused += 1
    assert refused > 0
