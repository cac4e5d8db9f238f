"""``sendmmsg(2)`` / ``recvmmsg(2)`` for batches of datagrams in place: one system call for many.

The standard library has ``sendmsg`` but no ``sendmmsg``. :class:`SendBatch` keeps a table of
``struct mmsghdr`` in one preallocated buffer, each message gathered from two pieces (a header
of up to :data:`HEAD_MAX` bytes stored in the table itself, and a packet body anywhere in
memory that the caller keeps alive until :meth:`SendBatch.send`) and addressed to an IPv4
``sockaddr_in``. Filling a message is one ``struct.pack_into`` for the addressing and one for
the header; nothing is allocated per packet. :class:`RecvBatch` receives up to its size of
datagrams with one ``recvmmsg``, each into its own slot of a ring. Linux, x86-64 / aarch64
layouts (LP64).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import functools
import mmap
import os
import socket
import struct
import sys
from collections.abc import Callable

HEAD_MAX = 24  # IPv4 + GRE without options
# The table: ``size`` struct mmsghdr (LP64: msghdr {name, namelen, iov, iovlen, control,
# controllen, flags} + msg_len; the kernel walks them as an array), then per message an
# "aux" record: iovec[2] (header, body), its sockaddr_in, its header bytes.
_MSGHDR = struct.Struct("@PI4xPQPQi4xI4x")
MSGHDR = _MSGHDR.size  # 64
_PER_MSG = struct.Struct("@QQQ16s")  # iov[0].len, iov[1].base, iov[1].len, sockaddr_in
PUT_OFF = 8  # where _PER_MSG goes in an aux record
_ADDR_OFF = 32  # the sockaddr_in
HEAD_OFF = 48  # the header's bytes
AUX = HEAD_OFF + HEAD_MAX  # 72 bytes
assert MSGHDR == 64 and AUX % 8 == 0

SendMmsg = Callable[[int, int, int], int]  # (fd, address of the first mmsghdr, count) -> sent
RecvMmsg = Callable[[int, int, int], int]  # (fd, address of the first mmsghdr, count) -> got
_MSG_DONTWAIT = 0x40
_EAGAIN = (errno.EAGAIN, errno.EWOULDBLOCK)


@functools.cache
def _libc() -> ctypes.CDLL:
    """The C library, looked up once per process (``find_library`` runs ``ldconfig``)."""
    return ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)


@functools.cache
def _libc_sendmmsg() -> SendMmsg:
    fn = _libc().sendmmsg
    fn.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int)
    fn.restype = ctypes.c_int

    def sendmmsg(fd: int, at: int, count: int) -> int:
        sent: int = fn(fd, at, count, 0)
        if sent < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        return sent

    return sendmmsg


@functools.cache
def _libc_recvmmsg() -> RecvMmsg:
    fn = _libc().recvmmsg
    fn.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int, ctypes.c_void_p)
    fn.restype = ctypes.c_int

    def recvmmsg(fd: int, at: int, count: int) -> int:
        got: int = fn(fd, at, count, _MSG_DONTWAIT, None)
        if got < 0:
            err = ctypes.get_errno()
            if err in _EAGAIN:
                return 0
            raise OSError(err, os.strerror(err))
        return got

    return recvmmsg


def swap64(value: int) -> int:
    """The integer that a big-endian 64-bit field stores as ``value``'s native bytes (so one
    ``!``-format struct can hold native pointers and lengths next to network-order headers)."""
    return int.from_bytes(value.to_bytes(8, sys.byteorder), "big")


def sockaddr_in(address: bytes, port: int = 0) -> bytes:
    """``struct sockaddr_in`` for the packed IPv4 ``address`` (16 bytes)."""
    return struct.pack("=HH4s8x", socket.AF_INET, socket.htons(port), address)


def address_of(buffer: bytearray | mmap.mmap) -> int:
    """The address of a writable buffer's first byte (keep the buffer alive, and pinned, e.g. by
    a memoryview of it, so that it is not resized or closed)."""
    return ctypes.addressof(ctypes.c_char.from_buffer(buffer))


class SendBatch:
    """Up to ``size`` messages (header + body, to an IPv4 address), sent by :meth:`send`.

    ``table`` holds the mmsghdr array and the aux records: message ``i``'s record starts at
    ``aux0 + i * AUX``; write its header at ``+ HEAD_OFF`` and its addressing with
    ``put(table, record + PUT_OFF, head_len, body_address, body_len, sockaddr)``."""

    def __init__(self, size: int, sendmmsg: SendMmsg | None = None) -> None:
        self.size = size
        self.aux0 = size * MSGHDR
        self.table = bytearray(size * (MSGHDR + AUX))
        # held: the table cannot be resized (moved) while the kernel is given its addresses
        self._pin = ctypes.c_char.from_buffer(self.table)
        self.base = ctypes.addressof(self._pin)
        self.sendmmsg = sendmmsg or _libc_sendmmsg()
        self.put = _PER_MSG.pack_into
        for i in range(size):
            aux = self.base + self.aux0 + i * AUX
            _MSGHDR.pack_into(self.table, i * MSGHDR, aux + _ADDR_OFF, 16, aux, 2, 0, 0, 0, 0)
            struct.pack_into("@P", self.table, self.aux0 + i * AUX, aux + HEAD_OFF)

    def record(self, i: int) -> int:
        """Where message ``i``'s aux record starts in :attr:`table`."""
        return self.aux0 + i * AUX

    def send(self, fd: int, first: int, count: int) -> int:
        """Send messages ``first`` .. ``first + count - 1``; returns how many went (at least
        one), or raises OSError for message ``first`` (the caller skips it and goes on)."""
        return self.sendmmsg(fd, self.base + first * MSGHDR, count)

    def message(self, i: int) -> tuple[bytes, bytes]:
        """Message ``i`` as the kernel would read it: (its bytes, its sockaddr) (for tests)."""
        name, namelen, iov, iovlen, *_ = _MSGHDR.unpack_from(self.table, i * MSGHDR)
        assert namelen == 16 and iovlen == 2
        data = b""
        for k in range(iovlen):
            base, length = struct.unpack("@PQ", ctypes.string_at(iov + 16 * k, 16))
            data += ctypes.string_at(base, length)
        return data, ctypes.string_at(name, namelen)


