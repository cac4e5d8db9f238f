"""``mobileip lab``: the patent's FIG 1A on one machine, and a Home Agent killed under traffic.

With root, the lab builds network namespaces (all named ``<prefix>-*``, prefix ``mlab`` + 4 hex
digits; bridges live in the lab's own hub namespace, nothing is made in the host's)::

    cn 192.0.2.10 --[wan]-- rt --[home 10.1.0.0/24]-- ha1 .11, ha2 .12, ha3 .13 (virtual .1)
                            rt --[f1 10.2.0.0/24]---- fa1 .1, mn (home address 10.1.0.100)
                            rt --[f2 10.3.0.0/24]---- fa2 .1

and runs our daemons in it: three Home Agents (native VRRP with ``--advert-interval``, binding
sync, userspace data plane), two foreign agents and a mobile node. Then: a ping and a UDP stream
from the correspondent to the mobile node's home address; SIGKILL of the active Home Agent; the
report (which member took over, the longest silence of the ping = ``outage_ms``, packets lost,
bindings before/after); the mobile node roams to fa2 (traffic must follow), then returns home
(the Home Agent must stop proxying). ``--json`` prints the report as JSON. ``--keep`` leaves the
lab running (``mobileip lab down`` removes it); otherwise everything is removed, even on failure
or Ctrl-C.

Without root: one line saying so, then the loopback fallback: the same redundancy group as
processes on 127.0.0.x with static roles, a mobile node registered with the active, the active
SIGKILLed and a standby switched to active through the control API; the bindings must survive.
The data-plane figures are reported as not measured (``null`` in JSON).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mobileip.config import to_toml

KEY = "00112233445566778899aabbccddeeff"
SYNC_KEY = "a1" * 16
SPI = 256
SYNC_SPI = 1000
VRID = 51
HOME = "10.1.0.100"
VIRTUAL = "10.1.0.1"
CN = "192.0.2.10"
UDP_PORT = 9999
PREFIX_RE = re.compile(r"^mlab[0-9a-f]{4}$")


class LabError(RuntimeError):
    """A step of the lab failed; the message says which."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", nargs="?", choices=("run", "down"), default="run")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--keep", action="store_true", help="leave the lab up (then: lab down)")
    p.add_argument("--advert-interval", type=float, default=0.1, help="VRRP adverts (s)")
    p.add_argument("--traffic-interval", type=float, default=0.01, help="ping/UDP period (s)")
    p.add_argument("--no-roam", action="store_true", help="skip the roaming and return home")
    p.add_argument("--loopback", action="store_true", help="the fallback even when root")
    p.add_argument("--prefix", help="namespace prefix (lab down: only this lab)")
    p.add_argument("--capture", help="write a pcap of the first foreign link (tshark) here")


def main(args: argparse.Namespace) -> int:
    if args.action == "down":
        removed = lab_down(args.prefix)
        print(
            f"mobileip lab down: removed {len(removed)} namespaces"
            + (f" ({', '.join(removed)})" if removed else "")
        )
        return 0
    reason = netns_unavailable()
    if reason or args.loopback:
        print(
            f"mobileip lab: {reason or 'asked for'}: running the loopback fallback "
            "(processes, static roles; data-plane figures not measured)",
            file=sys.stderr,
        )
        report = run_loopback()
    else:
        lab = NetnsLab(args.prefix, args.advert_interval, args.traffic_interval)
        try:
            report = lab.scenario(roam=not args.no_roam, capture=args.capture)
        except (LabError, subprocess.SubprocessError, OSError) as exc:
            print(f"mobileip lab: failed: {exc}", file=sys.stderr)
            lab.dump_logs()
            lab.teardown()
            return 1
        finally:
            if args.keep and lab.built:
                print(
                    f"mobileip lab: kept (prefix {lab.prefix}); remove with "
                    f"'mobileip lab down --prefix {lab.prefix}'",
                    file=sys.stderr,
                )
            else:
                lab.teardown()
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print(format_report(report))
    return 0 if report.get("ok") else 1


