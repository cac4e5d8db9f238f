"""The mobile node's gratuitous ARPs (RFC 5944 4.6, on returning home) leave through one
long-lived packet socket, as net/vmac.announce does (commit 0650035), not a socket per frame:
a unit with a recording socket, and the real frames on a veth in namespaces."""

from __future__ import annotations

import signal
import socket
import sys
from ipaddress import IPv4Address, IPv4Network
from typing import Any

import pytest
from recording_socket import RecordingSocket

from mobileip.agents.mn import daemon as mnd
from mobileip.log import Logger
from mobileip.net import netlink

HOME = IPv4Address("10.77.0.5")


def config(interface: str) -> mnd.MobileNodeConfig:
    return mnd.MobileNodeConfig(
        "mn.toml", interface, HOME, IPv4Address("10.77.0.1"), IPv4Network("10.77.0.0/24"), 256,
        b"k" * 16,
    )  # fmt: skip


def test_gratuitous_arps_reuse_one_packet_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    RecordingSocket.made = []
    monkeypatch.setattr(socket, "socket", RecordingSocket)  # every module's socket.socket
    mn = mnd.MobileNodeDaemon(config("lo"), Logger(level="error"))
    for _ in range(3):
        mn._gratuitous_arp()
    assert len(RecordingSocket.made) == 1  # not one per frame
    s = RecordingSocket.made[0]
    assert s.args == (socket.AF_PACKET, socket.SOCK_RAW, 0) and not s.blocking
    mac = bytes(6)  # lo's address
    assert s.sent == [(netlink.gratuitous_arp_frame(mac, HOME), ("lo", netlink.ETH_P_ARP))] * 3
    assert mn.garp is s


def test_a_failed_send_is_logged_and_the_socket_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    RecordingSocket.made = []
    monkeypatch.setattr(socket, "socket", RecordingSocket)
    events: list[str] = []
    log = Logger(level="error")
    log.listeners.append(lambda level, event, fields: events.append(event))
    mn = mnd.MobileNodeDaemon(config("lo"), log)
    mn._gratuitous_arp()

    def down(frame: bytes, address: tuple[str, int]) -> int:
        raise OSError(100, "Network is down")

    RecordingSocket.made[0].sendto = down  # type: ignore[method-assign]
    mn._gratuitous_arp()  # no exception: a warning
    assert events == ["mn.garp_failed"] and len(RecordingSocket.made) == 1
    mn2 = mnd.MobileNodeDaemon(config("no-such-if0"), log)
    mn2._gratuitous_arp()  # no MAC to read: logged, no socket opened
    assert events[-1] == "mn.garp_failed" and mn2.garp is None


SENDER = """
import socket, sys
from mobileip.agents.mn import daemon as mnd
from mobileip.log import Logger
sys.path.insert(0, {tests!r})
from test_mn_garp import config
made = []
real = socket.socket
class Counting(real):
    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        made.append(self)
socket.socket = Counting
mn = mnd.MobileNodeDaemon(config({ifname!r}), Logger())
for _ in range(3):
    mn._gratuitous_arp()
print("sockets", len(made), flush=True)
"""

LISTENER = """
import socket, struct
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
s.bind(({ifname!r}, 0x0806))
s.settimeout(10)
print("ready", flush=True)
for _ in range(3):
    frame = s.recv(2048)
    op = struct.unpack("!H", frame[20:22])[0]
    print("arp op", op, "from", frame[22:28].hex(), "sender", socket.inet_ntoa(frame[28:32]),
          "target", socket.inet_ntoa(frame[38:42]), "to", frame[0:6].hex(), flush=True)
"""


