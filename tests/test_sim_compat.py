"""The simulator's old module name still runs it (issue 12 moved it to mobileip.tools.sim)."""

from __future__ import annotations

import subprocess
import sys


def test_python_m_mobileip_sim_replays_a_seed() -> None:
    argv = [
        sys.executable,
        "-m",
        "mobileip.sim",
        "--seed",
        "3",
        "--mode",
        "async",
        "--members",
        "2",
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "Report(seed=3, mode='async', members=2" in done.stdout
    assert "violations=[]" in done.stdout
