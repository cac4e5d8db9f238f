"""A registration load generator: many authenticated mobile nodes against one Home Agent.

    mobileip loadgen --ha 127.0.0.1:434 --mobile-nodes 10000 --max --duration 10 \\
        --spi 256 --key 00112233445566778899aabbccddeeff --home-agent-address 10.1.0.1

Every mobile node has its own home address (consecutive addresses of ``--home-prefix``) and
strictly increasing NTP-timestamp identifications; at most one request per mobile node is in
flight, and at most ``--window`` in all. Every reply is verified: the home address and the
identification must match the request in flight, and the MN-HA authenticator must be valid.
Replies that fail are counted as ``invalid``; requests without a reply after ``--timeout``
seconds as ``timeouts``.

Built to be fast enough to load a Home Agent written in the same language: one connected UDP
socket, the 16 fixed bytes of each mobile node's request precomputed, one keyed MAC per request
and per reply (the key schedule done once, as in the Home Agent), no object per packet beyond
the bytes themselves.

``echo=True`` (the benchmark's baseline) accepts the request itself echoed back: the same
authenticator check runs on it, so the client does the same work per reply as against a Home Agent.
"""

from __future__ import annotations

import argparse
import hmac
import json
import math
import select
import socket
import struct
import sys
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from typing import TextIO

from mobileip.core.replay import ntp_from_unix
from mobileip.core.security import authenticator_function
from mobileip.wire.codes import meaning

_HEAD = struct.Struct("!BBHIII")  # type, flags, lifetime, home, ha, coa
_IDENT = struct.Struct("!Q")
_REPLY = struct.Struct("!BBHIIQ")  # type, code, lifetime, home, ha, identification
_AUTH_HEAD = struct.Struct("!BBI")  # type 32, length 20, SPI
_EXT_MN_HA = 32
_AUTH_LEN = 16
_REQUEST_LEN = _HEAD.size + _IDENT.size + _AUTH_HEAD.size + _AUTH_LEN  # 46
_ACCEPTED = (0, 1)
_IDENTIFICATION_MISMATCH = 133
_DEFAULT_PREFIX = IPv4Network("10.1.0.0/16")
_DEFAULT_COA = IPv4Address("192.0.2.10")


@dataclass(frozen=True, slots=True)
class LoadSpec:
    """What to send: where, how many mobile nodes, how fast, how long, with which key."""

    ha: tuple[str, int]
    mobile_nodes: int
    spi: int
    key: bytes
    home_agent_address: IPv4Address
    home_prefix: IPv4Network = _DEFAULT_PREFIX
    first_host: int = 2  # offset of the first home address in the prefix
    care_of_address: IPv4Address = _DEFAULT_COA
    algorithm: str = "hmac-md5"
    lifetime: int = 1800
    rate: float | None = None  # requests per second; None: as fast as the window allows
    duration: float = 10.0
    window: int = 256
    timeout: float = 1.0
    max_requests: int | None = None  # stop after this many requests (e.g. one per node)
    echo: bool = False

    def check(self) -> None:
        hosts = self.home_prefix.num_addresses - self.first_host - 1
        if self.mobile_nodes < 1:
            raise ValueError("--mobile-nodes must be at least 1")
        if self.mobile_nodes > hosts:
            raise ValueError(
                f"{self.mobile_nodes} mobile nodes do not fit in {self.home_prefix} "
                f"({hosts} addresses after the first {self.first_host})"
            )
        if self.window < 1:
            raise ValueError("--window must be at least 1")
        if self.rate is not None and self.rate <= 0:
            raise ValueError("--rate must be positive")
        if self.duration <= 0:
            raise ValueError("--duration must be positive")
        if self.algorithm not in ("hmac-md5", "prefix-suffix-md5"):
            raise ValueError(f"unknown algorithm {self.algorithm!r}")
        if not 0 <= self.lifetime <= 0xFFFF:
            raise ValueError("--lifetime must be 0 to 65535")


