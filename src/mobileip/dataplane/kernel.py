"""The kernel tunnel backend: the kernel encapsulates and decapsulates.

One pyroute2 ``ipip``/``gre`` device per care-of address; the home addresses are routed through
it. Minimal encapsulation has no kernel driver: such bindings are counted ``unsupported``. Chosen
automatically (``backend = "auto"``) when :func:`kernel_supports_tunnels` says the kernel can.
"""

from __future__ import annotations

import contextlib
import secrets
from collections import Counter
from ipaddress import IPv4Address

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from mobileip.dataplane.backend import (
    BackendError,
    Log,
    TunnelBackend,
    TunnelSpec,
)
from mobileip.dataplane.encap import (
    Encapsulation,
)
from mobileip.net.netlink import rtnl, write_sysctl


async def kernel_supports_tunnels() -> tuple[bool, str]:
    """Whether this kernel can create ipip and gre devices (tries a throw-away device)."""
    for kind in ("ipip", "gre"):
        name = f"mipprobe{secrets.token_hex(3)}"

        def probe(ipr: IPRoute, name: str = name, kind: str = kind) -> None:
            ipr.link("add", ifname=name, kind=kind, **{f"{kind}_local": "127.0.0.1"})
            idx = ipr.link_lookup(ifname=name)
            if idx:
                ipr.link("del", index=idx[0])

        try:
            await rtnl(probe)
        except NetlinkError as exc:
            return False, f"kernel cannot create {kind} devices: {exc}"
        except OSError as exc:
            return False, f"no netlink: {exc}"
    return True, "ipip and gre available"


class KernelBackend(TunnelBackend):
    """One kernel tunnel device per (care-of address, encapsulation); home routes through it."""

    name = "kernel"

    def __init__(self, log: Log, source: IPv4Address, prefix: str = "mip", ttl: int = 64) -> None:
        super().__init__(log)
        self.source = source
        self.prefix = prefix
        self.ttl = ttl
        self.devices: dict[tuple[IPv4Address, Encapsulation], tuple[str, int]] = {}
        self.users: Counter[tuple[IPv4Address, Encapsulation]] = Counter()

    async def start(self) -> None:
        ok, why = await kernel_supports_tunnels()
        if not ok:
            raise BackendError(why)
        write_sysctl("net/ipv4/ip_forward", "1")

    async def _device(self, coa: IPv4Address, kind: Encapsulation) -> int | None:
        key = (coa, kind)
        if key in self.devices:
            return self.devices[key][1]
        if kind is Encapsulation.MINIMAL:
            self.counters["unsupported-minimal"] += 1
            return None
        name = f"{self.prefix}{coa.packed.hex()}{'g' if kind is Encapsulation.GRE else ''}"[:15]
        link_kind, pre = ("gre", "gre") if kind is Encapsulation.GRE else ("ipip", "ipip")
        attrs = {f"{pre}_local": str(self.source), f"{pre}_remote": str(coa)}
        attrs[f"{pre}_ttl"] = self.ttl  # type: ignore[assignment]

        def create(ipr: IPRoute) -> int:
            ipr.link("add", ifname=name, kind=link_kind, **attrs)
            index: int = ipr.link_lookup(ifname=name)[0]
            ipr.link("set", index=index, state="up")
            return index

        index: int = await rtnl(create)
        write_sysctl(f"net/ipv4/conf/{name}/rp_filter", "0")
        self.devices[key] = (name, index)
        return index

    async def install(self, spec: TunnelSpec) -> None:
        if spec.home in self.specs:
            await self.remove(spec.home)
        coa, kind = spec.exits[-1]  # the kernel route takes one exit: the newest binding
        try:
            index = await self._device(coa, kind)
            if index is None:
                return
            await rtnl(lambda ipr: ipr.route("replace", dst=f"{spec.home}/32", oif=index))
        except (NetlinkError, OSError) as exc:
            self.counters["errors"] += 1
            self.log("dataplane.kernel_failed", home=spec.home, error=str(exc))
            return
        self.users[(coa, kind)] += 1
        self.specs[spec.home] = spec

    async def remove(self, home: IPv4Address) -> None:
        spec = self.specs.pop(home, None)
        if spec is None:
            return
        key = spec.exits[-1]
        with contextlib.suppress(NetlinkError):
            await rtnl(lambda ipr: ipr.route("del", dst=f"{home}/32"))
        self.users[key] -= 1
        if self.users[key] <= 0:
            del self.users[key]
            _, index = self.devices.pop(key)
            with contextlib.suppress(NetlinkError):
                await rtnl(lambda ipr: ipr.link("del", index=index))
