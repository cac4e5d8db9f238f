"""Prototype: a tc BPF fast path for the kernel backend (issue 14), measured, not shipped.

Two classifiers (direct action), assembled here in Python and loaded with the ``bpf()``
system call through ctypes (no compiler, no libbpf), attached with pyroute2:

* **forward** (``ingress`` of the Home Agent's home-side interface): an IPv4 packet without
  options, addressed to this host's MAC, whose destination is in the ``homes`` hash map (home
  address -> outer header template, care-of address inside, IP-in-IP or GRE) gets the outer
  header pushed (``bpf_skb_adjust_room``, ``BPF_F_ADJ_ROOM_ENCAP_*``), its inner TTL
  decremented (checksum updated incrementally, as ``ip_decrease_ttl``), the outer total length
  and checksum filled in, and is sent with ``bpf_redirect_neigh`` (one route lookup for the
  care-of address, the neighbour table's MAC). Anything else (no binding, TTL <= 1, IP
  options, too big for the exit's MTU) goes on to the stack unchanged (``TC_ACT_OK``);
* **reverse** (``ingress`` of the care-of-side interface): IP-in-IP or plain GRE (no flags,
  payload IPv4) to the Home Agent's address: (inner source, outer source) looked up in the
  ``allowed`` hash map; a hit is counted in its value and decapsulated in place
  (``bpf_skb_adjust_room`` by minus the outer header) and goes on to the stack as a plain
  packet, which forwards it; a miss is dropped and counted (``drops`` array, index 0).

Maps are filled with ``BPF_MAP_UPDATE_BATCH``. The ``bpf()`` calls and the assembler are the
package's (:mod:`mobileip.dataplane.bpf_asm`).

Run inside the Home Agent's namespace (``ip netns exec NS python bpf_fastpath.py ...``)::

    bpf_fastpath.py forward --dev IF --out IF --ha A --coa C --home H [--count N] [--gre]
    bpf_fastpath.py reverse --dev IF --ha A --coa C --home H [--count N]
    bpf_fastpath.py detach --dev IF

``forward`` installs N homes H, H+1, ... all tunnelled to C (``--gre``: the first one via GRE).
The program keeps its maps alive; the process exits after attaching (``--pin DIR``: maps
pinned there, read by ``counters``).
"""

from __future__ import annotations

import argparse
import ctypes
import errno
import functools
import json
import os
import socket
import struct
import sys
import time
from ipaddress import IPv4Address
from pathlib import Path

from mobileip.dataplane.bpf import (
    _count_refused,
    _inner_ttl_decrement,
    _outer_length_and_checksum,
    _reverse_decapsulate,
)
from mobileip.dataplane.bpf import _ipv4_prologue as ipv4_prologue
from mobileip.dataplane.bpf_asm import (
    ADJ_ENCAP_L3_IPV4,
    ADJ_ENCAP_L4_GRE,
    ADJ_ROOM_MAC,
    F_ADJUST_ROOM,
    F_MAP_LOOKUP,
    F_REDIRECT,
    F_REDIRECT_NEIGH,
    FP,
    MAP_ARRAY,
    MAP_HASH,
    MAP_UPDATE_BATCH,
    SKB_DATA,
    SKB_DATA_END,
    SKB_LEN,
    TC_ACT_OK,
    TC_ACT_SHOT,
    Asm,
    _addr,
    _attr,
    bpf,
    lookup,
    map_create,
    obj_get,
    obj_pin,
    prog_load,
)

# --- the bpf() system call and the assembler are the package's (mobileip.dataplane.bpf_asm);
# the prototype's batch update stays: one call, raising on an error (the package's reports it)


def update_batch(fd: int, keys: bytes, values: bytes, count: int) -> int:
    """``BPF_MAP_UPDATE_BATCH``: ``count`` keys and values, packed back to back."""
    k = ctypes.create_string_buffer(keys, len(keys) or 1)
    v = ctypes.create_string_buffer(values, len(values) or 1)
    attr = _attr("=QQQQIIQQ", 0, 0, _addr(k), _addr(v), count, fd, 0, 0)
    bpf(MAP_UPDATE_BATCH, attr)
    return int(struct.unpack_from("=I", attr, 32)[0])


