"""A thin UDP endpoint: a non-blocking socket driven by ``loop.add_reader``.

Every datagram arrives as ``(data, (src_ip, src_port), dst_ip)``: with ``IP_PKTINFO`` the kernel
tells us the address the datagram was sent to, so a reply can go out *from that address*
(:meth:`UdpEndpoint.send` with ``src_ip``) even when the socket is bound to 0.0.0.0 and the
address is a virtual one that moves between members.

The reader drains the socket until EAGAIN (at most ``batch`` datagrams per wake-up, so one busy
socket cannot starve the loop). When a wake-up's batch runs out before the socket is empty the
endpoint is *overloaded*: with a :class:`~mobileip.core.fairqueue.FairQueue` (``fair``, on by
default in :meth:`UdpEndpoint.bind`) it then reads everything the kernel holds into per-source
queues and hands the datagrams to ``handler`` round robin by source, ``quantum`` at a time with a
read in between, continuing on the next loop turn until the queue is empty. The queue, not the
kernel's receive buffer, decides what is dropped (counted: ``overload_dropped``,
``overload_stale``, and ``kernel_dropped``, the socket's drops read from /proc/net/udp at most
twice a second while overloaded). Without a backlog nothing changes: each datagram is handled
as soon as it is read.

Datagrams sent while a batch is being handled are held and sent together, every ``flush_every``
and at the end of the batch: a client waiting on many replies is then woken once per burst
instead of once per reply (the wake-ups cost the sender more CPU than the sends themselves;
docs/performance.md). Errors are counted, never raised into the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
import time
from collections import Counter
from collections.abc import Callable, Iterator

from mobileip.core.fairqueue import FairQueue

# Linux values; the socket module does not export them.
IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)
_PKTINFO = struct.Struct("=I4s4s")  # ipi_ifindex, ipi_spec_dst, ipi_addr
_MREQN = struct.Struct("=4s4si")  # imr_multiaddr, imr_address, imr_ifindex
_CMSG_SPACE = socket.CMSG_SPACE(_PKTINFO.size)
_MAX_DATAGRAM = 65535

Address = tuple[str, int]


def _destination(ancdata: list[tuple[int, int, bytes]]) -> str | None:
    """The datagram's destination address from its IP_PKTINFO (None without one)."""
    for level, ctype, cdata in ancdata:
        if level == socket.IPPROTO_IP and ctype == IP_PKTINFO and len(cdata) >= _PKTINFO.size:
            raw = cdata[8:12]  # ipi_addr
            dst = _ADDRESSES.get(raw)
            if dst is None:
                dst = socket.inet_ntoa(raw)
                if len(_ADDRESSES) < 1024:
                    _ADDRESSES[raw] = dst
            return dst
    return None


def _pktinfo(src_ip: str) -> tuple[int, int, bytes]:
    """The IP_PKTINFO control message that makes a datagram leave from ``src_ip``."""
    cmsg = _PKTINFOS.get(src_ip)
    if cmsg is None:
        spec = socket.inet_aton(src_ip)  # OSError for a bad address: counted by the caller
        cmsg = (socket.IPPROTO_IP, IP_PKTINFO, _PKTINFO.pack(0, spec, b"\0" * 4))
        if len(_PKTINFOS) < 1024:
            _PKTINFOS[src_ip] = cmsg
    return cmsg


