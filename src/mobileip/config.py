"""The configuration file: one TOML file loaded into frozen dataclasses.

Every problem is a :class:`ConfigError` whose message names the file, the key (dotted, with a
0-based index for arrays of tables, e.g. ``security_association[1].key``), the line in the file and
what is wrong. Unknown keys are errors too. ``tomllib`` gives no line numbers, so
:class:`_Locator` finds them by scanning the text: the key's own line within its table, or the
table's header line when the key is missing.

Sections: ``[homeagent]``, ``[[security_association]]``, ``[control]``, and the optional
``[redundancy]`` and ``[vrrp]``. docs/configuration.md documents every key.
"""

from __future__ import annotations

import datetime
import math
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path
from typing import Any

from mobileip.core.homeagent import HomeAgentSettings
from mobileip.core.security import SecurityAssociation, SecurityAssociations

ANY_ADDRESS = IPv4Address("0.0.0.0")


class ConfigError(Exception):
    """A configuration problem; ``str()`` is the complete message for the operator."""


# --- the settings ----------------------------------------------------------------------------


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
    drop_privileges: bool = True  # keep only CAP_NET_ADMIN/RAW/BIND_SERVICE once started


@dataclass(frozen=True, slots=True)
class SecurityAssociationConfig:
    spi: int
    algorithm: str
    key: bytes
    home_addresses: tuple[IPv4Network, ...]


@dataclass(frozen=True, slots=True)
class ControlConfig:
    host: str = "127.0.0.1"
    port: int = 8434
    token: str | None = None


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


@dataclass(frozen=True, slots=True)
class PersistenceConfig:
    path: str
    snapshot_interval: float = 60.0
    fsync: bool = True


@dataclass(frozen=True, slots=True)
class DynamicHaConfig:
    """RFC 4433 dynamic HA assignment (docs/load-sharing.md)."""

    redirect_above: float = 1.0  # load (bindings / max_bindings) from which new MNs are redirected
    peers: tuple[IPv4Address, ...] = ()  # Home Agents to redirect to, in turn


@dataclass(frozen=True, slots=True)
class Config:
    path: str
    homeagent: HomeAgentConfig
    security_associations: tuple[SecurityAssociationConfig, ...]
    control: ControlConfig
    redundancy: RedundancyConfig | None = None
    vrrp: VrrpConfig | None = None
    dataplane: DataplaneConfig | None = None
    persistence: PersistenceConfig | None = None
    dynamic_ha: DynamicHaConfig | None = None
    # [[group]]: several binding sets in one daemon (docs/load-sharing.md); each is a whole
    # single-group Config sharing this file's [homeagent] socket, [control] and SAs
    groups: tuple[GroupConfig, ...] = ()


@dataclass(frozen=True, slots=True)
class GroupConfig:
    name: str
    config: Config

    @property
    def address(self) -> IPv4Address:
        """The group's own address: its virtual address, else its [homeagent] address."""
        vrrp = self.config.vrrp
        if vrrp is not None and vrrp.virtual_address is not None:
            return vrrp.virtual_address.ip
        return self.config.homeagent.address


# --- locating keys in the text ---------------------------------------------------------------

