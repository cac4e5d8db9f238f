"""Run a command under a real Linux kernel with User-Mode Linux (Debian's ``user-mode-linux``).

Some tests need kernel features a host kernel may lack (ipip and gre devices, ``external``
collect-metadata tunnels with ``encap ip`` routes, netem, NAT, dummy devices). Debian's
``user-mode-linux`` package is a Linux 6.1 kernel that runs as an ordinary process, with those
features as modules (where it cannot run on this CPU as it is: an XSAVE shim preloaded, or a
newer kernel; mobileip.tools.uml_kernel).
:func:`run_in_uml` boots it with this machine's own filesystem as its root (``rootfstype=hostfs``),
so the checkout, its ``.venv`` and the Debian tools run inside unchanged,
runs one command there and powers the kernel off::

    result = run_in_uml(["python", "-m", "pytest", "-m", "kernel"], cwd=checkout, timeout=600)
    result.returncode, result.output

How, step by step:

* A private control directory (``mobileip-uml-*`` under the temp dir) holds the init script, the
  command's output and exit status, and UML's own ``uml_dir`` (pid file, mconsole socket; so
  nothing lands in ``~/.uml``). It is removed when the call returns, also after a timeout.
* ``linux.uml mem=... rootfstype=hostfs rw quiet init=<script> con=null con0=null,fd:1`` runs in
  its own process group (with ``LD_PRELOAD`` of the XSAVE shim when
  :func:`~mobileip.tools.uml_kernel.wants_shim`); its console (the init script's stdout) is read
  line by line.
* The init script, PID 1 of the guest, mounts proc, sysfs, devpts, a tmpfs on ``/run`` (so
  ``ip netns add`` writes ``/run/netns`` inside the guest, not onto the host), on ``/tmp`` and on
  ``/dev/shm`` (so tmp files, Unix sockets and pytest's temp dirs never meet the host's); the
  control directory is bind-mounted to ``/run/uml-ctl`` first, so it stays reachable wherever it
  lives. Only the checkout and the rest of ``/`` are shared with the host (read and written as
  the user running ``linux.uml``).
* Modules: the package keeps them in ``/usr/lib/uml/modules/<release>`` but modprobe looks in
  ``/lib/modules/<release>``; instead of creating that path on the host, a tmpfs tree
  ``/run/uml-modules/lib/modules/<release>`` links to them, ``modprobe -d /run/uml-modules``
  loads :data:`MODULES` (a missing one is noted in ``modules-missing`` and not fatal) and a
  wrapper installed as ``/proc/sys/kernel/modprobe`` lets the kernel auto-load the rest.
* ``lo`` is brought up, ``PATH`` starts with the running virtualenv's ``bin``, ``MOBILEIP_IN_UML=1``
  is set, then the command runs in ``cwd`` with stdin from ``/dev/null``; its stdout+stderr go to
  the console and to ``output``, its exit status to ``status``; ``sync``, then
  ``echo o > /proc/sysrq-trigger`` powers the guest off and ``linux.uml`` exits.
* The host waits at most ``timeout`` seconds, then kills the whole process group
  (:attr:`UmlResult.timed_out`, return code 124 like ``timeout(1)``).

The guest has one CPU and boots in about 2 s; system calls cost more than on the host (UML
traps them with ptrace), so Python starts several times slower there. Run by hand::

    python -m mobileip.tools.uml -- ip -d link add t type ipip external
    python -m mobileip.tools.uml --timeout 900 -- .venv/bin/pytest -m kernel
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import platform
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from mobileip.tools.uml_kernel import (
    DEBIAN,
    FETCHED,
    KERNEL,
    KERNEL_PACKAGE,
    NAT_MODULE,
    SBIN_PATH,
    XSTATE_FAILURE,
    build_shim,
    choice,
    debian_kernel,
    fallback_kernel,
    fetch_newer,
    has_module,
    kernel_env,
    kernel_path,
    modules_root,
    record_choice,
    shim_marker,
    wants_shim,
)

# loaded before the command runs; anything else is auto-loaded through the modprobe wrapper
MODULES = (
    "ipip",
    "ip_gre",
    "dummy",
    "veth",
    "bridge",
    "macvlan",
    "tun",
    "sch_netem",
    "sch_tbf",
    "nf_nat",
    "nft_masq",
    "xt_MASQUERADE",
)
START = "=== mobileip-uml: command starts ==="
GUEST_CTL = "/run/uml-ctl"


@dataclass
class UmlResult:
    returncode: int  # the command's exit status; 124 after a timeout, 125 if it never ran
    output: str  # the command's stdout and stderr
    console: str = ""  # everything the guest's console printed (kernel messages, init script)
    boot_seconds: float | None = None  # from starting linux.uml to the command starting
    seconds: float = 0.0  # from starting linux.uml to its exit
    timed_out: bool = False
    missing_modules: tuple[str, ...] = ()
    control: str = ""  # the run's control directory on the host (removed when the run ends)


@functools.cache
def kernel_release(kernel: str | None = None) -> str | None:
    """The release of the UML kernel (default: :func:`kernel_path`'s; ``6.1.176``), or None."""
    kernel = kernel or kernel_path()
    if kernel is None:
        return None
    try:
        out = subprocess.run(
            [kernel, "--version"], capture_output=True, text=True, timeout=20, check=False
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.splitlines()[-1].strip() if out else None


def uml_available() -> str | None:
    """Why :func:`run_in_uml` cannot run here, or None when it can (cheap checks, no boot)."""
    if sys.platform != "linux" or platform.machine() != "x86_64":
        return "User-Mode Linux needs an x86_64 Linux host"
    kernel = kernel_path()
    if kernel is None:
        return f"no {KERNEL}: install Debian's user-mode-linux package"
    release = kernel_release(kernel)
    if release is None:
        return f"{kernel} --version printed no release"
    if not (modules_root(kernel) / release / "modules.dep").exists():
        return f"no modules for the UML kernel in {modules_root(kernel) / release}"
    for tool in ("modprobe", "mount", "ip"):
        if shutil.which(tool, path=SBIN_PATH) is None:
            package = {"modprobe": "kmod", "mount": "mount", "ip": "iproute2"}[tool]
            return f"no {tool} (the guest runs the host's tools): install {package}"
    return None


def _venv_bin() -> str | None:
    if sys.prefix != sys.base_prefix:
        return str(Path(sys.prefix) / "bin")
    return None


def guest_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment the command gets inside: a clean one, plus ``env``."""
    venv = _venv_bin()
    result = {
        "PATH": f"{venv}:{SBIN_PATH}" if venv else SBIN_PATH,
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "TERM": "dumb",
        "PYTHONUNBUFFERED": "1",
        "MOBILEIP_IN_UML": "1",
    }
    if venv:
        result["VIRTUAL_ENV"] = str(Path(venv).parent)
    result.update(env or {})
    return result


def init_script(
    command: str | Sequence[str],
    *,
    ctl: Path,
    cwd: Path,
    env: Mapping[str, str],
    modules: Path = Path("/usr/lib/uml/modules"),
) -> str:
    """The guest's init script (PID 1, run by /bin/sh)."""
    cmd = command if isinstance(command, str) else shlex.join(command)
    exports = "\n".join(f"export {k}={shlex.quote(v)}" for k, v in env.items())
    q = shlex.quote
    load = " ".join(MODULES)
    return f"""#!/bin/sh
# written by mobileip.tools.uml: PID 1 of a User-Mode Linux guest whose root is the host's /
export PATH={SBIN_PATH}
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t tmpfs -o mode=0755 tmpfs /run
mkdir -p {GUEST_CTL}
mount --bind {q(str(ctl))} {GUEST_CTL}
ctl={GUEST_CTL}
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs -o mode=1777 tmpfs /dev/shm 2>/dev/null
mkdir -p /dev/pts && mount -t devpts devpts /dev/pts 2>/dev/null
release=$(uname -r)
mkdir -p /run/uml-modules/lib/modules
ln -s {q(str(modules))}/"$release" /run/uml-modules/lib/modules/"$release"
printf '#!/bin/sh\\nexec modprobe -d /run/uml-modules "$@"\\n' > /run/uml-modprobe
chmod 0755 /run/uml-modprobe
echo /run/uml-modprobe > /proc/sys/kernel/modprobe
: > "$ctl/modules-missing"
for m in {load}; do
    modprobe -q -d /run/uml-modules "$m" 2>>"$ctl/modules.log" || echo "$m" >>"$ctl/modules-missing"
done
ip link set lo up
hostname uml 2>/dev/null
{exports}
echo {q(START)}
{{ (cd {q(str(cwd))} && {cmd}); echo $? > "$ctl/status"; }} < /dev/null 2>&1 | tee "$ctl/output"
sync
echo o > /proc/sysrq-trigger
sleep 5
poweroff -f
"""


def run_in_uml(
    command: str | Sequence[str],
    *,
    cwd: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 600.0,
    mem: str = "1024M",
    stream: TextIO | None = None,
    kernel: str | None = None,
    launcher: Sequence[str] = (),
    shim: bool | None = None,
) -> UmlResult:
    """Boot User-Mode Linux (``kernel``, default :func:`kernel_path`), run ``command`` (an argv
    list, or a shell command string) in ``cwd`` (default: the current directory; must not be
    under /tmp, which the guest replaces) with :func:`guest_env` (``env`` added), power off;
    see the module docstring. ``stream`` gets the guest's console lines as they come from the
    command's start on (its output, and any kernel message printed meanwhile). ``launcher``:
    an argv prefix the kernel runs under (it must exec the kernel in the same process, e.g. to
    enter a cgroup first: the forwarding bench accounts the guest's host CPU time so).
    ``shim``: preload the XSAVE shim (mobileip.tools.uml_kernel; default: when
    :func:`~mobileip.tools.uml_kernel.wants_shim` says so for this kernel)."""
    if kernel is None:
        reason = uml_available()
        if reason:
            raise RuntimeError(reason)
        kernel = kernel_path()
    assert kernel is not None
    workdir = Path(cwd or os.getcwd()).resolve()
    if workdir == Path("/tmp") or Path("/tmp") in workdir.parents:
        raise ValueError(f"{workdir}: the guest mounts its own /tmp, run from elsewhere")
    ctl = Path(tempfile.mkdtemp(prefix="mobileip-uml-"))
    try:
        script = ctl / "init"
        script.write_text(
            init_script(
                command, ctl=ctl, cwd=workdir, env=guest_env(env), modules=modules_root(kernel)
            )
        )
        script.chmod(0o755)
        (ctl / "uml").mkdir()
        argv = [
            *launcher,
            kernel,
            f"mem={mem}",
            "rootfstype=hostfs",
            "rw",
            "quiet",
            f"init={script}",
            f"uml_dir={ctl / 'uml'}",
            "umid=mobileip",
            "con=null",
            "con0=null,fd:1",
        ]
        return _boot(argv, ctl, timeout, stream, kernel_env(kernel, shim))
    finally:
        shutil.rmtree(ctl, ignore_errors=True)


def _boot(
    argv: list[str], ctl: Path, timeout: float, stream: TextIO | None, env: dict[str, str]
) -> UmlResult:
    started = time.monotonic()
    console: list[str] = []
    command_started: list[float] = []
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env=env,
    )

    def read() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode("utf-8", "replace").replace("\r", "")
            if not command_started and line.rstrip("\n") == START:
                command_started.append(time.monotonic())
            console.append(line)
            if stream is not None and command_started:
                stream.write(line)
                stream.flush()

    reader = threading.Thread(target=read, daemon=True, name="uml-console")
    reader.start()
    timed_out = False
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        reader.join(5)
    seconds = time.monotonic() - started
    output = _read(ctl / "output")
    status = _read(ctl / "status").strip()
    if timed_out:
        returncode = 124
        output += f"\n[mobileip.tools.uml: timed out after {timeout:.0f} s, UML killed]\n"
    elif re.fullmatch(r"\d+", status):
        returncode = int(status)
    else:
        returncode = 125
        output += "\n[mobileip.tools.uml: the command's exit status was not recorded]\n"
    return UmlResult(
        returncode=returncode,
        output=output,
        console="".join(console),
        boot_seconds=command_started[0] - started if command_started else None,
        seconds=seconds,
        timed_out=timed_out,
        missing_modules=tuple(_read(ctl / "modules-missing").split()),
        control=str(ctl),
    )


def _read(path: Path) -> str:
    try:
        return path.read_text("utf-8", "replace")
    except OSError:
        return ""


def boot_failure(kernel: str, shim: bool = False) -> str | None:
    """Boot ``kernel`` (the XSAVE shim preloaded when ``shim``) with ``true``; None when it ran,
    else what went wrong."""
    result = run_in_uml("true", cwd="/", timeout=120, kernel=kernel, shim=shim)
    name = f"{kernel} with the XSAVE shim" if shim else kernel
    if result.returncode == 0:
        return None
    if XSTATE_FAILURE in result.console:
        return f"{name}: {XSTATE_FAILURE} (this CPU's XSAVE area is too large for it)"
    return f"{name}: `true` exited {result.returncode}: {result.console[-400:]}"


def nat_kernel() -> str | None:
    """A kernel with iptables' nat table (``MASQUERADE``) for the tests marked ``iptables_nat``:
    the tier's own when it has it, else Debian's when ensure_kernel saw it boot here (as it is,
    or with the XSAVE shim, which :func:`run_in_uml` then preloads); None when neither."""
    tier = kernel_path()
    debian = debian_kernel()
    for kernel in (tier, debian):
        if kernel is None:
            continue
        release = kernel_release(kernel)
        usable = kernel == tier or choice() == DEBIAN or wants_shim(kernel)
        if usable and release is not None and has_module(kernel, release, NAT_MODULE):
            return kernel
    return None


def _shim_for_debian(kernel: str) -> str | None:
    """Build the XSAVE shim and boot Debian's ``kernel`` with it; None when it ran (the marker
    is written), else what went wrong (the marker is removed)."""
    try:
        build_shim()
        failure = boot_failure(kernel, shim=True)
    except (OSError, RuntimeError, subprocess.CalledProcessError) as exc:
        failure = f"the XSAVE shim could not be built: {getattr(exc, 'stderr', None) or exc}"
    if failure is None:
        shim_marker().write_text(kernel + "\n")
    else:
        shim_marker().unlink(missing_ok=True)
    return failure


def ensure_kernel() -> str:
    """Make sure a UML kernel that runs here is in place and record which
    (mobileip.tools.uml_kernel): Debian's when it boots as it is; else the newer one fetched for
    the tier, and Debian's with the XSAVE shim for the ``iptables_nat`` tests (the only kernel
    here with MASQUERADE). What was done, in one line. ``MOBILEIP_UML_KERNEL`` set: only check
    that one."""
    override = os.environ.get("MOBILEIP_UML_KERNEL")
    if override:
        failure = boot_failure(override, wants_shim(override))
        if failure:
            raise RuntimeError(failure)
        return f"{override} ({kernel_release(override)}) boots here (MOBILEIP_UML_KERNEL)"
    kernel = debian_kernel()
    if kernel is None:
        return "no User-Mode Linux kernel installed: nothing to check"
    failure = boot_failure(kernel)
    if failure is None:
        shim_marker().unlink(missing_ok=True)
        record_choice(DEBIAN)
        return f"{kernel} ({kernel_release(kernel)}) boots here"
    if XSTATE_FAILURE not in failure:
        raise RuntimeError(failure)
    newer = fallback_kernel()
    if not newer.exists() or boot_failure(str(newer)) is not None:
        try:
            newer = fetch_newer()  # replaces FALLBACK_ROOT: before the shim goes in
            again = boot_failure(str(newer))
        except (OSError, RuntimeError, subprocess.CalledProcessError) as exc:
            again = f"the newer kernel could not be fetched: {exc}"
        if again is not None:
            shimmed = _shim_for_debian(kernel)
            if shimmed is not None:
                raise RuntimeError(f"{failure}; {again}; {shimmed}")
            record_choice(DEBIAN)
            return f"{failure}; {again}; Debian's boots with the XSAVE shim: using it for all"
    record_choice(FETCHED)
    shimmed = _shim_for_debian(kernel)
    nat = "its MASQUERADE tests on Debian's with the XSAVE shim" if shimmed is None else shimmed
    name, suite = KERNEL_PACKAGE
    return (
        f"{failure}; the tier on {newer} ({kernel_release(str(newer))}, Debian {suite}'s "
        f"{name}), {nat}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mobileip.tools.uml",
        description="Run a command inside User-Mode Linux (host filesystem as root; see the "
        "module docstring). One argument after -- is a shell command, several are an argv.",
    )
    parser.add_argument("--cwd", default=None, help="directory to run in (default: here)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds (default 600)")
    parser.add_argument("--mem", default="1024M", help="guest memory (default 1024M)")
    parser.add_argument("--check", action="store_true", help="only say whether UML can run")
    parser.add_argument(
        "--ensure-kernel",
        action="store_true",
        help="boot the kernel once; fetch a newer one if it cannot run on this CPU",
    )
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD [ARG...]")
    args = parser.parse_args(argv)
    if args.ensure_kernel:
        try:
            print(ensure_kernel())
        except (OSError, RuntimeError, subprocess.CalledProcessError) as exc:
            print(f"mobileip.tools.uml: {exc}", file=sys.stderr)
            return 1
        kernel_release.cache_clear()
        return 0
    reason = uml_available()
    if args.check:
        print(reason or f"User-Mode Linux {kernel_release()} can run here")
        return 1 if reason else 0
    command = list(args.command)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        parser.error("no command (python -m mobileip.tools.uml -- CMD...)")
    if reason:
        print(f"cannot run User-Mode Linux: {reason}", file=sys.stderr)
        return 125
    try:
        result = run_in_uml(
            command[0] if len(command) == 1 else command,
            cwd=args.cwd,
            timeout=args.timeout,
            mem=args.mem,
            stream=sys.stdout,
        )
    except ValueError as exc:
        print(f"cannot run: {exc}", file=sys.stderr)
        return 125
    boot = f"{result.boot_seconds:.1f} s" if result.boot_seconds is not None else "-"
    notes = [f"exit {result.returncode}", f"boot {boot}", f"total {result.seconds:.1f} s"]
    if result.timed_out:
        notes.append("TIMED OUT")
    if result.missing_modules:
        notes.append(f"modules missing: {' '.join(result.missing_modules)}")
    print(f"[uml: {', '.join(notes)}]", file=sys.stderr)
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
