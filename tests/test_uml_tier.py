"""The real-kernel test tier: tests marked ``kernel`` run inside User-Mode Linux.

Tests marked ``@pytest.mark.kernel`` need kernel features a host kernel may lack (ipip and gre
devices, ``external`` tunnels with ``encap ip`` routes, netem, NAT). Where they run:

* On the host, when User-Mode Linux can run (``mobileip.tools.uml.uml_available()``; Debian's
  ``user-mode-linux`` package, which scripts/test installs as root): each ``kernel`` test is
  skipped on the host with a reason naming :func:`test_kernel_tests_in_uml`, and that one test
  boots UML once and runs exactly those tests inside (all ``kernel`` tests when none was
  selected in this session, e.g. ``pytest tests/test_uml_tier.py``). It fails unless the inner
  run passed every one of them: an inner failure, error or skip, or zero tests run, fails it.
* Inside UML (``MOBILEIP_IN_UML=1``, set by run_in_uml): the ``kernel`` tests run as usual and
  the tier test is deselected (no recursion).
* On the host when UML cannot run, or with ``MOBILEIP_KERNEL_TESTS=host``: the ``kernel`` tests
  run on the host kernel and skip with their own reasons where it lacks something.

Under ``CI`` (.ci/run) a ``kernel`` test that did not really run fails the session, naming it:
a skip on the host kernel, a skip handed to UML when the tier test did not pass, or the tier
test skipped while no ``kernel`` test ran on the host. conftest registers :class:`KernelTier`.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from mobileip.tools.uml import kernel_release, nat_kernel, run_in_uml, uml_available
from mobileip.tools.uml_kernel import kernel_path

pytest_plugins = ["pytester"]

TIER_TEST = "tests/test_uml_tier.py::test_kernel_tests_in_uml"
DELEGATED = f"real-kernel test: runs inside User-Mode Linux through {TIER_TEST}"
UML_TIMEOUT = 1200.0  # the whole inner run; the suite's own per-test timeout still applies
IN_UML = os.environ.get("MOBILEIP_IN_UML") == "1"


def _ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


class KernelTier:
    """The pytest plugin deciding where ``kernel`` tests run (see the module docstring)."""

    def __init__(self) -> None:
        self.delegated: list[str] = []  # node ids handed to the tier test
        self.masquerade: set[str] = set()  # those marked iptables_nat (MASQUERADE)
        self.host_reason: str | None = None  # why they run on the host kernel instead
        self.ran_on_host = False
        self.tier_passed = False
        self.holes: list[str] = []  # CI: kernel tests that did not really run
        self.summary: str | None = None  # set by the tier test

    @pytest.hookimpl(trylast=True)  # after -m/-k deselection
    def pytest_collection_modifyitems(
        self, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        tier = [item for item in items if "uml_tier" in item.keywords]
        if IN_UML:
            if tier:
                items[:] = [item for item in items if item not in tier]
                config.hook.pytest_deselected(items=tier)
            return
        kernel = [item for item in items if "kernel" in item.keywords and item not in tier]
        if not kernel:
            return
        if os.environ.get("MOBILEIP_KERNEL_TESTS") == "host":
            self.host_reason = "MOBILEIP_KERNEL_TESTS=host"
            return
        self.host_reason = uml_available()
        if self.host_reason:
            return
        self.delegated = [item.nodeid for item in kernel]
        self.masquerade = {item.nodeid for item in kernel if "iptables_nat" in item.keywords}
        reason = DELEGATED if tier else f"{DELEGATED}, which this run did not select"
        for item in kernel:
            item.add_marker(pytest.mark.skip(reason=reason))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if "kernel" not in report.keywords:
            return
        if "uml_tier" in report.keywords:
            if report.when == "call" and report.passed:
                self.tier_passed = True
            elif report.skipped:
                self.holes.append(f"{report.nodeid} ({_skip_reason(report)})")
            return
        if report.skipped:
            reason = _skip_reason(report)
            if not (DELEGATED in reason and report.nodeid in self.delegated):
                self.holes.append(f"{report.nodeid} ({reason})")
        elif report.when == "call":
            self.ran_on_host = True

    def _ci_holes(self) -> list[str]:
        holes = [h for h in self.holes if not (h.startswith(TIER_TEST) and self.ran_on_host)]
        if self.delegated and not self.tier_passed:
            holes += [f"{nodeid} (handed to UML; the tier test did not pass)" for nodeid in
                      self.delegated]  # fmt: skip
        return holes

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if _ci() and self._ci_holes() and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.summary:
            terminalreporter.write_line(self.summary)
        holes = self._ci_holes() if _ci() else []
        if holes:
            terminalreporter.section("real-kernel tests skipped in CI", sep="=", red=True)
            for hole in holes:
                terminalreporter.write_line(f"NOT RUN kernel test (CI must run it): {hole}")
            terminalreporter.write_line(
                "CI is set: failing the session; install user-mode-linux (scripts/test does, "
                "as root) or run on a kernel with ipip, gre, dummy, netem and NAT"
            )


SUMMARY = re.compile(r"(\d+) (passed|failed|skipped|errors?|xfailed|xpassed|deselected)")


def inner_counts(output: str) -> dict[str, int]:
    """The counts of pytest's final summary line (``3 passed, 1 skipped in 4.2s``)."""
    for line in reversed(output.splitlines()):
        if re.search(r" in [\d.]+s\b", line) and SUMMARY.search(line):
            counts = {kind: int(n) for n, kind in SUMMARY.findall(line)}
            if "error" in counts:
                counts["errors"] = counts.pop("error")
            return counts
    return {}


