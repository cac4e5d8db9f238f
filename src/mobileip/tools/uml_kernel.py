"""Which User-Mode Linux kernel the tier boots: Debian 12's where it runs as it is; else a newer
one fetched from Debian unstable, with Debian 12's under an XSAVE shim for the MASQUERADE tests.

Debian 12's ``user-mode-linux`` (Linux 6.1) cannot run a single user-space program on a host
whose CPU has AMX (and a large XSAVE area): its init dies at once with ``userspace - ptrace set
fp regs failed, errno = 14`` and a kernel panic, because that UML hands the host's
``PTRACE_SETREGSET NT_X86_XSTATE`` an XSAVE buffer smaller than the host kernel's XSAVE size (the
host wants exactly its own size and answers EFAULT otherwise). Trixie's 6.12 fails the same way;
Debian unstable's 7.2 runs. Machines of the same kind here differ in CPU, so the tier must work
on both.

The fix without another kernel is ``uml_xstate_shim.c`` (package data beside this module): an
``LD_PRELOAD`` library whose ``ptrace()`` widens that one call (it reads the tracee's whole XSAVE
state into a buffer of the host's size, lays UML's bytes over its start and writes the whole
buffer back) and passes everything else to the system call unchanged. 6.1 is the kernel issue 16
names, and the only one here with iptables' nat table (``iptable_nat``, ``MASQUERADE``): 7.2 is
built without ``IP_NF_NAT`` and without ``NF_TABLES_IPV4``.

:func:`mobileip.tools.uml.ensure_kernel` (``python -m mobileip.tools.uml --ensure-kernel``, run
by scripts/test as root) decides once per machine and records it (:func:`choice_file`,
:func:`shim_marker`):

1. Debian's ``linux.uml`` boots ``true`` as it is: the tier runs on it (``debian``), all of it.
2. It dies with that signature: the tier runs on the newer kernel (``fetched``: Debian
   unstable's ``user-mode-linux`` with trixie's ``libc6`` beside it, since the binary needs
   glibc 2.38 and Debian 12 has 2.36, fetched from the Debian mirror, unpacked into
   :data:`FALLBACK_ROOT`, pointed at that libc with ``patchelf``; its modules in
   ``FALLBACK_ROOT/usr/lib/uml/modules/<release>``), and the shim is compiled with ``gcc`` into
   :func:`shim_path` and Debian's kernel booted with it; if that runs, :func:`shim_marker` says
   so and the tests marked ``iptables_nat`` get Debian's kernel with the shim in a boot of their
   own (``mobileip.tools.uml.nat_kernel``). If the fetch fails but the shim works, everything
   runs on Debian's kernel with the shim.

Why the tier does not run on 6.1 with the shim throughout (measured, docs/testing.md): it is
slower there, and under load a timing-sensitive row of the forwarding bench failed on it (19 of
20 passed; on a quiet machine all 20); 7.2 has no MASQUERADE, so the NAT tests need 6.1.

:func:`kernel_path` follows the choice and :func:`kernel_env` gives the environment to start a
kernel with (``LD_PRELOAD`` of the shim when :func:`wants_shim`). Nothing is installed into the
system's own paths. ``MOBILEIP_UML_KERNEL`` names a kernel to use instead (e.g.
``/usr/bin/linux.uml``); ``MOBILEIP_UML_SHIM=1`` preloads the shim into whatever kernel boots
(built on first use), ``MOBILEIP_UML_SHIM=0`` never.
"""

from __future__ import annotations

import lzma
import os
import shutil
import subprocess
import tempfile
import urllib.request
from pathlib import Path

KERNEL = "linux.uml"
SBIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
FALLBACK_ROOT = Path(os.environ.get("MOBILEIP_UML_ROOT", "/var/cache/mobileip/uml"))
MIRROR = os.environ.get("MOBILEIP_DEBIAN_MIRROR", "http://deb.debian.org/debian")
# (package, suite) of the newer kernel and of the C library it needs
KERNEL_PACKAGE = ("user-mode-linux", "sid")
LIBC_PACKAGE = ("libc6", "trixie")
XSTATE_FAILURE = "ptrace set fp regs failed"


SHIM_SOURCE = Path(__file__).with_name("uml_xstate_shim.c")
# the tier's kernel as ensure_kernel chose it (the words in choice_file)
DEBIAN, FETCHED = "debian", "fetched"
NAT_MODULE = "iptable_nat"  # iptables' nat table: MASQUERADE (tests marked iptables_nat)


def fallback_kernel() -> Path:
    return FALLBACK_ROOT / "usr" / "bin" / KERNEL


def debian_kernel() -> str | None:
    """Debian's own ``linux.uml`` (the ``user-mode-linux`` package), or None."""
    return shutil.which(KERNEL) or shutil.which(KERNEL, path=SBIN_PATH)


def shim_path() -> Path:
    return FALLBACK_ROOT / "xstate-shim" / "uml_xstate_shim.so"


def shim_marker() -> Path:
    """Present when Debian's kernel failed here as it is and booted with the shim."""
    return FALLBACK_ROOT / "xstate-shim" / "debian-needs-it"


def choice_file() -> Path:
    return FALLBACK_ROOT / "choice"


