"""Choosing the User-Mode Linux kernel (mobileip.tools.uml_kernel): override, fallback, index."""

from __future__ import annotations

import lzma
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
