"""Dynamic home addresses at scale across a SIGKILL: two real ``mobileip homeagent`` members on
loopback (static role driver, async sync), a /16 pool, N NAIs assigned at the active.

Measures, medians where repeated:

1. the assignment rate (0.0.0.0 + NAI, a window of requests in flight, every reply verified),
   per chunk of 10,000;
2. SIGKILL of the active, the standby switched to active (``mobileip role active``): every NAI
   asks with 0.0.0.0 again and must get its own address; a new NAI must get a free one;
3. the killed member restarted R times (killed again between): the time from its
   ``homeagent.started`` to ``sync.state SYNCED (table downloaded)`` in its log, and from the
   process spawn until its ``GET /api/v1/pools`` counts every assignment;
4. the restarted member made active: every NAI must get its own address from it too (its pool
   state came only from the bulk download).

    .venv/bin/python scripts/perf/pools_failover.py [--n 50000] [--restarts 5]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from ipaddress import IPv4Address
from pathlib import Path

from mobileip.agents.client import MobileNode, build_request, check_reply
from mobileip.config import to_toml
from mobileip.core.replay import ntp_from_unix
from mobileip.core.security import SecurityAssociation

KEY = "00112233445566778899aabbccddeeff"
SYNC_KEY = "42" * 32
SA = SecurityAssociation(600, "hmac-md5", bytes.fromhex(KEY), (), b"*@example.net", "subs")
HA = IPv4Address("127.0.0.1")
COA = IPv4Address("192.0.2.10")
ANY = IPv4Address("0.0.0.0")
HOSTS = ("127.0.0.21", "127.0.0.22")
CHUNK = 10_000


def free_port(host: str, kind: socket.SocketKind = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class Member:
    def __init__(self, work: Path, i: int, reg: int, sync: list[int], ctl: int) -> None:
        host = HOSTS[i]
        self.reg = (host, reg)
        self.ctl = ctl
        self.log = work / f"ha{i}.log"
        self.path = work / f"ha{i}.toml"
        self.config = {
            "homeagent": {"address": str(HA), "listen": host, "port": reg, "max_lifetime": 1800},
            "security_association": [
                {"spi": 600, "key": KEY, "nai": "*@example.net", "pool": "subs"}
            ],
            "pool": [{"name": "subs", "network": "10.77.0.0/16"}],
            "control": {"listen": f"127.0.0.1:{ctl}"},
            "redundancy": {
                "node_id": host, "listen": host, "port": sync[i],
                "peers": [f"{HOSTS[1 - i]}:{sync[1 - i]}"], "spi": 1000, "key": SYNC_KEY,
                "payload_budget": 8000, "boot_wait": 0.3,
            },
            "vrrp": {"driver": "static", "role": "standby"},
        }  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, role: str) -> float:
        self.config["vrrp"]["role"] = role  # type: ignore[index]
        self.path.write_text(to_toml(self.config))
        out = self.log.open("a")
        argv = [sys.executable, "-m", "mobileip", "homeagent", "--config", str(self.path)]
        spawned = time.time()
        self.proc = subprocess.Popen([*argv, "--log-format", "text"], stdout=out, stderr=out)
        return spawned

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(10)

    def api(self, path: str, method: str = "GET") -> object:
        req = urllib.request.Request(f"http://127.0.0.1:{self.ctl}{path}", method=method)
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read() or b"null")

    def synced(self) -> bool:
        return self.api("/api/v1/redundancy")["state"] == "SYNCED"  # type: ignore[index]

    def in_use(self) -> int:
        return int(self.api("/api/v1/pools")["pools"][0]["in_use"])  # type: ignore[index]

    def role(self, role: str) -> None:
        argv = [
            sys.executable,
            "-m",
            "mobileip",
            "role",
            role,
            "--control",
            f"127.0.0.1:{self.ctl}",
        ]
        subprocess.run(argv, check=True, capture_output=True)

    def download_times(self) -> list[float]:
        """homeagent.started -> SYNCED (table downloaded), per start, from the log."""
        out, start = [], None
        for line in self.log.read_text().splitlines():
            m = re.match(r"ts=\S+T(\d+):(\d+):([\d.]+)Z", line)
            if not m:
                continue
            t = int(m[1]) * 3600 + int(m[2]) * 60 + float(m[3])
            if "event=homeagent.started" in line:
                start = t
            elif "table downloaded" in line and start is not None:
                out.append(t - start)
                start = None
        return out


def wait(cond: Callable[[], bool], timeout: float = 120.0) -> float:
    t0 = time.time()
    while time.time() - t0 < timeout:
        try:
            if cond():
                return time.time() - t0
        except OSError:
            pass
        time.sleep(0.01)
    raise TimeoutError


_ident = [0]


Replies = list[tuple[int | None, str]]


def register(
    addr: tuple[str, int], mns: list[MobileNode], window: int = 128
) -> tuple[Replies, float]:
    """One request per mobile node, ``window`` in flight: (code, home) per node, requests/s."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(3.0)
    todo = list(enumerate(mns))[::-1]
    inflight: dict[int, tuple[int, MobileNode, int]] = {}
    out: Replies = [(None, "")] * len(mns)
    t0 = time.perf_counter()
    while todo or inflight:
        while todo and len(inflight) < window:
            i, mn = todo.pop()
            ident = ntp_from_unix(time.time()) + _ident[0]
            _ident[0] += 1
            inflight[ident & 0xFFFFFFFF] = (i, mn, ident)
            sock.sendto(build_request(mn, 1800, ident), addr)
        try:
            data = sock.recv(2048)
        except TimeoutError:
            inflight.clear()  # left as (None, ""): unanswered
            continue
        entry = inflight.pop(int.from_bytes(data[16:20], "big"), None)
        if entry is None:
            continue
        i, mn, ident = entry
        chk = check_reply(mn, data, ident)
        assert chk.reply is not None, chk
        out[i] = (chk.reply.code, str(chk.reply.home_address))
    took = time.perf_counter() - t0
    sock.close()
    return out, len(mns) / took