def netns_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "not root (network namespaces need root)"
    if subprocess.run(["ip", "-V"], capture_output=True).returncode != 0:
        return "no iproute2"
    return None


def format_report(r: dict[str, Any]) -> str:
    def ms(v: object) -> str:
        return "not measured" if v is None else f"{v} ms"

    lines = [
        f"mode:             {r['mode']}",
        f"killed:           {r.get('killed')}",
        f"new active:       {r['new_active']}",
        f"bindings:         {r['bindings_before']} before, {r['bindings_after']} after",
        f"outage:           {ms(r['outage_ms'])} (ping), {ms(r.get('udp_outage_ms'))} (UDP)",
        "packets lost:     "
        + ("not measured" if r["packets_lost"] is None else str(r["packets_lost"])),
    ]
    for key in ("roam", "home"):
        if key in r:
            lines.append(f"{key + ':':<18}{json.dumps(r[key])}")
    lines.append("result:           " + ("OK" if r.get("ok") else "FAILED: " + r.get("why", "")))
    return "\n".join(lines)


# --- processes with their output ------------------------------------------------------------


@dataclass
class Proc:
    popen: subprocess.Popen[str]
    label: str
    lines: list[tuple[float, str]] = field(default_factory=list)
    _cond: threading.Condition = field(default_factory=threading.Condition)

    def start_reader(self) -> None:
        def read() -> None:
            assert self.popen.stdout is not None
            for raw in self.popen.stdout:
                with self._cond:
                    self.lines.append((time.monotonic(), raw.rstrip("\n")))
                    self._cond.notify_all()
            with self._cond:
                self._cond.notify_all()

        threading.Thread(target=read, daemon=True, name=f"lab-{self.label}").start()

    def wait_for(self, pattern: str, timeout: float, since: float = 0.0) -> str:
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for at, text in self.lines:
                    if at >= since and rx.search(text):
                        return text
                left = deadline - time.monotonic()
                if left <= 0:
                    raise LabError(f"{self.label}: no line matching {pattern!r} in {timeout} s")
                if self.popen.poll() is not None and not self._cond.wait(0.2):
                    raise LabError(f"{self.label} exited ({self.popen.returncode})")
                self._cond.wait(min(left, 0.2))

    def text(self) -> str:
        return "\n".join(t for _, t in self.lines)


# --- the namespace lab ----------------------------------------------------------------------


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and res.returncode != 0:
        raise LabError(f"ip {' '.join(args)}: {res.stderr.strip()}")
    return res


def lab_namespaces(prefix: str | None = None) -> list[str]:
    out = _ip("netns", "list", check=False).stdout
    names = [line.split()[0] for line in out.splitlines() if line.strip()]
    if prefix:
        return [n for n in names if n.startswith(prefix + "-")]
    return [n for n in names if PREFIX_RE.match(n.split("-", 1)[0])]


def remove_namespaces(names: Sequence[str]) -> None:
    for ns in names:  # processes first: nothing of ours outlives the lab
        for pid in _ip("netns", "pids", ns, check=False).stdout.split():
            with contextlib.suppress(ProcessLookupError, ValueError, PermissionError):
                os.kill(int(pid), signal.SIGKILL)
    for ns in names:
        _ip("netns", "del", ns, check=False)


def lab_down(prefix: str | None) -> list[str]:
    """Remove the namespaces (and processes, and work directories) of one lab or of all."""
    names = lab_namespaces(prefix)
    remove_namespaces(names)
    for work in Path(tempfile.gettempdir()).glob(f"{prefix or 'mlab'}*-*"):
        if PREFIX_RE.match(work.name.split("-", 1)[0]) and work.is_dir():
            shutil.rmtree(work, ignore_errors=True)
    return names


