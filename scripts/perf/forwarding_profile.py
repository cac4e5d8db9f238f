"""Where the kernel backend's extra cost per packet goes: variants of the forwarding bench's path,
measured inside User-Mode Linux with the bench's own instrument (host CPU of the UML kernel per
delivered packet, rounds interleaved, ratios taken round by round).

Needs root, a C compiler and UML (as ``mobileip bench --only forwarding``)::

    .venv/bin/python scripts/perf/forwarding_profile.py [--repeats 8] [--duration 1.0]

The topology, the sender, the kernel backend (10,000 bindings, T flag) are the bench's
(src/mobileip/tools/forwarding_bench.py). Variants, forward (src -> coa), each switched on for
its run and off after it:

* ``sender``: dropped at ha's ingress (the sender's cost, subtracted from every other row);
* ``ceiling``: plain forwarding (``HOA/32 via coa`` in main, no policy rule);
* ``rule-miss``: the ceiling plus one policy rule to an empty table (what any ``ip rule``
  costs: the kernel leaves its rule-less fast path);
* ``lwt-main``: the kernel backend's kind of route (``encap ip dst COA``, collect-metadata
  ipip device) in main, no rule;
* ``classic``: a classic point-to-point ipip device (``local HA remote COA``), the route in
  main, no rule: tunnelling without lightweight tunnel state;
* ``kernel`` / ``kernel-gre``: the kernel backend as deployed (its rule, its table).

Reverse (coa -> src, IP-in-IP from the care-of address): ``sender-rev-ipip``; ``ceiling-rev``
with ``sender-rev`` (plain packets); ``kernel-rev`` (the backend's rule on, as deployed);
``kernel-rev-norule``; ``kernel-rev-notc`` (the devices' clsact, i.e. the flower check,
removed for the run); ``classic-rev`` (the classic device up: it matches before the collect-
metadata one).

The tc BPF fast path (scripts/perf/bpf_fastpath.py loads it for the run, no policy rule):
``bpf`` / ``bpf-gre`` (the prototype: ``bpf_redirect_neigh``, a route lookup in the helper),
``bpf-mac`` (the prototype with the MACs in the map and ``bpf_redirect``: no lookup at all),
``bpf-rev`` / ``bpf-gre-rev``; ``pkg``, ``pkg-gre``, ``pkg-rev``, ``pkg-gre-rev``: the
shipped one (mobileip.dataplane.bpf, both programs on both of ha's interfaces: forward
through the MAC path, the next hop's MACs from the ``nexthops`` map filled from the neighbour
table, + ``bpf_redirect``; reverse: decapsulated, then ``bpf_fib_lookup`` for the inner
destination + ``bpf_redirect``, its answer cached per destination in the ``routes`` map:
later packets without the lookup); ``pkg-fib``, ``pkg-gre-fib``: its forward program without
the MAC path (``bpf_fib_lookup`` + ``bpf_redirect``, as shipped before 2026-12-07);
``pkg-rev-stack``, ``pkg-gre-rev-stack``: its reverse program handing the decapsulated packet
to the stack (as shipped before 2026-12-07 04:00); ``pkg-rev-fib``, ``pkg-gre-rev-fib``: its
reverse program without the route cache (a FIB lookup per packet, as shipped 04:00-05:00).
``sender-rev-gre`` / ``kernel-gre-rev``: the GRE reverse rows.
The per CPU-s column is ceiling ns / path ns, round by round (what the bench reports).

``--src-headroom``: the sender behind a bridge with ample headroom (:func:`src_headroom`), to
see what a veth sender's small headroom costs the tunnelled rows; ``--only a,b``: a subset.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from mobileip.tools import forwarding_bench as fb

CLASSIC = "fpxclassic"
EMPTY_TABLE, EMPTY_PREF = 103, 1003

# name -> (path measured as, its sender baseline)
VARIANTS: dict[str, tuple[str, str]] = {
    "sender": ("sender", ""),
    "ceiling": ("ceiling", "sender"),
    "rule-miss": ("ceiling", "sender"),
    "lwt-main": ("ceiling", "sender"),
    "classic": ("ceiling", "sender"),
    "kernel": ("kernel", "sender"),
    "kernel-gre": ("kernel-gre", "sender"),
    "sender-rev": ("sender-rev", ""),
    "ceiling-rev": ("ceiling-rev", "sender-rev"),
    "sender-rev-ipip": ("sender-rev-ipip", ""),
    "kernel-rev": ("kernel-rev", "sender-rev-ipip"),
    "kernel-rev-norule": ("kernel-rev", "sender-rev-ipip"),
    "kernel-rev-notc": ("kernel-rev", "sender-rev-ipip"),
    "classic-rev": ("kernel-rev", "sender-rev-ipip"),
    "sender-rev-gre": ("sender-rev-gre", ""),
    "kernel-gre-rev": ("kernel-gre-rev", "sender-rev-gre"),
    # the tc BPF fast path (scripts/perf/bpf_fastpath.py), loaded for its run, no policy rule
    "bpf": ("ceiling", "sender"),
    "bpf-gre": ("ceiling", "sender"),
    "bpf-mac": ("ceiling", "sender"),
    "bpf-rev": ("kernel-rev", "sender-rev-ipip"),
    "bpf-gre-rev": ("kernel-gre-rev", "sender-rev-gre"),
    # the shipped one (mobileip.dataplane.bpf.BpfFastPath: FIB lookup + bpf_redirect, both
    # programs on both of ha's interfaces, as the kernel backend attaches them)
    "pkg": ("ceiling", "sender"),
    "pkg-gre": ("ceiling", "sender"),
    "pkg-fib": ("ceiling", "sender"),  # the shipped forward program without its MAC path
    "pkg-gre-fib": ("ceiling", "sender"),
    "pkg-rev": ("kernel-rev", "sender-rev-ipip"),
    "pkg-gre-rev": ("kernel-gre-rev", "sender-rev-gre"),
    # its reverse program as before 2026-12-07 04:00: decapsulated packets to the stack
    "pkg-rev-stack": ("kernel-rev", "sender-rev-ipip"),
    "pkg-gre-rev-stack": ("kernel-gre-rev", "sender-rev-gre"),
    # its reverse program without the route cache (2026-12-07 04:00-05:00): a FIB lookup each
    "pkg-rev-fib": ("kernel-rev", "sender-rev-ipip"),
    "pkg-gre-rev-fib": ("kernel-gre-rev", "sender-rev-gre"),
    "pkg-rev-o": ("kernel-rev", "sender-rev-ipip"),  # attached on ha's care-of side only
    "pkg-rev-p1": ("kernel-rev", "sender-rev-ipip"),  # the reverse filter at tc prio 1
    "pkg-rev-r": ("kernel-rev", "sender-rev-ipip"),  # the reverse program only
    "bpf-rev-s": ("kernel-rev", "sender-rev-ipip"),  # the shipped program, prototype's attach
    "bpf-rev-n": ("kernel-rev", "sender-rev-ipip"),  # the prototype attached the shipped way
    "pkg-rev-b": ("kernel-rev", "sender-rev-ipip"),  # the maps filled 500 at a time
    "pkg-rev-nh": ("kernel-rev", "sender-rev-ipip"),  # no homes map entries
    "pkg-rev-l": ("kernel-rev", "sender-rev-ipip"),  # programs loaded after the maps are filled
    "bpf-rev-2": ("kernel-rev", "sender-rev-ipip"),  # the prototype + a filter no packet reaches
    "pkg-c": ("ceiling", "sender"),  # the shipped default capacity (131,072 homes)
    "pkg-rev-c": ("kernel-rev", "sender-rev-ipip"),  # the same, reverse
}
NO_RULE = ("kernel-rev-norule", "classic-rev", "bpf-rev", "bpf-gre-rev", "pkg-rev", "pkg-gre-rev",
           "pkg-rev-o", "pkg-rev-p1", "pkg-rev-r", "bpf-rev-s", "bpf-rev-n", "pkg-rev-b",
           "pkg-rev-nh", "pkg-rev-l", "bpf-rev-2", "pkg-rev-c", "pkg-rev-stack",
           "pkg-gre-rev-stack", "pkg-rev-fib", "pkg-gre-rev-fib")  # fmt: skip
BPF = Path(__file__).resolve().parent / "bpf_fastpath.py"
CEILING = {"ceiling": "", "ceiling-rev": ""}


def guest(args: argparse.Namespace) -> int:
    sizes = [int(s) for s in args.sizes.split(",")]
    runs: dict[str, list[list[float]]] = {}
    with fb.Topology() as topo:
        ha = topo.ns["ha"]

        def ip(*a: str) -> None:
            subprocess.run(["ip", "-n", ha, *a], capture_output=True, check=False)

        if args.src_headroom:
            src_headroom(topo)
        helper = fb.BackendHelper(topo, "kernel", args.bindings)
        dev = f"{topo.tag[-6:]}-ipip"
        ip("link", "add", CLASSIC, "type", "ipip", "local", fb.HA_OUT, "remote", fb.COA_ADDR,
           "ttl", "64")  # fmt: skip
        subprocess.run(["ip", "netns", "exec", ha, "sysctl", "-qw",
                        f"net.ipv4.conf.{CLASSIC}.rp_filter=0"], check=False)  # fmt: skip
        plain = ("route", "replace", f"{fb.HOME}/32", "via", fb.COA_ADDR)
        block = str(fb_block())
        encap = ["encap", "ip", "dst", fb.COA_ADDR, "src", fb.HA_OUT, "ttl", "64", "dev", dev]
        up, down = ["ip", "link", "set", CLASSIC, "up"], ["ip", "link", "set", CLASSIC, "down"]
        # variant -> (commands in ha before its run, after it)
        setups: dict[str, tuple[list[list[str]], list[list[str]]]] = {
            "rule-miss": (
                [["ip", "rule", "add", "pref", str(EMPTY_PREF), "lookup", str(EMPTY_TABLE)]],
                [["ip", "rule", "del", "pref", str(EMPTY_PREF)]],
            ),
            "lwt-main": (
                [["ip", "route", "replace", f"{fb.HOME}/32", *encap]],
                [["ip", *plain]],
            ),
            "classic": (
                [up, ["ip", "route", "replace", f"{fb.HOME}/32", "dev", CLASSIC]],
                [["ip", *plain], down],
            ),
            "kernel-rev-notc": (
                [["tc", "qdisc", "del", "dev", dev, "clsact"]],
                [["tc", "qdisc", "add", "dev", dev, "ingress_block", block, "clsact"]],
            ),
            "classic-rev": ([up], [down]),
        }

        t = topo.tag
        common = ["--ha", fb.HA_OUT, "--coa", fb.COA_ADDR, "--home", fb.HOME,
                  "--count", str(args.bindings)]  # fmt: skip
        fwd = ["@bpf", "forward", "--dev", f"{t}h", "--out", f"{t}o", *common]
        rev = ["@bpf", "reverse", "--dev", f"{t}o", *common]
        setups.update({
            "bpf": ([fwd], [["@bpf", "detach", "--dev", f"{t}h"]]),
            "bpf-gre": ([[*fwd, "--gre"]], [["@bpf", "detach", "--dev", f"{t}h"]]),
            "bpf-mac": ([[*fwd, "--static-mac"]], [["@bpf", "detach", "--dev", f"{t}h"]]),
            "bpf-rev": ([rev], [["@bpf", "detach", "--dev", f"{t}o"]]),
            "bpf-gre-rev": ([rev], [["@bpf", "detach", "--dev", f"{t}o"]]),
            "bpf-rev-s": ([[*rev, "--shipped-program"]], [["@bpf", "detach", "--dev", f"{t}o"]]),
            "bpf-rev-n": ([[*rev, "--netlink-attach"]], [["@bpf", "detach", "--dev", f"{t}o"]]),
            "bpf-rev-2": ([[*rev, "--second-filter"]], [["@bpf", "detach", "--dev", f"{t}o"]]),
        })  # fmt: skip
        # the shipped path (BpfFastPath on both of ha's interfaces). Until 2026-12-07 02:00 these
        # variants had no entry here, so every pkg* row measured its base path with no program
        # attached (pkg = ceiling, pkg-rev = kernel-rev without its rule)
        pkg = ["@bpf", "package", "--dev", f"{t}h", "--out", f"{t}o", *common]
        pkg_off = [["@bpf", "detach", "--dev", f"{t}h"], ["@bpf", "detach", "--dev", f"{t}o"]]
        for name, extra in (("pkg", []), ("pkg-gre", ["--gre"]), ("pkg-fib", ["--fib-only"]),
                            ("pkg-gre-fib", ["--gre", "--fib-only"]), ("pkg-rev", []),
                            ("pkg-gre-rev", []), ("pkg-rev-o", ["--out-only"]),
                            ("pkg-rev-p1", ["--prio1"]), ("pkg-rev-r", ["--reverse-only"]),
                            ("pkg-rev-b", ["--small-batches"]), ("pkg-rev-nh", ["--no-homes"]),
                            ("pkg-rev-l", ["--late-load"]), ("pkg-c", ["--capacity", "131072"]),
                            ("pkg-rev-c", ["--capacity", "131072"]),
                            ("pkg-rev-stack", ["--reverse-stack"]),
                            ("pkg-gre-rev-stack", ["--reverse-stack"]),
                            ("pkg-rev-fib", ["--no-route-cache"]),
                            ("pkg-gre-rev-fib", ["--no-route-cache"])):  # fmt: skip
            setups[name] = ([[*pkg, *extra]], pkg_off)

        def run(commands: list[list[str]]) -> None:
            for argv in commands:
                if argv[0] == "@bpf":
                    done = subprocess.run(["ip", "netns", "exec", ha, sys.executable, str(BPF),
                                           *argv[1:]], capture_output=True, text=True,
                                          check=False)  # fmt: skip
                    if done.returncode != 0:
                        raise RuntimeError(f"bpf_fastpath {argv[1]}: {done.stderr[-2000:]}")
                    if done.stdout.strip():
                        print(f"  [UML] bpf_fastpath {argv[1]}: {done.stdout.strip()}", flush=True)
                    continue
                subprocess.run([argv[0], "-n", ha, *argv[1:]], capture_output=True, check=False)

        try:
            chosen = [v for v in VARIANTS if not args.only or v in args.only.split(",")]
            order = [(size, v) for size in sizes for v in chosen]
            for rep in range(args.repeats):
                shift = rep * len(order) // max(1, args.repeats)
                for size, v in order[shift:] + order[:shift]:
                    fp = fb.BY_NAME[VARIANTS[v][0]]
                    rule = fp.rule if v not in NO_RULE else None
                    if rule:
                        topo.rule(rule, True)
                    if fp.sink:
                        topo.sink("ha-coa" if fp.reverse else "ha-src", True)
                    on, off = setups.get(v, ([], []))
                    run(on)
                    try:
                        got = fb.measure(topo, Path(args.sender), size, args.duration, 1, 0.0,
                                         None, fp)  # fmt: skip
                    finally:
                        run(off)
                        if rule:
                            topo.rule(rule, False)
                        if fp.sink:
                            topo.sink("ha-coa" if fp.reverse else "ha-src", False)
                    runs.setdefault(f"{v}@{size}", []).append(list(got))
                    print(f"  [UML] round {rep + 1} {v:<18} {size:>5} B: {got[0]:>10,.0f}/s",
                          flush=True)  # fmt: skip
        finally:
            helper.stop()
    print(json.dumps(runs), flush=True)
    return 0


def src_headroom(topo: fb.Topology) -> None:
    """Give the sender's packets ample headroom: src's address moves to a bridge over its veth
    with a (down) gretap port, whose needed headroom the bridge adopts, so the sender allocates
    64 bytes in front of each packet instead of 16 and the Home Agent can prepend the outer
    header in place (a NIC's receive buffers have such headroom; a veth sender's do not)."""
    src, t = topo.ns["src"], topo.tag
    br, gt, veth = f"{t}br", f"{t}gt", f"{t}s"
    ha_mac = topo.mac(topo.ns["ha"], f"{t}h")
    for argv in (
        ["link", "add", br, "type", "bridge"],
        ["link", "add", gt, "type", "gretap", "local", fb.SRC_ADDR, "remote", "10.231.9.9"],
        ["link", "set", gt, "master", br],
        ["addr", "del", f"{fb.SRC_ADDR}/24", "dev", veth],
        ["link", "set", veth, "master", br],
        ["addr", "add", f"{fb.SRC_ADDR}/24", "dev", br],
        ["link", "set", br, "up"],
        ["route", "replace", "default", "via", fb.HA_IN, "dev", br],
        ["neigh", "replace", fb.HA_IN, "lladdr", ha_mac, "dev", br, "nud", "permanent"],
    ):
        subprocess.run(["ip", "-n", src, *argv], check=True, capture_output=True)
    # no flooding: ha's MAC is known to the bridge from the start
    subprocess.run(["bridge", "-n", src, "fdb", "replace", ha_mac, "dev", veth, "master",
                    "static"], check=True, capture_output=True)  # fmt: skip
    out = subprocess.run(["ip", "-n", src, "-d", "link", "show", br], capture_output=True,
                         text=True, check=False).stdout  # fmt: skip
    print(f"  [UML] sender behind a bridge: {' '.join(out.split())[:300]}", flush=True)


def fb_block() -> int:
    from mobileip.dataplane.kernel import DEFAULT_BLOCK

    return DEFAULT_BLOCK


def spread(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):.2f} [{min(values):.2f}-{max(values):.2f}]"


def host(args: argparse.Namespace) -> int:
    from mobileip.tools.uml import run_in_uml

    with tempfile.TemporaryDirectory(prefix="mobileip-fwdprof-", dir="/var/tmp") as tmp:
        sender = fb.build_sender(Path(tmp))
        argv = [sys.executable, str(Path(__file__).resolve()), "guest", "--sender", str(sender),
                "--repeats", str(args.repeats), "--duration", str(args.duration),
                "--sizes", args.sizes, "--bindings", str(args.bindings),
                "--only", args.only]  # fmt: skip
        if args.src_headroom:
            argv.append("--src-headroom")
        cpu = fb.CgroupCpu()
        with cpu:
            result = run_in_uml(argv, cwd=Path(__file__).resolve().parents[2],
                                timeout=3600, launcher=cpu.launcher())  # fmt: skip
    lines = [ln for ln in result.output.splitlines() if ln.startswith("{")]
    if result.returncode != 0 or not lines:
        print(result.output[-3000:])
        return 1
    runs: dict[str, list[list[float]]] = json.loads(lines[-1])
    for line in result.output.splitlines():
        if "sender behind a bridge" in line or "bpf_fastpath" in line:
            print(line.strip())  # what the fast path variants loaded, as the guest reported it

    def ns(r: list[float]) -> float | None:
        used = cpu.between(r[3], r[4])
        return used / r[5] * 1e9 if used is not None and r[5] > 0 else None

    cost = {k: [ns(r) for r in v] for k, v in runs.items()}
    sizes = sorted({int(k.rpartition("@")[2]) for k in runs})
    print("variant              bytes  packets/s  ns/packet  forwarding ns  "
          "x ceiling (delivered)  x ceiling (per CPU-s)  x ceiling (fwd-only CPU)  "
          "x classic (fwd-only CPU)")  # fmt: skip
    for size in sizes:
        for v, (path, base) in VARIANTS.items():
            key = f"{v}@{size}"
            if key not in runs:
                continue
            ceil = "ceiling-rev" if fb.BY_NAME[path].reverse else "ceiling"
            cbase = VARIANTS[ceil][1]
            mine, b = cost[key], cost.get(f"{base}@{size}", [])
            c, cb = cost[f"{ceil}@{size}"], cost[f"{cbase}@{size}"]
            fwd = [m - x for m, x in zip(mine, b, strict=False) if m is not None and x is not None]
            ratio = [
                (ci - cbi) / (m - x)
                for ci, cbi, m, x in zip(c, cb, mine, b, strict=False)
                if ci is not None and cbi is not None and m is not None and x is not None
                and m > x
            ]  # fmt: skip
            delivered = [
                r[0] / q[0] for r, q in zip(runs[key], runs[f"{ceil}@{size}"], strict=False) if q[0]
            ]
            per_cpu = [ci / m for ci, m in zip(c, mine, strict=False) if ci and m]
            classic = "classic-rev" if fb.BY_NAME[path].reverse else "classic"
            k = cost.get(f"{classic}@{size}", [])
            vs_classic = [
                (ki - x) / (m - x)
                for ki, m, x in zip(k, mine, b, strict=False)
                if ki is not None and m is not None and x is not None and m > x
            ]
            med = [m for m in mine if m is not None]
            print(
                f"{v:<20} {size:>5} {statistics.median(r[0] for r in runs[key]):>10,.0f} "
                f"{statistics.median(med) if med else 0:>10,.0f} "
                f"{statistics.median(fwd) if fwd else 0:>14,.0f}  "
                f"{'' if v.startswith('sender') else spread(delivered):>21}  "
                f"{'' if v.startswith('sender') else spread(per_cpu):>21}  "
                f"{'' if v.startswith('sender') else spread(ratio):>24}  "
                f"{'' if v.startswith('sender') else spread(vs_classic):>24}"
            )
    print(f"rounds: {args.repeats}; {args.duration} s per run; UML boot {result.boot_seconds} s")
    return 0


def main() -> int:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd")
    for name in ("host", "guest"):
        s = sub.add_parser(name)
        s.add_argument("--repeats", type=int, default=8)
        s.add_argument("--duration", type=float, default=1.0)
        s.add_argument("--sizes", default="64,1400")
        s.add_argument("--bindings", type=int, default=10_000)
        s.add_argument("--only", default="", help="variants, comma-separated (default: all)")
        s.add_argument(
            "--src-headroom",
            action="store_true",
            help="the sender behind a bridge with ample headroom (src_headroom)",
        )
        if name == "guest":
            s.add_argument("--sender", required=True)
    args = p.parse_args(sys.argv[1:] or ["host"])
    return guest(args) if args.cmd == "guest" else host(args)


if __name__ == "__main__":
    sys.exit(main())