class RecvBatch:
    """Up to ``size`` datagrams received by one :meth:`receive` (``recvmmsg``), each into its own
    ``slot``-byte slot of :attr:`ring` (an anonymous ``mmap``: untouched pages cost nothing).

    Datagram ``i`` of a batch is ``ring[i * slot : i * slot + length(i)]``; ``slot`` should hold
    the largest datagram (a longer one is cut to it, as ``recv`` would). No sender addresses."""

    def __init__(self, size: int, slot: int = 1 << 16, recvmmsg: RecvMmsg | None = None) -> None:
        self.size = size
        self.slot = slot
        self.ring = mmap.mmap(-1, size * slot)
        self.view = memoryview(self.ring)  # indexes faster than the mmap; pins it
        ring_at = address_of(self.ring)
        # the mmsghdr array, then one iovec per message
        self.table = bytearray(size * (MSGHDR + 16))
        self._pin = ctypes.c_char.from_buffer(self.table)
        self.base = ctypes.addressof(self._pin)
        for i in range(size):
            iov = size * MSGHDR + 16 * i
            _MSGHDR.pack_into(self.table, i * MSGHDR, 0, 0, self.base + iov, 1, 0, 0, 0, 0)
            struct.pack_into("@PQ", self.table, iov, ring_at + i * slot, slot)
        # msg_len of message i, written by the kernel: lengths[i * LEN_STRIDE + LEN_AT]
        self.lengths = memoryview(self.table).cast("I")
        self.recvmmsg = recvmmsg or _libc_recvmmsg()

    LEN_STRIDE = MSGHDR // 4
    LEN_AT = 56 // 4  # msg_len follows the 56-byte msghdr

    def receive(self, fd: int) -> int:
        """Receive up to :attr:`size` datagrams queued on ``fd`` without waiting: how many
        (0 when none is queued); raises OSError for an error before the first datagram (one
        after it comes with the next call, as the kernel reports it)."""
        return self.recvmmsg(fd, self.base, self.size)

    def length(self, i: int) -> int:
        """Datagram ``i``'s length in the last batch."""
        return self.lengths[i * self.LEN_STRIDE + self.LEN_AT]

    def datagram(self, i: int) -> bytes:
        """Datagram ``i`` of the last batch (a copy; for tests and slow paths)."""
        at = i * self.slot
        return bytes(self.view[at : at + self.length(i)])
