"""A thin UDP endpoint: a non-blocking socket driven by ``loop.add_reader``.

Every datagram arrives as ``(data, (src_ip, src_port), dst_ip)``: with ``IP_PKTINFO`` the kernel
tells us the address the datagram was sent to, so a reply can go out *from that address*
(:meth:`UdpEndpoint.send` with ``src_ip``) even when the socket is bound to 0.0.0.0 and the
address is a virtual one that moves between members.

The reader drains the socket until EAGAIN (at most ``batch`` datagrams per wake-up, so one busy
socket cannot starve the loop). Datagrams sent while a batch is being handled are held and sent
together, every ``flush_every`` and at the end of the batch: a client waiting on many replies is
then woken once per burst instead of once per reply (the wake-ups cost the sender more CPU than
the sends themselves; docs/performance.md). Errors are counted, never raised into the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections import Counter
from collections.abc import Callable, Iterator

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


# a few of our own addresses, converted once
_ADDRESSES: dict[bytes, str] = {}
_PKTINFOS: dict[str, tuple[int, int, bytes]] = {}
DatagramHandler = Callable[[bytes, Address, str | None], None]


class UdpEndpoint:
    """One bound UDP socket; ``handler(data, src, dst_ip)`` is called for each datagram."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        handler: DatagramHandler,
        batch: int = 256,
        flush_every: int = 32,
    ) -> None:
        self.loop = loop
        self.sock = sock
        self.handler = handler
        self.batch = batch
        self.flush_every = flush_every
        self.counters: Counter[str] = Counter()
        # told about exceptions escaping ``handler`` (they are counted and swallowed)
        self.on_handler_error: Callable[[Exception], None] | None = None
        self._reading = False
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
        rcvbuf: int | None = 4 * 1024 * 1024,
    ) -> UdpEndpoint:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if rcvbuf:
                # capped by net.core.rmem_max: keep the default when refused
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
            sock.setblocking(False)
            sock.bind((host, port))
        except BaseException:
            sock.close()
            raise
        endpoint = cls(loop, sock, handler)
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
        self.sock.close()

    # --- receiving -------------------------------------------------------------------------

    def _on_readable(self) -> None:
        with self.holding():
            self._read_batch()

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

    def _read_batch(self) -> None:
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
                    return
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
