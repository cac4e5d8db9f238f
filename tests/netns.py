"""Reusable network-namespace fixtures for the project's root tests.

A :class:`Segment` is one Ethernet segment: a Linux bridge living in its own "hub" namespace
(nothing is created in the host namespace) and one namespace per member, joined to the bridge
by a veth pair. Every name carries the segment's unique prefix (``mi`` + 6 random hex digits),
so parallel runs never collide, and :meth:`Segment.close` removes everything it made (processes
first, then namespaces, which takes their veths and the bridge with them) even when the test
failed. Use it as a context manager or through :func:`segment_fixture`::

    with Segment() as seg:
        a = seg.add_member("a", "10.77.0.1/24")
        proc = seg.spawn(a, [sys.executable, "-m", "mobileip.net.vrrp_socket", ...])
        proc.wait_for(r"state=MASTER", timeout=5)

Members' interface is named ``<prefix>e<n>``; :attr:`Member.ifname` holds it.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import secrets
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest


def root_skip_reason() -> str | None:
    """Why root network tests cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "needs root for network namespaces"
    if shutil.which("ip") is None:
        return "needs iproute2's ip"
    return None


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=20)


@dataclass
class Member:
    name: str
    netns: str
    ifname: str
    address: str  # CIDR, e.g. "10.77.0.1/24"

    @property
    def ip(self) -> str:
        return self.address.split("/")[0]


SYNC_KEY = "5a" * 32


def sync_section(
    m: Member, peers: Sequence[Member], port: int = 434, key: str = SYNC_KEY
) -> dict[str, Any]:
    """The ``[redundancy]`` section of a Home Agent on ``m`` syncing its bindings with ``peers``
    (``m`` itself left out) on ``port``: quick boot and digests, as the netns tests run them."""
    return {
        "node_id": m.ip,
        "port": port,
        "peers": [f"{p.ip}:{port}" for p in peers if p is not m],
        "spi": 1000,
        "key": key,
        "boot_wait": 0.3,
        "digest_interval": 0.5,
    }


@dataclass
class Line:
    at: float  # time.monotonic() when the line was read
    text: str


