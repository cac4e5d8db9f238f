"""The next hops of the BPF fast path's MAC path (dataplane/bpf.py; docs/dataplane.md).

For each care-of address in use: the kernel's own output route towards it from the tunnel
source (``ip route get COA from SOURCE``, as the tunnel device's transmit looks it up; retried
without the source where it is not a local address), and that route's next hop (its gateway,
else the care-of address itself) in the neighbour table. An entry (egress ifindex, largest
outer packet, the next hop's and the interface's MAC addresses) exists only for a unicast
route without lightweight encapsulation through an Ethernet interface whose neighbour is
valid as ``bpf_fib_lookup`` counts it (``NUD_VALID``: REACHABLE, STALE, DELAY, PROBE,
PERMANENT, NOARP) with a 6-byte address; otherwise none: the program falls back to its FIB
lookup, then to the kernel.

:class:`Monitor` listens to the kernel's link, address, IPv4 route, rule and neighbour
events and tells (:class:`Changes`) which care-of addresses' entries they may change:
- a neighbour event: the entries behind that neighbour, recomputed (their routes kept);
- a route added or removed (our own protocol's excepted): the care-of addresses inside its
  prefix, looked up again (no other address's longest match can change; a default route's
  means all of them);
- a link event: the care-of addresses routed through that link (its MAC or MTU, or its
  routes, which IPv4 removes without events when it goes down; routes a link's coming up
  brings arrive as route events);
- an address event: nothing of itself (the routes it adds or removes arrive as route
  events), except for the tunnel source (dataplane/bpf.py: whether lookups are made from it);
- a rule event, an unknown event or lost events (``ENOBUFS``): every care-of address's
  route looked up again (dataplane/bpf.py spreads those over event-loop turns).
It also counts every event read (:attr:`Monitor.events`, our own routes' and
forwarding switches' included): any one invalidates the reverse program's route cache
(dataplane/bpf.py).

Requests go out pipelined: up to :data:`PIPELINE` ``RTM_GETROUTE`` (or ``RTM_GETNEIGH``)
messages in one ``send``, their replies read back by sequence number, so a care-of address
costs a fraction of a system call (inside User-Mode Linux a system call is what costs).
"""

from __future__ import annotations

import errno
import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field

from mobileip.net import rtnl as nl
from mobileip.net.mmsg import RecvBatch
from mobileip.net.udp import set_rcvbuf

# the nexthops map value: egress ifindex, largest outer IPv4 packet (the route's MTU),
# destination MAC, source MAC (as the Ethernet header holds them), padding
VALUE = struct.Struct("<II6s6sI")
NETLINK_ROUTE = 0
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_DELADDR = 20, 21
IFA_ADDRESS, IFA_LOCAL = 1, 2
RTA_SRC, RTA_METRICS, RTA_ENCAP = 2, 8, 22
RTAX_MTU = 2
RTN_UNICAST = 1
IFLA_ADDRESS, IFLA_MTU = 1, 4
ARPHRD_ETHER = 1
NDA_DST, NDA_LLADDR = 1, 2
NTF_PROXY = 0x08
NUD_VALID = 0x02 | 0x04 | 0x08 | 0x10 | 0x40 | 0x80
# RTMGRP_LINK, _NEIGH, _IPV4_IFADDR, _IPV4_ROUTE, _IPV4_RULE, RTNLGRP_IPV4_NETCONF (24:
# forwarding switched per interface)
GROUPS = 0x1 | 0x4 | 0x10 | 0x40 | 0x80 | 1 << 23
RTM_NEWNETCONF, RTM_DELNETCONF, RTM_GETRULE = 80, 81, 34
# rule attributes that select by the destination or choose the action only: a rule with any
# other (iif, fwmark, uid, protocol, ports, tunnel id, l3mdev, ...) or a source or TOS
# selector makes a route depend on more than the destination and TOS
FRA_DESTINATION_ONLY = frozenset({1, 4, 6, 13, 14, 15, 18, 21})  # DST GOTO PRIORITY
# SUPPRESS_IFGROUP SUPPRESS_PREFIXLEN TABLE PAD PROTOCOL

