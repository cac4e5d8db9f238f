"""Run one fuzz target under atheris (libFuzzer, coverage-guided).

    python fuzz/run.py TARGET [--seconds N | --runs N] [--corpus DIR] [--artifacts DIR]

The corpus directory starts with the target's seeds (fuzz/seeds.py) and keeps what libFuzzer
adds; crashing inputs are written to ``--artifacts`` (``crash-<sha1>``). Exit status: 0 when no
crash was found, 1 otherwise (libFuzzer's own status is passed through).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("target")
    limit = parser.add_mutually_exclusive_group()
    limit.add_argument("--seconds", type=int, default=None)
    limit.add_argument("--runs", type=int, default=None)
    parser.add_argument("--corpus", default=None, help="default: /tmp/mobileip-fuzz/TARGET")
    parser.add_argument("--artifacts", default=str(HERE / "crashes"))
    parser.add_argument("--max-len", type=int, default=2048)
    args = parser.parse_args()

    try:
        import atheris
    except ImportError:
        print("fuzz/run.py: needs atheris (pip install 'mobileip[fuzz]')", file=sys.stderr)
        return 2

    with atheris.instrument_imports(include=["mobileip", "targets"]):
        import targets
    import seeds

    if args.target not in targets.TARGETS:
        parser.error(f"unknown target {args.target!r}; one of {', '.join(targets.TARGETS)}")
    corpus = Path(args.corpus or f"/tmp/mobileip-fuzz/{args.target}")
    corpus.mkdir(parents=True, exist_ok=True)
    for seed in seeds.SEEDS[args.target]():
        (corpus / f"seed-{hashlib.sha1(seed).hexdigest()[:16]}").write_bytes(seed)
    artifacts = Path(args.artifacts)
    artifacts.mkdir(parents=True, exist_ok=True)

    flags = [
        sys.argv[0],
        str(corpus),
        f"-artifact_prefix={artifacts}/{args.target}-",
        f"-max_len={args.max_len}",
        "-print_final_stats=1",
    ]
    if args.runs is not None:
        flags.append(f"-runs={args.runs}")
    else:
        flags.append(f"-max_total_time={args.seconds or 60}")
    atheris.Setup(flags, targets.TARGETS[args.target])
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    sys.exit(main())