# --- the forward program -----------------------------------------------------------------------

# homes map value: the outer header template (IPv4, then GRE's 4 bytes or zeros), its partial
# checksum (sum of the template's 16-bit words as a little-endian load reads them, total length
# and checksum 0), the header length (20/24), the exit's ifindex, adjust_room flags, and the
# largest skb->len (with the Ethernet header) that fits the exit's MTU once encapsulated
# and (``static_mac``) the exit's next-hop and own MAC addresses
VALUE = struct.Struct("<24sIIIII12s")
ETH, IP = 14, 20


def forward_program(homes_fd: int, static_mac: bool = False) -> bytes:
    """``static_mac``: the Ethernet header from the map value and ``bpf_redirect`` (no route
    or neighbour lookup; the MACs go stale if the next hop's changes), else
    ``bpf_redirect_neigh``."""
    a = Asm()
    ipv4_prologue(a)  # the package's: an IPv4 packet without options for this host
    a.ldx(1, 4, 2, ETH + 8)
    a.jmp(4, "<=", "pass", imm=1)  # TTL would expire: the stack sends the ICMP error
    a.ldx(4, 4, 2, ETH + 16)
    a.stx(4, FP, -4, 4)
    a.ld_map(1, homes_fd)
    a.mov(2, FP)
    a.alu(2, "+", imm=-4)
    a.call(F_MAP_LOOKUP)
    a.jmp(0, "==", "pass", imm=0)
    a.mov(7, 0)
    a.ldx(4, 4, 6, SKB_LEN)
    a.ldx(4, 5, 7, 40)
    a.jmp(4, ">", "pass", src=5)  # too big for the exit: the stack's tunnel decides
    a.mov(1, 6)
    a.ldx(4, 2, 7, 28)
    a.mov(3, imm=ADJ_ROOM_MAC)
    a.ldx(4, 4, 7, 36)
    a.call(F_ADJUST_ROOM)
    a.jmp(0, "!=", "pass", imm=0)
    a.ldx(4, 2, 6, SKB_DATA)
    a.ldx(4, 3, 6, SKB_DATA_END)
    a.ldx(4, 4, 7, 28)
    a.jmp(4, "==", "gre", imm=24)
    # IP-in-IP: outer at 14, inner at 34
    a.mov(4, 2)
    a.alu(4, "+", imm=ETH + IP + IP)
    a.jmp(4, ">", "drop", src=3)
    for off in range(0, IP, 4):
        a.ldx(4, 5, 7, off)
        a.stx(4, 2, ETH + off, 5)
    a.mov(8, 2)
    a.alu(8, "+", imm=ETH + IP)
    a.goto("common")
    a.label("gre")
    a.mov(4, 2)
    a.alu(4, "+", imm=ETH + IP + 4 + IP)
    a.jmp(4, ">", "drop", src=3)
    for off in range(0, IP + 4, 4):
        a.ldx(4, 5, 7, off)
        a.stx(4, 2, ETH + off, 5)
    a.mov(8, 2)
    a.alu(8, "+", imm=ETH + IP + 4)
    a.label("common")
    _inner_ttl_decrement(a)  # the package's, as the two below
    _outer_length_and_checksum(a)
    if static_mac:
        for off in range(0, 12, 4):
            a.ldx(4, 5, 7, 44 + off)
            a.stx(4, 2, off, 5)
    a.ldx(4, 1, 7, 32)
    a.mov(2, imm=0)
    if static_mac:
        a.call(F_REDIRECT)
    else:
        a.mov(3, imm=0)
        a.mov(4, imm=0)
        a.call(F_REDIRECT_NEIGH)
    a.exit()
    a.label("pass")
    a.ret(TC_ACT_OK)
    a.label("drop")
    a.ret(TC_ACT_SHOT)
    return a.code()


