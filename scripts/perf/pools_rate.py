"""Pool assignment rate: registrations/s with dynamic home addresses against static ones, same run.

Two measurements, each alternating static and dynamic rounds and quoting medians and the ratio:

1. in process (sans-IO): one HomeAgentCore with a pool, requests prebuilt, ``handle_request``
   timed alone. Static: N mobile nodes with their own home addresses (the header-predicted
   path); static+NAI: the same with an NAI extension (the full rules); dynamic: N NAIs asking
   with 0.0.0.0 for the first time (assignment); dynamic renewal: the same NAIs renewing with
   their assigned addresses.
2. a real ``mobileip homeagent`` on loopback: the same client (a window of requests in flight,
   each reply verified) registers N static mobile nodes, then N dynamic ones (0.0.0.0 + NAI);
   registrations/s from first request to last reply.

    .venv/bin/python scripts/perf/pools_rate.py [--n 5000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import signal
import socket
import statistics
import sys
import tempfile
import time
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))

from mobileip.agents.client import MobileNode, build_request, check_reply
from mobileip.core import homeagent as ha
from mobileip.core.pools import AddressPool, AddressPools
from mobileip.core.replay import ntp_from_unix
from mobileip.core.security import SecurityAssociation, SecurityAssociations

KEY = bytes.fromhex("00112233445566778899aabbccddeeff")
STATIC = SecurityAssociation(256, "hmac-md5", KEY, (IPv4Network("10.1.0.0/16"),))
DYNAMIC = SecurityAssociation(600, "hmac-md5", KEY, (), b"*@bench.test", "bench")
HA = IPv4Address("10.1.0.1")
COA = IPv4Address("192.0.2.10")
ANY = IPv4Address("0.0.0.0")
POOL_NET = IPv4Network("10.8.0.0/16")


def _nodes(n: int, kind: str) -> list[MobileNode]:
    out = []
    for i in range(n):
        if kind == "static":
            out.append(MobileNode(IPv4Address(int(IPv4Address("10.1.1.0")) + i), COA, HA, STATIC))
        elif kind == "static+nai":
            home = IPv4Address(int(IPv4Address("10.1.1.0")) + i)
            out.append(MobileNode(home, COA, HA, STATIC, nai=f"s{i}@bench.test".encode()))
        else:
            out.append(MobileNode(ANY, COA, HA, DYNAMIC, nai=f"d{i}@bench.test".encode()))
    return out


def _core() -> ha.HomeAgentCore:
    settings = ha.HomeAgentSettings(address=HA, node_id=1, max_bindings=10_000_000)
    core = ha.HomeAgentCore(settings, SecurityAssociations([STATIC, DYNAMIC]))
    pool = AddressPool.of_network("bench", POOL_NET)
    core.pools = AddressPools([pool], core.table)
    return core


def in_process(n: int, rounds: int) -> dict[str, list[float]]:
    rates: dict[str, list[float]] = {k: [] for k in ("static", "static+nai", "dynamic", "renew")}
    wall = time.time()
    for _ in range(rounds):
        for kind in ("static", "static+nai", "dynamic"):
            core = _core()
            ident = ntp_from_unix(wall)
            reqs = [build_request(mn, 1800, ident + i) for i, mn in enumerate(_nodes(n, kind))]
            t0 = time.perf_counter()
            outs = [core.handle_request(r, 1000.0, wall) for r in reqs]
            took = time.perf_counter() - t0
            assert all(o.code == 0 for o in outs), {o.code for o in outs}
            rates[kind].append(n / took)
            if kind == "dynamic":  # the same NAIs renew with what they were given
                homes = [IPv4Address(o.reply[4:8]) for o in outs if o.reply is not None]
                later = ntp_from_unix(wall + 2)
                renewals = [
                    build_request(
                        MobileNode(h, COA, HA, DYNAMIC, nai=f"d{i}@bench.test".encode()),
                        1800,
                        later + i,
                    )
                    for i, h in enumerate(homes)
                ]
                t0 = time.perf_counter()
                outs = [core.handle_request(r, 1001.0, wall + 2) for r in renewals]
                took = time.perf_counter() - t0
                assert all(o.code == 0 for o in outs)
                rates["renew"].append(n / took)
        wall += 10
    return rates


def _register_all(addr: tuple[str, int], mns: list[MobileNode], window: int = 64) -> float:
    """Registrations/s of one request per mobile node, ``window`` in flight, replies verified."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(2.0)
    todo = list(enumerate(mns))
    inflight: dict[int, tuple[MobileNode, int]] = {}
    ident0 = ntp_from_unix(time.time())
    done = 0
    t0 = time.perf_counter()
    while todo or inflight:
        while todo and len(inflight) < window:
            i, mn = todo.pop()
            ident = ident0 + i
            inflight[ident & 0xFFFFFFFF] = (mn, ident)
            sock.sendto(build_request(mn, 1800, ident), addr)
        data = sock.recv(2048)
        low = int.from_bytes(data[16:20], "big")
        mn, ident = inflight.pop(low)
        check = check_reply(mn, data, ident)
        assert check.ok and check.reply is not None and check.reply.code == 0, check
        done += 1
    took = time.perf_counter() - t0
    sock.close()
    return done / took


def daemon(n: int, rounds: int) -> dict[str, list[float]]:
    from helpers import free_port, start_homeagent

    rates: dict[str, list[float]] = {"static": [], "dynamic": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            cfg = {
                "homeagent": {"address": str(HA), "listen": "127.0.0.1",
                              "port": free_port("127.0.0.1"), "max_lifetime": 1800},
                "security_association": [
                    {"spi": 256, "key": KEY.hex(), "home_addresses": ["10.1.0.0/16"]},
                    {"spi": 600, "key": KEY.hex(), "nai": "*@bench.test", "pool": "bench"},
                ],
                "pool": [{"name": "bench", "network": str(POOL_NET)}],
                "control": {"listen": f"127.0.0.1:{free_port('127.0.0.1', socket.SOCK_STREAM)}"},
            }  # fmt: skip
            handle = start_homeagent(Path(tmp) / f"r{r}", cfg, name="ha")
            try:
                addr = handle.address
                order = ("static", "dynamic") if r % 2 == 0 else ("dynamic", "static")
                for kind in order:
                    rates[kind].append(_register_all(addr, _nodes(n, kind)))
            finally:
                handle.stop(signal.SIGKILL)
    return rates


def _show(title: str, rates: dict[str, list[float]], base: str = "static") -> None:
    print(title)
    ref = statistics.median(rates[base])
    for kind, values in rates.items():
        med = statistics.median(values)
        print(f"  {kind:<11} median {med:>10,.0f} /s  ({med / ref:.2f}x {base})  "
              f"rounds: {', '.join(f'{v:,.0f}' for v in values)}")  # fmt: skip


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=5000, help="mobile nodes per round")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--no-daemon", action="store_true")
    args = p.parse_args()
    _show(f"in process, {args.n} requests per round:", in_process(args.n, args.rounds))
    if not args.no_daemon:
        rates = daemon(args.n, args.rounds)
        _show(f"real daemon on loopback, {args.n} mobile nodes per round, window 64:", rates)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
