"""The failover section of ``mobileip bench`` (root only): the lab's scaled machinery, measured.

For each table size N (``--quick``: 1,000 and 10,000; full: also 100,000 and 1,000,000) a lab
(:class:`mobileip.tools.lab.NetnsLab`, no real mobile node, three members under native VRRP at
0.1 s, userspace data plane) is built, and:

1. **fill**: N simulated mobile nodes register through the virtual address with the load
   generator's code (:mod:`mobileip.tools.simnodes`: one request per node, co-located care-of
   addresses); the time it took and the rate are reported, and the table is said to be filled
   that way. Then the time until the active has installed forwarding state for all N.
2. **standby install**: a third member boots, downloads the table, and the bench times from its
   SYNCED (its redundancy status ``state``) to its installed forwarding state equal to its table:
   cost per binding = that time / N. Installed state is read from ``GET
   /api/v1/dataplane?homes=0`` (O(1) fields only): ``installed`` (bindings whose forwarding state
   is installed, active or not) when the data plane has it, else ``tunnels``; the table from ``GET
   /api/v1/redundancy`` ``bindings``. When the status has ``converged_at`` (wall clock of the last
   drain that left nothing pending) the time is taken from it, not from the poll that saw it. A
   standby whose installed count does not move for ``stall_s`` is reported as not installing.
   While it downloads and installs: the new member's control-API latency (its event loop, polled
   every 0.1 s: the loop stall its install causes), registration latency on the active (a probe
   re-registering ``probe_rate``/s, against the same probe before the boot), and the new
   member's RSS before the download and after the install (memory per binding).
3. **outage**: a UDP stream to 50 sampled nodes, SIGKILL of the active; each sampled node's outage
   (median and worst) = the longest silence at its care-of address around the kill, less one
   interval; and the time from the kill until its packets arrive again.

A size is skipped (with the reason printed) when the cost per binding measured at the previous
size predicts more than ``budget_s`` for it. Then, once: 10,000 registrations at 5,000/s on the
active of a three-member lab, and per member the time from the end of the load until its
installed state equals its table.

Nothing here asserts speed; the numbers are printed (medians; ratios to the smallest size).

Why one file of ~520 lines: one measurement per table size (fill, kill, sample, report) on
:class:`~mobileip.tools.lab.NetnsLab`; a tool, not part of the daemon.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any

from mobileip.daemon.memory import status_kib
from mobileip.tools.lab import (
    KEY,
    SPI,
    VIRTUAL,
    LabError,
    NetnsLab,
    Proc,
    netns_unavailable,
)

FILL_METHOD = (
    "registrations through the virtual address by the load generator (mobileip.tools.simnodes: "
    "one authenticated request per mobile node, co-located care-of addresses)"
)


@dataclass(frozen=True, slots=True)
class FailoverPlan:
    sizes: tuple[int, ...] = (1_000, 10_000)
    budget_s: float = 300.0  # per size: skip it when the measured cost predicts more
    advert_interval: float = 0.1
    sample: int = 50
    sample_interval: float = 0.05
    load_bindings: int = 10_000  # the "registrations at a fixed rate" measurement
    load_rate: float = 5_000.0
    converge_timeout_s: float = 120.0
    stall_s: float = 10.0  # no progress of a member's installed count for this long: stop
    probe_rate: float = 200.0  # re-registrations/s on the active while a standby installs
    # the VRRP virtual MAC ([dataplane] virtual_mac, issue 13 item 2): a takeover moves one
    # MAC; without it the new active re-announces every bound home address (O(n) after takeover)
    virtual_mac: bool = True
    # [redundancy] digest_interval in the lab (None: the lab's 0.5 s). At a million bindings a
    # digest that differs (peers a little behind while the table fills) costs the member a scan
    # of its whole table on the event loop (BindingTable.bucket_records), which can stall the
    # active for seconds per digest: a longer interval lets the fill finish
    digest_interval: float | None = None

    @classmethod
    def quick(cls) -> FailoverPlan:
        return cls()

    @classmethod
    def full(cls) -> FailoverPlan:
        return cls(sizes=(1_000, 10_000, 100_000, 1_000_000), budget_s=900.0)


@dataclass
class FailoverResult:
    skipped: str | None = None
    sizes: dict[str, dict[str, Any]] = field(default_factory=dict)
    load: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        if self.skipped:
            return {"skipped": self.skipped}
        return {"sizes": self.sizes, "after_load": self.load, "notes": self.notes}


def installed_count(status: dict[str, Any]) -> tuple[int, str]:
    """The installed forwarding state in a data-plane status, and the field it came from."""
    for name in ("installed", "tunnels"):
        value = status.get(name)
        if isinstance(value, int):
            return value, name
    return 0, "none"


class BenchLab(NetnsLab):
    """The lab, with the data plane's ``virtual_mac`` as the plan says."""

    virtual_mac = False
    digest_interval: float | None = None

    def ha_config(self, node: str) -> dict[str, Any]:
        cfg = super().ha_config(node)
        if self.virtual_mac:
            cfg["dataplane"]["virtual_mac"] = True
        if self.digest_interval is not None:
            cfg["redundancy"]["digest_interval"] = self.digest_interval
        return cfg


