"""mobileip.tools.uml itself: the init script it writes, and (where User-Mode Linux can run)
a command's output and exit status coming back, a timeout killing the guest, nothing left behind.
The ``kernel`` tests it exists for are run by tests/test_uml_tier.py."""

from __future__ import annotations

import re
import subprocess
import tempfile
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


def _leftovers() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("mobileip-uml-*")}


def test_output_and_exit_status_come_back() -> None:
    _need_uml()
    before = _leftovers()
    result = run_in_uml("echo out; echo err >&2; test -d /run/netns || echo private-run; exit 7")
    assert result.returncode == 7, result.console
    assert "out\nerr\nprivate-run\n" in result.output
    assert result.boot_seconds is not None and not result.missing_modules
    assert _leftovers() <= before


@pytest.mark.slow
def test_timeout_kills_the_guest() -> None:
    _need_uml()
    before = _leftovers()
    result = run_in_uml(["sleep", "600"], timeout=8)
    assert result.timed_out and result.returncode == 124
    assert _leftovers() <= before
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    running = set(re.findall(r"init=\S*/(mobileip-uml-[^/\s]+)/init", ps))
    assert not running - before, ps  # the guest's whole process group is gone