@dataclass
class Process:
    """A process running inside a namespace, its stderr+stdout read line by line."""

    popen: subprocess.Popen[str]
    label: str
    lines: list[Line] = field(default_factory=list)
    _queue: queue.Queue[Line | None] = field(default_factory=queue.Queue)
    _seen: int = 0

    def start_reader(self) -> None:
        def read() -> None:
            assert self.popen.stdout is not None
            for raw in self.popen.stdout:
                line = Line(time.monotonic(), raw.rstrip("\n"))
                self.lines.append(line)
                self._queue.put(line)
            self._queue.put(None)

        threading.Thread(target=read, daemon=True, name=f"reader-{self.label}").start()

    def wait_for(self, pattern: str, timeout: float, since: float = 0.0) -> Line:
        """Wait for the next line matching ``pattern`` (after those already consumed and not
        read before ``since``, a ``time.monotonic()`` value)."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{self.label}: no line matching {pattern!r}\n{self.output()}")
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                self._queue.put(None)
                raise RuntimeError(f"{self.label} exited before {pattern!r}\n{self.output()}")
            if line.at >= since and rx.search(line.text):
                return line

    def output(self) -> str:
        return "\n".join(f"  [{self.label}] {ln.text}" for ln in self.lines[-60:])

    def signal(self, sig: int) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)

    def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; returns the exit code."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout)
        return self.popen.returncode


class Segment:
    """One bridged segment of namespaces with a unique prefix; see the module docstring."""

    def __init__(self, prefix: str | None = None) -> None:
        self.prefix = prefix or f"mi{secrets.token_hex(3)}"
        self.hub = f"{self.prefix}-hub"
        self.bridge = f"{self.prefix}br"
        self.members: list[Member] = []
        self.processes: list[Process] = []
        self._namespaces: list[str] = []
        self._open = False

    def __enter__(self) -> Segment:
        try:
            self.open()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        self._add_netns(self.hub)
        self._open = True
        ip("-n", self.hub, "link", "add", self.bridge, "type", "bridge", "forward_delay", "0")
        # No multicast snooping: VRRP must flood to every port at once.
        ip("-n", self.hub, "link", "set", self.bridge, "type", "bridge", "mcast_snooping", "0")
        ip("-n", self.hub, "link", "set", self.bridge, "up")

    def _add_netns(self, name: str) -> None:
        ip("netns", "add", name)
        self._namespaces.append(name)
        ip("-n", name, "link", "set", "lo", "up")

    def add_member(self, name: str, address: str) -> Member:
        n = len(self.members)
        netns = f"{self.prefix}-{name}"
        ifname = f"{self.prefix}e{n}"
        hub_end = f"{self.prefix}h{n}"
        self._add_netns(netns)
        ip(
            "-n", self.hub, "link", "add", hub_end, "type", "veth",
            "peer", "name", ifname, "netns", netns,
        )  # fmt: skip
        ip("-n", self.hub, "link", "set", hub_end, "master", self.bridge, "up")
        ip("-n", netns, "addr", "add", address, "dev", ifname)
        ip("-n", netns, "link", "set", ifname, "up")
        member = Member(name, netns, ifname, address)
        self.members.append(member)
        return member

    def set_link(self, member: Member, up: bool) -> None:
        """Cut or restore a member's link (at the bridge side) to partition the segment."""
        n = self.members.index(member)
        ip("-n", self.hub, "link", "set", f"{self.prefix}h{n}", "up" if up else "down")

    def run(
        self, member: Member, argv: Sequence[str], **kw: object
    ) -> subprocess.CompletedProcess[str]:
        """Run a command to completion inside ``member``'s namespace."""
        return subprocess.run(  # type: ignore[call-overload,no-any-return]
            ["ip", "netns", "exec", member.netns, *argv],
            capture_output=True,
            text=True,
            timeout=kw.pop("timeout", 30),
            **kw,
        )

    def spawn(self, member: Member | str, argv: Sequence[str], label: str = "") -> Process:
        """Start a long-running process inside a namespace (``ip netns exec`` execs it, so the
        Popen pid is the process itself and SIGKILL reaches it directly)."""
        netns = member.netns if isinstance(member, Member) else member
        popen = subprocess.Popen(
            ["ip", "netns", "exec", netns, *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        proc = Process(popen, label or (member.name if isinstance(member, Member) else netns))
        proc.start_reader()
        self.processes.append(proc)
        return proc

    def addresses(self, member: Member) -> list[str]:
        out = ip("-n", member.netns, "-o", "-4", "addr", "show", "dev", member.ifname).stdout
        return re.findall(r"inet (\S+)", out)

    def close(self) -> None:
        for proc in self.processes:
            try:
                proc.stop(timeout=3)
            except Exception:  # keep cleaning up whatever happens
                if proc.popen.poll() is None:
                    proc.popen.kill()
        for netns in reversed(self._namespaces):
            # Children our processes left behind (e.g. keepalived's VRRP child after its parent
            # was SIGKILLed) live only in our namespaces: kill them so nothing outlives the test.
            pids = ip("netns", "pids", netns, check=False).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            ip("netns", "del", netns, check=False)
        self._namespaces.clear()
        self._open = False


def require_root() -> None:
    reason = root_skip_reason()
    if reason:
        pytest.skip(reason)


@pytest.fixture
def segment_fixture() -> Iterator[Segment]:
    """A fresh :class:`Segment`, torn down after the test whatever its outcome."""
    require_root()
    seg = Segment()
    try:
        seg.open()
        yield seg
    finally:
        seg.close()


KEEPALIVED_CONF = """\
global_defs {{
    router_id {router_id}
    vrrp_version 3
    notify_fifo {fifo}
    vrrp_garp_master_delay 0
    vrrp_garp_master_repeat 3
    script_user root
    enable_script_security
}}
vrrp_track_file mobileip_sync {{
    file {track}
    weight 1
    init_file -100
}}
vrrp_instance VI_1 {{
    state BACKUP
    interface {ifname}{use_vmac}
    virtual_router_id {vrid}
    priority {priority}
    advert_int {interval}
    virtual_ipaddress {{
        {address}
    }}
    track_file {{
        mobileip_sync
    }}
}}
"""


def start_keepalived(
    seg: Segment,
    m: Member,
    tmp_path: Path,
    *,
    priority: int,
    vrid: int,
    interval: float,
    address: str,
    use_vmac: bool = False,
) -> Process:
    """keepalived (VRRPv3, instance VI_1) on ``m`` for ``address``, telling our daemon through
    ``tmp_path/<name>.fifo`` and weighted by ``tmp_path/<name>.weight`` (the daemon's sync state:
    init -100, so it cannot win before it is synced); ``use_vmac``: keepalived's macvlan."""
    conf = tmp_path / f"keepalived-{m.name}.conf"
    conf.write_text(
        KEEPALIVED_CONF.format(
            router_id=f"{seg.prefix}{m.name}",
            fifo=tmp_path / f"{m.name}.fifo",
            track=tmp_path / f"{m.name}.weight",
            ifname=m.ifname,
            use_vmac="\n    use_vmac" if use_vmac else "",
            vrid=vrid,
            priority=priority,
            interval=interval,
            address=address,
        )
    )
    argv = [
        "keepalived", "-n", "-l", "-D", "-P", "-f", str(conf),
        "--pid", str(tmp_path / f"ka-{m.name}.pid"),
        "--vrrp_pid", str(tmp_path / f"ka-vrrp-{m.name}.pid"),
    ]  # fmt: skip
    return seg.spawn(m, argv, f"keepalived-{m.name}")