DATAPLANE_STATUS = "/api/v1/dataplane?homes=0"  # O(1) fields, no listing of home addresses


def _status(
    lab: NetnsLab, node: str, lat: list[float] | None = None
) -> tuple[int, str, int, dict[str, Any]]:
    t = time.monotonic()
    dp = lab.control(node, DATAPLANE_STATUS, timeout=60.0)
    if lat is not None:
        lat.append(time.monotonic() - t)
    installed, source = installed_count(dp)
    table = table_count(lab, node)
    return installed, source, table, dp


def table_count(lab: NetnsLab, node: str, timeout: float = 60.0) -> int:
    """Bindings in ``node``'s table (its redundancy status; a loaded member may be slow)."""
    return int(lab.control(node, "/api/v1/redundancy", timeout=timeout).get("bindings", 0))


def latency_summary(seconds: list[float]) -> dict[str, Any]:
    """Milliseconds: median, p99, max and count of control-API round trips."""
    if not seconds:
        return {"n": 0}
    data = sorted(seconds)
    p99 = data[max(0, math.ceil(0.99 * len(data)) - 1)]
    return {"n": len(data), "p50": round(statistics.median(data) * 1e3, 1),
            "p99": round(p99 * 1e3, 1), "max": round(data[-1] * 1e3, 1)}  # fmt: skip


def wait_converged(
    lab: NetnsLab,
    node: str,
    since: float,
    timeout: float,
    stall_s: float,
    want: int | None = None,
    poll: float = 0.25,
) -> dict[str, Any]:
    """Poll ``node`` until its installed state equals its table (and ``want`` bindings) with
    nothing pending; the seconds from ``since`` (monotonic; from the status's ``converged_at``
    when it has one), or why not. ``control_ms``: the node's control-API round trips meanwhile."""
    since_wall = time.time() - (time.monotonic() - since)
    deadline = time.monotonic() + timeout
    last_change = time.monotonic()
    last = -1
    installed, source, table = 0, "none", 0
    dp: dict[str, Any] = {}
    lat: list[float] = []
    busy_wall: float | None = None  # when a poll last found it not converged
    while True:
        asked_wall = time.time()
        with contextlib.suppress(LabError, ValueError, KeyError):
            installed, source, table, dp = _status(lab, node, lat)
        now = time.monotonic()
        if installed != last:
            last, last_change = installed, now
        pending = dp.get("pending", 0)
        if table and installed == table and not pending and (want is None or table >= want):
            out = {"seconds": round(now - since, 3), "seen_s": round(now - since, 3),
                   "installed": installed, "table": table, "field": source,
                   "active": bool(dp.get("active"))}  # fmt: skip
            at = dp.get("converged_at")
            # converged_at older than a poll that saw work pending is stale: keep the poll's
            if isinstance(at, int | float) and (busy_wall is None or at >= busy_wall):
                out["seconds"] = round(max(0.0, at - since_wall), 3)
                out["converged_at_minus_since_s"] = round(at - since_wall, 3)
            for k in ("install_us_per_route", "longest_batch_ms", "longest_convergence_ms",
                      "last_convergence_ms"):  # fmt: skip
                out[k] = dp.get(k)
            out["control_ms"] = latency_summary(lat)
            return out
        busy_wall = asked_wall
        if now > deadline or now - last_change > stall_s:
            why = "timeout" if now > deadline else f"no progress for {stall_s:g} s"
            return {"seconds": None, "installed": installed, "table": table, "field": source,
                    "active": bool(dp.get("active")), "why": why, "pending": pending,
                    "waited_s": round(now - since, 1),
                    "control_ms": latency_summary(lat)}  # fmt: skip
        time.sleep(poll)


