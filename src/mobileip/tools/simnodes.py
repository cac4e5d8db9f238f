"""Many simulated mobile nodes with co-located care-of addresses, for the scaled lab and the
failover bench (``mobileip lab --mobile-nodes N``, ``mobileip bench`` failover section).

Three small programs, each run inside one of the lab's namespaces
(``python -m mobileip.tools.simnodes register|send|sink``):

* ``register``: registers N mobile nodes through the Home Agent's (virtual) address with the load
  generator's code (:mod:`mobileip.tools.loadgen`), one request per node, each with its own home
  address (consecutive in ``--home-prefix``) and its own co-located care-of address (consecutive in
  ``--coa-prefix``, D flag); prints the load generator's result as JSON.
* ``sink``: runs in the namespace that holds every care-of address. The namespace routes the whole
  care-of prefix as local (``ip route add local PREFIX dev lo``: one route, no per-address work,
  so a million care-of addresses cost nothing), and a raw socket for IP protocol 4 (IP-in-IP) sees
  each tunnelled packet; the sink records, per inner destination (a sampled home address), the
  arrival time (``time.monotonic()``, the same clock in every namespace). It prints a status line
  every 0.25 s; once the mark file holds the kill time, the line says how many sampled nodes
  recovered. On the stop file it prints, per sampled node, the outage (:func:`node_outage`).
* ``send``: a UDP stream from the correspondent to each sampled home address, ``--interval``
  apart per node, the nodes spread evenly over the interval.
* ``natnodes``: N mobile nodes behind one NAT (RFC 3519; ``scripts/perf/nat_takeover_many.py``),
  run in the NAT's private namespace: one UDP socket per node on the private address (so the NAT
  gives each its own public port), each registering its home address with D, the private address
  as co-located care-of address and a UDP Tunnel Request; then it keepalives each mapping every
  ``--keepalive`` s and sinks the tunnel data that arrives on the sockets, recording per home
  address the arrivals of packets from ``--peer`` (the correspondent's stream), with the same
  status lines and final outage per node as ``sink``.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import os
import select
import socket
import statistics
import struct
import sys
import time
from collections.abc import Iterable, Sequence
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any, TextIO

from mobileip.agents.client import MobileNode, build_request
from mobileip.core.replay import ntp_from_unix
from mobileip.core.security import SecurityAssociation
from mobileip.tools.loadgen import _HEAD, LoadGenerator, LoadSpec
from mobileip.wire import nat as wire_nat
from mobileip.wire import registration as wire
from mobileip.wire.errors import DecodeError

HOME_PREFIX = IPv4Network(
    "10.128.0.0/9"
)  # simulated home addresses (routed to the virtual address)
COA_PREFIX = IPv4Network("10.64.0.0/10")  # simulated co-located care-of addresses (the sink's)
FIRST_HOST = 2
REG_FLAG_D = 0x20  # co-located care-of address (RFC 5944 3.3)
SINK_PORT = 9998
GUARD = 0.1  # arrivals this soon after the kill were already in flight: not a recovery


def home_of(i: int) -> IPv4Address:
    return HOME_PREFIX.network_address + FIRST_HOST + i


def coa_of(i: int) -> IPv4Address:
    return COA_PREFIX.network_address + FIRST_HOST + i


def sample_indices(n: int, k: int) -> list[int]:
    """``k`` of the ``n`` simulated nodes, evenly spread (first and last included)."""
    if n <= 0 or k <= 0:
        return []
    if k >= n:
        return list(range(n))
    if k == 1:
        return [0]
    return sorted({round(j * (n - 1) / (k - 1)) for j in range(k)})


# --- registration --------------------------------------------------------------------------


class ColocatedLoad(LoadGenerator):
    """The load generator with one co-located care-of address per mobile node (D flag)."""

    def __init__(self, spec: LoadSpec, coa_base: IPv4Address, progress: TextIO | None = None):
        super().__init__(spec, progress)
        ha = int(spec.home_agent_address)
        coa = int(coa_base)
        self._heads = [
            _HEAD.pack(1, REG_FLAG_D, spec.lifetime, h, ha, coa + i)
            for i, h in enumerate(self._homes)
        ]


def register(
    ha: str,
    n: int,
    spi: int,
    key: bytes,
    home_agent: IPv4Address,
    lifetime: int = 3600,
    rate: float | None = None,
    window: int = 256,
    timeout: float = 2.0,
) -> dict[str, Any]:
    """Register ``n`` simulated nodes (each exactly once unless it timed out); the result."""
    spec = LoadSpec(
        ha=(ha, 434),
        mobile_nodes=n,
        spi=spi,
        key=key,
        home_agent_address=home_agent,
        home_prefix=HOME_PREFIX,
        first_host=FIRST_HOST,
        care_of_address=coa_of(0),
        lifetime=lifetime,
        rate=rate,
        duration=3600.0,
        window=window,
        timeout=timeout,
        max_requests=n,
    )
    started = time.monotonic()
    result = ColocatedLoad(spec, coa_of(0)).run()
    data = result.as_dict()
    data["mobile_nodes"] = n
    data["wall_s"] = round(time.monotonic() - started, 3)
    return data


# --- the outage arithmetic -----------------------------------------------------------------


def node_outage(
    arrivals: Sequence[float], kill_at: float, interval: float, guard: float = GUARD
) -> dict[str, float | None]:
    """One sampled node's outage from its packets' arrival times at its care-of address.

    ``recovered_s``: from the kill to the first arrival more than ``guard`` after it (None: no
    packet came back). ``outage_s``: the longest silence from the last arrival before the kill to
    that first arrival, less one sending interval (the ping's definition in the lab)."""
    before = [t for t in arrivals if t <= kill_at]
    after = [t for t in arrivals if t > kill_at + guard]
    if not after:
        return {"outage_s": None, "recovered_s": None}
    first = after[0]
    start = before[-1] if before else kill_at
    span = [start, *(t for t in arrivals if start < t <= first)]
    silence = max(b - a for a, b in itertools.pairwise(span)) if len(span) > 1 else 0.0
    return {
        "outage_s": round(max(0.0, silence - interval), 4),
        "recovered_s": round(first - kill_at, 4),
    }


def summarize(per_node: dict[str, dict[str, float | None]]) -> dict[str, Any]:
    """Median and worst over the sampled nodes (milliseconds); who did not recover."""
    outages = [v["outage_s"] for v in per_node.values() if v["outage_s"] is not None]
    after = [v["recovered_s"] for v in per_node.values() if v["recovered_s"] is not None]

    def ms(values: list[float], f: Any) -> float | None:
        return round(f(values) * 1000, 1) if values else None

    return {
        "sampled": len(per_node),
        "recovered": len(after),
        "not_recovered": sorted(h for h, v in per_node.items() if v["recovered_s"] is None),
        "outage_ms": {"median": ms(outages, statistics.median), "worst": ms(outages, max)},
        "recovered_after_kill_ms": {
            "median": ms(after, statistics.median),
            "worst": ms(after, max),
        },
    }


# --- the programs --------------------------------------------------------------------------


def _read_homes(path: str) -> list[str]:
    return [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]


def _mark(path: str | None) -> float | None:
    if not path:
        return None
    try:
        return float(Path(path).read_text().strip())
    except (OSError, ValueError):
        return None


def _print_status(
    out: TextIO, now: float, total: int, arrivals: dict[str, list[float]], kill_at: float | None
) -> None:
    """One progress line: packets arrived, nodes reached, and (after the kill) nodes recovered."""
    status: dict[str, Any] = {"t": round(now, 3), "arrived": total}
    status["reached"] = sum(1 for a in arrivals.values() if a)
    if kill_at is not None:
        status["recovered"] = sum(1 for a in arrivals.values() if a and a[-1] > kill_at + GUARD)
    print(json.dumps(status), file=out, flush=True)


def _print_final(
    out: TextIO, arrivals: dict[str, list[float]], kill_at: float | None, interval: float
) -> None:
    """The last line: each node's outage around the kill and its packet count."""
    per_node = {
        h: node_outage(a, kill_at, interval) if kill_at is not None else {}
        for h, a in arrivals.items()
    }
    counts = {h: len(a) for h, a in arrivals.items()}
    print(
        json.dumps({"final": True, "kill_at": kill_at, "per_node": per_node, "counts": counts}),
        file=out,
        flush=True,
    )


def sink(homes: list[str], interval: float, until: str, mark_file: str | None, out: TextIO) -> int:
    want = {socket.inet_aton(h): h for h in homes}
    arrivals: dict[str, list[float]] = {h: [] for h in homes}
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, 4)  # IP-in-IP, outer header included
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024 * 1024)
    sock.setblocking(False)
    print(json.dumps({"ready": True}), file=out, flush=True)
    clock = time.monotonic
    next_status = clock() + 0.25
    kill_at: float | None = None
    total = 0
    while not os.path.exists(until):
        ready, _, _ = select.select([sock], [], [], 0.05)
        if ready:
            now = clock()
            for _ in range(256):
                try:
                    data = sock.recv(2048)
                except (BlockingIOError, InterruptedError):
                    break
                ihl = (data[0] & 0x0F) * 4 if data else 0
                home = want.get(data[ihl + 16 : ihl + 20])
                if home is not None:
                    arrivals[home].append(now)
                    total += 1
        now = clock()
        if now >= next_status:
            next_status = now + 0.25
            if kill_at is None:
                kill_at = _mark(mark_file)
            _print_status(out, now, total, arrivals, kill_at)
    _print_final(out, arrivals, kill_at if kill_at is not None else _mark(mark_file), interval)
    return 0


