"""The VRRPv3 speaker: raw protocol 112 socket, timers, virtual address, on a thread of its own.

:class:`VrrpSpeaker` takes :class:`VrrpSettings` and an optional role callback; it feeds
received advertisements (TTL 255 only, checksum verified) and timer expiries to
:class:`~mobileip.vrrp.machine.VrrpMachine`, multicasts what it asks for, adds the virtual
addresses (and sends gratuitous ARP from the interface's own MAC) on ``BecameMaster`` and
removes them on ``BecameBackup`` / shutdown.

With ``vmac_interface`` (RFC 5798 7.3, keepalived's ``use_vmac``) the speaker owns a macvlan
carrying the virtual MAC 00:00:5e:00:01:VRID (:mod:`mobileip.net.vmac`): made (down) at start,
up with the virtual addresses on it while MASTER, down with none on it otherwise, deleted at a
clean stop. While it is up the adverts leave from it (source MAC the virtual MAC, source
address still the base interface's primary address) and so does gratuitous ARP; ARP for the
virtual address is then answered from the virtual MAC only (``arp_ignore=1`` on both). Adverts
are read on the base *and* on the macvlan: a multicast frame whose source MAC is a macvlan's
own MAC (another master's advert) is handed by the macvlan driver to that macvlan, not to the
base, so a master listening on the base alone would never hear a preempting peer.

Why a thread (issue 13, "VRRP never starves")
---------------------------------------------

The speaker used to run on the daemon's asyncio loop. With the active member serving
registrations at its limit (about 4,700/s from ``mobileip loadgen --max``, plus sync, data-plane
installs and a bulk download for a joining member), loop turns grew to hundreds of
milliseconds: the gap between adverts reached 245 ms at p99.9 with 0.1 s adverts, and a joining
member declared itself MASTER (``reason=master-down-timer``) while the active still held the
address. The machine is sans-IO, so it now runs on a dedicated daemon thread with its own
timers: a blocking ``poll`` on the raw socket and a wake-up pipe, with a timeout to the
machine's next deadline. The asyncio loop never touches the machine; it posts commands
(priority change, shutdown) through a queue and the pipe, and the thread posts role changes
and log lines back with ``call_soon_threadsafe``, in order. Adding and removing the virtual
address (pyroute2, ~10 ms, more under load) runs on a second small thread so it never delays
an advert; gratuitous ARP (one raw frame per address) is sent from the speaker thread,
including the periodic re-announcement while MASTER (``garp_refresh``, keepalived's
``vrrp_garp_master_refresh``), which therefore no longer depends on the loop either.

Under load (measured with tests/test_vrrp_starvation_netns.py plus six busy processes at nice 0
on the 2 cores, 5 runs each; docs/performance.md, "VRRP under load"), each late advert is logged
as ``advert-late`` with where its time went (:meth:`VrrpSpeaker._late_cause`, from
``/proc/thread-self/schedstat``: run-queue wait, CPU, and "blocked", asleep past the deadline).
Two causes, neither the cyclic GC (``gc.callbacks`` saw pauses of a few ms):

* our own: the periodic gratuitous ARP (``garp_refresh``, every 1 s) opened, bound and closed an
  AF_PACKET socket per frame on this thread; bind and close each wait for an RCU grace period
  (``synchronize_net``), 24 ms on a quiet box, far more loaded: the "blocked" gaps (up to
  1.3 s, the standby took over). One long-lived unbound socket now sends them (~10 us);
* CPU contention (run-queue waits up to 90 ms): the thread runs in SCHED_RR
  (``rt_priority``, keepalived's ``vrrp_rt_priority``; default on when permitted, the thread
  only), which brings the run-queue wait to ~0.

With both, 5 of 5 runs under that load: p99.9 106-128 ms, no transition. GIL waits remain
(a few to ~20 ms per late advert); a lower switch interval did not help. Each late advert's
log line also names where the event loop's thread was when the speaker got the lock back
(``loop_at``). A backup whose ``poll()`` returned on the Master_Down_Timer's deadline but
got the lock only later reads the adverts that arrived meanwhile before the timer fires
(counted ``advert-heard-late``): a busy event loop on the backup is not a dead master.
The gaps between our adverts while MASTER (last :data:`GAP_WINDOW`) are in
:meth:`VrrpSpeaker.advert_gap_stats` (``advert_gap_ms`` in ``GET /api/v1/vrrp``).

Standalone runner (logs ``key=value`` lines on stderr; SIGTERM/SIGINT shut down cleanly,
sending priority 0)::

    python -m mobileip.net.vrrp_socket --interface eth0 --vrid 51 --priority 110 \\
        --address 10.1.0.1/24 --advert-interval 0.1 [--no-preempt]

Why one file of ~770 lines: :class:`VrrpSpeaker` is one thread's loop (raw socket, timers,
the sans-IO machine's actions, the virtual address and its macvlan) whose parts share its
locks and state; the decisions themselves are in :mod:`mobileip.vrrp.machine` and the codec in
:mod:`mobileip.wire.vrrp`. The standalone runner at the end is ~60 lines.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import gc
import math
import os
import select
import signal
import socket
import struct
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface

from mobileip.net import netlink
from mobileip.net import vmac as vm
from mobileip.vrrp.machine import (
    BecameBackup,
    BecameInitialize,
    BecameMaster,
    Output,
    PeerClaimedMaster,
    SendAdvert,
    State,
    VrrpConfig,
    VrrpMachine,
)
from mobileip.wire import vrrp as wire
from mobileip.wire.errors import DecodeError

IP_PKTINFO = 8
ETH_P_ARP = 0x0806
SO_BINDTODEVICE = 25
GAP_WINDOW = 10_000  # advert gaps kept for the percentiles (~17 minutes at 0.1 s)
LATE_FACTOR = 1.5  # a gap above this many advert intervals counts as late
STOP_TIMEOUT = 5.0  # seconds to wait for the threads at shutdown
DUP_WINDOW = 0.005  # the same advert read on both sockets within this is one advert
DEFAULT_RT_PRIORITY = 10  # SCHED_RR priority of the speaker thread when permitted (1-99)

Logger = Callable[..., None]
RoleCallback = Callable[[State, str], None]


@dataclass(frozen=True, slots=True)
class VrrpSettings:
    interface: str
    vrid: int
    priority: int
    addresses: tuple[IPv4Interface, ...]
    advert_interval: float = 1.0  # seconds, 0.01 steps
    preempt: bool = True
    accept_mode: bool = False
    accept_v2_checksum: bool = False
    garp_repeat: int = 3  # gratuitous ARPs per takeover
    garp_spacing: float = 0.2  # seconds between them
    garp_refresh: float | None = None  # seconds between re-announcements while MASTER
    # RFC 5798 7.3 virtual MAC on a macvlan of this name (keepalived's use_vmac); None: the
    # virtual addresses go on ``interface`` and everything leaves with its own MAC
    vmac_interface: str | None = None
    # SCHED_RR priority of the speaker thread (keepalived's vrrp_rt_priority): None tries
    # DEFAULT_RT_PRIORITY and quietly keeps normal scheduling when not permitted; 0: off
    rt_priority: int | None = None

    @property
    def advert_interval_cs(self) -> int:
        return round(self.advert_interval * 100)


def log_kv(event: str, **fields: object) -> None:
    """Default logger: one ``key=value`` line on stderr."""
    parts = [f"ts={time.time():.3f}", f"event={event}"]
    parts += [f"{k}={str(v).replace(' ', '_')}" for k, v in fields.items()]
    print(" ".join(parts), file=sys.stderr, flush=True)


def parse_ip_packet(packet: bytes) -> tuple[int, IPv4Address, IPv4Address, bytes]:
    """Return (ttl, src, dst, payload) of a raw IPv4 packet; DecodeError if malformed."""
    if len(packet) < 20 or packet[0] >> 4 != 4:
        raise DecodeError("bad-ip-header", code=None)
    ihl = (packet[0] & 0x0F) * 4
    (total,) = struct.unpack_from("!H", packet, 2)
    if ihl < 20 or len(packet) < ihl or total < ihl:
        raise DecodeError("bad-ip-header", code=None)
    end = min(total, len(packet))
    return packet[8], IPv4Address(packet[12:16]), IPv4Address(packet[16:20]), packet[ihl:end]


def nearest_rank(ordered: list[float], p: float) -> float:
    """Percentile ``p`` (0-100) of an ascending list, nearest rank."""
    return ordered[max(1, math.ceil(p / 100.0 * len(ordered))) - 1]


class GapStats:
    """Gaps between consecutive adverts sent while MASTER (thread-safe)."""

    def __init__(self, interval: float, window: int = GAP_WINDOW) -> None:
        self.late_after = LATE_FACTOR * interval
        self._lock = threading.Lock()
        self._gaps: deque[float] = deque(maxlen=window)
        self._last: float | None = None
        self.count = 0
        self.late = 0
        self.worst = 0.0

    def sent(self, now: float) -> float | None:
        """An advert left at ``now``; returns the gap when it was late, else None."""
        late = None
        with self._lock:
            if self._last is not None:
                gap = now - self._last
                self._gaps.append(gap)
                self.count += 1
                self.worst = max(self.worst, gap)
                if gap > self.late_after:
                    self.late += 1
                    late = gap
            self._last = now
        return late

    def reset(self) -> None:
        """Not MASTER any more: the next advert starts a new run."""
        with self._lock:
            self._last = None

    def summary(self) -> dict[str, float | int | None]:
        """Milliseconds: percentiles over the kept window, ``worst``/``late`` since start."""
        with self._lock:
            ordered = sorted(self._gaps)
            count, late, worst = self.count, self.late, self.worst
        if not ordered:
            return {"count": count, "p50": None, "p99": None, "p99.9": None, "max": None,
                    "worst": None, "late": late}  # fmt: skip
        return {
            "count": count,
            "p50": round(nearest_rank(ordered, 50) * 1000, 2),
            "p99": round(nearest_rank(ordered, 99) * 1000, 2),
            "p99.9": round(nearest_rank(ordered, 99.9) * 1000, 2),
            "max": round(ordered[-1] * 1000, 2),
            "worst": round(worst * 1000, 2),
            "late": late,
        }


class VrrpSpeaker:
    """One virtual router on one interface; the protocol runs on a thread of its own.

    Thread rules: only the speaker thread touches :attr:`machine` (other threads may read its
    ``state``, ``priority`` and ``master_address``); the asyncio loop talks to it with
    :meth:`set_priority` and :meth:`stop`; role callbacks and log lines run on the loop.
    """

    def __init__(
        self,
        settings: VrrpSettings,
        on_role: RoleCallback | None = None,
        log: Logger = log_kv,
    ) -> None:
        self.settings = settings
        self.on_role = on_role
        self.log = log
        self.machine: VrrpMachine | None = None
        self.counters: dict[str, int] = {}
        self.gaps = GapStats(settings.advert_interval)
        self._counter_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sock: socket.socket | None = None
        self._info: netlink.InterfaceInfo | None = None
        self._thread: threading.Thread | None = None
        self._wake_r = -1
        self._wake_w = -1
        self._commands: deque[Callable[[float], None]] = deque()
        self._stopping = False
        self._garp_due: list[float] = []
        self._next_refresh: float | None = None
        # the address thread: generations of "wanted" vs "done"
        self._addr_cond = threading.Condition()
        self._want_addresses = False
        self._addr_wanted = 0
        self._addr_done = 0
        self._addr_stop = False
        self._addr_thread: threading.Thread | None = None
        # the virtual MAC (vmac_interface): the macvlan, its socket, and whether it is up
        # with the addresses on it (adverts leave from it only then)
        self.vmac: vm.Vmac | None = None
        self._vsock: socket.socket | None = None
        self.vmac_ready = False
        self._recent: deque[tuple[float, int, bytes]] = deque(maxlen=16)
        # where a late advert's time went (speaker thread only): see _late_cause
        self._sched_fd = -1
        self._last_sched = (0, 0)  # run-queue ns, CPU ns of this thread at the last advert
        self._garp_sock: socket.socket | None = None  # speaker thread only
        self._gc_started = 0.0  # the cyclic GC's pauses (any thread) since the last advert
        self._gc_pause = 0.0
        self.native_id: int | None = None
        self._loop_ident: int | None = None  # the event loop's thread (see _loop_at)

    @property
    def state(self) -> State:
        return self.machine.state if self.machine else State.INITIALIZE

    def counters_snapshot(self) -> dict[str, int]:
        with self._counter_lock:
            return dict(self.counters)

    def advert_gap_stats(self) -> dict[str, float | int | None]:
        """Gaps between our adverts while MASTER, in milliseconds (see :class:`GapStats`)."""
        return self.gaps.summary()

    # --- lifecycle (event loop) ---------------------------------------------------------------

    async def start(self) -> None:
        s = self.settings
        self._loop = asyncio.get_running_loop()
        self._loop_ident = threading.get_ident()
        self._info = await netlink.interface_info(s.interface)
        if self._info.primary_address is None:
            raise netlink.NetlinkFailure(f"{s.interface} has no IPv4 address")
        self.machine = VrrpMachine(
            VrrpConfig(
                vrid=s.vrid,
                priority=s.priority,
                addresses=tuple(a.ip for a in s.addresses),
                primary_address=self._info.primary_address,
                advert_interval=s.advert_interval_cs,
                preempt=s.preempt,
                accept_mode=s.accept_mode,
            )
        )
        if s.vmac_interface:
            try:
                self.vmac = await asyncio.to_thread(
                    vm.ensure, s.interface, s.vrid, s.vmac_interface, claim=True
                )
            except vm.VmacError as exc:  # the daemon reports an OSError and exits
                raise OSError(f"virtual MAC: {exc}") from None
            try:
                await asyncio.to_thread(vm.set_up, self.vmac, False)  # MASTER brings it up
                self._vsock = self._open_socket(self.vmac.name, self.vmac.index)
            except (vm.VmacError, OSError) as exc:
                with contextlib.suppress(vm.VmacError, OSError):
                    await asyncio.to_thread(vm.release, self.vmac)
                self.vmac = None
                raise OSError(f"virtual MAC {s.vmac_interface}: {exc}") from None
        self._sock = self._open_socket(self._info.name, self._info.index)
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self.log(
            "start",
            interface=s.interface,
            vrid=s.vrid,
            priority=s.priority,
            primary=self._info.primary_address,
            interval=s.advert_interval,
            vmac=f"{self.vmac.name}/{vm.mac_text(self.vmac.mac)}" if self.vmac else "-",
        )
        self._addr_thread = threading.Thread(
            target=self._address_thread, name=f"vrrp{s.vrid}-addresses", daemon=True
        )
        self._addr_thread.start()
        # A leftover virtual address from a previous run must not linger while we are backup.
        self._set_want_addresses(False)
        self._thread = threading.Thread(target=self._run, name=f"vrrp{s.vrid}", daemon=True)
        gc.callbacks.append(self._gc_watch)
        self._thread.start()

    async def stop(self) -> None:
        """Clean shutdown: priority-0 advert if master, addresses removed, socket closed."""
        thread = self._thread
        if thread is None or self.machine is None:
            return
        self._thread = None

        def shutdown(now: float) -> None:
            assert self.machine is not None
            self.machine.shutdown(now)
            self._process(now)
            self._stopping = True

        self._command(shutdown)
        await asyncio.to_thread(thread.join, STOP_TIMEOUT)
        if thread.is_alive():
            self.log("stop-timeout", vrid=self.settings.vrid)
        self._set_want_addresses(False)  # whatever the thread managed to do
        await asyncio.to_thread(self._finish_addresses, STOP_TIMEOUT)
        await asyncio.sleep(0)  # the log lines and callbacks the threads posted go first
        if self._sock is not None and not thread.is_alive():
            self._sock.close()
            self._sock = None
            if self._vsock is not None:
                self._vsock.close()
                self._vsock = None
            os.close(self._wake_r)
            os.close(self._wake_w)
            self._wake_r = self._wake_w = -1  # a late command must not write to a reused fd
        if self.vmac is not None and not thread.is_alive():
            v, self.vmac = self.vmac, None
            try:  # the macvlan we made (or claimed) goes, the sysctls come back
                await asyncio.to_thread(vm.release, v)
            except (vm.VmacError, OSError) as exc:
                self.log("vmac-release-failed", interface=v.name, error=exc)
        with contextlib.suppress(ValueError):
            gc.callbacks.remove(self._gc_watch)
        gap = self.gaps.summary()
        self.log(
            "stopped",
            vrid=self.settings.vrid,
            **self.counters_snapshot(),
            gap_p99_9_ms=gap["p99.9"],
            gap_max_ms=gap["worst"],
            gap_late=gap["late"],
        )

    def set_priority(self, priority: int) -> None:
        """Change the advertised priority (e.g. lowered while NOT SYNCED)."""
        if not 1 <= priority <= 255:
            raise ValueError(f"priority {priority} outside 1-255")
        machine = self.machine
        if machine is None or self._thread is None:
            return
        self.log("priority", vrid=self.settings.vrid, priority=priority)
        self._command(lambda now: machine.set_priority(priority, now))

    def announce(self) -> None:
        """One round of gratuitous ARP now (skipped unless MASTER); callable from any thread."""
        self._command(lambda now: self._send_garp())

    # --- socket -------------------------------------------------------------------------------

    def _open_socket(self, name: str, index: int) -> socket.socket:
        """Protocol 112 on one interface: the base, or the macvlan (with the virtual MAC up,
        the macvlan driver hands frames whose source is the virtual MAC, i.e. another
        master's adverts, to our macvlan and not to the base: we must listen on both)."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, wire.IP_PROTO_VRRP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, name.encode())
            mreqn = wire.MULTICAST_GROUP.packed + bytes(4) + struct.pack("@i", index)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreqn)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, mreqn)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, wire.REQUIRED_TTL)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        return sock

    def _send(self, data: bytes) -> bool:
        """One advert: from the virtual MAC while the macvlan is up with the addresses (source
        address still the base interface's primary one, RFC 5798 5.1.1.1), else from the base."""
        assert self._sock is not None and self._info is not None
        primary = self._info.primary_address
        assert primary is not None
        if self.vmac_ready and self._vsock is not None and self.vmac is not None:
            pktinfo = struct.pack("@i4s4s", self.vmac.index, primary.packed, bytes(4))
            try:
                self._vsock.sendmsg(
                    [data],
                    [(socket.IPPROTO_IP, IP_PKTINFO, pktinfo)],
                    0,
                    (str(wire.MULTICAST_GROUP), 0),
                )
            except OSError as exc:  # e.g. the link went down under us: the base still works
                self._count("vmac-send-error")
                self._log("vmac-send-error", error=exc)
            else:
                self._count("sent")
                self._count("sent-vmac")
                return True
        pktinfo = struct.pack("@i4s4s", self._info.index, primary.packed, bytes(4))
        try:
            self._sock.sendmsg(
                [data],
                [(socket.IPPROTO_IP, IP_PKTINFO, pktinfo)],
                0,
                (str(wire.MULTICAST_GROUP), 0),
            )
        except OSError as exc:
            self._count("send-error")
            self._log("send-error", error=exc)
            return False
        self._count("sent")
        return True

    def _duplicate(self, fd: int, packet: bytes, now: float) -> bool:
        """The same frame delivered to the base and to the macvlan (a multicast frame whose
        source is not the virtual MAC reaches both while the macvlan is up): count it once."""
        for at, other, seen in self._recent:
            if other != fd and seen == packet and now - at <= DUP_WINDOW:
                return True
        self._recent.append((now, fd, packet))
        return False

    def _receive(self, sock: socket.socket, now: float) -> int:
        """Every datagram waiting on ``sock`` read; the adverts that passed the checks,
        counted."""
        assert self.machine is not None
        heard = 0
        while True:
            try:
                packet = sock.recv(65535)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                self._count("recv-error")
                self._log("recv-error", error=exc)
                break
            if self._vsock is not None and self._duplicate(sock.fileno(), packet, now):
                self._count("received-twice")
                continue
            try:
                ttl, src, dst, payload = parse_ip_packet(packet)
                if ttl != wire.REQUIRED_TTL:
                    raise DecodeError("bad-ttl", str(ttl), code=None)
                adv = wire.decode(
                    payload, src, dst, accept_v2_checksum=self.settings.accept_v2_checksum
                )
            except DecodeError as exc:
                self._count(f"dropped-{exc.reason}")
                continue
            self._count("received")
            self.machine.handle_advert(adv, src, now)
            heard += 1
        return heard

    # --- the speaker thread -------------------------------------------------------------------

    def _run(self) -> None:
        assert self._sock is not None and self.machine is not None
        poller = select.poll()
        poller.register(self._sock.fileno(), select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        sockets = {self._sock.fileno(): self._sock}
        if self._vsock is not None:
            poller.register(self._vsock.fileno(), select.POLLIN)
            sockets[self._vsock.fileno()] = self._vsock
        self.native_id = threading.get_native_id()
        self._realtime()
        with contextlib.suppress(OSError):
            self._sched_fd = os.open("/proc/thread-self/schedstat", os.O_RDONLY)
        try:
            now = time.monotonic()
            self.machine.start(now)
            self._process(now)
            while not self._stopping:
                ready = poller.poll(self._poll_timeout(time.monotonic()))
                self._step(ready, sockets, time.monotonic())
        except Exception as exc:  # never leave the address behind a silent speaker
            self._log("thread-failed", vrid=self.settings.vrid, error=repr(exc))
            self._set_want_addresses(False)
            self._notify(State.INITIALIZE, "speaker-failed")
        finally:
            if self._garp_sock is not None:
                self._garp_sock.close()
                self._garp_sock = None
            if self._sched_fd >= 0:
                os.close(self._sched_fd)
                self._sched_fd = -1

    def _step(self, ready: list[tuple[int, int]], sockets: dict[int, socket.socket],
              now: float) -> None:  # fmt: skip
        """One turn of the speaker thread after ``poll()`` returned ``ready``: adverts read,
        commands run, timers fired, outputs handled."""
        assert self.machine is not None
        for fd, _events in ready:
            if fd == self._wake_r:
                with contextlib.suppress(BlockingIOError):
                    os.read(self._wake_r, 4096)
            elif fd in sockets:
                self._receive(sockets[fd], now)
        due = self.machine.next_timer()
        # poll() returned before the interpreter lock was ours again: an advert that arrived
        # while this thread waited for it is heard before the Master_Down_Timer fires (a busy
        # event loop is not a dead master)
        if (due is not None and due <= now and not any(fd in sockets for fd, _ in ready)
                and sum([self._receive(sock, now) for sock in sockets.values()]) > 0):  # fmt: skip
            self._count("advert-heard-late")
        # adverts first: one heard now resets the Master_Down_Timer before it fires
        self._process(now)
        while self._commands:
            self._commands.popleft()(now)
        self.machine.handle_timer(now)  # early calls are ignored
        self._process(now)
        self._garp_chores(now)

    def _realtime(self) -> None:
        """Put this thread (only) in SCHED_RR, as keepalived's ``vrrp_rt_priority`` does."""
        wanted = self.settings.rt_priority
        prio = DEFAULT_RT_PRIORITY if wanted is None else wanted
        if prio <= 0:
            return
        try:  # pid 0: the calling thread (Linux schedules threads, not processes)
            os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(prio))
        except OSError as exc:  # not root / no CAP_SYS_NICE / no RT budget: normal scheduling
            self._count("rt-priority-refused")
            self._log("rt-priority-refused", vrid=self.settings.vrid, priority=prio,
                      error=exc.strerror, configured=wanted is not None)  # fmt: skip
            return
        self._log("rt-priority", vrid=self.settings.vrid, policy="SCHED_RR", priority=prio)

    def _schedstat(self) -> tuple[int, int]:
        """(run-queue wait, CPU time) of this thread so far, in ns (0, 0 if unavailable)."""
        if self._sched_fd < 0:
            return 0, 0
        try:
            cpu, runq, _slices = os.pread(self._sched_fd, 128, 0).split()
        except (OSError, ValueError):
            return 0, 0
        return int(runq), int(cpu)

    def _gc_watch(self, phase: str, _info: dict[str, int]) -> None:
        """``gc.callbacks``: the longest collection since the last advert (holds the GIL)."""
        if phase == "start":
            self._gc_started = time.monotonic()
        elif self._gc_started:
            self._gc_pause = max(self._gc_pause, time.monotonic() - self._gc_started)

    def _late_cause(self, gap: float) -> dict[str, float]:
        """Where a late advert's time went, in ms (``/proc/thread-self/schedstat``).

        Over the gap since the previous advert: ``late``, the gap beyond the advert interval;
        ``runq``, the time this thread was runnable but not running (the CPUs were busy with
        other work: what realtime scheduling fixes); ``cpu``, the time it ran; ``blocked``, the
        rest of the lateness: the thread was asleep although its timer had expired, i.e.
        waiting for the GIL another thread of ours held (a long C call, a garbage
        collection, or a GIL holder the kernel had descheduled).
        """
        runq1, cpu1 = self._schedstat()
        runq0, cpu0 = self._last_sched
        late = max(0.0, gap - self.settings.advert_interval) * 1000
        runq = max(0, runq1 - runq0) / 1e6
        cpu = max(0, cpu1 - cpu0) / 1e6
        return {
            "late_ms": round(late, 1),
            "runq_ms": round(runq, 1),
            "cpu_ms": round(cpu, 1),
            "blocked_ms": round(max(0.0, late - runq - cpu), 1),
            "gc_ms": round(self._gc_pause * 1000, 1),
        }

    def _loop_at(self, depth: int = 3) -> str:
        """Where the event loop's thread is now: ``depth`` frames, innermost first, as
        ``file:line:function`` separated by commas. Read as a late advert goes out, just after
        this thread got the interpreter lock back: the place that held it (or the system call
        it was in)."""
        frame = sys._current_frames().get(self._loop_ident or -1)
        where: list[str] = []
        while frame is not None and len(where) < depth:
            code = frame.f_code
            where.append(f"{os.path.basename(code.co_filename)}:{frame.f_lineno}:{code.co_name}")
            frame = frame.f_back
        return ",".join(where) or "-"

    def _poll_timeout(self, now: float) -> int:
        """Milliseconds until the next deadline (rounded up; -1: none)."""
        assert self.machine is not None
        deadlines = [t for t in (self.machine.next_timer(), self._next_refresh) if t is not None]
        deadlines += self._garp_due
        if not deadlines:
            return -1
        return max(0, math.ceil((min(deadlines) - now) * 1000))

    def _command(self, command: Callable[[float], None]) -> None:
        """Run ``command(now)`` on the speaker thread (from any thread)."""
        self._commands.append(command)
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._wake_w, b"\0")

    def _process(self, now: float) -> None:
        assert self.machine is not None
        for out in self.machine.outputs():
            self._handle_output(out)

    def _handle_output(self, out: Output) -> None:
        assert self.machine is not None
        assert self._info is not None and self._info.primary_address is not None
        vrid = self.settings.vrid
        if isinstance(out, SendAdvert):
            sent = self._send(wire.encode(out.advert, self._info.primary_address))
            if sent and out.advert.priority != 0 and self.machine.state is State.MASTER:
                late = self.gaps.sent(time.monotonic())
                if late is not None:
                    cause = self._late_cause(late)
                    self._count("advert-late")
                    self._count("advert-late-blocked" if cause["blocked_ms"] > cause["runq_ms"]
                                else "advert-late-runq")  # fmt: skip
                    self._log("advert-late", vrid=vrid, gap_ms=round(late * 1000, 1), **cause,
                              loop_at=self._loop_at())  # fmt: skip
                self._last_sched = self._schedstat()
                self._gc_pause = 0.0
        elif isinstance(out, BecameMaster):
            self._log("state", vrid=vrid, state="MASTER", reason=out.reason)
            self._set_want_addresses(True)
            self._notify(State.MASTER, out.reason)
            if self.settings.garp_refresh:
                self._next_refresh = time.monotonic() + self.settings.garp_refresh
        elif isinstance(out, BecameBackup):
            self._log("state", vrid=vrid, state="BACKUP", reason=out.reason, master=out.master)
            self._left_master()
            self._notify(State.BACKUP, out.reason)
        elif isinstance(out, BecameInitialize):
            self._log("state", vrid=vrid, state="INITIALIZE", reason=out.reason)
            self._left_master()
            self._notify(State.INITIALIZE, out.reason)
        elif isinstance(out, PeerClaimedMaster):
            self._log("peer-claimed-master", vrid=vrid, peer=out.peer, priority=out.peer_priority)
            self._schedule_garp(time.monotonic())

    def _left_master(self) -> None:
        self.vmac_ready = False  # adverts (none while not MASTER) go back to the base
        self._set_want_addresses(False)
        self.gaps.reset()
        self._garp_due = []
        self._next_refresh = None

    def _post(self, func: Callable[..., None], *args: object, **kwargs: object) -> None:
        """Run ``func`` on the event loop, after what was posted before."""
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody to tell
            loop.call_soon_threadsafe(functools.partial(func, *args, **kwargs))

    def _log(self, event: str, **fields: object) -> None:
        self._post(self.log, event, **fields)

    def _notify(self, state: State, reason: str) -> None:
        if self.on_role is not None:
            self._post(self._deliver, state, reason)

    def _deliver(self, state: State, reason: str) -> None:
        assert self.on_role is not None
        try:
            self.on_role(state, reason)
        except Exception as exc:  # a broken callback must not stop the protocol
            self.log("callback-error", error=repr(exc))

    # --- gratuitous ARP (speaker thread) ------------------------------------------------------

    def _schedule_garp(self, now: float) -> None:
        s = self.settings
        self._garp_due = [now + i * s.garp_spacing for i in range(s.garp_repeat)]
        if s.garp_refresh:
            self._next_refresh = now + s.garp_refresh

    def _garp_chores(self, now: float) -> None:
        due = [t for t in self._garp_due if t <= now]
        if due:
            self._garp_due = [t for t in self._garp_due if t > now]
            self._send_garp()
        refresh = self.settings.garp_refresh
        if refresh and self._next_refresh is not None and now >= self._next_refresh:
            self._next_refresh = now + refresh
            self._send_garp()

    def _garp_socket(self) -> socket.socket:
        """One AF_PACKET socket for every gratuitous ARP, never bound, protocol 0 (it receives
        nothing). A socket per frame (``netlink.send_gratuitous_arp``) costs an RCU grace
        period in bind and close (``synchronize_net``): 24 ms on a quiet box, hundreds of ms
        on a loaded one, and this thread was blocked that long every ``garp_refresh``."""
        if self._garp_sock is None:
            self._garp_sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        return self._garp_sock

    def _send_garp(self) -> None:
        if self.state is not State.MASTER or self._info is None:
            return
        name, mac = self._info.name, self._info.mac
        if self.vmac is not None:
            name, mac = self.vmac.name, self.vmac.mac
        for addr in self.settings.addresses:
            try:
                self._garp_socket().sendto(
                    netlink.gratuitous_arp_frame(mac, addr.ip), (name, ETH_P_ARP)
                )
                self._count("garp-sent")
            except OSError as exc:
                self._count("garp-error")
                self._log("garp-error", address=addr, error=exc)

    # --- virtual addresses (address thread) ---------------------------------------------------

    def _set_want_addresses(self, want: bool) -> None:
        with self._addr_cond:
            self._want_addresses = want
            self._addr_wanted += 1
            self._addr_cond.notify_all()

    def _address_thread(self) -> None:
        assert self._info is not None
        v = self.vmac
        index = v.index if v is not None else self._info.index
        present: bool | None = None  # unknown at start: removal is attempted once
        while True:
            with self._addr_cond:
                while self._addr_done == self._addr_wanted and not self._addr_stop:
                    self._addr_cond.wait()
                if self._addr_done == self._addr_wanted:
                    return  # stopping, and everything asked for is done
                generation, want = self._addr_wanted, self._want_addresses
            if want != present:
                if v is not None and want:
                    self._vmac_link(v, True)  # up first: the address then routes through it
                # at start, also from the base: a run without the virtual MAC may have left it
                indexes = [index, self._info.index] if present is None and v else [index]
                for addr in self.settings.addresses:
                    for i in indexes:
                        try:
                            if want:
                                netlink._add_address(i, addr)
                            else:
                                netlink._remove_address(i, addr)
                        except (netlink.NetlinkFailure, OSError) as exc:
                            self._log("address-error", address=addr, error=exc)
                if v is not None and not want:
                    self._vmac_link(v, False)
                present = want
                self._log(
                    "addresses",
                    vrid=self.settings.vrid,
                    present=want,
                    interface=v.name if v is not None else self._info.name,
                )
                if want:  # announce once the address is there
                    self._command(self._schedule_garp)
            with self._addr_cond:
                if v is not None and self._addr_wanted == generation:
                    # nothing newer asked for: adverts may leave from the virtual MAC now
                    self.vmac_ready = want
                self._addr_done = generation
                self._addr_cond.notify_all()

    def _vmac_link(self, v: vm.Vmac, up: bool) -> None:
        try:
            vm.set_up(v, up)
        except (vm.VmacError, OSError) as exc:
            self._count("vmac-link-error")
            self._log("vmac-link-error", interface=v.name, up=up, error=exc)

    def _finish_addresses(self, timeout: float) -> None:
        """Wait (blocking) until the wanted addresses are in place, then end the thread."""
        deadline = time.monotonic() + timeout
        with self._addr_cond:
            while self._addr_done != self._addr_wanted:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._addr_cond.wait(remaining)
            self._addr_stop = True
            self._addr_cond.notify_all()
        if self._addr_thread is not None:
            self._addr_thread.join(max(0.0, deadline - time.monotonic()))

    def _count(self, key: str) -> None:
        with self._counter_lock:
            self.counters[key] = self.counters.get(key, 0) + 1


