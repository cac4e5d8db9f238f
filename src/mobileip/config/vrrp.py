"""``[vrrp]``: who is active — the native VRRP driver, keepalived, or a static role (optional).

In a ``[[group]]`` file each group has its own ``[group.vrrp]`` instead (groups.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Interface

from mobileip.config.errors import Table


@dataclass(frozen=True, slots=True)
class VrrpConfig:
    driver: str
    interface: str | None = None
    vrid: int | None = None
    priority: int = 100
    advert_interval: float = 1.0
    preempt: bool = True
    virtual_address: IPv4Interface | None = None
    notify_fifo: str | None = None
    instance: str | None = None
    track_file: str | None = None
    role: str | None = None
    # realtime (SCHED_RR) priority of the native speaker thread, keepalived's vrrp_rt_priority:
    # None = DEFAULT_RT_PRIORITY when permitted (root), else normal scheduling; 0 = off
    rt_priority: int | None = None


_DRIVER_NEEDS = {
    "native": ("interface", "vrid", "virtual_address"),
    "keepalived": ("notify_fifo", "instance"),
    "static": ("role",),
}


def parse_vrrp(t: Table) -> VrrpConfig:
    driver = t.choice("driver", tuple(_DRIVER_NEEDS))
    assert driver is not None
    for key in _DRIVER_NEEDS[driver]:
        if not t.has(key):
            raise t.error(key, f"required with driver = {driver!r}")
    vaddr = None
    text = t.string("virtual_address")
    if text is not None:
        try:
            vaddr = IPv4Interface(text)
        except ValueError:
            raise t.error("virtual_address", f"{text!r} is not ADDRESS/PREFIXLEN") from None
    cfg = VrrpConfig(
        driver=driver,
        interface=t.string("interface"),
        vrid=t.integer("vrid", None, 1, 255),
        priority=t.integer("priority", 100, 1, 255) or 100,
        advert_interval=t.number("advert_interval", 1.0, 0.01, 40.95),
        preempt=t.boolean("preempt", True),
        virtual_address=vaddr,
        notify_fifo=t.string("notify_fifo"),
        instance=t.string("instance"),
        track_file=t.string("track_file"),
        role=t.choice("role", ("active", "standby")) if t.has("role") else None,
        rt_priority=t.integer("rt_priority", None, 0, 99),
    )
    t.finish()
    return cfg