def nodes(lo: int, hi: int) -> list[MobileNode]:
    return [MobileNode(ANY, COA, HA, SA, nai=f"u{k}@example.net".encode()) for k in range(lo, hi)]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=50_000, help="NAIs assigned (at most 65,534)")
    p.add_argument("--restarts", type=int, default=5)
    args = p.parse_args()
    n = args.n
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        sync = [free_port(h) for h in HOSTS]
        members = [
            Member(work, i, free_port(HOSTS[i]), sync, free_port("127.0.0.1", socket.SOCK_STREAM))
            for i in range(2)
        ]
        a, b = members
        try:
            a.start("active")
            b.start("standby")
            wait(lambda: a.synced() and b.synced())
            rates, assigned = [], {}
            for lo in range(0, n, CHUNK):
                out, rate = register(a.reg, nodes(lo, min(n, lo + CHUNK)))
                assert all(code == 0 for code, _ in out), {code for code, _ in out}
                rates.append(rate)
                assigned.update({lo + k: home for k, (_, home) in enumerate(out)})
            assert len(set(assigned.values())) == n, "an address assigned twice"
            each = ", ".join(f"{r:,.0f}" for r in rates)
            print(f"assignment rate, {n} NAIs in chunks of {CHUNK}: median "
                  f"{statistics.median(rates):,.0f}/s ({each})")  # fmt: skip
            lag = wait(lambda: b.in_use() == n)
            print(f"standby counts all {n} assignments {lag:.2f} s after the last reply")
            t0 = time.perf_counter()
            a.api("/api/v1/pools")
            print(f"GET /api/v1/pools with {n} in use: {(time.perf_counter() - t0) * 1000:.0f} ms")

            a.kill()
            b.role("active")
            out, rate = register(b.reg, nodes(0, n))
            same = sum(1 for k, (code, home) in enumerate(out) if code == 0 and home == assigned[k])
            print(f"SIGKILL of the active: {same}/{n} NAIs got their own address from the "
                  f"survivor by 0.0.0.0 ({rate:,.0f}/s)")  # fmt: skip
            (fresh,), _ = register(b.reg, [MobileNode(ANY, COA, HA, SA, nai=b"fresh@example.net")])
            assert fresh[0] == 0, fresh
            clash = fresh[1] in set(assigned.values())
            print(f"a new NAI after the takeover: code {fresh[0]} {fresh[1]} "
                  f"({'ASSIGNED TWICE' if clash else 'a free address'})")  # fmt: skip

            spawned = []
            for r in range(args.restarts):
                t = a.start("standby")
                wait(lambda: a.synced() and a.in_use() == n + 1)
                spawned.append(time.time() - t)
                if r < args.restarts - 1:
                    a.kill()
            logged = a.download_times()
            each = ", ".join(f"{x:.2f}" for x in logged)
            print(f"restarted member, {args.restarts} times: homeagent.started -> SYNCED "
                  f"(table downloaded, {n + 1} records) median {statistics.median(logged):.2f} s "
                  f"({each}); process spawn -> GET /api/v1/pools counts all: median "
                  f"{statistics.median(spawned):.2f} s")  # fmt: skip
            b.role("standby")
            a.role("active")
            out, rate = register(a.reg, nodes(0, n))
            same = sum(1 for k, (code, home) in enumerate(out) if code == 0 and home == assigned[k])
            unanswered = sum(1 for code, _ in out if code is None)
            print(f"the restarted member made active: {same}/{n} NAIs got their own address "
                  f"({unanswered} unanswered within 3 s)")  # fmt: skip
        finally:
            for m in members:
                m.kill(signal.SIGTERM)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
