"""RFC 3519 at our agents, sans-IO where possible: the foreign agent relays the UDP Tunnel
Request and Reply unchanged (and refuses a co-located care-of address, so an R-flag registration
through it is denied 77), the mobile node's request carries the extension and its client hands
tunnel data to the tunnel."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from ipaddress import IPv4Address, IPv4Network

from mobileip.agents import client as mnc
from mobileip.agents.fa import rules as fa
from mobileip.agents.mn.nat import NatTunnel
from mobileip.core.security import SecurityAssociation, append_auth
from mobileip.log import Logger
from mobileip.wire import nat
from mobileip.wire import registration as wire

A = IPv4Address
COA = A("10.2.0.1")
HA = A("10.1.0.1")
HOME = A("10.1.0.100")
MN = (str(HOME), 50000)
HA_PORT = (str(HA), 434)
AUTH = bytes.fromhex("2014000001000123456789abcdef0123456789abcdef")


def core() -> fa.ForeignAgentCore:
    return fa.ForeignAgentCore(fa.ForeignAgentSettings(frozenset({COA})))


def test_fa_relays_request_and_reply_extensions_unchanged() -> None:
    c = core()
    ext = nat.UdpTunnelRequest(flags=nat.REQUEST_R).extension()
    req = wire.encode(wire.RegistrationRequest(wire.Flags(0), 600, HOME, HA, COA, 7, (ext,)))
    data = req + AUTH
    out = c.handle_request(data, MN, now=1.0)
    assert out.sends == [fa.Send(data, HA_PORT)]
    reply_ext = nat.UdpTunnelReply(nat.CODE_DECLINED).extension()
    rep = wire.encode(wire.RegistrationReply(0, 600, HOME, HA, 7, (reply_ext,))) + AUTH
    out = c.handle_reply(rep, HA_PORT, now=1.1)
    assert out.sends == [fa.Send(rep, MN)]  # type 44 is recognised: not a critical unknown


def test_fa_refuses_a_care_of_address_not_its_own_from_another_source() -> None:
    c = core()
    ext = nat.UdpTunnelRequest(flags=nat.REQUEST_R).extension()
    private = A("192.168.5.9")
    req = wire.RegistrationRequest(wire.Flags.D, 600, HOME, HA, private, 7, (ext,))
    out = c.handle_request(wire.encode(req) + AUTH, MN, now=1.0)
    [send] = out.sends
    assert send.dest == MN and wire.decode_reply(send.data).code == fa.FA_INVALID_COA


SA = SecurityAssociation(256, "hmac-md5", bytes(16), (IPv4Network("10.1.0.0/24"),))


def test_mn_request_carries_the_extension_before_the_authenticator() -> None:
    ext = nat.UdpTunnelRequest(flags=nat.REQUEST_F).extension()
    mn = mnc.MobileNode(HOME, COA, HA, SA, extensions=(ext,))
    req = wire.decode_request(mnc.build_request(mn, 600, 5, int(wire.Flags.D)))
    assert [e.type for e in req.extensions] == [nat.EXT_UDP_TUNNEL_REQUEST, wire.EXT_MN_HA_AUTH]
    found = nat.find_request(req.extensions)
    assert found is not None and found.force


def test_client_hands_tunnel_data_to_the_tunnel_and_reads_the_reply_extension() -> None:
    """A loopback 'home agent' sends tunnel data, then the reply with a UDP Tunnel Reply."""
    ha_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    ha_sock.bind(("127.0.0.1", 0))
    mn = mnc.MobileNode(HOME, COA, HA, SA)
    got: list[bytes] = []
    with mnc.RegistrationClient(mn, ha_sock.getsockname(), timeout=2.0, retries=0) as client:
        client.on_tunnel_data = got.append

        def home_agent() -> None:
            data, src = ha_sock.recvfrom(2048)
            req = wire.decode_request(data)
            ha_sock.sendto(nat.keepalive(HOME, HA, 1), src)
            ext = nat.UdpTunnelReply(nat.CODE_WILL_TUNNEL, 30).extension()
            body = wire.encode(wire.RegistrationReply(0, 600, HOME, HA, req.identification, (ext,)))
            ha_sock.sendto(append_auth(body, wire.EXT_MN_HA_AUTH, SA), src)

        t = threading.Thread(target=home_agent)
        t.start()
        result = client.register(600, int(wire.Flags.D))
        t.join()
    ha_sock.close()
    assert result.accepted, result
    assert got == [nat.keepalive(HOME, HA, 1)]
    assert nat.find_reply(result.extensions) == nat.UdpTunnelReply(0, 30)


# --- the mobile node's tunnel (agents/mn/nat.py), with a pipe for its TUN ---------------------


class _Cfg:
    home_agent = HA
    nat_force = True
    port = 434


class _Node:
    def __init__(self, tun_fd: int, client: mnc.RegistrationClient) -> None:
        self.cfg = _Cfg()
        self.log = Logger()
        self.home = HOME
        self.tun_fd = tun_fd
        self.client: mnc.RegistrationClient | None = client
        self.decapsulated = 0
        self.dropped = 0


def test_mn_tunnel_takes_only_tunnel_data_for_its_home_and_follows_the_reply() -> None:
    read_end, write_end = os.pipe()
    ha_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    ha_sock.bind(("127.0.0.1", 0))
    client = mnc.RegistrationClient(mnc.MobileNode(HOME, COA, HA, SA), ha_sock.getsockname())
    node = _Node(write_end, client)
    tunnel = NatTunnel(node)
    assert nat.find_request(tunnel.request_extensions()) == nat.UdpTunnelRequest(
        flags=nat.REQUEST_F
    )
    for_us = nat.icmp_echo(A("192.0.2.10"), HOME, 1, 1)
    tunnel.tunnel_data(nat.encapsulate(for_us))
    tunnel.tunnel_data(nat.encapsulate(nat.icmp_echo(A("192.0.2.10"), A("10.1.0.7"), 1, 1)))
    tunnel.tunnel_data(b"\x04\x2f\x00\x00" + for_us)  # next header GRE: not ours
    tunnel.tunnel_data(b"\x04")
    assert os.read(read_end, 4096) == for_us
    assert (node.decapsulated, node.dropped) == (1, 3)

    def result(ext: wire.Extension | None, code: int = 0) -> mnc.RegistrationResult:
        return mnc.RegistrationResult(code, "", 600, extensions=(ext,) if ext else ())

    async def follow() -> list[bool]:
        seen = []
        tunnel.registered(result(nat.UdpTunnelReply(0, 25).extension()))
        seen.append(tunnel.active and tunnel.keepalive == 25)
        tunnel.registered(result(None, 133))  # a denial keeps the tunnel as it was
        seen.append(tunnel.active)
        tunnel.registered(result(nat.UdpTunnelReply(nat.CODE_DECLINED).extension()))
        seen.append(not tunnel.active)
        tunnel.pause()
        return seen

    assert asyncio.run(follow()) == [True, True, True]
    client.close()
    ha_sock.close()
    os.close(read_end)
    os.close(write_end)