Key = tuple[int, bytes]  # (ifindex, next hop address): the neighbour an entry depends on
PIPELINE = 64  # requests per send (their replies must fit the socket's receive buffer)
NEIGH_DUMP_ABOVE = 1024  # more neighbours wanted than this: the table dumped, not asked for
RCVBUF = 4 << 20  # the request socket's receive buffer (SO_RCVBUFFORCE as root)
MONITOR_RCVBUF = 16 << 20  # the monitor's: an install's own route events can be many


def _attrs(buf: bytes, off: int) -> dict[int, bytes]:
    return nl._attrs(buf, off, len(buf))


def _attr(kind: int, data: bytes) -> bytes:
    return struct.pack("=HH", 4 + len(data), kind) + data


class Netlink:
    """A blocking NETLINK_ROUTE socket for requests and dumps (in the caller's netns)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                  NETLINK_ROUTE)  # fmt: skip
        set_rcvbuf(self.sock, RCVBUF)
        self.sock.bind((0, 0))
        self.sock.settimeout(5.0)
        self.seq = 0
        self._batch: RecvBatch | None = None  # for :meth:`requests`' replies

    def close(self) -> None:
        self.sock.close()
        if self._batch is not None:
            self._batch.view.release()
            self._batch.ring.close()
            self._batch = None

    def request(self, kind: int, flags: int, body: bytes) -> list[tuple[int, bytes]]:
        """The reply's messages (type, payload); raises OSError on an error reply."""
        self.seq += 1
        self.sock.send(struct.pack("=IHHII", 16 + len(body), kind, flags, self.seq, 0) + body)
        out: list[tuple[int, bytes]] = []
        while True:
            data = self.sock.recv(1 << 20)
            off = 0
            while off + 16 <= len(data):
                length, mkind, mflags, seq, _ = struct.unpack_from("=IHHII", data, off)
                payload = data[off + 16 : off + length]
                off += (length + 3) & ~3 if length else len(data)
                if seq != self.seq:
                    continue
                if mkind == nl.NLMSG_ERROR:
                    err = -struct.unpack_from("=i", payload)[0]
                    if err:
                        raise OSError(err, f"netlink {kind}: {errno.errorcode.get(err, err)}")
                    return out
                if mkind == nl.NLMSG_DONE:
                    return out
                out.append((mkind, payload))
                if not mflags & nl.NLM_F_MULTI:
                    return out

    def requests(self, kind: int, bodies: list[bytes]) -> list[bytes | OSError]:
        """One reply each (its payload, or the error) to single-message requests (no dump,
        no ack), sent :data:`PIPELINE` at a time in one ``send``."""
        out: list[bytes | OSError] = []
        for i in range(0, len(bodies), PIPELINE):
            chunk = bodies[i : i + PIPELINE]
            first = self.seq + 1
            self.seq += len(chunk)
            self.sock.send(b"".join(
                struct.pack("=IHHII", 16 + len(b), kind, nl.NLM_F_REQUEST, first + j, 0) + b
                for j, b in enumerate(chunk)
            ))  # fmt: skip
            got: dict[int, bytes | OSError] = {}
            while len(got) < len(chunk):
                for data in self._replies():
                    self._match(kind, data, first, len(chunk), got)
            out += [got[first + j] for j in range(len(chunk))]
        return out

    def _replies(self) -> list[bytes]:
        """The replies queued (the kernel answered while we sent), with one ``recvmmsg``;
        where none is queued yet, one waited for."""
        if self._batch is None:
            self._batch = RecvBatch(PIPELINE, 1 << 13)
        count = self._batch.receive(self.sock.fileno())
        if count:
            return [self._batch.datagram(i) for i in range(count)]
        return [self.sock.recv(1 << 20)]

    @staticmethod
    def _match(kind: int, data: bytes, first: int, n: int, got: dict[int, bytes | OSError]) -> None:
        """The replies in ``data`` to requests ``first`` .. ``first + n - 1`` put in ``got``."""
        off = 0
        while off + 16 <= len(data):
            length, mkind, _fl, seq, _ = struct.unpack_from("=IHHII", data, off)
            payload = data[off + 16 : off + length]
            off += (length + 3) & ~3 if length else len(data)
            if not first <= seq < first + n or seq in got:
                continue
            if mkind == nl.NLMSG_ERROR:
                err = -struct.unpack_from("=i", payload)[0]
                got[seq] = OSError(err, f"netlink {kind}: {errno.errorcode.get(err, err)}")
            else:
                got[seq] = payload


