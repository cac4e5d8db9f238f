"""RFC 3519's R flag (a co-located mobile node registering through a foreign agent whose
advertisement set R and U), sans-IO: the Home Agent's rules (core/nat.py through HomeAgentCore),
the half-bound binding and its first keepalive in the data plane (dataplane/udp_tunnel.py), the
foreign agent's relay (agents/fa/rules.py) and the mobile node's request (agents/mn/nat.py).

RFC 3519 4.6: "If the home agent receives a Registration Request with the 'R' flag set [...] it
SHOULD reply with an assenting UDP Tunnel Reply [...] the home agent MUST wait for the first
keepalive packet from the mobile node [...] MUST check that the outer source address (but not the
port) of this keepalive packet is identical with the source address of the corresponding
registration request." End to end through a real NAT: tests/test_kernel_nat_rflag.py."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import socket
import threading
import time
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest
import test_nat_core
import vectors as v
from sync_strategies import AUTH
from test_nat_core import NAT_SOURCE, NOW, PRIVATE_COA, binding, handle, make_core, request

from mobileip.agents import client as mnc
from mobileip.agents.fa import rules
from mobileip.agents.mn.daemon import Agent, MobileNodeConfig, MobileNodeDaemon, load_mn_config
from mobileip.agents.mn.nat import NatTunnel
from mobileip.config.errors import ConfigError
from mobileip.core import homeagent as ha
from mobileip.core.bindings import Binding, MobilityRecord
from mobileip.core.security import append_auth
from mobileip.dataplane.backend import TunnelBackend, spec_for
from mobileip.dataplane.udp_tunnel import UdpTunnelPath
from mobileip.log import Logger
from mobileip.sync import records as codec
from mobileip.wire import agent_adv as adv
from mobileip.wire import nat
from mobileip.wire import registration as wire
from mobileip.wire import sync as w

R = nat.UdpTunnelRequest(flags=nat.REQUEST_R)
FA_PUBLIC = int(IPv4Address(NAT_SOURCE[0]))
MN_PORT = 61000  # the NAT's port for the mobile node's own socket (its keepalive's source)


def test_r_is_accepted_half_bound_even_without_a_nat_signal() -> None:
    core = make_core()
    # the relaying foreign agent's NAT-ed source: the usual NAT signal, but not the MN's mapping
    out, reply = handle(core, request(tunnel=R))
    assert out.code == 0 and reply is not None and reply.accepted
    assert binding(core) == (FA_PUBLIC, 0)
    assert core.nat is not None and core.nat.stats.decisions["half-bound"] == 1
    # no source mismatch at all (an FA on the public side whose address is the CoA's): still R
    core = make_core()
    out, reply = handle(core, request(tunnel=R), (str(PRIVATE_COA), 434))
    assert out.code == 0 and reply is not None and reply.accepted
    assert binding(core) == (int(PRIVATE_COA), 0)


def test_r_with_force_is_still_half_bound() -> None:
    core = make_core()
    flags = nat.REQUEST_R | nat.REQUEST_F
    out, _ = handle(core, request(tunnel=nat.UdpTunnelRequest(flags=flags)))
    assert out.code == 0 and binding(core) == (FA_PUBLIC, 0)


def test_r_without_d_is_poorly_formed_134() -> None:
    core = make_core()
    out, reply = handle(core, request(tunnel=R, flags=0))
    assert out.code == 134 and reply is not None and reply.code == nat.CODE_DECLINED
    assert core.table.get(int(v.HOME)) is None


@pytest.mark.parametrize("encap", [nat.ENCAP_GRE, nat.ENCAP_MINIMAL])
def test_r_with_another_encapsulation_is_142(encap: int) -> None:
    core = make_core()
    out, reply = handle(core, request(tunnel=nat.UdpTunnelRequest(encap, nat.REQUEST_R)))
    assert out.code == 142 and reply is not None and reply.code == nat.CODE_DECLINED


def test_r_with_nat_traversal_off_is_142() -> None:
    core = make_core(enabled=False)
    out, reply = handle(core, request(tunnel=R))
    assert out.code == 142 and reply is not None and reply.code == nat.CODE_DECLINED


def test_first_keepalive_binds_the_port_as_a_new_version() -> None:
    core = make_core()
    handle(core, request(tunnel=R))
    before = core.table.get(int(v.HOME))
    assert before is not None
    (event,) = core.nat_rebind(int(v.HOME), (FA_PUBLIC, 0), (FA_PUBLIC, MN_PORT), NOW + 0.1)
    assert isinstance(event, ha.BindingChanged)
    assert event.record.version > before.version
    assert binding(core) == (FA_PUBLIC, MN_PORT)
    # an IP-in-IP binding (address 0, port 0) is never "rebound"
    assert core.nat_rebind(int(v.HOME), (0, 0), (FA_PUBLIC, 1), NOW) == []


def test_renewal_through_the_fa_keeps_the_keepalives_port() -> None:
    core = make_core()
    handle(core, request(tunnel=R))
    core.nat_rebind(int(v.HOME), (FA_PUBLIC, 0), (FA_PUBLIC, MN_PORT), NOW)
    out, _ = handle(core, request(tunnel=R))  # the FA relays the renewal from its own port
    assert out.code == 0 and binding(core) == (FA_PUBLIC, MN_PORT)
    # another NAT address (the MN moved behind another FA/NAT): half bound again
    out, _ = handle(core, request(tunnel=R), ("203.0.113.50", 434))
    assert out.code == 0 and binding(core) == (int(IPv4Address("203.0.113.50")), 0)


def test_half_bound_mapping_replicates_unchanged() -> None:
    """The sync record carries the half-bound mapping (port 0) and the bound one as they are."""
    core = make_core()
    handle(core, request(tunnel=R))
    for mapping in ((FA_PUBLIC, 0), (FA_PUBLIC, MN_PORT)):
        if mapping[1]:
            core.nat_rebind(int(v.HOME), (FA_PUBLIC, 0), mapping, NOW)
        rec = core.table.get(int(v.HOME))
        assert rec is not None
        msg = w.BindingUpdate(1, 2, 3, 4, (codec.to_state(rec, NOW),))
        decoded = w.decode(w.encode(msg, AUTH), AUTH)
        assert isinstance(decoded, w.BindingUpdate)
        (b,) = codec.from_state(decoded.records[0], NOW).bindings
        assert (b.udp_address, b.udp_port) == mapping


# --- the data plane: nothing sent while half bound, the keepalive binds -------------------------

HA_ADDR = IPv4Address("10.1.0.1")
HOME = IPv4Address("10.1.0.5")
CN = IPv4Address("10.9.0.2")
FA_NAT = IPv4Address("198.51.100.9")


def half_bound_rig() -> tuple[UdpTunnelPath, list[object], list[bytes], list[object]]:
    backend = TunnelBackend(lambda *a, **k: None)
    backend.own = frozenset({HA_ADDR})  # type: ignore[attr-defined]
    rec = MobilityRecord(
        int(HOME),
        1,
        0,
        int(HA_ADDR),
        (Binding(int(PRIVATE_COA), 600, math.inf, int(wire.Flags.D), int(FA_NAT), 0),),
    )
    spec = spec_for(rec)
    assert spec is not None
    assert spec.udp == ((FA_NAT, 0),) and spec.exits == ()  # never IP-in-IP to the private CoA
    backend.track(spec)
    sent: list[object] = []
    written: list[bytes] = []
    rebinds: list[object] = []
    path = UdpTunnelPath(
        backend,
        lambda d, a, s: sent.append((d, a, s)) is None,
        written.append,
        str(HA_ADDR),
        lambda h, o, n: rebinds.append((h, o, n)),
    )
    return path, sent, written, rebinds


def test_half_bound_sends_nothing_and_only_a_keepalive_binds() -> None:
    path, sent, written, rebinds = half_bound_rig()
    path.forward(nat.icmp_echo(CN, HOME, 1, 1), ((FA_NAT, 0),))
    assert sent == [] and path.counters["udp-half-bound"] == 1
    # data (not a keepalive) from the right address: not enough to bind (RFC 3519 4.6)
    data = nat.encapsulate(nat.icmp_echo(HOME, CN, 1, 1))
    path.received(data, (str(FA_NAT), MN_PORT), str(HA_ADDR))
    assert rebinds == [] and written == [] and path.counters["udp-drop-half-bound"] == 1
    # a keepalive from another address: dropped (no hijack by a bogus keepalive, RFC 3519 6.1.2)
    ka = nat.keepalive(HOME, HA_ADDR, 1)
    path.received(ka, ("203.0.113.66", MN_PORT), str(HA_ADDR))
    assert rebinds == [] and path.counters["udp-drop-unregistered"] == 1
    # the keepalive from the registration's source address, the MN's own port: binds
    path.received(ka, (str(FA_NAT), MN_PORT), str(HA_ADDR))
    assert rebinds == [(int(HOME), (int(FA_NAT), 0), (int(FA_NAT), MN_PORT))]
    assert written == [ka[nat.TUNNEL_HEADER_LEN :]]


# --- the foreign agent relays a co-located registration with R --------------------------------

FA_COA = IPv4Address("192.168.78.1")
MN_COA = IPv4Address("192.168.78.20")


def fa_core(nat_traversal: bool = True) -> rules.ForeignAgentCore:
    return rules.ForeignAgentCore(
        rules.ForeignAgentSettings(frozenset({FA_COA}), nat_traversal=nat_traversal)
    )


def colocated_request(tunnel: nat.UdpTunnelRequest | None, flags: int = int(wire.Flags.D)) -> bytes:
    exts = (tunnel.extension(),) if tunnel is not None else ()
    body = wire.encode(
        wire.RegistrationRequest(wire.Flags(flags), 600, v.HOME, v.HA, MN_COA, 7, exts)
    )
    return body + bytes([wire.EXT_MN_HA_AUTH, 20]) + bytes(20)  # an opaque authenticator


@pytest.mark.parametrize("nat_traversal", [True, False])
def test_fa_relays_a_colocated_request_with_r_unchanged(nat_traversal: bool) -> None:
    fa = fa_core(nat_traversal)
    data = colocated_request(R)
    out = fa.handle_request(data, (str(MN_COA), 434), 0.0)
    (send,) = out.sends
    # RFC 3519 4.5: no UDP Tunnel Request of the FA's own (it would tunnel to the FA)
    assert send.data == data and send.dest == (str(v.HA), 434)
    assert fa.counters["requests-colocated"] == 1
    reply = wire.encode(
        wire.RegistrationReply(
            0,
            600,
            v.HOME,
            v.HA,
            7,
            (nat.UdpTunnelReply(nat.CODE_WILL_TUNNEL, 25).extension(),),
        )
    )
    out = fa.handle_reply(reply, (str(v.HA), 434), 0.1)
    (send,) = out.sends
    assert send.data == reply and send.dest == (str(MN_COA), 434)
    assert fa.visitors == {}  # no visitor: the tunnel ends at the mobile node, not here
    assert fa.counters["replies-colocated"] == 1


def test_fa_refuses_a_colocated_request_from_another_address_or_without_d() -> None:
    fa = fa_core()
    out = fa.handle_request(colocated_request(R), ("192.168.78.99", 434), 0.0)
    assert [e.code for e in out.events if isinstance(e, rules.Denied)] == [rules.FA_INVALID_COA]
    out = fa.handle_request(colocated_request(R, flags=0), (str(MN_COA), 434), 0.0)
    assert [e.code for e in out.events if isinstance(e, rules.Denied)] == [rules.FA_INVALID_COA]


def test_fa_relays_a_colocated_request_without_the_extension_without_adding_one() -> None:
    fa = fa_core(nat_traversal=True)
    data = colocated_request(None)
    (send,) = fa.handle_request(data, (str(MN_COA), 434), 0.0).sends
    assert send.data == data  # RFC 3519 4.5: MUST NOT add it for a co-located registration


# --- the mobile node: R only with U, tunnel data to the home agent, the first keepalive ---------


class _Cfg:
    nat_force = False

    def __init__(self, port: int) -> None:
        self.home_agent = IPv4Address("127.0.0.1")
        self.port = port


class _Node:
    def __init__(self, client: mnc.RegistrationClient, port: int) -> None:
        self.cfg = _Cfg(port)
        self.log = Logger()
        self.home = IPv4Address("10.1.0.5")
        self.tun_fd = -1
        self.client: mnc.RegistrationClient | None = client
        self.decapsulated = 0
        self.dropped = 0


def test_mn_sets_r_only_with_u_and_keepalives_go_to_the_home_agent_at_once() -> None:
    ha_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    ha_sock.bind(("127.0.0.1", 0))
    ha_sock.settimeout(2.0)
    fa_addr = ("127.0.0.2", 434)  # registrations go here; tunnel data must not
    mn = mnc.MobileNode(v.HOME, PRIVATE_COA, v.HA, test_nat_core.SA)
    client = mnc.RegistrationClient(mn, fa_addr, bind=("127.0.0.1", 0))
    node = _Node(client, ha_sock.getsockname()[1])
    tunnel = NatTunnel(node)
    assert nat.find_request(tunnel.request_extensions()) == nat.UdpTunnelRequest()
    tunnel.via_fa, tunnel.fa_udp = True, False
    assert tunnel.request_extensions() == ()  # RFC 3519 4.4: MUST NOT without U
    tunnel.via_fa, tunnel.fa_udp = True, True
    assert nat.find_request(tunnel.request_extensions()) == R
    assert tunnel.peer() == ("127.0.0.1", ha_sock.getsockname()[1])

    async def accepted() -> None:
        ext = nat.UdpTunnelReply(nat.CODE_WILL_TUNNEL, 25).extension()
        tunnel.registered(mnc.RegistrationResult(0, "", 600, extensions=(ext,)))
        tunnel.pause()

    asyncio.run(accepted())
    data, src = ha_sock.recvfrom(2048)  # at once, not after the 25 s interval
    assert src == client.sock.getsockname()
    assert data == nat.keepalive(node.home, node.cfg.home_agent, 1)
    assert tunnel.first_keepalives == 1
    tunnel.tick(time.monotonic() + 1.5)  # one repeat, a second later (UDP may lose the first)
    data, _ = ha_sock.recvfrom(2048)
    assert data == nat.keepalive(node.home, node.cfg.home_agent, 2)
    tunnel.tick(time.monotonic() + 2.0)  # and no more until the interval
    assert tunnel.keepalives == 2
    client.close()
    ha_sock.close()


def test_client_takes_tunnel_data_from_the_home_agent_while_registering_through_an_agent() -> None:
    """During an exchange with the foreign agent, tunnel data comes from the home agent: handed
    to the tunnel, not counted as a stray reply (a renewal would otherwise blank the downlink
    for as long as the exchange lasts)."""
    fa_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    fa_sock.bind(("127.0.0.1", 0))
    ha_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    ha_sock.bind(("127.0.0.1", 0))
    sa = test_nat_core.SA
    mn = mnc.MobileNode(v.HOME, PRIVATE_COA, v.HA, sa)
    got: list[bytes] = []
    ka = nat.keepalive(v.HOME, v.HA, 1)
    stray = nat.keepalive(v.HOME, v.HA, 2)
    with mnc.RegistrationClient(mn, fa_sock.getsockname(), timeout=2.0, retries=0) as client:
        client.on_tunnel_data = got.append
        client.tunnel_from = ha_sock.getsockname()

        def agent() -> None:
            data, src = fa_sock.recvfrom(2048)
            req = wire.decode_request(data)
            ha_sock.sendto(ka, src)  # from the home agent, not the agent
            fa_sock.sendto(stray, src)  # tunnel data from the agent: not the tunnel's
            time.sleep(0.05)
            body = wire.encode(wire.RegistrationReply(0, 600, v.HOME, v.HA, req.identification))
            fa_sock.sendto(append_auth(body, wire.EXT_MN_HA_AUTH, sa), src)

        t = threading.Thread(target=agent)
        t.start()
        result = client.register(600, int(wire.Flags.D))
        t.join()
    fa_sock.close()
    ha_sock.close()
    assert result.accepted, result
    assert got == [ka]


# --- the mobile node daemon: which agent relays, and its configuration -------------------------


def _daemon(**overrides: object) -> MobileNodeDaemon:
    cfg = MobileNodeConfig(
        path="mn.toml",
        interface="eth0",
        home_address=IPv4Address("10.1.0.5"),
        home_agent=IPv4Address("10.1.0.1"),
        home_network=IPv4Network("10.1.0.0/24"),
        spi=256,
        key=bytes(16),
        colocated_care_of_address=MN_COA,
        nat_traversal=True,
        honour_registration_required=True,
    )
    return MobileNodeDaemon(dataclasses.replace(cfg, **overrides), Logger())  # type: ignore[arg-type]


def _advert(flags: int, flags2: int = 0) -> adv.AgentAdvertisement:
    return adv.AgentAdvertisement(1, 600, flags, flags2, (FA_COA,))


def test_mn_registers_through_an_agent_advertising_r_and_sets_r_only_with_u() -> None:
    node = _daemon()
    assert node.nat is not None
    node._heard(FA_COA, _advert(adv.FLAG_F))  # no R: not required, straight to the HA
    assert node.relay is None and not node.nat.via_fa
    node._heard(FA_COA, _advert(adv.FLAG_F | adv.FLAG_R, adv.FLAG_U))
    assert node.relay == FA_COA and node.nat.via_fa and node.nat.fa_udp
    assert nat.find_request(node.nat.request_extensions()) == R
    assert node._via(Agent(node.cfg.home_agent, MN_COA, home=False)) == FA_COA
    node._heard(FA_COA, _advert(adv.FLAG_F | adv.FLAG_R))  # U gone: no UDP Tunnel Request
    assert node.relay == FA_COA and node.nat.request_extensions() == ()
    node._set_relay(None, False)  # the agent fell silent
    assert not node.nat.via_fa and nat.find_request(node.nat.request_extensions()) is not None


def test_mn_config_honour_registration_required_needs_a_colocated_address(tmp_path: Path) -> None:
    path = tmp_path / "mn.toml"
    base = (
        '[mobilenode]\ninterface = "eth0"\nhome_address = "10.1.0.5"\nhome_agent = "10.1.0.1"\n'
        'home_network = "10.1.0.0/24"\nspi = 256\nkey = "00112233445566778899aabbccddeeff"\n'
    )
    path.write_text(base + 'colocated_care_of_address = "192.168.78.20"\n'
                    "honour_registration_required = true\n")  # fmt: skip
    assert load_mn_config(str(path)).honour_registration_required
    path.write_text(base + "honour_registration_required = true\n")
    with pytest.raises(ConfigError, match="honour_registration_required"):
        load_mn_config(str(path))