def test_inner_counts_parse_pytest_summaries() -> None:
    assert inner_counts("x\n== 2 passed, 1 skipped in 3.10s ==\n") == {"passed": 2, "skipped": 1}
    assert inner_counts("1 failed, 1 error in 0.5s") == {"failed": 1, "errors": 1}
    assert inner_counts("no tests ran in 0.01s") == {}


GUARD_PROBE = """
import pytest

@pytest.mark.kernel
def test_k():
    pytest.skip("pretend this kernel lacks ipip")

def test_plain():
    pass
"""


@pytest.mark.parametrize(
    ("ci", "where", "status"),
    [("true", "host", 1), ("", "host", 0), ("true", "", 1)],
    ids=["ci-host-kernel-skip", "no-ci", "ci-tier-not-selected"],
)
def test_ci_fails_when_a_kernel_test_did_not_run(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, ci: str, where: str, status: int
) -> None:
    """The guard, without booting anything: a ``kernel`` test skipped on the host kernel, or
    handed to UML while the tier test was not selected, fails a CI session."""
    here = Path(__file__).parent
    pytester.makeconftest((here / "conftest.py").read_text())
    pytester.makepyfile(helpers=(here / "helpers.py").read_text())
    pytester.makepyfile(test_uml_tier=Path(__file__).read_text(), test_probe=GUARD_PROBE)
    pytester.makeini(
        "[pytest]\nmarkers =\n    root: r\n    slow: s\n    kernel: k\n    uml_tier: u\n"
    )
    monkeypatch.setenv("CI", ci)
    monkeypatch.setenv("MOBILEIP_KERNEL_TESTS", where)
    monkeypatch.delenv("MOBILEIP_IN_UML", raising=False)
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider", "test_probe.py")
    assert result.ret == status, result.stdout.str()
    if status:
        result.stdout.fnmatch_lines(["*NOT RUN kernel test (CI must run it): *test_k*"])


@pytest.mark.kernel
@pytest.mark.uml_tier
@pytest.mark.slow
@pytest.mark.timeout(2 * UML_TIMEOUT + 120)  # a second boot for iptables_nat tests
def test_kernel_tests_in_uml(request: pytest.FixtureRequest) -> None:
    tier = request.config.pluginmanager.get_plugin("kernel-tier")
    assert isinstance(tier, KernelTier), "tests/conftest.py must register KernelTier"
    if os.environ.get("MOBILEIP_KERNEL_TESTS") == "host":
        pytest.skip("MOBILEIP_KERNEL_TESTS=host: the kernel tests ran on the host kernel")
    reason = uml_available()
    if reason:
        pytest.skip(f"User-Mode Linux cannot run ({reason}): kernel tests ran on the host kernel")
    kernel = kernel_path()
    assert kernel is not None
    if tier.delegated:
        rest = [n for n in tier.delegated if n not in tier.masquerade]
        nat = [n for n in tier.delegated if n in tier.masquerade]
    else:
        rest, nat = ["-m", "kernel and not iptables_nat"], ["-m", "kernel and iptables_nat"]
    masquerade = nat_kernel()
    assert masquerade is not None or not nat, (
        f"no UML kernel with iptables' nat table for the tests marked iptables_nat {nat}: "
        "run python -m mobileip.tools.uml --ensure-kernel as root (docs/testing.md)"
    )
    if masquerade == kernel:
        boots = [(kernel, [*rest, *nat] if tier.delegated else ["-m", "kernel"])]
    else:
        boots = [(k, t) for k, t in [(kernel, rest), (masquerade, nat)] if t and k]
    passed = 0
    summaries = []
    for boot_kernel, targets in boots:
        summary, counts = _inner_run(request, boot_kernel, targets)
        summaries.append(summary)
        tier.summary = "\n".join(summaries)
        passed += counts.get("passed", 0)
    if tier.delegated:
        assert passed == len(tier.delegated), f"expected {tier.delegated}\n{tier.summary}"


def _inner_run(
    request: pytest.FixtureRequest, kernel: str, targets: list[str]
) -> tuple[str, dict[str, int]]:
    """Boot ``kernel`` once and run pytest on ``targets`` inside; every one must pass. The
    NAT in tests/test_kernel_nat*.py must be MASQUERADE there (mobileip.tools.natlab)."""
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rfEs", *targets]
    env = {k: os.environ[k] for k in ("CI", "PYTHONPATH") if k in os.environ}
    env["MOBILEIP_NAT_ENGINE"] = "masquerade"
    result = run_in_uml(argv, cwd=request.config.rootpath, env=env, timeout=UML_TIMEOUT,
                        kernel=kernel)  # fmt: skip
    counts = inner_counts(result.output)
    boot = f"{result.boot_seconds:.1f}" if result.boot_seconds is not None else "?"
    summary = (
        f"kernel tier: User-Mode Linux {kernel_release(kernel)}: "
        + (", ".join(f"{n} {kind}" for kind, n in counts.items()) or "no summary")
        + f" (boot {boot} s, whole run {result.seconds:.1f} s)"
    )
    print(f"\n{summary}")
    tail = "\n".join(result.output.splitlines()[-150:])
    context = f"{summary}\n--- inner output (tail) ---\n{tail}"
    assert not result.timed_out, f"UML run timed out\n{context}"
    assert not result.missing_modules, f"modules missing: {result.missing_modules}\n{context}"
    assert result.returncode == 0, f"inner pytest exited {result.returncode}\n{context}"
    bad = {k: n for k, n in counts.items() if k not in ("passed", "deselected") and n}
    assert not bad, f"inner run did not pass every test: {bad}\n{context}"
    assert counts.get("passed", 0) > 0, f"inner run ran no test\n{context}"
    return summary, counts