def _links(nlk: Netlink) -> dict[int, tuple[bytes, int]]:
    """Ethernet interfaces: ifindex -> (MAC, MTU)."""
    out = {}
    body = struct.pack("=BxHiII", socket.AF_UNSPEC, 0, 0, 0, 0)
    for kind, p in nlk.request(RTM_GETLINK, nl.NLM_F_REQUEST | nl.NLM_F_DUMP, body):
        _f, itype, index, _fl, _ch = struct.unpack_from("=BxHiII", p)
        a = _attrs(p, 16)
        mac = a.get(IFLA_ADDRESS, b"")
        if kind == RTM_NEWLINK and itype == ARPHRD_ETHER and len(mac) == 6 and IFLA_MTU in a:
            out[index] = (mac, struct.unpack("=I", a[IFLA_MTU])[0])
    return out


def _neighbour(out: dict[Key, bytes], kind: int, p: bytes) -> None:
    fam, index, state, flags, _ = struct.unpack_from("=BxxxiHBB", p)
    a = _attrs(p, 12)
    mac = a.get(NDA_LLADDR, b"")
    ok = kind == nl.RTM_NEWNEIGH and fam == socket.AF_INET and not flags & NTF_PROXY
    if ok and state & NUD_VALID and len(mac) == 6 and len(a.get(NDA_DST, b"")) == 4:
        out[(index, a[NDA_DST])] = mac


def _neighbours(nlk: Netlink, keys: set[Key] | None = None) -> dict[Key, bytes]:
    """Valid IPv4 neighbours with an Ethernet address: (ifindex, address) -> MAC; of
    ``keys`` only where given (asked for one by one where they are few and the kernel
    answers such requests, 5.0 and later; else the table dumped)."""
    out: dict[Key, bytes] = {}
    if keys is not None and len(keys) <= NEIGH_DUMP_ABOVE:
        order = list(keys)
        bodies = [
            struct.pack("=BxxxiHBB", socket.AF_INET, index, 0, 0, 0) + _attr(NDA_DST, dst)
            for index, dst in order
        ]
        replies = nlk.requests(nl.RTM_GETNEIGH, bodies)
        if not any(isinstance(r, OSError) and r.errno != errno.ENOENT for r in replies):
            for reply in replies:
                if isinstance(reply, bytes) and len(reply) >= 12:
                    _neighbour(out, nl.RTM_NEWNEIGH, reply)
            return out
        out.clear()  # refused (an older kernel): the dump
    body = struct.pack("=BxxxiHBB", socket.AF_INET, 0, 0, 0, 0)
    for kind, p in nlk.request(nl.RTM_GETNEIGH, nl.NLM_F_REQUEST | nl.NLM_F_DUMP, body):
        _neighbour(out, kind, p)
    return out


def _route_body(dst: bytes, src: bytes | None) -> bytes:
    attrs = _attr(nl.RTA_DST, dst) + (_attr(RTA_SRC, src) if src else b"")
    body = struct.pack("=BBBBBBBBI", socket.AF_INET, 32, 32 if src else 0, 0, 0, 0, 0, 0, 0)
    return body + attrs


def _route(dst: bytes, p: bytes) -> tuple[int, bytes, int] | None:
    if len(p) < 12 or p[7] != RTN_UNICAST:
        return None
    a = _attrs(p, 12)
    if RTA_ENCAP in a or nl.RTA_OIF not in a:
        return None
    mtu = 0
    if RTA_METRICS in a:
        metrics = nl._attrs(a[RTA_METRICS], 0, len(a[RTA_METRICS]))
        if RTAX_MTU in metrics:
            mtu = struct.unpack("=I", metrics[RTAX_MTU][:4])[0]
    return struct.unpack("=I", a[nl.RTA_OIF])[0], a.get(nl.RTA_GATEWAY, dst), mtu


