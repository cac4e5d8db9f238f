"""RFC 3543 with the real daemons in network namespaces: a Home Agent (``build_daemon`` plus the
revocation service, which the HA's configuration cannot turn on yet: a small launcher attaches
it), ``mobileip foreignagent`` and ``mobileip mobilenode`` on one segment.

The mobile node registers through the foreign agent, which negotiates revocation; ``mobileip
clear binding`` on the Home Agent sends a Registration Revocation whose first copy the launcher
drops; the retransmission reaches the foreign agent, which acks, removes the visitor and tells the
mobile node (I bit); the Home Agent logs the ack after two attempts."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
from netns import Member, Process, Segment
from pcapio import read_capture_until

from mobileip.config import to_toml

pytestmark = pytest.mark.root

HA_IP = "10.2.0.10"
FA_IP = "10.2.0.1"
HOME = "10.1.0.100"
SPI = 256
KEY = "00112233445566778899aabbccddeeff"
FA_HA_SPI = 4096
FA_HA_KEY = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"

LAUNCHER = """
import asyncio, sys
from ipaddress import IPv4Address
from mobileip.compose.homeagent import build_daemon
from mobileip.config import load_config
from mobileip.core.revocation import RevocationSettings
from mobileip.core.security import SecurityAssociation
from mobileip.daemon.revocation import RevocationService
from mobileip.log import Logger

config = load_config(sys.argv[1])
daemon = build_daemon(config, Logger("text", "info"))
sa = SecurityAssociation(int(sys.argv[3]), "hmac-md5", bytes.fromhex(sys.argv[4]), ())
dropped = []

def drop_first(send):
    if not dropped:
        dropped.append(send)
        print("test.dropped_first_revocation", flush=True)
        return True
    return False

