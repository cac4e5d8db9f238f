"""rtnetlink messages the kernel backend needs beyond routes (stdlib only, like net/rtnl.py).

Pure builders returning one message as ``bytes`` (sequence 0, no ``NLM_F_ACK``), to be sent in
batches with :meth:`mobileip.net.rtnl.RtnlSocket.apply`:

* links: :func:`link_add_external` (``ip link add NAME type ipip|gre external up``: one
  collect-metadata tunnel device whose per-packet destination comes from the route's
  lightweight-tunnel encap), :func:`link_set` (MTU and up, the UDP tunnel's TUN),
  :func:`link_del`;
* tc: :func:`clsact_add` (``tc qdisc add dev D ingress_block B clsact``: both tunnel devices share
  one filter block, so each reverse-tunnel filter is installed once for both);
  :func:`flower_add` / :func:`flower_del` (``tc filter add block B ingress prio P handle H
  protocol ip flower enc_src_ip COA src_ip HOA skip_hw``, no action: a match ends classification
  with ``TC_ACT_OK`` and the packet goes on); :func:`matchall_drop_add` (``tc filter add block B
  prio P protocol all matchall skip_hw action drop``), the catch-all whose hit count is the
  number of reverse-tunnelled packets refused;
* :func:`matchall_hits`: read that count back (``RTM_GETTFILTER`` of the one filter).

Field values come from the uapi headers (linux/rtnetlink.h, if_link.h, if_tunnel.h, pkt_cls.h,
pkt_sched.h, tc_act/tc_gact.h); tests/test_kernel_backend_nl.py checks the bytes, and the
UML tests check what ``tc``/``ip`` read back.
"""

from __future__ import annotations

import socket
import struct
from ipaddress import IPv4Address

from mobileip.net.rtnl import NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST, Addr

RTM_NEWLINK, RTM_DELLINK = 16, 17
RTM_NEWQDISC, RTM_DELQDISC = 36, 37
RTM_NEWTFILTER, RTM_DELTFILTER, RTM_GETTFILTER = 44, 45, 46
NLMSG_ERROR = 2

IFLA_IFNAME, IFLA_MTU, IFLA_LINKINFO = 3, 4, 18
IFLA_INFO_KIND, IFLA_INFO_DATA = 1, 2
IFLA_IPTUN_COLLECT_METADATA = 19
IFLA_GRE_COLLECT_METADATA = 18
IFF_UP = 0x1
NLA_F_NESTED = 0x8000

TCA_KIND, TCA_OPTIONS, TCA_INGRESS_BLOCK = 1, 2, 13
TC_H_CLSACT = 0xFFFFFFF1
TC_H_CLSACT_HANDLE = 0xFFFF0000
TCM_IFINDEX_MAGIC_BLOCK = 0xFFFFFFFF
ETH_P_IP, ETH_P_ALL = 0x0800, 0x0003
TCA_CLS_FLAGS_SKIP_HW = 1
TCA_FLOWER_ACT, TCA_FLOWER_KEY_ETH_TYPE = 3, 8
TCA_FLOWER_KEY_IPV4_SRC, TCA_FLOWER_KEY_IPV4_SRC_MASK = 10, 11
TCA_FLOWER_FLAGS = 22
TCA_FLOWER_KEY_ENC_IPV4_SRC, TCA_FLOWER_KEY_ENC_IPV4_SRC_MASK = 27, 28
TCA_MATCHALL_ACT, TCA_MATCHALL_FLAGS, TCA_MATCHALL_PCNT = 2, 3, 4
TCA_ACT_KIND, TCA_ACT_OPTIONS = 1, 2
TCA_GACT_PARMS = 2
TC_ACT_SHOT = 2

_NLHDR = struct.Struct("=IHHII")
_IFINFO = struct.Struct("=BxHiII")
_TCMSG = struct.Struct("=BxxxIIII")
_ATTR = struct.Struct("=HH")
_ALL_ONES = b"\xff\xff\xff\xff"


def _ip(a: Addr) -> bytes:
    if isinstance(a, IPv4Address):
        return a.packed
    if isinstance(a, str):
        return socket.inet_aton(a)
    if isinstance(a, int):
        return a.to_bytes(4, "big")
    return a


def _attr(kind: int, data: bytes) -> bytes:
    n = 4 + len(data)
    return _ATTR.pack(n, kind) + data + b"\0" * (-n & 3)


