"""RFC 3519 in the userspace data plane, without sockets: dataplane/udp_tunnel.py's UdpTunnelPath
over a backend's specs, and spec_for's UDP exits."""

from __future__ import annotations

import math
from ipaddress import IPv4Address
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tunnel_service_host import Plane, ServiceHost

from mobileip.core.bindings import Binding, MobilityRecord
from mobileip.dataplane.backend import TunnelBackend, TunnelSpec, spec_for
from mobileip.dataplane.encap import Encapsulation
from mobileip.dataplane.udp_tunnel import UdpTunnelPath
from mobileip.wire import nat

HA = IPv4Address("10.1.0.1")
HOME = IPv4Address("10.1.0.5")
NAT_IP = IPv4Address("198.51.100.9")
CN = IPv4Address("10.9.0.2")


class Rig:
    def __init__(self) -> None:
        self.backend = TunnelBackend(lambda *a, **k: None)
        self.backend.own = frozenset({HA})  # type: ignore[attr-defined]
        self.sent: list[tuple[bytes, tuple[str, int], str | None]] = []
        self.written: list[bytes] = []
        self.rebinds: list[tuple[int, tuple[int, int], tuple[int, int]]] = []
        self.path = UdpTunnelPath(
            self.backend,
            lambda d, a, s: self.sent.append((d, a, s)) is None,
            self.written.append,
            str(HA),
            lambda h, o, n: self.rebinds.append((h, o, n)),
        )
        spec = TunnelSpec(HOME, (), (), ((NAT_IP, 40000),))
        self.backend.track(spec)


def packet(src: IPv4Address, dst: IPv4Address) -> bytes:
    return nat.icmp_echo(src, dst, 1, 1, reply=True)


def test_spec_for_puts_nat_bindings_in_udp() -> None:
    rec = MobilityRecord(
        int(HOME),
        1,
        0,
        int(HA),
        (
            Binding(int(IPv4Address("192.168.1.2")), 600, math.inf, 0x20, int(NAT_IP), 40000),
            Binding(int(IPv4Address("203.0.113.4")), 600, math.inf, 0x22),
        ),
    )
    spec = spec_for(rec)
    assert spec is not None
    assert spec.udp == ((NAT_IP, 40000),)
    assert spec.exits == ((IPv4Address("203.0.113.4"), Encapsulation.IPIP),)
    only_udp = MobilityRecord(int(HOME), 1, 0, int(HA), rec.bindings[:1])
    spec = spec_for(only_udp)
    assert spec is not None and spec.exits == () and spec.reverse == ()


def test_forward_sends_tunnel_data_from_port_434_socket() -> None:
    rig = Rig()
    inner = packet(CN, HOME)
    rig.path.forward(inner, ((NAT_IP, 40000),))
    assert rig.sent == [(b"\x04\x04\x00\x00" + inner, (str(NAT_IP), 40000), str(HA))]
    assert rig.path.counters["udp-encap"] == 1


def test_reverse_from_the_mapping_is_written_to_the_tun() -> None:
    rig = Rig()
    inner = packet(HOME, CN)
    rig.path.received(nat.encapsulate(inner), (str(NAT_IP), 40000), str(HA))
    assert rig.written == [inner] and rig.rebinds == []


def test_keepalive_is_counted_and_handed_to_the_kernel() -> None:
    rig = Rig()
    rig.path.received(nat.keepalive(HOME, HA, 3), (str(NAT_IP), 40000), str(HA))
    assert rig.path.counters["udp-keepalive"] == 1
    assert len(rig.written) == 1


def test_new_port_same_address_is_a_rebind() -> None:
    rig = Rig()
    inner = packet(HOME, CN)
    rig.path.received(nat.encapsulate(inner), (str(NAT_IP), 40001), str(HA))
    assert rig.rebinds == [(int(HOME), (int(NAT_IP), 40000), (int(NAT_IP), 40001))]
    assert rig.written == [inner]


