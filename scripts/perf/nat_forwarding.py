"""Per-packet cost of the RFC 3519 UDP tunnel against plain IP-in-IP, userspace backend, one run.

``sudo .venv/bin/python scripts/perf/nat_forwarding.py [--packets 20000] [--rounds 7]``

What is timed is the backend's own packet work in this process, with real kernel sends: a fresh
network namespace (``ip netns``; the script re-runs itself inside it) whose destinations route
to a dummy device (the kernel sends and drops: the same for every row). No TUN: a datagram
socketpair stands in for the TUN's file descriptor (one read, one packet, as a TUN), a write to
/dev/null for the TUN write of the reverse rows. Rows, per packet (64-byte UDP packet inside):

* ``ipip-fast``: a home with one IP-in-IP exit through ``_on_tun``'s fast path (readv into the
  buffer, the outer header written in place, ``sendto`` on the raw socket): what a plain
  co-located or FA binding costs;
* ``ipip-general``: the same home through :meth:`UserspaceBackend.forward` (parse, encapsulate,
  send): the path minimal encapsulation and every non-fast case take;
* ``udp``: a UDP-tunnelled home (NAT mapping) through ``_on_tun``: not on the fast path, so
  ``forward`` -> :meth:`UdpTunnelPath.forward` -> tunnel data from the registration socket
  (:class:`~mobileip.net.udp.UdpEndpoint`, from the source address, as the service sends);
* ``rev-ipip-fast``: an IP-in-IP packet from the care-of address through ``_on_tunnelled``'s fast
  path (recv_into one buffer, checks, written to the TUN from it; the socketpair stands in for
  the raw socket); ``rev-ipip``: the same packet through :meth:`reverse` (decapsulate, check,
  write); ``rev-udp``: tunnel data from the NAT mapping through :meth:`UdpTunnelPath.received`
  (check, write). Not in ``rev-udp``: the registration socket's read and dispatch by first byte
  (:class:`UdpEndpoint`'s reader), which the daemon adds in front of it.

Rounds alternate the rows; each row's per-packet time is the median over rounds, and the ratios
(udp / ipip-fast, udp / ipip-general, rev-udp / rev-ipip) are taken round by round, then their
median and range reported. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from ipaddress import IPv4Address
from typing import Any

from mobileip.dataplane.backend import TunnelSpec
from mobileip.dataplane.encap import Encapsulation, encapsulate
from mobileip.dataplane.udp_tunnel import UdpTunnelPath
from mobileip.dataplane.userspace import BATCH, UserspaceBackend
from mobileip.net.udp import UdpEndpoint
from mobileip.wire import nat

SOURCE = IPv4Address("10.99.0.1")
HOME_IPIP = IPv4Address("10.1.0.5")
HOME_UDP = IPv4Address("10.1.0.6")
COA = IPv4Address("203.0.113.5")
NAT_IP = IPv4Address("203.0.113.9")
NAT_PORT = 40000
CN = IPv4Address("198.51.100.7")


def udp_packet(src: IPv4Address, dst: IPv4Address, payload: int = 36) -> bytes:
    """An IPv4/UDP packet of 20 + 8 + ``payload`` bytes, header checksum right."""
    total = 28 + payload
    head = bytearray(
        bytes([0x45, 0, total >> 8, total & 0xFF, 0, 1, 0x40, 0, 63, 17, 0, 0])
        + src.packed
        + dst.packed
    )
    s = sum(int.from_bytes(head[i : i + 2], "big") for i in range(0, 20, 2))
    s = (s & 0xFFFF) + (s >> 16)
    s = ~((s & 0xFFFF) + (s >> 16)) & 0xFFFF
    head[10:12] = s.to_bytes(2, "big")
    udp = (5000).to_bytes(2, "big") + (6000).to_bytes(2, "big") + (8 + payload).to_bytes(2, "big")
    return bytes(head) + udp + b"\x00\x00" + bytes(payload)


def setup_namespace() -> str:
    """A veth pair (no dummy module on every kernel); the far ends' link-layer addresses fixed,
    and everything leaving v0 dropped by tc where it can (else v1 drops it: not for it)."""
    for argv in (
        ["ip", "link", "set", "lo", "up"],
        ["ip", "link", "add", "v0", "type", "veth", "peer", "name", "v1"],
        ["ip", "link", "set", "v0", "up"],
        ["ip", "link", "set", "v1", "up"],
        ["ip", "addr", "add", f"{SOURCE}/24", "dev", "v0"],
        ["ip", "route", "add", "203.0.113.0/24", "dev", "v0"],
        ["ip", "neigh", "add", str(COA), "lladdr", "02:00:00:00:00:05", "dev", "v0"],
        ["ip", "neigh", "add", str(NAT_IP), "lladdr", "02:00:00:00:00:09", "dev", "v0"],
    ):
        subprocess.run(argv, check=True)
    drop = subprocess.run(
        ["sh", "-c", "tc qdisc add dev v0 clsact && "
         "tc filter add dev v0 egress matchall action drop"],
        capture_output=True, check=False,
    )  # fmt: skip
    return "tc matchall drop on v0 egress" if drop.returncode == 0 else "dropped by v1 (not its)"


async def measure(packets: int, rounds: int) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    backend = UserspaceBackend(lambda *a, **k: None, "x", SOURCE, own=frozenset({SOURCE}))
    backend.send_sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    backend.send_sock.setblocking(False)
    endpoint = UdpEndpoint.bind(loop, str(SOURCE), 434, lambda *a: None)
    path = UdpTunnelPath(
        backend,
        lambda d, a, s: endpoint.send(d, a, s),
        backend.write_tun,
        str(SOURCE),
        lambda *a: None,
    )
    backend.udp = path
    backend.track(TunnelSpec(HOME_IPIP, ((COA, Encapsulation.IPIP),), (COA,)))
    backend.track(TunnelSpec(HOME_UDP, (), (), ((NAT_IP, NAT_PORT),)))
    feed, tun = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    for s in (feed, tun):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    tun.setblocking(False)
    devnull = os.open(os.devnull, os.O_WRONLY)
    to_ipip, to_udp = udp_packet(CN, HOME_IPIP), udp_packet(CN, HOME_UDP)
    rev_ipip = encapsulate(udp_packet(HOME_IPIP, CN), Encapsulation.IPIP, COA, SOURCE)
    rev_udp = nat.encapsulate(udp_packet(HOME_UDP, CN))
    nat_src = (str(NAT_IP), NAT_PORT)

    def through_tun(packet: bytes) -> float:
        backend.tun_fd = tun.fileno()
        spent = 0.0
        done = 0
        while done < packets:
            n = min(BATCH, packets - done)
            for _ in range(n):
                feed.send(packet)
            t = time.perf_counter()
            backend._on_tun()
            spent += time.perf_counter() - t
            done += n
        return spent / packets

    def general(packet: bytes) -> float:
        t = time.perf_counter()
        for _ in range(packets):
            backend.forward(packet)
        return (time.perf_counter() - t) / packets

    def reverse_ipip_fast() -> float:
        backend.tun_fd = devnull
        spent = 0.0
        done = 0
        while done < packets:
            n = min(BATCH, packets - done)
            for _ in range(n):
                feed.send(rev_ipip)
            t = time.perf_counter()
            backend._on_tunnelled(tun)
            spent += time.perf_counter() - t
            done += n
        return spent / packets

    def reverse_ipip() -> float:
        backend.tun_fd = devnull
        t = time.perf_counter()
        for _ in range(packets):
            backend.reverse(rev_ipip)
        return (time.perf_counter() - t) / packets

    def reverse_udp() -> float:
        backend.tun_fd = devnull
        t = time.perf_counter()
        for _ in range(packets):
            path.received(rev_udp, nat_src, str(SOURCE))
        return (time.perf_counter() - t) / packets

    rows = {
        "ipip-fast": lambda: through_tun(to_ipip),
        "ipip-general": lambda: general(to_ipip),
        "udp": lambda: through_tun(to_udp),
        "rev-ipip-fast": reverse_ipip_fast,
        "rev-ipip": reverse_ipip,
        "rev-udp": reverse_udp,
    }
    names = list(rows)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            times[name].append(rows[name]())
    counters = dict(backend.counters) | {f"udp:{k}": v for k, v in path.counters.items()}
    endpoint.close()
    os.close(devnull)

    def ratio(a: str, b: str) -> dict[str, float]:
        rs = [x / y for x, y in zip(times[a], times[b], strict=True)]
        return {"median": round(statistics.median(rs), 2), "min": round(min(rs), 2),
                "max": round(max(rs), 2)}  # fmt: skip

    return {
        "packets_per_row_per_round": packets,
        "rounds": rounds,
        "us_per_packet_median": {n: round(statistics.median(v) * 1e6, 2) for n, v in times.items()},
        "ratios": {
            "udp/ipip-fast": ratio("udp", "ipip-fast"),
            "udp/ipip-general": ratio("udp", "ipip-general"),
            "rev-udp/rev-ipip-fast": ratio("rev-udp", "rev-ipip-fast"),
            "rev-udp/rev-ipip": ratio("rev-udp", "rev-ipip"),
        },
        "counters": counters,
        "load": os.getloadavg(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not args.inside:
        ns = f"mnatfwd{os.getpid()}"
        subprocess.run(["ip", "netns", "add", ns], check=True)
        try:
            argv = [sys.executable, __file__, "--inside", "--packets", str(args.packets),
                    "--rounds", str(args.rounds)]  # fmt: skip
            return subprocess.run(["ip", "netns", "exec", ns, *argv], check=False).returncode
        finally:
            subprocess.run(["ip", "netns", "del", ns], check=False)
    sink = setup_namespace()
    result = asyncio.run(measure(args.packets, args.rounds))
    result["sink"] = sink
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
