"""Redundancy groups of real daemons on loopback (issue 3, multi-process tests).

Every member listens on its own 127.0.0.x address with unicast peers; registrations go to one
member and must appear, with the same versions, on every member.
"""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import helpers
import pytest
from helpers import KEY, SPI, DaemonHandle, free_port, homeagent_config, start_homeagent

from mobileip.agents.client import MobileNode, build_request, check_reply
from mobileip.core.replay import ntp_from_unix
from mobileip.core.security import SecurityAssociation
from mobileip.wire import sync as wire

SYNC_KEY = "5a" * 32
SYNC_SPI = 1000
PREFIX = "10.1.0.0/16"


def member_configs(n: int, **redundancy: Any) -> list[dict[str, Any]]:
    hosts = [f"127.0.0.{11 + i}" for i in range(n)]
    ports = [free_port(h) for h in hosts]
    configs = []
    for i, host in enumerate(hosts):
        peers = [f"{h}:{p}" for j, (h, p) in enumerate(zip(hosts, ports, strict=True)) if j != i]
        cfg = homeagent_config(
            host,
            security_association=[
                {"spi": SPI, "algorithm": "hmac-md5", "key": KEY, "home_addresses": [PREFIX]}
            ],
            redundancy={
                "node_id": host,
                "listen": host,
                "port": ports[i],
                "peers": peers,
                "spi": SYNC_SPI,
                "key": SYNC_KEY,
                "boot_wait": 0.3,
                **redundancy,
            },
        )
        configs.append(cfg)
    return configs


def redundancy(ha: DaemonHandle) -> dict[str, Any]:
    data = ha.get("/api/v1/redundancy")
    assert isinstance(data, dict)
    return data


def wait_until(what: str, check: Callable[[], bool], timeout: float = 20.0) -> float:
    return helpers.wait_until(check, timeout, what)


def table(ha: DaemonHandle) -> set[tuple[str, str, int]]:
    return {(r["home_address"], r["care_of_address"], r["version"]) for r in ha.bindings()}


def mobile_nodes(n: int, coa: str = "192.0.2.10", start: int = 0) -> list[MobileNode]:
    sa = SecurityAssociation(SPI, "hmac-md5", bytes.fromhex(KEY), (IPv4Network(PREFIX),))
    base = int(IPv4Address("10.1.1.0"))
    return [
        MobileNode(IPv4Address(base + start + i), IPv4Address(coa), IPv4Address("10.1.0.1"), sa)
        for i in range(n)
    ]


_last_ident: dict[IPv4Address, int] = {}


def register_all(
    ha: DaemonHandle, mns: list[MobileNode], lifetime: int, window: int = 64, timeout: float = 0.5
) -> dict[IPv4Address, int]:
    """Send one request per mobile node (``window`` in flight); return each reply code."""
    codes: dict[IPv4Address, int] = {}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.bind(("127.0.0.1", 0))
        todo = list(mns)
        inflight: dict[int, tuple[MobileNode, int]] = {}
        deadline = time.monotonic() + 60
        while (todo or inflight) and time.monotonic() < deadline:
            while todo and len(inflight) < window:
                mn = todo.pop()
                ident = max(ntp_from_unix(time.time()), _last_ident.get(mn.home_address, 0) + 1)
                _last_ident[mn.home_address] = ident
                inflight[int(mn.home_address)] = (mn, ident)
                sock.sendto(build_request(mn, lifetime, ident), ha.address)
            try:
                data, _ = sock.recvfrom(2048)
            except TimeoutError:
                todo.extend(mn for mn, _ in inflight.values())  # resend what got no reply
                inflight.clear()
                continue
            home = int.from_bytes(data[4:8], "big")
            if home not in inflight or int.from_bytes(data[12:20], "big") != inflight[home][1]:
                continue  # a late reply to a request we already sent again
            mn, ident = inflight.pop(home)
            checked = check_reply(mn, data, ident)
            assert checked.reply is not None, checked.error
            codes[mn.home_address] = checked.reply.code
    assert len(codes) == len(mns), f"{len(mns) - len(codes)} requests got no reply"
    return codes


@pytest.fixture
def group(tmp_path: Path) -> Iterator[Callable[..., list[DaemonHandle]]]:
    with ExitStack() as stack:

        def start(
            configs: list[dict[str, Any]], names: list[str] | None = None
        ) -> list[DaemonHandle]:
            handles = []
            for i, cfg in enumerate(configs):
                name = names[i] if names else f"member{cfg['redundancy']['node_id']}"
                h = start_homeagent(tmp_path, cfg, name=name)
                stack.callback(lambda h=h: h.stop(signal.SIGKILL))
                handles.append(h)
            return handles

        yield start


def all_synced(*members: DaemonHandle) -> bool:
    return all(redundancy(m)["state"] == "SYNCED" for m in members)


