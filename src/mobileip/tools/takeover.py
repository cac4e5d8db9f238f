"""Takeover with traffic (issue 14): what tests/test_kernel_takeover.py (asserted),
tests/test_kernel_bpf_takeover.py (the same with the fast path) and
scripts/perf/kernel_takeover.py (measured) share: the lab with the kernel backend and the VRRP
virtual MAC (its two members started, the simulated nodes registered and installed on both, its
traffic started and stopped, the active cut and killed, a member stopped cleanly), the
correspondent's sender, the care-of side's receiver, the count of packets tunnelled twice, a
member's dataplane status, a device's transmit counter and the sampled homes' outages.
tests/test_dataplane_standby_netns.py (the userspace backend's takeover at 10,000 bindings) uses
the sender, receiver and count too, tests/test_vmac_keepalived_netns.py the count."""

from __future__ import annotations

import contextlib
import json
import signal
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple, Self

from mobileip.tools import simnodes
from mobileip.tools.lab import LabError, NetnsLab, Proc, _ip

STATUS = "/api/v1/dataplane?homes=0"

# UDP to each sampled home address every argv[2] s, (sequence, index) in the payload; stops when
# the stop file argv[3] appears
SENDER = """
import os, socket, struct, sys, time
homes, every, stop = sys.argv[1].split(","), float(sys.argv[2]), sys.argv[3]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setblocking(False)
seq, start = 0, time.monotonic()
print("sending", flush=True)
while not os.path.exists(stop):
    for i, h in enumerate(homes):
        try:
            s.sendto(struct.pack("!II", seq, i), (h, 9999))
        except OSError:
            pass
    seq += 1
    time.sleep(max(0.0, start + seq * every - time.monotonic()))
print("sent", seq, flush=True)
"""

# the care-of side: IP-in-IP packets, (arrival, inner destination, sequence), until the stop file
# argv[1] appears
RECEIVER = """
import json, os, socket, struct, sys, time
stop = sys.argv[1]
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 4)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
s.settimeout(0.1)
got = []
print("receiving", flush=True)
while not os.path.exists(stop):
    try:
        p = s.recv(2048)
    except TimeoutError:
        continue
    inner = p[(p[0] & 15) * 4:]
    if len(inner) < 36 or inner[9] != 17:
        continue
    ihl = (inner[0] & 15) * 4
    seq, idx = struct.unpack_from("!II", inner, ihl + 8)
    got.append((time.monotonic(), socket.inet_ntoa(inner[16:20]), seq))
print("RESULT " + json.dumps(got), flush=True)
"""


class KernelLab(NetnsLab):
    """The lab's Home Agents with the kernel backend and the VRRP virtual MAC."""

    fastpath: str | None = None  # [dataplane] fastpath (None: the default, "auto")

    @classmethod
    def pair(cls, bindings: int, samples: int) -> Self:
        """Two members (native VRRP at 0.1 s), ``bindings`` simulated mobile nodes and no real
        one; ``samples`` of their home addresses in :attr:`sample`."""
        return cls(None, 0.1, 0.01, mobile_nodes=bindings, sample=samples, members=2,
                   real_mn=False, backend="kernel")  # fmt: skip

    def ha_config(self, node: str) -> dict[str, Any]:
        cfg = super().ha_config(node)
        cfg["dataplane"].update(virtual_mac=True, garp_rounds=0)
        if self.fastpath is not None:
            cfg["dataplane"]["fastpath"] = self.fastpath
        return cfg

    def start_pair(self) -> None:
        """The lab built, ``ha1`` and ``ha2`` started (each until its dataplane is up), and
        ``ha1`` active."""
        self.build()
        for node in ("ha1", "ha2"):
            self.start_daemon(node, "homeagent", self.ha_config(node)).wait_for(
                "dataplane.started", 60
            )
        self._wait(lambda: self.active(["ha1", "ha2"]) == "ha1", 30, "ha1 never became active")

    def start_traffic(
        self, homes: Sequence[str], every: float, stop: Path, timeout: float = 20.0
    ) -> tuple[Proc, Proc]:
        """The care-of side's :data:`RECEIVER` (on ``sim``) and the correspondent's
        :data:`SENDER` (on ``cn``, to ``homes`` every ``every`` s), both running; they stop when
        ``stop`` appears."""
        rx = self.spawn("sim", [self.python, "-c", RECEIVER, str(stop)], "receiver")
        rx.wait_for("receiving", timeout)
        tx = self.spawn(
            "cn", [self.python, "-c", SENDER, ",".join(homes), str(every), str(stop)], "sender"
        )
        tx.wait_for("sending", timeout)
        return rx, tx

    def register_all(self, n: int) -> dict[str, Any]:
        """``n`` simulated registrations through the virtual address, sent again once if ``ha1``
        holds fewer (a request that timed out unapplied: UML is slow); the first run's report.
        Raises :class:`LabError` unless ``ha1`` then holds ``n`` bindings."""
        reg = self.register_simulated(n)
        if self.binding_count("ha1") < n:
            print(f"\nregistration: {reg.get('accepted')} of {n} accepted; registering again")
            self.register_simulated(n)
        if (held := self.binding_count("ha1")) != n:
            raise LabError(f"ha1 holds {held} of {n} bindings: {reg}")
        return reg

    def wait_installed(
        self,
        n: int,
        what: str = "every route",
        also: Callable[[dict[str, Any]], bool] = lambda status: True,
    ) -> None:
        """Until both members' dataplanes have installed all ``n`` desired routes, nothing
        pending, and ``also`` holds for each one's status (raises :class:`LabError` after
        60 s + ``n`` / 200 s)."""
        self._wait(
            lambda: all(
                (d := dataplane_status(self, node))["installed"] == d["desired"] == n
                and not d["pending"]
                and also(d)
                for node in ("ha1", "ha2")
            ),
            60 + n / 200,
            f"both members to hold {what}",
            poll=0.25,
        )

    def cut_and_kill(self) -> float:
        """The box ``ha1`` dies: its link cut first (after a SIGKILL alone its kernel forwards
        on, and the kill of a big process takes a while), then its daemon SIGKILLed; the cut's
        time (monotonic), from which outages count."""
        cut = time.monotonic()
        _ip("-n", self.ns("hub"), "link", "set", "p-ha1-0", "down")
        self.kill("ha1")
        return cut

    def stop_cleanly(self, node: str, timeout: float = 60.0) -> None:
        """SIGTERM to ``node``'s daemon, waited for."""
        popen = self.procs[node].popen
        popen.send_signal(signal.SIGTERM)
        popen.wait(timeout)


