"""The userspace backend's forward fast path (``UserspaceBackend._on_tun``) sends byte for byte
what the codec (:func:`mobileip.dataplane.encap.encapsulate`, ``forwarding=False``) builds, and
hands everything it does not handle itself to the general path with the same counters.

No TUN needed: a non-blocking Unix datagram socket stands in for the TUN's file descriptor (one
read, one packet) and a list stands in for the raw socket: ``sendto`` (the general path) and
``sendmmsg`` (the fast path's batches: each message is read back from the mmsghdr table the way
the kernel reads it, following its iovec pointers, so the table's layout is checked too)."""

from __future__ import annotations

import errno
import random
import socket
import struct
from collections.abc import Iterator
from ipaddress import IPv4Address as A
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mobileip.dataplane.backend import TunnelSpec
from mobileip.dataplane.encap import (
    FLAG_DF,
    Encapsulation,
    IPv4Header,
    TunnelRefused,
    build_ipv4,
    encapsulate,
    internet_checksum,
)
from mobileip.dataplane.userspace import BATCH, RING_SLOTS, UserspaceBackend
from mobileip.net.mmsg import MSGHDR
from mobileip.wire.errors import DecodeError

HA = A("10.0.0.1")
E = Encapsulation


def as_the_kernel_sends(data: bytes) -> bytes:
    """What the kernel sends for an ``IP_HDRINCL`` message (raw(7)): the IPv4 header's total
    length and checksum always filled in."""
    header = bytearray(data[:20])
    header[2:4] = len(data).to_bytes(2, "big")
    header[10:12] = b"\0\0"
    total = sum(int.from_bytes(header[k : k + 2], "big") for k in range(0, 20, 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    header[10:12] = (0xFFFF - total).to_bytes(2, "big")
    return bytes(header) + data[20:]


class Sink:
    def __init__(self) -> None:
        self.out: list[tuple[bytes, tuple[str, int]]] = []
        self.calls = 0  # sendmmsg calls
        self.fail: set[int] = set()  # messages (counted over all sendmmsg calls) that fail

    def fileno(self) -> int:
        return -1

    def sendto(self, data: bytes, addr: tuple[str, int]) -> int:
        self.out.append((bytes(data), addr))
        return len(data)

    def attach(self, backend: UserspaceBackend) -> None:
        batch = backend._batch
        seen = 0

        def sendmmsg(fd: int, at: int, count: int) -> int:
            nonlocal seen
            self.calls += 1
            first = (at - batch.base) // MSGHDR
            assert (at - batch.base) % MSGHDR == 0 and first + count <= batch.size
            for i in range(first, first + count):
                if seen in self.fail:  # as the kernel: the messages before it count as sent,
                    if i > first:  # the error comes with the next call, which starts at it
                        return i - first
                    self.fail.discard(seen)
                    seen += 1
                    raise OSError(errno.ENOBUFS, "No buffer space available")
                seen += 1
                data, sockaddr = batch.message(i)
                data = as_the_kernel_sends(data)
                family, port, addr = struct.unpack("=HH4s8x", sockaddr)
                assert family == socket.AF_INET and port == 0
                self.out.append((data, (str(A(addr)), 0)))
            return count

        batch.sendmmsg = sendmmsg


@pytest.fixture
def rig() -> Iterator[tuple[UserspaceBackend, socket.socket, Sink]]:
    backend = UserspaceBackend(lambda *a, **k: None, "x", HA, own=frozenset({HA}))
    sink = Sink()
    backend.send_sock = sink  # type: ignore[assignment]
    sink.attach(backend)
    r, w = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    r.setblocking(False)
    backend.tun_fd = r.fileno()
    yield backend, w, sink
    r.close()
    w.close()


CN = A("10.9.9.9")


def packet(dst: A, size: int, rng: random.Random, src: A = CN, **kw: int) -> bytes:
    header = IPv4Header(
        kw.get("tos", rng.randrange(256)),
        0,
        rng.randrange(65536),
        kw.get("ff", rng.choice([0, 0x4000, 0x2000, 0x4001])),
        kw.get("ttl", rng.randrange(1, 256)),
        17,
        src,
        dst,
    )
    return build_ipv4(header, rng.randbytes(max(0, size - 20)))


def expected(inner: bytes, spec: TunnelSpec, ident: int) -> list[tuple[bytes, tuple[str, int]]]:
    """What the general path sends for ``inner`` (stops at the first refused exit)."""
    out = []
    for coa, kind in spec.exits:
        ident = (ident + 1) & 0xFFFF
        try:
            outer = encapsulate(
                inner, kind, HA, coa, ident=ident, ttl=64, own=frozenset({HA}), forwarding=False
            )
        except (TunnelRefused, DecodeError):
            break
        out.append((outer, (str(coa), 0)))
    return out


def test_fast_path_matches_the_codec(rig: tuple[UserspaceBackend, socket.socket, Sink]) -> None:
    backend, tun, sink = rig
    rng = random.Random(14)
    specs = [
        TunnelSpec(A("10.1.0.5"), ((A("10.2.0.9"), E.IPIP),), ()),
        TunnelSpec(A("10.1.0.6"), ((A("10.2.0.9"), E.GRE), (A("10.2.0.10"), E.IPIP)), ()),
        TunnelSpec(A("10.1.0.7"), ((A("10.2.0.9"), E.MINIMAL),), ()),  # general path
        TunnelSpec(A("10.1.0.8"), ((A("10.2.0.11"), E.GRE),), (A("10.2.0.11"),)),
    ]
    for spec in specs:
        backend.track(spec)
    want: list[tuple[bytes, tuple[str, int]]] = []
    for _ in range(400):
        spec = rng.choice(specs)
        inner = packet(spec.home, rng.choice([20, 28, 64, 576, 1400, 1476]), rng)
        want += expected(inner, spec, backend._ident)
        tun.send(inner)
        backend._on_tun()
    assert sink.out == want
    counters = backend.counters
    assert counters["encap-ipip"] + counters["encap-gre"] + counters["encap-minimal"] == len(want)
    assert counters["encap-gre"] > 0 and counters["encap-ipip"] > 0


def test_general_path_cases(rig: tuple[UserspaceBackend, socket.socket, Sink]) -> None:
    """Loops, unknown homes, IPv6, short and padded packets, header options: not the fast
    path's; they are counted as before."""
    backend, tun, sink = rig
    rng = random.Random(3)
    home, coa = A("10.1.0.5"), A("10.2.0.9")
    backend.track(TunnelSpec(home, ((coa, E.IPIP),), ()))
    tun.send(packet(home, 64, rng, src=coa))  # from the tunnel exit itself: a loop
    tun.send(packet(home, 64, rng, src=HA))  # from our own address: a loop
    tun.send(packet(A("10.1.0.99"), 64, rng))  # no binding (and no home socket)
    tun.send(bytes([0x60]) + bytes(47))  # IPv6
    tun.send(bytes([0x45]) + bytes(10))  # short
    padded = packet(home, 64, rng)
    tun.send(padded + b"\0\0\0\0")  # link padding beyond the total length: trimmed
    with_options = IPv4Header(0, 0, 7, 0, 64, 17, A("10.9.9.9"), home, options=b"\x01" * 4)
    opt_packet = build_ipv4(with_options, bytes(30))
    tun.send(opt_packet)
    backend._on_tun()
    c = backend.counters
    assert c["drop-loop"] == 2
    assert c["drop-no-binding"] == 1
    assert c["ignored-ipv6"] == 1
    assert c["drop-ipv4-short"] == 1
    assert c["encap-ipip"] == 2
    assert [o[0][20:] for o in sink.out] == [padded, opt_packet]


def test_untrack_and_retrack(rig: tuple[UserspaceBackend, socket.socket, Sink]) -> None:
    backend, tun, sink = rig
    rng = random.Random(5)
    home = A("10.1.0.5")
    backend.track(TunnelSpec(home, ((A("10.2.0.9"), E.IPIP),), ()))
    backend.track(TunnelSpec(home, ((A("10.2.0.10"), E.GRE),), ()))  # moved
    tun.send(packet(home, 64, rng))
    backend._on_tun()
    assert [addr for _, addr in sink.out] == [("10.2.0.10", 0)]
    backend.track(TunnelSpec(home, ((A("10.2.0.10"), E.MINIMAL),), ()))  # general path now
    tun.send(packet(home, 64, rng, ff=0))
    backend._on_tun()
    assert backend.counters["encap-minimal"] == 1
    backend.untrack(home)
    tun.send(packet(home, 64, rng))
    backend._on_tun()
    assert backend.counters["drop-no-binding"] == 1
    assert not backend._fast


def test_batch_per_wakeup(rig: tuple[UserspaceBackend, socket.socket, Sink]) -> None:
    """At most BATCH packets per call; the rest wait for the next wake-up."""
    backend, tun, sink = rig
    rng = random.Random(6)
    home = A("10.1.0.5")
    backend.track(TunnelSpec(home, ((A("10.2.0.9"), E.IPIP),), ()))
    tun.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    for _ in range(BATCH + 5):
        tun.send(packet(home, 64, rng))
    backend._on_tun()
    assert len(sink.out) == BATCH
    backend._on_tun()
    assert len(sink.out) == BATCH + 5


def tunnelled(rng: random.Random, coa: A, home: A, kind: Encapsulation) -> bytes:
    ff = rng.choice([0, FLAG_DF])  # minimal encapsulation refuses fragments
    inner = packet(A("10.9.9.9"), rng.choice([20, 64, 1400]), rng, src=home, ttl=64, ff=ff)
    return encapsulate(inner, kind, coa, HA, ident=rng.randrange(65536), forwarding=False)


REV_COAS = [A("10.2.0.9"), A("10.2.0.10")]
REV_HOMES = [A("10.1.0.5"), A("10.1.0.6"), A("10.1.0.7")]


def reverse_cases(rng: random.Random) -> list[bytes]:
    """Registered and unregistered pairs, bad inner checksums, GRE with a checksum, minimal
    encapsulation, fragments, truncated and padded packets."""
    coas, homes = REV_COAS, REV_HOMES
    cases: list[bytes] = []
    for _ in range(300):
        coa, home = rng.choice(coas), rng.choice(homes)
        kind = rng.choice([E.IPIP, E.GRE, E.MINIMAL])
        p = bytearray(tunnelled(rng, coa, home, kind))
        twist = rng.randrange(8)
        if twist == 0:  # bad inner checksum (IP-in-IP: inner header at 20)
            p[30] ^= 0xFF
        elif twist == 1:  # GRE with the C bit and a checksum
            inner = bytes(p[20:]) if kind is E.IPIP else None
            if inner is not None:
                p = bytearray(
                    encapsulate(inner, E.GRE, coa, HA, gre_checksum=True, forwarding=False)
                )
        elif twist == 2:  # truncated
            p = p[: rng.randrange(1, len(p))]
        elif twist == 3:  # padded
            p += b"\0\0"
        elif twist == 4:  # an outer fragment (MF)
            p[6] |= 0x20
        cases.append(bytes(p))
    return cases


def reverse_backend() -> UserspaceBackend:
    backend = UserspaceBackend(lambda *a, **k: None, "x", HA)
    for i, home in enumerate(REV_HOMES):
        backend.track(TunnelSpec(home, ((REV_COAS[0], E.IPIP),), tuple(REV_COAS[: i + 1])))
    return backend


def socket_pairs(n: int) -> list[socket.socket]:
    """``n`` Unix datagram socket pairs, flattened (reader, writer, ...), readers non-blocking."""
    out: list[socket.socket] = []
    for _ in range(n):
        r, w = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        r.setblocking(False)
        for s in (r, w):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 22)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        out += [r, w]
    return out


def drain(sock: socket.socket) -> list[bytes]:
    got = []
    while True:
        try:
            got.append(sock.recv(65536))
        except BlockingIOError:
            return got


def test_reverse_fast_path_matches_the_general_path() -> None:
    """The batch reader, one packet per wake-up, writes to the TUN and counts exactly what
    :meth:`reverse` does packet by packet."""
    cases = reverse_cases(random.Random(21))
    results = []
    for fast in (True, False):
        backend = reverse_backend()
        tun_r, tun_w, raw_r, raw_w = socket_pairs(2)
        backend.tun_fd = tun_w.fileno()
        general = backend.reverse
        calls = []

        def spy(data: bytes, general: Any = general, calls: list[bytes] = calls) -> None:
            calls.append(data)
            general(data)

        if fast:
            backend.reverse = spy  # type: ignore[method-assign]
        written = []
        for case in cases:
            if fast:
                raw_w.send(case)
                backend._on_tunnelled(raw_r)
            else:
                backend.reverse(case)
            written += drain(tun_r)
        results.append((written, dict(backend.counters), len(calls)))
        for s in (tun_r, tun_w, raw_r, raw_w):
            s.close()
    (fast_out, fast_counters, fast_calls), (slow_out, slow_counters, _) = results
    assert fast_out == slow_out
    assert fast_counters == slow_counters
    assert fast_counters["decap-ipip"] > 0 and fast_counters["decap-gre"] > 0
    assert fast_counters["reverse-drop-unregistered"] > 0
    assert fast_counters["reverse-drop-ipv4-checksum"] > 0
    assert 0 < fast_calls < len(cases) - fast_counters["decap-ipip"] // 2  # most took the fast path


def test_reverse_batches_match_the_general_path() -> None:
    """Many packets queued at once: each wake-up takes at most BATCH of them (recvmmsg, up to
    RING_SLOTS per call, partial batches at the end) and the whole stream comes out as the
    general path writes and counts it, in order."""
    cases = reverse_cases(random.Random(22))
    assert len(cases) > 2 * BATCH and len(cases) % RING_SLOTS  # a partial last batch
    backend = reverse_backend()
    tun_r, tun_w, raw_r, raw_w = socket_pairs(2)
    slow = reverse_backend()
    slow_r, slow_w = socket_pairs(1)
    try:
        backend.tun_fd, slow.tun_fd = tun_w.fileno(), slow_w.fileno()
        for case in cases:
            raw_w.send(case)
            slow.reverse(case)
        wakeups, taken = 0, []
        while True:
            backend._on_tunnelled(raw_r)
            wakeups += 1
            total = sum(v for k, v in backend.counters.items() if k != "tun-write-errors")
            taken.append(total - sum(taken))
            if not taken[-1]:
                break
        assert drain(tun_r) == drain(slow_r)
        assert backend.counters == slow.counters
        assert taken[:-2] == [BATCH] * (len(cases) // BATCH)  # bounded per wake-up
        assert taken[-2] == len(cases) % BATCH and wakeups == len(cases) // BATCH + 2
    finally:
        for s in (tun_r, tun_w, raw_r, raw_w, slow_r, slow_w):
            s.close()


def test_reverse_receive_and_write_errors_are_counted() -> None:
    """A failed recvmmsg (ENOBUFS, EBADF, ...) is counted and logged and ends the wake-up; a
    failed TUN write is counted and logged per packet and the batch goes on; nothing raises."""
    logged: list[str] = []
    backend = reverse_backend()
    backend.log = lambda event, **kw: logged.append(event)
    raw_r, raw_w = socket_pairs(1)
    try:
        rx = backend._rx
        real = rx.recvmmsg

        def failing(fd: int, at: int, count: int) -> int:
            raise OSError(errno.ENOBUFS, "No buffer space available")

        rx.recvmmsg = failing
        backend._on_tunnelled(raw_r)
        assert backend.counters["recv-errors"] == 1 and logged == ["dataplane.recv_failed"]
        rx.recvmmsg = real
        backend._on_tunnelled(raw_r)  # nothing queued: EAGAIN is no error
        assert backend.counters["recv-errors"] == 1
        rng = random.Random(23)
        good = [tunnelled(rng, REV_COAS[0], REV_HOMES[0], E.IPIP) for _ in range(5)]
        for p in good:
            raw_w.send(p)
        backend.tun_fd = 10_000  # not open: EBADF on every write
        backend._on_tunnelled(raw_r)
        assert backend.counters["tun-write-errors"] == 5
        assert "decap-ipip" not in backend.counters
        assert logged[1:] == ["dataplane.tun_write_failed"] * 5
    finally:
        raw_r.close()
        raw_w.close()


def test_recv_batch_through_the_kernel() -> None:
    """The real recvmmsg with the table's layout: UDP datagrams of several sizes queued on a
    loopback socket come out in order, each in its slot with its length; a batch is cut at the
    table's size, the rest come with the next call, an empty socket gives 0, a bad fd raises."""
    from mobileip.net.mmsg import RecvBatch

    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        rx.bind(("127.0.0.1", 0))
        rx.setblocking(False)
        batch = RecvBatch(4, slot=2048)
        assert batch.receive(rx.fileno()) == 0
        sent = [bytes([i]) * size for i, size in enumerate([1, 64, 1400, 2048, 0, 700])]
        for d in sent:
            tx.sendto(d, rx.getsockname())
        got = []
        counts = []
        while n := batch.receive(rx.fileno()):
            counts.append(n)
            got += [batch.datagram(i) for i in range(n)]
        assert counts == [4, 2] and got == sent
        tx.sendto(b"x" * 3000, rx.getsockname())  # longer than a slot: cut, as recv would
        assert batch.receive(rx.fileno()) == 1 and batch.datagram(0) == b"x" * 2048
        with pytest.raises(OSError):
            batch.receive(-1)
    finally:
        rx.close()
        tx.close()


def test_batches_and_send_failures(rig: tuple[UserspaceBackend, socket.socket, Sink]) -> None:
    """Up to RING_SLOTS packets per sendmmsg; a message the kernel refuses is counted and
    logged, and the ones after it still go, in order."""
    backend, tun, sink = rig
    logged: list[tuple[str, dict[str, object]]] = []
    backend.log = lambda event, **kw: logged.append((event, kw))
    rng = random.Random(8)
    home = A("10.1.0.5")
    spec = TunnelSpec(home, ((A("10.2.0.9"), E.IPIP), (A("10.2.0.10"), E.GRE)), ())
    backend.track(spec)
    tun.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    want: list[tuple[bytes, tuple[str, int]]] = []
    ident = backend._ident
    for _ in range(BATCH):
        inner = packet(home, rng.choice([64, 1400]), rng)
        want += expected(inner, spec, ident)
        ident = (ident + 2) & 0xFFFF
        tun.send(inner)
    sink.fail = {0, 5, 6, 2 * BATCH - 1}  # the first, two in a row, the last
    backend._on_tun()
    assert sink.out == [w for i, w in enumerate(want) if i not in {0, 5, 6, 2 * BATCH - 1}]
    # two batches of RING_SLOTS packets (two messages each); batch 1: 0 fails, 1-4 go, 5 fails,
    # 6 fails, 7-127 go; batch 2: 128-254 go, 255 fails
    assert BATCH // RING_SLOTS == 2 and sink.calls == 7
    c = backend.counters
    assert c["send-errors"] == 4
    assert c["encap-ipip"] == BATCH - 2 and c["encap-gre"] == BATCH - 2
    assert [e for e, _ in logged] == ["dataplane.send_failed"] * 4
    assert logged[0][1]["dest"] == "10.2.0.9" and logged[-1][1]["dest"] == "10.2.0.10"


def test_send_batch_through_the_kernel() -> None:
    """The real sendmmsg with the table's layout: UDP on loopback carries each message
    (header + body) as one datagram to its own address."""
    from mobileip.net.mmsg import HEAD_OFF, PUT_OFF, SendBatch, address_of, sockaddr_in

    rx = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for r in rx:
            r.bind(("127.0.0.1", 0))
            r.settimeout(2)
        batch = SendBatch(4)
        body = bytearray(b"body-0123456789" * 100)
        at = address_of(body)
        for i in range(3):
            head = bytes([i]) * (20 + 4 * (i % 2))
            record = batch.record(i)
            batch.table[record + HEAD_OFF : record + HEAD_OFF + len(head)] = head
            port = rx[i % 2].getsockname()[1]
            batch.put(batch.table, record + PUT_OFF, len(head), at + i, 1400 - i,
                      sockaddr_in(A("127.0.0.1").packed, port))  # fmt: skip
        assert batch.send(tx.fileno(), 0, 3) == 3
        got = [rx[0].recv(2048), rx[1].recv(2048), rx[0].recv(2048)]
        assert got == [
            bytes([i]) * (20 + 4 * (i % 2)) + bytes(body[i : i + 1400 - i]) for i in range(3)
        ]
        with pytest.raises(OSError):
            batch.send(-1, 0, 1)  # EBADF, raised for the first message
    finally:
        for s in (*rx, tx):
            s.close()


@st.composite
def _tunnelled_or_mangled(draw: st.DrawFn) -> bytes:
    """A reverse-tunnelled packet (registered or not, any encapsulation), then bytes flipped,
    cut or appended; or any bytes at all."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=120))
    rng = random.Random(draw(st.integers(0, 2**32 - 1)))
    coa = draw(st.sampled_from([*REV_COAS, A("10.2.0.77")]))
    home = draw(st.sampled_from([*REV_HOMES, A("10.1.0.99")]))
    kind = draw(st.sampled_from([E.IPIP, E.GRE, E.MINIMAL]))
    p = bytearray(tunnelled(rng, coa, home, kind))
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(p) - 1))
        p[at] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        p = p[: draw(st.integers(0, len(p)))]
    return bytes(p) + draw(st.binary(max_size=3))


def with_outer_checksum(packet: bytes) -> bytes:
    """``packet`` as a raw socket can get it: the kernel drops an IPv4 packet whose header
    checksum is wrong before raw sockets see it (and the fast path does not check it again),
    so a mangled header gets its checksum fixed."""
    if len(packet) < 20 or packet[0] >> 4 != 4:
        return packet
    ihl = (packet[0] & 0xF) * 4
    if not 20 <= ihl <= len(packet):
        return packet
    header = bytearray(packet[:ihl])
    header[10:12] = b"\0\0"
    header[10:12] = internet_checksum(bytes(header)).to_bytes(2, "big")
    return bytes(header) + packet[ihl:]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_tunnelled_or_mangled(), min_size=1, max_size=70))
def test_reverse_batch_is_the_general_path_for_any_bytes(cases: list[bytes]) -> None:
    """Whatever arrives on the raw sockets, in batches (more than one recvmmsg when over
    RING_SLOTS): the fast path writes and counts exactly what :meth:`reverse` does packet by
    packet, and nothing raises."""
    fast, slow = reverse_backend(), reverse_backend()
    tun_r, tun_w, raw_r, raw_w, slow_r, slow_w = socket_pairs(3)
    try:
        fast.tun_fd, slow.tun_fd = tun_w.fileno(), slow_w.fileno()
        for case in map(with_outer_checksum, cases):
            raw_w.send(case)
            slow.reverse(case)
        while sum(fast.counters.values()) < len(cases):
            before = sum(fast.counters.values())
            fast._on_tunnelled(raw_r)
            assert sum(fast.counters.values()) > before
        assert drain(tun_r) == drain(slow_r)
        assert fast.counters == slow.counters
    finally:
        for s in (tun_r, tun_w, raw_r, raw_w, slow_r, slow_w):
            s.close()


FWD_SPECS = [
    TunnelSpec(A("10.1.0.5"), ((A("10.2.0.9"), E.IPIP),), ()),
    TunnelSpec(A("10.1.0.6"), ((A("10.2.0.9"), E.GRE),), ()),
    TunnelSpec(A("10.1.0.7"), ((A("10.2.0.9"), E.IPIP), (A("10.2.0.10"), E.GRE)), ()),
    TunnelSpec(A("10.1.0.8"), ((A("10.2.0.11"), E.MINIMAL),), ()),
]


@st.composite
def _routed_or_mangled(draw: st.DrawFn) -> bytes:
    """A packet the kernel routed into the TUN (to a bound home or not, from anywhere incl. a
    care-of address or our own), then bytes flipped, cut or appended; or any bytes at all.
    Its header checksum is made right: the kernel forwards nothing else into the TUN."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=120))
    rng = random.Random(draw(st.integers(0, 2**32 - 1)))
    home = draw(st.sampled_from([*(s.home for s in FWD_SPECS), A("10.1.0.99")]))
    src = draw(st.sampled_from([CN, HA, A("10.2.0.9"), A("10.2.0.10")]))
    p = bytearray(packet(home, draw(st.sampled_from([20, 21, 64, 1400])), rng, src=src))
    for _ in range(draw(st.integers(0, 2))):
        at = draw(st.integers(0, len(p) - 1))
        p[at] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        p = p[: draw(st.integers(0, len(p)))]
    return with_outer_checksum(bytes(p) + draw(st.binary(max_size=3)))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_routed_or_mangled(), min_size=1, max_size=150))
