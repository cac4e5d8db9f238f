"""``[redundancy]``: state sync with the peer Home Agents, and its key rollover (optional).

In a ``[[group]]`` file each group has its own ``[group.redundancy]`` instead (groups.py).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Any

from mobileip.config.errors import Table
from mobileip.config.homeagent import ANY_ADDRESS, HomeAgentConfig


@dataclass(frozen=True, slots=True)
class Peer:
    address: IPv4Address
    port: int


@dataclass(frozen=True, slots=True)
class RedundancyConfig:
    node_id: IPv4Address
    spi: int
    key: bytes
    listen: IPv4Address = ANY_ADDRESS
    port: int = 434
    group: IPv4Address | None = None
    interface: str | None = None
    ttl: int = 1
    peers: tuple[Peer, ...] = ()
    algorithm: str = "hmac-sha256"
    mode: str = "async"
    semisync_timeout: float = 0.5
    retransmit_interval: float = 0.2
    max_retransmits: int = 8
    boot_wait: float = 1.0
    tombstone_ttl: float = 600.0
    digest_interval: float = 1.0
    unreachable_after: float = 3.5
    max_queue: int = 100_000
    payload_budget: int = 1400
    bulk_window: int = 16
    # key rollover: the old key signs until key_switch (Unix time), both verify until
    # key_switch + key_overlap, then only the new one (docs/robustness.md)
    previous_spi: int | None = None
    previous_key: bytes | None = None
    previous_algorithm: str = "hmac-sha256"
    key_switch: float | None = None
    key_overlap: float = 300.0


def parse_redundancy(t: Table, ha: HomeAgentConfig) -> RedundancyConfig:
    listen = t.ipv4("listen", ha.listen)
    port = t.integer("port", 434, 1, 65535) or 434
    if t.has("node_id"):
        node_id = t.ipv4("node_id")
        if int(node_id) == 0:
            raise t.error("node_id", "must not be 0.0.0.0")
    elif not listen.is_unspecified:
        node_id = listen
    else:
        raise t.error("node_id", "required when listen is 0.0.0.0 (an IPv4-formatted id)")
    group = t.ipv4("group")
    if group is not None and not group.is_multicast:
        raise t.error("group", f"{group} is not a multicast address")
    interface = t.string("interface")
    if group is not None and interface is None:
        raise t.error("interface", "required with group (the interface that joins it)")
    peers: list[Peer] = []
    for text in t.string_list("peers"):
        host, sep, pport = text.partition(":")
        try:
            addr = IPv4Address(host)
        except ValueError:
            raise t.error("peers", f"{text!r}: {host!r} is not an IPv4 address") from None
        if sep and (not pport.isdigit() or not 0 < int(pport) < 65536):
            raise t.error("peers", f"{text!r}: bad port {pport!r}")
        peers.append(Peer(addr, int(pport) if sep else port))
    cfg = RedundancyConfig(
        node_id=node_id,
        spi=t.integer("spi", None, 256, 0xFFFFFFFF, required=True) or 0,
        key=t.hex_key("key"),
        listen=listen,
        port=port,
        group=group,
        interface=interface,
        ttl=t.integer("ttl", 1, 1, 255) or 1,
        peers=tuple(peers),
        algorithm=t.choice("algorithm", ("hmac-sha256", "hmac-md5"), "hmac-sha256") or "",
        mode=t.choice("mode", ("async", "semisync"), "async") or "async",
        semisync_timeout=t.number("semisync_timeout", 0.5, 0.001, 60.0),
        retransmit_interval=t.number("retransmit_interval", 0.2, 0.001, 60.0),
        max_retransmits=t.integer("max_retransmits", 8, 0, 1000) or 0,
        boot_wait=t.number("boot_wait", 1.0, 0.0, 3600.0),
        tombstone_ttl=t.number("tombstone_ttl", 600.0, 0.0, 86400.0 * 30),
        digest_interval=t.number("digest_interval", 1.0, 0.01, 86400.0),
        unreachable_after=t.number("unreachable_after", 3.5, 0.01, 3600.0),
        max_queue=t.integer("max_queue", 100_000, 1, 100_000_000) or 1,
        payload_budget=t.integer("payload_budget", 1400, 512, 65000) or 1400,
        bulk_window=t.integer("bulk_window", 16, 4, 1024) or 16,
        **_key_rollover(t),
    )
    if group is None and not peers:
        raise t.error(None, "needs peers, a multicast group, or both")
    t.finish()
    return cfg


def _key_rollover(t: Table) -> dict[str, Any]:
    """``previous_spi``/``previous_key``/``key_switch``/``key_overlap`` (all or none)."""
    keys = ("previous_spi", "previous_key", "previous_algorithm", "key_switch", "key_overlap")
    if not any(t.has(k) for k in keys):
        return {}
    for key in ("previous_spi", "previous_key", "key_switch"):
        if not t.has(key):
            raise t.error(key, "required for a key rollover (with previous_key)")
    switch = t.raw("key_switch", True)
    if isinstance(switch, datetime.datetime):
        if switch.tzinfo is None:
            raise t.error("key_switch", "needs a time zone (e.g. 2025-06-01T12:00:00Z)")
        when = switch.timestamp()
    elif isinstance(switch, int | float) and not isinstance(switch, bool) and switch >= 0:
        when = float(switch)
    else:
        raise t.error("key_switch", "must be a date-time with a zone or Unix seconds")
    spi = t.integer("previous_spi", None, 256, 0xFFFFFFFF, required=True)
    if spi == t.data.get("spi"):
        raise t.error("previous_spi", "must differ from spi")
    return {
        "previous_spi": spi,
        "previous_key": t.hex_key("previous_key"),
        "previous_algorithm": t.choice(
            "previous_algorithm", ("hmac-sha256", "hmac-md5"), "hmac-sha256"
        ),
        "key_switch": when,
        "key_overlap": t.number("key_overlap", 300.0, 0.0, 86400.0 * 30),
    }
