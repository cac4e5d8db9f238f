"""``[dataplane] fastpath = "auto"``: the BPF fast path live only where it bypasses nothing.

The fast path's programs (dataplane/bpf.py) skip what the kernel's path would do to the packets
they take: netfilter (FORWARD and POSTROUTING for forwarded packets; every hook, PREROUTING
included, for the reverse packets they redirect), the reverse path filter for what they
redirect, and xfrm (IPsec) policy checks. In ``auto`` mode, :class:`FastPathGuard` keeps the
programs' ``live`` gate open only while the member is active **and** the namespace has none of
those configured (docs/dataplane.md, "The automatic mode"):

* no nftables chain in the families ``ip``, ``inet`` and ``netdev`` (a rule lives in a chain;
  a base chain with a drop policy filters without any rule): an ``NFT_MSG_GETCHAIN`` dump on a
  ``NETLINK_NETFILTER`` socket, and a socket subscribed to ``NFNLGRP_NFTABLES`` so a change is
  seen at once;
* no legacy iptables table: ``/proc/net/ip_tables_names`` empty or absent (no events exist:
  polled every :data:`POLL_INTERVAL`);
* no xfrm policy: an ``XFRM_MSG_GETPOLICY`` dump on ``NETLINK_XFRM``, and ``XFRMNLGRP_POLICY``
  events;
* no strict reverse path filter (``rp_filter`` 1, effective as the larger of ``all`` and the
  interface's) on any of the fast path's interfaces: such an interface closes the gate (it is
  not dropped from the set; polled like the legacy tables);
* no tc filter but ours at the ingress of any of the fast path's interfaces (another tool's
  classifier, policer or BPF program: where ours redirect a packet, the filters after them never
  see it): an ``RTM_GETTFILTER`` dump per interface, and ``RTNLGRP_TC`` events;
* at least one interface.

A dump the kernel refuses (``nfnetlink`` or ``xfrm_user`` not available) is "cannot verify":
the gate stays closed, and says so. A closed gate is ``BpfFastPath.set_live(False)``: the kernel
routes and flower filters are always installed, so the kernel's path carries everything.

The interfaces: ``fastpath_interfaces`` when given; else detected (:func:`choose_interfaces`) at
start and again each time the member becomes active: every link that is up, of type Ethernet,
a physical device or a veth (no ``linkinfo`` kind other than ``veth``), without a master (no
bridge port, bond or team slave), with no VLAN, macvlan, ipvlan, macvtap or VXLAN device on top
of it (the programs on a lower device would see its upper devices' frames), other than our own
devices; plus the virtual-MAC macvlan with ``virtual_mac``.

:func:`decide` and :func:`choose_interfaces` are pure; the I/O (dumps, files, event sockets, the
poll task) is :class:`FastPathGuard`'s and the ``read_*`` functions'.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import socket
import struct
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

from mobileip.dataplane.backend import Log
from mobileip.dataplane.bpf import PRIO_FORWARD, PRIO_REVERSE, BpfFastPath
from mobileip.net import rtnl as nl

POLL_INTERVAL = 1.0  # seconds: legacy iptables and rp_filter have no events
NETLINK_ROUTE, NETLINK_XFRM, NETLINK_NETFILTER = 0, 6, 12
RTM_NEWTFILTER, RTM_GETTFILTER = 44, 46
RTNLGRP_TC = 4
TC_H_INGRESS_FILTERS = 0xFFFFFFF2  # clsact's ingress hook (and the ingress qdisc's)
OWN_PRIOS = frozenset({PRIO_REVERSE, PRIO_FORWARD})  # our two filters' tc priorities
SO_ATTACH_FILTER = 26
# classic BPF on the tc event socket: a message whose tcmsg ifindex (offset 20) is a shared
# block's (the kernel backend's per-binding flower filters: one event each) is dropped in the
# kernel, everything else kept: ld [20]; jeq #TCM_IFINDEX_MAGIC_BLOCK; ret #0; ret #-1
NOT_SHARED_BLOCKS = ((0x20, 0, 0, 20), (0x15, 0, 1, 0xFFFFFFFF), (0x06, 0, 0, 0),
                     (0x06, 0, 0, 0xFFFFFFFF))  # fmt: skip
SOL_NETLINK, NETLINK_ADD_MEMBERSHIP = 270, 1
NFNL_SUBSYS_NFTABLES, NFT_MSG_NEWCHAIN, NFT_MSG_GETCHAIN = 10, 3, 4
NFNLGRP_NFTABLES = 7
NFPROTO_INET, NFPROTO_IPV4, NFPROTO_NETDEV = 1, 2, 5
BYPASSED_FAMILIES = {NFPROTO_INET: "inet", NFPROTO_IPV4: "ip", NFPROTO_NETDEV: "netdev"}
XFRM_MSG_NEWPOLICY, XFRM_MSG_GETPOLICY = 0x13, 0x15
XFRMNLGRP_POLICY = 4  # enum xfrm_nlgroups: NONE, ACQUIRE, EXPIRE, SA, POLICY
RTM_NEWLINK, RTM_GETLINK = 16, 18
IFLA_IFNAME, IFLA_LINK, IFLA_MASTER, IFLA_LINKINFO, IFLA_INFO_KIND = 3, 5, 10, 18, 1
IFF_UP = 0x1
ARPHRD_ETHER = 1
PLAIN_KINDS = (None, "veth")  # a physical device has no linkinfo kind
UPPER_KINDS = frozenset({"vlan", "macvlan", "macvtap", "ipvlan", "ipvtap", "vxlan"})
IP_TABLES_NAMES = "/proc/net/ip_tables_names"


# --- the pure part: which interfaces, and the gate --------------------------------------------


@dataclass(frozen=True, slots=True)
class Link:
    """What :func:`choose_interfaces` looks at of one network interface."""

    index: int
    name: str
    kind: str | None = None  # IFLA_INFO_KIND (None: a physical device)
    up: bool = True
    ether: bool = True  # ARPHRD_ETHER
    master: int = 0  # IFLA_MASTER (bridge, bond, team, VRF)
    lower: int = 0  # IFLA_LINK: the device a VLAN or macvlan sits on


def choose_interfaces(
    links: Sequence[Link], own: Collection[str], vmac: str | None = None
) -> tuple[str, ...]:
    """The detected fast-path interfaces (module docstring), in ``links``' order."""
    lowers = {
        link.lower
        for link in links
        if link.kind in UPPER_KINDS and link.lower and link.name != vmac
    }
    out = [
        link.name
        for link in links
        if link.up
        and link.ether
        and link.kind in PLAIN_KINDS
        and not link.master
        and link.index not in lowers
        and link.name not in own
    ]
    if vmac is not None and vmac not in out and any(link.name == vmac for link in links):
        out.append(vmac)  # ours: brought up on takeover, after the gate is set
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Observation:
    """What the gate depends on, as read; ``None`` counts: the kernel could not tell."""

    active: bool
    interfaces: tuple[str, ...] = ()
    nft_chains: int | None = 0  # chains in ip/inet/netdev
    legacy_tables: tuple[str, ...] = ()  # /proc/net/ip_tables_names
    xfrm_policies: int | None = 0
    rp_filter: tuple[tuple[str, int], ...] = ()  # (interface, effective value)
    # (interface, ingress tc filters other than ours); None: the dump was refused
    tc_filters: tuple[tuple[str, int], ...] | None = ()
    nft_error: str = ""
    xfrm_error: str = ""
    tc_error: str = ""


