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

``--mobile-nodes N`` (default 1: the demo stays quick) adds N-1 simulated mobile nodes to the real
one (:mod:`mobileip.tools.simnodes`): a namespace ``sim`` behind the router holds every co-located
care-of address (10.64.0.0/10, routed as local: one route, whatever N) and registers them through
the virtual address with the load generator's code (home addresses from 10.128.0.0/9, which the
router routes to the virtual address). The correspondent sends a UDP stream to a sample of them
(``--sample``, 50 by default, every ``--sample-interval`` s each); a raw socket in ``sim`` records,
per inner destination, when the tunnelled packets arrive. The report adds how long the
registration of N took, the active's time to install them, and each sampled node's outage after
the kill (median and worst; outage = the longest silence at its care-of address around the kill,
less one interval; ``recovered_after_kill_ms``: from the kill to its first packet again).

Without root: one line saying so, then the loopback fallback: the same redundancy group as
processes on 127.0.0.x with static roles, a mobile node registered with the active, the active
SIGKILLed and a standby switched to active through the control API; the bindings must survive.
The data-plane figures are reported as not measured (``null`` in JSON).

Why one file of ~1,000 lines: :class:`NetnsLab` is one scenario whose steps run in order
(namespaces, daemons, registration, traffic, kill, roam, teardown) and share its state; the
report, the loopback fallback and the process/namespace helpers are small and used by it.
It is a tool, not part of the daemon; ``tools/failover_bench.py`` reuses :class:`NetnsLab`.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import fcntl
import http.client
import json
import os
import re
import secrets
import shutil
import signal
import socket
import struct
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
from mobileip.net.rtnl import socket_in
from mobileip.tools import simnodes

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
    p.add_argument(
        "--mobile-nodes",
        type=int,
        default=1,
        help="mobile nodes in all: the real one + N-1 simulated (co-located care-of addresses)",
    )
    p.add_argument("--sample", type=int, default=50, help="simulated nodes that get traffic")
    p.add_argument(
        "--sample-interval", type=float, default=0.05, help="UDP period per sampled node (s)"
    )
    p.add_argument(
        "--backend",
        choices=("userspace", "kernel", "auto"),
        default="userspace",
        help="[dataplane] backend of the Home Agents (kernel: ipip/gre modules, e.g. inside UML)",
    )


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
        if args.mobile_nodes < 1:
            print("mobileip lab: --mobile-nodes must be at least 1", file=sys.stderr)
            return 2
        lab = NetnsLab(
            args.prefix,
            args.advert_interval,
            args.traffic_interval,
            mobile_nodes=args.mobile_nodes,
            sample=args.sample,
            sample_interval=args.sample_interval,
            backend=args.backend,
        )
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
        f"mode:             {r['mode']}"
        + (f" ({r['backend']} data plane)" if r.get("backend") else ""),
        f"killed:           {r.get('killed')}",
        f"new active:       {r['new_active']}",
        f"bindings:         {r['bindings_before']} before, {r['bindings_after']} after",
        f"outage:           {ms(r['outage_ms'])} (ping), {ms(r.get('udp_outage_ms'))} (UDP)",
        "packets lost:     "
        + ("not measured" if r["packets_lost"] is None else str(r["packets_lost"])),
    ]
    if r.get("mobile_nodes", 1) > 1:
        lines.extend(format_scaled(r))
    for key in ("roam", "home"):
        if key in r:
            lines.append(f"{key + ':':<18}{json.dumps(r[key])}")
    lines.append("result:           " + ("OK" if r.get("ok") else "FAILED: " + r.get("why", "")))
    return "\n".join(lines)


def format_scaled(r: dict[str, Any]) -> list[str]:
    """The lines ``--mobile-nodes N`` adds to the report."""
    reg = r.get("registration") or {}
    s = r.get("sample") or {}
    out = s.get("outage_ms") or {}
    after = s.get("recovered_after_kill_ms") or {}

    def v(x: object) -> str:
        return "-" if x is None else f"{x:,}" if isinstance(x, int) else f"{x}"

    lines = [
        f"mobile nodes:     {r['mobile_nodes']:,} (1 real + {r['mobile_nodes'] - 1:,} simulated)",
        f"registration:     {v(reg.get('accepted'))} accepted of {v(reg.get('sent'))} in "
        f"{v(reg.get('wall_s'))} s ({v(reg.get('throughput_per_s'))}/s), "
        f"timeouts {v(reg.get('timeouts'))}",
        f"active installed: all {r['mobile_nodes']:,} in {v(r.get('active_install_s'))} s "
        "after the registrations",
        f"sampled outage:   median {v(out.get('median'))} ms, worst {v(out.get('worst'))} ms "
        f"over {v(s.get('sampled'))} nodes ({v(s.get('recovered'))} recovered; back after the "
        f"kill: median {v(after.get('median'))} ms, worst {v(after.get('worst'))} ms)",
    ]
    if s.get("not_recovered"):
        lines.append(f"not recovered:    {', '.join(s['not_recovered'][:10])}")
    return lines


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


