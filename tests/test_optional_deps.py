"""Issue 15 item 3: what a plain ``pip install .`` (no extras) gives a new user.

pyroute2 (VRRP's virtual addresses, the data plane, the agents) and uvloop are dependencies; the
extras (``bench``: matplotlib, py-spy; ``fuzz``: atheris; ``browser``: playwright) are for tools,
and a tool whose extra is missing says so in one line naming the extra, with no traceback.

* fast: each such path run with the module hidden (``sys.modules[name] = None``);
* slow: a fresh virtual environment with the checkout installed without extras (pip builds the
  wheel from a copy of the tree, so nothing is written into the checkout; packages come from
  pip's cache and the configured indexes): every module of the package imports, the daemon
  starts on loopback (with the data plane and native VRRP configured it still needs root, so the
  plain config is used), answers a registration and stops cleanly on SIGTERM, and ``mobileip
  bench --plot`` gives the one-line error. It needs no root.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import homeagent_config, mobile_node_for

from mobileip.agents.client import ControlError, RegistrationClient, fetch_json
from mobileip.config import to_toml

ROOT = Path(__file__).resolve().parents[1]
EXTRAS_ONLY = ("matplotlib", "atheris", "playwright")


def _run_cli_without(module: str, *argv: str) -> subprocess.CompletedProcess[str]:
    code = (
        f"import sys; sys.modules[{module!r}] = None\n"
        "from mobileip.cli import main\n"
        f"sys.exit(main({list(argv)!r}))\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )


def _one_line_error(proc: subprocess.CompletedProcess[str], extra: str) -> None:
    assert proc.returncode == 2, proc
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert f"mobileip[{extra}]" in lines[0]


def test_bench_plot_without_matplotlib_is_one_line(tmp_path: Path) -> None:
    proc = _run_cli_without("matplotlib", "bench", "--quick", "--plot", str(tmp_path / "x.png"))
    _one_line_error(proc, "bench")


@pytest.mark.skipif(
    Path(sys.executable).with_name("py-spy").exists(), reason="py-spy is installed here"
)
def test_profile_without_py_spy_is_one_line(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts/perf/profile_ha.py"), "alone", "--py-spy", "x"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    _one_line_error(proc, "bench")


@pytest.mark.skipif(importlib.util.find_spec("atheris") is not None, reason="atheris installed")
def test_fuzz_without_atheris_is_one_line(tmp_path: Path) -> None:
    for argv in (
        ["bash", str(ROOT / "scripts/fuzz"), "--runs", "1", "registration"],
        [sys.executable, str(ROOT / "fuzz/run.py"), "registration", "--runs", "1"],
    ):
        proc = subprocess.run(
            argv, capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path
        )
        _one_line_error(proc, "fuzz")


def test_required_dependencies_are_declared() -> None:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {d.split(">")[0].split("=")[0].split(";")[0].strip() for d in project["dependencies"]}
    assert {"aiohttp", "prometheus-client", "pyroute2", "uvloop"} <= names
    assert not names & set(EXTRAS_ONLY)


# --- a fresh virtual environment without the extras ------------------------------------------


def _copy_tree(dst: Path) -> Path:
    """The files ``pip install`` needs, so that the build writes nothing into the checkout."""
    src = dst / "src"
    shutil.copytree(
        ROOT / "src",
        src,
        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc"),
    )
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, dst / name)
    return dst


@pytest.fixture(scope="module")
def bare_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("bare")
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    tree = _copy_tree(base / "tree")
    # this venv's pip installs into the new one (--python): no ensurepip, and its cache is shared
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(venv / "bin" / "python"),
            "install",
            "--quiet",
            "--disable-pip-version-check",
            str(tree),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if proc.returncode != 0:
        if "No matching distribution" in proc.stderr or "connection" in proc.stderr.lower():
            pytest.skip(f"no package index reachable: {proc.stderr.strip()[-300:]}")
        raise AssertionError(f"pip install . failed:\n{proc.stdout}\n{proc.stderr}")
    return venv


def _bare(venv: Path, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(venv / "bin" / "python"), *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        cwd=venv,  # not the checkout: the installed package, not ./src
    )


@pytest.mark.slow
def test_bare_install_has_no_extras_and_imports_every_module(bare_venv: Path) -> None:
    code = (
        "import importlib, importlib.util, pkgutil, mobileip\n"
        "print(mobileip.__file__)\n"
        f"for m in {EXTRAS_ONLY!r}:\n"
        "    assert importlib.util.find_spec(m) is None, m\n"
        "for info in pkgutil.walk_packages(mobileip.__path__, 'mobileip.'):\n"
        "    if info.name != 'mobileip.__main__':\n"
        "        importlib.import_module(info.name)\n"
        "import pyroute2, uvloop\n"
    )
    proc = _bare(bare_venv, "-c", code)
    assert proc.returncode == 0, proc.stderr
    assert str(bare_venv) in proc.stdout  # the installed copy was tested, not the checkout


@pytest.mark.slow
def test_bare_install_runs_the_daemon(bare_venv: Path, tmp_path: Path) -> None:
    cfg = homeagent_config("127.0.0.1")
    path = tmp_path / "ha.toml"
    path.write_text(to_toml(cfg))
    log = tmp_path / "ha.log"
    host, _, port = str(cfg["control"]["listen"]).rpartition(":")
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(bare_venv / "bin" / "mobileip"), "homeagent", "--config", str(path)],
            stdout=out,
            stderr=out,
            cwd=tmp_path,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                fetch_json((host, int(port)), "/healthz")
                break
            except ControlError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)
        ha = (cfg["homeagent"]["listen"], cfg["homeagent"]["port"])
        with RegistrationClient(mobile_node_for(cfg), ha, timeout=1.0) as client:
            assert client.register(60).code == 0
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log.read_text()
    assert "Traceback" not in text
    assert "loop=uvloop" in text  # a dependency now, not an extra


@pytest.mark.slow
def test_bare_install_bench_plot_is_one_line(bare_venv: Path, tmp_path: Path) -> None:
    mobileip = str(bare_venv / "bin" / "mobileip")
    proc = subprocess.run(
        [mobileip, "bench", "--quick", "--plot", str(tmp_path / "x.png")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    _one_line_error(proc, "bench")
