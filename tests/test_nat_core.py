"""RFC 3519 on the Home Agent's side, sans-IO: core/nat.py's decisions through HomeAgentCore."""

from __future__ import annotations

import itertools
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network

import pytest
import vectors as v

from mobileip.core import homeagent as ha
from mobileip.core.nat import NatSettings, NatTraversal
from mobileip.core.replay import ntp_from_unix
from mobileip.core.security import SecurityAssociation, SecurityAssociations, append_auth
from mobileip.wire import nat
from mobileip.wire import registration as wire

SA = SecurityAssociation(v.HMAC_SPI, "hmac-md5", v.HMAC_KEY, (IPv4Network(v.HOME_PREFIX),))
NOW = 1000.0
PRIVATE_COA = IPv4Address("192.168.77.2")
NAT_SOURCE = ("198.51.100.9", 40123)
D = int(wire.Flags.D)
_ids = itertools.count(1)


def make_core(**settings: object) -> ha.HomeAgentCore:
    core = ha.HomeAgentCore(
        ha.HomeAgentSettings(address=v.HA, node_id=1), SecurityAssociations([SA])
    )
    core.nat = NatTraversal(replace(NatSettings(keepalive=25), **settings))  # type: ignore[arg-type]
    return core


def request(
    *,
    flags: int = D,
    coa: IPv4Address = PRIVATE_COA,
    tunnel: nat.UdpTunnelRequest | wire.Extension | None = None,
    lifetime: int = 600,
) -> bytes:
    exts: tuple[wire.Extension, ...] = ()
    if isinstance(tunnel, nat.UdpTunnelRequest):
        exts = (tunnel.extension(),)
    elif tunnel is not None:
        exts = (tunnel,)
    ident = (ntp_from_unix(v.WALL) & ~0xFFFFFFFF) | next(_ids)
    body = wire.encode(
        wire.RegistrationRequest(wire.Flags(flags), lifetime, v.HOME, v.HA, coa, ident, exts)
    )
    return append_auth(body, wire.EXT_MN_HA_AUTH, SA)


def handle(
    core: ha.HomeAgentCore, data: bytes, source: tuple[str, int] | None = NAT_SOURCE
) -> tuple[ha.Outcome, nat.UdpTunnelReply | None]:
    out = core.handle_request(data, NOW, v.WALL, source)
    assert out.reply is not None
    return out, nat.find_reply(wire.decode_reply(out.reply).extensions)


def binding(core: ha.HomeAgentCore) -> tuple[int, int]:
    rec = core.table.get(int(v.HOME))
    assert rec is not None and rec.bindings
    b = rec.bindings[-1]
    return b.udp_address, b.udp_port


def test_nat_detected_with_request_tunnels_to_the_source() -> None:
    core = make_core()
    out, reply = handle(core, request(tunnel=nat.UdpTunnelRequest()))
    assert out.code == 0
    assert reply == nat.UdpTunnelReply(nat.CODE_WILL_TUNNEL, 25)
    assert binding(core) == (int(IPv4Address(NAT_SOURCE[0])), NAT_SOURCE[1])
    (event,) = out.events
    assert isinstance(event, ha.BindingChanged)
    assert event.record.bindings[0].udp_port == NAT_SOURCE[1]


def test_reply_extension_is_authenticated() -> None:
    """The UDP Tunnel Reply sits before the MN-HA authenticator, so it is covered by it."""
    core = make_core()
    out, _ = handle(core, request(tunnel=nat.UdpTunnelRequest()))
    assert out.reply is not None
    rep = wire.decode_reply(out.reply)
    kinds = [e.type for e in rep.extensions]
    assert kinds == [nat.EXT_UDP_TUNNEL_REPLY, wire.EXT_MN_HA_AUTH]


def test_no_request_extension_is_plain_rfc5944_even_behind_a_nat() -> None:
    core = make_core()
    out, reply = handle(core, request())  # the predicted shape: header prediction accepts it
    assert out.code == 0 and reply is None
    assert binding(core) == (0, 0)
    core.predict = False  # the full rules count what they saw
    out, reply = handle(core, request())
    assert out.code == 0 and reply is None
    assert core.nat is not None and core.nat.stats.decisions["nat-without-request"] == 1


def test_no_nat_without_force_is_declined_and_registered_as_usual() -> None:
    core = make_core()
    out, reply = handle(core, request(tunnel=nat.UdpTunnelRequest()), (str(PRIVATE_COA), 434))
    assert out.code == 0
    assert reply is not None and reply.code == nat.CODE_DECLINED
    assert binding(core) == (0, 0)