class Received(NamedTuple):
    """What the care-of side received, by sampled home, the kill at ``killed``."""

    got: list[Any]  # the receiver's (arrival, inner destination, sequence)
    per_home: dict[str, dict[str, float | None]]  # :func:`sampled_outages`
    summary: dict[str, Any]  # :func:`~mobileip.tools.simnodes.summarize` of per_home
    twice: int  # :func:`tunnelled_twice`


def stop_traffic(
    rx: Proc, tx: Proc, stop: Path, homes: Sequence[str], killed: float, every: float
) -> Received:
    """The traffic of :meth:`KernelLab.start_traffic` stopped (``stop`` touched, the receiver's
    result and the sender's end read) and what arrived summed up."""
    stop.touch()
    got: list[Any] = json.loads(rx.wait_for(r"^RESULT ", 60)[len("RESULT ") :])
    tx.wait_for(r"^sent ", 20)
    per_home = sampled_outages(got, homes, killed, every)
    return Received(got, per_home, simnodes.summarize(per_home), tunnelled_twice(got))


def tunnelled_twice(got: Iterable[tuple[Any, str, int]]) -> int:
    """How many of the receiver's packets (arrival, inner destination, sequence) arrived again:
    two forwarders at once."""
    seen: set[tuple[str, int]] = set()
    twice = 0
    for _, dst, seq in got:
        twice += (dst, seq) in seen
        seen.add((dst, seq))
    return twice


def dataplane_status(lab: NetnsLab, node: str) -> dict[str, Any]:
    """The member's ``STATUS`` (the dataplane service's, with its backend's)."""
    data: dict[str, Any] = lab.control(node, STATUS, timeout=30.0)
    return data


def tx_packets(lab: NetnsLab, node: str, dev: str) -> int:
    """Packets ``dev`` in ``node`` has sent (``mip-ipip``: the kernel's tunnel path)."""
    out = lab.run(node, ["ip", "-s", "-j", "link", "show", dev])
    return int(json.loads(out)[0]["stats64"]["tx"]["packets"])


def sampled_outages(
    got: Iterable[tuple[float, str, int]], homes: Iterable[str], killed: float, every: float
) -> dict[str, dict[str, float | None]]:
    """Each sampled home's :func:`~mobileip.tools.simnodes.node_outage` from the receiver's
    packets (arrival, inner destination, sequence), the kill at ``killed``."""
    packets = list(got)
    per_home: dict[str, dict[str, float | None]] = {}
    for h in homes:
        arrivals = sorted(t for t, dst, _ in packets if dst == h)
        per_home[h] = simnodes.node_outage(arrivals, killed, every)
    return per_home


@contextlib.contextmanager
def torn_down(lab: NetnsLab, stop: Path) -> Iterator[None]:
    """The block's lab always torn down and its traffic stopped (``stop`` touched); on a
    failure each process's last 30 log lines (registrations left out) printed first."""
    try:
        yield
    except BaseException:
        stop.touch()
        for label, proc in lab.procs.items():
            tail = [t for _, t in proc.lines if "registration.accepted" not in t][-30:]
            print(f"--- {label}\n" + "\n".join(tail))
        raise
    finally:
        with contextlib.suppress(Exception):
            stop.touch()
        lab.teardown()