NODES = {
    # name: [(bridge, address/prefix, ifname)], default gateway
    "cn": ([("wan", f"{CN}/24")], "192.0.2.1"),
    "rt": (
        [("wan", "192.0.2.1/24"), ("home", "10.1.0.254/24"), ("f1", "10.2.0.254/24"),
         ("f2", "10.3.0.254/24")],
        None,
    ),
    "ha1": ([("home", "10.1.0.11/24")], "10.1.0.254"),
    "ha2": ([("home", "10.1.0.12/24")], "10.1.0.254"),
    "ha3": ([("home", "10.1.0.13/24")], "10.1.0.254"),
    "fa1": ([("f1", "10.2.0.1/24")], "10.2.0.254"),
    "fa2": ([("f2", "10.3.0.1/24")], "10.3.0.254"),
    "mn": ([("f1", f"{HOME}/32")], None),
}  # fmt: skip
HA_PRIORITIES = {"ha1": 150, "ha2": 100, "ha3": 50}


class NetnsLab:
    def __init__(self, prefix: str | None, advert_interval: float, traffic_interval: float) -> None:
        self.prefix = prefix or f"mlab{secrets.token_hex(2)}"
        if not PREFIX_RE.match(self.prefix):
            raise LabError(f"prefix {self.prefix!r} must look like mlab + 4 hex digits")
        self.advert_interval = advert_interval
        self.interval = traffic_interval
        self.work = Path(tempfile.mkdtemp(prefix=f"{self.prefix}-"))
        self.procs: dict[str, Proc] = {}
        self.namespaces: list[str] = []
        self.built = False
        self.python = sys.executable
        self.reverse_tunnel = True  # the MN asks for RFC 3024: its replies come back tunnelled

    def ns(self, node: str) -> str:
        return f"{self.prefix}-{node}"

    # --- building --------------------------------------------------------------------------

    def build(self) -> None:
        hub = self.ns("hub")
        self._netns(hub)
        self.built = True
        for br in ("wan", "home", "f1", "f2"):
            _ip("-n", hub, "link", "add", f"br-{br}", "type", "bridge", "forward_delay", "0")
            _ip("-n", hub, "link", "set", f"br-{br}", "type", "bridge", "mcast_snooping", "0")
            _ip("-n", hub, "link", "set", f"br-{br}", "up")
        for node, (links, gateway) in NODES.items():
            ns = self.ns(node)
            self._netns(ns)
            for i, (bridge, address) in enumerate(links):
                port = f"p-{node}-{i}"
                _ip("-n", hub, "link", "add", port, "type", "veth", "peer", "name", f"eth{i}",
                    "netns", ns)  # fmt: skip
                _ip("-n", hub, "link", "set", port, "master", f"br-{bridge}", "up")
                _ip("-n", ns, "addr", "add", address, "dev", f"eth{i}")
                _ip("-n", ns, "link", "set", f"eth{i}", "up")
            for key in ("all", "default", *(f"eth{i}" for i in range(len(links)))):
                self.sysctl(node, f"net.ipv4.conf.{key}.rp_filter", "0")
            if gateway:
                _ip("-n", ns, "route", "add", "default", "via", gateway)
        self.sysctl("rt", "net.ipv4.ip_forward", "1")

    def _netns(self, name: str) -> None:
        _ip("netns", "add", name)
        self.namespaces.append(name)
        _ip("-n", name, "link", "set", "lo", "up")

    def sysctl(self, node: str, key: str, value: str) -> None:
        self.run(node, ["sysctl", "-q", "-w", f"{key}={value}"])

    def run(self, node: str, argv: Sequence[str], timeout: float = 30) -> str:
        res = subprocess.run(
            ["ip", "netns", "exec", self.ns(node), *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if res.returncode != 0:
            raise LabError(f"{node}: {' '.join(argv[:4])}: {res.stderr.strip()[-400:]}")
        return res.stdout

    def spawn(self, node: str, argv: Sequence[str], label: str) -> Proc:
        popen = subprocess.Popen(
            ["ip", "netns", "exec", self.ns(node), *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        proc = Proc(popen, label)
        proc.start_reader()
        self.procs[label] = proc
        return proc

    def move(self, node: str, bridge: str) -> None:
        _ip("-n", self.ns("hub"), "link", "set", f"p-{node}-0", "master", f"br-{bridge}")

    # --- configs ---------------------------------------------------------------------------

    def ha_config(self, node: str) -> dict[str, Any]:
        me = NODES[node][0][0][1].split("/")[0]
        peers = [NODES[n][0][0][1].split("/")[0] for n in HA_PRIORITIES if n != node]
        return {
            "homeagent": {"address": me, "listen": "0.0.0.0", "port": 434, "max_lifetime": 600},
            "security_association": [
                {"spi": SPI, "algorithm": "hmac-md5", "key": KEY, "home_addresses": ["10.1.0.0/24"]}
            ],
            "control": {"listen": "127.0.0.1:8434"},
            "redundancy": {
                "node_id": me, "port": 434, "peers": [f"{p}:434" for p in peers],
                "spi": SYNC_SPI, "key": SYNC_KEY, "boot_wait": 0.3, "digest_interval": 0.5,
            },
            "vrrp": {
                "driver": "native", "interface": "eth0", "vrid": VRID,
                "priority": HA_PRIORITIES[node], "advert_interval": self.advert_interval,
                "virtual_address": f"{VIRTUAL}/24",
            },
            "dataplane": {
                "backend": "userspace", "home_interface": "eth0", "tun_name": "mip0",
                "garp_rounds": 3, "garp_interval": 0.5, "advertisement_interval": 0.5,
            },
        }  # fmt: skip

    def fa_config(self, node: str) -> dict[str, Any]:
        coa = NODES[node][0][0][1].split("/")[0]
        return {
            "foreignagent": {
                "interface": "eth0", "care_of_address": coa, "advertisement_interval": 0.5,
                "max_lifetime": 600,
            }
        }  # fmt: skip

    def mn_config(self) -> dict[str, Any]:
        return {
            "mobilenode": {
                "interface": "eth0", "home_address": HOME, "home_agent": VIRTUAL,
                "home_network": "10.1.0.0/24", "spi": SPI, "key": KEY, "lifetime": 30,
                "agent_timeout": 1.6, "home_gateway": "10.1.0.254",
                "reverse_tunnel": self.reverse_tunnel,
            }
        }  # fmt: skip

    def start_daemon(self, node: str, command: str, config: dict[str, Any]) -> Proc:
        path = self.work / f"{node}.toml"
        path.write_text(to_toml(config))
        argv = [self.python, "-m", "mobileip", command, "--config", str(path)]
        return self.spawn(node, argv, node)

    # --- looking at the Home Agents --------------------------------------------------------

    def control(self, node: str, path: str) -> Any:
        code = (
            "import json, sys; from mobileip.agents.client import fetch_json; "
            "print(json.dumps(fetch_json(('127.0.0.1', 8434), sys.argv[1])))"
        )
        return json.loads(self.run(node, [self.python, "-c", code, path]))

    def bindings(self, node: str) -> int:
        rows = self.control(node, "/api/v1/bindings")
        return len(rows) if isinstance(rows, list) else 0

    def active(self, candidates: Sequence[str]) -> str | None:
        for node in candidates:
            with contextlib.suppress(LabError, ValueError):
                if self.control(node, "/api/v1/dataplane").get("active"):
                    return node
        return None

    # --- traffic -----------------------------------------------------------------------------

    def traffic(self, tag: str) -> tuple[Proc, Proc, Proc, Path]:
        stop = self.work / f"stop-{tag}"
        common = ["--interval", str(self.interval), "--duration", "120", "--until-file", str(stop)]
        mod = [self.python, "-m", "mobileip.tools.traffic"]
        recv = self.spawn("mn", [*mod, "udp-recv", str(UDP_PORT), *common], f"udp-recv-{tag}")
        recv.wait_for("ready", 10)
        ping = self.spawn("cn", [*mod, "ping", HOME, *common], f"ping-{tag}")
        send = self.spawn("cn", [*mod, "udp-send", HOME, str(UDP_PORT), *common], f"udp-{tag}")
        ping.wait_for("ready", 10)
        send.wait_for("ready", 10)
        return ping, send, recv, stop

    def finish(self, procs: tuple[Proc, Proc, Proc, Path]) -> tuple[dict[str, Any], ...]:
        ping, send, recv, stop = procs
        stop.touch()
        results = []
        for proc in (ping, send, recv):
            line = proc.wait_for(r"^\{", 15)
            results.append(json.loads(line))
        return tuple(results)

    def reachable(self, tag: str, seconds: float = 1.5) -> dict[str, Any]:
        """A short ping: did the home address answer, and how much got lost."""
        mod = [self.python, "-m", "mobileip.tools.traffic"]
        out = self.run("cn", [*mod, "ping", HOME, "--interval", "0.05", "--duration",
                              str(seconds)], timeout=30)  # fmt: skip
        return dict(json.loads(out.strip().splitlines()[-1]))

    # --- the run -----------------------------------------------------------------------------

    def scenario(self, roam: bool = True, capture: str | Path | None = None) -> dict[str, Any]:
        """Build, start, measure the failover (and roam, return home); the report.

        ``capture``: a pcap file for everything on the first foreign link (bridge ``br-f1``)."""
        self.build()
        if capture is not None:
            argv = ["tshark", "-q", "-i", "br-f1", "-w", str(capture)]
            self.spawn("hub", argv, "capture").wait_for("Capturing on", 20)
        has = self.start_daemon
        for node in HA_PRIORITIES:
            has(node, "homeagent", self.ha_config(node)).wait_for("dataplane.started", 20)
        for node in ("fa1", "fa2"):
            has(node, "foreignagent", self.fa_config(node)).wait_for("foreignagent.started", 20)
        deadline = time.monotonic() + 15
        first = None
        while first is None:
            first = self.active(list(HA_PRIORITIES))
            if time.monotonic() > deadline:
                raise LabError("no Home Agent became active")
            time.sleep(0.2)
        mn = has("mn", "mobilenode", self.mn_config())
        mn.wait_for(r"mn\.registered care_of_address=10\.2\.0\.1", 20)
        self._wait(lambda: self.control(first, "/api/v1/dataplane")["tunnels"] == 1, 10,
                   "the active Home Agent never tunnelled")  # fmt: skip
        warm = self.reachable("warm-up")
        if not warm["received"]:
            raise LabError(f"the mobile node does not answer through the tunnel: {warm}")
        others = [n for n in HA_PRIORITIES if n != first]
        self._wait(lambda: all(self.bindings(n) == 1 for n in others), 10,
                   "the standbys never got the binding")  # fmt: skip
        before = self.bindings(first)

        flows = self.traffic("failover")
        time.sleep(2.0)
        killed_at = time.time()
        self.procs[first].popen.send_signal(signal.SIGKILL)
        self.procs[first].popen.wait(5)
        new_active = None
        deadline = time.monotonic() + 15
        while new_active is None and time.monotonic() < deadline:
            new_active = self.active(others)
            time.sleep(0.05)
        time.sleep(3.0)
        ping, sent, recv = self.finish(flows)
        after = self.bindings(new_active) if new_active else 0
        counters: dict[str, int] = {}
        if new_active:
            counters = self.control(new_active, "/api/v1/dataplane")["backend"]["counters"]
        report: dict[str, Any] = {
            "mode": "netns",
            "prefix": self.prefix,
            "killed": first,
            "killed_at": round(killed_at, 3),
            "new_active": new_active,
            "outage_ms": ping["outage_ms"],
            "packets_lost": (ping["lost"] or 0) + (recv["lost"] or 0),
            "ping": ping,
            "udp": {"sent": sent["sent"], **recv},
            "udp_outage_ms": recv["outage_ms"],
            "bindings_before": before,
            "bindings_after": after,
            "reverse_tunnel": self.reverse_tunnel,
            "new_active_counters": counters,
            "advert_interval": self.advert_interval,
            "traffic_interval": self.interval,
        }
        if roam and new_active:
            since = time.monotonic()
            self.move("mn", "f2")
            mn.wait_for(r"mn\.registered care_of_address=10\.3\.0\.1", 20, since)
            report["roam"] = {
                "care_of_address": "10.3.0.1",
                "seconds": round(time.monotonic() - since, 2),
                **_brief(self.reachable("roam")),
            }
            since = time.monotonic()
            self.move("mn", "home")
            mn.wait_for(r"mn\.deregistered code=0", 20, since)
            self._wait(
                lambda: self.control(new_active, "/api/v1/dataplane")["tunnels"] == 0,
                10,
                "the Home Agent kept tunnelling after the return home",
            )
            proxies = self.run(new_active, ["ip", "neigh", "show", "proxy"])
            report["home"] = {
                "seconds": round(time.monotonic() - since, 2),
                "proxy_arp_left": HOME in proxies,
                **_brief(self.reachable("home")),
            }
        report["ok"], report["why"] = _verdict(report, roam)
        if capture is not None:
            cap = self.procs["capture"].popen
            cap.send_signal(signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                cap.wait(10)
        return report

    def _wait(self, check: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(LabError, KeyError, ValueError):
                if check():
                    return
            if time.monotonic() > deadline:
                raise LabError(what)
            time.sleep(0.1)

    def teardown(self) -> None:
        for proc in self.procs.values():
            if proc.popen.poll() is None:
                proc.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 3
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(max(0.1, deadline - time.monotonic()))
            if proc.popen.poll() is None:
                proc.popen.kill()
        remove_namespaces(self.namespaces)
        self.namespaces.clear()
        self.built = False
        shutil.rmtree(self.work, ignore_errors=True)

    def dump_logs(self) -> None:
        for label, proc in self.procs.items():
            tail = proc.lines[-15:]
            print(f"--- {label} (last {len(tail)} lines)", file=sys.stderr)
            for _, text in tail:
                print(f"    {text}", file=sys.stderr)


def _brief(ping: dict[str, Any]) -> dict[str, Any]:
    return {"sent": ping["sent"], "received": ping["received"], "lost": ping["lost"]}


def _verdict(r: dict[str, Any], roam: bool) -> tuple[bool, str]:
    problems = []
    if not r["new_active"]:
        problems.append("no member took over")
    if r["bindings_after"] != r["bindings_before"]:
        problems.append("bindings lost")
    if r["outage_ms"] is not None and r["ping"]["received"] == 0:
        problems.append("no traffic reached the mobile node")
    if roam and r.get("new_active"):
        if not r.get("roam", {}).get("received"):
            problems.append("traffic did not follow the roam")
        home = r.get("home", {})
        if not home.get("received") or home.get("proxy_arp_left"):
            problems.append("return home failed")
    return not problems, "; ".join(problems)


# --- the loopback fallback ------------------------------------------------------------------


def _free_port(host: str) -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u, socket.socket() as t:
        u.bind((host, 0))
        port = int(u.getsockname()[1])
        t.bind((host, port))  # the control API uses TCP: the same number must be free there
        return port


def loopback_configs() -> dict[str, dict[str, Any]]:
    hosts = {"ha1": "127.0.0.11", "ha2": "127.0.0.12", "ha3": "127.0.0.13"}
    ports = {n: _free_port(h) for n, h in hosts.items()}
    configs = {}
    for node, host in hosts.items():
        configs[node] = {
            "homeagent": {"address": VIRTUAL, "listen": host, "port": ports[node]},
            "security_association": [
                {"spi": SPI, "algorithm": "hmac-md5", "key": KEY, "home_addresses": ["10.1.0.0/24"]}
            ],
            "control": {"listen": f"{host}:{_free_port(host)}"},
            "redundancy": {
                "node_id": host, "listen": host, "port": ports[node],
                "peers": [f"{hosts[n]}:{ports[n]}" for n in hosts if n != node],
                "spi": SYNC_SPI, "key": SYNC_KEY, "boot_wait": 0.3, "digest_interval": 0.5,
            },
            "vrrp": {"driver": "static", "role": "active" if node == "ha1" else "standby"},
        }  # fmt: skip
    return configs


def run_loopback() -> dict[str, Any]:
    from mobileip.agents.client import MobileNode, RegistrationClient, fetch_json, post_json
    from mobileip.core.security import SecurityAssociation

    work = Path(tempfile.mkdtemp(prefix="mobileip-lab-"))
    configs = loopback_configs()
    procs: dict[str, subprocess.Popen[bytes]] = {}

    def control(node: str) -> tuple[str, int]:
        host, port = configs[node]["control"]["listen"].rsplit(":", 1)
        return host, int(port)

    def bindings(node: str) -> int:
        rows = fetch_json(control(node), "/api/v1/bindings")
        return len(rows) if isinstance(rows, list) else 0

    def wait(check: Callable[[], bool], what: str, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(Exception):
                if check():
                    return
            if time.monotonic() > deadline:
                raise LabError(what)
            time.sleep(0.1)

    report: dict[str, Any] = {"mode": "loopback", "outage_ms": None, "packets_lost": None}
    try:
        for node, cfg in configs.items():
            path = work / f"{node}.toml"
            path.write_text(to_toml(cfg))
            argv = [sys.executable, "-m", "mobileip", "homeagent", "--config", str(path)]
            log = (work / f"{node}.log").open("wb")
            procs[node] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        for node in configs:
            wait(lambda n=node: bool(fetch_json(control(n), "/api/v1/redundancy")),  # type: ignore[misc]
                 f"{node} never started")  # fmt: skip
        sa = SecurityAssociation(SPI, "hmac-md5", bytes.fromhex(KEY), ())
        homes = [f"10.1.0.{100 + i}" for i in range(10)]
        ha1 = configs["ha1"]["homeagent"]
        from ipaddress import IPv4Address

        for home in homes:
            mn = MobileNode(IPv4Address(home), IPv4Address("192.0.2.77"), IPv4Address(VIRTUAL), sa)
            with RegistrationClient(mn, (ha1["listen"], ha1["port"]), timeout=0.5) as client:
                if not client.register(600).accepted:
                    raise LabError(f"registration of {home} refused")
        wait(lambda: all(bindings(n) == len(homes) for n in configs), "the sync never finished")
        report["bindings_before"] = bindings("ha1")
        report["killed"] = "ha1"
        procs["ha1"].send_signal(signal.SIGKILL)
        procs["ha1"].wait(5)
        started = time.monotonic()
        post_json(control("ha2"), "/api/v1/role", {"role": "active"})
        report["new_active"] = "ha2"
        report["switch_ms"] = round((time.monotonic() - started) * 1000, 1)
        report["bindings_after"] = bindings("ha2")
        report["ok"] = report["bindings_after"] == report["bindings_before"]
        report["why"] = "" if report["ok"] else "bindings lost"
    except (LabError, OSError) as exc:
        report.update(ok=False, why=str(exc), new_active=report.get("new_active"))
        report.setdefault("bindings_before", None)
        report.setdefault("bindings_after", None)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in procs.values():
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(work, ignore_errors=True)
    return report