# --- standalone runner ------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> VrrpSettings:
    p = argparse.ArgumentParser(prog="python -m mobileip.net.vrrp_socket", description=__doc__)
    p.add_argument("--interface", required=True)
    p.add_argument("--vrid", type=int, required=True)
    p.add_argument("--priority", type=int, default=100)
    p.add_argument("--address", action="append", required=True, type=IPv4Interface)
    p.add_argument("--advert-interval", type=float, default=1.0, help="seconds (0.01-40.95)")
    p.add_argument("--no-preempt", action="store_true")
    p.add_argument(
        "--rt-priority",
        type=int,
        metavar="N",
        help=f"SCHED_RR priority of the speaker thread, 0: off (default {DEFAULT_RT_PRIORITY} "
        "when permitted)",
    )
    p.add_argument("--accept-mode", action="store_true")
    p.add_argument("--accept-v2-checksum", action="store_true")
    p.add_argument(
        "--vmac-interface",
        metavar="NAME",
        help="own the RFC 5798 virtual MAC on a macvlan of this name (e.g. vrrp.51)",
    )
    a = p.parse_args(argv)
    try:
        settings = VrrpSettings(
            interface=a.interface,
            vrid=a.vrid,
            priority=a.priority,
            addresses=tuple(a.address),
            advert_interval=a.advert_interval,
            preempt=not a.no_preempt,
            accept_mode=a.accept_mode,
            accept_v2_checksum=a.accept_v2_checksum,
            vmac_interface=a.vmac_interface,
            rt_priority=a.rt_priority,
        )
        if a.rt_priority is not None and not 0 <= a.rt_priority <= 99:
            raise ValueError(f"--rt-priority {a.rt_priority} outside 0-99")
        VrrpConfig(  # validate the ranges before touching the network
            settings.vrid,
            settings.priority,
            tuple(x.ip for x in settings.addresses),
            IPv4Address(0),
            settings.advert_interval_cs,
        )
    except ValueError as exc:
        p.error(str(exc))
    return settings


async def run(settings: VrrpSettings) -> None:
    speaker = VrrpSpeaker(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await speaker.start()
    try:
        await stop.wait()
    finally:
        await speaker.stop()


def main(argv: list[str] | None = None) -> int:
    settings = parse_args(argv)
    try:
        asyncio.run(run(settings))
    except (OSError, netlink.NetlinkFailure, vm.VmacError) as exc:
        log_kv("fatal", error=exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