_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*(\]\]?)\s*(?:#.*)?$")
_KEY = re.compile(r"""^\s*("[^"]*"|'[^']*'|[A-Za-z0-9_\-]+)\s*(?:\.|=)""")


class _Locator:
    """Line numbers of tables and of keys within them, found by scanning the TOML text.

    A table is named by (header, index): ``("homeagent", 0)``, ``("security_association", 2)``;
    top-level keys live in ``("", 0)``. Multi-line strings and arrays can confuse the scan only
    into reporting the table's header line instead of the key's, never a wrong table.
    """

    def __init__(self, text: str) -> None:
        self.headers: dict[tuple[str, int], int] = {}
        self.keys: dict[tuple[str, int], dict[str, int]] = {("", 0): {}}
        counts: dict[str, int] = {}
        current = ("", 0)
        for lineno, line in enumerate(text.splitlines(), start=1):
            m = _HEADER.match(line)
            if m and "=" not in line.split("#", 1)[0].split("]", 1)[0]:
                name = m.group(2).replace(" ", "")
                if m.group(1) == "[[":
                    idx = counts.get(name, 0)
                    counts[name] = idx + 1
                else:  # [group.vrrp] belongs to the last [[group]]
                    parent = name.rsplit(".", 1)[0]
                    idx = counts[parent] - 1 if "." in name and parent in counts else 0
                current = (name, idx)
                self.headers.setdefault(current, lineno)
                self.keys.setdefault(current, {})
                continue
            k = _KEY.match(line)
            if k:
                key = k.group(1).strip("\"'")
                self.keys[current].setdefault(key, lineno)

    def line(self, table: tuple[str, int], key: str | None = None) -> int:
        if key is not None:
            found = self.keys.get(table, {}).get(key)
            if found is not None:
                return found
        return self.headers.get(table, 1)


# --- typed access with errors that say where -------------------------------------------------


class _Table:
    """One table of the file: typed getters that raise :class:`ConfigError` naming the key."""

    def __init__(
        self,
        path: str,
        locator: _Locator,
        name: str,
        index: int | None,
        data: Mapping[str, Any],
    ) -> None:
        self.path = path
        self.locator = locator
        self.where = (name, index or 0)
        self.dotted = f"{name}[{index}]" if index is not None else name
        self.data = data
        self.used: set[str] = set()

    def error(self, key: str | None, what: str) -> ConfigError:
        line = self.locator.line(self.where, key)
        name = f"{self.dotted}.{key}" if key else f"[{self.dotted}]"
        return ConfigError(f"{self.path}: line {line}: {name}: {what}")

    def has(self, key: str) -> bool:
        return key in self.data

    def raw(self, key: str, required: bool) -> Any:
        self.used.add(key)
        if key not in self.data:
            if required:
                raise self.error(key, "required key is missing")
            return None
        return self.data[key]

    def string(self, key: str, default: str | None = None, *, required: bool = False) -> str | None:
        value = self.raw(key, required)
        if value is None:
            return default
        if not isinstance(value, str):
            raise self.error(key, f"must be a string, not {_kind(value)}")
        if not value:
            raise self.error(key, "must not be empty")
        return value

    def choice(self, key: str, choices: Sequence[str], default: str | None = None) -> str | None:
        value = self.string(key, default, required=default is None)
        if value is not None and value not in choices:
            allowed = ", ".join(repr(c) for c in choices)
            raise self.error(key, f"{value!r} is not one of {allowed}")
        return value

    def integer(
        self, key: str, default: int | None, lo: int, hi: int, *, required: bool = False
    ) -> int | None:
        value = self.raw(key, required)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"must be an integer, not {_kind(value)}")
        if not lo <= value <= hi:
            raise self.error(key, f"{value} is out of range ({lo} to {hi})")
        return value

    def number(self, key: str, default: float, lo: float, hi: float) -> float:
        value = self.raw(key, False)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(key, f"must be a number, not {_kind(value)}")
        if not math.isfinite(value) or not lo <= value <= hi:
            raise self.error(key, f"{value} is out of range ({lo:g} to {hi:g})")
        return float(value)

    def boolean(self, key: str, default: bool) -> bool:
        value = self.raw(key, False)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.error(key, f"must be true or false, not {_kind(value)}")
        return value

    def ipv4(self, key: str, default: IPv4Address | None = None, *, required: bool = False) -> Any:
        text = self.string(key, None, required=required)
        if text is None:
            return default
        try:
            return IPv4Address(text)
        except ValueError:
            raise self.error(key, f"{text!r} is not an IPv4 address") from None

    def hex_key(self, key: str) -> bytes:
        text = self.string(key, required=True)
        assert text is not None
        try:
            value = bytes.fromhex(text)
        except ValueError:
            raise self.error(key, "is not valid hex (pairs of 0-9, a-f)") from None
        if not value:
            raise self.error(key, "must not be empty")
        return value

    def string_list(self, key: str, *, required: bool = False) -> list[str]:
        value = self.raw(key, required)
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.error(key, "must be a list of strings")
        return list(value)

    def finish(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise self.error(unknown[0], "unknown key")


def _kind(value: object) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "a boolean"}
    names.update({list: "a list", dict: "a table"})
    return names.get(type(value), type(value).__name__)


def _host_port(table: _Table, key: str, default: str) -> tuple[str, int]:
    text = table.string(key, default)
    assert text is not None
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise table.error(key, f"{text!r} is not HOST:PORT")
    try:
        IPv4Address(host)
    except ValueError:
        raise table.error(key, f"{host!r} is not an IPv4 address") from None
    return host, int(port)


