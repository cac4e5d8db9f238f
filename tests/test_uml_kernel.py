"""Choosing the User-Mode Linux kernel (mobileip.tools.uml_kernel): override, recorded choice,
fallback, index; the XSAVE shim on this host's own ptrace."""

from __future__ import annotations

import errno
import lzma
import platform
import shutil
import subprocess
from pathlib import Path

import pytest

from mobileip.tools import uml_kernel


def test_override_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MOBILEIP_UML_KERNEL", "/opt/k/bin/linux.uml")
    assert uml_kernel.kernel_path() == "/opt/k/bin/linux.uml"


def test_fetched_kernel_preferred_over_debian(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("MOBILEIP_UML_KERNEL", raising=False)
    monkeypatch.setattr(uml_kernel, "FALLBACK_ROOT", tmp_path)
    assert uml_kernel.kernel_path() != str(uml_kernel.fallback_kernel())
    uml_kernel.fallback_kernel().parent.mkdir(parents=True)
    uml_kernel.fallback_kernel().write_text("")
    assert uml_kernel.kernel_path() == str(tmp_path / "usr" / "bin" / "linux.uml")


def test_modules_beside_the_kernel(tmp_path: Path) -> None:
    assert uml_kernel.modules_root("/usr/bin/linux.uml") == Path("/usr/lib/uml/modules")
    kernel = tmp_path / "usr" / "bin" / "linux.uml"
    assert uml_kernel.modules_root(str(kernel)) == tmp_path / "usr" / "lib" / "uml" / "modules"


def test_package_path_from_the_index(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    index = (
        "Package: user-mode-linux-doc\nVersion: 1\nFilename: pool/doc.deb\n\n"
        "Package: user-mode-linux\nVersion: 7.2um1\n"
        "Filename: pool/main/u/user-mode-linux/user-mode-linux_7.2um1_amd64.deb\n\n"
    )
    folder = tmp_path / "dists" / "sid" / "main" / "binary-amd64"
    folder.mkdir(parents=True)
    (folder / "Packages.xz").write_bytes(lzma.compress(index.encode()))
    monkeypatch.setattr(uml_kernel, "MIRROR", tmp_path.as_uri())
    got = uml_kernel._package_path("user-mode-linux", "sid")
    assert got == "pool/main/u/user-mode-linux/user-mode-linux_7.2um1_amd64.deb"
    with pytest.raises(RuntimeError, match="libc6 not in"):
        uml_kernel._package_path("libc6", "sid")


def test_choice_picks_the_kernel(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """ensure_kernel's recorded choice decides between Debian's kernel and the fetched one (also
    when the fetched one is still on disk); the shim goes only with Debian's, when its marker
    says Debian's needs it, or when MOBILEIP_UML_SHIM forces it."""
    monkeypatch.delenv("MOBILEIP_UML_KERNEL", raising=False)
    monkeypatch.delenv("MOBILEIP_UML_SHIM", raising=False)
    monkeypatch.setattr(uml_kernel, "FALLBACK_ROOT", tmp_path)
    debian = tmp_path / "debian" / "linux.uml"
    monkeypatch.setattr(uml_kernel, "debian_kernel", lambda: str(debian))
    uml_kernel.fallback_kernel().parent.mkdir(parents=True)
    uml_kernel.fallback_kernel().write_text("")
    fetched = str(uml_kernel.fallback_kernel())
    assert uml_kernel.choice() is None and uml_kernel.kernel_path() == fetched
    uml_kernel.record_choice(uml_kernel.DEBIAN)
    assert uml_kernel.choice() == "debian" and uml_kernel.kernel_path() == str(debian)
    uml_kernel.record_choice(uml_kernel.FETCHED)
    assert uml_kernel.choice() == "fetched" and uml_kernel.kernel_path() == fetched
    assert not uml_kernel.wants_shim(str(debian)) and not uml_kernel.wants_shim(fetched)
    uml_kernel.shim_marker().parent.mkdir(parents=True)
    uml_kernel.shim_marker().write_text(f"{debian}\n")
    assert uml_kernel.wants_shim(str(debian)) and not uml_kernel.wants_shim(fetched)
    monkeypatch.setenv("MOBILEIP_UML_SHIM", "0")
    assert not uml_kernel.wants_shim(str(debian))
    assert "LD_PRELOAD" not in uml_kernel.kernel_env(str(debian))
    monkeypatch.setenv("MOBILEIP_UML_SHIM", "1")
    assert uml_kernel.wants_shim(fetched)
    uml_kernel.choice_file().write_text("something else\n")
    assert uml_kernel.choice() is None


def test_has_module_reads_modules_dep(tmp_path: Path) -> None:
    kernel = tmp_path / "usr" / "bin" / "linux.uml"
    dep = tmp_path / "usr" / "lib" / "uml" / "modules" / "6.1.176" / "modules.dep"
    dep.parent.mkdir(parents=True)
    dep.write_text("kernel/net/ipv4/netfilter/iptable_nat.ko: kernel/net/netfilter/nf_nat.ko\n")
    assert uml_kernel.has_module(str(kernel), "6.1.176", "iptable_nat")
    assert not uml_kernel.has_module(str(kernel), "6.1.176", "nft_chain_nat")
    assert not uml_kernel.has_module(str(kernel), "7.2.7", "iptable_nat")


# Traces a stopped child and writes its XSAVE state with a buffer of argv[1] bytes, as Debian
# 12's UML does: prints what the host answered, whether the bytes written arrived, whether the
# state past them stayed, and how PTRACE_PEEKDATA reports a word of -1 and a bad address.
PROBE = r"""
#define _GNU_SOURCE
#include <elf.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

static long minus_one = -1;
static char before[65536], part[65536], after[65536];

int main(int argc, char **argv) {
    size_t len = strtoul(argv[1], NULL, 0);
    pid_t child = fork();
    if (child == 0) {
        ptrace(PTRACE_TRACEME, 0, NULL, NULL);
        raise(SIGSTOP);
        _exit(0);
    }
    int status;
    waitpid(child, &status, 0);
    struct iovec full = {before, sizeof before};
    if (ptrace(PTRACE_GETREGSET, child, (void *)NT_X86_XSTATE, &full))
        return perror("get"), 2;
    printf("host_size=%zu\n", full.iov_len);
    memcpy(part, before, len);
    part[160] ^= 0x5a; /* a byte of XMM0 */
    struct iovec iov = {part, len};
    long r = ptrace(PTRACE_SETREGSET, child, (void *)NT_X86_XSTATE, &iov);
    printf("set_short=%ld\nset_errno=%d\n", r, r ? errno : 0);
    struct iovec again = {after, sizeof after};
    ptrace(PTRACE_GETREGSET, child, (void *)NT_X86_XSTATE, &again);
    printf("written=%d\n", after[160] == part[160]);
    printf("tail_kept=%d\n", !memcmp(after + len, before + len, full.iov_len - len));
    errno = 42;
    long word = ptrace(PTRACE_PEEKDATA, child, &minus_one, NULL);
    printf("peek=%ld\npeek_errno=%d\n", word, errno);
    word = ptrace(PTRACE_PEEKDATA, child, (void *)8, NULL);
    printf("peek_bad=%ld\npeek_bad_errno=%d\n", word, errno);
    kill(child, SIGKILL);
    return 0;
}
"""


@pytest.mark.skipif(
    platform.machine() != "x86_64" or shutil.which("gcc") is None,
    reason="the XSAVE shim is x86_64 code built with gcc (scripts/test installs gcc as root)",
)
def test_xstate_shim_widens_a_short_xsave_write(tmp_path: Path) -> None:
    """The shim, on this host's own ptrace: a write of the XSAVE state with a buffer shorter than
    the host's (576 bytes: the legacy area and the header) fails with EFAULT without it and
    succeeds with it; UML's bytes arrive, the state past them stays; PEEKDATA keeps glibc's
    conventions (a word of -1 with errno 0, a bad address -1 with EIO)."""
    shim = uml_kernel.build_shim(tmp_path / "shim.so")
    probe = tmp_path / "probe"
    (tmp_path / "probe.c").write_text(PROBE)
    subprocess.run(["gcc", "-O2", "-o", str(probe), str(tmp_path / "probe.c")], check=True)

    def run(env: dict[str, str]) -> dict[str, str]:
        out = subprocess.run(
            [str(probe), "576"], env=env, capture_output=True, text=True, timeout=30, check=True
        ).stdout
        return dict(line.split("=", 1) for line in out.splitlines())

    plain = run({})
    if int(plain["host_size"]) <= 576:
        pytest.skip(f"this CPU's XSAVE area is {plain['host_size']} bytes: nothing to widen")
    assert plain["set_short"] == "-1" and plain["set_errno"] == str(errno.EFAULT), plain
    shimmed = run({"LD_PRELOAD": str(shim)})
    assert shimmed["set_short"] == "0", shimmed
    assert shimmed["written"] == "1" and shimmed["tail_kept"] == "1", shimmed
    assert (shimmed["peek"], shimmed["peek_errno"]) == ("-1", "0"), shimmed
    assert (shimmed["peek_bad"], shimmed["peek_bad_errno"]) == ("-1", str(errno.EIO)), shimmed


def test_nat_kernel_is_debians_when_the_tier_kernel_lacks_iptable_nat(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The iptables_nat tests get the tier's kernel when it has iptable_nat; else Debian's, only
    when ensure_kernel saw it boot here (the shim marker); else none (the tier then fails)."""
    from mobileip.tools import uml

    monkeypatch.delenv("MOBILEIP_UML_KERNEL", raising=False)
    monkeypatch.delenv("MOBILEIP_UML_SHIM", raising=False)
    monkeypatch.setattr(uml_kernel, "FALLBACK_ROOT", tmp_path / "cache")
    debian = tmp_path / "usr" / "bin" / "linux.uml"
    monkeypatch.setattr(uml_kernel, "debian_kernel", lambda: str(debian))
    monkeypatch.setattr(uml, "debian_kernel", lambda: str(debian))
    monkeypatch.setattr(uml, "kernel_release", lambda kernel=None: "6.1.176")
    for kernel, modules in [(debian, "iptable_nat.ko"), (uml_kernel.fallback_kernel(), "x.ko")]:
        kernel.parent.mkdir(parents=True, exist_ok=True)
        kernel.write_text("")
        dep = uml_kernel.modules_root(str(kernel)) / "6.1.176" / "modules.dep"
        dep.parent.mkdir(parents=True)
        dep.write_text(f"kernel/{modules}:\n")
    uml_kernel.record_choice(uml_kernel.FETCHED)
    assert uml.kernel_path() == str(uml_kernel.fallback_kernel())
    assert uml.nat_kernel() is None  # Debian's not seen booting here
    uml_kernel.shim_marker().parent.mkdir(parents=True)
    uml_kernel.shim_marker().write_text(f"{debian}\n")
    assert uml.nat_kernel() == str(debian)
    uml_kernel.record_choice(uml_kernel.DEBIAN)
    uml_kernel.shim_marker().unlink()
    assert uml.kernel_path() == uml.nat_kernel() == str(debian)  # one boot for everything
