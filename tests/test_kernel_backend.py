"""The kernel backend (src/mobileip/dataplane/kernel.py): collect-metadata devices, encap routes,
reverse-tunnel filters (tc flower on tunnel metadata).

* Unmarked tests check the messages and the backend's per-binding bookkeeping without a kernel.
* ``kernel`` tests need ipip/gre collect-metadata devices and tc flower: on our machines they run
  inside User-Mode Linux (tests/test_uml_tier.py); by hand::

      python -m mobileip.tools.uml -- .venv/bin/pytest -m kernel tests/test_kernel_backend.py -s

  Three namespaces (a correspondent ``cn``, the home agent ``ha``, a care-of host ``coa`` that is
  a mobile node with a co-located care-of address) check what arrives where: forward packets
  tunnelled with the asked encapsulation from the HA's address, reverse-tunnelled packets
  decapsulated and forwarded when they come from the registered care-of address of their inner
  source, dropped and counted otherwise. The backend runs in this process, its thread moved
  into ``ha`` (it uses no worker threads).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import secrets
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from ipaddress import IPv4Address

import pytest

from mobileip.dataplane import kernel_nl as knl
from mobileip.dataplane.backend import TunnelSpec
from mobileip.dataplane.encap import (
    Encapsulation,
    IPv4Header,
    build_ipv4,
    decapsulate,
    encapsulate,
)
from mobileip.dataplane.kernel import (
    ACCEPT_PRIO,
    KernelBackend,
    encap_route,
    kernel_supports_tunnels,
)
from mobileip.dataplane.udp_tun import UdpTun
from mobileip.net import rtnl as nl

IPIP, GRE, MINIMAL = Encapsulation.IPIP, Encapsulation.GRE, Encapsulation.MINIMAL
A = IPv4Address
HA_ADDR, CN_ADDR = A("10.0.1.1"), A("10.0.1.2")
COA, WRONG_COA = A("192.0.2.10"), A("192.0.2.66")
HOME, OTHER_HOME = A("10.1.0.5"), A("10.1.0.6")
TABLE = 100


def spec(
    home: IPv4Address, *exits: tuple[IPv4Address, Encapsulation], t: bool = True
) -> TunnelSpec:
    return TunnelSpec(home, tuple(exits), tuple(c for c, _ in exits) if t else ())


def _nolog(*args: object, **fields: object) -> None:
    pass


# --- without a kernel ---------------------------------------------------------------------------


def _attrs(data: bytes) -> dict[int, bytes]:
    out, off = {}, 0
    while off + 4 <= len(data):
        n, kind = struct.unpack_from("=HH", data, off)
        out[kind & 0x3FFF] = data[off + 4 : off + n]
        off += (n + 3) & ~3
    return out


def test_flower_message_layout() -> None:
    msg = knl.flower_add(7, 1, 42, "192.0.2.10", "10.1.0.5")
    length, kind, flags, _seq, _pid = struct.unpack_from("=IHHII", msg)
    assert (length, kind) == (len(msg), knl.RTM_NEWTFILTER)
    assert flags == nl.NLM_F_REQUEST | nl.NLM_F_CREATE  # replace semantics, no EXCL
    _fam, ifindex, handle, parent, info = struct.unpack_from("=BxxxIIII", msg, 16)
    assert (ifindex, handle, parent) == (knl.TCM_IFINDEX_MAGIC_BLOCK, 42, 7)
    assert info == (1 << 16) | socket.htons(0x0800)
    top = _attrs(msg[36:])
    assert top[knl.TCA_KIND] == b"flower\0"
    opts = _attrs(top[knl.TCA_OPTIONS])
    assert opts[knl.TCA_FLOWER_KEY_ENC_IPV4_SRC] == A("192.0.2.10").packed
    assert opts[knl.TCA_FLOWER_KEY_IPV4_SRC] == HOME.packed
    assert opts[knl.TCA_FLOWER_KEY_ETH_TYPE][:2] == b"\x08\x00"
    assert knl.TCA_FLOWER_ACT not in opts  # no action: a match passes the packet


def test_matchall_hits_parse() -> None:
    pcnt = struct.pack("=HHQ", 12, knl.TCA_MATCHALL_PCNT, 1234)
    opts = struct.pack("=HH", 4 + len(pcnt), knl.TCA_OPTIONS) + pcnt
    body = struct.pack("=BxxxIIII", 0, knl.TCM_IFINDEX_MAGIC_BLOCK, 1, 7, 0) + opts
    reply = struct.pack("=IHHII", 16 + len(body), knl.RTM_NEWTFILTER, 0, 1, 0) + body
    assert knl.parse_matchall_hits(reply) == 1234
    assert knl.parse_matchall_hits(b"") is None


def test_encap_route_carries_metric_of_home() -> None:
    msg = encap_route(HOME, COA, HA_ADDR, 64, 9, TABLE)
    assert struct.unpack_from("=I", msg)[0] == len(msg)
    attrs = _attrs(msg[28:])
    assert attrs[nl.RTA_PRIORITY] == struct.pack("=I", int(HOME))
    assert attrs[nl.RTA_DST] == HOME.packed
    assert struct.unpack("=I", attrs[nl.RTA_OIF])[0] == 9
    assert COA.packed in attrs[nl.RTA_ENCAP]


def test_route_key_exit_and_bookkeeping() -> None:
    b = KernelBackend(_nolog, HA_ADDR)
    b.ifindex = {IPIP: 5, GRE: 6}
    s1 = spec(HOME, (COA, IPIP))
    assert b.exit_of(spec(HOME, (COA, MINIMAL))) == (COA, IPIP)  # minimal goes as IP-in-IP
    assert b.exit_of(spec(HOME, (COA, IPIP), (WRONG_COA, GRE))) == (WRONG_COA, GRE)  # newest
    assert b.route_key(s1) != b.route_key(spec(HOME, (COA, IPIP), t=False))  # filters follow
    msgs = b.add_messages(s1, TABLE)
    assert msgs is not None and len(msgs) == 2  # route + one flower filter
    b.track(s1)
    assert b.confirmed[int(HOME)] == {int(COA)}
    handle = b.handles[(int(COA), int(HOME))]
    # same pair again: same handle (replace), nothing deleted
    again = b.add_messages(s1, TABLE)
    assert again is not None and len(again) == 2
    assert b.handles[(int(COA), int(HOME))] == handle
    # the mobile node moves: a filter for the new pair, the old one deleted
    s2 = spec(HOME, (WRONG_COA, GRE))
    moved = b.add_messages(s2, TABLE)
    assert moved is not None
    kinds = [struct.unpack_from("=IH", m)[1] for m in moved]
    assert kinds == [nl.RTM_NEWROUTE, knl.RTM_NEWTFILTER, knl.RTM_DELTFILTER]
    b.track(s2)
    assert (int(COA), int(HOME)) not in b.handles and b._free == [handle]
    kinds = [struct.unpack_from("=IH", m)[1] for m in b.del_messages(HOME, TABLE)]
    assert kinds == [nl.RTM_DELROUTE, knl.RTM_DELTFILTER]
    b.untrack(HOME)
    assert not b.handles and not b.confirmed and not b.allocated and not b.specs
    # counters of simultaneous and minimal bindings in force
    b.track(spec(HOME, (COA, IPIP), (WRONG_COA, MINIMAL)))
    assert (b.simultaneous, b.minimal) == (1, 1)
    b.untrack(HOME)
    assert (b.simultaneous, b.minimal) == (0, 0)


def test_udp_tunnelled_homes_take_the_tun_route() -> None:
    """RFC 3519 homes (no IP exit, a NAT mapping) go into the hybrid path's TUN, with the same
    metric as an encap route (either replaces the other); a NAT rebind is a new spec with the
    same route key whose mapping track() puts where the TUN's reader looks; without the TUN
    they get no route and are counted."""
    b = KernelBackend(_nolog, HA_ADDR)
    b.ifindex = {IPIP: 5, GRE: 6}
    nat_spec = TunnelSpec(HOME, (), (), ((A("203.0.113.9"), 20001),))
    assert b.route_key(nat_spec) == "udp-only"
    kinds = [struct.unpack_from("=IH", m)[1] for m in b.add_messages(nat_spec, TABLE) or []]
    assert kinds == [nl.RTM_DELROUTE] and b.counters["udp-tunnel-unsupported"] == 1
    b.udp_tun = UdpTun(_nolog, "miptest")
    b.udp_tun.index = 11
    # first a plain binding with T, then the node moves behind a NAT
    assert b.add_messages(spec(HOME, (COA, IPIP)), TABLE)
    b.track(spec(HOME, (COA, IPIP)))
    msgs = b.add_messages(nat_spec, TABLE)
    assert msgs is not None
    kinds = [struct.unpack_from("=IH", m)[1] for m in msgs]
    assert kinds == [nl.RTM_NEWROUTE, knl.RTM_DELTFILTER]  # the reverse filter goes
    attrs = _attrs(msgs[0][28:])
    assert struct.unpack("=I", attrs[nl.RTA_OIF])[0] == 11 and nl.RTA_ENCAP not in attrs
    assert (
        attrs[nl.RTA_PRIORITY]
        == _attrs(encap_route(HOME, COA, HA_ADDR, 64, 5, TABLE)[28:])[nl.RTA_PRIORITY]
    )
    b.track(nat_spec)
    assert b.udp_tun.exits == {HOME.packed: nat_spec.udp} and b.udp_homes == {HOME}
    assert not b.confirmed[int(HOME)] and (b.simultaneous, b.minimal) == (0, 0)
    rebound = TunnelSpec(HOME, (), (), ((A("203.0.113.9"), 21007),))
    assert b.route_key(rebound) == b.route_key(nat_spec) == "udp-tun"  # no route change
    b.track(rebound)
    assert b.udp_tun.exits[HOME.packed] == rebound.udp
    # a home with both kinds takes the kernel exit (counted as simultaneous)
    mixed = TunnelSpec(HOME, ((COA, IPIP),), (), rebound.udp)
    assert b.route_key(mixed) != "udp-tun"
    b.track(mixed)
    assert not b.udp_tun.exits and not b.udp_homes and b.simultaneous == 1
    b.untrack(HOME)
    assert not b.udp_tun.exits and b.simultaneous == 0


def test_legacy_interface_is_not_chosen() -> None:
    """The service drives a backend with add_messages as a hot standby, not one by one."""
    from mobileip.dataplane.backend import TunnelBackend

    assert KernelBackend.add_messages is not TunnelBackend.add_messages


# --- inside a real kernel ---------------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000


@contextlib.contextmanager
def in_netns(name: str) -> Iterator[None]:
    """Move this thread into ``/run/netns/NAME`` and back."""
    with open("/proc/thread-self/ns/net", "rb") as home, open(f"/run/netns/{name}", "rb") as ns:
        if _libc.setns(ns.fileno(), CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {name}")
        try:
            yield
        finally:
            if _libc.setns(home.fileno(), CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back")


def sh(cmd: str, check: bool = True) -> str:
    res = subprocess.run(cmd, shell=True, capture_output=True, text=True, check=False)
    if check and res.returncode != 0:
        raise AssertionError(f"{cmd}: {res.returncode}\n{res.stdout}{res.stderr}")
    return res.stdout + res.stderr


def socket_in(ns: str, family: int, kind: int, proto: int = 0) -> socket.socket:
    with in_netns(ns):
        return socket.socket(family, kind, proto)


def _require_kernel() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    ok, why = asyncio.run(kernel_supports_tunnels())
    if not ok:
        pytest.skip(f"kernel backend unavailable here: {why}")


@pytest.fixture
def topo() -> Iterator[dict[str, str]]:
    """cn (10.0.1.2) -- ha (10.0.1.1 | 192.0.2.1) -- coa (192.0.2.10 and 192.0.2.66)."""
    _require_kernel()
    tag = secrets.token_hex(2)
    names = {"cn": f"kcn{tag}", "ha": f"kha{tag}", "coa": f"kcoa{tag}"}
    cn, ha, coa = names["cn"], names["ha"], names["coa"]
    try:
        for n in names.values():
            sh(f"ip netns add {n} && ip -n {n} link set lo up")
        sh(f"ip link add c{tag} netns {cn} type veth peer name h{tag} netns {ha}")
        sh(f"ip link add m{tag} netns {coa} type veth peer name g{tag} netns {ha}")
        sh(f"ip -n {cn} addr add {CN_ADDR}/24 dev c{tag} && ip -n {cn} link set c{tag} up")
        sh(f"ip -n {cn} route add 10.1.0.0/16 via {HA_ADDR}")
        sh(f"ip -n {ha} addr add {HA_ADDR}/24 dev h{tag} && ip -n {ha} link set h{tag} up")
        sh(f"ip -n {ha} addr add 192.0.2.1/24 dev g{tag} && ip -n {ha} link set g{tag} up")
        sh(f"ip -n {coa} addr add {COA}/24 dev m{tag} && ip -n {coa} link set m{tag} up")
        sh(f"ip -n {coa} addr add {WRONG_COA}/24 dev m{tag}")
        sh(f"ip -n {coa} route add default via 192.0.2.1")
        sh(f"ip -n {ha} rule add pref 1000 lookup {TABLE}")  # the service's switch when active
        yield names
    finally:
        for n in names.values():
            sh(f"ip netns del {n}", check=False)


def udp(src: IPv4Address, dst: IPv4Address, payload: bytes, sport: int = 5555) -> bytes:
    head = IPv4Header(0, 0, 1, 0, 64, socket.IPPROTO_UDP, src, dst)
    return build_ipv4(head, struct.pack("!HHHH", sport, 7777, 8 + len(payload), 0) + payload)


def drain(sock: socket.socket, seconds: float) -> list[bytes]:
    sock.settimeout(0.2)
    out: list[bytes] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            out.append(sock.recv(65536))
        except TimeoutError:
            if out:
                break
    return out


def reverse_cases(cn: str, coa: str, wire: Encapsulation, n: int) -> None:
    """``n`` packets tunnelled (``wire``) to the Home Agent from the registered care-of
    address, ``n`` from a wrong one and ``n`` with a spoofed inner source: only the first
    ``n`` reach the correspondent (port 7777)."""
    rx = socket_in(cn, socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("0.0.0.0", 7777))
    raw = socket_in(coa, socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    cases = [(COA, HOME, b"good"), (WRONG_COA, HOME, b"badcoa"), (COA, OTHER_HOME, b"spoof")]
    with rx, raw:
        for outer_src, inner_src, tag in cases:
            for i in range(n):
                inner = udp(inner_src, CN_ADDR, tag + b"%03d" % i)
                outer = encapsulate(inner, wire, outer_src, HA_ADDR, ident=i, forwarding=False)
                raw.sendto(outer, (str(HA_ADDR), 0))
        received = drain(rx, 3.0)
    good = [p for p in received if p.startswith(b"good")]
    assert len(good) == n and len(received) == n, [p[:8] for p in received]


@pytest.mark.kernel
@pytest.mark.parametrize("kind", [IPIP, GRE, MINIMAL], ids=["ipip", "gre", "minimal"])
def test_forward_and_reverse(topo: dict[str, str], kind: Encapsulation) -> None:
    cn, ha, coa = topo["cn"], topo["ha"], topo["coa"]
    wire = IPIP if kind is MINIMAL else kind  # minimal goes as IP-in-IP (no kernel driver)
    n = 20
    with in_netns(ha):
        backend = KernelBackend(_nolog, HA_ADDR)
        asyncio.run(backend.start())
    try:
        with in_netns(ha):
            failed = asyncio.run(backend.install_many([spec(HOME, (COA, kind))], TABLE))
        assert failed == 0
        routes = sh(f"ip -n {ha} route show table {TABLE}")
        device = "mip-gre" if wire is GRE else "mip-ipip"
        assert f"{HOME} encap ip" in " ".join(routes.split()) and f"dst {COA}" in routes, routes
        assert f"src {HA_ADDR}" in routes and f"dev {device}" in routes, routes
        # forward: the correspondent's packets reach the care-of host tunnelled from the HA
        sink = socket_in(coa, socket.AF_INET, socket.SOCK_RAW, wire.value)
        sender = socket_in(cn, socket.AF_INET, socket.SOCK_DGRAM)
        for i in range(n):
            sender.sendto(b"fwd%03d" % i, (str(HOME), 9999))
        got = [decapsulate(p) for p in drain(sink, 3.0)]
        assert len(got) == n, f"{len(got)}/{n} forwarded"
        for d in got:
            assert (d.kind, d.outer_src, d.outer_dst) == (wire, HA_ADDR, COA)
            assert (d.inner_src, d.inner_dst) == (CN_ADDR, HOME)
        # reverse: from the registered care-of address (accepted), a wrong one and a spoofed
        # inner source (both dropped and counted)
        # the mobile node reverse-tunnels with the encapsulation it registered; minimal has no
        # kernel decapsulator, so the test sends what the kernel handles
        with in_netns(ha):
            drops_before = backend.reverse_drops()
        reverse_cases(cn, coa, wire, n)
        with in_netns(ha):
            drops = backend.reverse_drops()
            status = backend.status()
        assert drops is not None and drops_before is not None
        assert drops - drops_before == 2 * n, (drops_before, drops)
        counters = status["counters"]
        assert isinstance(counters, dict)
        assert counters["reverse-drop-unregistered"] == drops
        assert counters["minimal-as-ipip"] == (1 if kind is MINIMAL else 0)
        for s in (sink, sender):
            s.close()
    finally:
        with in_netns(ha):
            asyncio.run(backend.stop())
    assert "mip-" not in sh(f"ip -n {ha} -o link")
    assert sh(f"ip -n {ha} route show table {TABLE}").strip() == ""


@pytest.mark.kernel
def test_simultaneous_bindings_take_the_newest_exit(topo: dict[str, str]) -> None:
    ha = topo["ha"]
    with in_netns(ha):
        backend = KernelBackend(_nolog, HA_ADDR)
        asyncio.run(backend.start())
        try:
            s = spec(HOME, (COA, IPIP), (WRONG_COA, GRE))
            assert asyncio.run(backend.install_many([s], TABLE)) == 0
            routes = sh(f"ip -n {ha} route show table {TABLE}")
            assert f"dst {WRONG_COA}" in routes and "dev mip-gre" in routes, routes
            filters = sh(f"tc -n {ha} filter show block {backend.block} ingress")
            assert f"enc_src_ip {COA}" in filters and f"enc_src_ip {WRONG_COA}" in filters
            counters = backend.status()["counters"]
            assert isinstance(counters, dict) and counters["simultaneous-one-exit"] == 1
            # the mobile node drops the older binding: its filter goes, the route stays
            assert asyncio.run(backend.install_many([spec(HOME, (WRONG_COA, GRE))], TABLE)) == 0
            filters = sh(f"tc -n {ha} filter show block {backend.block} ingress")
            assert f"enc_src_ip {COA}" not in filters and f"enc_src_ip {WRONG_COA}" in filters
        finally:
            asyncio.run(backend.stop())


@pytest.mark.kernel
def test_probe_leaves_nothing_and_sees_a_running_backend(topo: dict[str, str]) -> None:
    ha = topo["ha"]
    with in_netns(ha):
        ok, why = asyncio.run(kernel_supports_tunnels())
        assert ok, why
        backend = KernelBackend(_nolog, HA_ADDR)
        asyncio.run(backend.start())
        try:
            ok, why = asyncio.run(kernel_supports_tunnels())  # one collect-md device per netns
            assert ok, why
        finally:
            asyncio.run(backend.stop())
    links = sh(f"ip -n {ha} -o link")
    assert "mipprobe" not in links and "mip-" not in links, links


BINDINGS = int(os.environ.get("MOBILEIP_KERNEL_BINDINGS", "10000"))


@pytest.mark.kernel
@pytest.mark.timeout(900)
def test_10000_bindings_installed_then_withdrawn_on_clean_stop(topo: dict[str, str]) -> None:
    ha = topo["ha"]
    n = BINDINGS
    homes = [A(int(A("10.64.0.0")) + i) for i in range(n)]
    coas = [A(int(A("198.18.0.0")) + i) for i in range(n)]
    plain = [
        spec(h, (c, GRE if i % 2 else IPIP), t=False)
        for i, (h, c) in enumerate(zip(homes, coas, strict=True))
    ]
    with_t = [
        spec(h, (c, GRE if i % 2 else IPIP))
        for i, (h, c) in enumerate(zip(homes, coas, strict=True))
    ]
    times: dict[str, float] = {}
    with in_netns(ha):
        backend = KernelBackend(_nolog, HA_ADDR)
        asyncio.run(backend.start())
        try:
            t0 = time.perf_counter()
            assert asyncio.run(backend.install_many(plain, TABLE)) == 0
            times["routes"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            # T flag on every binding: route replaced + one flower filter each
            assert asyncio.run(backend.install_many(with_t, TABLE)) == 0
            times["route replace + filter"] = time.perf_counter() - t0
            with nl.RtnlSocket() as sock:
                assert len(sock.dump_routes(TABLE)) == n
            filters = sh(f"tc -n {ha} filter show block {backend.block} ingress prio {ACCEPT_PRIO}")
            assert filters.count("enc_src_ip") == n
            assert backend.status()["reverse_filters"] == n
            half = homes[: n // 2]
            t0 = time.perf_counter()
            assert asyncio.run(backend.remove_many(half, TABLE)) == 0
            times["withdraw (route + filter)"] = time.perf_counter() - t0
            with nl.RtnlSocket() as sock:
                assert len(sock.dump_routes(TABLE)) == n - len(half)
        finally:
            t0 = time.perf_counter()
            asyncio.run(backend.stop())
            times["clean stop"] = time.perf_counter() - t0
    # nothing left: devices, routes (any table, ours), qdiscs, the shared block's filters
    assert "mip-" not in sh(f"ip -n {ha} -o link")
    assert sh(f"ip -n {ha} route show table all proto 77").strip() == ""
    assert "clsact" not in sh(f"tc -n {ha} qdisc show")
    assert "flower" not in sh(f"tc -n {ha} filter show block {backend.block} ingress", check=False)
    counts = {"routes": n, "route replace + filter": n, "withdraw (route + filter)": n // 2}
    print(f"\nkernel backend, {n} bindings, inside this kernel (relative numbers):")
    for what, seconds in times.items():
        per = f"{seconds / counts[what] * 1e6:8.1f} us per binding" if what in counts else ""
        print(f"  {what:28s} {seconds:7.2f} s {per}")