@dataclass(frozen=True, slots=True)
class Gate:
    open: bool
    reason: str


def effective_rp_filter(all_: int, per_interface: dict[str, int]) -> tuple[tuple[str, int], ...]:
    """The kernel's rule: the larger of ``conf/all`` and the interface's own value."""
    return tuple((name, max(all_, value)) for name, value in per_interface.items())


def decide(obs: Observation) -> Gate:
    """Open only while active with interfaces and nothing the programs would bypass; the first
    reason found otherwise."""
    if not obs.active:
        return Gate(False, "standby")
    if not obs.interfaces:
        return Gate(False, "no interface")
    if obs.nft_chains is None:
        return Gate(False, f"cannot verify nftables: {obs.nft_error or 'no answer'}")
    if obs.nft_chains:
        return Gate(False, f"nftables: {obs.nft_chains} chain(s) in ip/inet/netdev")
    if obs.legacy_tables:
        return Gate(False, f"iptables (legacy) tables: {','.join(obs.legacy_tables)}")
    if obs.xfrm_policies is None:
        return Gate(False, f"cannot verify xfrm: {obs.xfrm_error or 'no answer'}")
    if obs.xfrm_policies:
        return Gate(False, f"xfrm: {obs.xfrm_policies} policy(ies)")
    strict = [name for name, value in obs.rp_filter if value == 1]
    if strict:
        return Gate(False, f"strict rp_filter on {','.join(strict)}")
    if obs.tc_filters is None:
        return Gate(False, f"cannot verify tc filters: {obs.tc_error or 'no answer'}")
    foreign = [f"{name} ({count})" for name, count in obs.tc_filters if count]
    if foreign:
        return Gate(False, f"tc: other ingress filters on {', '.join(foreign)}")
    return Gate(True, "nothing bypassed")