# --- sections --------------------------------------------------------------------------------


def _homeagent(t: _Table) -> HomeAgentConfig:
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
        drop_privileges=t.boolean("drop_privileges", True),
    )
    t.finish()
    return cfg


def _security_association(t: _Table) -> SecurityAssociationConfig:
    spi = t.integer("spi", None, 256, 0xFFFFFFFF, required=True)
    algorithm = t.choice("algorithm", ("hmac-md5", "prefix-suffix-md5"), "hmac-md5")
    key = t.hex_key("key")
    prefixes: list[IPv4Network] = []
    for text in t.string_list("home_addresses", required=True):
        try:
            prefixes.append(IPv4Network(text))
        except ValueError as exc:
            raise t.error("home_addresses", f"{text!r} is not an IPv4 prefix ({exc})") from None
    if not prefixes:
        raise t.error("home_addresses", "must list at least one prefix")
    t.finish()
    assert spi is not None and algorithm is not None
    return SecurityAssociationConfig(spi, algorithm, key, tuple(prefixes))


def _control(t: _Table) -> ControlConfig:
    host, port = _host_port(t, "listen", "127.0.0.1:8434")
    token = t.string("token")
    t.finish()
    return ControlConfig(host, port, token)


def _redundancy(t: _Table, ha: HomeAgentConfig) -> RedundancyConfig:
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


def _key_rollover(t: _Table) -> dict[str, Any]:
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


def _persistence(t: _Table) -> PersistenceConfig:
    path = t.string("path", required=True)
    assert path is not None
    cfg = PersistenceConfig(
        path=path,
        snapshot_interval=t.number("snapshot_interval", 60.0, 0.1, 86400.0),
        fsync=t.boolean("fsync", True),
    )
    t.finish()
    return cfg


_DRIVER_NEEDS = {
    "native": ("interface", "vrid", "virtual_address"),
    "keepalived": ("notify_fifo", "instance"),
    "static": ("role",),
}


def _vrrp(t: _Table) -> VrrpConfig:
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
    )
    t.finish()
    return cfg


def _dataplane(t: _Table) -> DataplaneConfig:
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


def _dynamic_ha(t: _Table) -> DynamicHaConfig:
    peers: list[IPv4Address] = []
    for text in t.string_list("peers"):
        try:
            addr = IPv4Address(text)
        except ValueError:
            raise t.error("peers", f"{text!r} is not an IPv4 address") from None
        if int(addr) in (0, 0xFFFFFFFF):
            raise t.error("peers", f"{text} is not a Home Agent address")
        peers.append(addr)
    cfg = DynamicHaConfig(
        redirect_above=t.number("redirect_above", 1.0, 0.001, 1.0), peers=tuple(peers)
    )
    t.finish()
    return cfg


_GROUP_SECTIONS = ("homeagent", "redundancy", "vrrp", "dynamic_ha", "persistence")
_NOT_WITH_GROUPS = ("redundancy", "vrrp", "dynamic_ha", "persistence", "dataplane")