def _u32(kind: int, value: int) -> bytes:
    return _attr(kind, struct.pack("=I", value))


def _msg(kind: int, flags: int, body: bytes) -> bytes:
    return _NLHDR.pack(16 + len(body), kind, flags, 0, 0) + body


# --- links ---


def link_add_external(name: str, kind: str, *, mtu: int | None = None, up: bool = True) -> bytes:
    """RTM_NEWLINK ``ip link add NAME type ipip|gre external [mtu M] [up]`` (create+excl)."""
    if kind == "ipip":
        data = _attr(IFLA_IPTUN_COLLECT_METADATA, b"")
    elif kind == "gre":
        data = _attr(IFLA_GRE_COLLECT_METADATA, b"")
    else:
        raise ValueError(f"not a collect-metadata kind we use: {kind}")
    info = _attr(IFLA_INFO_KIND, kind.encode()) + _attr(IFLA_INFO_DATA | NLA_F_NESTED, data)
    attrs = _attr(IFLA_IFNAME, name.encode() + b"\0") + _attr(IFLA_LINKINFO | NLA_F_NESTED, info)
    if mtu is not None:
        attrs += _u32(IFLA_MTU, mtu)
    flags = IFF_UP if up else 0
    body = _IFINFO.pack(socket.AF_UNSPEC, 0, 0, flags, IFF_UP) + attrs
    return _msg(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL, body)


def link_set(index: int, *, mtu: int | None = None, up: bool = True) -> bytes:
    """RTM_NEWLINK on an existing device: ``ip link set dev INDEX [mtu M] up|down``."""
    attrs = _u32(IFLA_MTU, mtu) if mtu is not None else b""
    body = _IFINFO.pack(socket.AF_UNSPEC, 0, index, IFF_UP if up else 0, IFF_UP) + attrs
    return _msg(RTM_NEWLINK, NLM_F_REQUEST, body)


def link_del(name: str) -> bytes:
    """RTM_DELLINK by name (ENODEV when absent)."""
    body = _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + _attr(IFLA_IFNAME, name.encode() + b"\0")
    return _msg(RTM_DELLINK, NLM_F_REQUEST, body)


# --- tc ---


def _tcmsg(ifindex: int, handle: int, parent: int, info: int) -> bytes:
    return _TCMSG.pack(socket.AF_UNSPEC, ifindex & 0xFFFFFFFF, handle, parent, info)


def _info(prio: int, protocol: int) -> int:
    return (prio << 16) | socket.htons(protocol)


def clsact_add(ifindex: int, ingress_block: int) -> bytes:
    """RTM_NEWQDISC ``tc qdisc add dev IF ingress_block B clsact`` (create+excl)."""
    attrs = _attr(TCA_KIND, b"clsact\0") + _u32(TCA_INGRESS_BLOCK, ingress_block)
    body = _tcmsg(ifindex, TC_H_CLSACT_HANDLE, TC_H_CLSACT, 0) + attrs
    return _msg(RTM_NEWQDISC, NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL, body)


def flower_add(block: int, prio: int, handle: int, outer_src: Addr, inner_src: Addr) -> bytes:
    """RTM_NEWTFILTER on shared block ``block``: ``prio P handle H protocol ip flower
    enc_src_ip OUTER src_ip INNER skip_hw`` and no action (a match passes the packet);
    create-or-replace by handle (``tc filter replace``): sending it twice is harmless."""
    opts = (
        _attr(TCA_FLOWER_KEY_ETH_TYPE, struct.pack("!H", ETH_P_IP))
        + _attr(TCA_FLOWER_KEY_ENC_IPV4_SRC, _ip(outer_src))
        + _attr(TCA_FLOWER_KEY_ENC_IPV4_SRC_MASK, _ALL_ONES)
        + _attr(TCA_FLOWER_KEY_IPV4_SRC, _ip(inner_src))
        + _attr(TCA_FLOWER_KEY_IPV4_SRC_MASK, _ALL_ONES)
        + _u32(TCA_FLOWER_FLAGS, TCA_CLS_FLAGS_SKIP_HW)
    )
    attrs = _attr(TCA_KIND, b"flower\0") + _attr(TCA_OPTIONS, opts)
    body = _tcmsg(TCM_IFINDEX_MAGIC_BLOCK, handle, block, _info(prio, ETH_P_IP)) + attrs
    return _msg(RTM_NEWTFILTER, NLM_F_REQUEST | NLM_F_CREATE, body)