RevocationService(
    daemon,
    RevocationSettings(config.homeagent.address, {IPv4Address(sys.argv[2]): sa},
                       initial_timeout=0.5),
    drop=drop_first,
)
asyncio.run(daemon.serve())
"""


def start_foreign_link(
    seg: Segment, fa: Member, mn: Member, fa_ip: str, home_agent: str, tmp_path: Path
) -> tuple[Path, Process, Process, Process]:
    """dumpcap on the foreign link, ``mobileip foreignagent`` (care-of address ``fa_ip``, the
    FA-HA key for revocations) and ``mobileip mobilenode`` (HOME, home agent ``home_agent``)
    through it; returns once the agent holds the visitor: the pcap, dumpcap, the FA, the MN."""
    fa_cfg = {
        "foreignagent": {
            "interface": fa.ifname,
            "care_of_address": fa_ip,
            "advertisement_interval": 0.5,
            "max_lifetime": 600,
            "revocation_spi": FA_HA_SPI,
            "revocation_key": FA_HA_KEY,
            "tun_name": f"{seg.prefix}t",
        }
    }
    mn_cfg = {
        "mobilenode": {
            "interface": mn.ifname,
            "home_address": HOME,
            "home_agent": home_agent,
            "home_network": "10.1.0.0/24",
            "spi": SPI,
            "key": KEY,
            "lifetime": 120,
            "agent_timeout": 3.0,
        }
    }
    for name, cfg in (("fa", fa_cfg), ("mn", mn_cfg)):
        (tmp_path / f"{name}.toml").write_text(to_toml(cfg))
    pcap = tmp_path / "foreign-link.pcap"
    cap = seg.spawn(fa, ["dumpcap", "-i", fa.ifname, "-f", "udp port 434", "-w", str(pcap)], "cap")
    cap.wait_for(r"Capturing on", 20)
    py = sys.executable
    fa_argv = [py, "-m", "mobileip", "foreignagent", "--config", str(tmp_path / "fa.toml")]
    fa_proc = seg.spawn(fa, fa_argv, "fa")
    fa_proc.wait_for(r"foreignagent\.started", 30)
    mn_argv = [py, "-m", "mobileip", "mobilenode", "--config", str(tmp_path / "mn.toml")]
    mn_proc = seg.spawn(mn, mn_argv, "mn")
    mn_proc.wait_for(r"mn\.registered", 40)
    fa_proc.wait_for(rf"visitor\.added.*{HOME}", 10)
    return pcap, cap, fa_proc, mn_proc


@pytest.mark.skipif(shutil.which("dumpcap") is None, reason="needs dumpcap (tshark)")
def test_clear_binding_revokes_through_the_real_fa_and_mn_daemons(
    seg: Segment, tmp_path: Path
) -> None:
    ha = seg.add_member("ha", f"{HA_IP}/24")
    fa = seg.add_member("fa", f"{FA_IP}/24")
    mn = seg.add_member("mn", f"{HOME}/32")  # away from home with its home address
    control = "127.0.0.1:8434"  # inside the HA's namespace
    ha_cfg = {
        "homeagent": {"address": HA_IP, "listen": HA_IP, "max_lifetime": 600},
        "security_association": [
            {"spi": SPI, "algorithm": "hmac-md5", "key": KEY, "home_addresses": ["10.1.0.0/24"]}
        ],
        "control": {"listen": control},
    }
    ha_path = tmp_path / "ha.toml"
    ha_path.write_text(to_toml(ha_cfg))
    launcher = tmp_path / "ha_launcher.py"
    launcher.write_text(LAUNCHER)
    py = sys.executable
    ha_proc = seg.spawn(
        ha, [py, str(launcher), str(ha_path), FA_IP, str(FA_HA_SPI), FA_HA_KEY], "ha"
    )
    ha_proc.wait_for(r"homeagent\.started", 30)
    pcap, cap, fa_proc, mn_proc = start_foreign_link(seg, fa, mn, FA_IP, HA_IP, tmp_path)

    res = seg.run(ha, [py, "-m", "mobileip", "clear", "binding", HOME, "--control", control])
    assert res.returncode == 0, res.stdout + res.stderr
    ha_proc.wait_for(r"revocation\.sent", 10)
    ha_proc.wait_for(r"test\.dropped_first_revocation", 10)
    ha_proc.wait_for(r"revocation\.retransmitted", 10)
    line = ha_proc.wait_for(r"revocation\.acked", 15)
    assert "attempts=2" in line.text and "informed=True" in line.text
    removed = fa_proc.wait_for(rf"visitor\.removed.*{HOME}", 10)
    assert "revoked" in removed.text

    # what crossed the foreign link, as Wireshark's mip dissector reads it (dumpcap writes its
    # file in batches: read it until the ack and the reply to the MN are in, then stop it)
    fields = ["ip.src", "ip.dst", "mip.type", "mip.code", "mip.ext.type", "mip.rev.a",
              "mip.rev.i", "mip.revid", "mip.ack.i", "_ws.malformed"]  # fmt: skip

    def ack_and_reply(rows: list[dict[str, str]]) -> bool:
        types = {(r["mip.type"], r["mip.code"]) for r in rows}
        return ("15", "") in types and ("3", "65") in types

    rows = read_capture_until(pcap, fields, ack_and_reply)
    cap.stop()
    assert all(not r.get("_ws.malformed") for r in rows)
    relayed = [r for r in rows if r["mip.type"] == "1" and r["ip.src"] == FA_IP]
    assert relayed and all(r["mip.ext.type"].split(",")[-2:] == ["137", "34"] for r in relayed)
    accepted = [r for r in rows if r["mip.type"] == "3" and r["ip.src"] == HA_IP]
    assert accepted and "137" in accepted[0]["mip.ext.type"].split(",")
    revocations = [r for r in rows if r["mip.type"] == "7"]
    assert len(revocations) == 1  # the first copy never left the Home Agent
    assert (revocations[0]["ip.src"], revocations[0]["ip.dst"]) == (HA_IP, FA_IP)
    assert (revocations[0]["mip.rev.a"], revocations[0]["mip.rev.i"]) == ("1", "1")
    [ack] = [r for r in rows if r["mip.type"] == "15"]
    assert (ack["ip.src"], ack["ip.dst"], ack["mip.ack.i"]) == (FA_IP, HA_IP, "1")
    assert ack["mip.revid"] == revocations[0]["mip.revid"]
    told = [r for r in rows if r["mip.type"] == "3" and r["mip.code"] == "65"]
    assert told and told[0]["ip.dst"] == HOME  # the I bit: the FA told the mobile node
    print(f"\n{ha_proc.output()}\n{fa_proc.output()}\n{mn_proc.output()}")