def _register_nat_node(
    sock: socket.socket, mn: MobileNode, ha: tuple[str, int], timeout: float = 1.0, tries: int = 5
) -> dict[str, Any]:
    """One registration with a UDP Tunnel Request from ``sock``: the reply's code and whether
    the UDP tunnel was granted (tunnel data arriving meanwhile is skipped)."""
    for attempt in range(tries):
        ident = ntp_from_unix(time.time()) + attempt
        sock.sendto(build_request(mn, 600, ident, REG_FLAG_D), ha)
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([sock], [], [], left)
            if not ready:
                break
            data = sock.recv(4096)
            if data[:1] != bytes([wire.TYPE_REPLY]):
                continue
            try:
                reply = wire.decode_reply(data)
            except DecodeError:  # a bad reply: keep waiting
                continue
            if reply.identification != ident:
                continue
            granted = wire_nat.find_reply(reply.extensions)
            return {"code": reply.code, "udp": granted is not None and granted.accepted}
    return {"code": None, "udp": False}


def natnodes(
    n: int,
    private: str,
    ha: str,
    spi: int,
    key: bytes,
    first_home: IPv4Address,
    peer: str,
    keepalive: float,
    interval: float,
    until: str,
    mark_file: str | None,
    out: TextIO,
) -> int:
    """N NAT-ed mobile nodes (module docstring): register, then keepalive and sink."""
    ha_addr = IPv4Address(ha)
    sa = SecurityAssociation(spi, "hmac-md5", key, (IPv4Network("0.0.0.0/0"),))
    request = (wire_nat.UdpTunnelRequest().extension(),)
    socks: list[socket.socket] = []
    homes = [first_home + i for i in range(n)]
    started = time.monotonic()
    codes: dict[str, int] = {}
    for home in homes:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((private, 0))
        socks.append(sock)
        mn = MobileNode(home, IPv4Address(private), ha_addr, sa, extensions=request)
        result = _register_nat_node(sock, mn, (ha, 434))
        key_ = f"{result['code']}{'+udp' if result['udp'] else ''}"
        codes[key_] = codes.get(key_, 0) + 1
    registered = {"registered": codes, "wall_s": round(time.monotonic() - started, 3)}
    print(json.dumps(registered), file=out, flush=True)
    by_fd = {s.fileno(): s for s in socks}
    home_of = {s.fileno(): str(h) for s, h in zip(socks, homes, strict=True)}
    peer_b = socket.inet_aton(peer)
    arrivals: dict[str, list[float]] = {str(h): [] for h in homes}
    clock = time.monotonic
    next_status = clock() + 0.25
    next_keepalive = clock()
    seq = 0
    kill_at: float | None = None
    total = 0
    while not os.path.exists(until):
        now = clock()
        if now >= next_keepalive:
            next_keepalive = now + keepalive
            seq += 1
            for sock, home in zip(socks, homes, strict=True):
                with contextlib.suppress(OSError):
                    sock.sendto(wire_nat.keepalive(home, ha_addr, seq), (ha, 434))
        ready, _, _ = select.select(socks, [], [], 0.05)
        now = clock()
        for fd in (s.fileno() for s in ready):
            sock = by_fd[fd]
            for _ in range(64):
                try:
                    data = sock.recv(4096, socket.MSG_DONTWAIT)
                except (BlockingIOError, InterruptedError):
                    break
                # tunnel data (type 4, next header 4): an IPv4 packet from the correspondent
                if (
                    len(data) >= 24
                    and data[0] == wire_nat.TYPE_TUNNEL_DATA
                    and data[1] == 4
                    and data[16:20] == peer_b
                ):
                    arrivals[home_of[fd]].append(now)
                    total += 1
        if now >= next_status:
            next_status = now + 0.25
            if kill_at is None:
                kill_at = _mark(mark_file)
            _print_status(out, now, total, arrivals, kill_at)
    _print_final(out, arrivals, kill_at if kill_at is not None else _mark(mark_file), interval)
    for sock in socks:
        sock.close()
    return 0