def rss_kib(lab: NetnsLab, node: str) -> int | None:
    """VmRSS of ``node``'s daemon (``ip netns exec`` execs it: same pid)."""
    proc = lab.procs.get(node)
    return None if proc is None else status_kib("VmRSS", proc.popen.pid)


TAKEOVER_LINE = re.compile(r"vrrp|role|takeover|master|garp", re.IGNORECASE)


def log_after(lab: NetnsLab, node: str, since: float, limit: int = 12) -> list[str]:
    """``node``'s log lines about its role after ``since`` (monotonic), as "+ms text": where a
    takeover's time went (the lines' times are when the bench read them from the pipe)."""
    proc = lab.procs.get(node)
    if proc is None:
        return []
    out = []
    for at, text in list(proc.lines):
        if at >= since and TAKEOVER_LINE.search(text):
            out.append(f"+{(at - since) * 1e3:.0f} ms {text[:200]}")
            if len(out) >= limit:
                break
    return out


def start_probe(lab: NetnsLab, count: int, rate: float, label: str) -> Proc:
    """Re-register the first ``count`` simulated nodes at ``rate``/s (latency in its result)."""
    argv = [lab.python, "-m", "mobileip.tools.simnodes", "register", "--ha", VIRTUAL,
            "-n", str(count), "--spi", str(SPI), "--key", KEY, "--home-agent", VIRTUAL,
            "--rate", str(rate), "--window", "64"]  # fmt: skip
    return lab.spawn("sim", argv, label)


def finish_probe(proc: Proc, timeout: float) -> dict[str, Any]:
    try:
        proc.popen.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.popen.kill()
        return {"error": "probe did not finish"}
    time.sleep(0.2)  # the reader thread takes the last line
    for _at, text in reversed(proc.lines):
        if text.startswith("{"):
            with contextlib.suppress(ValueError):
                res = dict(json.loads(text))
                return {k: res.get(k) for k in ("accepted", "timeouts", "throughput_per_s",
                                                "latency_ms")}  # fmt: skip
    return {"error": "probe printed nothing"}


