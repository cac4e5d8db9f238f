"""The sync group transport over real multicast: three members on a bridge (issue 3).

No unicast peers are configured: the members find each other through the multicast group (their
table requests and digests), updates go to the group, acks come back by unicast.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import helpers
import pytest
from helpers import KEY, SPI
from netns import Member, Segment, segment_fixture  # noqa: F401  (fixture)

from mobileip.config import to_toml

pytestmark = pytest.mark.root

GROUP = "239.255.43.4"
SYNC_PORT = 4343


def config(member: Member, node: str) -> dict[str, Any]:
    return {
        "homeagent": {"address": "10.1.0.1", "listen": "0.0.0.0", "port": 434},
        "security_association": [
            {"spi": SPI, "algorithm": "hmac-md5", "key": KEY, "home_addresses": ["10.1.0.0/16"]}
        ],
        "control": {"listen": "127.0.0.1:8434"},
        "redundancy": {
            "node_id": node,
            "listen": "0.0.0.0",
            "port": SYNC_PORT,
            "group": GROUP,
            "interface": member.ifname,
            "spi": 1000,
            "key": "77" * 32,
            "boot_wait": 0.3,
        },
    }


def status(seg: Segment, m: Member) -> dict[str, Any]:
    out = seg.run(m, [sys.executable, "-m", "mobileip", "show", "redundancy", "--json"])
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert isinstance(data, dict)
    return data


def wait_until(what: str, check: Any, timeout: float = 20.0) -> None:
    helpers.wait_until(check, timeout, what, interval=0.2)


def test_three_members_sync_over_multicast(segment_fixture: Segment, tmp_path: Path) -> None:  # noqa: F811
    seg = segment_fixture
    members = [seg.add_member(f"ha{i}", f"10.1.0.{11 + i}/24") for i in range(3)]
    for i, m in enumerate(members):
        path = tmp_path / f"{m.name}.toml"
        path.write_text(to_toml(config(m, f"10.1.0.{11 + i}")))
        proc = seg.spawn(m, [sys.executable, "-m", "mobileip", "homeagent", "--config", str(path)])
        proc.wait_for(r"event=sync.started", timeout=20)
    wait_until(
        "all SYNCED with two members each",
        lambda: all(
            status(seg, m)["state"] == "SYNCED"
            and sum(1 for x in status(seg, m)["members"] if x["reachable"]) == 2
            for m in members
        ),
    )
    first = members[0]
    for n in range(20):
        out = seg.run(
            first,
            [
                sys.executable, "-m", "mobileip", "register", "--ha", "127.0.0.1:434",
                "--home-address", f"10.1.1.{n + 1}", "--care-of-address", "192.0.2.7",
                "--home-agent-address", "10.1.0.1", "--spi", str(SPI), "--key", KEY,
            ],
        )  # fmt: skip
        assert out.returncode == 0, out.stdout + out.stderr
    wait_until("20 bindings on every member", lambda: all(
        status(seg, m)["bindings"] == 20 for m in members
    ))  # fmt: skip
    counters = status(seg, first)["counters"]
    # one multicast datagram per update message, acks from both peers by unicast
    assert counters["sent_bu"] >= 1
    assert counters["received_bu_acks"] >= 2 * counters["sent_bu"]
    for m in members[1:]:
        peer = status(seg, m)
        assert peer["counters"]["received_bus"] >= 1
        learned = {x["address"] for x in peer["members"]}
        assert "10.1.0.11" in learned, learned  # learned from the group, not from config