def send(homes: list[str], port: int, interval: float, until: str) -> int:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * 1024 * 1024)
    targets = [(h, port) for h in homes]
    step = interval / max(1, len(targets))
    print(json.dumps({"ready": True}), flush=True)
    seq = 0
    start = time.monotonic()
    while not os.path.exists(until):
        for i, target in enumerate(targets):
            due = start + seq * interval + i * step
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            with contextlib.suppress(OSError):  # no route for a moment: keep sending
                sock.sendto(struct.pack("!I", seq) + b"mobileip-scaled", target)
        seq += 1
        if time.monotonic() - (start + seq * interval) > 1.0:  # fell behind: do not burst
            start = time.monotonic() - seq * interval
    print(json.dumps({"sent_per_node": seq}), flush=True)
    return 0


def percentile(values: Iterable[float], p: float) -> float:
    data = sorted(values)
    if not data:
        return math.nan
    return data[max(1, math.ceil(p / 100 * len(data))) - 1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mobileip.tools.simnodes")
    sub = parser.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("register")
    r.add_argument("--ha", required=True)
    r.add_argument("-n", type=int, required=True)
    r.add_argument("--spi", type=int, required=True)
    r.add_argument("--key", required=True)
    r.add_argument("--home-agent", required=True)
    r.add_argument("--lifetime", type=int, default=3600)
    r.add_argument("--rate", type=float)
    r.add_argument("--window", type=int, default=256)
    for name in ("sink", "send"):
        s = sub.add_parser(name)
        s.add_argument("--homes-file", required=True)
        s.add_argument("--interval", type=float, default=0.05)
        s.add_argument("--until-file", required=True)
        if name == "sink":
            s.add_argument("--mark-file")
        else:
            s.add_argument("--port", type=int, default=SINK_PORT)
    nn = sub.add_parser("natnodes")
    nn.add_argument("-n", type=int, required=True)
    nn.add_argument("--private", required=True, help="the private address the sockets bind")
    nn.add_argument("--ha", required=True, help="the Home Agent (virtual) address")
    nn.add_argument("--spi", type=int, required=True)
    nn.add_argument("--key", required=True)
    nn.add_argument("--first-home", required=True)
    nn.add_argument("--peer", required=True, help="the correspondent whose packets count")
    nn.add_argument("--keepalive", type=float, default=1.0)
    nn.add_argument("--interval", type=float, default=0.05)
    nn.add_argument("--until-file", required=True)
    nn.add_argument("--mark-file")
    args = parser.parse_args(argv)
    if args.cmd == "natnodes":
        return natnodes(
            args.n,
            args.private,
            args.ha,
            args.spi,
            bytes.fromhex(args.key),
            IPv4Address(args.first_home),
            args.peer,
            args.keepalive,
            args.interval,
            args.until_file,
            args.mark_file,
            sys.stdout,
        )
    if args.cmd == "register":
        result = register(
            args.ha,
            args.n,
            args.spi,
            bytes.fromhex(args.key),
            IPv4Address(args.home_agent),
            args.lifetime,
            args.rate,
            args.window,
        )
        print(json.dumps(result), flush=True)
        return 0 if result["accepted"] == args.n else 1
    homes = _read_homes(args.homes_file)
    if args.cmd == "sink":
        return sink(homes, args.interval, args.until_file, args.mark_file, sys.stdout)
    return send(homes, args.port, args.interval, args.until_file)


if __name__ == "__main__":
    sys.exit(main())
