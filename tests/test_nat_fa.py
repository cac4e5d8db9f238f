"""RFC 3519 with our foreign agent behind a NAT, sans-IO: the agent (``nat_traversal``) adds a
UDP Tunnel Request with F after the mobile node's authenticator; our Home Agent's rules grant it
(F, D clear: the NAT cannot be seen in front of a foreign agent) and record the NAT's mapping;
the reply marks the visitor ``udp`` with the keepalive interval. The daemon's data path is tested
in User-Mode Linux (tests/test_kernel_nat_fa.py)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

from mobileip.agents.fa import rules as fa
from mobileip.core import homeagent as ha
from mobileip.core.nat import NatSettings, NatTraversal
from mobileip.core.replay import ntp_from_unix
from mobileip.core.security import SecurityAssociation, SecurityAssociations, append_auth
from mobileip.wire import nat
from mobileip.wire import registration as wire

A = IPv4Address
FA_COA = A("192.168.77.2")  # the foreign agent's care-of address, behind the NAT
NAT_PUBLIC = ("10.2.0.1", 20007)  # what the Home Agent sees as the source
HA = A("10.1.0.1")
HOME = A("10.1.0.100")
MN = (str(HOME), 434)
WALL = 1.8e9
IDENT = ntp_from_unix(WALL)
SA = SecurityAssociation(256, "hmac-md5", bytes(range(16)), (IPv4Network("10.1.0.0/24"),))


def fa_core(nat_traversal: bool = True) -> fa.ForeignAgentCore:
    return fa.ForeignAgentCore(
        fa.ForeignAgentSettings(frozenset({FA_COA}), nat_traversal=nat_traversal)
    )


def ha_core(**settings: object) -> ha.HomeAgentCore:
    core = ha.HomeAgentCore(
        ha.HomeAgentSettings(address=HA, node_id=1, replay="timestamp"),
        SecurityAssociations([SA]),
    )
    core.nat = NatTraversal(NatSettings(keepalive=3, **settings))  # type: ignore[arg-type]
    return core


def mn_request(lifetime: int = 600, ident: int = IDENT, flags: int = 0) -> bytes:
    req = wire.RegistrationRequest(wire.Flags(flags), lifetime, HOME, HA, FA_COA, ident)
    return append_auth(wire.encode(req), wire.EXT_MN_HA_AUTH, SA)


def test_fa_behind_a_nat_gets_a_udp_tunnel_from_our_home_agent() -> None:
    agent, home_agent = fa_core(), ha_core()
    data = mn_request(flags=int(wire.Flags.T))
    [relayed] = agent.handle_request(data, MN, now=1.0).sends
    assert relayed.data.startswith(data)  # the mobile node's bytes, authenticator unchanged
    req = wire.decode_request(relayed.data)
    assert [e.type for e in req.extensions] == [wire.EXT_MN_HA_AUTH, nat.EXT_UDP_TUNNEL_REQUEST]
    asked = nat.find_request(req.extensions)
    assert asked is not None and asked.force and not asked.via_fa
    assert asked.encapsulation == nat.ENCAP_IPIP

    out = home_agent.handle_request(relayed.data, 1.0, WALL, NAT_PUBLIC)
    assert out.code == 0 and out.reply is not None
    rec = home_agent.table.get(int(HOME))
    assert rec is not None
    [binding] = rec.bindings
    assert (IPv4Address(binding.udp_address), binding.udp_port) == (A(NAT_PUBLIC[0]), 20007)
    assert binding.care_of_address == int(FA_COA)
    granted = nat.find_reply(wire.decode_reply(out.reply).extensions)
    assert granted is not None and granted.accepted and granted.keepalive == 3

    back = agent.handle_reply(out.reply, (str(HA), 434), now=1.1)
    assert [s.dest for s in back.sends] == [MN]
    [added] = [e for e in back.events if isinstance(e, fa.VisitorAdded)]
    assert added.visitor.udp and added.visitor.udp_keepalive == 3
    assert agent.visitor_for_reverse(HOME) == added.visitor


def test_declined_or_without_nat_traversal_the_visitor_is_plain() -> None:
    # the Home Agent forces nothing when it does not accept F: declined (64), IP-in-IP
    agent, home_agent = fa_core(), ha_core(accept_forced=False)
    [relayed] = agent.handle_request(mn_request(), MN, now=1.0).sends
    out = home_agent.handle_request(relayed.data, 1.0, WALL, NAT_PUBLIC)
    assert out.code == 0 and out.reply is not None
    rec = home_agent.table.get(int(HOME))
    assert rec is not None and rec.bindings[0].udp_port == 0
    [added] = [
        e
        for e in agent.handle_reply(out.reply, (str(HA), 434), now=1.1).events
        if isinstance(e, fa.VisitorAdded)
    ]
    assert not added.visitor.udp

    # an agent without nat_traversal adds nothing, and ignores a granted reply it never asked
    plain = fa_core(nat_traversal=False)
    data = mn_request()
    [relayed] = plain.handle_request(data, MN, now=1.0).sends
    assert relayed.data == data
    reply = wire.RegistrationReply(0, 600, HOME, HA, IDENT, (nat_reply(),))
    raw = append_auth(wire.encode(reply), wire.EXT_MN_HA_AUTH, SA)
    [added] = [
        e
        for e in plain.handle_reply(raw, (str(HA), 434), now=1.1).events
        if isinstance(e, fa.VisitorAdded)
    ]
    assert not added.visitor.udp


def nat_reply() -> wire.Extension:
    return nat.UdpTunnelReply(nat.CODE_WILL_TUNNEL, 9).extension()


def test_fa_leaves_a_deregistration_and_a_mobile_nodes_own_request_alone() -> None:
    agent = fa_core()
    dereg = mn_request(lifetime=0)
    [relayed] = agent.handle_request(dereg, MN, now=1.0).sends
    assert relayed.data == dereg
    own = nat.UdpTunnelRequest(flags=nat.REQUEST_F).extension()
    req = wire.RegistrationRequest(wire.Flags(0), 600, HOME, HA, FA_COA, 5, (own,))
    data = append_auth(wire.encode(req), wire.EXT_MN_HA_AUTH, SA)
    [relayed] = agent.handle_request(data, MN, now=1.0).sends
    assert relayed.data == data  # one UDP Tunnel Request, the mobile node's
    bad = wire.RegistrationRequest(
        wire.Flags(0), 600, HOME, HA, FA_COA, 6, (wire.UnknownExtension(144, b"\x00"),)
    )
    data = append_auth(wire.encode(bad), wire.EXT_MN_HA_AUTH, SA)
    [relayed] = agent.handle_request(data, MN, now=1.0).sends  # malformed: the HA says 134
    assert relayed.data == data


def test_r_flag_through_our_foreign_agent_is_half_bound_at_our_home_agent() -> None:
    """A co-located mobile node registering through our foreign agent (R, RFC 3519 4.11): the
    agent relays it unchanged (no F of its own, even with nat_traversal), our Home Agent accepts
    it half bound on the agent's source address, and the reply reaches the node with no
    visitor kept (more: tests/test_nat_rflag.py)."""
    agent = fa_core()
    home_agent = ha_core()
    ext = nat.UdpTunnelRequest(flags=nat.REQUEST_R).extension()
    private = A("192.168.78.20")
    req = wire.RegistrationRequest(wire.Flags.D, 600, HOME, HA, private, IDENT, (ext,))
    data = append_auth(wire.encode(req), wire.EXT_MN_HA_AUTH, SA)
    [relayed] = agent.handle_request(data, (str(private), 434), now=1.0).sends
    assert relayed.data == data
    out = home_agent.handle_request(relayed.data, 1.0, WALL, (str(FA_COA), 434))
    assert out.code == 0 and out.reply is not None
    rec = home_agent.table.get(int(HOME))
    assert rec is not None
    assert (rec.bindings[0].udp_address, rec.bindings[0].udp_port) == (int(FA_COA), 0)
    [back] = agent.handle_reply(out.reply, (str(HA), 434), now=1.1).sends
    assert back.dest == (str(private), 434) and agent.visitors == {}


def test_advertisement_carries_the_u_bit_only_with_nat_traversal() -> None:
    import io

    from mobileip.agents.fa.config import ForeignAgentConfig
    from mobileip.agents.fa.daemon import ForeignAgentDaemon
    from mobileip.log import Logger
    from mobileip.wire import agent_adv as adv

    def flags2(nat_traversal: bool) -> int:
        cfg = ForeignAgentConfig("fa.toml", "eth1", FA_COA, nat_traversal=nat_traversal)
        daemon = ForeignAgentDaemon(cfg, Logger(stream=io.StringIO()))
        return adv.decode_advertisement(daemon.advertisement()).flags2

    assert flags2(True) & adv.FLAG_U and not flags2(False) & adv.FLAG_U


# --- the daemon's UDP paths, without sockets ---------------------------------------------------


class _Endpoint:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, tuple[str, int], str | None]] = []

    def send(self, data: bytes, addr: tuple[str, int], src: str | None = None) -> bool:
        self.sent.append((data, addr, src))
        return True


class _Raw:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, tuple[str, int]]] = []

    def sendto(self, data: bytes, addr: tuple[str, int]) -> int:
        self.sent.append((data, addr))
        return len(data)


def _daemon_with_visitor(udp: bool = True) -> tuple[object, _Endpoint, _Raw]:
    import io

    from mobileip.agents.fa.config import ForeignAgentConfig
    from mobileip.agents.fa.daemon import ForeignAgentDaemon
    from mobileip.log import Logger

    cfg = ForeignAgentConfig("fa.toml", "eth1", FA_COA, nat_traversal=True)
    daemon = ForeignAgentDaemon(cfg, Logger(stream=io.StringIO()))
    endpoint, raw = _Endpoint(), _Raw()
    daemon.endpoint = endpoint  # type: ignore[assignment]
    daemon.raw_out = raw  # type: ignore[assignment]
    visitor = fa.Visitor(HOME, HA, FA_COA, MN, int(wire.Flags.T), 600, 1e9, 1, None, None, udp, 2)
    daemon.core.visitors[HOME] = visitor
    return daemon, endpoint, raw


def test_daemon_delivers_tunnel_data_from_the_home_agent_only() -> None:
    from mobileip.agents.fa.daemon import KEEPALIVE_IDENT, ForeignAgentDaemon

    daemon, _endpoint, raw = _daemon_with_visitor()
    assert isinstance(daemon, ForeignAgentDaemon)
    cn = A("192.0.2.10")
    inner = nat.icmp_echo(cn, HOME, 7, 1)
    daemon._on_datagram(nat.encapsulate(inner), (str(HA), 434), None)
    [(packet, dest)] = raw.sent
    assert dest == (str(HOME), 0) and packet[8] == inner[8] - 1  # forwarded: TTL one less
    assert packet[12:] == inner[12:]
    daemon._on_datagram(nat.encapsulate(inner), ("203.0.113.66", 434), None)  # not its HA
    answer = nat.icmp_echo(HA, HOME, KEEPALIVE_IDENT, 3, reply=True)  # our keepalive's answer
    daemon._on_datagram(nat.encapsulate(answer), (str(HA), 434), None)
    daemon._on_datagram(
        nat.encapsulate(nat.icmp_echo(cn, A("10.1.0.99"), 1, 1)), (str(HA), 434), None
    )
    daemon._on_datagram(b"\x04\x2f\x00\x00" + inner, (str(HA), 434), None)  # GRE inside
    assert len(raw.sent) == 1
    c = daemon.core.counters
    assert c["delivered-udp"] == 1 and c["udp-dropped-wrong-home-agent"] == 1
    assert c["udp-keepalive-answered"] == 1 and c["udp-dropped-no-visitor"] == 1
    assert c["udp-dropped-malformed"] == 1


def test_daemon_reverse_tunnels_and_keeps_each_visitor_alive() -> None:
    from mobileip.agents.fa.daemon import ForeignAgentDaemon

    daemon, endpoint, _raw = _daemon_with_visitor()
    assert isinstance(daemon, ForeignAgentDaemon)
    out = nat.icmp_echo(HOME, A("192.0.2.10"), 7, 1)
    daemon.reverse(out)
    assert endpoint.sent == [(nat.encapsulate(out), (str(HA), 434), str(FA_COA))]
    now = daemon.udp_sent[HOME]
    daemon._keepalives(now + 1.0)  # sent 1 s ago, keepalive 2 s: nothing due
    assert len(endpoint.sent) == 1
    daemon._keepalives(now + 2.5)
    [(data, addr, src)] = endpoint.sent[1:]
    assert addr == (str(HA), 434) and src == str(FA_COA)
    inner = nat.decode_data(data).payload
    assert nat.echo_request_to(inner, int(HA)) is not None and inner[12:16] == HOME.packed
    del daemon.core.visitors[HOME]
    daemon._keepalives(now + 10.0)  # gone: no keepalive, forgotten
    assert len(endpoint.sent) == 2 and HOME not in daemon.udp_sent


def test_daemon_without_a_granted_tunnel_ignores_tunnel_data() -> None:
    daemon, endpoint, raw = _daemon_with_visitor(udp=False)
    inner = nat.icmp_echo(A("192.0.2.10"), HOME, 7, 1)
    daemon._on_datagram(nat.encapsulate(inner), (str(HA), 434), None)  # type: ignore[attr-defined]
    assert raw.sent == [] and endpoint.sent == []
