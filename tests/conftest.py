"""Shared pytest set-up.

* Tests marked ``@pytest.mark.root`` skip with a reason when not run as root.
* When the environment variable ``CI`` is set (CI runs as root), a skipped ``root`` test makes
  the whole session fail, naming the test: CI must run them, a skip there is a hole.
* Tests marked ``@pytest.mark.kernel`` need the real kernel (tunnels, netem, NAT): where the host
  kernel lacks them they run inside User-Mode Linux, and CI fails when one did not run; see
  tests/test_uml_tier.py (its KernelTier plugin is registered below).
* ``homeagent`` fixture: a factory starting real daemons (tests/helpers.py), all stopped at the end.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from netns import Segment

sys.path.insert(0, str(Path(__file__).parent))

from helpers import DaemonHandle, homeagent_config, start_homeagent

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
_root_skips: list[str] = []


def _ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if IS_ROOT:
        return
    skip = pytest.mark.skip(reason="needs root (network namespaces); run as root or in CI")
    for item in items:
        if "root" in item.keywords:
            item.add_marker(skip)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    # kernel tests' skips are judged by the kernel tier's own CI guard (KernelTier)
    if report.skipped and "root" in report.keywords and "kernel" not in report.keywords:
        _root_skips.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _ci() and _root_skips and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if _ci() and _root_skips:
        terminalreporter.section("root tests skipped in CI", sep="=", red=True, bold=True)
        for nodeid in _root_skips:
            terminalreporter.write_line(f"SKIPPED root test (CI must run it): {nodeid}")
        terminalreporter.write_line(
            "CI is set: failing the session because root tests were skipped"
        )


# --- the real-kernel tier: `kernel` tests run inside User-Mode Linux (tests/test_uml_tier.py) ---
def pytest_configure(config: pytest.Config) -> None:
    if (Path(__file__).parent / "test_uml_tier.py").exists():  # not in pytester's copies
        from test_uml_tier import KernelTier

        config.pluginmanager.register(KernelTier(), "kernel-tier")


# --- end of the real-kernel tier ---


@pytest.fixture
def homeagent(tmp_path: Path) -> Iterator[Any]:
    """``homeagent(**sections)`` starts a daemon (see helpers.homeagent_config)."""
    started: list[DaemonHandle] = []

    def start(host: str = "127.0.0.1", *, name: str | None = None, **sections: Any) -> DaemonHandle:
        handle = start_homeagent(
            tmp_path, homeagent_config(host, **sections), name=name or f"ha{len(started)}"
        )
        started.append(handle)
        return handle

    yield start
    for handle in started:
        handle.stop()


@pytest.fixture
def seg() -> Iterator[Segment]:
    """A fresh network-namespace :class:`Segment` (root), torn down whatever the outcome;
    processes a test stopped with SIGSTOP are continued first so they can act on SIGTERM."""
    from netns import Segment, root_skip_reason

    reason = root_skip_reason()
    if reason:
        pytest.skip(reason)
    segment = Segment()
    try:
        segment.open()
        yield segment
    finally:
        for proc in segment.processes:
            proc.signal(signal.SIGCONT)
        segment.close()
