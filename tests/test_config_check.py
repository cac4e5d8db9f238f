"""``mobileip config check`` on a table of broken configurations (issue 6): each prints the
file, the line, the key and the problem, and exits 2; the examples all pass."""

from __future__ import annotations

from pathlib import Path

import pytest

from mobileip.cli import main

ROOT = Path(__file__).resolve().parents[1]

GOOD = """\
[homeagent]
address = "10.1.0.1"
port = 434

[[security_association]]
spi = 256
key = "00112233445566778899aabbccddeeff"
home_addresses = ["10.1.0.0/24"]

[redundancy]
node_id = "10.1.0.11"
listen = "10.1.0.11"
peers = ["10.1.0.12", "10.1.0.13:4342"]
spi = 1000
key = "abcdef0123456789"
mode = "async"

[vrrp]
driver = "static"
role = "active"
"""

# (text to replace, replacement, dotted key, what the message must say)
BROKEN = [
    ("port = 434", "port = 70000", "homeagent.port", "out of range"),
    ('address = "10.1.0.1"', 'address = "ten"', "homeagent.address", "not an IPv4 address"),
    ('key = "0011', 'key = "xx11', "security_association[0].key", "not valid hex"),
    ("spi = 256", "spi = 12", "security_association[0].spi", "out of range"),
    ('mode = "async"', 'mode = "sync"', "redundancy.mode", "not one of"),
    ('"10.1.0.13:4342"', '"10.1.0.13:99999"', "redundancy.peers", ""),
    ("spi = 1000", "spi = 1000\nretransmit_interval = -1", "redundancy.retransmit_interval", ""),
    ('role = "active"', 'role = "boss"', "vrrp.role", "not one of"),
    ('driver = "static"', 'driver = "hsrp"', "vrrp.driver", "not one of"),
    ("spi = 1000", "spi = 1000\nfavourite = 1", "redundancy.favourite", "unknown key"),
]


def check(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    status = main(["config", "check", str(path)])
    out = capsys.readouterr()
    return status, out.out, out.err


@pytest.mark.parametrize(("old", "new", "key", "what"), BROKEN, ids=[b[2] for b in BROKEN])
def test_broken_config_names_file_line_key_and_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], old: str, new: str, key: str, what: str
) -> None:
    assert old in GOOD
    text = GOOD.replace(old, new, 1)
    path = tmp_path / "broken.toml"
    path.write_text(text)
    status, out, err = check(path, capsys)
    assert status == 2, (out, err)
    assert str(path) in err and f": {key}" in err and "line " in err, err
    line = int(err.split("line ", 1)[1].split(":", 1)[0])
    leaf = key.split(".")[-1]
    assert text.splitlines()[line - 1].startswith(leaf), (line, err)  # the line of the key
    assert what in err, err


def test_good_config_and_every_example_pass(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "good.toml"
    path.write_text(GOOD)
    assert check(path, capsys)[0] == 0
    examples = [
        p
        for p in (ROOT / "examples").glob("*.toml")
        if p.name.startswith(("homeagent", "two-groups"))
    ]
    assert examples
    for example in examples:
        status, _out, err = check(example, capsys)
        assert status == 0, (example, err)
