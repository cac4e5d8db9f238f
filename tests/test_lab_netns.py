"""``mobileip lab`` end to end: FIG 1A in namespaces, SIGKILL of the active Home Agent under a
ping and a UDP stream, roaming, return home; the report, the capture, and nothing left behind."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from pcapio import tshark_fields

from mobileip.tools.lab import lab_namespaces

pytestmark = pytest.mark.root


def mobileip(*args: str, timeout: float = 150) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mobileip", *args], capture_output=True, text=True, timeout=timeout
    )


def failover_report(*args: str, timeout: float = 150) -> dict[str, Any]:
    """``mobileip lab --json ARGS``: its report, printed, with what every lab run must show
    (the failover from ha1 to ha2, the binding kept, ping and UDP through the tunnel before
    and after the kill)."""
    res = mobileip("lab", "--json", *args, timeout=timeout)
    assert res.returncode == 0, res.stdout + res.stderr
    report: dict[str, Any] = json.loads(res.stdout)
    print(f"\nlab {' '.join(args)}: killed {report['killed']}, new active "
          f"{report['new_active']}, outage {report['outage_ms']} ms (UDP "
          f"{report['udp_outage_ms']} ms), lost {report['packets_lost']}, roam {report['roam']}, "
          f"home {report['home']}, counters {report['new_active_counters']}")  # fmt: skip
    assert report["mode"] == "netns" and report["ok"], report
    assert report["killed"] == "ha1" and report["new_active"] == "ha2"  # priorities 150 > 100
    assert report["bindings_before"] == report["bindings_after"] == 1
    # traffic flowed before and after the kill, through the tunnel
    assert report["ping"]["received"] > 100 and report["udp"]["received"] > 100
    # VRRP with 0.1 s adverts: master down after ~0.36 s; loose bound for a loaded machine
    assert 0 < report["outage_ms"] < 3000
    assert report["packets_lost"] < report["ping"]["sent"] // 4
    assert report["roam"]["received"] > 0 and report["home"]["received"] > 0
    assert report["home"]["proxy_arp_left"] is False
    # nothing left behind
    assert lab_namespaces(report["prefix"]) == []
    assert not list(Path(tempfile.gettempdir()).glob(f"{report['prefix']}-*"))
    return report


@pytest.mark.timeout(200)
def test_lab_failover_roam_and_return_home(tmp_path: Path) -> None:
    pcap = tmp_path / "f1.pcap"
    report = failover_report("--capture", str(pcap))

    # the capture of the foreign link: IP-in-IP from the virtual address to fa1, the inner
    # packets (echo requests and UDP from the correspondent to the home address) intact
    rows = tshark_fields(
        pcap,
        ["ip.proto", "ip.src", "ip.dst", "ip.ttl", "icmp.type", "udp.dstport", "_ws.malformed"],
        "ip.check_checksum:TRUE",
    )
    tunnelled = [r for r in rows if r[0].startswith("4,") and r[1].startswith("10.1.0.1,")]
    reverse = [r for r in rows if r[0].startswith("4,") and r[1].startswith("10.2.0.1,")]
    assert len(tunnelled) > 100
    assert sum(r[3] == "63,62" for r in tunnelled) > len(tunnelled) // 2
    for _proto, src, dst, ttl, icmp_type, port, malformed in tunnelled:
        assert src == "10.1.0.1,192.0.2.10" and dst == "10.2.0.1,10.1.0.100"
        outer_ttl, inner_ttl = ttl.split(",")
        # outer: the HA's 64 less the router hop; inner: CN's 64 less router and HA (61 for
        # packets the killed member's kernel, still up, forwarded once more to the new active)
        assert outer_ttl == "63" and inner_ttl in ("62", "61")
        assert icmp_type == "8" or port == "9999"
        assert not malformed
    # RFC 3024: the mobile node asked for reverse tunnelling: fa1 tunnels its echo replies to
    # the virtual address, and the active Home Agent decapsulated them
    assert len(reverse) > 100
    for row in reverse:
        # echo replies; or, rarely, an ICMP error of the mobile node about a UDP datagram that
        # arrived while its sink was not listening (it quotes the datagram: a third IP header)
        assert row[1].startswith("10.2.0.1,10.1.0.100") and row[2].startswith("10.1.0.1,192.0.2.10")
        assert row[4].split(",")[0] in ("0", "3"), row
    assert (
        sum(
            r[1:3] == ["10.2.0.1,10.1.0.100", "10.1.0.1,192.0.2.10"] and r[4] == "0"
            for r in reverse
        )
        > 100
    )
    assert report["reverse_tunnel"] and report["new_active_counters"]["decap-ipip"] > 100
    # the FA delivered the inner packets on the link, one more hop
    delivered = [r for r in rows if r[1] == "192.0.2.10" and r[2] == "10.1.0.100"]
    assert len(delivered) > 100 and all(r[3] in ("61", "60") for r in delivered)
    assert {r[0] for r in delivered} == {"1", "17"}  # the echo requests and the UDP stream


def test_lab_down_removes_a_kept_lab() -> None:
    res = mobileip("lab", "--keep", "--no-roam", "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    prefix = json.loads(res.stdout)["prefix"]
    assert lab_namespaces(prefix), "--keep must leave the lab up"
    down = mobileip("lab", "down", "--prefix", prefix)
    assert down.returncode == 0 and "removed 9 namespaces" in down.stdout, down.stdout
    assert lab_namespaces(prefix) == []
    assert not list(Path(tempfile.gettempdir()).glob(f"{prefix}-*"))


def test_loopback_fallback_keeps_the_bindings() -> None:
    res = mobileip("lab", "--loopback", "--json", timeout=90)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "running the loopback fallback" in res.stderr
    assert "data-plane figures not measured" in res.stderr
    report = json.loads(res.stdout)
    assert report["mode"] == "loopback" and report["ok"]
    assert report["outage_ms"] is None and report["packets_lost"] is None
    assert report["bindings_before"] == report["bindings_after"] == 10
    assert report["new_active"] == "ha2"


def test_a_failing_lab_leaves_nothing_behind(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A step fails after the namespaces exist and a process runs in them: ``mobileip lab``
    says what failed, exits 1, and removes everything."""
    from mobileip.tools import lab

    seen: dict[str, str] = {}

    def broken_start(self: lab.NetnsLab, node: str, command: str, config: object) -> object:
        seen["prefix"] = self.prefix
        self.spawn(node, ["sleep", "60"], "sleeper")
        raise lab.LabError(f"{node}: simulated failure")

    monkeypatch.setattr(lab.NetnsLab, "start_daemon", broken_start)
    parser = __import__("argparse").ArgumentParser()
    lab.add_arguments(parser)
    assert lab.main(parser.parse_args([])) == 1
    err = capsys.readouterr().err
    assert "mobileip lab: failed: ha1: simulated failure" in err
    assert lab_namespaces(seen["prefix"]) == []
    assert not list(Path(tempfile.gettempdir()).glob(f"{seen['prefix']}-*"))


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_lab_with_simulated_mobile_nodes() -> None:
    """``--mobile-nodes 200``: 199 simulated nodes (co-located care-of addresses in one
    namespace) registered through the virtual address; a UDP stream to 50 of them; each sampled
    node's outage after the kill is reported, and every one of them recovered. Speed is printed,
    never asserted."""
    res = mobileip("lab", "--mobile-nodes", "200", "--no-roam", "--json", timeout=280)
    assert res.returncode == 0, res.stdout + res.stderr
    report = json.loads(res.stdout)
    sample = report["sample"]
    print(f"\nlab --mobile-nodes 200: registration {report['registration']['wall_s']} s, "
          f"active installed all in {report['active_install_s']} s, sampled outage "
          f"{sample['outage_ms']} ms, back after the kill {sample['recovered_after_kill_ms']} ms, "
          f"new active's takeover {report['new_active_last_takeover_ms']} ms")  # fmt: skip
    assert report["ok"], report["why"]
    assert report["mobile_nodes"] == 200
    assert report["bindings_before"] == report["bindings_after"] == 200
    assert report["registration"]["accepted"] == 199
    assert sample["sampled"] == 50 and len(sample["per_node"]) == 50
    assert sample["recovered"] == 50 and sample["not_recovered"] == []
    for home, node in sample["per_node"].items():
        assert home.startswith("10.1")  # 10.128.0.0/9
        assert node["outage_ms"] is not None and node["outage_ms"] >= 0
        assert node["recovered_after_kill_ms"] is not None and node["recovered_after_kill_ms"] > 0
    assert sample["outage_ms"]["median"] <= sample["outage_ms"]["worst"]
    assert lab_namespaces(report["prefix"]) == []


@pytest.mark.kernel
@pytest.mark.timeout(400)
def test_lab_with_the_kernel_backend(tmp_path: Path) -> None:
    """The whole lab with ``--backend kernel`` (collect-metadata ipip/gre devices, encap
    routes: a real kernel's, inside User-Mode Linux through tests/test_uml_tier.py): the same
    report as the userspace lab's, the failover, roam and return home; on the foreign link,
    IP-in-IP from the virtual address to fa1 that the kernel encapsulated."""
    pcap = tmp_path / "f1.pcap"
    report = failover_report("--backend", "kernel", "--capture", str(pcap), timeout=360)
    assert report["backend"] == "kernel"
    rows = tshark_fields(pcap, ["ip.proto", "ip.src", "ip.dst"], "ip.check_checksum:TRUE")
    tunnelled = [r for r in rows if r[0].startswith("4,") and r[1].startswith("10.1.0.1,")]
    assert len(tunnelled) > 100, rows[:20]
    other = [r for r in tunnelled if r[2] != "10.2.0.1,10.1.0.100"]
    assert not other, (len(other), len(tunnelled), other[:10])
