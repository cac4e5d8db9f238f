"""Dynamic home addresses across a redundancy group of real daemons on loopback (docs/pools.md).

Mobile nodes register with home address 0.0.0.0 and an NAI at one member; the member is killed
(SIGKILL); the survivor keeps every assignment (renewals with the assigned address, and 0.0.0.0
requests from the same NAIs, get the same addresses) and hands new NAIs only free addresses; a
member that boots afterwards gets the pool state in its bulk download.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from helpers import DaemonHandle
from test_redundancy_loopback import all_synced, group, member_configs, redundancy, wait_until

from mobileip.agents.client import MobileNode, RegistrationClient
from mobileip.core.security import SecurityAssociation

__all__ = ["group"]  # the fixture, imported

NAI_SPI = 600
NAI_KEY = "77" * 16
POOL = "10.9.0.0/24"
ANY = IPv4Address("0.0.0.0")
NAI_SA = SecurityAssociation(NAI_SPI, "hmac-md5", bytes.fromhex(NAI_KEY), (), b"*@pool.test", "p")


def with_pool(configs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for cfg in configs:
        cfg["security_association"].append(
            {"spi": NAI_SPI, "key": NAI_KEY, "nai": "*@pool.test", "pool": "p"}
        )
        cfg["pool"] = [{"name": "p", "network": POOL}]
    return configs


def register(
    ha: DaemonHandle, nai: str, home: IPv4Address = ANY, lifetime: int = 600
) -> tuple[int | None, IPv4Address]:
    mn = MobileNode(
        home, IPv4Address("192.0.2.10"), IPv4Address("10.1.0.1"), NAI_SA, nai=nai.encode()
    )
    with RegistrationClient(mn, ha.address, timeout=0.3, retries=4) as client:
        result = client.register(lifetime)
    return result.code, IPv4Address(result.home_address or "0.0.0.0")


def pools(ha: DaemonHandle) -> dict[str, Any]:
    data = ha.get("/api/v1/pools")
    assert isinstance(data, dict)
    return data


def test_assignments_survive_sigkill_of_the_active_and_reach_a_booting_member(
    group: Callable[..., list[DaemonHandle]],
) -> None:
    configs = with_pool(member_configs(3))
    late = configs.pop()
    a, b = group(configs)
    wait_until("two members SYNCED", lambda: all_synced(a, b))

    first = {}
    for i in range(20):
        code, home = register(a, f"mn{i}@pool.test")
        assert code == 0 and home in IPv4Network(POOL), (code, home)
        first[f"mn{i}@pool.test"] = home
    assert len(set(first.values())) == 20  # no address twice
    wait_until("20 bindings on the standby", lambda: redundancy(b)["bindings"] == 20)

    a.stop(signal.SIGKILL)  # the member that assigned them all dies

    # renewals with the assigned address, and 0.0.0.0 from the same NAIs, keep the addresses
    for nai, home in list(first.items())[:10]:
        assert register(b, nai, home) == (0, home)
    for nai, home in list(first.items())[10:]:
        assert register(b, nai) == (0, home)
    # new NAIs get free addresses only
    fresh = {}
    for i in range(20, 30):
        code, home = register(b, f"mn{i}@pool.test")
        assert code == 0 and home in IPv4Network(POOL)
        fresh[f"mn{i}@pool.test"] = home
    assert not set(fresh.values()) & set(first.values())
    assert len(set(fresh.values())) == 10
    status = pools(b)
    assert status["pools"][0]["in_use"] == 30
    assert status["pools"][0]["size"] == 254

    # a member that boots now learns the whole pool state from the bulk download
    (c,) = group([late], names=["late-member"])
    wait_until("the booted member SYNCED", lambda: all_synced(c), timeout=30)
    wait_until("30 bindings on the booted member", lambda: redundancy(c)["bindings"] == 30)
    assert pools(c)["pools"][0]["in_use"] == 30
    everyone = {**first, **fresh}
    for nai in ("mn3@pool.test", "mn25@pool.test"):
        assert register(c, nai) == (0, everyone[nai])
    code, home = register(c, "newcomer@pool.test")
    assert code == 0 and home not in everyone.values()


def test_deregistration_returns_the_address_on_every_member(
    group: Callable[..., list[DaemonHandle]],
) -> None:
    configs = with_pool(member_configs(2))
    configs[0]["pool"] = configs[1]["pool"] = [
        {"name": "p", "first": "10.9.0.1", "last": "10.9.0.2"}
    ]
    a, b = group(configs)
    wait_until("SYNCED", lambda: all_synced(a, b))
    code1, one = register(a, "one@pool.test")
    code2, two = register(a, "two@pool.test")
    assert (code1, code2) == (0, 0) and one != two
    assert register(a, "three@pool.test")[0] == 130  # exhausted
    assert register(a, "one@pool.test", one, lifetime=0)[0] == 0  # deregistered: back in the pool
    wait_until("the deregistration on the standby", lambda: redundancy(b)["bindings"] == 1)
    a.stop(signal.SIGKILL)
    assert register(b, "three@pool.test") == (0, one)
