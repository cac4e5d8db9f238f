"""eBPF for the kernel backend's fast path: the ``bpf()`` system call through ctypes and a small
assembler (no compiler, no libbpf).

Only what :mod:`mobileip.dataplane.bpf` needs: hash and array maps (created, updated and
deleted in batches), ``BPF_PROG_TYPE_SCHED_CLS`` programs loaded with the verifier's log on
failure, and an :class:`Asm` with symbolic jump labels. Encodings: include/uapi/linux/bpf.h
and bpf_common.h. x86_64 and aarch64 only (the system call's number).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import struct
from dataclasses import dataclass, field
from ipaddress import IPv4Address

# --- the bpf() system call -------------------------------------------------------------------

NR_BPF = {"x86_64": 321, "aarch64": 280}.get(os.uname().machine, -1)  # -1: ENOSYS
MAP_CREATE, MAP_LOOKUP_ELEM, MAP_UPDATE_ELEM = 0, 1, 2
PROG_LOAD, OBJ_PIN, OBJ_GET = 5, 6, 7
MAP_LOOKUP_BATCH, MAP_UPDATE_BATCH, MAP_DELETE_BATCH = 24, 26, 27
MAP_HASH, MAP_ARRAY, MAP_LRU_HASH = 1, 2, 9
PROG_SCHED_CLS = 3
ATTR_SIZE = 144

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
_libc.syscall.restype = ctypes.c_long


def bpf(cmd: int, attr: bytearray) -> int:
    buf = (ctypes.c_char * ATTR_SIZE).from_buffer(attr)
    ret = int(_libc.syscall(NR_BPF, cmd, buf, ATTR_SIZE))
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"bpf({cmd}): {os.strerror(err)}")
    return ret


def close(fd: int) -> None:
    if fd >= 0:
        os.close(fd)


def _attr(fmt: str, *values: object) -> bytearray:
    attr = bytearray(ATTR_SIZE)
    struct.pack_into(fmt, attr, 0, *values)
    return attr


def _addr(buf: ctypes.Array[ctypes.c_char]) -> int:
    return ctypes.addressof(buf)


def map_create(kind: int, key_size: int, value_size: int, entries: int, flags: int = 0) -> int:
    return bpf(MAP_CREATE, _attr("=IIIII", kind, key_size, value_size, entries, flags))


def _batch(cmd: int, fd: int, keys: bytes, values: bytes | None, count: int) -> tuple[int, int]:
    """One ``BPF_MAP_*_BATCH`` call: (elements done, errno or 0). The kernel stops at the first
    element that fails; those before it are done."""
    k = ctypes.create_string_buffer(keys, len(keys) or 1)
    v = ctypes.create_string_buffer(values, len(values) or 1) if values is not None else None
    attr = _attr("=QQQQIIQQ", 0, 0, _addr(k), _addr(v) if v is not None else 0, count, fd, 0, 0)
    err = 0
    try:
        bpf(cmd, attr)
    except OSError as exc:
        err = exc.errno or errno.EIO
    return int(struct.unpack_from("=I", attr, 32)[0]), err


def update_batch(fd: int, keys: list[bytes], values: list[bytes]) -> tuple[int, int]:
    """``BPF_MAP_UPDATE_BATCH`` of ``keys`` and ``values``: (written, errno or 0); on an error
    the first ``written`` are in the map and the rest are not."""
    return _batch(MAP_UPDATE_BATCH, fd, b"".join(keys), b"".join(values), len(keys))


def delete_batch(fd: int, keys: list[bytes]) -> int:
    """``BPF_MAP_DELETE_BATCH`` of ``keys``, absent ones skipped; errno or 0 (then the keys
    from the failing one on may be left)."""
    start = 0
    while start < len(keys):
        part = keys[start:]
        done, err = _batch(MAP_DELETE_BATCH, fd, b"".join(part), None, len(part))
        if err == 0:
            return 0
        if err != errno.ENOENT:
            return err
        start += done + 1  # that key was not there: go on after it
    return 0


def lookup(fd: int, key: bytes, value_size: int) -> bytes | None:
    k = ctypes.create_string_buffer(key, len(key))
    v = ctypes.create_string_buffer(value_size)
    try:
        bpf(MAP_LOOKUP_ELEM, _attr("=IIQQQ", fd, 0, _addr(k), _addr(v), 0))
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return None
        raise
    return v.raw


def update(fd: int, key: bytes, value: bytes) -> None:
    """``BPF_MAP_UPDATE_ELEM`` (any flags: create or replace)."""
    k = ctypes.create_string_buffer(key, len(key))
    v = ctypes.create_string_buffer(value, len(value))
    bpf(MAP_UPDATE_ELEM, _attr("=IIQQQ", fd, 0, _addr(k), _addr(v), 0))


# BPF_F_STRICT_ALIGNMENT: the verifier checks as on a kernel without efficient unaligned access
PROG_F_STRICT_ALIGNMENT = 1


def prog_load(insns: bytes, name: str, flags: int = 0) -> int:
    log = ctypes.create_string_buffer(1 << 20)
    lic = ctypes.create_string_buffer(b"GPL")
    code = ctypes.create_string_buffer(insns, len(insns))
    attr = _attr("=IIQQIIQII16s", PROG_SCHED_CLS, len(insns) // 8, _addr(code), _addr(lic),
                 1, len(log), _addr(log), 0, flags, name.encode()[:15])  # fmt: skip
    try:
        return bpf(PROG_LOAD, attr)
    except OSError as exc:
        text = log.value.decode(errors="replace")
        raise OSError(exc.errno, f"{exc.strerror}; verifier:\n{text[-4000:]}") from None


def obj_pin(fd: int, path: str) -> None:
    p = ctypes.create_string_buffer(path.encode())
    bpf(OBJ_PIN, _attr("=QI", _addr(p), fd))


def obj_get(path: str) -> int:
    p = ctypes.create_string_buffer(path.encode())
    return bpf(OBJ_GET, _attr("=QI", _addr(p), 0))


# --- a small eBPF assembler --------------------------------------------------------------------

# classes, sizes, modes, operations (include/uapi/linux/bpf_common.h, bpf.h)
LD, LDX, ST, STX, ALU, JMP, JMP32, ALU64 = 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07
W, H, B, DW = 0x00, 0x08, 0x10, 0x18
SIZES = {4: W, 2: H, 1: B, 8: DW}
MEM, IMM, ATOMIC = 0x60, 0x00, 0xC0
K, X = 0x00, 0x08
OPS = {"+": 0x00, "-": 0x10, "*": 0x20, "|": 0x40, "&": 0x50, "<<": 0x60, ">>": 0x70,
       "^": 0xA0, "=": 0xB0}  # fmt: skip
JOPS = {"==": 0x10, ">": 0x20, ">=": 0x30, "!=": 0x50, "<": 0xA0, "<=": 0xB0}
CALL, EXIT, JA = 0x80, 0x90, 0x00
END, TO_BE = 0xD0, 0x08
PSEUDO_MAP_FD, PSEUDO_MAP_VALUE = 1, 2
FP = 10  # the frame pointer

# helpers
F_MAP_LOOKUP, F_MAP_UPDATE, F_REDIRECT, F_ADJUST_ROOM, F_FIB_LOOKUP = 1, 2, 23, 50, 69
F_REDIRECT_NEIGH = 152
FIB_SUCCESS = 0
ADJ_ROOM_MAC = 1
ADJ_ENCAP_L3_IPV4, ADJ_ENCAP_L4_GRE = 1 << 1, 1 << 3
TC_ACT_UNSPEC, TC_ACT_OK, TC_ACT_SHOT = -1, 0, 2
# struct __sk_buff
SKB_LEN, SKB_PKT_TYPE, SKB_IFINDEX, SKB_DATA, SKB_DATA_END, SKB_GSO_SIZE = 0, 4, 40, 76, 80, 176


def _insn(op: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", op, (src << 4) | dst, off, imm)


@dataclass
class Asm:
    """Instructions with symbolic jump targets (``label``), resolved by :meth:`code`."""

    out: list[bytes | tuple[int, int, int, str]] = field(default_factory=list)
    labels: dict[str, int] = field(default_factory=dict)

    def _slot(self) -> int:
        return len(self.out)

    def label(self, name: str) -> None:
        self.labels[name] = self._slot()

    def alu(self, dst: int, op: str, src: int | None = None, imm: int = 0) -> None:
        """``dst op= src`` (register) or ``dst op= imm``; 64-bit."""
        kind = K if src is None else X
        self.out.append(_insn(ALU64 | OPS[op] | kind, dst, src or 0, 0, imm))

    def mov(self, dst: int, src: int | None = None, imm: int = 0) -> None:
        self.alu(dst, "=", src, imm)

    def be16(self, dst: int) -> None:
        self.out.append(_insn(ALU | END | TO_BE, dst, 0, 0, 16))

    def ldx(self, size: int, dst: int, src: int, off: int) -> None:
        self.out.append(_insn(LDX | MEM | SIZES[size], dst, src, off))

    def stx(self, size: int, dst: int, off: int, src: int) -> None:
        self.out.append(_insn(STX | MEM | SIZES[size], dst, src, off))

    def st(self, size: int, dst: int, off: int, imm: int) -> None:
        self.out.append(_insn(ST | MEM | SIZES[size], dst, 0, off, imm))

    def xadd64(self, dst: int, off: int, src: int) -> None:
        """``lock *(u64 *)(dst + off) += src``."""
        self.out.append(_insn(STX | ATOMIC | DW, dst, src, off, 0x00))

    def ld_map(self, dst: int, fd: int) -> None:
        self.out.append(_insn(LD | IMM | DW, dst, PSEUDO_MAP_FD, 0, fd))
        self.out.append(_insn(0))

    def ld_map_value(self, dst: int, fd: int, off: int = 0) -> None:
        """``dst`` = the address of an array map's first value, plus ``off`` (no helper call)."""
        self.out.append(_insn(LD | IMM | DW, dst, PSEUDO_MAP_VALUE, 0, fd))
        self.out.append(_insn(0, 0, 0, 0, off))

    def ld_imm64(self, dst: int, value: int) -> None:
        self.out.append(_insn(LD | IMM | DW, dst, 0, 0, value & 0xFFFFFFFF))
        self.out.append(_insn(0, 0, 0, 0, (value >> 32) & 0xFFFFFFFF))

    def jmp(
        self,
        dst: int,
        op: str,
        target: str,
        src: int | None = None,
        imm: int = 0,
        w32: bool = False,
    ) -> None:
        """``if dst op src|imm goto target`` (unsigned; 64-bit, or the low 32 bits: ``w32``)."""
        kind = K if src is None else X
        signed = imm - (1 << 32) if imm >= 1 << 31 else imm
        cls = JMP32 if w32 else JMP
        self.out.append((cls | JOPS[op] | kind, dst, (src or 0) << 4, f"{signed}:{target}"))

    def goto(self, target: str) -> None:
        self.out.append((JMP | JA, 0, 0, f"0:{target}"))

    def call(self, helper: int) -> None:
        self.out.append(_insn(JMP | CALL, 0, 0, 0, helper))

    def exit(self) -> None:
        self.out.append(_insn(JMP | EXIT))

    def ret(self, value: int) -> None:
        self.mov(0, imm=value)
        self.exit()

    def code(self) -> bytes:
        parts = []
        for i, item in enumerate(self.out):
            if isinstance(item, bytes):
                parts.append(item)
                continue
            op, dst, src, ref = item
            imm, _, target = ref.rpartition(":")
            off = self.labels[target] - i - 1
            parts.append(struct.pack("<BBhi", op, src | dst, off, int(imm)))
        return b"".join(parts)


def raw32(addr: str) -> int:
    """An IPv4 address as the 32-bit value a little-endian ``ldx w`` of it reads."""
    return int(struct.unpack("<I", IPv4Address(addr).packed)[0])
