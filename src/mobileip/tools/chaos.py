"""Chaos under load: a lossy, reordering, duplicating UDP relay, a recording load client, a judge.

Three pieces, used by ``tests/test_chaos_netns.py`` and usable by hand:

* :class:`ChaosCore` (sans-IO) decides the fate of each datagram: dropped, delivered once after a
  jittered delay, delivered late enough to be overtaken (reordered), or delivered twice. All
  randomness comes from the ``random.Random`` passed in, so a seed replays the same decisions.
* ``python -m mobileip.tools.chaos relay --listen A:P --to B:P [--listen C:Q --to D:Q ...]`` runs it
  on asyncio. Each ``--listen``/``--to`` pair is a *face*: the member whose real address is
  ``B:P`` is known to the others as ``A:P``. A datagram that reaches face ``A:P`` from the real
  address of another face ``C:Q``'s member leaves from ``C:Q`` (its sender's face) towards
  ``B:P``, so every member sees every other one at one stable endpoint, the one it configured,
  and answers go back through the relay too. A datagram from any other source gets its own
  ephemeral socket (a UDP proxy), and whatever comes back to that socket goes back to it.
* ``python -m mobileip.tools.chaos load`` is a windowed registration client that records every
  request and its fate (accepted, denied, no reply), deregistrations included, as JSON;
  :func:`judge` compares such a record with the members' binding tables: what was accepted
  and is missing (lost), what was deregistered and came back (resurrected),
  what nobody asked for (foreign).

Why one file of ~570 lines: one scenario (members, load, faults, checks) run in order; a tool,
not part of the daemon.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import random
import select
import signal
import socket
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from ipaddress import IPv4Address, IPv4Network
from typing import cast

from mobileip.agents.client import MobileNode, build_request, check_reply
from mobileip.core.replay import ntp_from_unix
from mobileip.core.security import SecurityAssociation

Address = tuple[str, int]

# --- the decision core (sans-IO) ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChaosSettings:
    """Probabilities (0-1) per datagram and the base one-way delay in seconds."""

    loss: float = 0.0
    dup: float = 0.0
    reorder: float = 0.0
    delay: float = 0.0  # each copy waits delay * uniform(0.5, 1.5)
    reorder_delay: float = 0.02  # a reordered copy waits this much longer (times uniform(1, 2))

    def check(self) -> None:
        for name in ("loss", "dup", "reorder"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"--{name} must be between 0 and 1, not {value}")
        if self.delay < 0 or self.reorder_delay < 0:
            raise ValueError("delays must not be negative")


@dataclass
class ChaosCounters:
    received: int = 0
    dropped: int = 0
    duplicated: int = 0
    reordered: int = 0
    delivered: int = 0


class ChaosCore:
    """Decides, per datagram, after which delays its copies are delivered (none: lost)."""

    def __init__(self, settings: ChaosSettings, rng: random.Random) -> None:
        settings.check()
        self.settings = settings
        self.rng = rng
        self.counters = ChaosCounters()

    def plan(self) -> tuple[float, ...]:
        s, rng, c = self.settings, self.rng, self.counters
        c.received += 1
        if rng.random() < s.loss:
            c.dropped += 1
            return ()
        copies = 1
        if rng.random() < s.dup:
            copies = 2
            c.duplicated += 1
        delays = []
        for _ in range(copies):
            delay = s.delay * (0.5 + rng.random())
            if rng.random() < s.reorder:
                delay += s.reorder_delay * (1.0 + rng.random())
                c.reordered += 1
            delays.append(delay)
        c.delivered += copies
        return tuple(delays)


# --- the relay on asyncio ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Face:
    public: Address  # where the others send to reach this member
    real: Address  # where the member really is


class _Socket(asyncio.DatagramProtocol):
    def __init__(self, relay: Relay, face: int | None, client: Address | None = None) -> None:
        self.relay = relay
        self.face = face
        self.client = client
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        src = (str(addr[0]), int(str(addr[1])))
        if self.client is None:
            assert self.face is not None
            self.relay.on_face(self.face, data, src)
        else:
            self.relay.on_proxy(self, data)

    def error_received(self, exc: Exception) -> None:
        self.relay.stats["socket-errors"] += 1


def _factory(sock: _Socket) -> Callable[[], _Socket]:
    return lambda: sock


class Relay:
    """Forwards datagrams between faces through a :class:`ChaosCore`."""

    def __init__(self, faces: Sequence[Face], core: ChaosCore) -> None:
        self.faces = list(faces)
        self.core = core
        self.stats: Counter[str] = Counter()
        self._sockets: list[_Socket] = []
        self._by_real = {f.real: i for i, f in enumerate(self.faces)}
        self._proxies: dict[tuple[Address, int], _Socket] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        for i, face in enumerate(self.faces):
            sock = _Socket(self, i)
            await self._loop.create_datagram_endpoint(_factory(sock), local_addr=face.public)
            self._sockets.append(sock)

    def close(self) -> None:
        for sock in [*self._sockets, *self._proxies.values()]:
            if sock.transport is not None:
                sock.transport.close()

    def on_face(self, face: int, data: bytes, src: Address) -> None:
        sender = self._by_real.get(src)
        if sender == face:
            self.stats["to-own-face"] += 1
            return
        if sender is not None:
            self.stats["member-to-member"] += 1
            self._forward(self._sockets[sender], data, self.faces[face].real)
            return
        key = (src, face)
        proxy = self._proxies.get(key)
        if proxy is None:
            proxy = _Socket(self, face, client=src)
            self._proxies[key] = proxy
            assert self._loop is not None
            self._loop.create_task(self._open_proxy(proxy, data))
            return
        self.stats["client-to-member"] += 1
        self._forward(proxy, data, self.faces[face].real)

    async def _open_proxy(self, proxy: _Socket, first: bytes) -> None:
        assert self._loop is not None and proxy.face is not None
        host = self.faces[proxy.face].public[0]
        await self._loop.create_datagram_endpoint(_factory(proxy), local_addr=(host, 0))
        self.stats["client-to-member"] += 1
        self._forward(proxy, first, self.faces[proxy.face].real)

    def on_proxy(self, proxy: _Socket, data: bytes) -> None:
        assert proxy.face is not None and proxy.client is not None
        self.stats["member-to-client"] += 1
        self._forward(self._sockets[proxy.face], data, proxy.client)

    def _forward(self, via: _Socket, data: bytes, dest: Address) -> None:
        assert self._loop is not None
        for delay in self.core.plan():
            if delay <= 0:
                self._send(via, data, dest)
            else:
                self._loop.call_later(delay, self._send, via, data, dest)

    def _send(self, via: _Socket, data: bytes, dest: Address) -> None:
        if via.transport is not None and not via.transport.is_closing():
            via.transport.sendto(data, dest)

    def summary(self) -> dict[str, object]:
        return {**asdict(self.core.counters), **dict(self.stats)}


def parse_address(text: str, default_port: int = 434) -> Address:
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = text, str(default_port)
    try:
        IPv4Address(host)
    except ValueError:
        raise ValueError(f"{text!r}: {host!r} is not an IPv4 address") from None
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r}: bad port {port!r}")
    return host, int(port)


async def run_relay(faces: Sequence[Face], settings: ChaosSettings, seed: int) -> Relay:
    relay = Relay(faces, ChaosCore(settings, random.Random(seed)))
    await relay.start()
    listening = " ".join(f"{f.public[0]}:{f.public[1]}->{f.real[0]}:{f.real[1]}" for f in faces)
    print(f"chaos.relay listening {listening} seed={seed}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    relay.close()
    print("chaos.relay stopped " + json.dumps(relay.summary(), sort_keys=True), flush=True)
    return relay


def _relay_main(args: argparse.Namespace) -> int:
    if len(args.listen) != len(args.to):
        print("mobileip.tools.chaos relay: give one --to per --listen", file=sys.stderr)
        return 2
    try:
        faces = [
            Face(parse_address(a), parse_address(b))
            for a, b in zip(args.listen, args.to, strict=True)
        ]
        settings = ChaosSettings(args.loss, args.dup, args.reorder, args.delay_ms / 1000.0)
        settings.check()
    except ValueError as exc:
        print(f"mobileip.tools.chaos relay: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(run_relay(faces, settings, args.seed))
    except OSError as exc:
        print(f"mobileip.tools.chaos relay: {exc}", file=sys.stderr)
        return 1
    return 0


# --- the recording load client -----------------------------------------------------------------


@dataclass
class Request:
    """One registration request and what became of it."""

    home: str
    ident: int
    lifetime: int  # 0: a deregistration
    sent: float  # seconds since the start of the run
    outcome: str = "no-reply"  # accepted | denied | no-reply
    code: int | None = None
    replied: float | None = None
    late: bool = False  # the reply came after the client had given up waiting


_PREFIX = IPv4Network("10.1.0.0/16")
_COA = IPv4Address("192.0.2.10")


@dataclass(frozen=True, slots=True)
class LoadPlan:
    ha: Address
    mobile_nodes: int
    spi: int
    key: bytes
    home_agent: IPv4Address
    home_prefix: IPv4Network = _PREFIX
    first_host: int = 100
    care_of_address: IPv4Address = _COA
    lifetime: int = 1800
    duration: float = 10.0
    rate: float = 100.0
    window: int = 16
    timeout: float = 0.5
    dereg: float = 0.2  # probability that a registered mobile node's next request deregisters
    seed: int = 0


def run_load(plan: LoadPlan) -> list[Request]:
    """Drive ``plan`` against the Home Agent; every request with its fate, in sending order."""
    rng = random.Random(plan.seed)
    base = int(plan.home_prefix.network_address) + plan.first_host
    nodes = [
        MobileNode(
            IPv4Address(base + i),
            plan.care_of_address,
            plan.home_agent,
            SecurityAssociation(plan.spi, "hmac-md5", plan.key, (plan.home_prefix,)),
        )
        for i in range(plan.mobile_nodes)
    ]
    index = {int(n.home_address): i for i, n in enumerate(nodes)}
    last_ident = [0] * len(nodes)
    registered = [False] * len(nodes)
    inflight: dict[int, Request] = {}  # node -> its request waiting for a reply
    asked: dict[tuple[int, int], Request] = {}  # (node, low 32 bits of ident) -> request
    idle = list(range(len(nodes)))
    rng.shuffle(idle)
    requests: list[Request] = []
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    start = time.monotonic()
    interval = 1.0 / plan.rate
    next_send = start
    stop_at = start + plan.duration
    try:
        while True:
            now = time.monotonic()
            if now >= stop_at and not inflight:
                break
            while now < stop_at and now >= next_send and idle and len(inflight) < plan.window:
                node = idle.pop(rng.randrange(len(idle)))
                ident = max(ntp_from_unix(time.time()), last_ident[node] + 1)
                last_ident[node] = ident
                lifetime = 0 if registered[node] and rng.random() < plan.dereg else plan.lifetime
                req = Request(str(nodes[node].home_address), ident, lifetime, now - start)
                # e.g. no route while the address moves: it counts as no reply
                with contextlib.suppress(OSError):
                    sock.sendto(build_request(nodes[node], lifetime, ident), plan.ha)
                requests.append(req)
                inflight[node] = req
                asked[(node, ident & 0xFFFFFFFF)] = req
                next_send = max(next_send + interval, now - 1.0)
            for node, req in list(inflight.items()):
                if now - start - req.sent >= plan.timeout:
                    del inflight[node]
                    idle.append(node)
            if poller.poll(10):
                while True:
                    try:
                        data = sock.recv(4096)
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError:
                        continue
                    _on_reply(
                        data,
                        time.monotonic() - start,
                        nodes,
                        index,
                        asked,
                        inflight,
                        idle,
                        registered,
                    )
    finally:
        sock.close()
    return requests


def _on_reply(
    data: bytes,
    at: float,
    nodes: list[MobileNode],
    index: dict[int, int],
    asked: dict[tuple[int, int], Request],
    inflight: dict[int, Request],
    idle: list[int],
    registered: list[bool],
) -> None:
    if len(data) < 20 or data[0] != 3:
        return
    node = index.get(int.from_bytes(data[4:8], "big"))
    if node is None:
        return
    req = asked.get((node, int.from_bytes(data[16:20], "big")))
    if req is None or req.replied is not None:
        return  # not ours, or a duplicate reply
    check = check_reply(nodes[node], data, req.ident)
    if not check.ok or check.reply is None or not check.authenticated:
        return
    req.code = check.reply.code
    req.replied = at
    req.outcome = "accepted" if req.code in (0, 1) else "denied"
    if inflight.get(node) is req:
        del inflight[node]
        idle.append(node)
    else:
        req.late = True
    if req.outcome == "accepted":
        registered[node] = req.lifetime > 0


def max_outage(requests: Iterable[Request], duration: float) -> float:
    """The longest time within the run without any accepted reply arriving."""
    times = sorted(r.replied for r in requests if r.outcome == "accepted" and r.replied is not None)
    edges = [0.0, *times, duration]
    return max(b - a for a, b in itertools.pairwise(edges))


def _load_main(args: argparse.Namespace) -> int:
    try:
        ha = parse_address(args.ha)
        plan = LoadPlan(
            ha=ha,
            mobile_nodes=args.mobile_nodes,
            spi=args.spi,
            key=bytes.fromhex(args.key),
            home_agent=IPv4Address(args.home_agent_address or ha[0]),
            home_prefix=IPv4Network(args.home_prefix),
            first_host=args.first_host,
            duration=args.duration,
            rate=args.rate,
            window=args.window,
            timeout=args.timeout,
            dereg=args.dereg,
            seed=args.seed,
        )
        if plan.mobile_nodes < 1 or plan.window < 1 or plan.rate <= 0 or plan.duration <= 0:
            raise ValueError("--mobile-nodes, --window, --rate and --duration must be positive")
    except ValueError as exc:
        print(f"mobileip.tools.chaos load: {exc}", file=sys.stderr)
        return 2
    requests = run_load(plan)
    out = {
        "requests": [asdict(r) for r in requests],
        "max_outage": max_outage(requests, plan.duration),
    }
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    return 0


# --- the judge ---------------------------------------------------------------------------------


@dataclass
class Verdict:
    """What one member's table says about a load run (lists of home addresses)."""

    accepted: int = 0  # requests with an accepted reply
    lost: list[str] = field(default_factory=list)  # an accepted registration is missing/older
    resurrected: list[str] = field(default_factory=list)  # an accepted deregistration undone
    foreign: list[str] = field(default_factory=list)  # a binding nobody asked for

    @property
    def ok(self) -> bool:
        return not (self.lost or self.resurrected or self.foreign)


