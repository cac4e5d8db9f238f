"""The kernel backend's tc BPF fast path (``fastpath = "auto"``, guarded, is the default since
2026-12-07; docs/dataplane.md, docs/performance.md).

Two direct-action classifiers on the ``clsact`` ingress of the interfaces where traffic for
away mobile nodes arrives (``interfaces``), assembled in :mod:`mobileip.dataplane.bpf_asm`:

* **reverse** (tc prio :data:`PRIO_REVERSE`): IP-in-IP, or GRE without flags carrying IPv4,
  addressed to the tunnel source (the Home Agent's address): (inner source, outer source) is
  looked up in the ``allowed`` hash map. A hit is counted in its value; the program then
  forwards the inner packet itself: a FIB lookup for its destination (``bpf_fib_lookup``, a
  forwarding lookup from the receiving interface, policy rules honoured, its length checked
  against the route's MTU), on success the packet decapsulated in place (``bpf_skb_adjust_room``
  by minus the outer header), the inner TTL decremented, the FIB's MACs written and
  ``bpf_redirect``, and the answer cached in the ``routes`` LRU hash map (inner destination and
  TOS -> the ``generation`` read before the lookup, egress ifindex, the largest inner packet the
  FIB passed under that generation, both MACs); a later packet to that destination whose entry
  carries the current generation (a direct load of the one-entry ``generation`` array) and which
  is no bigger is forwarded from the entry, no FIB lookup. Userspace writes a new generation on
  every event its netlink monitor reads (any route, ours included, neighbour, address, link,
  rule or forwarding switch), at every flush that changes the homes map, and 0 (the cache off)
  while a policy rule selects by more than the destination (source, iif, fwmark, ...); otherwise
  (IP options, TTL expiring, a GSO packet, no route, a local, broadcast or lightweight-tunnel
  destination, no neighbour yet, too big) the tunnelled packet goes on unchanged to the kernel's
  tunnel path (``mip-ipip`` / ``mip-gre`` and their flower filters, as with the fast path off;
  handed over decapsulated, as until 2026-12-07, it looked received on the physical interface:
  ICMP redirects to the home address, strict ``rp_filter`` drops), which forwards or delivers
  it. A miss is dropped and counted (``drops``): the same rule as the kernel backend's flower
  filters (reverse tunnels only from a registered care-of address of the inner source). Anything
  else goes on to the next filter unchanged;
* **forward** (prio :data:`PRIO_FORWARD`): an IPv4 packet without options, for this host's
  MAC, TTL > 1, whose destination is in the ``homes`` hash map (home address -> outer header
  template of its exit, as the kernel route's: newest care-of address, minimal as IP-in-IP)
  goes by the **MAC path** if its care-of address has an entry in the ``nexthops`` map
  (:mod:`mobileip.dataplane.nexthops`: egress ifindex, route MTU, the next hop's and the
  interface's MACs, kept by userspace from the kernel's own route to the care-of address and
  its neighbour table, followed through netlink events) and the encapsulated packet fits its
  MTU: encapsulated as below with those MACs and ``bpf_redirect``, no lookup. Otherwise it
  is looked up in the FIB towards its care-of address (``bpf_fib_lookup``, a forwarding
  lookup from the receiving interface, honouring policy rules, the encapsulated length
  checked against the route's MTU). On success the outer header is pushed
  (``bpf_skb_adjust_room``, ``BPF_F_ADJ_ROOM_ENCAP_*``), the inner TTL decremented (checksum
  updated as ``ip_decrease_ttl``), the outer length, identification (the inner one's) and
  checksum filled in, the MACs of the FIB's answer written, and the packet sent with
  ``bpf_redirect``. Otherwise (no binding, no neighbour yet, too big, TTL expiring, options)
  it goes on to the stack unchanged: the kernel route does the rest.

What it skips, against the stack's path: the inner route lookup, ``ip_forward`` and the
netfilter FORWARD/POST_ROUTING hooks of both the inner and the outer packet, the tunnel
device's transmit (forward); the collect-metadata receive, the flower check, and for what the
reverse program forwards itself the inner packet's route lookup through the stack, reverse-path
filtering (``rp_filter``: the pairs map is the source check), ``ip_forward`` and every
netfilter hook (reverse; what it hands to the stack is routed as received on the physical
interface, where strict ``rp_filter`` drops it). An operator filtering forwarded packets with
netfilter must keep it off.

A next-hop entry is deleted as soon as an event about its neighbour, or any route, rule,
address or link event (our own routes' excepted) has been read (by the monitor socket's
reader on the event loop, and at every flush), then resolved again: a changed or deleted
neighbour means the FIB path (and the kernel) until then, never a blackhole; between the
kernel's change and that read (one event-loop turn) packets still carry the old MACs
(``mac_path=False``: FIB only).

Hot standby: the maps are filled on every member (batched, once per event-loop turn:
``BPF_MAP_UPDATE_BATCH`` / ``BPF_MAP_DELETE_BATCH``); the programs are attached at start on
every member and gated by a one-entry ``live`` array map read first (a direct load of its
value, no helper call): 0 on a standby, where both programs pass every packet on at once as if
detached; becoming active or standby is one map write (:meth:`BpfFastPath.set_live`; an
interface that appeared since start is attached then). The maps are pre-allocated for
``capacity`` homes, twice as many reverse-tunnel pairs, ``capacity`` next hops and
``capacity`` cached routes (464 bytes per home of capacity, 96 of them the next hops' and 96
the route cache's, the maps' ``memlock``): without
pre-allocation, batched updates inside User-Mode Linux failed with ENOMEM (presumably the BPF
memory allocator's per-CPU caches, refilled asynchronously).
Beyond ``capacity`` a home is refused by the map (counted in ``errors``) and takes the
kernel's path.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
import struct
from collections import Counter
from collections.abc import Iterable
from ipaddress import IPv4Address

from mobileip.dataplane import bpf_asm as ba
from mobileip.dataplane import nexthops as nh
from mobileip.dataplane.bpf_asm import FP, Asm
from mobileip.net import rtnl as nl

PRIO_REVERSE, PRIO_FORWARD = 0x4D0, 0x4D1
HOP_TURN = 256  # care-of addresses looked up per event-loop turn (the MAC path's next hops)
ETH, IP, GRE = 14, 20, 4
ETH_P_ALL = 0x0003
# homes map value: the outer header template (IPv4, then GRE's 4 bytes or zeros; length,
# identification and checksum 0), its partial checksum (the sum of its 16-bit words as a
# little-endian load reads them), the header's length (20 / 24), bpf_skb_adjust_room's flags
VALUE = struct.Struct("<24sIII")
GRE_PLAIN_IPV4 = 0x00080000  # flags 0, version 0, protocol 0x0800, as a little-endian load
FIB = 64  # struct bpf_fib_lookup, at fp-64
F_FAMILY, F_TOT_LEN, F_IFINDEX, F_TOS, F_SRC, F_DST, F_SMAC, F_DMAC = 0, 6, 8, 12, 16, 32, 52, 58


def home_value(source: IPv4Address, coa: IPv4Address, gre: bool, ttl: int) -> bytes:
    """The ``homes`` map value of a home tunnelled to ``coa``."""
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 0, 0, 0, ttl, 47 if gre else 4, 0,
                     source.packed, coa.packed)  # fmt: skip
    extra = struct.pack("!HH", 0, 0x0800) if gre else bytes(4)
    flags = ba.ADJ_ENCAP_L3_IPV4 | (ba.ADJ_ENCAP_L4_GRE if gre else 0)
    return VALUE.pack(ip + extra, sum(struct.unpack("<10H", ip)), IP + (GRE if gre else 0), flags)


def _ipv4_prologue(a: Asm) -> None:
    """r6 = skb; r2, r3 = data, data_end (at least Ethernet + IPv4 in it); an IPv4 packet
    without options for this host, else ``pass``."""
    a.mov(6, 1)
    a.ldx(4, 4, 6, ba.SKB_PKT_TYPE)
    a.jmp(4, "!=", "pass", imm=0)  # PACKET_HOST
    a.ldx(4, 2, 6, ba.SKB_DATA)
    a.ldx(4, 3, 6, ba.SKB_DATA_END)
    a.mov(4, 2)
    a.alu(4, "+", imm=ETH + IP)
    a.jmp(4, ">", "pass", src=3)
    a.ldx(2, 4, 2, 12)
    a.jmp(4, "!=", "pass", imm=0x0008)  # ETH_P_IP, as a little-endian load reads it
    a.ldx(1, 4, 2, ETH)
    a.jmp(4, "!=", "pass", imm=0x45)


def _inner_ttl_decrement(a: Asm) -> None:
    """r8: the inner header. TTL - 1, checksum + 0x0100 with end-around carry (RFC 1141)."""
    a.ldx(1, 1, 8, 8)
    a.alu(1, "-", imm=1)
    a.stx(1, 8, 8, 1)
    a.ldx(1, 1, 8, 10)
    a.alu(1, "<<", imm=8)
    a.ldx(1, 4, 8, 11)
    a.alu(1, "|", 4)
    a.alu(1, "+", imm=0x100)
    a.mov(4, 1)
    a.alu(4, ">>", imm=16)
    a.alu(1, "&", imm=0xFFFF)
    a.alu(1, "+", 4)
    a.stx(1, 8, 11, 1)
    a.alu(1, ">>", imm=8)
    a.stx(1, 8, 10, 1)


def _outer_length_and_checksum(a: Asm) -> None:
    """r2: the packet's data, r6: skb, r7: the homes map value (its partial checksum at 24),
    r8: the inner header. The outer total length, identification (the inner one's) and
    checksum."""
    a.ldx(4, 4, 6, ba.SKB_LEN)
    a.alu(4, "-", imm=ETH)
    a.be16(4)
    a.stx(2, 2, ETH + 2, 4)
    a.ldx(2, 1, 8, 4)
    a.stx(2, 2, ETH + 4, 1)
    a.ldx(4, 5, 7, 24)
    a.alu(5, "+", 4)
    a.alu(5, "+", 1)
    for _ in range(2):
        a.mov(1, 5)
        a.alu(1, ">>", imm=16)
        a.alu(5, "&", imm=0xFFFF)
        a.alu(5, "+", 1)
    a.alu(5, "^", imm=0xFFFF)
    a.stx(2, 2, ETH + 10, 5)


def _gate(a: Asm, live_fd: int) -> None:
    """``pass`` unless the one-entry ``live`` array map holds non-zero (a direct load of its
    value: no helper call). ``live_fd`` < 0: no gate."""
    if live_fd >= 0:
        a.ld_map_value(0, live_fd)
        a.ldx(4, 0, 0, 0)
        a.jmp(0, "==", "pass", imm=0)


def _fib_request(a: Asm) -> None:
    """struct bpf_fib_lookup at fp-64 zeroed, its family AF_INET (the caller fills the rest
    that it decides, then :func:`_fib_lookup`)."""
    for off in range(0, FIB, 8):
        a.st(8, FP, off - FIB, 0)
    a.st(1, FP, F_FAMILY - FIB, socket.AF_INET)


def _fib_lookup(a: Asm, header: int, fail: str) -> None:
    """r6: skb. A forwarding lookup as if the packet came in here (the receiving interface:
    policy rules see it) from the source to the destination of the IPv4 header at register
    ``header``; to ``fail`` unless BPF_FIB_LKUP_RET_SUCCESS (no route, a local or broadcast
    destination, no neighbour yet, too big, ...)."""
    a.ldx(4, 4, 6, ba.SKB_IFINDEX)
    a.stx(4, FP, F_IFINDEX - FIB, 4)
    a.ldx(4, 4, header, 12)
    a.stx(4, FP, F_SRC - FIB, 4)
    a.ldx(4, 4, header, 16)
    a.stx(4, FP, F_DST - FIB, 4)
    a.mov(1, 6)
    a.mov(2, FP)
    a.alu(2, "+", imm=-FIB)
    a.mov(3, imm=FIB)
    a.mov(4, imm=0)
    a.call(ba.F_FIB_LOOKUP)
    a.jmp(0, "!=", fail, imm=ba.FIB_SUCCESS)


# (size, offset from the base register, offset in the frame) of the destination and source
# MACs, in the sizes the alignment of both sides allows: the FIB's answer (fp-relative:
# destination at fp-6, source at fp-12), a next hop (nexthops.VALUE: destination at 8, source
# at 14), a cached route (ROUTE: destination at 12, source at 18)
FIB_MACS = (
    (2, F_DMAC - FIB, 0),
    (4, F_DMAC - FIB + 2, 2),
    (4, F_SMAC - FIB, 6),
    (2, F_SMAC - FIB + 4, 10),
)
# A next hop's and a cached route's MACs sit at a 4-byte aligned offset in the map value and go
# to the frame's offset 0, which the verifier counts as 2 (mod 4: NET_IP_ALIGN); no 4-byte
# access is aligned on both sides, so 2-byte ones: a kernel without efficient unaligned access
# (strict alignment: Debian's UML 6.1, some arm and mips) refuses a misaligned one.
NEXTHOP_MACS = tuple((2, 8 + i, i) for i in range(0, 12, 2))
ROUTE_MACS = tuple((2, 12 + i, i) for i in range(0, 12, 2))


def _macs_and_redirect(
    a: Asm, frame: int, base: int, macs: tuple[tuple[int, int, int], ...], ifindex: int
) -> None:
    """The Ethernet header at register ``frame`` given the MACs at register ``base`` (``macs``:
    see :data:`FIB_MACS`), then ``bpf_redirect`` to the ifindex at ``base`` + ``ifindex``: the
    program exits with the helper's answer."""
    for size, src, dst in macs:
        a.ldx(size, 4, base, src)
        a.stx(size, frame, dst, 4)
    a.ldx(4, 1, base, ifindex)
    a.mov(2, imm=0)
    a.call(ba.F_REDIRECT)
    a.exit()


def forward_program(homes_fd: int, nexthops_fd: int = -1, live_fd: int = -1) -> bytes:
    """``nexthops_fd`` (>= 0): the MAC path first (module docstring), the FIB lookup where
    the care-of address has no next-hop entry or the packet is too big for it; ``live_fd``
    (>= 0): gated by the ``live`` map."""
    a = Asm()
    _gate(a, live_fd)
    _ipv4_prologue(a)
    a.ldx(1, 4, 2, ETH + 8)
    a.jmp(4, "<=", "pass", imm=1)  # TTL expiring: the stack sends the ICMP error
    a.ldx(4, 4, 2, ETH + 16)
    a.stx(4, FP, -4, 4)
    a.ld_map(1, homes_fd)
    a.mov(2, FP)
    a.alu(2, "+", imm=-4)
    a.call(ba.F_MAP_LOOKUP)
    a.jmp(0, "==", "pass", imm=0)
    a.mov(7, 0)
    if nexthops_fd >= 0:
        # r9: the care-of address's next hop (nexthops.VALUE), or 0 on the FIB path
        a.ld_map(1, nexthops_fd)
        a.mov(2, 7)
        a.alu(2, "+", imm=16)  # the template's destination: the care-of address
        a.call(ba.F_MAP_LOOKUP)
        a.jmp(0, "==", "fib", imm=0)
        a.mov(9, 0)
        a.ldx(4, 4, 6, ba.SKB_LEN)
        a.alu(4, "-", imm=ETH)
        a.ldx(4, 5, 7, 28)
        a.alu(4, "+", 5)
        a.ldx(4, 5, 9, 4)
        a.jmp(4, ">", "fib", src=5)  # too big for the route: the FIB path (and the stack)
        a.goto("encap")
        a.label("fib")
        a.mov(9, imm=0)
    # the FIB towards the care-of address, from the template's outer header (r7); no
    # success (no route, no neighbour yet, too big): the stack
    _fib_request(a)
    a.ldx(4, 4, 6, ba.SKB_LEN)
    a.alu(4, "-", imm=ETH)
    a.ldx(4, 5, 7, 28)
    a.alu(4, "+", 5)
    a.stx(2, FP, F_TOT_LEN - FIB, 4)  # the encapsulated length: checked against the MTU
    _fib_lookup(a, 7, "pass")
    if nexthops_fd >= 0:
        a.label("encap")
    a.mov(1, 6)
    a.ldx(4, 2, 7, 28)
    a.mov(3, imm=ba.ADJ_ROOM_MAC)
    a.ldx(4, 4, 7, 32)
    a.call(ba.F_ADJUST_ROOM)
    a.jmp(0, "!=", "pass", imm=0)
    a.ldx(4, 2, 6, ba.SKB_DATA)
    a.ldx(4, 3, 6, ba.SKB_DATA_END)
    a.ldx(4, 4, 7, 28)
    a.jmp(4, "==", "gre", imm=IP + GRE)
    for hdr, label in ((IP, "ipip"), (IP + GRE, "gre")):
        if label == "gre":
            a.label("gre")
        a.mov(4, 2)
        a.alu(4, "+", imm=ETH + hdr + IP)
        a.jmp(4, ">", "drop", src=3)
        for off in range(0, hdr, 4):
            a.ldx(4, 5, 7, off)
            a.stx(4, 2, ETH + off, 5)
        a.mov(8, 2)
        a.alu(8, "+", imm=ETH + hdr)
        if label == "ipip":
            a.goto("inner")
    a.label("inner")
    _inner_ttl_decrement(a)
    _outer_length_and_checksum(a)
    if nexthops_fd >= 0:
        a.jmp(9, "==", "fib_macs", imm=0)
        _macs_and_redirect(a, 2, 9, NEXTHOP_MACS, 0)  # the next hop's MACs and egress
        a.label("fib_macs")
    _macs_and_redirect(a, 2, FP, FIB_MACS, F_IFINDEX - FIB)
    a.label("pass")
    a.ret(ba.TC_ACT_UNSPEC)
    a.label("drop")
    a.ret(ba.TC_ACT_SHOT)
    return a.code()


def _reverse_decapsulate(a: Asm, allowed_fd: int, source: IPv4Address, now: bool = True) -> None:
    """After :func:`_ipv4_prologue`: IP-in-IP or plain GRE to ``source`` whose (inner source,
    outer source) is in ``allowed`` counted there and decapsulated in place (``drop`` if that
    fails); not such a packet: ``pass``; not allowed: ``refuse``. Not ``now``: left
    encapsulated for :func:`_forward_inner` to decapsulate once it knows it forwards the
    packet itself (:func:`_decapsulate`): r7 the packet's data, r8 the inner header (at least
    its 20 bytes in the packet, else ``stack``: unchanged, the kernel's tunnel path)."""
    a.ldx(4, 4, 2, ETH + 16)
    a.jmp(4, "!=", "pass", imm=ba.raw32(str(source)), w32=True)
    a.ldx(4, 4, 2, ETH + 12)
    a.stx(4, FP, -4, 4)  # key: inner source, outer source
    a.ldx(1, 4, 2, ETH + 9)
    a.mov(9, imm=-IP)
    a.jmp(4, "==", "gre", imm=47)
    a.jmp(4, "!=", "pass", imm=4)
    a.mov(4, 2)
    a.alu(4, "+", imm=ETH + IP + IP)
    a.jmp(4, ">", "pass", src=3)
    a.ldx(4, 4, 2, ETH + IP + 12)
    a.goto("key")
    a.label("gre")
    a.mov(4, 2)
    a.alu(4, "+", imm=ETH + IP + GRE + IP)
    a.jmp(4, ">", "pass", src=3)
    a.ldx(4, 4, 2, ETH + IP)
    a.jmp(4, "!=", "pass", imm=GRE_PLAIN_IPV4)  # keys, checksums, sequence numbers: the stack
    a.ldx(4, 4, 2, ETH + IP + GRE + 12)
    a.mov(9, imm=-(IP + GRE))
    a.label("key")
    a.stx(4, FP, -8, 4)
    a.ld_map(1, allowed_fd)
    a.mov(2, FP)
    a.alu(2, "+", imm=-8)
    a.call(ba.F_MAP_LOOKUP)
    a.jmp(0, "==", "refuse", imm=0)
    a.mov(1, imm=1)
    a.xadd64(0, 0, 1)
    if not now:
        a.stx(8, FP, D_OFF, 9)  # the adjustment (minus the outer headers) for _decapsulate
        a.ldx(4, 7, 6, ba.SKB_DATA)
        a.ldx(4, 3, 6, ba.SKB_DATA_END)
        a.mov(4, imm=0)
        a.alu(4, "-", 9)
        a.mov(8, 7)
        a.alu(8, "+", imm=ETH)
        a.alu(8, "+", 4)
        a.mov(4, 8)
        a.alu(4, "+", imm=IP)
        a.jmp(4, ">", "stack", src=3)
        return
    a.mov(1, 6)
    a.mov(2, 9)
    a.mov(3, imm=ba.ADJ_ROOM_MAC)
    a.mov(4, imm=0)
    a.call(ba.F_ADJUST_ROOM)
    a.jmp(0, "!=", "drop", imm=0)


def _decapsulate(a: Asm) -> None:
    """The outer headers :func:`_reverse_decapsulate` (not ``now``) measured, removed (``drop``
    if that fails: it did not when the packet was checked); r7, r8 the packet's data and its
    (now first) IP header again."""
    a.mov(1, 6)
    a.ldx(8, 2, FP, D_OFF)
    a.mov(3, imm=ba.ADJ_ROOM_MAC)
    a.mov(4, imm=0)
    a.call(ba.F_ADJUST_ROOM)
    a.jmp(0, "!=", "drop", imm=0)
    a.ldx(4, 7, 6, ba.SKB_DATA)
    a.ldx(4, 3, 6, ba.SKB_DATA_END)
    a.mov(8, 7)
    a.alu(8, "+", imm=ETH)
    a.mov(4, 8)
    a.alu(4, "+", imm=IP)
    a.jmp(4, ">", "drop", src=3)


def _count_refused(a: Asm, drops_fd: int) -> None:
    """``refuse``: counted in ``drops`` (index 0); ``drop``: ``TC_ACT_SHOT``."""
    a.label("refuse")
    a.st(4, FP, -12, 0)
    a.ld_map(1, drops_fd)
    a.mov(2, FP)
    a.alu(2, "+", imm=-12)
    a.call(ba.F_MAP_LOOKUP)
    a.jmp(0, "==", "drop", imm=0)
    a.mov(1, imm=1)
    a.xadd64(0, 0, 1)
    a.label("drop")
    a.ret(ba.TC_ACT_SHOT)


# the routes map (the reverse program's cache of its FIB answers): key the inner destination
# and TOS (ROUTE_KEY); value the generation it was written under, egress ifindex, the largest
# inner packet the FIB passed for it under that generation (host order), destination MAC,
# source MAC
ROUTE = struct.Struct("<III6s6s")
ROUTE_KEY = struct.Struct("<4sI")
R_KEY, R_VALUE = -72, -96  # on the stack, below struct bpf_fib_lookup
D_OFF = -104  # on the stack: bpf_skb_adjust_room's length difference (_decapsulate)


def _forward_inner(
    a: Asm, routes_fd: int = -1, generation_fd: int = -1, decap: bool = False
) -> None:
    """After :func:`_reverse_decapsulate`: the inner packet forwarded here, as the stack would
    (a FIB lookup from the receiving interface, the inner TTL decremented, the FIB's MACs,
    ``bpf_redirect``); ``stack`` (``TC_ACT_OK``: the stack forwards it, as before) for IP
    options, TTL expiring, a GSO packet, or no success from the FIB (no route, a local or
    broadcast destination, no neighbour, too big, a lightweight-tunnel route, forwarding
    off). ``decap``: the packet still encapsulated (r7, r8 set by :func:`_reverse_decapsulate`
    with ``now`` false), decapsulated only once it is forwarded here, so ``stack`` hands the
    tunnelled packet unchanged to the kernel's own tunnel path (received on ``mip-ipip`` /
    ``mip-gre``, as with ``fastpath = "off"``: never as if the inner packet had come in on
    the physical interface, where the stack would answer it with ICMP redirects).
    ``routes_fd`` and ``generation_fd`` (>= 0): the FIB's answer cached per inner
    destination in ``routes`` (:data:`ROUTE`), stamped with the ``generation`` read before the
    lookup; an entry of the current generation that the packet fits is used without a lookup
    (module docstring)."""
    cache = routes_fd >= 0 and generation_fd >= 0
    if not decap:
        a.ldx(4, 2, 6, ba.SKB_DATA)
        a.ldx(4, 3, 6, ba.SKB_DATA_END)
        a.mov(7, 2)
        a.mov(8, 2)
        a.alu(8, "+", imm=ETH)
        a.mov(4, 8)
        a.alu(4, "+", imm=IP)
        a.jmp(4, ">", "stack", src=3)
    a.ldx(1, 4, 8, 0)
    a.jmp(4, "!=", "stack", imm=0x45)  # options: the stack
    a.ldx(1, 4, 8, 8)
    a.jmp(4, "<=", "stack", imm=1)  # TTL expiring: the stack sends the ICMP error
    a.ldx(4, 4, 6, ba.SKB_GSO_SIZE)
    a.jmp(4, "!=", "stack", imm=0)  # GRO'd: its segmentation state is the outer packet's
    if cache:
        # r9: the generation, read before anything is looked up (a direct load, no call)
        a.ld_map_value(0, generation_fd)
        a.ldx(4, 9, 0, 0)
        a.jmp(9, "==", "miss", imm=0)  # 0: the cache off (rules that look at more)
        a.ldx(4, 4, 8, 16)
        a.stx(4, FP, R_KEY, 4)  # key: the inner destination and TOS
        a.ldx(1, 4, 8, 1)
        a.stx(4, FP, R_KEY + 4, 4)
        a.ld_map(1, routes_fd)
        a.mov(2, FP)
        a.alu(2, "+", imm=R_KEY)
        a.call(ba.F_MAP_LOOKUP)
        a.jmp(0, "==", "miss", imm=0)
        a.ldx(4, 4, 0, 0)
        a.jmp(4, "!=", "miss", src=9)  # written under another generation: stale
        a.ldx(2, 4, 8, 2)
        a.be16(4)
        a.ldx(4, 5, 0, 8)
        a.jmp(4, ">", "miss", src=5)  # bigger than any the FIB passed: the FIB decides
        a.mov(9, 0)
        if decap:
            _decapsulate(a)
        _inner_ttl_decrement(a)
        _macs_and_redirect(a, 7, 9, ROUTE_MACS, 4)
        a.label("miss")
    _fib_request(a)
    a.ldx(1, 4, 8, 1)
    a.stx(1, FP, F_TOS - FIB, 4)
    a.ldx(2, 4, 8, 2)
    a.be16(4)
    a.stx(2, FP, F_TOT_LEN - FIB, 4)  # checked against the route's MTU
    _fib_lookup(a, 8, "stack")
    if cache:
        # the answer cached under the generation read before the lookup (the stack is
        # strictly aligned: the MACs copied in halves)
        a.jmp(9, "==", "forward", imm=0)
        a.stx(4, FP, R_VALUE, 9)
        a.ldx(4, 4, FP, F_IFINDEX - FIB)
        a.stx(4, FP, R_VALUE + 4, 4)
        a.ldx(2, 4, 8, 2)
        a.be16(4)
        a.stx(4, FP, R_VALUE + 8, 4)
        for off in range(0, 12, 2):
            src = (F_DMAC if off < 6 else F_SMAC - 6) + off - FIB
            a.ldx(2, 4, FP, src)
            a.stx(2, FP, R_VALUE + 12 + off, 4)
        a.ld_map(1, routes_fd)
        a.mov(2, FP)
        a.alu(2, "+", imm=R_KEY)
        a.mov(3, FP)
        a.alu(3, "+", imm=R_VALUE)
        a.mov(4, imm=0)  # BPF_ANY
        a.call(ba.F_MAP_UPDATE)  # a failure (none expected: LRU) leaves the FIB path
        a.label("forward")
    if decap:
        _decapsulate(a)
    _inner_ttl_decrement(a)
    _macs_and_redirect(a, 7, FP, FIB_MACS, F_IFINDEX - FIB)


def reverse_program(
    allowed_fd: int,
    drops_fd: int,
    source: IPv4Address,
    live_fd: int = -1,
    redirect: bool = True,
    routes_fd: int = -1,
    generation_fd: int = -1,
) -> bytes:
    """``redirect``: the inner packet forwarded by the program where it can
    (:func:`_forward_inner`, with the ``routes`` cache where ``routes_fd`` and
    ``generation_fd`` are given), else the tunnelled packet handed unchanged to the kernel's
    tunnel path (since 2026-12-07); not ``redirect``: every accepted packet decapsulated and
    handed to the stack (as before 2026-12-07 04:00; the perf scripts' baseline)."""
    a = Asm()
    _gate(a, live_fd)
    _ipv4_prologue(a)
    _reverse_decapsulate(a, allowed_fd, source, now=not redirect)
    if redirect:
        _forward_inner(a, routes_fd, generation_fd, decap=True)
    a.label("stack")
    a.ret(ba.TC_ACT_OK)
    a.label("pass")
    a.ret(ba.TC_ACT_UNSPEC)
    _count_refused(a, drops_fd)
    return a.code()


class BpfFastPath:
    """The maps, the two programs and their attachment (module docstring). Raises OSError
    where the kernel refuses (no BPF, no cls_bpf, a verifier rejection)."""

    def __init__(
        self,
        source: IPv4Address,
        interfaces: Iterable[str],
        ttl: int = 64,
        capacity: int = 1 << 17,
        batch: int = 10_000,
        mac_path: bool = True,
        route_cache: bool = True,
    ) -> None:
        self.source = source
        self.mac_path = mac_path
        self.route_cache = route_cache
        self.interfaces = tuple(interfaces)
        self.ttl = ttl
        self.capacity = capacity
        self.batch = batch
        self.homes_fd = self.allowed_fd = self.drops_fd = self.nexthops_fd = self.live_fd = -1
        self.routes_fd = self.generation_fd = -1  # the reverse program's route cache
        self.generation = 0  # as written (0: the cache off)
        self.monitor_events = 0  # the monitor's events when the generation was last written
        self.progs: dict[int, int] = {}  # tc prio -> program fd
        self.live = False
        self.created_clsact: set[str] = set()
        self.attached: dict[str, int] = {}  # interface -> the ifindex our filters are on
        # what the maps hold (after a flush) and what is staged for the next flush
        self.values: dict[int, bytes] = {}
        # each home's care-of addresses allowed to reverse-tunnel (a tuple: 48 bytes for one,
        # where a frozenset is 216, i.e. 17 MB at 100,000 homes)
        self.pairs: dict[int, tuple[int, ...]] = {}
        self.staged_homes: dict[int, bytes | None] = {}
        self.staged_pairs: dict[int, frozenset[int]] = {}
        self._flush_loop: asyncio.AbstractEventLoop | None = None  # where a flush is scheduled
        self.flushes = 0
        self.errors = 0  # map batches the kernel refused (the last one's error: last_error)
        self.last_error = ""
        # the MAC path: homes per care-of address, the next-hop entries written (care-of
        # address -> nexthops.VALUE) and each care-of address's route (None: none usable)
        self.coa_homes: Counter[int] = Counter()
        self.hops: dict[int, bytes] = {}
        self.hop_routes: dict[int, nh.Route | None] = {}
        # care-of addresses whose use may have begun or ended since the last refresh, those
        # in use awaiting their route lookup, and the care-of addresses behind each neighbour
        self._coas_changed: set[int] = set()
        self.hop_pending: set[int] = set()
        self._behind: dict[nh.Key, set[int]] = {}
        self._resolving: asyncio.Handle | None = None  # the next turn's lookups, scheduled
        self._resolving_loop: asyncio.AbstractEventLoop | None = None  # on this loop
        self.monitor: nh.Monitor | None = None
        self._reader_loop: asyncio.AbstractEventLoop | None = None
        self.hop_refreshes = 0
        self.hop_lookups = 0  # care-of addresses looked up
        self.hop_full = 0  # every care-of address looked up again (an event, or events lost)
        self.hop_again = 0  # care-of addresses looked up again for a route or link event
        self.rules_ok = False  # every IPv4 rule selects by the destination only
        self.generation_bumps = 0

    def start(self) -> None:
        try:
            self.homes_fd = ba.map_create(ba.MAP_HASH, 4, VALUE.size, self.capacity)
            self.allowed_fd = ba.map_create(ba.MAP_HASH, 8, 8, 2 * self.capacity)
            self.drops_fd = ba.map_create(ba.MAP_ARRAY, 4, 8, 1)
            self.live_fd = ba.map_create(ba.MAP_ARRAY, 4, 4, 1)  # 0: standby, the programs pass
            if self.mac_path or self.route_cache:
                self.monitor = nh.Monitor()  # before any resolution: no change missed
            if self.mac_path:
                self.nexthops_fd = ba.map_create(ba.MAP_HASH, 4, nh.VALUE.size, self.capacity)
            if self.route_cache:
                self.routes_fd = ba.map_create(
                    ba.MAP_LRU_HASH, ROUTE_KEY.size, ROUTE.size, self.capacity
                )
                self.generation_fd = ba.map_create(ba.MAP_ARRAY, 4, 4, 1)
                self._next_generation()
            self.progs[PRIO_REVERSE] = ba.prog_load(
                reverse_program(
                    self.allowed_fd,
                    self.drops_fd,
                    self.source,
                    self.live_fd,
                    routes_fd=self.routes_fd,
                    generation_fd=self.generation_fd,
                ),
                "mip_reverse",
            )
            self.progs[PRIO_FORWARD] = ba.prog_load(
                forward_program(self.homes_fd, self.nexthops_fd, self.live_fd), "mip_forward"
            )
            self._detach(self._indexes(), created=set())
            self._attach()  # gated off (live 0) until set_live(True)
        except OSError:
            self.stop()
            raise

    def _indexes(self) -> dict[str, int]:
        indexes = {}
        for dev in self.interfaces:
            try:
                indexes[dev] = socket.if_nametoindex(dev)
            except OSError:
                continue  # gone: nothing to attach to, or detached with it
        return indexes

    def _detach(self, indexes: dict[str, int], created: set[str]) -> None:
        """Our filters off ``indexes`` (the whole ``clsact`` where we ``created`` it). At start:
        what a predecessor killed while live left attached (the kernel keeps a filter's program
        and maps after the process dies): a restarted standby would go on forwarding and
        decapsulating with that process's last bindings."""
        with nl.RtnlSocket() as sock:
            for dev, index in indexes.items():
                if dev in created:
                    sock.apply([clsact_del(index)])
                else:
                    sock.apply(
                        [bpf_filter_del(index, prio) for prio in (PRIO_REVERSE, PRIO_FORWARD)]
                    )

    def stop(self) -> None:
        self.set_live(False)
        self._detach({d: i for d, i in self._indexes().items() if d in self.attached},
                     self.created_clsact)  # fmt: skip
        self.attached.clear()
        self.created_clsact.clear()
        fds = (*self.progs.values(), self.homes_fd, self.allowed_fd, self.drops_fd,
               self.nexthops_fd, self.live_fd, self.routes_fd, self.generation_fd)  # fmt: skip
        for fd in fds:
            ba.close(fd)
        self.progs.clear()
        self.homes_fd = self.allowed_fd = self.drops_fd = self.nexthops_fd = self.live_fd = -1
        self.routes_fd = self.generation_fd = -1
        self.generation = 0
        if self.monitor is not None:
            if self._reader_loop is not None and not self._reader_loop.is_closed():
                with contextlib.suppress(RuntimeError):
                    self._reader_loop.remove_reader(self.monitor.fileno())
            self.monitor.close()
            self.monitor = None
        self._reader_loop = None
        if self._resolving is not None:
            self._resolving.cancel()
            self._resolving = None
        self.coa_homes.clear()
        self.hops.clear()
        self.hop_routes.clear()
        self._coas_changed.clear()
        self.hop_pending.clear()
        self._behind.clear()
        self.values.clear()
        self.pairs.clear()
        self.staged_homes.clear()
        self.staged_pairs.clear()

    # --- attachment (at start, on every member) and the live gate (the active) -------------

    def _attach(self) -> None:
        """Our filters on every configured interface that lacks them (``clsact`` ingress,
        created if absent; what another user attached stays): those present at start, and
        later (at :meth:`set_live`) those created or re-created since. Raises OSError if the
        kernel refuses."""
        indexes = {d: i for d, i in self._indexes().items() if self.attached.get(d) != i}
        if not indexes:
            return
        with nl.RtnlSocket() as sock:
            for dev, index in indexes.items():
                failures = sock.apply([clsact_add(index)], ignore_benign=False)
                if failures and failures[0].errno != errno.EEXIST:
                    raise OSError(failures[0].errno, f"clsact on {dev}: {failures[0]}")
                if not failures:
                    self.created_clsact.add(dev)
                adds = [bpf_filter(index, prio, fd) for prio, fd in self.progs.items()]
                failures = sock.apply(adds, ignore_benign=False)
                if failures:
                    raise OSError(failures[0].errno, f"bpf on {dev}: {failures[0]}")
                self.attached[dev] = index

    def set_live(self, live: bool) -> None:
        """The programs' gate: one write to the ``live`` map (live: after attaching to an
        interface that appeared since). Off, the programs pass every packet on at once, as
        if detached. Raises OSError if the kernel refuses."""
        if live == self.live or self.live_fd < 0:
            return
        if live:
            self._attach()
        ba.update(self.live_fd, bytes(4), struct.pack("<I", 1 if live else 0))
        self.live = live
        if live and self.hop_pending:  # what a standby left pending: looked up from now on
            self._kick(soon=True)

    # --- the maps: staged per binding, written in batches ---------------------------------

    def stage(self, home: IPv4Address, exit_: tuple[IPv4Address, bool] | None,
              reverse: Iterable[IPv4Address]) -> None:  # fmt: skip
        """``home`` tunnelled to ``exit_`` (care-of address, GRE?) or not at all (None), with
        reverse tunnels accepted from ``reverse``; written at the next :meth:`flush`: the end
        of this event-loop turn, or at once without a running loop."""
        h = int(home)
        self.staged_homes[h] = (
            None if exit_ is None else home_value(self.source, exit_[0], exit_[1], self.ttl)
        )
        self.staged_pairs[h] = frozenset(int(c) for c in reverse)
        self._schedule()

    def unstage(self, home: IPv4Address) -> None:
        h = int(home)
        self.staged_homes[h] = None
        self.staged_pairs[h] = frozenset()
        self._schedule()

    def _schedule(self) -> None:
        pending = self._flush_loop
        if (pending is not None and pending.is_running()
                and (self.monitor is None or self._reader_loop is pending)):  # fmt: skip
            # a flush is due at that loop's next turn, events read there: nothing to do, and
            # no get_running_loop() (a getpid() system call each: per binding staged, 60 us
            # inside User-Mode Linux, where it made half of a 100,000-binding fill)
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a synchronous caller): written now, unbatched
            self.flush()
            return
        if self.monitor is not None and self._reader_loop is not loop:
            if self._reader_loop is not None and not self._reader_loop.is_closed():
                with contextlib.suppress(RuntimeError):
                    self._reader_loop.remove_reader(self.monitor.fileno())
            loop.add_reader(self.monitor.fileno(), self.refresh_hops)  # events read at once
            self._reader_loop = loop
        if self._flush_loop is loop:
            return  # already scheduled on this loop (one that closed first does not count)
        self._flush_loop = loop
        loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write what is staged: homes and pairs added or replaced, then removed, in batches of
        :attr:`batch`. A failed batch is counted (``errors``) and its entries forgotten as
        staged (the next change of those homes writes them again)."""
        self._flush_loop = None
        if self.homes_fd < 0:
            self.staged_homes.clear()
            self.staged_pairs.clear()
            return
        put: list[tuple[int, bytes]] = []
        gone: list[int] = []
        for h, value in self.staged_homes.items():
            if value is None:
                if h in self.values:
                    gone.append(h)
            elif self.values.get(h) != value:
                put.append((h, value))
        add: list[tuple[int, int]] = []
        drop: list[tuple[int, int]] = []
        for h, wanted in self.staged_pairs.items():
            had = frozenset(self.pairs.get(h, ()))
            add += [(h, c) for c in wanted - had]
            drop += [(h, c) for c in had - wanted]
        self.staged_homes.clear()
        staged_pairs, self.staged_pairs = self.staged_pairs, {}
        if put or gone:
            # a destination that became (or ceased to be) a home (no rule changed)
            self._next_generation(rules=False)
        n = self.batch
        for i in range(0, len(put), n):
            puts = put[i : i + n]
            done = self._write(self.homes_fd, [_key(h) for h, _ in puts], [v for _, v in puts])
            for h, value in puts[:done]:
                self._count_coa(self.values.get(h), -1)
                self._count_coa(value, 1)
                self.values[h] = value
        for i in range(0, len(gone), n):
            gones = gone[i : i + n]
            if self._delete(self.homes_fd, [_key(h) for h in gones]):
                for h in gones:
                    self._count_coa(self.values.pop(h, None), -1)
        failed: set[int] = set()
        for i in range(0, len(add), n):
            adds = add[i : i + n]
            keys = [_key(h) + _key(c) for h, c in adds]
            done = self._write(self.allowed_fd, keys, [bytes(8)] * len(adds))
            failed.update(h for h, _ in adds[done:])
        for i in range(0, len(drop), n):
            drops = drop[i : i + n]
            if not self._delete(self.allowed_fd, [_key(h) + _key(c) for h, c in drops]):
                failed.update(h for h, _ in drops)
        for h, wanted in staged_pairs.items():
            if h in failed:
                # unknown which of its pairs the map holds: remember all it may hold, so a later
                # change deletes them (deleting an absent pair is harmless)
                self.pairs[h] = tuple(frozenset(self.pairs.get(h, ())) | wanted)
                continue
            if wanted:
                self.pairs[h] = tuple(wanted)
            else:
                self.pairs.pop(h, None)
        self.refresh_hops()
        self.flushes += 1

    # --- the MAC path's next hops ------------------------------------------------------------

    def _count_coa(self, value: bytes | None, delta: int) -> None:
        if value is not None:
            coa = int.from_bytes(value[16:20], "big")
            count = self.coa_homes[coa] + delta
            if count > 0:
                self.coa_homes[coa] = count
            else:
                self.coa_homes.pop(coa, None)
            if count <= 0 or count == delta:  # its use ended, or began
                self._coas_changed.add(coa)

    def refresh_hops(self) -> None:
        """The next-hop entries brought in line with the care-of addresses in use and the
        kernel's events since the last refresh (dataplane/nexthops.py, :class:`nh.Changes`):
        a new care-of address means its route looked up; a route event, the routes of the
        care-of addresses inside its prefix; a link event, those routed through that link; a
        neighbour event, the entries behind that neighbour recomputed; an event of the tunnel
        source's address, a rule event or events lost, every care-of address's route. Every
        entry concerned is deleted before anything is read again, so a packet meanwhile takes
        the FIB path, never a stale MAC. The work is O(what changed) (a route or link event:
        one pass over the care-of addresses in use); the lookups themselves are made
        :data:`HOP_TURN` at a time, one batch per event-loop turn (all at once without a
        running loop). Any event read at all (our own routes' too): the route cache's
        generation bumped (:meth:`_next_generation`)."""
        if self.monitor is None:
            return
        changes = self.monitor.drain()
        everything = changes.everything or int(self.source) in changes.addresses
        if self.monitor.events != self.monitor_events:
            self._next_generation(rules=everything)
        if self.nexthops_fd < 0:
            return
        stale: set[int] = set()
        recompute: set[int] = set()
        again = set() if everything else changes.inside(self.coa_homes)
        if changes.links and not everything:
            again.update(c for c, r in self.hop_routes.items() if r and r[0] in changes.links)
        if everything or len(again) >= len(self.coa_homes) > 0:
            self.hop_full += 1
            stale.update(self.hops)
            self.hop_routes.clear()
            self._behind.clear()
            self.hop_pending = set(self.coa_homes)
            self._coas_changed.clear()
        else:
            self.hop_again += len(again)
            for c in again:
                self._forget(c)
                stale.add(c)
                self.hop_pending.add(c)
            for c in self._coas_changed:
                if c in self.coa_homes:
                    if c not in self.hop_routes:
                        self.hop_pending.add(c)
                    continue
                self.hop_pending.discard(c)
                self._forget(c)
                stale.add(c)
            self._coas_changed.clear()
            for key in changes.neighbours:
                recompute.update(self._behind.get(key, ()))
            recompute -= again
            stale |= recompute
        if not stale and not recompute and not self.hop_pending:
            return
        self.hop_refreshes += 1
        self._drop_hops(stale)
        if recompute:
            self._put_hops({c: r for c in recompute if (r := self.hop_routes.get(c))})
        self._kick()

    def _kick(self, soon: bool = False) -> None:
        """:meth:`_resolve` now (``soon``: at the loop's next turn), unless a turn of it is
        already scheduled on this loop (one chain of turns at a time, however often events
        arrive)."""
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if self._resolving is not None:
            if loop is not None and self._resolving_loop is loop:
                return
            self._resolving.cancel()
        if soon and loop is not None:
            self._resolving = loop.call_soon(self._resolve)
            self._resolving_loop = loop
            return
        self._resolve()

    def _forget(self, coa: int) -> None:
        route = self.hop_routes.pop(coa, None)
        if route is not None:
            behind = self._behind.get((route[0], route[1]))
            if behind is not None:
                behind.discard(coa)
                if not behind:
                    del self._behind[(route[0], route[1])]

    def _drop_hops(self, coas: Iterable[int]) -> None:
        stale = [c for c in coas if c in self.hops]
        if stale and self._delete(self.nexthops_fd, [_key(c) for c in stale]):
            for c in stale:
                del self.hops[c]

    def _put_hops(self, todo: dict[int, nh.Route]) -> None:
        try:
            put = [(c, v) for c, v in nh.values(todo).items() if v is not None]
        except OSError as exc:  # the entries stay absent: the FIB path
            self.errors += 1
            self.last_error = f"next hops: {exc}"
            return
        if put:
            done = self._write(self.nexthops_fd, [_key(c) for c, _ in put], [v for _, v in put])
            self.hops.update(put[:done])

    def _resolve(self) -> None:
        """The pending care-of addresses' routes looked up and their entries written:
        :data:`HOP_TURN` of them, the rest at the next event-loop turn (all of them without
        a running loop). Only while live: gated off (a standby, or the guard's gate closed)
        the programs read no entry, and a standby's lookups would mostly find no neighbour
        yet; they stay pending until :meth:`set_live` (a takeover's address event asks for
        every one again anyway)."""
        self._resolving = None
        if not self.hop_pending or self.nexthops_fd < 0 or not self.live:
            return
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is None or len(self.hop_pending) <= HOP_TURN:
            batch, self.hop_pending = self.hop_pending, set()
        else:
            batch = {self.hop_pending.pop() for _ in range(HOP_TURN)}
        try:
            found = nh.routes(batch, int(self.source))
        except OSError as exc:  # the entries stay absent (the FIB path); looked up at the
            self.errors += 1  # next refresh
            self.last_error = f"next hops: {exc}"
            self.hop_pending |= batch
            return
        self.hop_lookups += len(batch)
        todo: dict[int, nh.Route] = {}
        for c, route in found.items():
            self.hop_routes[c] = route
            if route is not None:
                self._behind.setdefault((route[0], route[1]), set()).add(c)
                todo[c] = route
        self._put_hops(todo)
        if self.hop_pending and loop is not None:
            self._resolving = loop.call_soon(self._resolve)
            self._resolving_loop = loop

    def _next_generation(self, rules: bool = True) -> None:
        """Every entry of the route cache made stale at once: a new generation written to the
        ``generation`` map, or 0 (the cache off) while a policy rule selects by more than the
        destination (``rules``: looked at again, as after a rule event)."""
        if self.generation_fd < 0 or self.monitor is None:
            return
        self.monitor_events = self.monitor.events
        if rules:
            try:
                self.rules_ok = nh.rules_by_destination()
            except OSError as exc:
                self.rules_ok = False
                self.errors += 1
                self.last_error = f"rules: {exc}"
        # never one used before (entries of it may be left), 0 excepted
        self.generation_bumps += 1
        generation = (self.generation_bumps - 1) % 0xFFFFFFFF + 1 if self.rules_ok else 0
        try:
            ba.update(self.generation_fd, bytes(4), struct.pack("<I", generation))
        except OSError as exc:  # (an array's one entry: not expected)
            self.errors += 1
            self.last_error = f"route cache generation: {exc}"
            return
        self.generation = generation

    def cached_route(self, dst: IPv4Address, tos: int = 0) -> tuple[int, int, str, str, int] | None:
        """The route cache's entry for ``dst`` (and ``tos``) as read back: (generation,
        ifindex, destination MAC, source MAC, largest inner packet passed), or None."""
        if self.routes_fd < 0:
            return None
        raw = ba.lookup(self.routes_fd, ROUTE_KEY.pack(dst.packed, tos), ROUTE.size)
        if raw is None:
            return None
        generation, index, fits, dmac, smac = ROUTE.unpack(raw)
        return int(generation), int(index), dmac.hex(":"), smac.hex(":"), int(fits)

    def next_hop(self, coa: IPv4Address) -> tuple[int, str, str] | None:
        """The nexthops map's entry for ``coa`` as read back: (ifindex, destination MAC,
        source MAC), or None."""
        if self.nexthops_fd < 0:
            return None
        raw = ba.lookup(self.nexthops_fd, coa.packed, nh.VALUE.size)
        if raw is None:
            return None
        index, _limit, dst, src, _ = nh.VALUE.unpack(raw)
        return int(index), dst.hex(":"), src.hex(":")

    def _write(self, fd: int, keys: list[bytes], values: list[bytes]) -> int:
        """Elements written (all, unless the kernel refused one: counted)."""
        done, err = ba.update_batch(fd, keys, values)
        if err:
            self.errors += 1
            self.last_error = f"map update: {os.strerror(err)} after {done} of {len(keys)}"
        return len(keys) if not err else done

    def _delete(self, fd: int, keys: list[bytes]) -> bool:
        err = ba.delete_batch(fd, keys)
        if err:
            self.errors += 1
            self.last_error = f"map delete: {os.strerror(err)}"
        return not err

    # --- counters --------------------------------------------------------------------------

    def drops(self) -> int:
        if self.drops_fd < 0:
            return 0
        raw = ba.lookup(self.drops_fd, bytes(4), 8)
        return int(struct.unpack("<Q", raw)[0]) if raw else 0

    def accepted(self, home: IPv4Address, coa: IPv4Address) -> int | None:
        """Reverse-tunnelled packets of (home, care-of address) accepted so far."""
        raw = ba.lookup(self.allowed_fd, home.packed + coa.packed, 8)
        return int(struct.unpack("<Q", raw)[0]) if raw else None

    def status(self) -> dict[str, object]:
        homes, pairs = self.installed()
        return {"live": self.live, "interfaces": list(self.interfaces), "homes": homes,
                "reverse_pairs": pairs, "capacity": self.capacity,
                "reverse_drops": self.drops(), "map_errors": self.errors,
                "mac_path": self.nexthops_fd >= 0, "next_hops": len(self.hops),
                "hop_refreshes": self.hop_refreshes, "hop_lookups": self.hop_lookups,
                "hop_full": self.hop_full, "hop_again": self.hop_again,
                "hop_pending": len(self.hop_pending),
                "monitor_lost": self.monitor.lost if self.monitor is not None else 0,
                "route_cache": self.routes_fd >= 0,
                "route_generation": self.generation}  # fmt: skip

    def installed(self) -> tuple[int, int]:
        """Homes and reverse-tunnel pairs in the maps (as written)."""
        return len(self.values), sum(len(p) for p in self.pairs.values())


# --- tc messages (rtnetlink) ----------------------------------------------------------------

RTM_NEWQDISC, RTM_DELQDISC, RTM_NEWTFILTER, RTM_DELTFILTER = 36, 37, 44, 45
NLM_F_REQUEST, NLM_F_REPLACE, NLM_F_EXCL, NLM_F_CREATE = 0x1, 0x100, 0x200, 0x400
TCA_KIND, TCA_OPTIONS = 1, 2
TCA_BPF_FD, TCA_BPF_NAME, TCA_BPF_FLAGS = 6, 7, 8
TCA_BPF_FLAG_ACT_DIRECT = 1
TC_H_CLSACT, TC_H_CLSACT_HANDLE, TC_H_INGRESS_FILTERS = 0xFFFFFFF1, 0xFFFF0000, 0xFFFFFFF2
NAMES = {PRIO_REVERSE: b"mip_reverse", PRIO_FORWARD: b"mip_forward"}


def _nla(kind: int, data: bytes) -> bytes:
    n = 4 + len(data)
    return struct.pack("=HH", n, kind) + data + bytes(-n & 3)


def _tc(kind: int, flags: int, ifindex: int, handle: int, parent: int, info: int,
        attrs: bytes) -> bytes:  # fmt: skip
    body = struct.pack("=BxxxiIII", socket.AF_UNSPEC, ifindex, handle, parent, info) + attrs
    return struct.pack("=IHHII", 16 + len(body), kind, flags, 0, 0) + body


def clsact_add(ifindex: int) -> bytes:
    """``tc qdisc add dev IF clsact`` (EEXIST when there)."""
    return _tc(RTM_NEWQDISC, NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL, ifindex,
               TC_H_CLSACT_HANDLE, TC_H_CLSACT, 0, _nla(TCA_KIND, b"clsact\0"))  # fmt: skip


def clsact_del(ifindex: int) -> bytes:
    return _tc(RTM_DELQDISC, NLM_F_REQUEST, ifindex, TC_H_CLSACT_HANDLE, TC_H_CLSACT, 0, b"")


def bpf_filter(ifindex: int, prio: int, fd: int) -> bytes:
    """``tc filter replace dev IF ingress prio P handle 1 protocol all bpf fd FD da``."""
    opts = (
        _nla(TCA_BPF_FD, struct.pack("=I", fd))
        + _nla(TCA_BPF_NAME, NAMES.get(prio, b"mip") + b"\0")
        + _nla(TCA_BPF_FLAGS, struct.pack("=I", TCA_BPF_FLAG_ACT_DIRECT))
    )
    attrs = _nla(TCA_KIND, b"bpf\0") + _nla(TCA_OPTIONS, opts)
    info = (prio << 16) | socket.htons(ETH_P_ALL)
    return _tc(RTM_NEWTFILTER, NLM_F_REQUEST | NLM_F_CREATE | NLM_F_REPLACE, ifindex, 1,
               TC_H_INGRESS_FILTERS, info, attrs)  # fmt: skip


def bpf_filter_del(ifindex: int, prio: int) -> bytes:
    info = (prio << 16) | socket.htons(ETH_P_ALL)
    return _tc(RTM_DELTFILTER, NLM_F_REQUEST, ifindex, 0, TC_H_INGRESS_FILTERS, info, b"")


def _key(addr: int) -> bytes:
    return addr.to_bytes(4, "big")