def test_forward_batch_is_the_general_path_for_any_bytes(cases: list[bytes]) -> None:
    """Whatever the TUN hands over, in batches (ring passes, flushes before general-path
    packets): the fast path sends (as the kernel puts it on the wire) and counts exactly what
    :meth:`forward` does packet by packet, and nothing raises."""
    fast = UserspaceBackend(lambda *a, **k: None, "x", HA, own=frozenset({HA}))
    slow = UserspaceBackend(lambda *a, **k: None, "x", HA, own=frozenset({HA}))
    fast_sink, slow_sink = Sink(), Sink()
    fast.send_sock = fast_sink  # type: ignore[assignment]
    slow.send_sock = slow_sink  # type: ignore[assignment]
    fast_sink.attach(fast)
    fast._ident = slow._ident = 0
    for spec in FWD_SPECS:
        fast.track(spec)
        slow.track(spec)
    r, w = socket_pairs(1)
    try:
        fast.tun_fd = r.fileno()
        for case in cases:
            w.send(case)
            slow.forward(case)
        while sum(fast.counters.values()) < sum(slow.counters.values()):
            before = sum(fast.counters.values())
            fast._on_tun()
            assert sum(fast.counters.values()) > before
        assert fast_sink.out == slow_sink.out
        assert fast.counters == slow.counters
    finally:
        r.close()
        w.close()