def _wait_state(lab: NetnsLab, node: str, state: str, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(LabError, ValueError):
            if lab.control(node, "/api/v1/redundancy").get("state") == state:
                return time.monotonic()
        time.sleep(0.02)
    raise LabError(f"{node} not {state} after {timeout:.0f} s")


def measure_size(n: int, plan: FailoverPlan, say: Any) -> dict[str, Any]:
    lab = BenchLab(
        None, plan.advert_interval, 0.01, mobile_nodes=n, sample=plan.sample,
        sample_interval=plan.sample_interval, members=3, real_mn=False,
    )  # fmt: skip
    lab.virtual_mac = plan.virtual_mac
    lab.digest_interval = plan.digest_interval
    row: dict[str, Any] = {"bindings": n, "fill": FILL_METHOD}
    try:
        lab.build()
        for node in ("ha1", "ha2"):
            lab.start_daemon(node, "homeagent", lab.ha_config(node)).wait_for(
                "dataplane.started", 30
            )
        lab._wait(lambda: lab.active(["ha1", "ha2"]) == "ha1", 20, "ha1 never became active")
        reg = lab.register_simulated(n)
        row["registration"] = {k: reg.get(k) for k in ("accepted", "timeouts", "wall_s",
                                                       "throughput_per_s")}  # fmt: skip
        registered = time.monotonic()
        # the table holds what the active accepted, answered or not (a request whose reply
        # timed out may still have been applied): every later wait is for that many
        table_n = table_count(lab, "ha1")
        row["table"] = table_n
        say(f"    {n:,}: registered {reg.get('accepted'):,} in {reg.get('wall_s')} s "
            f"({reg.get('throughput_per_s'):,}/s, {reg.get('timeouts') or 0:,} timeouts); "
            f"{table_n:,} in the table")  # fmt: skip
        if table_n < n * 0.99:
            raise LabError(f"only {table_n:,} of {n:,} registrations in the table")
        n = table_n
        active = wait_converged(lab, "ha1", registered, lab.install_timeout(n), plan.stall_s, n)
        row["active_install"] = active
        say(f"    {n:,}: active installed {active['installed']:,}/{active['table']:,} "
            f"in {active['seconds']} s after the registrations")  # fmt: skip
        lab._wait(lambda: table_count(lab, "ha2") >= n, 30 + n / 2000, "ha2 never got the table")
        standby = wait_converged(lab, "ha2", time.monotonic(), 5.0, 3.0, n)
        row["standby_in_group"] = standby
        # registration latency on the active, idle, then while a third member downloads
        count = max(200, int(plan.probe_rate * 5))
        row["probe_idle"] = finish_probe(
            start_probe(lab, count, plan.probe_rate, "probe-idle"), 60 + count / plan.probe_rate
        )
        # a third member boots: SYNCED -> installed state equal to its table
        count = max(200, min(n, int(plan.probe_rate * (5 + n * 40e-6))))
        probe = start_probe(lab, count, plan.probe_rate, "probe-boot")
        booted = time.monotonic()
        lab.start_daemon("ha3", "homeagent", lab.ha_config("ha3")).wait_for("dataplane.started", 30)
        rss_before = rss_kib(lab, "ha3")
        synced = _wait_state(lab, "ha3", "SYNCED", 60 + n / 5000)
        inst = wait_converged(lab, "ha3", synced, lab.install_timeout(n), plan.stall_s, n, 0.1)
        inst["sync_s"] = round(synced - booted, 3)
        if inst["seconds"] is not None:
            inst["us_per_binding"] = round(inst["seconds"] / n * 1e6, 1)
        rss_after = rss_kib(lab, "ha3")
        if rss_before is not None and rss_after is not None:
            inst["rss_kib"] = {"before": rss_before, "after": rss_after}
            inst["rss_bytes_per_binding"] = round((rss_after - rss_before) * 1024 / n)
        inst["probe_during"] = finish_probe(probe, 60 + count / plan.probe_rate)
        row["standby_install"] = inst
        say(f"    {n:,}: booting standby SYNCED in {inst['sync_s']} s; installed "
            f"{inst['installed']:,}/{inst['table']:,} ({inst['field']}) "
            + (f"in {inst['seconds']} s after SYNCED" if inst["seconds"] is not None
               else f"- {inst.get('why')}"))  # fmt: skip
        say(f"    {n:,}: its control API meanwhile {inst['control_ms']}; registration latency "
            f"on the active idle {row['probe_idle'].get('latency_ms')}, during "
            f"{inst['probe_during'].get('latency_ms')}; RSS {inst.get('rss_kib')}")  # fmt: skip
        # the kill
        sample = lab.start_sample()
        time.sleep(2.0)
        row["active_before_kill"] = lab.actives()
        killed = lab.kill("ha1")
        new_active = lab.wait_new_active(["ha2", "ha3"])
        row["new_active"] = new_active
        if new_active:
            lab.wait_recovered(sample[0], lab.install_timeout(n))
        time.sleep(max(0.0, killed + 1.0 - time.monotonic()))
        summary = lab.finish_sample(sample)
        summary.pop("per_node", None)
        row["outage"] = summary
        if new_active:
            row["last_takeover_ms"] = lab.control(new_active, DATAPLANE_STATUS).get(
                "last_takeover_ms"
            )
            row["new_active_log"] = log_after(lab, new_active, killed)
        o = summary["outage_ms"]
        say(f"    {n:,}: outage median {o['median']} ms, worst {o['worst']} ms "
            f"({summary['recovered']}/{summary['sampled']} recovered; new active {new_active}, "
            f"last_takeover_ms {row.get('last_takeover_ms')})")  # fmt: skip
    finally:
        lab.teardown()
    return row


def measure_after_load(plan: FailoverPlan, say: Any) -> dict[str, Any]:
    """``load_bindings`` registrations at ``load_rate`` on the active of three members; per
    member, the time from the end of the load until its installed state equals its table."""
    n = plan.load_bindings
    lab = BenchLab(
        None, plan.advert_interval, 0.01, mobile_nodes=n, sample=0, members=3, real_mn=False
    )
    lab.virtual_mac = plan.virtual_mac
    out: dict[str, Any] = {"registrations": n, "offered_per_s": plan.load_rate}
    try:
        first = lab.start_group()
        reg = lab.register_simulated(n, rate=plan.load_rate, window=1024)
        end = time.monotonic()
        n = table_count(lab, first)  # accepted, answered or not
        out["table"] = n
        out["registration"] = {k: reg.get(k) for k in ("accepted", "timeouts", "wall_s",
                                                       "throughput_per_s")}  # fmt: skip
        out["actives_after_load"] = lab.actives()
        members: dict[str, Any] = {}
        for node in lab.priorities:
            remaining = max(5.0, plan.converge_timeout_s - (time.monotonic() - end))
            res = wait_converged(lab, node, end, remaining, plan.stall_s, n)
            res["role"] = "active" if node == first else "standby"
            members[node] = res
            say(f"    {node} ({res['role']}): installed {res['installed']:,}/{res['table']:,} "
                + (f"{res['seconds']} s after the load" if res["seconds"] is not None
                   else f"- not equal: {res.get('why')}"))  # fmt: skip
        out["members"] = members
    finally:
        lab.teardown()
    return out


def run_failover(plan: FailoverPlan, say: Any = print) -> FailoverResult:
    result = FailoverResult()
    reason = netns_unavailable()
    if reason is None and os.geteuid() != 0:
        reason = "not root"
    if reason:
        result.skipped = f"not measured ({reason}: the failover section needs network namespaces)"
        say(f"  {result.skipped}")
        return result
    result.notes.append(f"tables filled by {FILL_METHOD}")
    result.notes.append(
        "[dataplane] virtual_mac = true (a takeover moves one MAC)"
        if plan.virtual_mac
        else "no virtual MAC: the new active re-announces every bound home address"
    )
    if plan.digest_interval is not None:
        result.notes.append(f"[redundancy] digest_interval = {plan.digest_interval:g} s")
    per_binding: float | None = None
    for n in plan.sizes:
        if per_binding is not None and per_binding * n > plan.budget_s:
            why = (
                f"skipped: {per_binding * 1e3:.1f} ms per binding measured at the previous size "
                f"predicts {per_binding * n:,.0f} s > budget {plan.budget_s:,.0f} s"
            )
            result.sizes[str(n)] = {"bindings": n, "skipped": why}
            say(f"    {n:,}: {why}")
            continue
        try:
            row = measure_size(n, plan, say)
        except (LabError, OSError) as exc:
            row = {"bindings": n, "skipped": f"failed: {exc}"}
            say(f"    {n:,}: failed: {exc}")
        result.sizes[str(n)] = row
        cost = _seconds_per_binding(row)
        if cost is not None:
            per_binding = cost
    say("  after registrations at a fixed rate:")
    try:
        result.load = measure_after_load(plan, say)
    except (LabError, OSError) as exc:
        result.load = {"skipped": f"failed: {exc}"}
        say(f"    failed: {exc}")
    return result


def _seconds_per_binding(row: dict[str, Any]) -> float | None:
    """What a size cost per binding (active install + worst outage), to predict the next."""
    n = row.get("bindings") or 0
    if not n or "outage" not in row:
        return None
    install = (row.get("active_install") or {}).get("seconds") or 0.0
    worst = (row["outage"].get("outage_ms") or {}).get("worst") or 0.0
    return float(install + worst / 1000.0) / n


def format_failover(data: dict[str, Any]) -> list[str]:
    """The report's lines for the failover section (``data``: :meth:`FailoverResult.as_dict`)."""
    if "skipped" in data:
        return [f"failover: {data['skipped']}"]
    out = ["failover (lab: 3 members, native VRRP, userspace data plane; SIGKILL of the active):"]
    out.append(
        f"  {'bindings':>10} {'fill s':>8} {'fill/s':>8} {'outage med':>11} {'worst':>9} "
        f"{'x 1st':>6} {'back worst':>11} {'standby us/b':>13} {'ready s':>8} {'loop max':>9}"
    )
    base: float | None = None
    for row in data.get("sizes", {}).values():
        n = row["bindings"]
        if "skipped" in row:
            out.append(f"  {n:>10,} {row['skipped']}")
            continue
        reg = row.get("registration") or {}
        o = row["outage"]["outage_ms"]
        back = row["outage"]["recovered_after_kill_ms"]
        worst = o.get("worst")
        if base is None and worst:
            base = worst
        ratio = f"{worst / base:.1f}" if base and worst else "-"
        inst = row.get("standby_install") or {}
        per = inst.get("us_per_binding")
        standby = (
            f"{per:,.1f}"
            if per is not None
            else f"never ({inst.get('installed', 0):,}/{inst.get('table', 0):,})"
        )
        loop = (inst.get("control_ms") or {}).get("max")
        out.append(
            f"  {n:>10,} {_num(reg.get('wall_s')):>8} {_num(reg.get('throughput_per_s'), 0):>8} "
            f"{_num(o.get('median'), 0):>8} ms {_num(worst, 0):>6} ms {ratio:>6} "
            f"{_num(back.get('worst'), 0):>8} ms {standby:>13} {_num(inst.get('seconds')):>8} "
            f"{_num(loop, 0):>6} ms"
        )
    load = data.get("after_load") or {}
    if "skipped" in load:
        out.append(f"  after load: {load['skipped']}")
    elif load:
        reg = load.get("registration") or {}
        out.append(
            f"  after {load['registrations']:,} registrations at {load['offered_per_s']:,.0f}/s "
            f"offered ({_num(reg.get('throughput_per_s'), 0)}/s answered), installed = table:"
        )
        for node, m in (load.get("members") or {}).items():
            when = (
                f"{m['seconds']} s after the load (longest change-to-installed "
                f"{_num(m.get('longest_convergence_ms'), 1)} ms)"
                if m.get("seconds") is not None
                else f"not equal ({m.get('installed', 0):,}/{m.get('table', 0):,}, {m.get('why')})"
            )
            out.append(f"    {node} ({m.get('role')}): {when}")
        if len(load.get("actives_after_load") or []) > 1:
            out.append(f"    split brain after the load: {load['actives_after_load']} active")
    out.extend(f"  note: {n}" for n in data.get("notes", []))
    return out


def _num(v: object, digits: int = 2) -> str:
    if v is None:
        return "-"
    if isinstance(v, int | float):
        return f"{v:,.{digits}f}"
    return str(v)