def home_value(
    ha: str, coa: str, gre: bool, ifindex: int, mtu: int, ttl: int = 64, macs: bytes = bytes(12)
) -> bytes:
    proto = 47 if gre else 4
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 0, 0, 0, ttl, proto, 0,
                     IPv4Address(ha).packed, IPv4Address(coa).packed)  # fmt: skip
    extra = struct.pack("!HH", 0, 0x0800) if gre else b"\0\0\0\0"
    partial = sum(struct.unpack("<10H", ip))
    hdr = IP + (4 if gre else 0)
    flags = ADJ_ENCAP_L3_IPV4 | (ADJ_ENCAP_L4_GRE if gre else 0)
    return VALUE.pack(ip + extra, partial, hdr, ifindex, flags, mtu + ETH - hdr, macs)


# --- the reverse program -----------------------------------------------------------------------


def reverse_program(allowed_fd: int, drops_fd: int, ha: str) -> bytes:
    a = Asm()
    ipv4_prologue(a)
    _reverse_decapsulate(a, allowed_fd, IPv4Address(ha))  # the package's, as the count
    a.label("pass")
    a.ret(TC_ACT_OK)
    _count_refused(a, drops_fd)
    return a.code()


# --- attaching -----------------------------------------------------------------------------------


def attach(dev: str, fd: int, name: str) -> None:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        index = ipr.link_lookup(ifname=dev)[0]
        try:
            ipr.tc("add", "clsact", index)
        except Exception as exc:
            if getattr(exc, "code", None) != errno.EEXIST:
                raise
        ipr.tc("add-filter", "bpf", index, ":1", fd=fd, name=name, parent="ffff:fff2",
               direct_action=True, protocol=0x0003, prio=1)  # fmt: skip


def detach(dev: str) -> None:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        index = ipr.link_lookup(ifname=dev)[0]
        try:
            ipr.tc("del", "clsact", index)
        except Exception as exc:
            if getattr(exc, "code", None) not in (errno.ENOENT, errno.EINVAL):
                raise


def _homes(first: str, count: int) -> list[IPv4Address]:
    return [IPv4Address(int(IPv4Address(first)) + i) for i in range(count)]


def cmd_forward(args: argparse.Namespace) -> dict[str, object]:
    out_index = socket.if_nametoindex(args.out)
    mtu = int(Path(f"/sys/class/net/{args.out}/mtu").read_text())
    homes = _homes(args.home, args.count)
    macs = bytes(12)
    if args.static_mac:
        from pyroute2 import IPRoute

        with IPRoute() as ipr:
            neigh = [n for n in ipr.get_neighbours(ifindex=out_index)
                     if n.get_attr("NDA_DST") == args.coa]  # fmt: skip
            peer = neigh[0].get_attr("NDA_LLADDR")
        own = Path(f"/sys/class/net/{args.out}/address").read_text().strip()
        macs = bytes.fromhex(peer.replace(":", "")) + bytes.fromhex(own.replace(":", ""))
    fd = map_create(MAP_HASH, 4, VALUE.size, max(args.count, 1) * 2)
    started = time.perf_counter()
    for start in range(0, len(homes), args.batch):
        part = homes[start : start + args.batch]
        keys = b"".join(h.packed for h in part)
        values = b"".join(
            home_value(args.ha, args.coa, args.gre and h == homes[0], out_index, mtu, macs=macs)
            for h in part
        )
        update_batch(fd, keys, values, len(part))
    took = time.perf_counter() - started
    code = forward_program(fd, args.static_mac)
    prog = prog_load(code, "mip_fwd")
    attach(args.dev, prog, "mip_fwd")
    if args.pin:
        obj_pin(fd, f"{args.pin}/homes")
    return {"insns": len(code) // 8, "install_us_per_binding":
            round(took / max(1, len(homes)) * 1e6, 2)}  # fmt: skip