@dataclass
class LoadResult:
    sent: int = 0
    replies: int = 0  # verified replies
    accepted: int = 0
    codes: Counter[int] = field(default_factory=Counter)
    timeouts: int = 0
    invalid: Counter[str] = field(default_factory=Counter)
    late: int = 0  # valid-looking replies to requests that had already timed out
    send_errors: int = 0
    elapsed: float = 0.0  # first send to the last reply (or timeout)
    latencies: list[float] = field(default_factory=list)  # seconds, per verified reply

    @property
    def throughput(self) -> float:
        """Verified replies per second."""
        return self.replies / self.elapsed if self.elapsed > 0 else 0.0

    def percentile(self, p: float) -> float:
        """Latency percentile ``p`` (0-100) in seconds, nearest rank; nan without samples."""
        if not self.latencies:
            return math.nan
        data = sorted(self.latencies)
        rank = max(1, math.ceil(p / 100.0 * len(data)))
        return data[rank - 1]

    def as_dict(self) -> dict[str, object]:
        data = sorted(self.latencies)

        def pct(p: float) -> float | None:
            if not data:
                return None
            return round(data[max(1, math.ceil(p / 100.0 * len(data))) - 1] * 1000.0, 3)

        return {
            "sent": self.sent,
            "replies": self.replies,
            "accepted": self.accepted,
            "timeouts": self.timeouts,
            "late": self.late,
            "send_errors": self.send_errors,
            "invalid": dict(self.invalid),
            "codes": {str(k): v for k, v in sorted(self.codes.items())},
            "elapsed_s": round(self.elapsed, 3),
            "throughput_per_s": round(self.throughput, 1),
            "latency_ms": {
                "p50": pct(50),
                "p90": pct(90),
                "p99": pct(99),
                "max": round(data[-1] * 1000.0, 3) if data else None,
            },
        }


def _authenticator(algorithm: str, key: bytes) -> Callable[[bytes], bytes]:
    # the Home Agent's own keyed MAC (key schedule once: hmac.digest costs 3 us a call here)
    return authenticator_function(algorithm, key)


