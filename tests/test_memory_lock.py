"""``[homeagent] lock_memory``: the daemon's pages resident, now and later (daemon/memory.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import running_homeagent

from mobileip.config import ConfigError, load_config
from mobileip.daemon.memory import locked_kib
from mobileip.daemon.privileges import CAP_IPC_LOCK, capability_sets

# run in a child: mlockall cannot be undone for the test process itself
LOCK_THEN_GROW = """
from mobileip.daemon.memory import lock_memory, locked_kib
print(lock_memory()[0])
before = locked_kib()
grown = bytearray(48 << 20)  # mapped after the lock: MCL_FUTURE populates and locks it
print(before, locked_kib())
"""

REFUSED = """
import resource
from mobileip.daemon.memory import lock_memory, locked_kib
from mobileip.daemon.privileges import drop_capabilities
resource.setrlimit(resource.RLIMIT_MEMLOCK, (1 << 16, 1 << 16))
drop_capabilities()  # as root: no CAP_SYS_RESOURCE (raising it again), no CAP_IPC_LOCK
try:
    lock_memory()
except OSError as exc:
    print("refused:", exc)
print("locked", locked_kib())
"""


def _child(code: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    return out.stdout.splitlines()


@pytest.mark.root
def test_lock_memory_locks_what_is_mapped_later() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: CAP_IPC_LOCK or CAP_SYS_RESOURCE")
    first, sizes = _child(LOCK_THEN_GROW)
    assert first.startswith("locked ") and "KiB, and every later mapping" in first
    before, after = (int(x) for x in sizes.split())
    assert before > 1024  # the interpreter itself
    assert after - before >= 48 << 10  # the 48 MiB mapped after the call


def test_lock_memory_refuses_under_a_finite_limit() -> None:
    lines = _child(REFUSED)
    assert lines[0].startswith("refused: ") and "RLIMIT_MEMLOCK is 65536 bytes" in lines[0]
    assert "CAP_IPC_LOCK is not held" in lines[0]
    assert lines[1] == "locked 0"  # nothing half-locked


@pytest.mark.root
def test_daemon_locks_its_memory_when_asked(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: CAP_IPC_LOCK or CAP_SYS_RESOURCE")
    with running_homeagent(tmp_path, homeagent={"lock_memory": True}) as ha:
        assert ha.client().register(60).code == 0  # serves, with its privileges dropped after
        deadline = time.monotonic() + 5
        while "homeagent.memory_locked" not in ha.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "homeagent.memory_locked" in ha.log(), ha.log()
        assert locked_kib(ha.proc.pid) > 1024
        # uvloop's libuv pool (fixed 8 MiB stacks, resident once locked): one thread, not four
        tasks = Path(f"/proc/{ha.proc.pid}/task").iterdir()
        pool = [t for t in tasks if (t / "comm").read_text().strip() == "libuv-worker"]
        assert len(pool) <= 1, pool
        # privileges dropped after the lock; where the limit stayed finite CAP_IPC_LOCK is
        # kept, so the process goes on mapping locked memory (a registration above did)
        caps = capability_sets(ha.proc.pid)["CapEff"]
        finite = "CAP_IPC_LOCK kept" in ha.log()
        assert bool(caps >> CAP_IPC_LOCK & 1) == finite, ha.log()


def test_memory_is_not_locked_by_default(tmp_path: Path) -> None:
    with running_homeagent(tmp_path) as ha:
        assert ha.client().register(60).code == 0
        assert "memory_lock" not in ha.log()
        assert locked_kib(ha.proc.pid) == 0


def test_lock_memory_must_be_a_boolean(tmp_path: Path) -> None:
    path = tmp_path / "ha.toml"
    path.write_text('[homeagent]\naddress = "10.0.0.1"\nlock_memory = "yes"\n')
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "lock_memory" in str(err.value) and "ha.toml" in str(err.value)
    assert "line 3" in str(err.value)


THREAD_AFTER_LOCK = """
import threading
from mobileip.daemon.memory import lock_memory, locked_kib
lock_memory()
before = locked_kib()
t = threading.Thread(target=lambda: bytearray(1 << 20)); t.start(); t.join()
print(before, locked_kib())
"""


@pytest.mark.root
def test_a_thread_started_after_the_lock_costs_its_stack_not_an_arena() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: CAP_IPC_LOCK or CAP_SYS_RESOURCE")
    before, after = (int(x) for x in _child(THREAD_AFTER_LOCK)[0].split())
    # its stack (THREAD_STACK, 4 MiB, not glibc's 8) and no 64 MiB malloc arena of its own
    assert after - before < 6 << 10, (before, after)
