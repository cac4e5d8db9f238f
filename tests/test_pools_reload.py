"""Reloading the pools (SIGHUP, ``POST /api/v1/reload``; docs/pools.md): a new pool, a grown or
shrunk range. An address a shrink leaves outside every pool stays with its mobile node, renewals
included, until its binding ends; then it is never handed out again."""

from __future__ import annotations

import signal
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from helpers import homeagent_config, start_homeagent, wait_until
from test_pools_rules import COA, HA, REALM_SA, ident, make_core, send
from test_pools_take import counted

from mobileip.agents.client import MobileNode, RegistrationClient, post_json
from mobileip.config import to_toml
from mobileip.core.pools import AddressPool, AddressPools
from mobileip.core.security import SecurityAssociation, append_auth
from mobileip.wire import registration as wire

A = IPv4Address
ANY = A("0.0.0.0")


def pool(name: str, first: str, last: str) -> AddressPool:
    return AddressPool(name, int(A(first)), int(A(last)))


def request(nai: bytes, home: IPv4Address = ANY, lifetime: int = 1800) -> bytes:
    exts = (wire.NaiExtension(nai),)
    body = wire.encode(
        wire.RegistrationRequest(wire.Flags(0), lifetime, home, HA, COA, ident(), exts)
    )
    return append_auth(body, wire.EXT_MN_HA_AUTH, REALM_SA)


def test_shrink_keeps_live_addresses_until_their_binding_ends() -> None:
    core = make_core(pool("subs", "10.1.128.1", "10.1.128.4"))
    pools = core.pools
    assert pools is not None
    homes = [send(core, request(f"n{i}@example.net".encode())).home_address for i in range(3)]
    assert homes == [A("10.1.128.1"), A("10.1.128.2"), A("10.1.128.3")]
    changes = pools.reconfigure([pool("subs", "10.1.128.1", "10.1.128.2")])
    assert changes == {"added": [], "removed": [], "changed": ["subs"]}
    assert pools.retired == {int(A("10.1.128.3"))}
    # the retired address renews, and a 0.0.0.0 request from its NAI finds it again
    rep = send(core, request(b"n2@example.net", A("10.1.128.3")))
    assert (rep.code, rep.home_address) == (0, A("10.1.128.3"))
    assert send(core, request(b"n2@example.net")).home_address == A("10.1.128.3")
    # another NAI cannot take it; the pool (two addresses, both live) is exhausted
    assert send(core, request(b"x@example.net", A("10.1.128.3"))).code == 129
    assert send(core, request(b"x@example.net")).code == 130
    # its binding ends: retired for good, never handed out, its renewal refused
    assert send(core, request(b"n2@example.net", A("10.1.128.3"), lifetime=0)).code == 0
    assert not pools.retired
    assert send(core, request(b"n2@example.net", A("10.1.128.3"))).code == 131
    assert send(core, request(b"n2@example.net")).code == 130  # the pool is still full


def test_after_a_restart_the_orphans_are_retired_again() -> None:
    """A shrink, then a restart: the new AddressPools finds the live pool-assigned addresses
    outside its pools in the table; static addresses (an SA covers them) are not retired."""
    core = make_core(pool("subs", "10.1.128.1", "10.1.128.4"))
    homes = [send(core, request(f"n{i}@example.net".encode())).home_address for i in range(3)]
    restarted = AddressPools([pool("subs", "10.1.128.1", "10.1.128.2")], core.table)
    restarted.rebuild()
    assert not restarted.retired
    static = {int(homes[1])}  # as if an SA covered 10.1.128.2 statically
    assert restarted.retire_orphans(lambda a: a in static) == 1
    assert restarted.retired == {int(homes[2])}  # .1 and .2 are in the pool; .3 is the orphan
    core.pools = restarted
    rep = send(core, request(b"n2@example.net", homes[2]))
    assert (rep.code, rep.home_address) == (0, homes[2])  # renewed, not 131


def test_new_pool_and_grown_range_hand_out_their_addresses() -> None:
    core = make_core(pool("subs", "10.1.128.1", "10.1.128.1"))
    pools = core.pools
    assert pools is not None
    assert send(core, request(b"a@example.net")).home_address == A("10.1.128.1")
    assert send(core, request(b"b@example.net")).code == 130
    changes = pools.reconfigure(
        [pool("subs", "10.1.128.1", "10.1.128.2"), pool("extra", "10.1.129.1", "10.1.129.9")]
    )
    assert changes == {"added": ["extra"], "removed": [], "changed": ["subs"]}
    assert send(core, request(b"b@example.net")).home_address == A("10.1.128.2")
    assert send(core, request(b"a@example.net")).home_address == A("10.1.128.1")  # unchanged
    assert [p["size"] for p in pools.status()["pools"]] == [2, 9]  # type: ignore[index]


NAI_SPI, NAI_KEY = 600, "77" * 16
NAI_SA = SecurityAssociation(NAI_SPI, "hmac-md5", bytes.fromhex(NAI_KEY), (), b"*@pool.test", "p")


def config(pools: list[dict[str, Any]]) -> dict[str, Any]:
    cfg = homeagent_config()
    cfg["security_association"].append(
        {"spi": NAI_SPI, "key": NAI_KEY, "nai": "*@pool.test", "pool": "p"}
    )
    cfg["pool"] = pools
    return cfg