def test_three_gratuitous_arps_on_the_wire_through_one_socket(seg: Any) -> None:
    from pathlib import Path

    tests = str(Path(__file__).resolve().parent)
    mn = seg.add_member("mn", "10.77.0.5/24")
    peer = seg.add_member("peer", "10.77.0.9/24")
    listener = seg.spawn(peer, [sys.executable, "-c", LISTENER.format(ifname=peer.ifname)])
    listener.wait_for("ready", timeout=10)
    sender = seg.spawn(
        mn, [sys.executable, "-c", SENDER.format(tests=tests, ifname=mn.ifname)], label="mn"
    )
    assert sender.wait_for(r"^sockets ", timeout=20).text == "sockets 1"
    mac = seg.run(mn, ["cat", f"/sys/class/net/{mn.ifname}/address"]).stdout.strip()
    for _ in range(3):
        line = listener.wait_for(r"^arp op", timeout=10).text
        assert line == (
            f"arp op 1 from {mac.replace(':', '')} sender 10.77.0.5 target 10.77.0.5 "
            "to ffffffffffff"
        )
    assert "mn.garp_failed" not in sender.output()


PEER = """
import socket, struct, sys, time
from ipaddress import IPv4Address
from mobileip.wire import agent_adv as adv
arp = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
arp.bind(({ifname!r}, 0x0806))
arp.settimeout(0.2)
icmp = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
ad = adv.AgentAdvertisement(1, 600, adv.FLAG_H, router_addresses=((IPv4Address({ha!r}), 0),))
print("ready", flush=True)
deadline = time.monotonic() + 20
while time.monotonic() < deadline:
    icmp.sendto(ad.encode(), ({home!r}, 0))  # the home agent's advertisement: we are home
    try:
        frame = arp.recv(2048)
    except TimeoutError:
        continue
    if frame[6:12] == bytes.fromhex({mac!r}) and frame[20:22] == b"\\x00\\x01":
        print("garp sender", socket.inet_ntoa(frame[28:32]), "target",
              socket.inet_ntoa(frame[38:42]), "to", frame[0:6].hex(), flush=True)
"""


def test_the_mobile_node_daemon_at_home_announces_through_one_packet_socket(
    seg: Any, tmp_path: Any
) -> None:
    """The real ``mobileip mobilenode`` hears its home agent's advertisement on its home link
    (RFC 5944 4.6): two gratuitous ARPs on the wire, and one packet socket in its namespace
    while it runs (the old code closed a socket per frame: none left)."""
    mn = seg.add_member("mn", "10.77.0.5/24")
    peer = seg.add_member("ha", "10.77.0.9/24")
    config = tmp_path / "mn.toml"
    config.write_text(
        "[mobilenode]\n"
        f'interface = "{mn.ifname}"\n'
        'home_address = "10.77.0.5"\n'
        'home_agent = "10.77.0.9"\n'
        'home_network = "10.77.0.0/24"\n'
        "spi = 256\n"
        'key = "00112233445566778899aabbccddeeff"\n'
        "manage_routes = false\n"
        "agent_timeout = 30.0\n"
    )
    mac = seg.run(mn, ["cat", f"/sys/class/net/{mn.ifname}/address"]).stdout.strip()
    script = PEER.format(
        ifname=peer.ifname, ha="10.77.0.9", home="10.77.0.5", mac=mac.replace(":", "")
    )
    ha = seg.spawn(peer, [sys.executable, "-c", script], label="ha")
    ha.wait_for("ready", timeout=10)
    daemon = seg.spawn(
        mn, [sys.executable, "-m", "mobileip", "mobilenode", "--config", str(config)], label="mn"
    )
    daemon.wait_for(r"event=mn\.home", timeout=20)
    for _ in range(2):  # before and after the (skipped: never registered) deregistration
        line = ha.wait_for(r"^garp ", timeout=10).text
        assert line == "garp sender 10.77.0.5 target 10.77.0.5 to ffffffffffff"
    packet = seg.run(mn, ["cat", "/proc/net/packet"]).stdout.splitlines()
    assert len(packet) == 2, packet  # the header and the mobile node's one socket
    daemon.signal(signal.SIGTERM)
    daemon.wait_for(r"event=mn\.stopped", timeout=10)
    assert "mn.garp_failed" not in daemon.output()
