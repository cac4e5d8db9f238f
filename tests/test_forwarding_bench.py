"""``mobileip bench --only forwarding`` (src/mobileip/tools/forwarding_bench.py) works end to end.

Cheap: the sender compiles and sends; the report formats; as root, one short run of the ceiling
and the userspace backend on the namespaces (no UML). Numbers are printed, never asserted beyond
"something was delivered": the machine is shared."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from mobileip.tools.forwarding_bench import (
    ForwardingPlan,
    build_sender,
    format_forwarding,
    run_forwarding,
)

needs_cc = pytest.mark.skipif(
    not (shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")),
    reason="no C compiler for the forwarding bench's sender",
)


@needs_cc
def test_sender_compiles_and_sends(tmp_path: Path) -> None:
    exe = build_sender(tmp_path)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
        sink.bind(("127.0.0.1", 0))
        sink.settimeout(5)
        port = sink.getsockname()[1]
        out = subprocess.run(
            [str(exe), "127.0.0.1", str(port), "100", "0.2", "1000"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout.split()
        assert len(sink.recv(2048)) == 100 - 28  # the UDP payload of a 100-byte IP packet
    assert out[0] == "sent" and int(out[1]) > 0
    assert float(out[3]) >= 0.2
    assert int(out[1]) <= 1000 * 0.2 + 64 * 2  # paced: about rate x seconds


def test_format() -> None:
    row = {
        "path": "ceiling",
        "size": 64,
        "pps": 100_000,
        "mbit_s": 51.2,
        "ratio_to_ceiling": 1.0,
        "runs_pps": [100_000],
    }
    data = {
        "host": {
            "where": "host",
            "rows": {"ceiling@64": row},
            "install": {
                "userspace": {
                    "bindings": 10,
                    "install_us_per_binding": 5.0,
                    "rss_bytes_per_binding": 100,
                    "kernel_slab_bytes_per_binding": 200,
                }
            },
            "skipped": {"kernel": "no ipip"},
        },
        "uml": {"skipped": "no linux.uml"},
    }
    text = "\n".join(format_forwarding(data))
    assert "100,000" in text and "no ipip" in text and "no linux.uml" in text
    assert "5.0 us/binding" in text
    assert format_forwarding({"skipped": "needs root"}) == ["forwarding: not measured (needs root)"]


@needs_cc
@pytest.mark.root
@pytest.mark.timeout(120)
def test_short_run_on_namespaces() -> None:
    plan = ForwardingPlan(
        sizes=(64,), duration=1.0, repeats=1, bindings=50, uml=False, backends=("userspace",)
    )
    lines: list[str] = []
    data = run_forwarding(plan, lines.append)
    print("\n".join(lines))
    print(json.dumps(data, indent=1))
    rows = data["host"]["rows"]
    assert rows["ceiling@64"]["pps"] > 0
    assert rows["userspace@64"]["pps"] > 0
    assert rows["userspace@64"]["ratio_to_ceiling"] is not None
    install = data["host"]["install"]["userspace"]
    assert install["bindings"] == 50 and install["failed"] == 0
    assert install["counters"]["encap-ipip"] > 0  # the packets went through the backend
    # nothing left behind
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert f"mfb{os.getpid() % 100000}-" not in left  # this process's topology tag
