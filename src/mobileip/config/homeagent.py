"""``[homeagent]``: the registration socket and the core's limits (required section).

In a ``[[group]]`` file each ``[group.homeagent]`` is merged over this table (groups.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address

from mobileip.config.errors import Table

ANY_ADDRESS = IPv4Address("0.0.0.0")


@dataclass(frozen=True, slots=True)
class HomeAgentConfig:
    address: IPv4Address
    listen: IPv4Address = ANY_ADDRESS
    port: int = 434
    max_lifetime: int = 1800
    replay: str = "timestamp"
    replay_window: float = 7.0
    max_bindings: int = 1_000_000
    max_simultaneous: int = 5
    rate_limit: float = 0.0  # requests per second per source address; 0: no limit
    rate_burst: int = 10
    rate_sources: int = 65_536  # sources tracked by the rate limiter
    overload_queue: int = 4096  # datagrams queued per source-fair while overloaded; 0: off
    drop_privileges: bool = True  # keep only CAP_NET_ADMIN/RAW/BIND_SERVICE once started
    lock_memory: bool = False  # mlockall(MCL_CURRENT | MCL_FUTURE) at start (daemon/memory.py)
    # RFC 3519 NAT traversal (core/nat.py, docs/nat-traversal.md)
    nat_traversal: bool = False
    nat_keepalive: int = 110  # seconds, told to the mobile node in the UDP Tunnel Reply
    nat_accept_forced: bool = True  # F flag without a NAT seen: tunnel in UDP anyway


def parse_homeagent(t: Table) -> HomeAgentConfig:
    cfg = HomeAgentConfig(
        address=t.ipv4("address", required=True),
        listen=t.ipv4("listen", IPv4Address("0.0.0.0")),
        port=t.integer("port", 434, 1, 65535) or 434,
        max_lifetime=t.integer("max_lifetime", 1800, 1, 0xFFFF) or 1800,
        replay=t.choice("replay", ("timestamp", "nonce"), "timestamp") or "timestamp",
        replay_window=t.number("replay_window", 7.0, 0.001, 86400.0),
        max_bindings=t.integer("max_bindings", 1_000_000, 1, 100_000_000) or 1,
        max_simultaneous=t.integer("max_simultaneous", 5, 1, 255) or 1,
        rate_limit=t.number("rate_limit", 0.0, 0.0, 1e9),
        rate_burst=t.integer("rate_burst", 10, 1, 1_000_000) or 1,
        rate_sources=t.integer("rate_sources", 65_536, 1, 100_000_000) or 1,
        overload_queue=t.integer("overload_queue", 4096, 0, 1_000_000) or 0,
        drop_privileges=t.boolean("drop_privileges", True),
        lock_memory=t.boolean("lock_memory", False),
        nat_traversal=t.boolean("nat_traversal", False),
        nat_keepalive=t.integer("nat_keepalive", 110, 1, 0xFFFF) or 110,
        nat_accept_forced=t.boolean("nat_accept_forced", True),
    )
    t.finish()
    return cfg
