"""``[dataplane]``: tunnelling to care-of addresses and proxy/gratuitous ARP (optional).

Not allowed with ``[[group]]``: one dataplane serves every group.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address

from mobileip.config.errors import Table


@dataclass(frozen=True, slots=True)
class DataplaneConfig:
    backend: str = "auto"  # auto | userspace | kernel | none
    home_interface: str | None = None  # proxy/gratuitous ARP here (none: no ARP duties)
    tun_name: str = "mip0"
    tunnel_source: IPv4Address | None = None  # default: [vrrp] virtual address, else HA address
    ttl: int = 64
    garp_rounds: int = 2
    garp_interval: float = 1.0
    garp_batch: int = 64
    advertisement_interval: float = 0.0  # home agent advertisements on home_interface (0: off)


def parse_dataplane(t: Table) -> DataplaneConfig:
    cfg = DataplaneConfig(
        backend=t.choice("backend", ("auto", "userspace", "kernel", "none"), "auto") or "auto",
        home_interface=t.string("home_interface"),
        tun_name=t.string("tun_name", "mip0") or "mip0",
        tunnel_source=t.ipv4("tunnel_source"),
        ttl=t.integer("ttl", 64, 1, 255) or 64,
        garp_rounds=t.integer("garp_rounds", 2, 0, 10) or 0,
        garp_interval=t.number("garp_interval", 1.0, 0.01, 60.0),
        garp_batch=t.integer("garp_batch", 64, 1, 10_000) or 64,
        advertisement_interval=t.number("advertisement_interval", 0.0, 0.0, 600.0),
    )
    if len(cfg.tun_name) > 15:
        raise t.error("tun_name", "interface names are at most 15 characters")
    t.finish()
    return cfg