def _groups(
    raw: object, top: Config, ha_raw: Mapping[str, Any], loc: _Locator
) -> tuple[GroupConfig, ...]:
    """``[[group]]`` tables: each a whole Config on the shared socket, control API and SAs."""
    name = top.path
    if not isinstance(raw, list) or not all(isinstance(g, dict) for g in raw):
        line = loc.line(("", 0), "group")
        raise ConfigError(f"{name}: line {line}: group: must be [[group]] tables")
    groups: list[GroupConfig] = []
    for i, data in enumerate(raw):
        t = _Table(name, loc, "group", i, data)
        gname = t.string("name", required=True)
        assert gname is not None
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,32}", gname):
            raise t.error("name", f"{gname!r}: use 1-32 letters, digits, '-' or '_'")
        sub: dict[str, _Table] = {}
        for key, value in data.items():
            if key == "name":
                continue
            if key not in _GROUP_SECTIONS:
                raise t.error(key, "unknown key (a group has " + ", ".join(_GROUP_SECTIONS) + ")")
            if not isinstance(value, dict):
                raise t.error(key, "must be a table")
            sub[key] = _Table(name, loc, f"group.{key}", i, value)
        own_ha = sub.get("homeagent")
        for key in ("listen", "port"):
            if own_ha is not None and own_ha.has(key):
                raise own_ha.error(key, "groups share the [homeagent] socket: set it there")
        merged = {**ha_raw, **(own_ha.data if own_ha is not None else {})}
        homeagent = _homeagent(_Table(name, loc, "group.homeagent", i, merged))
        redundancy = _redundancy(sub["redundancy"], homeagent) if "redundancy" in sub else None
        if redundancy is not None and (redundancy.listen, redundancy.port) == (
            homeagent.listen,
            homeagent.port,
        ):
            raise sub["redundancy"].error(
                "port", "each group syncs on its own port (not the registration socket's)"
            )
        cfg = Config(
            name,
            homeagent,
            top.security_associations,
            top.control,
            redundancy=redundancy,
            vrrp=_vrrp(sub["vrrp"]) if "vrrp" in sub else None,
            persistence=_persistence(sub["persistence"]) if "persistence" in sub else None,
            dynamic_ha=_dynamic_ha(sub["dynamic_ha"]) if "dynamic_ha" in sub else None,
        )
        group = GroupConfig(gname, cfg)
        for j, other in enumerate(groups):
            clash = _group_clash(group, other)
            if clash:
                raise t.error(None, f"{clash} (also group[{j}] {other.name!r})")
        groups.append(group)
    if not groups:
        raise ConfigError(f"{name}: line {loc.line(('', 0), 'group')}: group: list no groups")
    return tuple(groups)


def _group_clash(a: GroupConfig, b: GroupConfig) -> str | None:
    if a.name == b.name:
        return f"name {a.name!r} is taken"
    if a.address == b.address:
        return f"address {a.address} is taken"
    ra, rb = a.config.redundancy, b.config.redundancy
    if ra is not None and rb is not None and (ra.listen, ra.port) == (rb.listen, rb.port):
        return f"sync port {ra.port} is taken"
    va, vb = a.config.vrrp, b.config.vrrp
    native = va is not None and vb is not None and va.driver == vb.driver == "native"
    if native and va and vb and (va.interface, va.vrid) == (vb.interface, vb.vrid):
        return f"VRID {va.vrid} on {va.interface} is taken"
    pa, pb = a.config.persistence, b.config.persistence
    if pa is not None and pb is not None and pa.path == pb.path:
        return f"persistence path {pa.path} is taken"
    return None


# --- loading ---------------------------------------------------------------------------------

_SECTIONS = (
    "homeagent",
    "security_association",
    "control",
    "redundancy",
    "vrrp",
    "dataplane",
    "persistence",
    "dynamic_ha",
    "group",
)


def load_config(path: str | Path) -> Config:
    """Read and validate ``path``; raise :class:`ConfigError` on any problem."""
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{name}: not UTF-8 text") from None
    return parse_config(text, name)