class LoadGenerator:
    """Runs one :class:`LoadSpec` over one connected UDP socket (blocking, single thread)."""

    def __init__(self, spec: LoadSpec, progress: TextIO | None = None) -> None:
        spec.check()
        self.spec = spec
        self.progress = progress
        self.result = LoadResult()
        self._auth = _authenticator(spec.algorithm, spec.key)
        base = int(spec.home_prefix.network_address) + spec.first_host
        self._homes = [base + i for i in range(spec.mobile_nodes)]
        self._index = {home: i for i, home in enumerate(self._homes)}
        ha = int(spec.home_agent_address)
        coa = int(spec.care_of_address)
        self._heads = [_HEAD.pack(1, 0, spec.lifetime, h, ha, coa) for h in self._homes]
        self._auth_head = _AUTH_HEAD.pack(_EXT_MN_HA, 4 + _AUTH_LEN, spec.spi)
        self._last_id = [0] * spec.mobile_nodes
        # per mobile node: identification in flight (0: idle), its send time, its deadline
        self._inflight_id = [0] * spec.mobile_nodes
        self._sent_at = [0.0] * spec.mobile_nodes
        self._idle: deque[int] = deque(range(spec.mobile_nodes))
        self._deadlines: deque[tuple[float, int, int]] = deque()  # (deadline, node, ident)
        self._in_flight = 0

    # --- one request ---------------------------------------------------------------------

    def _request(self, node: int, wall: float) -> bytes:
        ident = max(ntp_from_unix(wall), self._last_id[node] + 1)
        self._last_id[node] = ident
        self._inflight_id[node] = ident
        body = self._heads[node] + _IDENT.pack(ident) + self._auth_head
        return body + self._auth(body)

    def _verify(self, data: bytes, now: float) -> None:
        res = self.result
        echo = self.spec.echo
        if len(data) < _REPLY.size:
            res.invalid["short"] += 1
            return
        if echo:
            if data[0] != 1 or len(data) != _REQUEST_LEN:
                res.invalid["not-an-echo"] += 1
                return
            code, home = 0, int.from_bytes(data[4:8], "big")
            ident = int.from_bytes(data[16:24], "big")
        else:
            mtype, code, _lifetime, home, _ha, ident = _REPLY.unpack_from(data)
            if mtype != 3:
                res.invalid["not-a-reply"] += 1
                return
        node = self._index.get(home)
        if node is None:
            res.invalid["unknown-home-address"] += 1
            return
        # The MN-HA extension is the last one in our Home Agent's replies. A denial of a
        # request the HA could not authenticate (131, 134) has none: it proves nothing.
        auth_at = len(data) - _AUTH_LEN - 6
        if auth_at < _REPLY.size or data[auth_at] != _EXT_MN_HA or data[auth_at + 1] != 20:
            res.invalid["no-mn-ha-authentication"] += 1
            return
        if not hmac.compare_digest(self._auth(data[: len(data) - _AUTH_LEN]), data[-_AUTH_LEN:]):
            res.invalid["bad-authenticator"] += 1
            return
        expected = self._inflight_id[node]
        if expected == 0:
            res.late += 1
            return
        if code in _ACCEPTED and not echo:
            match = ident == expected
        else:
            match = (ident & 0xFFFFFFFF) == (expected & 0xFFFFFFFF)
        if not match:
            if ident < expected:  # an answer to an earlier request that timed out
                res.late += 1
            else:
                res.invalid["identification-mismatch"] += 1
            return
        self._inflight_id[node] = 0
        self._in_flight -= 1
        self._idle.append(node)
        res.replies += 1
        res.codes[code] += 1
        if code in _ACCEPTED:
            res.accepted += 1
        res.latencies.append(now - self._sent_at[node])

    def _expire(self, now: float) -> None:
        dl = self._deadlines
        while dl and dl[0][0] <= now:
            _deadline, node, ident = dl.popleft()
            if self._inflight_id[node] == ident:
                self._inflight_id[node] = 0
                self._in_flight -= 1
                self._idle.append(node)
                self.result.timeouts += 1

    # --- the loop ------------------------------------------------------------------------

    def run(self) -> LoadResult:
        spec = self.spec
        res = self.result
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * 1024 * 1024)
            sock.connect(spec.ha)
            sock.setblocking(False)
            self._loop(sock)
        finally:
            sock.close()
            if self.progress is not None:
                self.progress.write("\n")
                self.progress.flush()
        return res

    def _loop(self, sock: socket.socket) -> None:
        spec = self.spec
        res = self.result
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN)
        clock = time.monotonic
        start = clock()
        wall0 = time.time() - start
        stop_sending = start + spec.duration
        interval = 1.0 / spec.rate if spec.rate else 0.0
        next_send = start
        next_progress = start + 0.25
        limit = spec.max_requests if spec.max_requests is not None else math.inf
        last_event = start
        recv = sock.recv
        send = sock.send
        idle = self._idle
        while True:
            now = clock()
            sending = now < stop_sending and res.sent < limit
            if not sending and self._in_flight == 0:
                break
            # send: fill the window (paced by the rate when one is set)
            if sending:
                budget = spec.window - self._in_flight
                if interval:
                    due = int((now - next_send) / interval) + 1 if now >= next_send else 0
                    budget = min(budget, due)
                budget = min(budget, len(idle), int(min(limit - res.sent, 1 << 30)))
                wall = wall0 + now
                for _ in range(budget):
                    node = idle.popleft()
                    data = self._request(node, wall)
                    try:
                        send(data)
                    except (BlockingIOError, InterruptedError):
                        self._inflight_id[node] = 0
                        idle.appendleft(node)
                        res.send_errors += 1
                        break
                    except OSError:  # e.g. ECONNREFUSED from an earlier ICMP error
                        self._inflight_id[node] = 0
                        idle.append(node)
                        res.send_errors += 1
                        break
                    self._sent_at[node] = now
                    self._deadlines.append((now + spec.timeout, node, self._inflight_id[node]))
                    self._in_flight += 1
                    res.sent += 1
                    if interval:
                        next_send = max(next_send + interval, now - 1.0)
            # wait for replies (or the next send slot, or the oldest deadline)
            wait = 0.05
            if sending and interval and self._in_flight < spec.window and idle:
                wait = max(0.0, min(wait, next_send - clock()))
            if self._deadlines:
                wait = max(0.0, min(wait, self._deadlines[0][0] - clock()))
            if poller.poll(wait * 1000.0):
                now = clock()
                for _ in range(1024):
                    try:
                        data = recv(65535)
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError:
                        res.invalid["icmp-error"] += 1
                        continue
                    self._verify(data, now)
                last_event = now
            now = clock()
            before = res.timeouts
            self._expire(now)
            if res.timeouts != before:
                last_event = now
            if self.progress is not None and now >= next_progress:
                next_progress = now + 0.25
                self._draw(now - start)
        res.elapsed = max(last_event - start, 1e-9)

    def _draw(self, elapsed: float) -> None:
        assert self.progress is not None
        spec = self.spec
        res = self.result
        frac = min(1.0, elapsed / spec.duration)
        if spec.max_requests:
            frac = max(frac, min(1.0, res.sent / spec.max_requests))
        bar = "#" * int(frac * 30)
        rate = res.replies / elapsed if elapsed > 0 else 0.0
        self.progress.write(
            f"\r[{bar:<30}] {elapsed:6.1f}s sent {res.sent} replies {res.replies} "
            f"({rate:,.0f}/s) timeouts {res.timeouts} in flight {self._in_flight}   "
        )
        self.progress.flush()


def run_load(spec: LoadSpec, progress: TextIO | None = None) -> LoadResult:
    return LoadGenerator(spec, progress).run()