def route_get(nlk: Netlink, dst: bytes, src: bytes | None) -> tuple[int, bytes, int] | None:
    """(oif, next hop, route MTU or 0) of the unicast route to ``dst`` from ``src``; None
    where there is none, or it is not a plain unicast route."""
    try:
        reply = nlk.request(nl.RTM_GETROUTE, nl.NLM_F_REQUEST, _route_body(dst, src))
    except OSError:
        return None
    for kind, p in reply:
        if kind == nl.RTM_NEWROUTE and p[7] == RTN_UNICAST:
            return _route(dst, p)
    return None


Route = tuple[int, bytes, int]  # (oif, next hop address, route MTU or 0)


def routes(coas: Iterable[int], source: int) -> dict[int, Route | None]:
    """The kernel's route to each care-of address from ``source`` (module docstring); where
    there is none from it, without it (all of them without it where ``source`` is not a
    local address, a standby's: the kernel refuses the first with EINVAL). Pipelined:
    :meth:`Netlink.requests`."""
    dsts = {coa: coa.to_bytes(4, "big") for coa in coas}
    if not dsts:
        return {}
    nlk = Netlink()
    try:
        src: bytes | None = source.to_bytes(4, "big")
        out: dict[int, Route | None] = {}
        probe = nlk.requests(nl.RTM_GETROUTE, [_route_body(next(iter(dsts.values())), src)])
        if isinstance(probe[0], OSError) and probe[0].errno == errno.EINVAL:
            src = None  # not a local address (a standby's): every lookup without it
        replies = nlk.requests(nl.RTM_GETROUTE, [_route_body(d, src) for d in dsts.values()])
        for (coa, dst), reply in zip(dsts.items(), replies, strict=True):
            out[coa] = _route(dst, reply) if isinstance(reply, bytes) else None
        again = [coa for coa, r in out.items() if r is None] if src else []
        if again:
            bodies = [_route_body(dsts[coa], None) for coa in again]
            for coa, reply in zip(again, nlk.requests(nl.RTM_GETROUTE, bodies), strict=True):
                out[coa] = _route(dsts[coa], reply) if isinstance(reply, bytes) else None
        return out
    finally:
        nlk.close()


def values(hops: dict[int, Route]) -> dict[int, bytes | None]:
    """The map value of each care-of address's route (None: no valid neighbour, or not an
    Ethernet interface), from the link and neighbour tables as they are now."""
    if not hops:
        return {}
    nlk = Netlink()
    try:
        links = _links(nlk)
        keys = {(oif, gateway) for oif, gateway, _ in hops.values() if oif in links}
        neighbours = _neighbours(nlk, keys) if keys else {}
    finally:
        nlk.close()
    out: dict[int, bytes | None] = {}
    for coa, (oif, gateway, route_mtu) in hops.items():
        mac, link = neighbours.get((oif, gateway)), links.get(oif)
        if mac is None or link is None:
            out[coa] = None
            continue
        own, mtu = link
        limit = min(mtu, route_mtu) if route_mtu else mtu
        out[coa] = VALUE.pack(oif, limit, mac, own, 0)
    return out


def rules_by_destination() -> bool:
    """Whether every IPv4 policy rule selects by the destination only (or by nothing): then
    a route lookup's answer depends on the destination and TOS alone (multipath's choice
    aside), and the reverse program may cache it (dataplane/bpf.py)."""
    nlk = Netlink()
    try:
        body = struct.pack("=BBBBBBBBI", socket.AF_INET, 0, 0, 0, 0, 0, 0, 0, 0)
        for kind, p in nlk.request(RTM_GETRULE, nl.NLM_F_REQUEST | nl.NLM_F_DUMP, body):
            if kind != nl.RTM_NEWRULE or len(p) < 12:
                continue
            _fam, _dst_len, src_len, tos = struct.unpack_from("=BBBB", p)
            if src_len or tos or set(_attrs(p, 12)) - FRA_DESTINATION_ONLY:
                return False
        return True
    finally:
        nlk.close()


