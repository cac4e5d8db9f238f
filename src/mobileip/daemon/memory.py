"""Locking the daemon's memory (``[homeagent] lock_memory``; keepalived's ``vrrp_no_swap``).

``mlockall(MCL_CURRENT | MCL_FUTURE)``: every page the process has is made resident and stays
so, and every page it maps later is populated when it is mapped, never faulted in one at a
time on first touch. Two reasons, both about the VRRP speaker's adverts:

* no page of the daemon is swapped out, so an advert is never late for a page-in;
* a growing table (a dict resized past 100,000 entries allocates megabytes at once) no longer
  takes one page fault per page while the interpreter lock is held. On a virtual machine a
  fault is dear; inside User-Mode Linux it is 70 times dearer than populating the page at map
  time (docs/performance.md, "Page faults inside User-Mode Linux").

Locked memory cannot be reclaimed: the daemon's resident size is what it maps, thread stacks
included (glibc's per-thread malloc arenas are turned off first: each would be 64 MiB; and
threads started later get :data:`THREAD_STACK`, not glibc's ``RLIMIT_STACK``-sized 8 MiB;
libuv's thread pool, whose threads have a fixed 8 MiB stack and which uvloop uses for name
lookups only, gets one thread instead of four unless ``UV_THREADPOOL_SIZE`` is set).
``MCL_FUTURE`` makes a later mapping fail (``MemoryError``) once the process passes
``RLIMIT_MEMLOCK`` without ``CAP_IPC_LOCK``. So the limit is raised to unlimited first (needs
``CAP_SYS_RESOURCE``); where it stays finite, the lock needs ``CAP_IPC_LOCK``, and the
privilege drop keeps it (daemon/privileges.py). Without either, nothing is locked.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
import resource
import threading
from typing import TYPE_CHECKING

from mobileip.daemon.privileges import CAP_IPC_LOCK, capability_sets

if TYPE_CHECKING:
    from mobileip.log import Logger

MCL_CURRENT, MCL_FUTURE = 1, 2
M_ARENA_MAX = -8  # mallopt
# a thread's stack once locked (resident whole): CPython's own choice where a platform's
# default is too small (FreeBSD); the daemon's threads (VRRP, netlink batches) run shallow code
THREAD_STACK = 4 << 20


def status_kib(field: str, pid: int | str = "self") -> int | None:
    """A ``kB`` line of ``/proc/PID/status`` (``VmRSS``, ``VmLck``, ...): None where the
    process or the line is not there."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def locked_kib(pid: int | str = "self") -> int:
    """``VmLck`` of a process, in KiB (0 where the kernel does not say)."""
    return status_kib("VmLck", pid) or 0


def lock_memory() -> tuple[str, bool]:
    """Lock every page, now and later: what was done, and whether ``CAP_IPC_LOCK`` must be
    kept (``RLIMIT_MEMLOCK`` is finite). Raises OSError, nothing locked, where it is finite and
    the process lacks ``CAP_IPC_LOCK``, or where the kernel refuses."""
    unlimited = resource.RLIM_INFINITY
    with contextlib.suppress(OSError, ValueError):  # raising the hard limit: CAP_SYS_RESOURCE
        resource.setrlimit(resource.RLIMIT_MEMLOCK, (unlimited, unlimited))
    soft, _hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    finite = soft != unlimited
    if finite and not capability_sets().get("CapEff", 0) >> CAP_IPC_LOCK & 1:
        raise OSError(
            errno.EPERM,
            f"RLIMIT_MEMLOCK is {soft} bytes and cannot be raised, and CAP_IPC_LOCK is not "
            "held: a locked process would fail its allocations past the limit",
        )
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    # one malloc arena for every thread: glibc gives each new thread's arena a 64 MiB heap,
    # which the lock would make resident (the interpreter lock serialises them anyway)
    libc.mallopt(M_ARENA_MAX, 1)
    if libc.mlockall(MCL_CURRENT | MCL_FUTURE) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mlockall: {os.strerror(err)}")
    os.environ.setdefault("UV_THREADPOOL_SIZE", "1")  # read at the pool's first use
    stack, _ = resource.getrlimit(resource.RLIMIT_STACK)  # glibc's default for a thread
    if stack == unlimited or stack > THREAD_STACK:
        threading.stack_size(THREAD_STACK)
    how = "CAP_IPC_LOCK kept" if finite else "RLIMIT_MEMLOCK unlimited"
    return f"locked {locked_kib()} KiB, and every later mapping ({how})", finite


def lock_and_log(log: Logger) -> bool:
    """:func:`lock_memory` with its outcome logged (a refusal is a warning, the daemon carries
    on); True where the privilege drop must keep ``CAP_IPC_LOCK``."""
    try:
        result, keep_ipc_lock = lock_memory()
    except OSError as exc:
        log.warning("homeagent.memory_lock_failed", error=str(exc))
        return False
    log.info("homeagent.memory_locked", result=result)
    return keep_ipc_lock