def test_source_differs_without_d_is_a_foreign_agent_not_a_nat() -> None:
    core = make_core()
    out, reply = handle(core, request(flags=0, tunnel=nat.UdpTunnelRequest()))
    assert out.code == 0 and reply is not None and reply.code == nat.CODE_DECLINED
    assert binding(core) == (0, 0)


@pytest.mark.parametrize("accept_forced", [True, False])
def test_force_flag_without_nat(accept_forced: bool) -> None:
    core = make_core(accept_forced=accept_forced)
    source = (str(PRIVATE_COA), 434)
    out, reply = handle(core, request(tunnel=nat.UdpTunnelRequest(flags=nat.REQUEST_F)), source)
    assert out.code == 0 and reply is not None
    if accept_forced:
        assert reply.code == nat.CODE_WILL_TUNNEL
        assert binding(core) == (int(PRIVATE_COA), 434)
    else:
        assert reply.code == nat.CODE_DECLINED
        assert binding(core) == (0, 0)


@pytest.mark.parametrize("encap", [nat.ENCAP_GRE, nat.ENCAP_MINIMAL, 0, 200])
def test_other_encapsulations_are_denied_142(encap: int) -> None:
    core = make_core()
    out, reply = handle(core, request(tunnel=nat.UdpTunnelRequest(encap)))
    assert out.code == 142
    assert reply is not None and reply.code == nat.CODE_DECLINED
    assert core.table.get(int(v.HOME)) is None


def test_switched_off_denies_behind_a_nat_and_declines_otherwise() -> None:
    core = make_core(enabled=False)
    out, reply = handle(core, request(tunnel=nat.UdpTunnelRequest()))
    assert out.code == 142 and reply is not None and reply.code == nat.CODE_DECLINED
    out, reply = handle(core, request(tunnel=nat.UdpTunnelRequest()), (str(PRIVATE_COA), 434))
    assert out.code == 0 and reply is not None and reply.code == nat.CODE_DECLINED


def test_r_flag_through_a_foreign_agent_is_half_bound() -> None:
    """RFC 3519 4.6: R accepted; the source is the FA's, so no port until the MN's keepalive
    (the rest of R: tests/test_nat_rflag.py)."""
    core = make_core()
    out, reply = handle(core, request(tunnel=nat.UdpTunnelRequest(flags=nat.REQUEST_R)))
    assert out.code == 0 and reply == nat.UdpTunnelReply(nat.CODE_WILL_TUNNEL, 25)
    assert binding(core) == (int(IPv4Address(NAT_SOURCE[0])), 0)


def test_malformed_request_extension_is_134() -> None:
    core = make_core()
    bad = wire.UnknownExtension(nat.EXT_UDP_TUNNEL_REQUEST, b"\x00")
    out, reply = handle(core, request(tunnel=bad))
    assert out.code == 134 and reply is None


def test_deregistration_ignores_the_extension() -> None:
    core = make_core()
    handle(core, request(tunnel=nat.UdpTunnelRequest()))
    out, reply = handle(core, request(tunnel=nat.UdpTunnelRequest(), lifetime=0))
    assert out.code == 0 and reply is None
    rec = core.table.get(int(v.HOME))
    assert rec is not None and rec.is_tombstone


def test_renewal_from_a_new_mapping_moves_the_binding() -> None:
    core = make_core()
    handle(core, request(tunnel=nat.UdpTunnelRequest()))
    handle(core, request(tunnel=nat.UdpTunnelRequest()), ("198.51.100.9", 50000))
    assert binding(core) == (int(IPv4Address("198.51.100.9")), 50000)


def test_nat_rebind_is_a_new_version() -> None:
    core = make_core()
    handle(core, request(tunnel=nat.UdpTunnelRequest()))
    before = core.table.get(int(v.HOME))
    assert before is not None
    old = binding(core)
    assert core.nat_rebind(int(v.HOME), (old[0], old[1] + 1), (old[0], 9), NOW) == []
    assert core.nat_rebind(int(v.HOME), old, old, NOW) == []
    (event,) = core.nat_rebind(int(v.HOME), old, (old[0], 50001), NOW + 1)
    assert isinstance(event, ha.BindingChanged) and not event.deregistration
    assert event.record.version > before.version
    assert binding(core) == (old[0], 50001)
    assert event.record.bindings[0].expires == before.bindings[0].expires


def test_without_a_source_the_request_is_declined() -> None:
    core = make_core()
    out, reply = handle(core, request(tunnel=nat.UdpTunnelRequest()), None)
    assert out.code == 0 and reply is not None and reply.code == nat.CODE_DECLINED
