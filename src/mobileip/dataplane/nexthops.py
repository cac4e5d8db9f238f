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
events: a neighbour event recomputes the entries behind that neighbour from the neighbour
table (their routes kept), anything else (our own protocol's routes excepted) looks up every
care-of address's route again (O(care-of addresses) ``RTM_GETROUTE`` requests, on the event
loop). It also counts every event read (:attr:`Monitor.events`, our own routes' and
forwarding switches' included): any one invalidates the reverse program's route cache
(dataplane/bpf.py).
"""

from __future__ import annotations

import errno
import socket
import struct
from collections.abc import Iterable

from mobileip.net import rtnl as nl

# the nexthops map value: egress ifindex, largest outer IPv4 packet (the route's MTU),
# destination MAC, source MAC (as the Ethernet header holds them), padding
VALUE = struct.Struct("<II6s6sI")
NETLINK_ROUTE = 0
RTM_NEWLINK, RTM_GETLINK = 16, 18
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


def _attrs(buf: bytes, off: int) -> dict[int, bytes]:
    return nl._attrs(buf, off, len(buf))


def _attr(kind: int, data: bytes) -> bytes:
    return struct.pack("=HH", 4 + len(data), kind) + data


class Netlink:
    """A blocking NETLINK_ROUTE socket for requests and dumps (in the caller's netns)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                  NETLINK_ROUTE)  # fmt: skip
        self.sock.bind((0, 0))
        self.sock.settimeout(5.0)
        self.seq = 0

    def close(self) -> None:
        self.sock.close()

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


def _neighbours(nlk: Netlink) -> dict[Key, bytes]:
    """Valid IPv4 neighbours with an Ethernet address: (ifindex, address) -> MAC."""
    out = {}
    body = struct.pack("=BxxxiHBB", socket.AF_INET, 0, 0, 0, 0)
    for kind, p in nlk.request(nl.RTM_GETNEIGH, nl.NLM_F_REQUEST | nl.NLM_F_DUMP, body):
        fam, index, state, flags, _ = struct.unpack_from("=BxxxiHBB", p)
        a = _attrs(p, 12)
        mac = a.get(NDA_LLADDR, b"")
        ok = kind == nl.RTM_NEWNEIGH and fam == socket.AF_INET and not flags & NTF_PROXY
        if ok and state & NUD_VALID and len(mac) == 6 and len(a.get(NDA_DST, b"")) == 4:
            out[(index, a[NDA_DST])] = mac
    return out


def route_get(nlk: Netlink, dst: bytes, src: bytes | None) -> tuple[int, bytes, int] | None:
    """(oif, next hop, route MTU or 0) of the unicast route to ``dst`` from ``src``; None
    where there is none, or it is not a plain unicast route."""
    attrs = _attr(nl.RTA_DST, dst) + (_attr(RTA_SRC, src) if src else b"")
    body = struct.pack("=BBBBBBBBI", socket.AF_INET, 32, 32 if src else 0, 0, 0, 0, 0, 0, 0)
    try:
        reply = nlk.request(nl.RTM_GETROUTE, nl.NLM_F_REQUEST, body + attrs)
    except OSError:
        return None
    for kind, p in reply:
        if kind != nl.RTM_NEWROUTE or p[7] != RTN_UNICAST:
            continue
        a = _attrs(p, 12)
        if RTA_ENCAP in a or nl.RTA_OIF not in a:
            return None
        mtu = 0
        if RTA_METRICS in a:
            metrics = nl._attrs(a[RTA_METRICS], 0, len(a[RTA_METRICS]))
            if RTAX_MTU in metrics:
                mtu = struct.unpack("=I", metrics[RTAX_MTU][:4])[0]
        return struct.unpack("=I", a[nl.RTA_OIF])[0], a.get(nl.RTA_GATEWAY, dst), mtu
    return None


Route = tuple[int, bytes, int]  # (oif, next hop address, route MTU or 0)


def routes(coas: Iterable[int], source: int) -> dict[int, Route | None]:
    """The kernel's route to each care-of address from ``source`` (module docstring)."""
    out: dict[int, Route | None] = {}
    coas = list(coas)
    if not coas:
        return out
    nlk = Netlink()
    try:
        src = source.to_bytes(4, "big")
        for coa in coas:
            dst = coa.to_bytes(4, "big")
            out[coa] = route_get(nlk, dst, src) or route_get(nlk, dst, None)
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
        links, neighbours = _links(nlk), _neighbours(nlk)
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
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.bind((0, GROUPS))
        self.sock.setblocking(False)
        self.events = 0  # every event read (our own routes' too) and every loss of events

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()

    def drain(self) -> tuple[bool, set[Key]]:
        """(anything but a neighbour changed or events were lost, the neighbours changed)."""
        everything = False
        neighbours: set[Key] = set()
        while True:
            try:
                data = self.sock.recv(1 << 20)
            except BlockingIOError:
                return everything, neighbours
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:  # events lost: re-resolve everything
                    everything = True
                    self.events += 1
                    continue
                raise
            off = 0
            while off + 16 <= len(data):
                length, kind = struct.unpack_from("=IH", data, off)
                p = data[off + 16 : off + length]
                off += (length + 3) & ~3 if length else len(data)
                if kind not in (nl.NLMSG_NOOP, nl.NLMSG_DONE):
                    self.events += 1
                if kind in (RTM_NEWNETCONF, RTM_DELNETCONF):
                    continue  # no next hop's concern (the reverse program's: events)
                if kind in (nl.RTM_NEWNEIGH, nl.RTM_DELNEIGH) and len(p) >= 12:
                    fam, index = struct.unpack_from("=Bxxxi", p)
                    dst = _attrs(p, 12).get(NDA_DST, b"")
                    if fam == socket.AF_INET and len(dst) == 4:
                        neighbours.add((index, dst))
                elif kind in (nl.RTM_NEWROUTE, nl.RTM_DELROUTE) and len(p) >= 12:
                    if p[5] != nl.RTPROT_MOBILEIP:  # our own home routes change no next hop
                        everything = True
                elif kind not in (nl.NLMSG_NOOP, nl.NLMSG_DONE):
                    everything = True
