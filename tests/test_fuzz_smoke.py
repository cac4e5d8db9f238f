"""A short run of every fuzz target (fuzz/targets.py): its seeds, then seeded random mutations of
them, in process; and, when atheris is installed, the coverage-guided runner for a few thousand
inputs. The long runs are scripts/fuzz (docs/robustness.md)."""

from __future__ import annotations

import importlib.util
import random
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "fuzz"))

import seeds  # noqa: E402
import targets  # noqa: E402

MUTATIONS = 1500


def _mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(5)
        if op == 0 and buf:  # flip a byte
            buf[rng.randrange(len(buf))] = rng.randrange(256)
        elif op == 1 and buf:  # truncate
            del buf[rng.randrange(len(buf)) :]
        elif op == 2:  # insert random bytes
            pos = rng.randrange(len(buf) + 1)
            buf[pos:pos] = rng.randbytes(rng.randint(1, 8))
        elif op == 3 and len(buf) > 1:  # drop a slice
            a = rng.randrange(len(buf))
            del buf[a : a + rng.randint(1, 16)]
        else:  # interesting integers
            if len(buf) >= 4:
                pos = rng.randrange(len(buf) - 3)
                buf[pos : pos + 4] = rng.choice([b"\0\0\0\0", b"\xff\xff\xff\xff", b"\0\0\0\x01"])
    return bytes(buf)


@pytest.mark.parametrize("name", sorted(targets.TARGETS))
def test_target_survives_seeds_and_mutations(name: str) -> None:
    target = targets.TARGETS[name]
    corpus = seeds.SEEDS[name]()
    assert corpus, "every target has seeds"
    for seed in corpus:
        target(seed)
    rng = random.Random(f"smoke-{name}")
    for _ in range(MUTATIONS):
        target(_mutate(rng, rng.choice(corpus)))
    for _ in range(200):
        target(rng.randbytes(rng.randrange(0, 200)))


def test_harness_notices_a_state_change() -> None:
    """The homeagent target's check fails when a rejected request changes the table."""
    core = targets._core("timestamp")
    before = targets._table_state(core.table)
    rec = next(core.table.records())
    core.table.discard(rec.home_address)
    assert targets._table_state(core.table) != before


@pytest.mark.skipif(importlib.util.find_spec("atheris") is None, reason="atheris not installed")
@pytest.mark.parametrize("name", ["registration", "homeagent", "syncengine"])
def test_atheris_runner(name: str, tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            *(sys.executable, str(ROOT / "fuzz" / "run.py"), name, "--runs", "3000"),
            *("--corpus", str(tmp_path / "corpus"), "--artifacts", str(tmp_path / "crashes")),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Done 3000 runs" in proc.stderr
    assert not list((tmp_path / "crashes").iterdir())
