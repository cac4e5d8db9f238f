"""``[dataplane]``: tunnelling to care-of addresses and proxy/gratuitous ARP (optional).

Not allowed with ``[[group]]``: one dataplane serves every group. Hot standby (docs/dataplane.md):
every member keeps a route per away home address in routing ``table``; the active member adds
``ip rule pref rule_priority lookup table``. ``virtual_mac``: the VRRP virtual MAC on a macvlan
(``vmac_interface``, default ``vrrp.<[vrrp] vrid>``; with keepalived's ``use_vmac``, keepalived's
interface name) answers for the home link. ``fastpath``: the kernel backend's tc BPF fast path
off, on (``fastpath_interfaces``) or ``auto`` (live only while nothing it would bypass is
configured: dataplane/fastpath_guard.py); unset: ``on`` when ``fastpath_interfaces`` is given,
else :data:`FASTPATH_DEFAULT`.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address

from mobileip.config.errors import Table

FASTPATH_MODES = ("off", "on", "auto")
# with fastpath_interfaces empty and fastpath unset: guarded, so live only where it bypasses
# nothing (docs/dataplane.md: "The automatic mode" and "At scale")
FASTPATH_DEFAULT = "auto"


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
    table: int = 100  # routing table of the per-binding routes (every member)
    rule_priority: int = 1000  # preference of the one `ip rule ... lookup table` (active only)
    batch: int = 500  # route messages per event-loop turn
    virtual_mac: bool = False  # answer for the home link from the VRRP virtual MAC (macvlan)
    vmac_interface: str | None = None  # default vrrp.<vrid>; keepalived use_vmac: its name
    # the kernel backend's tc BPF fast path (dataplane/bpf.py): off | on | auto (guarded)
    fastpath: str = FASTPATH_DEFAULT
    # its interfaces ("on": required; "auto": these, or detected when empty)
    fastpath_interfaces: tuple[str, ...] = ()
    fastpath_capacity: int = 131_072  # homes the fast path's maps hold (pre-allocated)


def parse_dataplane(t: Table) -> DataplaneConfig:
    interfaces = tuple(t.string_list("fastpath_interfaces"))
    mode = t.choice("fastpath", FASTPATH_MODES, "on" if interfaces else FASTPATH_DEFAULT)
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
        table=t.integer("table", 100, 1, 0x7FFFFFFF) or 100,
        rule_priority=t.integer("rule_priority", 1000, 1, 32765) or 1000,
        batch=t.integer("batch", 500, 1, 100_000) or 500,
        virtual_mac=t.boolean("virtual_mac", False),
        vmac_interface=t.string("vmac_interface"),
        fastpath=mode or FASTPATH_DEFAULT,
        fastpath_interfaces=interfaces,
        fastpath_capacity=t.integer("fastpath_capacity", 131_072, 1, 16_777_216) or 131_072,
    )
    if len(cfg.tun_name) > 15:
        raise t.error("tun_name", "interface names are at most 15 characters")
    if cfg.table in (253, 254, 255):
        raise t.error("table", "253-255 are the kernel's default, main and local tables")
    if cfg.vmac_interface is not None and len(cfg.vmac_interface) > 15:
        raise t.error("vmac_interface", "interface names are at most 15 characters")
    if cfg.fastpath == "on" and not cfg.fastpath_interfaces:
        raise t.error("fastpath", '"on" needs fastpath_interfaces (or use "auto")')
    if cfg.fastpath != "off" and cfg.backend not in ("kernel", "auto"):
        key = "fastpath" if t.has("fastpath") else "fastpath_interfaces"
        if t.has(key):
            raise t.error(key, "the BPF fast path is the kernel backend's")
    if any(len(name) > 15 for name in cfg.fastpath_interfaces):
        raise t.error("fastpath_interfaces", "interface names are at most 15 characters")
    if cfg.virtual_mac and not cfg.home_interface:
        raise t.error("virtual_mac", "needs home_interface (the macvlan's base)")
    t.finish()
    return cfg