def cmd_reverse(args: argparse.Namespace) -> dict[str, object]:
    homes = _homes(args.home, args.count)
    allowed = map_create(MAP_HASH, 8, 8, max(args.count, 1) * 2)
    drops = map_create(MAP_ARRAY, 4, 8, 1)
    coa = IPv4Address(args.coa).packed
    started = time.perf_counter()
    for start in range(0, len(homes), args.batch):
        part = homes[start : start + args.batch]
        update_batch(allowed, b"".join(h.packed + coa for h in part), bytes(8 * len(part)),
                     len(part))  # fmt: skip
    took = time.perf_counter() - started
    code = reverse_program(allowed, drops, args.ha)
    if args.shipped_program:  # experiment: the shipped program, attached the prototype's way
        from mobileip.dataplane.bpf import reverse_program as shipped_reverse

        code = shipped_reverse(allowed, drops, IPv4Address(args.ha))
    prog = prog_load(code, "mip_rev")
    if args.netlink_attach:  # experiment: attached with the package's rtnetlink messages
        from mobileip.dataplane import bpf as shipped
        from mobileip.net import rtnl

        index = socket.if_nametoindex(args.dev)
        with rtnl.RtnlSocket() as sock:
            sock.apply([shipped.clsact_add(index)], ignore_benign=False)
            failures = sock.apply([shipped.bpf_filter(index, 1, prog)], ignore_benign=False)
            if failures:
                raise OSError(failures[0].errno, str(failures[0]))
    else:
        attach(args.dev, prog, "mip_rev")
    if args.second_filter:  # experiment: a second filter behind it that no packet reaches
        from mobileip.dataplane import bpf as shipped2
        from mobileip.net import rtnl as rtnl2

        with rtnl2.RtnlSocket() as sock:
            index = socket.if_nametoindex(args.dev)
            failures = sock.apply([shipped2.bpf_filter(index, 2, prog)], ignore_benign=False)
            if failures:
                raise OSError(failures[0].errno, str(failures[0]))
    if args.pin:
        obj_pin(allowed, f"{args.pin}/allowed")
        obj_pin(drops, f"{args.pin}/drops")
    return {"insns": len(code) // 8, "install_us_per_binding":
            round(took / max(1, len(homes)) * 1e6, 2)}  # fmt: skip


def cmd_package(args: argparse.Namespace) -> dict[str, object]:
    """The shipped fast path (mobileip.dataplane.bpf): both programs on ``--dev`` and ``--out``,
    the homes with reverse tunnels from the care-of address; left attached on exit."""
    from mobileip.dataplane.bpf import BpfFastPath

    homes = _homes(args.home, args.count)
    coa = IPv4Address(args.coa)
    import mobileip.dataplane.bpf as shipped

    if args.prio1:  # experiment: the reverse filter at tc prio 1, as the prototype's
        shipped.PRIO_REVERSE = 1
    if args.reverse_stack:  # the reverse program as before 2026-12-07 04:00: no redirect
        shipped.reverse_program = functools.partial(shipped.reverse_program, redirect=False)
    devs = [args.out] if args.out_only else [args.dev, args.out]
    fast = BpfFastPath(IPv4Address(args.ha), devs, mac_path=not args.fib_only,
                       capacity=args.capacity or max(1024, args.count),
                       route_cache=not args.no_route_cache)  # fmt: skip
    if args.late_load:  # experiment: the programs loaded after the maps are filled
        from mobileip.dataplane import bpf_asm as shipped_asm

        fast.homes_fd = shipped_asm.map_create(shipped_asm.MAP_HASH, 4, shipped.VALUE.size,
                                               fast.capacity)  # fmt: skip
        fast.allowed_fd = shipped_asm.map_create(shipped_asm.MAP_HASH, 8, 8, 2 * fast.capacity)
        fast.drops_fd = shipped_asm.map_create(shipped_asm.MAP_ARRAY, 4, 8, 1)
        fast.live_fd = shipped_asm.map_create(shipped_asm.MAP_ARRAY, 4, 4, 1)  # no gate read
    else:
        fast.start()
    if args.small_batches:  # experiment: the maps filled 500 at a time, as the prototype does
        fast.batch = 500
    started = time.perf_counter()
    for h in homes:
        way = None if args.no_homes else (coa, args.gre and h == homes[0])
        fast.stage(h, way, [coa])
    fast.flush()
    took = time.perf_counter() - started
    if fast.nexthops_fd >= 0 and not fast.hops:  # the neighbour not known yet: resolved
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"", (str(coa), 9))
        time.sleep(0.5)
        fast.refresh_hops()  # its event read (the daemon's loop does this as it comes)
    if args.late_load:
        fast.progs[shipped.PRIO_REVERSE] = shipped_asm.prog_load(
            shipped.reverse_program(fast.allowed_fd, fast.drops_fd, fast.source), "mip_reverse"
        )
        fast.progs[shipped.PRIO_FORWARD] = shipped_asm.prog_load(
            shipped.forward_program(fast.homes_fd), "mip_forward"
        )
    if args.reverse_only:  # experiment: without the forward program
        os.close(fast.progs.pop(shipped.PRIO_FORWARD))
    fast.set_live(True)
    return {"installed": fast.installed(), "errors": fast.errors, "next_hops": len(fast.hops),
            "install_us_per_binding": round(took / max(1, len(homes)) * 1e6, 2)}  # fmt: skip


