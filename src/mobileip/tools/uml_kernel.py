"""Which User-Mode Linux kernel the tier boots, and a newer one where Debian 12's cannot run.

Debian 12's ``user-mode-linux`` (Linux 6.1) cannot run a single user-space program on a host
whose CPU has AMX (and a large XSAVE area): its init dies at once with ``userspace - ptrace set
fp regs failed, errno = 14`` and a kernel panic, because that UML hands the host's
``PTRACE_SETREGSET`` an XSAVE buffer of the wrong size (the host kernel wants exactly its own
maximum size and answers EFAULT otherwise). Trixie's 6.12 fails the same way; Debian
unstable's 7.2 runs. Machines of the same kind here differ in CPU, so the tier must work on
both.

:func:`mobileip.tools.uml.ensure_kernel` (``python -m mobileip.tools.uml --ensure-kernel``, run
by scripts/test as root) boots the installed kernel once with ``true``. If it boots, nothing
changes. If it dies with that signature, the newer kernel is fetched from the Debian mirror
(``user-mode-linux`` from unstable, with trixie's ``libc6`` beside it since the binary needs
glibc 2.38 and Debian 12 has 2.36), unpacked into :data:`FALLBACK_ROOT` and pointed at that libc
with ``patchelf``. :func:`kernel_path` then prefers it; its modules are in
``FALLBACK_ROOT/usr/lib/uml/modules/<release>`` (:func:`modules_root`). Nothing is installed
into the system's own paths. ``MOBILEIP_UML_KERNEL`` names a kernel to use instead of both.
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


def fallback_kernel() -> Path:
    return FALLBACK_ROOT / "usr" / "bin" / KERNEL


def kernel_path() -> str | None:
    """The UML kernel to boot: ``MOBILEIP_UML_KERNEL``, else the fetched newer kernel when
    :func:`~mobileip.tools.uml.ensure_kernel` installed one, else Debian's ``linux.uml``."""
    override = os.environ.get("MOBILEIP_UML_KERNEL")
    if override:
        return override
    if fallback_kernel().exists():
        return str(fallback_kernel())
    return shutil.which(KERNEL) or shutil.which(KERNEL, path=SBIN_PATH)


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