def format_result(result: LoadResult) -> str:
    d = result.as_dict()
    lat = d["latency_ms"]
    assert isinstance(lat, dict)

    def ms(v: object) -> str:
        return "-" if v is None else f"{v} ms"

    lines = [
        f"sent        {result.sent}",
        f"replies     {result.replies} verified in {result.elapsed:.2f} s "
        f"({result.throughput:,.0f}/s)",
        f"accepted    {result.accepted}",
        f"timeouts    {result.timeouts}",
        f"latency     p50 {ms(lat['p50'])}  p90 {ms(lat['p90'])}  p99 {ms(lat['p99'])}  "
        f"max {ms(lat['max'])}",
    ]
    for code, n in sorted(result.codes.items()):
        lines.append(f"code {code:<3}    {n}  ({meaning(code)})")
    if result.invalid:
        lines.append("invalid     " + ", ".join(f"{k}={v}" for k, v in result.invalid.items()))
    if result.late:
        lines.append(f"late        {result.late}")
    if result.send_errors:
        lines.append(f"send errors {result.send_errors}")
    return "\n".join(lines)


def progress_stream() -> TextIO | None:
    """stderr when it is a terminal (the progress bar), else None."""
    return sys.stderr if sys.stderr.isatty() else None


# --- command line (``mobileip loadgen``) -------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ha", required=True, help="Home Agent HOST[:PORT] (port 434 by default)")
    p.add_argument("--mobile-nodes", type=int, default=1000, help="mobile nodes (default 1000)")
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--rate", type=float, help="offered requests per second")
    how.add_argument("--max", action="store_true", help="as fast as the window allows")
    p.add_argument("--duration", type=float, default=10.0, help="seconds of sending")
    p.add_argument("--spi", required=True, type=lambda s: int(s, 0))
    p.add_argument("--key", required=True, help="MN-HA key, hex")
    p.add_argument("--algorithm", choices=("hmac-md5", "prefix-suffix-md5"), default="hmac-md5")
    p.add_argument("--home-prefix", default="10.1.0.0/16", help="home addresses come from here")
    p.add_argument("--first-host", type=int, default=2, help="offset of the first home address")
    p.add_argument("--home-agent-address", help="Home Agent field (default: the --ha host)")
    p.add_argument("--care-of-address", default="192.0.2.10")
    p.add_argument("--lifetime", type=int, default=1800)
    p.add_argument("--window", type=int, default=256, help="requests in flight at most")
    p.add_argument("--timeout", type=float, default=1.0, help="seconds before a timeout")
    p.add_argument("--requests", type=int, help="stop after this many requests")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def spec_from_args(args: argparse.Namespace) -> LoadSpec:
    """A :class:`LoadSpec` from ``mobileip loadgen`` arguments; ValueError with a clear text."""
    host, sep, port = str(args.ha).rpartition(":")
    if not sep:
        host, port = str(args.ha), "434"
    try:
        IPv4Address(host)
    except ValueError:
        raise ValueError(f"--ha {args.ha!r}: {host!r} is not an IPv4 address") from None
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--ha {args.ha!r}: bad port {port!r}")
    try:
        key = bytes.fromhex(args.key)
    except ValueError:
        raise ValueError("--key must be hex") from None
    if not key:
        raise ValueError("--key must not be empty")
    if not 256 <= args.spi <= 0xFFFFFFFF:
        raise ValueError("--spi must be 256 to 4294967295")
    try:
        prefix = IPv4Network(args.home_prefix)
        ha_addr = IPv4Address(args.home_agent_address or host)
        coa = IPv4Address(args.care_of_address)
    except ValueError as exc:
        raise ValueError(str(exc)) from None
    spec = LoadSpec(
        ha=(host, int(port)),
        mobile_nodes=args.mobile_nodes,
        spi=args.spi,
        key=key,
        home_agent_address=ha_addr,
        home_prefix=prefix,
        first_host=args.first_host,
        care_of_address=coa,
        algorithm=args.algorithm,
        lifetime=args.lifetime,
        rate=None if args.max else args.rate,
        duration=args.duration,
        window=args.window,
        timeout=args.timeout,
        max_requests=args.requests,
    )
    spec.check()
    return spec


def main(args: argparse.Namespace) -> int:
    """``mobileip loadgen``: 0 when every request got a verified reply, 1 otherwise, 2 on usage."""
    try:
        spec = spec_from_args(args)
    except ValueError as exc:
        print(f"mobileip loadgen: {exc}", file=sys.stderr)
        return 2
    result = run_load(spec, progress_stream())
    if args.json:
        print(json.dumps(result.as_dict(), indent=2))
    else:
        print(format_result(result))
    clean = result.replies == result.sent and not result.invalid and not result.send_errors
    return 0 if clean else 1
