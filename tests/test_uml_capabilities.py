"""What the real-kernel tier promises: netem, an ``external`` (collect-metadata) ipip device with an
``encap ip`` lightweight-tunnel route, dummy devices, and (inside User-Mode Linux) nf_nat.

Marked ``kernel``: where the host kernel lacks these it runs inside UML (tests/test_uml_tier.py).
Two namespaces on one bridge: ``a`` delays its egress 100 ms with netem and reaches 10.78.9.1
only through its ``external`` ipip device (the route's ``encap ip dst`` names b); ``b`` ends the
tunnel with a classic ipip device holding 10.78.9.1 and echoes UDP. One echo proves both.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest
from netns import Member, Segment, root_skip_reason

pytestmark = pytest.mark.kernel
IN_UML = os.environ.get("MOBILEIP_IN_UML") == "1"

A, B, TARGET = "10.78.0.1", "10.78.0.2", "10.78.9.1"
DELAY_MS = 100
ECHO = (
    "import socket, sys; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
    "s.bind((sys.argv[1], 7777)); print('ready', flush=True)\n"
    "while True:\n    data, peer = s.recvfrom(100); s.sendto(data, peer)"
)
CLIENT = (
    "import socket, sys, time; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
    "s.settimeout(5); t = time.monotonic(); s.sendto(b'hi', (sys.argv[1], 7777)); "
    "data, peer = s.recvfrom(100); print(f'rtt={time.monotonic() - t:.4f} from={peer[0]}')"
)


def _packets(seg: Segment, member: Member, dev: str, direction: str) -> int:
    out = seg.run(member, ["ip", "-s", "link", "show", dev]).stdout
    lines = out.splitlines()
    idx = next(i for i, line in enumerate(lines) if line.strip().startswith(f"{direction}:"))
    return int(lines[idx + 1].split()[1])


def test_netem_and_external_ipip_with_encap_route() -> None:
    reason = root_skip_reason()
    if reason:
        pytest.skip(reason)
    with Segment() as seg:
        a = seg.add_member("a", f"{A}/24")
        b = seg.add_member("b", f"{B}/24")
        ext, end = f"{seg.prefix}x", f"{seg.prefix}r"

        def run(member: Member, *argv: str) -> str:
            proc = seg.run(member, argv)
            why = f"{' '.join(argv)}: {proc.stderr.strip()}"
            if proc.returncode and not IN_UML:  # a host kernel without the feature
                pytest.skip(f"this kernel cannot: {why}")
            assert proc.returncode == 0, why  # UML's kernel must
            return proc.stdout

        run(a, "ip", "link", "add", ext, "type", "ipip", "external")
        run(a, "ip", "link", "set", ext, "up")
        run(a, "ip", "route", "add", f"{TARGET}/32", "encap", "ip", "dst", B, "dev", ext,
            "src", A)  # fmt: skip
        assert f"encap ip id 0 src 0.0.0.0 dst {B}" in run(a, "ip", "route", "show", TARGET)
        assert "external" in run(a, "ip", "-d", "link", "show", ext)
        run(a, "tc", "qdisc", "add", "dev", a.ifname, "root", "netem", "delay", f"{DELAY_MS}ms")
        assert "netem" in run(a, "tc", "qdisc", "show", "dev", a.ifname)
        run(a, "ip", "link", "add", f"{seg.prefix}d", "type", "dummy")

        run(b, "ip", "link", "add", end, "type", "ipip", "local", B, "remote", A)
        run(b, "ip", "addr", "add", f"{TARGET}/32", "dev", end)
        run(b, "ip", "link", "set", end, "up")
        run(b, "sysctl", "-q", "-w", "net.ipv4.conf.all.rp_filter=0")
        run(b, "sysctl", "-q", "-w", f"net.ipv4.conf.{end}.rp_filter=0")
        server = seg.spawn(b, [sys.executable, "-c", ECHO, TARGET], "echo")
        server.wait_for("ready", 30)

        out = run(a, sys.executable, "-c", CLIENT, TARGET)
        match = re.search(r"rtt=([\d.]+) from=(\S+)", out)
        assert match, out
        assert match.group(2) == TARGET
        assert float(match.group(1)) >= DELAY_MS / 1000 * 0.9, out  # netem delayed the request
        assert _packets(seg, a, ext, "TX") >= 1  # encapsulated by the external device
        assert _packets(seg, b, end, "RX") >= 1  # and decapsulated at b

    if IN_UML:
        assert Path("/sys/module/nf_nat").exists(), "nf_nat not loaded inside UML"
