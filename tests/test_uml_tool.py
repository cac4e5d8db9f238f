"""mobileip.tools.uml itself: the init script it writes, and (where User-Mode Linux can run)
a command's output and exit status coming back, a timeout killing the guest, nothing left behind.
The ``kernel`` tests it exists for are run by tests/test_uml_tier.py."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from mobileip.tools.uml import GUEST_CTL, guest_env, init_script, run_in_uml, uml_available


def test_init_script_mounts_privately_and_quotes_the_command() -> None:
    script = init_script(
        ["echo", "it's"], ctl=Path("/tmp/c d"), cwd=Path("/work/x y"), env={"A": "b c"}
    )
    for line in (
        "mount -t tmpfs -o mode=0755 tmpfs /run",
        f"mount --bind '/tmp/c d' {GUEST_CTL}",
        "mount -t tmpfs -o mode=1777 tmpfs /tmp",
        "echo /run/uml-modprobe > /proc/sys/kernel/modprobe",
        "export A='b c'",
        "echo o > /proc/sysrq-trigger",
    ):
        assert line in script
    # /tmp is replaced only after the control directory (which may live there) is bound
    assert script.index("mount --bind") < script.index("tmpfs /tmp")
    assert "(cd '/work/x y' && echo 'it'\"'\"'s')" in script
    assert guest_env({"X": "1"})["MOBILEIP_IN_UML"] == "1"


def _need_uml() -> None:
    reason = uml_available()
    if reason:
        pytest.skip(reason)


def _running() -> set[str]:
    """The control directories of guests running now."""
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    return set(re.findall(r"init=\S*/(mobileip-uml-[^/\s]+)/init", ps))


def _left_behind(control: str) -> list[str]:
    """What the run whose control directory was ``control`` left: the directory, or a guest
    still using it (named, not globbed: this machine may run other UML tests meanwhile)."""
    assert control, "run_in_uml reports its control directory"
    left = [control] if Path(control).exists() else []
    return left + [f"guest of {control}"] * (Path(control).name in _running())


def test_output_and_exit_status_come_back() -> None:
    _need_uml()
    result = run_in_uml("echo out; echo err >&2; test -d /run/netns || echo private-run; exit 7")
    assert result.returncode == 7, result.console
    assert "out\nerr\nprivate-run\n" in result.output
    assert result.boot_seconds is not None and not result.missing_modules
    assert not _left_behind(result.control)


@pytest.mark.slow
def test_timeout_kills_the_guest() -> None:
    _need_uml()
    result = run_in_uml(["sleep", "600"], timeout=8)
    assert result.timed_out and result.returncode == 124
    assert not _left_behind(result.control)  # the guest's whole process group is gone