# --- reading the kernel -------------------------------------------------------------------------


def _dump(protocol: int, kind: int, body: bytes) -> list[tuple[int, bytes]]:
    """One netlink dump (type, payload of each message) in the calling thread's namespace;
    raises OSError on an error reply or when the protocol is unavailable."""
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, protocol) as s:
        s.bind((0, 0))
        s.settimeout(2.0)
        s.send(struct.pack("=IHHII", 16 + len(body), kind, nl.NLM_F_REQUEST | nl.NLM_F_DUMP, 1, 0)
               + body)  # fmt: skip
        out: list[tuple[int, bytes]] = []
        while True:
            data = s.recv(1 << 20)
            off = 0
            while off + 16 <= len(data):
                length, mkind, _flags, seq = struct.unpack_from("=IHHI", data, off)
                payload = data[off + 16 : off + length]
                off += (length + 3) & ~3 if length else len(data)
                if seq != 1:
                    continue
                if mkind == nl.NLMSG_ERROR:
                    err = -struct.unpack_from("=i", payload)[0]
                    if err:
                        raise OSError(err, errno.errorcode.get(err, str(err)))
                    return out
                if mkind == nl.NLMSG_DONE:
                    return out
                out.append((mkind, payload))


def read_nft_chains() -> int:
    """nftables chains in the families the programs bypass (ip, inet, netdev)."""
    kind = NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_GETCHAIN
    reply = _dump(NETLINK_NETFILTER, kind, struct.pack("=BBH", socket.AF_UNSPEC, 0, 0))
    new = NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_NEWCHAIN
    return sum(1 for k, p in reply if k == new and p and p[0] in BYPASSED_FAMILIES)


def read_xfrm_policies() -> int:
    """xfrm (IPsec) policies of the namespace (per-socket policies are not listed)."""
    reply = _dump(NETLINK_XFRM, XFRM_MSG_GETPOLICY, bytes(4))
    return sum(1 for k, _ in reply if k == XFRM_MSG_NEWPOLICY)


def read_legacy_tables(path: str = IP_TABLES_NAMES) -> tuple[str, ...]:
    """Legacy iptables tables (absent file: ip_tables not loaded, so none)."""
    try:
        with open(path, encoding="ascii") as f:
            return tuple(line.strip() for line in f if line.strip())
    except FileNotFoundError:
        return ()


def _sysctl(path: str) -> int | None:
    try:
        with open(f"/proc/sys/{path}", encoding="ascii") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def read_rp_filter(interfaces: Iterable[str]) -> tuple[tuple[str, int], ...]:
    """The effective rp_filter of each interface that exists."""
    per = {}
    for name in interfaces:
        value = _sysctl(f"net/ipv4/conf/{name}/rp_filter")
        if value is not None:
            per[name] = value
    return effective_rp_filter(_sysctl("net/ipv4/conf/all/rp_filter") or 0, per)