class Monitor:
    """The kernel's events that may change a next hop, read without blocking."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                  NETLINK_ROUTE)  # fmt: skip
        set_rcvbuf(self.sock, MONITOR_RCVBUF)
        self.sock.bind((0, GROUPS))
        self.sock.setblocking(False)
        self.events = 0  # every event read (our own routes' too) and every loss of events
        self.lost = 0  # losses of events (ENOBUFS: the receive buffer overflowed)
        self._batch = RecvBatch(PIPELINE, 1 << 14)

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()
        self._batch.view.release()
        self._batch.ring.close()

    def drain(self) -> Changes:
        """What the events read since the last call may change (:class:`Changes`), read
        :data:`PIPELINE` events per system call (``recvmmsg``)."""
        changes = Changes()
        while True:
            try:
                count = self._batch.receive(self.sock.fileno())
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:  # events lost: re-resolve everything
                    changes.everything = True
                    self.events += 1
                    self.lost += 1
                    continue
                raise
            if not count:
                return changes
            for i in range(count):
                self._read(self._batch.datagram(i), changes)

    def _read(self, data: bytes, changes: Changes) -> None:
        """The events in one datagram counted and added to ``changes``."""
        off = 0
        while off + 16 <= len(data):
            length, kind = struct.unpack_from("=IH", data, off)
            p = data[off + 16 : off + length]
            off += (length + 3) & ~3 if length else len(data)
            if kind in (nl.NLMSG_NOOP, nl.NLMSG_DONE):
                continue
            self.events += 1
            if kind in (RTM_NEWNETCONF, RTM_DELNETCONF):
                continue  # no next hop's concern (the reverse program's: events)
            if kind in (nl.RTM_NEWNEIGH, nl.RTM_DELNEIGH) and len(p) >= 12:
                fam, index = struct.unpack_from("=Bxxxi", p)
                dst = _attrs(p, 12).get(NDA_DST, b"")
                if fam == socket.AF_INET and len(dst) == 4:
                    changes.neighbours.add((index, dst))
            elif kind in (nl.RTM_NEWROUTE, nl.RTM_DELROUTE) and len(p) >= 12:
                if p[5] == nl.RTPROT_MOBILEIP:  # our own home routes change no next hop
                    continue
                dst_len = p[1]
                dst = _attrs(p, 12).get(nl.RTA_DST, b"") if dst_len else bytes(4)
                if p[0] != socket.AF_INET or len(dst) != 4 or dst_len > 32:
                    changes.everything = True
                    continue
                mask = (0xFFFFFFFF << (32 - dst_len)) & 0xFFFFFFFF
                changes.prefixes.add((int.from_bytes(dst, "big") & mask, dst_len))
            elif kind in (RTM_NEWLINK, RTM_DELLINK) and len(p) >= 8:
                changes.links.add(struct.unpack_from("=i", p, 4)[0])
            elif kind in (RTM_NEWADDR, RTM_DELADDR) and len(p) >= 8:
                attrs = _attrs(p, 8)
                for a in (attrs.get(IFA_LOCAL), attrs.get(IFA_ADDRESS)):
                    if a is not None and len(a) == 4:
                        changes.addresses.add(int.from_bytes(a, "big"))
            else:  # a rule, or anything not known here
                changes.everything = True


@dataclass
class Changes:
    """What a batch of the kernel's events may change (module docstring)."""

    everything: bool = False  # a rule event, an unknown event, or events lost
    neighbours: set[Key] = field(default_factory=set)
    prefixes: set[tuple[int, int]] = field(default_factory=set)  # (network, length) of routes
    links: set[int] = field(default_factory=set)  # ifindexes with a link event
    addresses: set[int] = field(default_factory=set)  # IPv4 addresses added or removed

    def inside(self, coas: Iterable[int]) -> set[int]:
        """The care-of addresses inside any of :attr:`prefixes` (a default route's: all)."""
        by_length: dict[int, set[int]] = {}
        for net, length in self.prefixes:
            by_length.setdefault(length, set()).add(net)
        if not by_length:
            return set()
        if 0 in by_length:
            return set(coas)
        masks = [((0xFFFFFFFF << (32 - n)) & 0xFFFFFFFF, nets) for n, nets in by_length.items()]
        return {c for c in coas if any(c & m in nets for m, nets in masks)}
