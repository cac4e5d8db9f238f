"""``in_use`` of ``GET /api/v1/pools`` counts the addresses that may be live, checked against the
table, instead of reading every address of the pool: it must agree with the full scan after any
mix of assignments, renewals, deregistrations, expiry, ``clear binding``, a peer's records
(``refresh``), a reload (``reconfigure``) and a rebuild."""

from __future__ import annotations

import random
from ipaddress import IPv4Address

import pytest
from test_pools_rules import COA, HA, REALM_SA, STATIC_SA, WALL, ident

from mobileip.core import homeagent as ha
from mobileip.core.bindings import Binding, MobilityRecord
from mobileip.core.pools import AddressPool, AddressPools
from mobileip.core.security import SecurityAssociation, SecurityAssociations, append_auth
from mobileip.wire import registration as wire

A = IPv4Address
ANY = A("0.0.0.0")
SUBS = AddressPool("subs", int(A("10.1.128.1")), int(A("10.1.128.12")))
MORE = AddressPool("more", int(A("10.1.0.200")), int(A("10.1.0.210")))  # static SA covers it


def request(nai: bytes | None, home: IPv4Address, lifetime: int) -> bytes:
    exts = (wire.NaiExtension(nai),) if nai is not None else ()
    body = wire.encode(
        wire.RegistrationRequest(wire.Flags(0), lifetime, home, HA, COA, ident(), exts)
    )
    return append_auth(body, wire.EXT_MN_HA_AUTH, REALM_SA if nai is not None else STATIC_SA)


def check(pools: AddressPools) -> dict[str, int]:
    counts = pools.in_use_counts()
    assert counts == {name: pools.in_use_by_scan(name) for name in counts}
    return counts


@pytest.mark.parametrize("seed", range(25))
def test_in_use_agrees_with_the_full_scan(seed: int) -> None:
    rnd = random.Random(seed)
    settings = ha.HomeAgentSettings(address=HA, node_id=1)
    core = ha.HomeAgentCore(settings, SecurityAssociations([REALM_SA, STATIC_SA]))
    core.pools = pools = AddressPools([SUBS, MORE], core.table)
    homes: dict[bytes, IPv4Address] = {}
    now = 1000.0
    seen_nonzero = False
    for _ in range(120):
        now += rnd.choice([0.0, 0.5, 3.0])
        op = rnd.random()
        nai = f"n{rnd.randrange(16)}@example.net".encode()
        if op < 0.35:  # a 0.0.0.0 request (a first assignment, or the NAI's address again)
            out = core.handle_request(request(nai, ANY, rnd.choice([2, 5, 600])), now, WALL)
            assert out.reply is not None
            reply = wire.decode_reply(out.reply)
            if reply.code == 0:
                homes[nai] = reply.home_address
        elif op < 0.5 and nai in homes:  # renewal or deregistration with the address
            lifetime = rnd.choice([0, 5, 600])
            core.handle_request(request(nai, homes[nai], lifetime), now, WALL)
        elif op < 0.6:  # a static mobile node inside the range of "more" (no NAI)
            home = A(int(A("10.1.0.200")) + rnd.randrange(11))
            core.handle_request(request(None, home, rnd.choice([0, 4, 600])), now, WALL)
        elif op < 0.7:  # expiry
            core.tick(now + rnd.choice([1.0, 10.0]))
        elif op < 0.78 and homes:  # the operator's clear binding
            core.administrative_deregister(rnd.choice(list(homes.values())), now)
        elif op < 0.9:  # a peer's record (live or a tombstone) merged, then refresh
            address = SUBS.first + rnd.randrange(12)
            version = core.table.next_version(address, 2)
            live = rnd.random() < 0.6
            bindings = (Binding(int(COA), 600, now + 600, 0),) if live else ()
            rec = MobilityRecord(
                address, version, 1, int(HA), bindings, 0.0 if live else now, b"peer@x"
            )
            if core.table.merge(rec, now):
                pools.refresh([address])
        elif op < 0.95:  # a reload: shrink or grow subs
            last = SUBS.first + rnd.choice([5, 11, 20])
            pools.reconfigure([AddressPool("subs", SUBS.first, last), MORE])
        else:
            pools.rebuild()
        counts = check(pools)
        seen_nonzero = seen_nonzero or counts["subs"] > 0
    assert seen_nonzero


def test_a_pool_of_2_20_addresses_counts_its_few_live_ones() -> None:
    big = AddressPool("big", int(A("10.0.0.1")), int(A("10.0.0.1")) + (1 << 20) - 1)
    sa = SecurityAssociation(512, "hmac-md5", bytes(16), (), b"*@example.net", "big")
    core = ha.HomeAgentCore(ha.HomeAgentSettings(address=HA), SecurityAssociations([sa]))
    core.pools = pools = AddressPools([big], core.table)
    for i in range(5):
        exts = (wire.NaiExtension(f"m{i}@example.net".encode()),)
        body = wire.encode(
            wire.RegistrationRequest(wire.Flags(0), 600, ANY, HA, COA, ident(), exts)
        )
        out = core.handle_request(append_auth(body, wire.EXT_MN_HA_AUTH, sa), 1.0, WALL)
        assert out.reply is not None and wire.decode_reply(out.reply).code == 0
    assert pools.in_use("big") == 5 == len(core.table)
    assert pools.status()["pools"][0]["in_use"] == 5  # type: ignore[index]