def set_rcvbuf(sock: socket.socket, size: int) -> None:
    """Ask for a ``size``-byte receive buffer: past ``net.core.rmem_max`` when we may
    (SO_RCVBUFFORCE needs CAP_NET_ADMIN), else as much as rmem_max allows."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, size)
    except OSError:
        with contextlib.suppress(OSError):  # capped by rmem_max; the default when refused
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)


# a few of our own addresses, converted once
_ADDRESSES: dict[bytes, str] = {}
_PKTINFOS: dict[str, tuple[int, int, bytes]] = {}
DatagramHandler = Callable[[bytes, Address, str | None], None]
Datagram = tuple[bytes, Address, str | None]
# the socket options Python does not name (Linux values)
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)


class UdpEndpoint:
    """One bound UDP socket; ``handler(data, src, dst_ip)`` is called for each datagram."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        handler: DatagramHandler,
        batch: int = 256,
        flush_every: int = 32,
        fair: FairQueue[Datagram] | None = None,
        quantum: int = 32,
    ) -> None:
        self.loop = loop
        self.sock = sock
        self.handler = handler
        self.batch = batch
        self.flush_every = flush_every
        # per-source queues used while overloaded (None: handle in arrival order, always)
        self.fair = fair
        self.quantum = max(1, quantum)
        self.counters: Counter[str] = Counter()
        # told about exceptions escaping ``handler`` (they are counted and swallowed)
        self.on_handler_error: Callable[[Exception], None] | None = None
        # told how many datagrams the fair queue dropped, by reason ("overload", "overload-stale")
        self.on_dropped: Callable[[str, int], None] | None = None
        self._reading = False
        self._pump_scheduled = False
        self._kernel_checked = 0.0
        self._reported = (0, 0)  # the fair queue's drops (full, stale) counted so far
        # datagrams to send at the end of the batch being read (None: not reading)
        self._held: list[tuple[bytes, Address, str | None]] | None = None
        # the address the socket is bound to, when it is one unicast address (not 0.0.0.0)
        host = sock.getsockname()[0] if sock.family == socket.AF_INET else "0.0.0.0"
        self._fixed_dst: str | None = None if host == "0.0.0.0" else str(host)

    @classmethod
    def bind(
        cls,
        loop: asyncio.AbstractEventLoop,
        host: str,
        port: int,
        handler: DatagramHandler,
        *,
        reuse_port: bool = False,
        rcvbuf: int | None = 8 * 1024 * 1024,
        fair_queue: int = 4096,
    ) -> UdpEndpoint:
        """A socket bound to ``host:port``, reading. ``fair_queue``: datagrams the per-source
        queues may hold while overloaded (0: no fair queuing, arrival order)."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if rcvbuf:
                set_rcvbuf(sock, rcvbuf)
            sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
            sock.setblocking(False)
            sock.bind((host, port))
        except BaseException:
            sock.close()
            raise
        fair: FairQueue[Datagram] | None = FairQueue(fair_queue) if fair_queue > 0 else None
        endpoint = cls(loop, sock, handler, fair=fair)
        endpoint.start()
        return endpoint

    @property
    def local_address(self) -> Address:
        host, port = self.sock.getsockname()
        return str(host), int(port)

    def start(self) -> None:
        if not self._reading:
            self.loop.add_reader(self.sock.fileno(), self._on_readable)
            self._reading = True

    def close(self) -> None:
        if self._reading:
            self.loop.remove_reader(self.sock.fileno())
            self._reading = False
        if self.fair is not None:
            self.fair.clear()
        self.sock.close()

    # --- receiving -------------------------------------------------------------------------

    def _on_readable(self) -> None:
        fair = self.fair
        with self.holding():
            if fair is None:
                self._read_batch()
            elif fair:
                self._pump(fair)  # overloaded already: the queue decides
            elif self._read_batch():
                # the batch ran out before the socket did: overloaded. The backlog leaves the
                # kernel now; the queue hands it out from the next turn (a batch per turn)
                now = time.monotonic()
                self._fill(fair, now)
                self._after_pump(fair, now)

    def _on_pump(self) -> None:
        self._pump_scheduled = False
        fair = self.fair
        if self._reading and fair:
            with self.holding():
                self._pump(fair)

    def _pump(self, fair: FairQueue[Datagram]) -> None:
        """Overloaded: read what the kernel holds into the queue, hand out ``quantum``
        datagrams round robin, again, up to ``batch`` handled; then yield to the loop and go on
        at the next turn while anything is queued."""
        handler = self.handler
        batch = self.batch
        handled = 0
        now = time.monotonic()
        while handled < batch:
            self._fill(fair, now)
            want = min(self.quantum, batch - handled)
            datagrams = fair.pop_many(now, want)
            handled += len(datagrams)
            for data, src, dst in datagrams:
                try:
                    handler(data, src, dst)
                except Exception as exc:
                    self.counters["handler_errors"] += 1
                    if self.on_handler_error is not None:
                        self.on_handler_error(exc)
            if len(datagrams) < want:
                break  # the queue is empty
            now = time.monotonic()
        self.counters["overload_handled"] += handled
        self._after_pump(fair, now)

    def _after_pump(self, fair: FairQueue[Datagram], now: float) -> None:
        """Count the queue's new drops, and go on at the next turn while anything is queued."""
        stats = fair.stats
        if stats.dropped != self._reported[0]:
            self._dropped("overload", stats.dropped - self._reported[0])
        if stats.stale != self._reported[1]:
            self._dropped("overload-stale", stats.stale - self._reported[1])
        self._reported = (stats.dropped, stats.stale)
        if fair:
            if not self._pump_scheduled:
                self._pump_scheduled = True
                self.loop.call_soon(self._on_pump)
        else:
            self.counters["overload_episodes"] += 1
        if now - self._kernel_checked >= 0.5:  # a read of /proc/net/udp: not every turn
            self._kernel_checked = now
            self._check_kernel_drops()

    def _dropped(self, reason: str, n: int) -> None:
        self.counters[reason.replace("-", "_") + "_dropped"] += n
        if self.on_dropped is not None:
            self.on_dropped(reason, n)

    def _fill(self, fair: FairQueue[Datagram], now: float) -> None:
        """Read into the queue until EAGAIN (at most its capacity: a sender faster than our
        reads is then left to the kernel rather than starving the handler)."""
        sock = self.sock
        fixed = self._fixed_dst
        push = fair.push
        received = 0
        try:
            for _ in range(fair.capacity):
                try:
                    if fixed is not None:
                        data, src = sock.recvfrom(_MAX_DATAGRAM)
                        dst: str | None = fixed
                    else:
                        data, ancdata, _flags, src = sock.recvmsg(_MAX_DATAGRAM, _CMSG_SPACE)
                        dst = _destination(ancdata)
                except (BlockingIOError, InterruptedError):
                    return
                except OSError:
                    self.counters["recv_errors"] += 1
                    continue
                received += 1
                push(src[0], (data, src, dst), now)
        finally:
            self.counters["received"] += received

    def kernel_drops(self) -> int | None:
        """Datagrams the kernel dropped for this socket (its receive buffer was full), from
        /proc/net/udp; None when that cannot be read."""
        try:
            inode = os.fstat(self.sock.fileno()).st_ino
            with open("/proc/net/udp") as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if len(fields) >= 13 and fields[9] == str(inode):
                        return int(fields[-1])
        except (OSError, ValueError, StopIteration):
            return None
        return None

    def _check_kernel_drops(self) -> None:
        drops = self.kernel_drops()
        if drops is not None:
            self.counters["kernel_dropped"] = drops

    @contextlib.contextmanager
    def holding(self) -> Iterator[None]:
        """Hold what is sent inside the block and send it as one burst (every ``flush_every``
        and at the end): for code outside a read batch that sends many datagrams in a loop with
        work in between (semisync releasing the replies a peer's ack protected). Nests."""
        if self._held is not None:
            yield
            return
        self._held = []
        try:
            yield
        finally:
            self._flush()
            self._held = None

    def _flush(self) -> None:
        held = self._held
        if held:
            self._held = []
            for data, addr, src_ip in held:
                self.send_now(data, addr, src_ip)

    def _read_batch(self) -> bool:
        """Read and handle up to ``batch`` datagrams; True when the batch ran out first (the
        socket still holds datagrams: overloaded)."""
        sock = self.sock
        handler = self.handler
        fixed = self._fixed_dst
        received = 0
        try:
            for _ in range(self.batch):
                try:
                    if fixed is not None:  # bound to one address: every datagram was sent to it
                        data, src = sock.recvfrom(_MAX_DATAGRAM)
                        dst: str | None = fixed
                    else:
                        data, ancdata, _flags, src = sock.recvmsg(_MAX_DATAGRAM, _CMSG_SPACE)
                        dst = _destination(ancdata)
                except (BlockingIOError, InterruptedError):
                    return False
                except OSError:
                    # e.g. ECONNREFUSED queued by an ICMP error for an earlier send
                    self.counters["recv_errors"] += 1
                    continue
                received += 1
                try:
                    handler(data, src, dst)
                except Exception as exc:
                    # a bug in a handler must not stop the socket
                    self.counters["handler_errors"] += 1
                    if self.on_handler_error is not None:
                        self.on_handler_error(exc)
        finally:
            self.counters["received"] += received
        return True

    # --- sending ---------------------------------------------------------------------------

    def send(self, data: bytes, addr: Address, src_ip: str | None = None) -> bool:
        """Send ``data`` to ``addr`` from ``src_ip`` (when given); False when it failed.

        While a batch of received datagrams is being handled the datagram is held (True) and sent
        with the others after at most ``flush_every`` more (or at the end of the batch)."""
        held = self._held
        if held is not None:
            held.append((data, addr, src_ip))
            if len(held) >= self.flush_every:
                self._flush()
            return True
        return self.send_now(data, addr, src_ip)

    def send_now(self, data: bytes, addr: Address, src_ip: str | None = None) -> bool:
        """:meth:`send` without holding: the datagram leaves before this returns, even while a
        batch is being handled (a table download's ack, so the sender need not wait for the
        rest of the batch)."""
        try:
            if src_ip is None or src_ip == self._fixed_dst or src_ip == "0.0.0.0":
                self.sock.sendto(data, addr)  # the kernel picks the source (our bound address)
            else:
                self.sock.sendmsg([data], [_pktinfo(src_ip)], 0, addr)
        except (BlockingIOError, InterruptedError):
            self.counters["send_dropped"] += 1
            return False
        except OSError:
            self.counters["send_errors"] += 1
            return False
        self.counters["sent"] += 1
        return True

    # --- multicast (the sync transport's group) ---------------------------------------------

    def join_group(
        self, group: str, interface: str | None, ttl: int = 1, loop: bool = True
    ) -> None:
        """Join ``group`` on ``interface`` (by name) and send to it with ``ttl``."""
        ifindex = socket.if_nametoindex(interface) if interface else 0
        mreqn = _MREQN.pack(socket.inet_aton(group), b"\0" * 4, ifindex)
        self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreqn)
        self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, mreqn)
        self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, ttl)
        self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1 if loop else 0)