def parse_config(text: str, name: str = "<config>") -> Config:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"\(at line (\d+), column \d+\)", str(exc))
        where = f"line {m.group(1)}: " if m else ""
        what = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        raise ConfigError(f"{name}: {where}not valid TOML: {what}") from None
    loc = _Locator(text)
    top = _Table(name, loc, "", None, data)

    def table(section: str, required: bool) -> _Table | None:
        value = data.get(section)
        if value is None:
            if required:
                raise ConfigError(f"{name}: line 1: [{section}]: required section is missing")
            return None
        if not isinstance(value, dict):
            raise ConfigError(
                f"{name}: line {loc.line(('', 0), section)}: {section}: must be a table"
            )
        return _Table(name, loc, section, None, value)

    for key in data:
        if key not in _SECTIONS:
            line = loc.headers.get((key, 0)) or loc.line(("", 0), key)
            raise ConfigError(f"{name}: line {line}: {key}: unknown section")
    del top

    ha_table = table("homeagent", True)
    assert ha_table is not None
    homeagent = _homeagent(ha_table)

    raw_sas = data.get("security_association")
    if raw_sas is None:
        raise ConfigError(f"{name}: line 1: [[security_association]]: at least one is required")
    if not isinstance(raw_sas, list) or not all(isinstance(s, dict) for s in raw_sas):
        line = loc.line(("", 0), "security_association")
        raise ConfigError(
            f"{name}: line {line}: security_association: must be [[security_association]] tables"
        )
    sas: list[SecurityAssociationConfig] = []
    seen: dict[int, int] = {}
    for i, raw in enumerate(raw_sas):
        t = _Table(name, loc, "security_association", i, raw)
        sa = _security_association(t)
        if sa.spi in seen:
            raise t.error(
                "spi", f"duplicate SPI {sa.spi} (also security_association[{seen[sa.spi]}])"
            )
        seen[sa.spi] = i
        sas.append(sa)

    ctl_table = table("control", False)
    control = _control(ctl_table) if ctl_table is not None else ControlConfig()

    red_table = table("redundancy", False)
    redundancy = _redundancy(red_table, homeagent) if red_table is not None else None
    if redundancy is not None and redundancy.spi in seen:
        assert red_table is not None
        raise red_table.error("spi", f"SPI {redundancy.spi} is also a mobile node SPI")

    vrrp_table = table("vrrp", False)
    vrrp = _vrrp(vrrp_table) if vrrp_table is not None else None

    dp_table = table("dataplane", False)
    dataplane = _dataplane(dp_table) if dp_table is not None else None

    persist_table = table("persistence", False)
    persistence = _persistence(persist_table) if persist_table is not None else None

    dyn_table = table("dynamic_ha", False)
    dynamic_ha = _dynamic_ha(dyn_table) if dyn_table is not None else None

    config = Config(
        name,
        homeagent,
        tuple(sas),
        control,
        redundancy,
        vrrp,
        dataplane,
        persistence=persistence,
        dynamic_ha=dynamic_ha,
    )
    if "group" not in data:
        return config
    for section in _NOT_WITH_GROUPS:
        if section in data:
            line = loc.headers.get((section, 0), 1)
            where = "inside each [[group]]" if section != "dataplane" else "not with [[group]]"
            raise ConfigError(f"{name}: line {line}: [{section}]: {where} (docs/load-sharing.md)")
    assert ha_table is not None
    return replace(config, groups=_groups(data["group"], config, ha_table.data, loc))


# --- building the core's objects -------------------------------------------------------------


def home_agent_settings(config: Config) -> HomeAgentSettings:
    """The core's settings: the VRRP virtual address is also ours, node id from [redundancy]."""
    ha = config.homeagent
    extra: set[IPv4Address] = set()
    if config.vrrp is not None and config.vrrp.virtual_address is not None:
        extra.add(config.vrrp.virtual_address.ip)
    node_id = int(config.redundancy.node_id) if config.redundancy is not None else 0
    return HomeAgentSettings(
        address=ha.address,
        max_lifetime=ha.max_lifetime,
        replay=ha.replay,
        replay_window=ha.replay_window,
        max_bindings=ha.max_bindings,
        max_simultaneous=ha.max_simultaneous,
        extra_addresses=frozenset(extra - {ha.address}),
        node_id=node_id,
    )


def security_associations(config: Config) -> SecurityAssociations:
    return SecurityAssociations(
        SecurityAssociation(sa.spi, sa.algorithm, sa.key, sa.home_addresses)
        for sa in config.security_associations
    )


def build_core_settings(config: Config) -> tuple[HomeAgentSettings, SecurityAssociations]:
    """Everything :class:`~mobileip.core.homeagent.HomeAgentCore` needs from the config."""
    return home_agent_settings(config), security_associations(config)


# --- writing (tests and the demo rewrite configs) --------------------------------------------


def to_toml(data: Mapping[str, Any]) -> str:
    """Serialise a config-shaped mapping (tables, arrays of tables, scalars, lists) to TOML."""
    lines: list[str] = []
    scalars = {k: v for k, v in data.items() if not _is_table(v) and not _is_table_list(v)}
    for key, value in scalars.items():
        lines.append(f"{key} = {_toml_value(value)}")
    for key, value in data.items():
        if _is_table(value):
            lines.append(f"\n[{key}]")
            lines.extend(f"{k} = {_toml_value(v)}" for k, v in value.items())
        elif _is_table_list(value):
            for item in value:
                lines.append(f"\n[[{key}]]")
                lines.extend(f"{k} = {_toml_value(v)}" for k, v in item.items())
    return "\n".join(lines).lstrip("\n") + "\n"


def _is_table(value: object) -> bool:
    return isinstance(value, Mapping)


def _is_table_list(value: object) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, Mapping) for v in value)


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")