def register(
    address: tuple[str, int], nai: str, home: IPv4Address = ANY, lifetime: int = 600
) -> tuple[int | None, IPv4Address]:
    mn = MobileNode(home, A("192.0.2.10"), A("10.1.0.1"), NAI_SA, nai=nai.encode())
    with RegistrationClient(mn, address, timeout=0.3, retries=4) as client:
        result = client.register(lifetime)
    return result.code, A(result.home_address or "0.0.0.0")


def test_reload_rebuilds_the_pools_of_a_running_daemon(tmp_path: Path) -> None:
    cfg = config([{"name": "p", "first": "10.9.0.1", "last": "10.9.0.3"}])
    ha = start_homeagent(tmp_path, cfg)
    try:
        got = [register(ha.address, f"m{i}@pool.test") for i in range(3)]
        assert got == [(0, A(f"10.9.0.{i}")) for i in (1, 2, 3)]
        assert register(ha.address, "late@pool.test")[0] == 130

        # shrink p to two addresses and add a pool q: POST /api/v1/reload
        cfg["pool"] = [
            {"name": "p", "first": "10.9.0.1", "last": "10.9.0.2"},
            {"name": "q", "network": "10.9.1.0/30"},
        ]
        cfg["security_association"][-1]["pool"] = "q"
        ha.config_path.write_text(to_toml(cfg))
        answer = post_json(ha.control, "/api/v1/reload", token=ha.token)
        assert answer["ok"] and "pools" not in answer["restart_needed"], answer
        status = ha.get("/api/v1/pools")
        assert [(p["name"], p["size"], p["in_use"]) for p in status["pools"]] == [
            ("p", 2, 2),
            ("q", 2, 0),
        ]
        assert status["retired"] == ["10.9.0.3"]
        # the retired address still renews; new mobile nodes get q's addresses
        assert register(ha.address, "m2@pool.test", A("10.9.0.3")) == (0, A("10.9.0.3"))
        assert register(ha.address, "late@pool.test") == (0, A("10.9.1.1"))
        assert "event=pools.reloaded" in ha.log()

        # SIGHUP: a bad pool keeps the old ones (the whole reload fails)
        cfg["pool"].append({"name": "bad", "network": "10.9.1.0/29"})  # overlaps q
        ha.config_path.write_text(to_toml(cfg))
        ha.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "config.reload_failed" in ha.log(), 10, "the reload to fail")
        assert len(ha.get("/api/v1/pools")["pools"]) == 2
        # SIGHUP: q grows to a /29
        cfg["pool"] = [cfg["pool"][0], {"name": "q", "network": "10.9.1.0/29"}]
        ha.config_path.write_text(to_toml(cfg))
        ha.proc.send_signal(signal.SIGHUP)
        wait_until(
            lambda: ha.get("/api/v1/pools")["pools"][1]["size"] == 6, 10, "q to grow by SIGHUP"
        )
        # the binding of the retired address ends: it leaves the retired set for good
        assert register(ha.address, "m2@pool.test", A("10.9.0.3"), lifetime=0)[0] == 0
        assert ha.get("/api/v1/pools")["retired"] == []
    finally:
        ha.stop()


def test_a_restart_after_a_shrink_keeps_the_retired_addresses(tmp_path: Path) -> None:
    cfg = config([{"name": "p", "first": "10.9.0.1", "last": "10.9.0.3"}])
    cfg["persistence"] = {"path": str(tmp_path / "state")}
    ha = start_homeagent(tmp_path, cfg)
    try:
        got = [register(ha.address, f"m{i}@pool.test") for i in range(3)]
        assert got == [(0, A(f"10.9.0.{i}")) for i in (1, 2, 3)]
    finally:
        assert ha.stop() == 0
    cfg["pool"] = [{"name": "p", "first": "10.9.0.1", "last": "10.9.0.2"}]
    ha = start_homeagent(tmp_path, cfg)  # the same state directory: the journal brings them back
    try:
        status = ha.get("/api/v1/pools")
        assert status["retired"] == ["10.9.0.3"], status
        assert status["pools"][0]["in_use"] == 2
        assert register(ha.address, "m2@pool.test", A("10.9.0.3")) == (0, A("10.9.0.3"))
        assert "event=pools.retired addresses=1" in ha.log()
    finally:
        ha.stop()


def test_a_reload_reads_the_live_addresses_not_every_address_of_the_pools() -> None:
    """A reload (every SIGHUP, even one that changes only keys) looked up every address of every
    old pool: 0.4 s of a stalled event loop for a 2^20 pool with nothing live. It reads the
    addresses that may be live now; what it retires is unchanged."""
    big = AddressPool("subs", int(A("10.0.0.1")), int(A("10.0.0.1")) + (1 << 20) - 1)
    core = make_core(big)
    pools = core.pools
    assert pools is not None
    homes = [send(core, request(f"n{i}@example.net".encode())).home_address for i in range(3)]
    assert send(core, request(b"n1@example.net", homes[1], lifetime=0)).code == 0
    calls = 0
    pool_of = pools.pool_of

    def counting(address: int) -> AddressPool | None:
        nonlocal calls
        calls += 1
        return pool_of(address)

    pools.pool_of = counting  # type: ignore[method-assign]
    store = counted(core.table)
    pools.reconfigure([big])  # the same pool (a reload for keys): nothing to redo
    assert not pools.retired
    assert store.reads == 0, store.reads  # before: every record of the table
    shrunk = AddressPool("subs", big.first + 1, big.last)  # leaves out homes[0]
    pools.reconfigure([shrunk])
    assert pools.retired == {int(homes[0])}
    assert calls < 100, calls  # before: 2 x 2^20