def interface_indexes(interfaces: Iterable[str]) -> dict[str, int]:
    """The index of each of ``interfaces`` that exists."""
    out = {}
    for name in interfaces:
        with contextlib.suppress(OSError):
            out[name] = socket.if_nametoindex(name)
    return out


def read_tc_filters(indexes: Mapping[str, int]) -> tuple[tuple[str, int], ...]:
    """Each interface's (name -> index) ingress tc filters other than ours (counted by
    priority and protocol: one per classifier instance, however many filters it holds)."""
    out = []
    for name, index in indexes.items():
        body = struct.pack("=BxxxiIII", socket.AF_UNSPEC, index, 0, TC_H_INGRESS_FILTERS, 0)
        try:
            reply = _dump(NETLINK_ROUTE, RTM_GETTFILTER, body)
        except OSError as exc:
            if exc.errno == errno.ENODEV:  # gone since
                continue
            raise
        others = {
            info
            for kind, p in reply
            if kind == RTM_NEWTFILTER and len(p) >= 20
            for info in struct.unpack_from("=I", p, 16)
            if info >> 16 not in OWN_PRIOS
        }
        out.append((name, len(others)))
    return tuple(out)


def read_links() -> list[Link]:
    """Every interface of the namespace (an RTM_GETLINK dump)."""
    links = []
    body = struct.pack("=BxHiII", socket.AF_UNSPEC, 0, 0, 0, 0)
    for kind, p in _dump(NETLINK_ROUTE, RTM_GETLINK, body):
        if kind != RTM_NEWLINK or len(p) < 16:
            continue
        _f, itype, index, flags, _ch = struct.unpack_from("=BxHiII", p)
        a = nl._attrs(p, 16, len(p))
        info = nl._attrs(a[IFLA_LINKINFO], 0, len(a[IFLA_LINKINFO])) if IFLA_LINKINFO in a else {}
        kind_name = info.get(IFLA_INFO_KIND)
        links.append(
            Link(
                index=index,
                name=a.get(IFLA_IFNAME, b"").rstrip(b"\0").decode(errors="replace"),
                kind=kind_name.rstrip(b"\0").decode(errors="replace") if kind_name else None,
                up=bool(flags & IFF_UP),
                ether=itype == ARPHRD_ETHER,
                master=struct.unpack("=I", a[IFLA_MASTER])[0] if IFLA_MASTER in a else 0,
                lower=struct.unpack("=I", a[IFLA_LINK])[0] if IFLA_LINK in a else 0,
            )
        )
    return links


class _Events:
    """A non-blocking netlink socket subscribed to one multicast group (None if refused);
    ``relevant``: which datagrams count (default: all)."""

    def __init__(
        self,
        protocol: int,
        group: int,
        relevant: Callable[[bytes], bool] | None = None,
        socket_filter: Sequence[tuple[int, int, int, int]] = (),
    ) -> None:
        self.relevant = relevant
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                  protocol)  # fmt: skip
        try:
            if socket_filter:  # before joining the group: nothing unfiltered gets queued
                attach_filter(self.sock, socket_filter)
            self.sock.bind((0, 0))
            self.sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, group)
            self.sock.setblocking(False)
        except OSError:
            self.sock.close()
            raise

    def drain(self) -> int:
        """Reads what is queued; the number of relevant reads (ENOBUFS, events lost, counts
        too)."""
        n = 0
        while True:
            try:
                data = self.sock.recv(1 << 16)
            except BlockingIOError:
                return n
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    return n + 1
                n += 1
                continue
            if self.relevant is None or self.relevant(data):
                n += 1


def attach_filter(sock: socket.socket, insns: Sequence[tuple[int, int, int, int]]) -> None:
    """``SO_ATTACH_FILTER``: a classic BPF program (code, jt, jf, k) on ``sock``."""
    code = b"".join(struct.pack("=HBBI", *insn) for insn in insns)
    buf = ctypes.create_string_buffer(code, len(code))  # the kernel copies it
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER,
                    struct.pack("HP", len(insns), ctypes.addressof(buf)))  # fmt: skip


