#!/usr/bin/env python3
"""The virtual MAC's gratuitous ARP (net/vmac.py ``announce``): one long-lived packet socket
against a socket per frame (``netlink.send_gratuitous_arp``, what ``announce`` did before), in a
throwaway network namespace (root).

    sudo .venv/bin/python scripts/perf/vmac_announce.py [--frames 200] [--rounds 7]

A veth pair in the namespace, a macvlan ``vrrp.51`` on one end (up, as on an active member);
each round sends ``--frames`` gratuitous ARPs each way, the two ways interleaved round by round.
Prints the median and worst per-frame cost of each, and their ratio, as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import time
from ipaddress import IPv4Address

from mobileip.net import netlink
from mobileip.net import vmac as vm


def per_frame(send: object, frames: int) -> list[float]:
    assert callable(send)
    out = []
    for i in range(frames):
        t = time.perf_counter()
        send(IPv4Address(0x0A4D8002 + i))
        out.append(time.perf_counter() - t)
    return out


def inner(args: argparse.Namespace) -> None:
    subprocess.run(["ip", "link", "add", "b0", "type", "veth", "peer", "name", "b1"], check=True)
    for dev in ("b0", "b1", "lo"):
        subprocess.run(["ip", "link", "set", dev, "up"], check=True)
    v = vm.ensure("b0", 51, state_dir=args.state_dir)
    try:
        vm.set_up(v, True)
        time.sleep(0.2)
        fresh: list[float] = []
        kept: list[float] = []
        for _ in range(args.rounds):
            fresh += per_frame(lambda a: netlink.send_gratuitous_arp(v.name, v.mac, a), args.frames)
            kept += per_frame(lambda a: vm.announce(v, a), args.frames)
    finally:
        vm.release(v)
    med_fresh, med_kept = statistics.median(fresh), statistics.median(kept)
    print(
        json.dumps(
            {
                "frames": len(kept),
                "socket_per_frame_us": {"median": round(med_fresh * 1e6, 1),
                                        "max": round(max(fresh) * 1e6, 1)},
                "long_lived_us": {"median": round(med_kept * 1e6, 1),
                                  "max": round(max(kept) * 1e6, 1)},
                "ratio_median": round(med_fresh / med_kept, 1),
            }
        )
    )  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--state-dir", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.inner:
        from pathlib import Path

        args.state_dir = Path(args.state_dir)
        inner(args)
        return
    if os.geteuid() != 0:
        sys.exit("needs root (a network namespace)")
    ns = f"vmacbench{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    state = f"/tmp/{ns}"
    try:
        argv = [sys.executable, __file__, "--inner", "--state-dir", state,
                "--frames", str(args.frames), "--rounds", str(args.rounds)]  # fmt: skip
        subprocess.run(["ip", "netns", "exec", ns, *argv], check=True)
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
        subprocess.run(["rm", "-rf", state], check=False)


if __name__ == "__main__":
    main()
