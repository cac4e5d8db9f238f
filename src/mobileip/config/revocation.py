"""``[revocation]``: RFC 3543 registration revocation towards foreign agents (optional).

The Home Agent negotiates revocation only with the foreign agents listed here, one
``[[revocation.peer]]`` each with the FA-HA security association both sides share
(docs/revocation.md)::

    [revocation]
    inform = true            # ask foreign agents that can to tell the mobile node (I bit)
    initial_timeout = 1.0    # first retransmission after this, doubling up to max_timeout
    max_timeout = 8.0
    max_attempts = 5
    replicate_hold = 0.5     # in a group: hold a first send until a peer has it (seconds)
    revoke_on_key_removal = true  # a reload that removes a mobile node's SA ends its bindings

    [[revocation.peer]]
    address = "10.2.0.1"     # the foreign agent's address, where its relayed requests come from
    spi = 4096
    algorithm = "hmac-md5"
    key = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Any

from mobileip.config.errors import Table


@dataclass(frozen=True, slots=True)
class RevocationPeerConfig:
    address: IPv4Address
    spi: int
    algorithm: str
    key: bytes


@dataclass(frozen=True, slots=True)
class RevocationConfig:
    peers: tuple[RevocationPeerConfig, ...]
    inform: bool = True
    initial_timeout: float = 1.0
    max_timeout: float = 8.0
    max_attempts: int = 5
    replicate_hold: float = 0.5
    revoke_on_key_removal: bool = True


def _parse_peer(t: Table) -> RevocationPeerConfig:
    address = t.ipv4("address", required=True)
    spi = t.integer("spi", None, 256, 0xFFFFFFFF, required=True)
    algorithm = t.choice("algorithm", ("hmac-md5", "prefix-suffix-md5"), "hmac-md5")
    key = t.hex_key("key")
    t.finish()
    assert spi is not None and algorithm is not None
    return RevocationPeerConfig(address, spi, algorithm, key)


def parse_revocation(t: Table) -> RevocationConfig:
    raw: Any = t.raw("peer", False) or []
    if not isinstance(raw, list) or not all(isinstance(p, dict) for p in raw):
        raise t.error("peer", "must be [[revocation.peer]] tables")
    peers: list[RevocationPeerConfig] = []
    seen: dict[IPv4Address, int] = {}
    for i, data in enumerate(raw):
        pt = Table(t.path, t.locator, "revocation.peer", i, data)
        peer = _parse_peer(pt)
        if peer.address in seen:
            raise pt.error(
                "address", f"{peer.address} is also revocation.peer[{seen[peer.address]}]"
            )
        seen[peer.address] = i
        peers.append(peer)
    if not peers:
        raise t.error(None, "needs at least one [[revocation.peer]] (a foreign agent and its key)")
    initial = t.number("initial_timeout", 1.0, 0.01, 60.0)
    cfg = RevocationConfig(
        peers=tuple(peers),
        inform=t.boolean("inform", True),
        initial_timeout=initial,
        max_timeout=t.number("max_timeout", 8.0, initial, 3600.0),
        max_attempts=t.integer("max_attempts", 5, 1, 100) or 5,
        replicate_hold=t.number("replicate_hold", 0.5, 0.0, 10.0),
        revoke_on_key_removal=t.boolean("revoke_on_key_removal", True),
    )
    t.finish()
    return cfg
