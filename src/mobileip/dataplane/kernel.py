"""The kernel tunnel backend: the kernel encapsulates, decapsulates and filters; we only program it.

Design (docs/dataplane.md, "Kernel backend"):

* **Two devices, whatever the number of bindings.** At start: one collect-metadata IP-in-IP
  device and one collect-metadata GRE device (``mip-ipip``, ``mip-gre``: ``ip link add NAME type
  ipip|gre external``), up, ``rp_filter`` 0. Leftovers of a crashed run are deleted first (their
  routes and filters go with them).
* **One route per away mobile node**, in the service's table ``T``, built by
  :meth:`KernelBackend.add_messages` and applied by the service in its batches:
  ``HOA/32 encap ip dst COA src HA ttl TTL dev mip-ipip|mip-gre table T proto 77 metric M``.
  ``M`` is the home address as a number: the kernel's ``fib_info`` hash ignores the encap, so
  routes differing only in their encap all land in one bucket and each insert walks them
  (quadratic: 940 us per route at 10,000 inside UML); a distinct metric spreads them (22 us).
  One route per /32 in ``T``, so the metric never chooses between routes.
* **Reverse tunnels (T flag) checked in the kernel.** Both devices' ingress share one tc filter
  block (``clsact ingress_block B``). Per (care-of address, home address) allowed to reverse-
  tunnel: one ``flower`` filter ``enc_src_ip COA src_ip HOA`` with no action (a match ends
  classification with ``TC_ACT_OK``: the decapsulated packet goes on to routing). Everything else
  falls through to one ``matchall action drop`` whose hit counter is ``reverse-drop-unregistered``
  (as in the userspace backend). All per-binding filters share one mask, and flower keeps one
  hash table per mask: classification is one lookup whatever the number of bindings. Installs
  are rtnetlink messages in the same batches as the routes (5-15 us per filter inside UML).
* **RFC 3519 UDP-tunnelled homes (NAT traversal): a hybrid path.** The kernel has no driver for
  RFC 3519 tunnel data, so a home whose bindings are all UDP-tunnelled gets ``HOA/32 dev TUN
  table T proto 77 metric M`` into one TUN device (:mod:`.udp_tun`, ``[dataplane] tun_name``),
  served by the userspace UDP tunnel (:mod:`.udp_tunnel`): built and batched like the encap
  routes, so a standby pre-installs it and the takeover's ``ip rule`` makes it live; a NAT
  rebind is a new record version whose spec :meth:`KernelBackend.track` takes (same route, new
  mapping). Tunnel data from the mobile node arrives on the registration socket (port 434) and
  is written to the TUN. Every other home stays on the kernel fast path. Without the TUN
  (``udp_tun=None``, or it could not be opened) such a home gets no route
  (``udp-tunnel-unsupported``).
* **Simultaneous bindings**: the kernel route has one exit, the newest binding's care-of address
  (``spec.exits[-1]``); copies to the others are not sent (counted ``simultaneous-one-exit``,
  specs in force; a home with both UDP-tunnelled and other bindings counts there too and takes
  the kernel exit). Reverse tunnels are accepted from every registered care-of address with T.
* **Minimal encapsulation** (M) has no kernel driver: such a binding is tunnelled with IP-in-IP
  instead (every Mobile IPv4 node and foreign agent must decapsulate IP-in-IP, RFC 5944 3.1 /
  4.2.2), counted ``minimal-as-ipip``; minimal-encapsulated packets *from* the mobile node (IP
  protocol 55) have no kernel handler and are dropped by the kernel.
* Hot standby (the service): routes and filters are installed on every member; only the active
  member's ``ip rule`` makes ``T`` live and only it owns the virtual address, so a standby
  neither attracts nor decapsulates traffic. Stop deletes the two devices (their routes,
  qdiscs and filters go with them); the service flushes ``T`` and the rule.

One kernel backend per network namespace: the kernel allows one collect-metadata device per
tunnel type and namespace. Everything runs in the calling thread (no worker threads), so the
backend works in whatever namespace the calling thread is in.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import secrets
import socket
import struct
from collections.abc import Hashable, Sequence
from ipaddress import IPv4Address

from mobileip.dataplane import kernel_nl as knl
from mobileip.dataplane.backend import (
    STALE,
    BackendError,
    Log,
    TunnelBackend,
    TunnelSpec,
)
from mobileip.dataplane.bpf import BpfFastPath
from mobileip.dataplane.encap import Encapsulation
from mobileip.dataplane.fastpath_guard import FastPathGuard
from mobileip.dataplane.udp_tun import UdpTun
from mobileip.net import rtnl as nl
from mobileip.net.netlink import write_sysctl

DEFAULT_BLOCK = 0x4D49  # the shared tc filter block of both devices ("MI")
ACCEPT_PRIO = 1  # the per-binding flower filters
DROP_PRIO = 0xFF00  # the catch-all drop (counted)
MAX_HANDLE = 0xFFFFFFFF


def encap_route(
    home: IPv4Address, coa: IPv4Address, source: IPv4Address, ttl: int, oif: int, table: int
) -> bytes:
    """``HOA/32 encap ip dst COA src HA ttl TTL dev OIF table T proto 77 metric int(HOA)``."""
    msg = nl.route_add(home, table=table, oif=oif, encap=nl.IpEncap(dst=coa, src=source, ttl=ttl))
    return _with_metric(msg, home)


def tun_route(home: IPv4Address, oif: int, table: int) -> bytes:
    """``HOA/32 dev TUN table T proto 77 metric int(HOA)``: the same metric as
    :func:`encap_route`, so either replaces the other."""
    return _with_metric(nl.route_add(home, table=table, oif=oif), home)


def _with_metric(msg: bytes, home: IPv4Address) -> bytes:
    # RTA_PRIORITY = the home address: spreads the kernel's fib_info hash (module docstring)
    extra = struct.pack("=HHI", 8, nl.RTA_PRIORITY, int(home))
    return struct.pack("=I", len(msg) + len(extra)) + msg[4:] + extra


def _apply_ignoring_absent(sock: nl.RtnlSocket, messages: Sequence[bytes]) -> list[nl.Failure]:
    """Apply; a delete of something already gone (ENOENT/ENODEV/ESRCH) is not a failure."""
    gone = (errno.ENOENT, errno.ENODEV, errno.ESRCH, errno.EINVAL)
    out = []
    for f in sock.apply(messages):
        kind = struct.unpack_from("=IH", messages[f.index])[1] if f.index >= 0 else 0
        deleting = kind in (knl.RTM_DELLINK, knl.RTM_DELTFILTER, knl.RTM_DELQDISC)
        if not (deleting and f.errno in gone):
            out.append(f)
    return out


def _probe_sync() -> tuple[bool, str]:
    tag = secrets.token_hex(3)
    names = (f"mipprobe{tag}i", f"mipprobe{tag}g")
    try:
        sock = nl.RtnlSocket()
    except OSError as exc:
        return False, f"no netlink: {exc}"
    with sock:
        try:
            for name, kind in zip(names, ("ipip", "gre"), strict=True):
                existing = f"mip-{kind}"
                failures = sock.apply([knl.link_add_external(name, kind, up=False)])
                if failures:
                    if failures[0].errno == errno.EEXIST and _exists(existing):
                        continue  # the namespace's one collect-md device is ours, running
                    return False, f"kernel cannot create {kind} external devices: {failures[0]}"
            if _exists(names[0]):
                index = socket.if_nametoindex(names[0])
                block = 0x4D490000 | secrets.randbits(16)
                failures = sock.apply(
                    [
                        knl.clsact_add(index, block),
                        knl.flower_add(block, ACCEPT_PRIO, 1, "192.0.2.1", "192.0.2.2"),
                        knl.matchall_drop_add(block, DROP_PRIO),
                    ]
                )
                if failures:
                    return False, f"kernel cannot filter tunnel metadata (tc flower): {failures[0]}"
        finally:
            _apply_ignoring_absent(sock, [knl.link_del(name) for name in names])
    return True, "collect-metadata ipip and gre, tc flower on tunnel metadata available"


def _exists(name: str) -> bool:
    try:
        socket.if_nametoindex(name)
    except OSError:
        return False
    return True


async def kernel_supports_tunnels() -> tuple[bool, str]:
    """Whether this kernel can run :class:`KernelBackend`: collect-metadata (``external``) ipip
    and gre devices and tc flower filters on tunnel metadata (throw-away devices, removed)."""
    return _probe_sync()


class KernelBackend(TunnelBackend):
    """Two collect-metadata devices, one encap route and one flower filter per reverse-tunnel
    pair per binding (module docstring)."""

    name = "kernel"

    def __init__(
        self,
        log: Log,
        source: IPv4Address,
        prefix: str = "mip",
        ttl: int = 64,
        *,
        block: int = DEFAULT_BLOCK,
        udp_tun: str | None = None,
        own: frozenset[IPv4Address] = frozenset(),
        fastpath: BpfFastPath | None = None,
    ) -> None:
        super().__init__(log)
        self.fastpath = fastpath  # the tc BPF fast path (dataplane/bpf.py), or none
        # [dataplane] fastpath = "auto": the fast path's gate (dataplane/fastpath_guard.py)
        self.guard: FastPathGuard | None = None
        self.source = source
        self.own = own  # the Home Agent's addresses (the UDP tunnel counts keepalives to them)
        # the hybrid path of UDP-tunnelled homes (module docstring): a TUN named ``udp_tun``
        self.udp_tun_name = udp_tun
        self.udp_tun: UdpTun | None = None
        self.udp_homes: set[IPv4Address] = set()  # those homes (GET /api/v1/nat walks them)
        self.ttl = ttl
        self.block = block
        self.devices = {
            Encapsulation.IPIP: f"{prefix}-ipip",
            Encapsulation.GRE: f"{prefix}-gre",
        }
        self.ifindex: dict[Encapsulation, int] = {}
        self.sock: nl.RtnlSocket | None = None
        # reverse-tunnel filters: handle per (care-of, home) pair that may be in the kernel;
        # confirmed: the pairs of each home whose filters are known to be in (tracked)
        self.handles: dict[tuple[int, int], int] = {}
        self.confirmed: dict[int, frozenset[int]] = {}
        self.allocated: dict[int, set[int]] = {}  # home -> care-of addresses with a handle
        self._free: list[int] = []
        self._next = 1
        self.simultaneous = 0  # specs in force with several exits (one is used)
        self.minimal = 0  # specs in force whose exit asked for minimal encapsulation

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        ok, why = _probe_sync()
        if not ok:
            raise BackendError(why)
        try:
            self.sock = nl.RtnlSocket()
            self._create()
            if self.fastpath is not None and self.guard is not None:  # fastpath = "auto"
                self.guard.prepare()
                try:
                    self.fastpath.start()
                except OSError as exc:  # the kernel's path carries everything, as with "off"
                    self.guard.unavailable(str(exc))
                else:
                    self.guard.start()
            elif self.fastpath is not None:  # "on": the operator asked for it; refused: fail
                self.fastpath.start()
        except OSError as exc:
            await self.stop()
            raise BackendError(f"kernel tunnel backend: {exc}") from None
        if self.udp_tun_name is not None:
            tun = UdpTun(self.log, self.udp_tun_name)
            try:
                tun.open()
            except BackendError as exc:  # the kernel fast path runs on; NAT-ed homes get none
                self.log("dataplane.udp_tun_unavailable", error=str(exc))
            else:
                self.udp_tun = tun
        self.log(
            "dataplane.kernel",
            devices=",".join(self.devices.values()),
            block=self.block,
            source=self.source,
            udp_tun=self.udp_tun.name if self.udp_tun is not None else "-",
        )

    def _create(self) -> None:
        sock = self.sock
        assert sock is not None
        names = list(self.devices.values())
        _apply_ignoring_absent(sock, [knl.link_del(n) for n in names])  # a crashed run's
        kinds = {Encapsulation.IPIP: "ipip", Encapsulation.GRE: "gre"}
        failures = sock.apply(
            [knl.link_add_external(self.devices[e], kinds[e]) for e in self.devices]
        )
        if failures:
            raise OSError(failures[0].errno, f"creating {names}: {failures[0]}")
        for enc, name in self.devices.items():
            self.ifindex[enc] = socket.if_nametoindex(name)
            write_sysctl(f"net/ipv4/conf/{name}/rp_filter", "0")
            with contextlib.suppress(OSError):
                write_sysctl(f"net/ipv6/conf/{name}/disable_ipv6", "1")
        write_sysctl("net/ipv4/ip_forward", "1")
        messages = [knl.clsact_add(i, self.block) for i in self.ifindex.values()]
        messages.append(knl.matchall_drop_add(self.block, DROP_PRIO))
        failures = sock.apply(messages)
        if failures:
            raise OSError(failures[0].errno, f"reverse-tunnel filters: {failures[0]}")

    async def stop(self) -> None:
        if self.guard is not None:
            self.guard.stop()
        if self.fastpath is not None:
            self.fastpath.stop()
        sock = self.sock
        if sock is not None:
            # routes through the devices, their qdiscs and the shared block's filters go too
            _apply_ignoring_absent(sock, [knl.link_del(n) for n in self.devices.values()])
            sock.close()
            self.sock = None
        if self.udp_tun is not None:
            self.udp_tun.close()
            self.udp_tun = None
        self.udp_homes.clear()
        self.ifindex.clear()
        self.specs.clear()
        self.handles.clear()
        self.confirmed.clear()
        self.allocated.clear()
        self._free.clear()
        self._next = 1
        self.simultaneous = self.minimal = 0

    # --- the batched interface ---------------------------------------------------------------

    @staticmethod
    def exit_of(spec: TunnelSpec) -> tuple[IPv4Address, Encapsulation]:
        """The one exit the kernel route takes: the newest binding's, minimal as IP-in-IP."""
        coa, kind = spec.exits[-1]
        return coa, Encapsulation.IPIP if kind is Encapsulation.MINIMAL else kind

    def route_key(self, spec: TunnelSpec) -> Hashable:
        if not spec.exits:  # RFC 3519 bindings only: into the TUN (the hybrid path), or none
            return "udp-tun" if self.udp_tun is not None else "udp-only"
        coa, kind = self.exit_of(spec)
        return (int(coa), kind.value, tuple(sorted(int(c) for c in spec.reverse)))

    def add_messages(self, spec: TunnelSpec, table: int) -> list[bytes] | None:
        if not spec.exits:  # UDP-tunnelled (RFC 3519) only: into the TUN, or no route
            home = int(spec.home)
            gone = [
                knl.flower_del(self.block, ACCEPT_PRIO, self.handles[(c, home)])
                for c in self.confirmed.get(home, frozenset())
            ]
            if self.udp_tun is not None:
                return [tun_route(spec.home, self.udp_tun.index, table), *gone]
            self.counters["udp-tunnel-unsupported"] += 1
            return [nl.route_del(spec.home, table=table), *gone]
        coa, kind = self.exit_of(spec)
        home = int(spec.home)
        messages = [
            encap_route(spec.home, coa, self.source, self.ttl, self.ifindex.get(kind, 0), table)
        ]
        wanted = {int(c) for c in spec.reverse}
        for c in sorted(wanted):
            # create-or-replace by handle: idempotent, a retry after a failed batch is fine
            messages.append(knl.flower_add(self.block, ACCEPT_PRIO, self._handle(c, home), c, home))
        for c in self.confirmed.get(home, frozenset()) - wanted:
            messages.append(knl.flower_del(self.block, ACCEPT_PRIO, self.handles[(c, home)]))
        return messages

    def del_messages(self, home: IPv4Address, table: int) -> list[bytes]:
        h = int(home)
        messages = [nl.route_del(home, table=table)]
        for c in self.confirmed.get(h, frozenset()):
            messages.append(knl.flower_del(self.block, ACCEPT_PRIO, self.handles[(c, h)]))
        return messages

    def track(self, spec: TunnelSpec) -> None:
        self._count(self.specs.get(spec.home), -1)
        self.specs[spec.home] = spec
        self._count(spec, +1)
        self._udp_index(spec.home, spec)
        home = int(spec.home)
        wanted = frozenset(int(c) for c in spec.reverse)
        self._release(home, keep=wanted)
        self.confirmed[home] = wanted
        if self.fastpath is not None:  # the same exit as the route; written once per loop turn
            way = self.exit_of(spec) if spec.exits else None
            self.fastpath.stage(
                spec.home,
                None if way is None else (way[0], way[1] is Encapsulation.GRE),
                spec.reverse,
            )

    def untrack(self, home: IPv4Address) -> None:
        self._count(self.specs.pop(home, None), -1)
        self._udp_index(home, None)
        h = int(home)
        self._release(h, keep=frozenset())
        self.confirmed.pop(h, None)
        if self.fastpath is not None:
            self.fastpath.unstage(home)

    def set_live(self, live: bool) -> None:
        """The fast path's programs attached (the active member) or not (dataplane/bpf.py);
        in ``auto`` mode only where its guard finds nothing they would bypass."""
        if self.guard is not None:
            self.guard.set_active(live)
        elif self.fastpath is not None:
            self.fastpath.set_live(live)

    def key_of_dumped(self, route: nl.Route) -> Hashable:
        return STALE  # our devices were re-created at start: any route found is replaced

    # --- the legacy interface (one binding at a time; tests and embedders) --------------------

    async def install(self, spec: TunnelSpec, table: int = nl.DEFAULT_TABLE) -> None:
        await self.install_many([spec], table)

    async def remove(self, home: IPv4Address, table: int = nl.DEFAULT_TABLE) -> None:
        await self.remove_many([home], table)

    async def install_many(
        self, specs: Sequence[TunnelSpec], table: int = nl.DEFAULT_TABLE, chunk: int = 1000
    ) -> int:
        """Install ``specs`` through the backend's own socket, ``chunk`` specs per loop turn
        (what the service does in its batches); returns the number of failed specs."""
        failed = 0
        for start in range(0, len(specs), chunk):
            part = specs[start : start + chunk]
            built = [self.add_messages(s, table) or [] for s in part]
            failed += self._apply_per_owner(built, [s.home for s in part], part)
            await asyncio.sleep(0)
        return failed

    async def remove_many(
        self, homes: Sequence[IPv4Address], table: int = nl.DEFAULT_TABLE, chunk: int = 1000
    ) -> int:
        failed = 0
        for start in range(0, len(homes), chunk):
            part = homes[start : start + chunk]
            built = [self.del_messages(h, table) for h in part]
            failed += self._apply_per_owner(built, part, None)
            await asyncio.sleep(0)
        return failed

    def _apply_per_owner(
        self,
        built: list[list[bytes]],
        homes: Sequence[IPv4Address],
        specs: Sequence[TunnelSpec] | None,
    ) -> int:
        if self.sock is None:
            raise BackendError("kernel backend not started")
        flat = [m for ms in built for m in ms]
        bad: set[int] = set()
        owner: list[int] = []
        for i, ms in enumerate(built):
            owner += [i] * len(ms)
        for f in self.sock.apply(flat):
            if f.index < 0:
                self.counters["reports-lost"] += 1
                continue
            bad.add(owner[f.index])
            self.counters["errors"] += 1
            if self.counters["errors"] <= 20:
                self.log("dataplane.kernel_failed", home=homes[owner[f.index]], error=str(f))
        for i, home in enumerate(homes):
            if i in bad:
                continue
            if specs is None:
                self.untrack(home)
            else:
                self.track(specs[i])
        return len(bad)

    # --- helpers -------------------------------------------------------------------------------

    def _handle(self, coa: int, home: int) -> int:
        key = (coa, home)
        handle = self.handles.get(key)
        if handle is None:
            if self._free:
                handle = self._free.pop()
            else:
                handle = self._next
                self._next += 1
                if handle > MAX_HANDLE:
                    raise BackendError("tc filter handles exhausted")
            self.handles[key] = handle
            self.allocated.setdefault(home, set()).add(coa)
        return handle

    def _release(self, home: int, keep: frozenset[int]) -> None:
        """Give back the handles of ``home``'s pairs outside ``keep``: confirmed ones were
        deleted by the applied messages; never-confirmed ones (a batch that failed part-way may
        have left them in) are deleted now, absence ignored."""
        allocated = self.allocated.get(home)
        if not allocated:
            return
        stale = allocated - keep
        if not stale:
            return
        unconfirmed = stale - self.confirmed.get(home, frozenset())
        if unconfirmed and self.sock is not None:
            dels = [
                knl.flower_del(self.block, ACCEPT_PRIO, self.handles[(c, home)])
                for c in unconfirmed
            ]
            _apply_ignoring_absent(self.sock, dels)
        for c in stale:
            self._free.append(self.handles.pop((c, home)))
        allocated -= stale
        if not allocated:
            del self.allocated[home]

    def _udp_index(self, home: IPv4Address, spec: TunnelSpec | None) -> None:
        """Keep the TUN's exits (NAT mappings of the homes routed into it) and ``udp_homes``."""
        tun = self.udp_tun
        if spec is not None and spec.udp and not spec.exits:
            self.udp_homes.add(home)
            if tun is not None:
                tun.exits[home.packed] = spec.udp
        else:
            self.udp_homes.discard(home)
            if tun is not None:
                tun.exits.pop(home.packed, None)

    def write_tun(self, packet: bytes) -> None:
        """Hand a packet from a UDP tunnel to the kernel through the TUN (raises OSError)."""
        if self.udp_tun is None:
            raise OSError("no UDP tunnel TUN")
        self.udp_tun.write(packet)

    def _count(self, spec: TunnelSpec | None, delta: int) -> None:
        if spec is None or not spec.exits:
            return
        if len(spec.exits) > 1 or spec.udp:
            self.simultaneous += delta
        if spec.exits[-1][1] is Encapsulation.MINIMAL:
            self.minimal += delta

    def reverse_drops(self) -> int | None:
        """Reverse-tunnelled packets refused so far (the catch-all filter's hits, and the fast
        path's drops)."""
        if not self.ifindex:
            return None
        hits = knl.matchall_hits(self.block, DROP_PRIO)
        if self.fastpath is None or hits is None:
            return hits
        return hits + self.fastpath.drops()

    def status(self) -> dict[str, object]:
        data = super().status()
        counters = dict(self.counters)
        drops = self.reverse_drops()
        if drops is not None:
            counters["reverse-drop-unregistered"] = drops
        counters["simultaneous-one-exit"] = self.simultaneous
        counters["minimal-as-ipip"] = self.minimal
        if self.udp_tun is not None:
            counters.update(self.udp_tun.counters)
            data["udp_tun"] = self.udp_tun.name
            data["udp_homes"] = len(self.udp_homes)
        data["counters"] = counters
        data["devices"] = dict(zip(("ipip", "gre"), self.devices.values(), strict=True))
        data["filter_block"] = self.block
        data["reverse_filters"] = sum(len(v) for v in self.confirmed.values())
        if self.fastpath is None:
            data["fastpath"] = {"mode": "off"}
        else:
            fast = self.fastpath.status()
            fast["mode"] = "auto" if self.guard is not None else "on"
            if self.guard is not None:
                fast["guard"] = self.guard.status()
            data["fastpath"] = fast
        return data
