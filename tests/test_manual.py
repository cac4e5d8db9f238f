"""``mobileip --help`` is a complete manual page and ``mobileip completion bash`` completes
every command and option (issue 6: CLI completeness)."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from mobileip.cli import build_parser, main
from mobileip.manual import _commands


def leaf_commands() -> list[str]:
    out = []

    def walk(prefix: list[str], parser: object) -> None:
        subs = _commands(parser)  # type: ignore[arg-type]
        if not subs:
            out.append(" ".join(prefix))
        for name, sub in subs.items():
            walk([*prefix, name], sub)

    walk([], build_parser())
    return out


def test_help_is_a_manual_naming_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "COMMANDS", "EXIT STATUS", "SEE ALSO"):
        assert f"\n{section}\n" in f"\n{text}", section
    leaves = leaf_commands()
    assert "show redundancy" in leaves and "clear binding" in leaves and "config check" in leaves
    for leaf in leaves:
        assert f"    mobileip {leaf} " in text, leaf
    for name in _commands(build_parser()):
        assert f"\n    {name} " in text, name


def _complete(script: str, words: list[str]) -> list[str]:
    line = " ".join(f"'{w}'" for w in words)
    probe = (
        f"{script}\nCOMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; _mobileip; "
        'printf "%s\\n" "${COMPREPLY[@]}"'
    )
    result = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, check=True)
    return result.stdout.split()


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_completion_completes_commands_subcommands_and_options() -> None:
    script = subprocess.run(
        [sys.executable, "-m", "mobileip", "completion", "bash"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    subprocess.run(["bash", "-n"], input=script, text=True, check=True)
    assert _complete(script, ["mobileip", "sh"]) == ["show"]
    assert set(_complete(script, ["mobileip", "show", ""])) >= {"bindings", "redundancy", "vrrp"}
    assert "--json" in _complete(script, ["mobileip", "show", "redundancy", "--j"])
    assert "--care-of-address" in _complete(
        script, ["mobileip", "register", "--ha", "127.0.0.1", "--ca"]
    )
    assert _complete(script, ["mobileip", "lab", "--ke"]) == ["--keep"]