def choice() -> str | None:
    """The tier's kernel as ensure_kernel chose it (``debian``, ``fetched``), or None."""
    try:
        word = choice_file().read_text().strip()
    except OSError:
        return None
    return word if word in (DEBIAN, FETCHED) else None


def record_choice(word: str) -> None:
    FALLBACK_ROOT.mkdir(parents=True, exist_ok=True)
    choice_file().write_text(word + "\n")


def kernel_path() -> str | None:
    """The UML kernel to boot: ``MOBILEIP_UML_KERNEL``; else what ensure_kernel chose (Debian's
    for ``debian``, the fetched newer one for ``fetched``); with no choice recorded, the fetched
    kernel when present, else Debian's ``linux.uml``."""
    override = os.environ.get("MOBILEIP_UML_KERNEL")
    if override:
        return override
    if choice() == DEBIAN:
        return debian_kernel()
    if fallback_kernel().exists():
        return str(fallback_kernel())
    return debian_kernel()


def wants_shim(kernel: str) -> bool:
    """Whether ``kernel`` boots with the XSAVE shim preloaded: ``MOBILEIP_UML_SHIM`` (1/0) when
    set, else when ``kernel`` is Debian's and ensure_kernel found it needs the shim here."""
    forced = os.environ.get("MOBILEIP_UML_SHIM", "").strip()
    if forced:
        return forced not in ("0", "no", "false")
    debian = debian_kernel()
    return (
        shim_marker().exists()
        and debian is not None
        and Path(kernel).resolve() == Path(debian).resolve()
    )


def has_module(kernel: str, release: str, module: str) -> bool:
    """Whether ``kernel`` (of ``release``) has ``module`` among its modules."""
    try:
        dep = (modules_root(kernel) / release / "modules.dep").read_text()
    except OSError:
        return False
    return f"/{module}.ko" in dep


def build_shim(target: Path | None = None) -> Path:
    """Compile :data:`SHIM_SOURCE` with gcc into ``target`` (default :func:`shim_path`)."""
    target = target or shim_path()
    if shutil.which("gcc") is None:
        raise RuntimeError("gcc is needed to build the UML XSAVE shim (apt-get install gcc)")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    argv = ["gcc", "-shared", "-fPIC", "-O2", "-Wall", "-Werror", "-o", str(partial)]
    subprocess.run([*argv, str(SHIM_SOURCE)], check=True, capture_output=True, text=True)
    partial.rename(target)
    return target


def kernel_env(kernel: str, shim: bool | None = None) -> dict[str, str]:
    """The environment to start ``kernel`` with: this process's, plus ``LD_PRELOAD`` of the
    shim when ``shim`` (default: :func:`wants_shim`), built first if it is not there yet."""
    env = dict(os.environ)
    if wants_shim(kernel) if shim is None else shim:
        library = shim_path()
        if not library.exists():
            build_shim(library)
        env["LD_PRELOAD"] = " ".join(filter(None, [str(library), env.get("LD_PRELOAD", "")]))
    return env


def modules_root(kernel: str) -> Path:
    """Where that kernel's modules live: ``<prefix>/lib/uml/modules`` beside ``<prefix>/bin``."""
    return Path(kernel).resolve().parent.parent / "lib" / "uml" / "modules"


def _package_path(package: str, suite: str) -> str:
    """The pool path of ``package`` in ``suite``'s amd64 index on the mirror."""
    url = f"{MIRROR}/dists/{suite}/main/binary-amd64/Packages.xz"
    with urllib.request.urlopen(url, timeout=120) as response:
        index = lzma.decompress(response.read()).decode("utf-8", "replace")
    for stanza in index.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in stanza.splitlines() if ": " in line[:40])
        if fields.get("Package") == package and "Filename" in fields:
            return fields["Filename"]
    raise RuntimeError(f"{package} not in {url}")


def _unpack(package: str, suite: str, into: Path, work: Path) -> None:
    deb = work / f"{package}.deb"
    urllib.request.urlretrieve(f"{MIRROR}/{_package_path(package, suite)}", deb)
    subprocess.run(["dpkg-deb", "-x", str(deb), str(into)], check=True)


def fetch_newer(root: Path = FALLBACK_ROOT) -> Path:
    """Fetch and unpack the newer kernel and its C library into ``root``; its kernel path."""
    if shutil.which("patchelf") is None:
        raise RuntimeError("patchelf is needed to point the newer UML at its C library")
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="uml-", dir=root.parent))
    try:
        with tempfile.TemporaryDirectory() as work:
            _unpack(*KERNEL_PACKAGE, staging, Path(work))
            _unpack(*LIBC_PACKAGE, staging / "libc", Path(work))
        libdir = staging / "libc" / "usr" / "lib" / "x86_64-linux-gnu"
        kernel = staging / "usr" / "bin" / KERNEL
        final_libdir = root / "libc" / "usr" / "lib" / "x86_64-linux-gnu"
        subprocess.run(
            [
                "patchelf",
                "--set-interpreter",
                str(final_libdir / "ld-linux-x86-64.so.2"),
                "--set-rpath",
                str(final_libdir),
                str(kernel),
            ],
            check=True,
        )
        assert libdir.is_dir(), libdir
        if root.exists():
            shutil.rmtree(root)
        staging.rename(root)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return root / "usr" / "bin" / KERNEL