_CLONE_NEWNET = 0x40000000


def netns_socket(
    ns: str, family: int = socket.AF_INET, kind: int = socket.SOCK_STREAM
) -> socket.socket:
    """A socket of the network namespace ``ns``: made in a short-lived thread that entered it
    (setns changes the calling thread only), so no process is spawned per request."""
    out: dict[str, Any] = {}

    def enter() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        try:
            fd = os.open(f"/var/run/netns/{ns}", os.O_RDONLY)
        except OSError as exc:
            out["error"] = exc
            return
        try:
            if libc.setns(fd, _CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                out["error"] = OSError(err, f"setns {ns}: {os.strerror(err)}")
                return
            out["sock"] = socket.socket(family, kind)
        finally:
            os.close(fd)

    thread = threading.Thread(target=enter, name=f"setns-{ns}")
    thread.start()
    thread.join()
    if "error" in out:
        raise out["error"]
    sock: socket.socket = out["sock"]
    return sock


def netns_get_json(ns: str, address: tuple[str, int], path: str, timeout: float = 10.0) -> Any:
    """GET ``path`` from a control API listening at ``address`` inside ``ns``."""
    sock = netns_socket(ns)
    try:
        sock.settimeout(timeout)
        sock.connect(address)
        conn = http.client.HTTPConnection(*address, timeout=timeout)
        conn.sock = sock
        conn.request("GET", path, headers={"Connection": "close"})
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise LabError(f"{ns}: GET {path}: HTTP {resp.status}")
        return json.loads(body)
    finally:
        sock.close()


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
SIM_NODE = ([("sim", "10.4.0.1/24")], "10.4.0.254")  # the simulated mobile nodes' namespace
SIM_ROUTER = ("sim", "10.4.0.254/24")
INSTALL_BUDGET_S = 0.06  # per binding: how long the lab waits for a data plane (26 ms today)


def lab_nodes(members: int = 3, real_mn: bool = True, scaled: bool = False) -> dict[str, Any]:
    """The namespaces of a lab: ``members`` Home Agents, the foreign agents and the mobile node
    when ``real_mn``, the ``sim`` namespace (and the router's leg to it) when ``scaled``."""
    keep = {"cn", "rt", *list(HA_PRIORITIES)[:members]}
    if real_mn:
        keep |= {"fa1", "fa2", "mn"}
    nodes: dict[str, Any] = {n: v for n, v in NODES.items() if n in keep}
    links = list(NODES["rt"][0])
    if not real_mn:
        links = [link for link in links if link[0] not in ("f1", "f2")]
    if scaled:
        links.append(SIM_ROUTER)
        nodes["sim"] = SIM_NODE
    nodes["rt"] = (links, None)
    return nodes


class NetnsLab:
    def __init__(
        self,
        prefix: str | None,
        advert_interval: float,
        traffic_interval: float,
        mobile_nodes: int = 1,
        sample: int = 50,
        sample_interval: float = 0.05,
        members: int = 3,
        real_mn: bool = True,
        backend: str = "userspace",
    ) -> None:
        self.prefix = prefix or f"mlab{secrets.token_hex(2)}"
        self.backend = backend  # [dataplane] backend of the Home Agents
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
        self.real_mn = real_mn
        self.mobile_nodes = mobile_nodes
        self.simulated = mobile_nodes - 1 if real_mn else mobile_nodes
        self.sample_interval = sample_interval
        self.sample = [
            str(simnodes.home_of(i)) for i in simnodes.sample_indices(self.simulated, sample)
        ]
        self.nodes = lab_nodes(members, real_mn, self.simulated > 0)
        self.priorities = {n: p for n, p in HA_PRIORITIES.items() if n in self.nodes}
        self.mark_file = self.work / "killed-at"

    def ns(self, node: str) -> str:
        return f"{self.prefix}-{node}"

    # --- building --------------------------------------------------------------------------

    def build(self) -> None:
        hub = self.ns("hub")
        self._netns(hub)
        self.built = True
        bridges = sorted({b for links, _gw in self.nodes.values() for b, _a in links})
        for br in bridges:
            _ip("-n", hub, "link", "add", f"br-{br}", "type", "bridge", "forward_delay", "0")
            _ip("-n", hub, "link", "set", f"br-{br}", "type", "bridge", "mcast_snooping", "0")
            _ip("-n", hub, "link", "set", f"br-{br}", "up")
        for node, (links, gateway) in self.nodes.items():
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
        # the correspondent's packets leave with their checksums complete, as from a wire: a
        # veth hands a UDP datagram on with only its pseudo-header summed (checksum offload),
        # the kernel data plane tunnels it so, and a foreign agent or simulated node that
        # decapsulates it in userspace (a raw socket) would deliver a bad checksum
        tx_checksum_off(self.ns("cn"), "eth0")
        self.sysctl("rt", "net.ipv4.ip_forward", "1")
        if self.simulated:
            # every care-of address of the simulated nodes is local in sim: one route, any N
            _ip(
                "-n", self.ns("sim"), "route", "add", "local", str(simnodes.COA_PREFIX), "dev", "lo"
            )
            _ip("-n", self.ns("rt"), "route", "add", str(simnodes.COA_PREFIX), "via", "10.4.0.1")
            # their home addresses sit behind the group's virtual address
            _ip("-n", self.ns("rt"), "route", "add", str(simnodes.HOME_PREFIX), "via", VIRTUAL)

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
        peers = [NODES[n][0][0][1].split("/")[0] for n in self.priorities if n != node]
        homes = ["10.1.0.0/24"] + ([str(simnodes.HOME_PREFIX)] if self.simulated else [])
        lifetime = 7200 if self.simulated else 600
        return {
            "homeagent": {
                "address": me, "listen": "0.0.0.0", "port": 434, "max_lifetime": lifetime,
                "lock_memory": True,  # page faults inside UML: docs/performance.md
            },
            "security_association": [
                {"spi": SPI, "algorithm": "hmac-md5", "key": KEY, "home_addresses": homes}
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
                "backend": self.backend, "home_interface": "eth0", "tun_name": "mip0",
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

    def control(self, node: str, path: str, timeout: float = 10.0) -> Any:
        try:
            return netns_get_json(self.ns(node), ("127.0.0.1", 8434), path, timeout)
        except (OSError, http.client.HTTPException) as exc:
            raise LabError(f"{node}: GET {path}: {exc}") from None

    def binding_count(self, node: str) -> int:
        """Bindings in ``node``'s table (its redundancy status: no list of every binding)."""
        return int(self.control(node, "/api/v1/redundancy").get("bindings", 0))

    def bindings(self, node: str) -> int:
        rows = self.control(node, "/api/v1/bindings")
        return len(rows) if isinstance(rows, list) else 0

    def active(self, candidates: Sequence[str]) -> str | None:
        for node in candidates:
            with contextlib.suppress(LabError, ValueError):
                if self.control(node, "/api/v1/dataplane").get("active"):
                    return node
        return None

    def actives(self) -> list[str]:
        """Every member whose data plane says active (more than one: a split brain)."""
        out = []
        for node in self.priorities:
            with contextlib.suppress(LabError, ValueError):
                if self.control(node, "/api/v1/dataplane").get("active"):
                    out.append(node)
        return out

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

    def start_group(self, capture: str | Path | None = None) -> str:
        """Build the lab, start the Home Agents (and the foreign agents); the first active."""
        self.build()
        if capture is not None:
            argv = ["tshark", "-q", "-i", "br-f1", "-w", str(capture)]
            self.spawn("hub", argv, "capture").wait_for("Capturing on", 20)
        for node in self.priorities:
            self.start_daemon(node, "homeagent", self.ha_config(node)).wait_for(
                "dataplane.started", 20
            )
        if self.real_mn:
            for node in ("fa1", "fa2"):
                self.start_daemon(node, "foreignagent", self.fa_config(node)).wait_for(
                    "foreignagent.started", 20
                )
        deadline = time.monotonic() + 15
        first = None
        while first is None:
            first = self.active(list(self.priorities))
            if time.monotonic() > deadline:
                raise LabError("no Home Agent became active")
            time.sleep(0.2)
        return first

    def register_simulated(
        self, n: int | None = None, rate: float | None = None, window: int = 256
    ) -> dict[str, Any]:
        """Register the simulated mobile nodes through the virtual address (from ``sim``)."""
        n = self.simulated if n is None else n
        argv = [self.python, "-m", "mobileip.tools.simnodes", "register", "--ha", VIRTUAL,
                "-n", str(n), "--spi", str(SPI), "--key", KEY, "--home-agent", VIRTUAL,
                "--window", str(window)]  # fmt: skip
        if rate:
            argv += ["--rate", str(rate)]
        res = subprocess.run(
            ["ip", "netns", "exec", self.ns("sim"), *argv],
            capture_output=True,
            text=True,
            timeout=600 + n / 500,
        )
        lines = res.stdout.strip().splitlines()
        if not lines:
            raise LabError(f"sim: registration printed nothing: {res.stderr.strip()[-400:]}")
        return dict(json.loads(lines[-1]))

    def install_timeout(self, bindings: int) -> float:
        return 15.0 + INSTALL_BUDGET_S * bindings

    def wait_tunnels(self, node: str, n: int, timeout: float, what: str) -> float:
        """Seconds until ``node``'s data plane has ``n`` tunnels installed."""
        since = time.monotonic()
        self._wait(lambda: self.control(node, "/api/v1/dataplane")["tunnels"] >= n, timeout,
                   what, poll=0.25)  # fmt: skip
        return time.monotonic() - since

    def start_sample(self) -> tuple[Proc, Proc, Path]:
        """The UDP streams to the sampled simulated nodes and the sink that times them."""
        homes = self.work / "sample-homes"
        homes.write_text("\n".join(self.sample) + "\n")
        stop = self.work / "stop-sample"
        common = ["--homes-file", str(homes), "--interval", str(self.sample_interval),
                  "--until-file", str(stop)]  # fmt: skip
        mod = [self.python, "-m", "mobileip.tools.simnodes"]
        sink = self.spawn("sim", [*mod, "sink", *common, "--mark-file", str(self.mark_file)],
                          "sample-sink")  # fmt: skip
        sink.wait_for("ready", 10)
        send = self.spawn("cn", [*mod, "send", *common], "sample-send")
        send.wait_for("ready", 10)
        return sink, send, stop

    def sample_status(self, sink: Proc) -> dict[str, Any]:
        for _at, text in reversed(sink.lines):
            if text.startswith('{"t"'):
                return dict(json.loads(text))
        return {}

    def finish_sample(self, flows: tuple[Proc, Proc, Path]) -> dict[str, Any]:
        sink, _send, stop = flows
        stop.touch()
        final: dict[str, Any] = json.loads(sink.wait_for(r'^\{"final"', 30))
        per_node = final["per_node"]
        summary = simnodes.summarize(per_node)
        summary["interval_ms"] = round(self.sample_interval * 1000, 1)
        summary["packets"] = sum(final["counts"].values())
        summary["per_node"] = {
            h: {
                "outage_ms": None if v.get("outage_s") is None else round(v["outage_s"] * 1e3, 1),
                "recovered_after_kill_ms": (
                    None if v.get("recovered_s") is None else round(v["recovered_s"] * 1e3, 1)
                ),
            }
            for h, v in per_node.items()
        }
        return summary

    def kill(self, node: str) -> float:
        """SIGKILL ``node``'s daemon; the kill time (monotonic), also written to the mark file."""
        proc = self.procs[node].popen
        killed = time.monotonic()
        proc.send_signal(signal.SIGKILL)
        self.mark_file.write_text(f"{killed:.6f}\n")
        proc.wait(5)
        return killed

    def wait_new_active(self, others: Sequence[str], timeout: float = 15.0) -> str | None:
        new_active = None
        deadline = time.monotonic() + timeout
        while new_active is None and time.monotonic() < deadline:
            new_active = self.active(others)
            time.sleep(0.05)
        return new_active

    def wait_recovered(self, sink: Proc, timeout: float) -> None:
        """Until every sampled node's packets reach its care-of address again (or timeout)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.sample_status(sink).get("recovered", -1) >= len(self.sample):
                return
            time.sleep(0.25)

    # --- the run -----------------------------------------------------------------------------

    def scenario(self, roam: bool = True, capture: str | Path | None = None) -> dict[str, Any]:
        """Build, start, measure the failover (and roam, return home); the report.

        ``capture``: a pcap file for everything on the first foreign link (bridge ``br-f1``)."""
        first = self.start_group(capture)
        total = self.simulated + 1
        registration: dict[str, Any] | None = None
        if self.simulated:
            registration = self.register_simulated()
        registered_at = time.monotonic()
        mn = self.start_daemon("mn", "mobilenode", self.mn_config())
        mn.wait_for(r"mn\.registered care_of_address=10\.2\.0\.1", 20)
        self.wait_tunnels(
            first, total, self.install_timeout(total), "the active Home Agent never tunnelled"
        )
        active_install_s = time.monotonic() - registered_at
        warm = self.reachable("warm-up")
        if not warm["received"]:
            raise LabError(f"the mobile node does not answer through the tunnel: {warm}")
        others = [n for n in self.priorities if n != first]
        self._wait(lambda: all(self.binding_count(n) == total for n in others), 10 + total / 1000,
                   "the standbys never got the bindings")  # fmt: skip
        before = self.binding_count(first)

        flows = self.traffic("failover")
        sample = self.start_sample() if self.simulated else None
        time.sleep(2.0)
        active_before = self.actives()
        killed_at = time.time()
        killed_mono = self.kill(first)
        new_active = self.wait_new_active(others)
        if sample is not None and new_active:
            self.wait_recovered(sample[0], self.install_timeout(total))
            # and the real mobile node (its tunnel may come last): its ping must see the end
            with contextlib.suppress(LabError):
                self.wait_tunnels(new_active, total, self.install_timeout(total), "")
        time.sleep(max(0.0, killed_mono + 3.5 - time.monotonic()))
        ping, sent, recv = self.finish(flows)
        after = self.binding_count(new_active) if new_active else 0
        counters: dict[str, int] = {}
        if new_active:
            counters = self.control(new_active, "/api/v1/dataplane")["backend"]["counters"]
        report: dict[str, Any] = {
            "mode": "netns",
            "backend": self.backend,
            "prefix": self.prefix,
            "killed": first,
            "killed_at": round(killed_at, 3),
            "new_active": new_active,
            "outage_ms": ping["outage_ms"],
            "packets_lost": (ping["lost"] or 0) + (recv["lost"] or 0),
            "ping": ping,
            "udp": {**recv, "sent": sent["sent"]},  # the sender's count, not the receiver's
            "udp_outage_ms": recv["outage_ms"],
            "bindings_before": before,
            "bindings_after": after,
            "reverse_tunnel": self.reverse_tunnel,
            "new_active_counters": counters,
            "advert_interval": self.advert_interval,
            "traffic_interval": self.interval,
            "mobile_nodes": total,
            "active_before_kill": active_before,
        }
        if sample is not None:
            report["registration"] = registration
            report["active_install_s"] = round(active_install_s, 2)
            report["sample"] = self.finish_sample(sample)
            if new_active:
                report["new_active_last_takeover_ms"] = self.control(
                    new_active, "/api/v1/dataplane"
                ).get("last_takeover_ms")
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
                lambda: self.control(new_active, "/api/v1/dataplane")["tunnels"] == self.simulated,
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

    def _wait(
        self, check: Callable[[], bool], timeout: float, what: str, poll: float = 0.1
    ) -> None:
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(LabError, KeyError, ValueError):
                if check():
                    return
            if time.monotonic() > deadline:
                raise LabError(what)
            time.sleep(poll)

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


SIOCETHTOOL, ETHTOOL_STXCSUM = 0x8946, 0x17


def tx_checksum_off(netns: str, ifname: str) -> None:
    """``ethtool -K IFNAME tx off`` inside ``netns`` (the ioctl: no ethtool binary needed)."""
    value = ctypes.create_string_buffer(struct.pack("=II", ETHTOOL_STXCSUM, 0), 8)
    request = struct.pack("@16sP16x", ifname.encode(), ctypes.addressof(value))  # struct ifreq
    with socket_in(netns, socket.AF_INET, socket.SOCK_DGRAM) as sock:
        fcntl.ioctl(sock.fileno(), SIOCETHTOOL, request)


def _verdict(r: dict[str, Any], roam: bool) -> tuple[bool, str]:
    problems = []
    if not r["new_active"]:
        problems.append("no member took over")
    if r["bindings_after"] != r["bindings_before"]:
        problems.append("bindings lost")
    if r["outage_ms"] is not None and r["ping"]["received"] == 0:
        problems.append("no traffic reached the mobile node")
    if r["udp"]["sent"] and not r["udp"]["received"]:
        problems.append("the UDP stream never reached the mobile node")
    sample = r.get("sample")
    if sample is not None:
        if sample["recovered"] < sample["sampled"]:
            problems.append(
                f"{sample['sampled'] - sample['recovered']} of {sample['sampled']} sampled "
                "mobile nodes never recovered"
            )
        reg = r.get("registration") or {}
        if reg.get("accepted") != r["mobile_nodes"] - 1:
            problems.append(f"registration: {reg.get('accepted')} of {r['mobile_nodes'] - 1}")
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
