"""The userspace backend before and after a change, interleaved in one session (issue 14 item 4).

Needs root and a C compiler (as ``mobileip bench --only forwarding``)::

    .venv/bin/python scripts/perf/userspace_ab.py host --old-rev REV \
        [--new FILE] [--rounds 5] [--duration 1.5] [--sizes 64,1400] [--only new,old]

``--old-rev REV`` takes the old module from commit ``REV`` (``git show``; ``--old FILE`` from a
file). The old module runs with the working tree's other modules (mobileip.net.mmsg too).

The forwarding bench's topology, C sender and helper (src/mobileip/tools/forwarding_bench.py),
on this machine's kernel. Each run starts a helper process in ``ha`` running either the old
module (loaded from ``--old``) or the working tree's, switches its rule on, measures with the
bench's :func:`~mobileip.tools.forwarding_bench.measure` (delivered packets/s at the far side,
the helper's CPU per delivered packet), then stops it: only one backend's raw sockets exist at a
time (a second one would receive a copy of every reverse-tunnelled packet). Per round and size:
the ceiling, old and new, forward and reverse (IP-in-IP from the care-of address), the order
rotated from round to round. Prints medians and the per-round ratios new / old.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import tempfile
from pathlib import Path

from mobileip.tools import forwarding_bench as fb

VARIANTS = ("ceiling", "old", "new", "ceiling-rev", "old-rev", "new-rev")


def helper(old: str, bindings: int, tag: str) -> int:
    """Inside ha: the bench's helper, with the old module's class patched in when asked."""
    if old:
        import mobileip.dataplane.userspace as current

        spec = importlib.util.spec_from_file_location("mobileip_old_userspace", old)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        current.UserspaceBackend = module.UserspaceBackend  # type: ignore[misc]
    fb._run_loop(fb._helper("userspace", bindings, fb.TABLES["userspace"][0], tag))
    return 0


class Helper(fb.BackendHelper):
    def __init__(self, topo: fb.Topology, old: str, bindings: int) -> None:
        import subprocess

        self.kind = "userspace"
        argv = topo.exec("ha", [sys.executable, str(Path(__file__).resolve()), "helper",
                                "--old", old, "--bindings", str(bindings),
                                "--tag", topo.tag])  # fmt: skip
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise RuntimeError(f"helper failed: {err[-800:]}")
        self.install = json.loads(line)


def host(args: argparse.Namespace) -> int:
    sizes = [int(s) for s in args.sizes.split(",")]
    chosen = [v for v in VARIANTS if not args.only or v in args.only.split(",")]
    runs: dict[str, list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="mobileip-usab-", dir="/var/tmp") as tmp:
        sender = fb.build_sender(Path(tmp))
        with fb.Topology() as topo:
            order = [(size, v) for size in sizes for v in chosen]
            for rnd in range(args.rounds):
                shift = rnd * len(order) // max(1, args.rounds)
                for size, v in order[shift:] + order[:shift]:
                    fp = fb.BY_NAME["ceiling-rev" if v.endswith("-rev") else "ceiling"]
                    h = None
                    if not v.startswith("ceiling"):
                        fp = fb.BY_NAME["userspace-rev" if v.endswith("-rev") else "userspace"]
                        h = Helper(
                            topo, args.old if v.startswith("old") else args.new, args.bindings
                        )
                        topo.rule("userspace", True)
                    try:
                        got = fb.measure(topo, sender, size, args.duration, 1, args.rate,
                                         h.proc.pid if h else None, fp)  # fmt: skip
                    finally:
                        if h is not None:
                            topo.rule("userspace", False)
                            counters = h.stop().get("counters", {})
                    runs.setdefault(f"{v}@{size}", []).append((got[0], got[2]))
                    extra = f" {got[2]:.2f} us/packet {counters}" if h else ""
                    print(f"round {rnd + 1} {v:<12} {size:>5} B: {got[0]:>10,.0f}/s "
                          f"(offered {got[1]:,.0f}){extra}", flush=True)  # fmt: skip
    print(f"{'variant':<12} {'bytes':>5} {'median/s':>10} {'us/packet':>9}  new/old per round")
    for size in sizes:
        for v in chosen:
            r = runs.get(f"{v}@{size}", [])
            if not r:
                continue
            cpu = [c for _, c in r if c == c]
            ratio = ""
            if v.startswith("new"):
                o = runs.get(f"{v.replace('new', 'old')}@{size}", [])
                rs = [a[0] / b[0] for a, b in zip(r, o, strict=False) if b[0]]
                if rs:
                    ratio = f"{statistics.median(rs):.2f} [{min(rs):.2f}-{max(rs):.2f}]"
            print(f"{v:<12} {size:>5} {statistics.median(x for x, _ in r):>10,.0f} "
                  f"{statistics.median(cpu) if cpu else 0:>9.2f}  {ratio}  "
                  f"runs: {', '.join(f'{x:,.0f}' for x, _ in r)}")  # fmt: skip
    print(json.dumps(runs))
    return 0


def host_against(args: argparse.Namespace) -> int:
    """:func:`host` with the old module taken from commit ``args.old_rev``."""
    import subprocess

    root = Path(__file__).resolve().parents[2]
    text = subprocess.run(
        ["git", "-C", str(root), "show", f"{args.old_rev}:src/mobileip/dataplane/userspace.py"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    with tempfile.NamedTemporaryFile("w", suffix=".py", dir="/var/tmp", prefix="usab-old-") as f:
        f.write(text)
        f.flush()
        args.old = f.name
        print(f"old: {args.old_rev} ({f.name}); new: {args.new or 'the working tree'}")
        return host(args)


def main() -> int:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd")
    h = sub.add_parser("helper")
    h.add_argument("--old", default="")
    h.add_argument("--bindings", type=int, default=1000)
    h.add_argument("--tag", default="mfb")
    r = sub.add_parser("host")
    r.add_argument("--old", default="", help="the old module's file")
    r.add_argument("--old-rev", default="", help="or the commit to take it from")
    r.add_argument("--new", default="", help="a module file (default: the working tree's)")
    r.add_argument("--rounds", type=int, default=5)
    r.add_argument("--duration", type=float, default=1.5)
    r.add_argument("--sizes", default="64,1400")
    r.add_argument("--bindings", type=int, default=1000)
    r.add_argument("--rate", type=float, default=0.0)
    r.add_argument("--only", default="", help="variants, comma-separated (default: all)")
    args = p.parse_args(sys.argv[1:])
    if args.cmd == "helper":
        return helper(args.old, args.bindings, args.tag)
    if args.cmd == "host":
        if args.old_rev:
            return host_against(args)
        if not args.old:
            p.error("--old FILE or --old-rev REV")
        return host(args)
    p.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
