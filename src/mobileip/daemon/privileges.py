"""Dropping privileges once the sockets are open (issue 8): keep only the capabilities we need.

The daemon needs, after start-up:

* ``CAP_NET_ADMIN``: virtual addresses, TUN devices, routes and proxy ARP entries at takeover;
* ``CAP_NET_RAW``: VRRP's raw socket, gratuitous ARP, the user-space tunnels' raw sockets;
* ``CAP_NET_BIND_SERVICE``: re-binding port 434 (e.g. an extra group started on reload);
* ``CAP_IPC_LOCK``, only with ``lock_memory`` where ``RLIMIT_MEMLOCK`` stays finite: the locked
  process maps more later (daemon/memory.py).

Everything else is removed from the effective, permitted, inheritable and bounding sets, so
neither this process nor anything it could exec gets it back. Linux only; a process that is not
root and holds no capabilities has nothing to drop.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mobileip.log import Logger

CAP_NET_BIND_SERVICE = 10
CAP_NET_ADMIN = 12
CAP_NET_RAW = 13
CAP_IPC_LOCK = 14
KEEP = {
    "CAP_NET_BIND_SERVICE": CAP_NET_BIND_SERVICE,
    "CAP_NET_ADMIN": CAP_NET_ADMIN,
    "CAP_NET_RAW": CAP_NET_RAW,
}

_PR_CAPBSET_DROP = 24
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def capability_sets(pid: int | str = "self") -> dict[str, int]:
    """The CapInh/CapPrm/CapEff/CapBnd/CapAmb masks of a process, from /proc."""
    sets = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key.startswith("Cap"):
            sets[key] = int(value.strip(), 16)
    return sets


def keep_mask(keep: dict[str, int] = KEEP) -> int:
    mask = 0
    for bit in keep.values():
        mask |= 1 << bit
    return mask


def drop_capabilities(keep: dict[str, int] = KEEP) -> str:
    """Drop every capability but ``keep``; return a short description of what happened.

    Raises OSError when the kernel refuses (the caller logs it and carries on with what it has).
    """
    current = capability_sets()
    if current.get("CapEff", 0) == 0:
        return "nothing to drop (no capabilities)"
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    last = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    wanted = keep_mask(keep)
    # the bounding set first: dropping from it needs CAP_SETPCAP, which capset removes below
    bounding = current.get("CapBnd", 0)
    for cap in range(last + 1):
        drop = not wanted & (1 << cap) and bounding & (1 << cap)
        if drop and libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"prctl(PR_CAPBSET_DROP, {cap}): {os.strerror(err)}")
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    have = current.get("CapPrm", 0)
    effective = wanted & have
    data = (_CapData * 2)(
        _CapData(effective & 0xFFFFFFFF, effective & 0xFFFFFFFF, 0),
        _CapData(effective >> 32, effective >> 32, 0),
    )
    if libc.capset(ctypes.byref(header), data) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"capset: {os.strerror(err)}")
    kept = [name for name, bit in keep.items() if effective & (1 << bit)]
    return "kept " + (",".join(kept) if kept else "none")


def drop_and_log(log: Logger, keep_ipc_lock: bool = False) -> None:
    """Every socket is open now: keep only the capabilities the daemon still needs, and say so
    (``CAP_IPC_LOCK`` too where its memory is locked under a finite limit: daemon/memory.py)."""
    keep = {**KEEP, "CAP_IPC_LOCK": CAP_IPC_LOCK} if keep_ipc_lock else KEEP
    try:
        log.info("homeagent.privileges", result=drop_capabilities(keep))
    except OSError as exc:
        log.warning("homeagent.privileges_failed", error=str(exc))