def judge(requests: Iterable[Request], table: Mapping[str, int]) -> Verdict:
    """Compare a load run with one member's table (home address -> identification of its live
    binding). A request without a reply may or may not have taken effect; one that was accepted
    must be reflected, unless a later request without a reply superseded it."""
    verdict = Verdict()
    by_home: dict[str, list[Request]] = {}
    for req in requests:
        by_home.setdefault(req.home, []).append(req)
        if req.outcome == "accepted":
            verdict.accepted += 1
    for home in table:
        if home not in by_home:
            verdict.foreign.append(home)
    for home, reqs in by_home.items():
        reqs.sort(key=lambda r: r.ident)
        accepted = [r for r in reqs if r.outcome == "accepted"]
        last = accepted[-1] if accepted else None
        after = [
            r for r in reqs if r.outcome == "no-reply" and (last is None or r.ident > last.ident)
        ]
        have = table.get(home)
        if have is None:
            if last is not None and last.lifetime > 0 and not any(r.lifetime == 0 for r in after):
                verdict.lost.append(home)
            continue
        match = next((r for r in reqs if r.ident == have), None)
        if match is None or match.lifetime == 0:
            verdict.foreign.append(home)
        elif last is None or match is last or any(r is match for r in after):
            continue
        elif last.lifetime == 0:
            verdict.resurrected.append(home)
        else:
            verdict.lost.append(home)
    return verdict


