"""``mobileip bench``: the benchmark suite, in one process tree on this machine.

The bench process runs the load generator (:mod:`mobileip.tools.loadgen`) itself and starts every
server as a subprocess on its own 127.0.0.x address:

* ``python -m mobileip.tools.bench echo HOST:PORT``: the baseline, a bare asyncio UDP echo server on
  the same event loop the Home Agent uses (uvloop when installed); the load generator checks the
  authenticator of each echoed request, so it does the same work per reply as against a Home Agent;
* ``python -m mobileip.tools.bench serve --config FILE [--fill N]``: the real daemon
  (:func:`mobileip.compose.homeagent.build_daemon`, the same code as ``mobileip homeagent``) plus
  two read-only routes for the measurements: ``/api/v1/bench/sync`` (when the sync engine started,
  when it first reported SYNCED, resident memory at both moments) and ``/api/v1/bench/ack-latency``
  (the engine's own Binding Update ack latencies). ``--fill N`` puts N synthetic records (one
  binding each, the shape an accepted registration leaves) straight into the table before the
  daemon serves: the *test-only bulk path* that makes a 1,000,000-binding member in seconds.

Measurements (medians over ``repeats`` runs, interleaved so drift hits every scenario alike):

* registrations/s: echo baseline, one HA alone, one HA with two ``async`` peers, the same in
  ``semisync`` (load always goes to the first member); ratios to the baseline of the same run;
* bulk sync: a member filled with N records, then a booting member that names it as its peer;
  the time from the booting member's engine start to its first SYNCED (the engine's own state,
  polled every 2 ms inside that process);
* memory per binding: the booting member's resident set size after SYNCED minus before its
  download, divided by the records it downloaded;
* sync lag: the sync engine's ack latency (from a Binding Update's first send to each peer's ack,
  which the peer sends after applying it) at a fixed offered rate to an ``async`` member;
* failover (root only; :mod:`mobileip.tools.failover_bench`): the lab's scaled machinery
  (``mobileip lab --mobile-nodes N``) at 1,000 and 10,000 bindings (full: also 100,000 and
  1,000,000): how the table was filled and how long it took, each sampled node's outage after
  SIGKILL of the active (median, worst), a booting standby's install cost per binding (SYNCED to
  installed = table), and after 10,000 registrations at 5,000/s the time until each member's
  installed state equals its table. Without root it is skipped with the reason.

* forwarding (root only; :mod:`mobileip.tools.forwarding_bench`): packets/s and Mbit/s at 64
  and 1,400 bytes through plain kernel forwarding (the ceiling), the userspace backend and the
  kernel backend (inside User-Mode Linux where this kernel lacks ipip/gre), each as a ratio to
  the ceiling of the same kernel; install cost and memory per binding of both backends.

``--only SECTION`` (repeatable: throughput, lag, bulk, failover, forwarding) runs a part;
``--failover-sizes 10,100,1000`` and ``--failover-budget S`` tune the failover section.

Why one file of ~820 lines: it is the command that runs the sections and writes one report
(text, JSON, chart); each section's own machinery lives in its module (loadgen,
failover_bench, forwarding_bench), and what stays here is the registration-path sections and
the report.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

from mobileip.daemon.memory import status_kib
from mobileip.tools.failover_bench import FailoverPlan, format_failover, run_failover
from mobileip.tools.forwarding_bench import ForwardingPlan, format_forwarding, run_forwarding
from mobileip.tools.loadgen import LoadResult, LoadSpec, run_load

KEY = "00112233445566778899aabbccddeeff"
SPI = 256
SYNC_KEY = "5a" * 32
SYNC_SPI = 1000
HA_ADDRESS = "10.1.0.1"
PREFIX = "10.1.0.0/16"
HOST_BASE = 140  # servers listen on 127.0.0.140 and up


# --- settings ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BenchPlan:
    repeats: int
    duration: float  # seconds per throughput run
    mobile_nodes: int
    window: int
    bulk_sizes: tuple[int, ...]
    lag_rate: float
    lag_duration: float
    log_level: str = "warning"
    # also bulk-sync the largest table with this [redundancy] payload_budget (loopback MTU)
    tuned_budget: int | None = None
    failover: bool = True  # the failover section (root only)
    failover_sizes: tuple[int, ...] = (1_000, 10_000)
    failover_budget: float = 300.0  # seconds per size, predicted from the previous size
    failover_virtual_mac: bool = True  # [dataplane] virtual_mac in the failover lab
    failover_digest_interval: float | None = None  # [redundancy] digest_interval (None: lab's)
    sections: tuple[str, ...] = ("throughput", "lag", "bulk", "failover", "forwarding")

    @classmethod
    def full(cls) -> BenchPlan:
        sizes = (100_000, 1_000_000)
        return cls(
            5, 5.0, 20_000, 128, sizes, 5000.0, 10.0, tuned_budget=8000,
            failover_sizes=(1_000, 10_000, 100_000, 1_000_000), failover_budget=900.0,
        )  # fmt: skip

    @classmethod
    def quick(cls) -> BenchPlan:
        # forwarding only when asked for (--only forwarding): it boots UML, ~25 s more
        return cls(2, 1.5, 5_000, 128, (20_000, 100_000), 5000.0, 3.0,
                   sections=("throughput", "lag", "bulk", "failover"))  # fmt: skip


@dataclass
class BenchReport:
    plan: BenchPlan
    loop: str
    machine: str
    throughput: dict[str, list[float]] = field(default_factory=dict)
    # CPU time all the scenario's servers used per verified reply (user + system, microseconds)
    cpu_us: dict[str, list[float]] = field(default_factory=dict)
    load_details: dict[str, list[dict[str, object]]] = field(default_factory=dict)
    bulk: dict[str, dict[str, float]] = field(default_factory=dict)
    lag: dict[str, float] = field(default_factory=dict)
    failover: dict[str, Any] = field(default_factory=lambda: {"skipped": "not measured"})
    forwarding: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def median(self, name: str) -> float:
        runs = self.throughput.get(name) or []
        return statistics.median(runs) if runs else math.nan

    def as_dict(self) -> dict[str, object]:
        base = self.median("echo")
        alone = self.median("ha")
        rows = {}
        for name in SCENARIOS:
            med = self.median(name)
            cpu = self.cpu_us.get(name) or []
            rows[name] = {
                "median_per_s": round(med, 1),
                "server_cpu_us_per_reg": round(statistics.median(cpu), 1) if cpu else None,
                "runs_per_s": [round(x, 1) for x in self.throughput.get(name, [])],
                "ratio_to_echo": round(med / base, 3) if base else None,
                "ratio_to_ha_alone": round(med / alone, 3) if alone else None,
            }
        return {
            "machine": self.machine,
            "loop": self.loop,
            "plan": {
                "repeats": self.plan.repeats,
                "duration_s": self.plan.duration,
                "mobile_nodes": self.plan.mobile_nodes,
                "window": self.plan.window,
                "log_level": self.plan.log_level,
            },
            "throughput": rows,
            "bulk_sync": self.bulk,
            "sync_lag": self.lag,
            "failover": self.failover,
            "forwarding": self.forwarding,
            "notes": self.notes,
        }


SCENARIOS = ("echo", "ha", "async", "semisync")
LABELS = {
    "echo": "asyncio UDP echo (baseline)",
    "ha": "HA alone",
    "async": "HA + 2 peers, async",
    "semisync": "HA + 2 peers, semisync",
}


def machine_description() -> str:
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    py = sys.version.split()[0]
    return f"{os.cpu_count()} x {model}, Linux {os.uname().release}, Python {py}"


def loop_name() -> str:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


# --- child processes ---------------------------------------------------------------------------


def _free_port(host: str, kind: socket.SocketKind = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    udp: tuple[str, int]
    control: tuple[str, int] | None = None

    def get(self, path: str, timeout: float = 30.0) -> Any:
        from mobileip.agents.client import fetch_json

        assert self.control is not None
        return fetch_json(self.control, path, timeout=timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Children:
    """Every server the bench started; all are stopped at the end, whatever happens."""

    def __init__(self, directory: Path, log_level: str) -> None:
        self.dir = directory
        self.log_level = log_level
        self.children: list[Child] = []
        self._next_host = HOST_BASE

    def host(self) -> str:
        host = f"127.0.0.{self._next_host}"
        self._next_host += 1
        return host

    def _spawn(self, name: str, args: list[str]) -> tuple[subprocess.Popen[bytes], Path]:
        log_path = self.dir / f"{name}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "mobileip.tools.bench", *args], stdout=log, stderr=log
            )
        return proc, log_path

    def echo(self) -> Child:
        host = self.host()
        port = _free_port(host)
        proc, log_path = self._spawn("echo", ["echo", f"{host}:{port}"])
        child = Child("echo", proc, log_path, (host, port))
        self.children.append(child)
        _wait_echo(child)
        return child

    def group(
        self, name: str, n: int, mode: str | None, fill: tuple[int, ...] = (), wait: bool = True
    ) -> list[Child]:
        """``n`` daemons; with ``mode`` they form one redundancy group of unicast peers."""
        hosts = [self.host() for _ in range(n)]
        sync_ports = [_free_port(h) for h in hosts]
        endpoints = [f"{h}:{p}" for h, p in zip(hosts, sync_ports, strict=True)]
        members = []
        for i, host in enumerate(hosts):
            peers = [e for j, e in enumerate(endpoints) if j != i]
            cfg = member_config(host, sync_ports[i], peers, mode)
            member = self.start_member(f"{name}{i}", cfg, fill[i] if i < len(fill) else 0)
            members.append(member)
        if wait and mode is not None:
            for m in members:
                _wait_state(m, "SYNCED", 60.0)
        return members

    def start_member(self, name: str, cfg: dict[str, Any], fill: int = 0) -> Child:
        from mobileip.config import to_toml

        path = self.dir / f"{name}.toml"
        path.write_text(to_toml(cfg))
        args = ["serve", "--config", str(path), "--log-level", self.log_level]
        if fill:
            args += ["--fill", str(fill)]
        proc, log_path = self._spawn(name, args)
        ha = cfg["homeagent"]
        host, _, port = str(cfg["control"]["listen"]).rpartition(":")
        child = Child(name, proc, log_path, (ha["listen"], ha["port"]), (host, int(port)))
        self.children.append(child)
        _wait_control(child, 120.0 + fill / 20_000)
        return child

    def stop(self, only: list[Child] | None = None) -> None:
        for child in list(only if only is not None else self.children):
            child.stop()
            if child in self.children:
                self.children.remove(child)


def member_config(
    host: str, sync_port: int, peers: list[str], mode: str | None, budget: int | None = None
) -> dict[str, Any]:
    """A daemon on ``host`` with free ports; with ``mode``, a [redundancy] section."""
    cfg: dict[str, Any] = {
        "homeagent": {
            "address": HA_ADDRESS,
            "listen": host,
            "port": _free_port(host),
            "max_lifetime": 1800,
            "replay": "timestamp",
        },
        "security_association": [
            {"spi": SPI, "algorithm": "hmac-md5", "key": KEY, "home_addresses": [PREFIX]}
        ],
        "control": {"listen": f"{host}:{_free_port(host, socket.SOCK_STREAM)}"},
    }
    if mode is not None:
        cfg["redundancy"] = {
            "node_id": host,
            "listen": host,
            "port": sync_port,
            "peers": peers,
            "spi": SYNC_SPI,
            "key": SYNC_KEY,
            "mode": mode,
            "boot_wait": 0.3,
        }
        if budget is not None:
            cfg["redundancy"]["payload_budget"] = budget
    return cfg


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds the processes ``pids`` have used so far (/proc/PID/stat)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


def _wait_control(child: Child, timeout: float) -> None:
    from mobileip.agents.client import ControlError

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.proc.poll() is not None:
            raise RuntimeError(f"{child.name} exited:\n{child.log_path.read_text()[-2000:]}")
        try:
            child.get("/healthz", timeout=2.0)
            return
        except ControlError:
            time.sleep(0.02)
    raise RuntimeError(f"{child.name}: control API did not answer in {timeout:.0f} s")


def _wait_state(child: Child, state: str, timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if child.get("/api/v1/redundancy").get("state") == state:
            return time.monotonic() - start
        time.sleep(0.02)
    raise RuntimeError(f"{child.name} not {state} after {timeout:.0f} s")


def _wait_echo(child: Child, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.1)
        while time.monotonic() < deadline:
            if child.proc.poll() is not None:
                raise RuntimeError(f"echo exited:\n{child.log_path.read_text()[-2000:]}")
            with contextlib.suppress(OSError):
                s.sendto(b"ping", child.udp)
                if s.recvfrom(100)[0] == b"ping":
                    return
    raise RuntimeError("echo server did not answer")


# --- measurements ------------------------------------------------------------------------------


def _spec(target: tuple[str, int], plan: BenchPlan, echo: bool = False, **kw: Any) -> LoadSpec:
    values: dict[str, Any] = {
        "ha": target,
        "mobile_nodes": plan.mobile_nodes,
        "spi": SPI,
        "key": bytes.fromhex(KEY),
        "home_agent_address": IPv4Address(HA_ADDRESS),
        "home_prefix": IPv4Network(PREFIX),
        "duration": plan.duration,
        "window": plan.window,
        "echo": echo,
    }
    values.update(kw)
    return LoadSpec(**values)


def _summary(res: LoadResult) -> dict[str, object]:
    d = res.as_dict()
    return {k: d[k] for k in ("sent", "replies", "accepted", "timeouts", "codes", "latency_ms")}


def measure_throughput(kids: Children, plan: BenchPlan, report: BenchReport, say: Any) -> None:
    groups: dict[str, list[Child]] = {
        "echo": [kids.echo()],
        "ha": kids.group("alone", 1, None),
        "async": kids.group("async", 3, "async"),
        "semisync": kids.group("semi", 3, "semisync"),
    }
    targets = {name: members[0] for name, members in groups.items()}
    # warm up each once (first registrations create records; later runs re-register)
    for name, child in targets.items():
        run_load(_spec(child.udp, plan, echo=name == "echo", duration=min(1.0, plan.duration)))
    for r in range(plan.repeats):
        for name in SCENARIOS:
            pids = [m.proc.pid for m in groups[name]]
            cpu0 = cpu_seconds(pids)
            res = run_load(_spec(targets[name].udp, plan, echo=name == "echo"))
            cpu_us = (cpu_seconds(pids) - cpu0) / max(1, res.replies) * 1e6
            report.throughput.setdefault(name, []).append(res.throughput)
            report.cpu_us.setdefault(name, []).append(cpu_us)
            report.load_details.setdefault(name, []).append(_summary(res))
            say(
                f"  run {r + 1}/{plan.repeats} {LABELS[name]:<28} {res.throughput:10,.0f}/s"
                f"  servers' CPU {cpu_us:6.1f} us/registration"
            )
            if res.invalid or res.timeouts:
                say(f"    invalid {dict(res.invalid)} timeouts {res.timeouts}")
    kids.stop()


def measure_lag(kids: Children, plan: BenchPlan, report: BenchReport, say: Any) -> None:
    members = kids.group("lag", 3, "async")
    first = members[0]
    first.get("/api/v1/bench/ack-latency")  # drain the boot's samples
    res = run_load(
        _spec(first.udp, plan, rate=plan.lag_rate, duration=plan.lag_duration, window=1024)
    )
    lat = first.get("/api/v1/bench/ack-latency")
    time.sleep(0.5)
    counts = [m.get("/api/v1/redundancy").get("bindings") for m in members]
    report.lag = {
        "offered_per_s": plan.lag_rate,
        "achieved_per_s": round(res.throughput, 1),
        "acks": lat["count"],
        "p50_ms": lat["p50_ms"],
        "p99_ms": lat["p99_ms"],
        "max_ms": lat["max_ms"],
        "reply_p99_ms": _summary(res)["latency_ms"]["p99"],  # type: ignore[index]
    }
    say(
        f"  sync lag at {plan.lag_rate:,.0f}/s offered ({res.throughput:,.0f}/s answered): "
        f"ack p50 {lat['p50_ms']} ms p99 {lat['p99_ms']} ms over {lat['count']} acks; "
        f"bindings per member {counts}"
    )
    kids.stop()


def measure_bulk(
    kids: Children, size: int, report: BenchReport, say: Any, budget: int | None = None
) -> None:
    """A member filled with ``size`` records, then a booting member that downloads them."""
    src_host, boot_host = kids.host(), kids.host()
    src_port, boot_port = _free_port(src_host), _free_port(boot_host)
    src_cfg = member_config(src_host, src_port, [f"{boot_host}:{boot_port}"], "async", budget)
    boot_cfg = member_config(boot_host, boot_port, [f"{src_host}:{src_port}"], "async", budget)
    t0 = time.monotonic()
    source = kids.start_member(f"fill{size}", src_cfg, size)
    _wait_state(source, "SYNCED", 60.0)  # nobody answers its table request: SYNCED alone
    fill_s = time.monotonic() - t0
    booting = kids.start_member(f"boot{size}", boot_cfg)
    deadline = time.monotonic() + 300.0
    info: dict[str, Any] = {}
    while time.monotonic() < deadline:
        info = booting.get("/api/v1/bench/sync")
        if info.get("synced_at") is not None:
            break
        time.sleep(0.05)
    else:
        raise RuntimeError(f"booting member not SYNCED with {size} bindings")
    records = int(booting.get("/api/v1/redundancy")["records"])
    rss_delta = info["rss_synced"] - info["rss_before"]
    row = {
        "bindings": records,
        "sync_s": round(info["synced_at"] - info["started_at"], 3),
        "rss_before_mb": round(info["rss_before"] / 1e6, 1),
        "rss_synced_mb": round(info["rss_synced"] / 1e6, 1),
        "bytes_per_binding": round(rss_delta / records, 1) if records else math.nan,
        "fill_s": round(fill_s, 1),
        "payload_budget": budget or 1400,
    }
    report.bulk[str(size) if budget is None else f"{size}@{budget}"] = row
    say(
        f"  bulk sync of {records:,} bindings (payload_budget {budget or 1400}): "
        f"{row['sync_s']} s; "
        f"{row['bytes_per_binding']} bytes/binding (source filled in {fill_s:.1f} s)"
    )
    kids.stop()


def measure_failover(plan: BenchPlan, report: BenchReport, say: Any) -> None:
    """The failover section (:mod:`mobileip.tools.failover_bench`; root only)."""
    fplan = FailoverPlan(
        sizes=plan.failover_sizes,
        budget_s=plan.failover_budget,
        virtual_mac=plan.failover_virtual_mac,
        digest_interval=plan.failover_digest_interval,
    )
    report.failover = run_failover(fplan, say).as_dict()


def run_bench(plan: BenchPlan, say: Any = print) -> BenchReport:
    report = BenchReport(plan, loop_name(), machine_description())
    report.notes.append(
        "tables for bulk sync are filled through the test-only bulk path (--fill: synthetic "
        "records put straight into the source member's table), not by registrations"
    )
    report.notes.append(
        f"daemons run with --log-level {plan.log_level}; the load generator shares the machine"
    )
    load = os.getloadavg()
    report.notes.append(f"load average at the start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    with tempfile.TemporaryDirectory(prefix="mobileip-bench-") as tmp:
        kids = Children(Path(tmp), plan.log_level)
        try:
            say(f"machine: {report.machine}; loop: {report.loop}")
            if "throughput" in plan.sections:
                say("throughput (registrations/s):")
                measure_throughput(kids, plan, report, say)
            if "lag" in plan.sections:
                say("sync lag:")
                measure_lag(kids, plan, report, say)
            if "bulk" in plan.sections:
                say("bulk sync:")
                for size in plan.bulk_sizes:
                    measure_bulk(kids, size, report, say)
                if plan.tuned_budget is not None:
                    measure_bulk(kids, max(plan.bulk_sizes), report, say, plan.tuned_budget)
            say("failover (the lab, scaled):")
            if plan.failover and "failover" in plan.sections:
                measure_failover(plan, report, say)
            else:
                report.failover = {"skipped": "not measured (not asked for)"}
                say("  not measured (not asked for)")
            if "forwarding" in plan.sections:
                say("forwarding (data plane):")
                fplan = ForwardingPlan.quick() if plan.repeats < 3 else ForwardingPlan()
                report.forwarding = run_forwarding(fplan, say)
        finally:
            kids.stop()
    load = os.getloadavg()
    report.notes.append(f"load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    return report


def format_report(report: BenchReport) -> str:
    d = report.as_dict()
    rows = d["throughput"]
    assert isinstance(rows, dict)
    out = [
        f"machine: {report.machine}",
        f"loop: {report.loop}; medians of {report.plan.repeats} runs of "
        f"{report.plan.duration:g} s, {report.plan.mobile_nodes} mobile nodes, "
        f"window {report.plan.window}",
        "",
    ]
    if report.throughput:
        out.append(
            f"{'scenario':<30}{'reg/s':>10}{'x echo':>9}{'x HA':>8}{'server CPU us/reg':>19}"
        )
    for name in SCENARIOS if report.throughput else ():
        r = rows[name]
        ratio_e = r["ratio_to_echo"]
        ratio_h = r["ratio_to_ha_alone"]
        cpu = r["server_cpu_us_per_reg"]
        out.append(
            f"{LABELS[name]:<30}{r['median_per_s']:>10,.0f}"
            f"{'' if ratio_e is None else f'{ratio_e:.2f}':>9}"
            f"{'' if ratio_h is None else f'{ratio_h:.2f}':>8}"
            f"{'' if cpu is None else f'{cpu:.1f}':>19}"
        )
    out.append("")
    for b in report.bulk.values():
        out.append(
            f"bulk sync {b['bindings']:>9,} bindings (payload_budget {b['payload_budget']:>4}): "
            f"{b['sync_s']:.2f} s to SYNCED, {b['bytes_per_binding']:.0f} bytes/binding (RSS)"
        )
    lag = report.lag
    if lag:
        out.append(
            f"sync lag at {lag['offered_per_s']:,.0f} reg/s offered "
            f"({lag['achieved_per_s']:,.0f}/s answered), 2 async peers: "
            f"p50 {lag['p50_ms']} ms, p99 {lag['p99_ms']} ms (engine ack latency)"
        )
    out.extend(format_failover(report.failover))
    out.extend(format_forwarding(report.forwarding))
    out.extend(f"note: {n}" for n in report.notes)
    return "\n".join(out)


def plot(report: BenchReport, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    names = list(SCENARIOS)
    meds = [report.median(n) for n in names]
    ax1.bar([LABELS[n].replace(", ", "\n") for n in names], meds, color="#4c72b0")
    for runs_i, name in enumerate(names):
        runs = report.throughput.get(name, [])
        ax1.scatter([runs_i] * len(runs), runs, color="black", s=8, zorder=3)
    ax1.set_ylabel("registrations / s (median, dots: runs)")
    ax1.set_title("Throughput")
    ax1.tick_params(axis="x", labelsize=7)
    lag = report.lag
    if lag:
        ax2.bar(["p50", "p99", "max"], [lag["p50_ms"], lag["p99_ms"], lag["max_ms"]])
        ax2.axhline(20, color="red", linestyle="--", label="target p99 20 ms")
        ax2.set_ylabel("ms")
        ax2.set_title(f"Sync ack latency at {lag['offered_per_s']:,.0f} reg/s offered")
        ax2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats (< 2 min)")
    p.add_argument("--json", action="store_true", help="print the results as JSON at the end")
    p.add_argument("--plot", metavar="FILE.png", help="write a chart (needs matplotlib)")
    p.add_argument("--log-level", default="warning", choices=("debug", "info", "warning"))
    p.add_argument(
        "--only",
        action="append",
        choices=("throughput", "lag", "bulk", "failover", "forwarding"),
        help="run only this section (repeatable)",
    )
    p.add_argument("--no-failover", action="store_true", help="skip the failover section")
    p.add_argument(
        "--failover-sizes",
        help="bindings per failover run, comma-separated (default 1000,10000; full adds "
        "100000,1000000)",
    )
    p.add_argument(
        "--failover-budget",
        type=float,
        help="skip a failover size whose predicted time exceeds this (s; default 300, full 900)",
    )
    p.add_argument(
        "--failover-no-vmac",
        action="store_true",
        help="failover lab without [dataplane] virtual_mac (the new active re-announces every "
        "bound home address)",
    )
    p.add_argument(
        "--failover-digest-interval",
        type=float,
        help="[redundancy] digest_interval in the failover lab (s; default the lab's 0.5)",
    )


def main(args: argparse.Namespace) -> int:
    plan = BenchPlan.quick() if args.quick else BenchPlan.full()
    changes: dict[str, Any] = {"log_level": args.log_level}
    if args.only:
        changes["sections"] = tuple(args.only)
    if args.no_failover:
        changes["failover"] = False
    if args.failover_no_vmac:
        changes["failover_virtual_mac"] = False
    if args.failover_digest_interval is not None:
        changes["failover_digest_interval"] = args.failover_digest_interval
    if args.failover_sizes:
        try:
            changes["failover_sizes"] = tuple(
                int(x.replace("_", "")) for x in args.failover_sizes.split(",") if x.strip()
            )
        except ValueError:
            print("mobileip bench: --failover-sizes: integers, comma-separated", file=sys.stderr)
            return 2
    if args.failover_budget is not None:
        changes["failover_budget"] = args.failover_budget
    plan = BenchPlan(**{**_fields(plan), **changes})
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print(
                "mobileip bench: --plot needs matplotlib (pip install 'mobileip[bench]')",
                file=sys.stderr,
            )
            return 2
    say = (lambda s: print(s, file=sys.stderr)) if args.json else print
    try:
        report = run_bench(plan, say)
    except (RuntimeError, OSError) as exc:
        print(f"mobileip bench: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print()
        print(format_report(report))
    if args.plot:
        plot(report, args.plot)
    return 0


def _fields(plan: BenchPlan) -> dict[str, Any]:
    return {name: getattr(plan, name) for name in BenchPlan.__slots__}


# --- the child processes' side -----------------------------------------------------------------


class _Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's UDPTransport is not a subclass of asyncio.DatagramTransport
        self.transport: Any = transport

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.transport.sendto(data, addr)


async def _echo_server(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(_Echo, local_addr=(host, port))
    sock = transport.get_extra_info("socket")
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    try:
        await stop.wait()
    finally:
        transport.close()


def _rss() -> int:
    return (status_kib("VmRSS") or 0) * 1024


def fill_table(table: Any, n: int, now: float, node_id: int) -> None:
    """The test-only bulk path: ``n`` records shaped like accepted registrations."""
    from mobileip.core.bindings import Binding, MobilityRecord, make_version
    from mobileip.core.replay import ntp_from_unix

    base = int(IPv4Address("10.0.0.0")) + 2  # consecutive home addresses from 10.0.0.2
    coa = int(IPv4Address("192.0.2.10"))
    ha = int(IPv4Address(HA_ADDRESS))
    ident = ntp_from_unix(time.time())
    version = make_version(ident >> 32, node_id)
    expires = now + 1800.0
    for i in range(n):
        binding = Binding(coa + (i & 0xFF), 1800, expires, 0)
        table.put(MobilityRecord(base + i, version, ident + i, ha, (binding,)), now)


def _serve(config_path: str, fill: int, log_level: str) -> int:
    import gc

    from mobileip.compose.homeagent import build_home_agent
    from mobileip.config import load_config
    from mobileip.daemon.homeagent import run_event_loop
    from mobileip.log import Logger

    config = load_config(config_path)
    agent = build_home_agent(config, Logger("text", log_level))
    daemon = agent.daemon
    if fill:
        fill_table(daemon.core.table, fill, time.monotonic(), int(daemon.core.settings.address))
        gc.collect()
    service = agent.redundancy
    info: dict[str, Any] = {"started_at": None, "synced_at": None}
    taken = [0]

    async def watch_sync() -> None:
        engine = service.engine if service is not None else None
        if engine is None:
            return
        info["started_at"] = time.monotonic()
        info["rss_before"] = _rss()

        async def poll() -> None:
            from mobileip.sync.engine import SyncState

            while engine.state is not SyncState.SYNCED:
                await asyncio.sleep(0.002)
            info["synced_at"] = time.monotonic()
            gc.collect()
            info["rss_synced"] = _rss()

        info["task"] = asyncio.get_running_loop().create_task(poll())

    def sync_route(_request: Any) -> dict[str, Any]:
        return {k: v for k, v in info.items() if k != "task"}

    def lag_route(_request: Any) -> dict[str, Any]:
        samples: list[float] = service.engine.ack_latencies if service and service.engine else []
        start = taken[0] if taken[0] <= len(samples) else 0
        new = sorted(samples[start:])
        taken[0] = len(samples)

        def pct(p: float) -> float | None:
            if not new:
                return None
            return round(new[max(1, math.ceil(p / 100 * len(new))) - 1] * 1000, 3)

        return {"count": len(new), "p50_ms": pct(50), "p99_ms": pct(99), "max_ms": pct(100)}

    daemon.startup_hooks.append(watch_sync)
    daemon.control.add_json_route("GET", "/api/v1/bench/sync", sync_route)
    daemon.control.add_json_route("GET", "/api/v1/bench/ack-latency", lag_route)
    run_event_loop(daemon.serve())
    return 0


def child_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m mobileip.tools.bench")
    sub = p.add_subparsers(dest="what", required=True)
    e = sub.add_parser("echo")
    e.add_argument("listen")
    s = sub.add_parser("serve")
    s.add_argument("--config", required=True)
    s.add_argument("--fill", type=int, default=0)
    s.add_argument("--log-level", default="warning")
    args = p.parse_args(argv)
    if args.what == "echo":
        from mobileip.daemon.homeagent import run_event_loop

        host, _, port = args.listen.rpartition(":")
        run_event_loop(_echo_server(host, int(port)))
        return 0
    return _serve(args.config, args.fill, args.log_level)


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1:]))