TC_EVENTS = frozenset({36, 37, 44, 45, 100, 101})  # RTM_{NEW,DEL}{QDISC,TFILTER,CHAIN}


def tc_event_indexes(data: bytes) -> set[int]:
    """The interfaces (tcmsg ``ifindex``) of the qdisc, filter and chain events in one
    datagram (a shared block's filters, such as the kernel backend's, carry none of them)."""
    out = set()
    off = 0
    while off + 24 <= len(data):
        length, kind = struct.unpack_from("=IH", data, off)
        if length < 16:
            break
        if kind in TC_EVENTS and length >= 24:
            out.add(struct.unpack_from("=i", data, off + 20)[0])
        off += (length + 3) & ~3
    return out


# --- the guard ----------------------------------------------------------------------------------


class FastPathGuard:
    """Drives ``fastpath``'s live gate in ``auto`` mode (module docstring). ``interfaces``:
    the configured ones, or empty to detect them; ``own``: our devices' names (never chosen);
    ``vmac``: the virtual-MAC macvlan's name (always chosen when it exists)."""

    def __init__(
        self,
        fastpath: BpfFastPath,
        log: Log,
        interfaces: Sequence[str] = (),
        own: Collection[str] = (),
        vmac: str | None = None,
        poll: float = POLL_INTERVAL,
        links: Callable[[], list[Link]] = read_links,
    ) -> None:
        self.fastpath = fastpath
        self.log = log
        self.configured = tuple(interfaces)
        self.own = frozenset(own)
        self.vmac = vmac
        self.poll = poll
        self._links = links
        self.active = False
        self.gate = Gate(False, "not started")
        self.since = time.time()
        self.changes = 0  # openings and closings
        self.checks = 0
        self.refused = ""  # why the programs could not be loaded or attached (then closed)
        self.events: list[_Events] = []
        self._watched: frozenset[int] = frozenset()  # the interfaces' indexes, as last checked
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def detected(self) -> bool:
        return not self.configured

    def interfaces(self) -> tuple[str, ...]:
        if self.configured:
            return self.configured
        try:
            return choose_interfaces(self._links(), self.own, self.vmac)
        except OSError as exc:
            self.log("dataplane.fastpath_links_failed", error=str(exc))
            return ()

    def prepare(self) -> None:
        """Before ``fastpath.start()``: the interfaces it attaches to (gated off)."""
        self.fastpath.interfaces = self.interfaces()

    def unavailable(self, error: str) -> None:
        """``fastpath.start()`` failed (no BPF, no cls_bpf, a verifier rejection): the gate
        stays closed for good, the kernel's path carries everything."""
        self.refused = error.splitlines()[0][:200] if error else "refused"
        self.log("dataplane.fastpath_unavailable", error=error[:2000])
        self.evaluate()

    def start(self) -> None:
        """After ``fastpath.start()``, on the running loop: the event sockets and the poll."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        tc = self._tc_relevant
        for protocol, group, what, relevant, kernel_filter in (
            (NETLINK_NETFILTER, NFNLGRP_NFTABLES, "nftables", None, ()),
            (NETLINK_XFRM, XFRMNLGRP_POLICY, "xfrm", None, ()),
            # the fast path's interfaces only (ours too: one more check after an attach)
            (NETLINK_ROUTE, RTNLGRP_TC, "tc", tc, NOT_SHARED_BLOCKS),
        ):
            try:
                events = _Events(protocol, group, relevant, kernel_filter)
            except OSError as exc:  # the dump will say "cannot verify" too
                self.log("dataplane.fastpath_no_events", source=what, error=str(exc))
                continue
            self.events.append(events)
            loop.add_reader(events.sock.fileno(), self._on_event, events)
        self._task = loop.create_task(self._poller())
        self.evaluate()

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        loop = self._loop
        for events in self.events:
            if loop is not None and not loop.is_closed():
                with contextlib.suppress(RuntimeError, ValueError):
                    loop.remove_reader(events.sock.fileno())
            events.sock.close()
        self.events.clear()
        self._loop = None
        self.active = False

    def set_active(self, active: bool) -> None:
        """The member's role (where the service adds or removes its ``ip rule``): on becoming
        active, detected interfaces are chosen again; then the gate is decided."""
        became = active and not self.active
        self.active = active
        if became and self.detected and not self.refused:
            self._retarget(self.interfaces())
        self.evaluate()

    def _retarget(self, wanted: tuple[str, ...]) -> None:
        fp = self.fastpath
        if wanted == fp.interfaces:
            return
        gone = [d for d in fp.interfaces if d not in wanted]
        fp.interfaces = wanted  # those added are attached by set_live(True)
        if gone:  # our filters off the interfaces no longer chosen (absent ones skipped)
            self._detach(gone)
        self.log("dataplane.fastpath_interfaces", interfaces=",".join(wanted) or "-")

    def _detach(self, gone: Sequence[str]) -> None:
        """BpfFastPath's own detach for those interfaces (it has no public one for a subset)."""
        fp = self.fastpath
        indexes = {}
        for dev in gone:
            with contextlib.suppress(OSError):
                indexes[dev] = socket.if_nametoindex(dev)
        try:
            fp._detach(indexes, fp.created_clsact & set(indexes))
        except OSError as exc:
            self.log("dataplane.fastpath_detach_failed", error=str(exc))
        for dev in gone:
            fp.attached.pop(dev, None)
            fp.created_clsact.discard(dev)

    def observe(self) -> Observation:
        """Read everything the gate depends on (a standby reads nothing)."""
        if not self.active:
            return Observation(active=False)
        interfaces = self.fastpath.interfaces
        nft: int | None
        xfrm: int | None
        nft_error = xfrm_error = ""
        try:
            nft = read_nft_chains()
        except OSError as exc:
            nft, nft_error = None, exc.strerror or str(exc)
        try:
            xfrm = read_xfrm_policies()
        except OSError as exc:
            xfrm, xfrm_error = None, exc.strerror or str(exc)
        tc: tuple[tuple[str, int], ...] | None
        tc_error = ""
        indexes = interface_indexes(interfaces)
        self._watched = frozenset(indexes.values())
        try:
            tc = read_tc_filters(indexes)
        except OSError as exc:
            tc, tc_error = None, exc.strerror or str(exc)
        return Observation(
            active=True,
            interfaces=interfaces,
            nft_chains=nft,
            legacy_tables=read_legacy_tables(),
            xfrm_policies=xfrm,
            rp_filter=read_rp_filter(interfaces),
            tc_filters=tc,
            nft_error=nft_error,
            xfrm_error=xfrm_error,
            tc_error=tc_error,
        )

    def evaluate(self) -> Gate:
        """Observe, decide, and open or close the programs' gate where that changed."""
        self.checks += 1
        if self.refused:
            gate = Gate(False, f"fast path unavailable: {self.refused}")
        else:
            gate = decide(self.observe())
        if gate.open != self.fastpath.live:
            try:
                self.fastpath.set_live(gate.open)
            except OSError as exc:
                gate = Gate(False, f"fast path refused: {exc}")
                with contextlib.suppress(OSError):
                    self.fastpath.set_live(False)
        if gate != self.gate:
            if gate.open != self.gate.open:
                self.changes += 1
                self.since = time.time()
            self.log(
                "dataplane.fastpath_gate",
                state="open" if gate.open else "closed",
                reason=gate.reason,
                interfaces=",".join(self.fastpath.interfaces) or "-",
            )
            self.gate = gate
        return gate

    def _tc_relevant(self, data: bytes) -> bool:
        return not self._watched.isdisjoint(tc_event_indexes(data))

    def _on_event(self, events: _Events) -> None:
        if events.drain() and self.active:
            self.evaluate()

    async def _poller(self) -> None:
        while True:
            await asyncio.sleep(self.poll)
            if self.active:
                self.evaluate()

    def status(self) -> dict[str, object]:
        return {
            "state": "open" if self.gate.open else "closed",
            "reason": self.gate.reason,
            "since": self.since,
            "changes": self.changes,
            "checks": self.checks,
            "detected": self.detected,
            "poll_interval": self.poll,
            "events": len(self.events),
        }