def flower_del(block: int, prio: int, handle: int) -> bytes:
    """RTM_DELTFILTER of one flower filter by handle (ENOENT when absent)."""
    body = _tcmsg(TCM_IFINDEX_MAGIC_BLOCK, handle, block, _info(prio, ETH_P_IP))
    return _msg(RTM_DELTFILTER, NLM_F_REQUEST, body + _attr(TCA_KIND, b"flower\0"))


def matchall_drop_add(block: int, prio: int, handle: int = 1) -> bytes:
    """RTM_NEWTFILTER ``tc filter add block B ingress prio P handle H protocol all matchall
    skip_hw action drop``."""
    gact = struct.pack("=IIiii", 0, 0, TC_ACT_SHOT, 0, 0)  # struct tc_gact
    action = _attr(TCA_ACT_KIND, b"gact\0") + _attr(TCA_ACT_OPTIONS, _attr(TCA_GACT_PARMS, gact))
    opts = _u32(TCA_MATCHALL_FLAGS, TCA_CLS_FLAGS_SKIP_HW) + _attr(
        TCA_MATCHALL_ACT, _attr(1, action)
    )
    attrs = _attr(TCA_KIND, b"matchall\0") + _attr(TCA_OPTIONS, opts)
    body = _tcmsg(TCM_IFINDEX_MAGIC_BLOCK, handle, block, _info(prio, ETH_P_ALL)) + attrs
    return _msg(RTM_NEWTFILTER, NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL, body)


def _attrs(buf: bytes, off: int, end: int) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    while off + 4 <= end:
        n, kind = _ATTR.unpack_from(buf, off)
        if n < 4:
            break
        out[kind & 0x3FFF] = buf[off + 4 : off + n]
        off += (n + 3) & ~3
    return out


def matchall_get(block: int, prio: int, handle: int = 1, seq: int = 1) -> bytes:
    """RTM_GETTFILTER of the catch-all filter (the reply carries its hit count)."""
    body = _tcmsg(TCM_IFINDEX_MAGIC_BLOCK, handle, block, _info(prio, ETH_P_ALL))
    msg = bytearray(_msg(RTM_GETTFILTER, NLM_F_REQUEST, body + _attr(TCA_KIND, b"matchall\0")))
    struct.pack_into("=I", msg, 8, seq)
    return bytes(msg)


def parse_matchall_hits(reply: bytes) -> int | None:
    """The ``TCA_MATCHALL_PCNT`` hit count in a RTM_NEWTFILTER reply, or None."""
    off = 0
    while off + 16 <= len(reply):
        length, kind, _flags, _seq, _pid = _NLHDR.unpack_from(reply, off)
        if length < 16:
            return None
        if kind == RTM_NEWTFILTER:
            top = _attrs(reply, off + 16 + _TCMSG.size, off + length)
            opts = top.get(TCA_OPTIONS)
            if opts is not None:
                pcnt = _attrs(opts, 0, len(opts)).get(TCA_MATCHALL_PCNT)
                if pcnt is not None and len(pcnt) >= 8:
                    return int(struct.unpack_from("=Q", pcnt)[0])
            return None
        off += (length + 3) & ~3
    return None


def matchall_hits(block: int, prio: int, handle: int = 1) -> int | None:
    """Ask the kernel for the catch-all filter's hit count (None if absent or unreadable).

    A fresh short-lived socket in the calling thread's namespace (one request, ~0.1 ms):
    the backend's batching socket stays free of replies it did not ask for."""
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0) as sock:
        sock.settimeout(2.0)
        sock.bind((0, 0))
        sock.send(matchall_get(block, prio, handle))
        try:
            reply = sock.recv(65536)
        except OSError:
            return None
    if len(reply) >= 20 and _NLHDR.unpack_from(reply)[1] == NLMSG_ERROR:
        return None
    return parse_matchall_hits(reply)


__all__ = [
    "clsact_add",
    "flower_add",
    "flower_del",
    "link_add_external",
    "link_del",
    "link_set",
    "matchall_drop_add",
    "matchall_get",
    "matchall_hits",
    "parse_matchall_hits",
]