def test_other_address_or_unknown_home_is_dropped() -> None:
    rig = Rig()
    rig.path.received(nat.encapsulate(packet(HOME, CN)), ("198.51.100.10", 40000), None)
    rig.path.received(nat.encapsulate(packet(CN, HA)), (str(NAT_IP), 40000), None)
    assert rig.written == [] and rig.rebinds == []
    assert rig.path.counters["udp-drop-unregistered"] == 2


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=80), st.sampled_from([40000, 40001, 1]))
def test_any_datagram_is_taken_or_counted_never_raises(data: bytes, port: int) -> None:
    rig = Rig()
    rig.path.received(b"\x04" + data, (str(NAT_IP), port), None)
    assert len(rig.written) <= 1


# --- GET /api/v1/nat: an index of UDP-tunnelled homes, not a walk over every spec -----------


class _NoWalk(dict[IPv4Address, TunnelSpec]):
    """The backend's specs, refusing to be walked (lookups by key are fine)."""

    def __iter__(self) -> Any:
        raise AssertionError("GET /api/v1/nat walked every spec")

    def items(self) -> Any:
        raise AssertionError("GET /api/v1/nat walked every spec")

    def values(self) -> Any:
        raise AssertionError("GET /api/v1/nat walked every spec")


def test_nat_status_lists_udp_homes_from_the_backends_index_as_the_table_changes() -> None:
    from mobileip.dataplane.udp_tunnel import UdpTunnelService
    from mobileip.dataplane.userspace import UserspaceBackend

    backend = UserspaceBackend(lambda *a, **k: None, "x", HA, own=frozenset({HA}))
    backend.specs = _NoWalk()
    host = ServiceHost()
    service = UdpTunnelService(host, Plane(backend), HA)  # type: ignore[arg-type]
    base = int(IPv4Address("10.2.0.0"))
    for i in range(5000):  # plain co-located bindings: not in the index
        coa = IPv4Address(base + 100_000 + i)
        backend.track(TunnelSpec(IPv4Address(base + i), ((coa, Encapsulation.IPIP),), (coa,)))
    nated = [IPv4Address(base + 50_000 + i) for i in range(3)]
    for i, home in enumerate(nated):
        backend.track(TunnelSpec(home, (), (), ((NAT_IP, 40000 + i),)))
    status = host.routes[("GET", "/api/v1/nat")](None)
    assert status["udp_homes"] == 3
    assert status["tunnels"] == {str(h): [f"{NAT_IP}:{40000 + i}"] for i, h in enumerate(nated)}

    # a rebind replaces the spec; a re-registration without NAT leaves the index; untrack too
    backend.track(TunnelSpec(nated[0], (), (), ((NAT_IP, 41000),)))
    coa = IPv4Address("203.0.113.7")
    backend.track(TunnelSpec(nated[1], ((coa, Encapsulation.IPIP),), (coa,)))
    backend.untrack(nated[2])
    plain = IPv4Address(base + 7)  # a plain home that becomes NAT-ed
    backend.track(TunnelSpec(plain, (), (), ((NAT_IP, 42000),)))
    status = service.status()
    assert status["udp_homes"] == 2
    assert status["tunnels"] == {
        str(nated[0]): [f"{NAT_IP}:41000"],
        str(plain): [f"{NAT_IP}:42000"],
    }
    assert len(service.status(listed=1)["tunnels"]) == 1
    assert backend.udp_homes == {nated[0], plain}


def test_nat_status_on_a_backend_without_udp_lists_nothing() -> None:
    from mobileip.dataplane.udp_tunnel import UdpTunnelService

    backend = TunnelBackend(lambda *a, **k: None)
    backend.specs = _NoWalk()
    backend.track(TunnelSpec(HOME, (), (), ((NAT_IP, 40000),)))
    service = UdpTunnelService(ServiceHost(), Plane(backend), HA)  # type: ignore[arg-type]
    status = service.status()
    assert status["attached"] is False and status["udp_homes"] == 0 and status["tunnels"] == {}