def cmd_counters(args: argparse.Namespace) -> dict[str, object]:
    drops = obj_get(f"{args.pin}/drops")
    allowed = obj_get(f"{args.pin}/allowed")
    raw = lookup(drops, bytes(4), 8) or bytes(8)
    key = IPv4Address(args.home).packed + IPv4Address(args.coa).packed
    hit = lookup(allowed, key, 8)
    return {"drops": struct.unpack("<Q", raw)[0],
            "accepted": struct.unpack("<Q", hit)[0] if hit else None}  # fmt: skip


def main() -> int:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("forward", "reverse", "package", "detach", "counters"):
        s = sub.add_parser(name)
        s.add_argument("--dev", default="")
        s.add_argument("--out", default="")
        s.add_argument("--ha", default="")
        s.add_argument("--coa", default="")
        s.add_argument("--home", default="")
        s.add_argument("--count", type=int, default=1)
        s.add_argument("--batch", type=int, default=500)
        s.add_argument("--gre", action="store_true")
        s.add_argument("--static-mac", action="store_true")
        s.add_argument("--out-only", action="store_true", help="package: on --out only")
        s.add_argument("--prio1", action="store_true", help="package: reverse at tc prio 1")
        s.add_argument("--shipped-program", action="store_true", help="reverse: the package's")
        s.add_argument("--netlink-attach", action="store_true", help="reverse: the package's way")
        s.add_argument("--small-batches", action="store_true", help="package: batches of 500")
        s.add_argument("--no-homes", action="store_true", help="package: reverse pairs only")
        s.add_argument("--late-load", action="store_true", help="package: programs after maps")
        s.add_argument("--second-filter", action="store_true", help="reverse: one more behind")
        s.add_argument("--reverse-only", action="store_true", help="package: no forward program")
        s.add_argument("--capacity", type=int, default=0, help="package: maps' capacity")
        s.add_argument("--fib-only", action="store_true", help="package: no MAC path")
        s.add_argument("--reverse-stack", action="store_true",
                       help="package: decapsulated packets to the stack (no redirect)")  # fmt: skip
        s.add_argument("--no-route-cache", action="store_true",
                       help="package: a FIB lookup for every reverse packet")  # fmt: skip
        s.add_argument("--pin", default="")
    args = p.parse_args()
    if args.cmd == "detach":
        detach(args.dev)
        return 0
    run = {"forward": cmd_forward, "reverse": cmd_reverse, "package": cmd_package,
           "counters": cmd_counters}[args.cmd]  # fmt: skip
    print(json.dumps(run(args)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