def requests_from_json(data: Sequence[Mapping[str, object]]) -> list[Request]:
    return [Request(**dict(d)) for d in data]  # type: ignore[arg-type]


# --- command line ------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mobileip.tools.chaos", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    relay = sub.add_parser("relay", help="a lossy, reordering, duplicating UDP relay")
    relay.add_argument("--listen", action="append", required=True, metavar="A:P")
    relay.add_argument("--to", action="append", required=True, metavar="B:P")
    relay.add_argument("--loss", type=float, default=0.0)
    relay.add_argument("--dup", type=float, default=0.0)
    relay.add_argument("--reorder", type=float, default=0.0)
    relay.add_argument("--delay-ms", type=float, default=0.0)
    relay.add_argument("--seed", type=int, default=0)
    load = sub.add_parser("load", help="recording registration load (JSON on stdout)")
    load.add_argument("--ha", required=True, help="HOST[:PORT] to send to")
    load.add_argument("--home-agent-address", help="Home Agent field (default: the --ha host)")
    load.add_argument("--mobile-nodes", type=int, default=50)
    load.add_argument("--spi", type=lambda s: int(s, 0), required=True)
    load.add_argument("--key", required=True, help="MN-HA key (hmac-md5), hex")
    load.add_argument("--home-prefix", default="10.1.0.0/16")
    load.add_argument("--first-host", type=int, default=100)
    load.add_argument("--duration", type=float, default=10.0)
    load.add_argument("--rate", type=float, default=100.0, help="requests per second")
    load.add_argument("--window", type=int, default=16, help="requests in flight at most")
    load.add_argument("--timeout", type=float, default=0.5)
    load.add_argument("--dereg", type=float, default=0.2, help="share of deregistrations")
    load.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "relay":
        return _relay_main(args)
    return _load_main(args)


if __name__ == "__main__":
    raise SystemExit(main())

__all__ = [
    "ChaosCore",
    "ChaosSettings",
    "Face",
    "LoadPlan",
    "Relay",
    "Request",
    "Verdict",
    "judge",
    "main",
    "max_outage",
    "run_load",
]