def test_registrations_replicate_late_member_downloads_deregistrations_propagate(
    group: Callable[..., list[DaemonHandle]],
) -> None:
    configs = member_configs(4)
    late = configs.pop()
    members = group(configs)
    a, b, c = members
    wait_until("three members SYNCED", lambda: all_synced(a, b, c))

    mns = mobile_nodes(2000)
    codes = register_all(a, mns, lifetime=1800)
    assert set(codes.values()) == {0}
    took = wait_until(
        "2000 bindings on all three",
        lambda: all(redundancy(m)["bindings"] == 2000 for m in members),
    )
    print(f"2000 registrations replicated to two peers {took:.2f}s after the last reply")
    assert table(a) == table(b) == table(c)

    (d,) = group([late])  # knows the others from its config; they learn it from its request
    took = wait_until("the fourth member SYNCED", lambda: all_synced(d), timeout=30)
    assert redundancy(d)["bindings"] == 2000
    assert table(d) == table(a)
    print(f"late member downloaded 2000 bindings and was SYNCED {took:.2f}s after start")
    counters = {m.config["redundancy"]["node_id"]: redundancy(m)["counters"] for m in members}
    answered = {n: c["sent_bi_records"] for n, c in counters.items() if c["sent_bi_records"]}
    assert list(answered.values()) == [2000], f"one member sends the table, got {answered}"

    dereg = mns[:500]
    codes = register_all(a, dereg, lifetime=0)
    assert set(codes.values()) == {0}
    everyone = [a, b, c, d]
    wait_until(
        "500 deregistrations everywhere",
        lambda: all(redundancy(m)["bindings"] == 1500 for m in everyone),
    )
    assert table(a) == table(b) == table(c) == table(d)
    gone = {str(mn.home_address) for mn in dereg}
    assert not gone & {home for home, _, _ in table(d)}


def test_member_killed_during_registrations_restarts_and_converges(
    group: Callable[..., list[DaemonHandle]], tmp_path: Path
) -> None:
    configs = member_configs(3)
    a, b, c = group(configs)
    wait_until("SYNCED", lambda: all_synced(a, b, c))
    register_all(a, mobile_nodes(300), lifetime=1800)
    b.stop(signal.SIGKILL)  # dies with updates in flight
    register_all(a, mobile_nodes(300, start=300), lifetime=1800)
    register_all(a, mobile_nodes(100, coa="192.0.2.99"), lifetime=1800)  # moves
    (b,) = group([configs[1]], names=["member-b-restarted"])
    register_all(a, mobile_nodes(100, start=600), lifetime=1800)
    wait_until("restarted member SYNCED", lambda: all_synced(b), timeout=30)
    wait_until(
        "identical tables",
        lambda: table(a) == table(b) == table(c) and len(table(a)) == 700,
        timeout=30,
    )
    moved = {h: coa for h, coa, _ in table(b)}
    assert moved[str(mobile_nodes(1)[0].home_address)] == "192.0.2.99"


def test_forged_and_replayed_sync_messages_are_rejected_and_counted(
    group: Callable[..., list[DaemonHandle]],
) -> None:
    configs = member_configs(2)
    a, b = group(configs)
    wait_until("SYNCED", lambda: all_synced(a, b))
    target = (configs[0]["redundancy"]["listen"], configs[0]["redundancy"]["port"])
    home = int(IPv4Address("10.1.9.9"))
    record = wire.RecordState(
        home,
        int(IPv4Address("10.1.0.1")),
        (1 << 40) | 7,
        1,
        0,
        (wire.BindingState(int(IPv4Address("192.0.2.66")), 600, 0, 600_000),),
    )
    epoch = int(time.time()) + 10
    msg = wire.BindingUpdate(1, int(IPv4Address("127.0.0.99")), (epoch << 32) | 1, 42, (record,))
    good = wire.GroupAuth(
        [wire.GroupKey(SYNC_SPI, "hmac-sha256", bytes.fromhex(SYNC_KEY))], SYNC_SPI
    )
    bad = wire.GroupAuth([wire.GroupKey(SYNC_SPI, "hmac-sha256", b"\x01" * 32)], SYNC_SPI)
    wrong_spi = wire.GroupAuth(
        [wire.GroupKey(SYNC_SPI + 1, "hmac-sha256", bytes.fromhex(SYNC_KEY))], SYNC_SPI + 1
    )
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.99", 0))
        sock.sendto(wire.encode(msg, bad), target)  # forged: wrong key
        sock.sendto(wire.encode(msg, wrong_spi), target)  # unknown SPI
        sock.sendto(wire.encode(msg, good)[:-3], target)  # truncated
        time.sleep(0.3)
        assert all(r["home_address"] != "10.1.9.9" for r in a.bindings())
        genuine = wire.encode(msg, good)
        sock.sendto(genuine, target)
        sock.settimeout(2)
        ack, _ = sock.recvfrom(2048)
        assert wire.decode(ack, good).identification == 42
        sock.sendto(genuine, target)  # replayed
        time.sleep(0.3)
    counters = redundancy(a)["counters"]
    assert counters["dropped"].get("bad-authenticator") == 1
    assert counters["dropped"].get("bad-spi") == 1
    assert counters["dropped"].get("replayed") == 1
    assert counters["sec_violations"] >= 3
    assert counters["received_bus"] == 1
    assert any(r["home_address"] == "10.1.9.9" for r in a.bindings())


def test_semisync_replies_after_a_peer_has_the_binding(
    group: Callable[..., list[DaemonHandle]],
) -> None:
    configs = member_configs(2, mode="semisync", semisync_timeout=1.0)
    a, b = group(configs)
    wait_until("SYNCED", lambda: all_synced(a, b))
    mns = mobile_nodes(50)
    register_all(a, mns, lifetime=600, window=1)
    # every reply was held until b acked, so b has every binding the moment we got the replies
    assert len(table(b)) == 50
    assert redundancy(a)["counters"]["unprotected"] == 0

    b.stop(signal.SIGKILL)
    start = time.monotonic()
    register_all(a, mobile_nodes(1, start=100), lifetime=600, window=1, timeout=3.0)
    waited = time.monotonic() - start
    assert 0.9 <= waited < 5, waited
    assert redundancy(a)["counters"]["unprotected"] == 1
