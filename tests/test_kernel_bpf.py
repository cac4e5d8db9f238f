"""The kernel backend's tc BPF fast path (src/mobileip/dataplane/bpf.py, bpf_asm.py).

* Unmarked tests check the assembler's encodings and the map values without a kernel.
* ``kernel`` tests run inside User-Mode Linux (tests/test_uml_tier.py), on the topology of
  tests/test_kernel_backend.py (cn -- ha -- coa): the kernel backend with the fast path
  attached to both of ha's interfaces; forward and reverse IP-in-IP and GRE through the
  programs (the packets checked at the far side, the programs' counters checked), a wrong outer
  source and a spoofed inner source dropped and counted, the reverse program forwarding the
  inner packet itself (the stack's ``ForwDatagrams`` unmoved, strict ``rp_filter`` passed; no
  neighbour, TTL 1 and a local destination handed to the stack), its route cache (filled, a
  forged entry used while current, not after a neighbour, route, rule or home change), 10,000
  bindings installed and withdrawn in batches, the programs attached only while live.
"""

from __future__ import annotations

import asyncio
import errno
import os
import re
import socket
import struct
from collections.abc import Callable
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from netns import Segment
from test_dataplane_netns import FAR, HA, kernel_homeagent, register, wait_dataplane
from test_kernel_backend import (
    CN_ADDR,
    COA,
    GRE,
    HA_ADDR,
    HOME,
    IPIP,
    MINIMAL,
    OTHER_HOME,
    TABLE,
    WRONG_COA,
    _nolog,
    drain,
    in_netns,
    reverse_cases,
    sh,
    socket_in,
    spec,
    topo,
)

from mobileip.config import ConfigError, parse_config
from mobileip.dataplane import bpf_asm as ba
from mobileip.dataplane import nexthops as nh
from mobileip.dataplane.bpf import HOP_TURN, ROUTE, ROUTE_KEY, BpfFastPath, home_value
from mobileip.dataplane.encap import (
    Encapsulation,
    IPv4Header,
    build_ipv4,
    decapsulate,
    encapsulate,
)
from mobileip.dataplane.kernel import KernelBackend

__all__ = ["topo"]  # the fixture, imported
A = IPv4Address


def test_assembler_encodings_and_labels() -> None:
    a = ba.Asm()
    a.mov(6, 1)  # r6 = r1: ALU64 | MOV | X
    a.jmp(4, "!=", "out", imm=0x0008)
    a.ldx(2, 4, 2, 12)
    a.label("out")
    a.ret(-1)
    code = a.code()
    assert code[:8] == struct.pack("<BBhi", 0xBF, 0x16, 0, 0)
    # JNE K, dst r4, jumps over one instruction to "out"
    assert code[8:16] == struct.pack("<BBhi", 0x55, 0x04, 1, 8)
    assert code[16:24] == struct.pack("<BBhi", 0x69, 0x24, 12, 0)
    assert code[24:32] == struct.pack("<BBhi", 0xB7, 0x00, 0, -1)
    assert code[32:40] == struct.pack("<BBhi", 0x95, 0, 0, 0)
    # an address compared as 32 bits: JMP32, the immediate as a signed 32-bit value
    b = ba.Asm()
    b.jmp(4, "!=", "x", imm=ba.raw32("192.0.2.1"), w32=True)
    b.label("x")
    op, regs, off, imm = struct.unpack("<BBhi", b.code())
    assert (op, regs, off) == (0x56, 0x04, 0) and imm & 0xFFFFFFFF == 0x010200C0


def test_home_value_checksum_completes_to_a_valid_header() -> None:
    value = home_value(HA_ADDR, COA, gre=False, ttl=64)
    template, partial, hdr, flags = struct.unpack("<24sIII", value)
    assert (hdr, flags) == (20, ba.ADJ_ENCAP_L3_IPV4)
    # what the program does for a 64-byte inner packet with identification 0x1234
    tot, ident = 84, 0x1234
    swapped = lambda v: int.from_bytes(v.to_bytes(2, "big"), "little")  # noqa: E731
    s = partial + swapped(tot) + swapped(ident)
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    header = bytearray(template[:20])
    struct.pack_into("!HH", header, 2, tot, ident)
    struct.pack_into("<H", header, 10, s ^ 0xFFFF)
    total = sum(struct.unpack("!10H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    assert total == 0xFFFF
    assert header[9] == 4 and bytes(header[12:20]) == HA_ADDR.packed + COA.packed
    gre = home_value(HA_ADDR, COA, gre=True, ttl=64)
    assert gre[9] == 47 and gre[20:24] == b"\x00\x00\x08\x00"


def test_config_keys() -> None:
    base = (
        '[homeagent]\naddress = "10.1.0.1"\n\n[[security_association]]\nspi = 256\n'
        'key = "00112233445566778899aabbccddeeff"\nhome_addresses = ["10.1.0.0/24"]\n\n'
        "[dataplane]\n"
    )
    cfg = parse_config(base + 'backend = "kernel"\nfastpath_interfaces = ["eth0", "eth1"]\n', "x")
    assert cfg.dataplane is not None
    assert cfg.dataplane.fastpath_interfaces == ("eth0", "eth1")
    assert cfg.dataplane.fastpath_capacity == 131_072
    plain = parse_config(base + 'backend = "kernel"\n', "x").dataplane
    assert plain is not None and plain.fastpath_interfaces == ()
    with pytest.raises(ConfigError, match="fastpath_interfaces"):
        parse_config(base + 'backend = "userspace"\nfastpath_interfaces = ["eth0"]\n', "x")


def test_batches_against_this_kernel() -> None:
    """The batched map calls on this machine's kernel (BPF needs no tunnel modules): a delete
    batch goes on past an absent key; an update batch past the map's size reports how many
    went in."""
    if os.geteuid() != 0:
        pytest.skip("needs root for bpf()")
    fd = ba.map_create(ba.MAP_HASH, 4, 8, 4)
    try:
        keys = [i.to_bytes(4, "big") for i in range(1, 6)]
        done, err = ba.update_batch(fd, keys, [bytes(8)] * 5)
        assert (done, err) == (4, errno.E2BIG)  # the fifth does not fit
        assert ba.delete_batch(fd, [keys[0], keys[4], keys[2]]) == 0  # keys[4] absent
        assert [ba.lookup(fd, k, 8) is not None for k in keys] == [False, True, False, True, False]
    finally:
        ba.close(fd)


def test_staged_bindings_are_written_once_per_loop_turn() -> None:
    """On this machine's kernel (maps and programs need no tunnel modules; nothing attached):
    inside an event loop the maps are written once per turn, without one at once."""
    if os.geteuid() != 0:
        pytest.skip("needs root for bpf()")
    fast = BpfFastPath(HA_ADDR, [], capacity=64)
    fast.start()
    try:
        fast.stage(HOME, (COA, False), [COA])  # no loop: written now
        assert fast.installed() == (1, 1) and fast.flushes == 1

        async def turn() -> tuple[tuple[int, int], tuple[int, int], int]:
            for i in range(10):
                fast.stage(A(int(OTHER_HOME) + i), (WRONG_COA, True), [WRONG_COA, COA])
            fast.unstage(HOME)
            before = fast.installed()
            await asyncio.sleep(0)
            return before, fast.installed(), fast.flushes

        before, after, flushes = asyncio.run(turn())
        assert before == (1, 1) and after == (10, 20) and flushes == 2
        assert fast.accepted(HOME, COA) is None and fast.accepted(OTHER_HOME, COA) == 0
        assert ba.lookup(fast.homes_fd, OTHER_HOME.packed, 36) == home_value(
            HA_ADDR, WRONG_COA, True, 64
        )
        assert fast.errors == 0
        # the live gate: one map write each way (nothing to attach here)
        assert ba.lookup(fast.live_fd, bytes(4), 4) == bytes(4) and not fast.live
        fast.set_live(True)
        assert ba.lookup(fast.live_fd, bytes(4), 4) == struct.pack("<I", 1) and fast.live
        fast.set_live(False)
        assert ba.lookup(fast.live_fd, bytes(4), 4) == bytes(4) and not fast.live
    finally:
        fast.stop()


def test_staging_asks_for_the_running_loop_once_per_turn(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Staging a binding while a flush is already due asks nothing of asyncio: each
    ``get_running_loop()`` is a getpid() system call (60 us inside User-Mode Linux, where one
    per staged binding made half of a 100,000-binding fill, docs/dataplane.md "At scale")."""
    if os.geteuid() != 0:
        pytest.skip("needs root for bpf()")
    fast = BpfFastPath(HA_ADDR, [], capacity=4096)
    fast.start()
    real = asyncio.get_running_loop
    asked = 0

    def counted() -> asyncio.AbstractEventLoop:
        nonlocal asked
        asked += 1
        return real()

    try:

        async def turn() -> tuple[int, int]:
            monkeypatch.setattr(asyncio, "get_running_loop", counted)
            for i in range(1000):
                fast.stage(A(int(OTHER_HOME) + i), (WRONG_COA, False), [])
            staged = asked
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            monkeypatch.undo()
            return staged, asked

        staged, total = asyncio.run(turn())
        assert staged == 1 and total < 10
        assert fast.installed() == (1000, 0) and fast.flushes == 1 and fast.errors == 0
    finally:
        fast.stop()


def _gateway_namespace(name: str) -> None:
    """A scratch namespace: a0 (10.9.0.1/24, up, its veth peer b0 up), 10.77.0.0/16 via
    10.9.0.254, that gateway's neighbour entry permanent (02:11:22:33:44:55)."""
    sh(f"ip netns add {name} && ip -n {name} link set lo up")
    sh(f"ip -n {name} link add a0 type veth peer name b0")
    sh(f"ip -n {name} link set a0 up && ip -n {name} link set b0 up")
    sh(f"ip -n {name} addr add 10.9.0.1/24 dev a0")
    sh(f"ip -n {name} route add 10.77.0.0/16 via 10.9.0.254")
    sh(f"ip -n {name} neigh replace 10.9.0.254 lladdr 02:11:22:33:44:55 dev a0 nud permanent")


def test_next_hops_from_the_kernels_tables() -> None:
    """dataplane/nexthops.py in a scratch namespace on this machine's kernel (no tunnels):
    the route's gateway and its neighbour, a directly connected care-of address without a
    neighbour (no value), no route (None), a non-local source (looked up without it), and the
    changes the monitor reports: a neighbour, a foreign route's prefix (our protocol's
    ignored), an address (with its local route's prefix), a link; a rule means everything."""
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    name = f"mipnh{os.getpid() & 0xFFFF:04x}"
    try:
        _gateway_namespace(name)
        far, near, nowhere = (int(A(x)) for x in ("10.77.1.2", "10.9.0.7", "198.51.100.1"))
        with in_netns(name):
            index = socket.if_nametoindex("a0")
            monitor = nh.Monitor()
            try:
                routes = nh.routes([far, near, nowhere], int(A("10.9.0.1")))
                assert routes == {
                    far: (index, A("10.9.0.254").packed, 0),
                    near: (index, A("10.9.0.7").packed, 0),
                    nowhere: None,
                }
                assert nh.routes([far], int(A("192.0.2.99")))[far] == routes[far]  # not local
                values = nh.values({c: r for c, r in routes.items() if r is not None})
                assert values[near] is None
                value = values[far]
                assert value is not None
                oif, limit, dmac, smac, _ = nh.VALUE.unpack(value)
                assert (oif, limit, dmac.hex(":")) == (index, 1500, "02:11:22:33:44:55")
                assert len(smac) == 6 and smac != dmac
                assert monitor.drain() == nh.Changes()
                sh("ip neigh replace 10.9.0.254 lladdr 02:11:22:33:44:66 dev a0 nud reachable")
                assert monitor.drain() == nh.Changes(neighbours={(index, A("10.9.0.254").packed)})
                sh("ip route add 10.78.0.0/16 via 10.9.0.254 proto 77")  # ours: no next hop
                assert monitor.drain() == nh.Changes()
                sh("ip route add 10.79.0.0/16 via 10.9.0.254")
                changes = monitor.drain()
                assert changes == nh.Changes(prefixes={(int(A("10.79.0.0")), 16)})
                assert changes.inside([far, near, int(A("10.79.3.4"))]) == {int(A("10.79.3.4"))}
                assert nh.Changes(prefixes={(0, 0)}).inside([far, near]) == {far, near}
                sh("ip addr add 10.9.0.9/24 dev a0")  # its local route: the prefix /32
                changes = monitor.drain()
                assert changes.addresses == {int(A("10.9.0.9"))} and not changes.everything
                assert (int(A("10.9.0.9")), 32) in changes.prefixes, changes
                sh("ip link set a0 mtu 1400")
                changes = monitor.drain()
                assert index in changes.links and not changes.everything, changes
                sh("ip rule add to 10.80.0.0/16 lookup main pref 100")
                assert monitor.drain().everything
            finally:
                monitor.close()
    finally:
        sh(f"ip netns del {name}", check=False)


def test_next_hops_follow_changes_only_and_spread_over_turns() -> None:
    """The MAC path at a scale of distinct care-of addresses (one per mobile node, as with
    co-located addresses), on this machine's kernel in a scratch namespace: nothing is looked
    up while gated off (a standby), everything pending from the turn after it goes live; new
    care-of addresses are looked up :data:`HOP_TURN` per event-loop turn, one chain of turns however
    often the refresh runs; a further one costs one lookup, not one per address in use; a
    neighbour's change rewrites the entries behind it without lookups; a route looks up again
    the addresses inside its prefix only, a link event those routed through the link, a rule
    every one; a care-of address no longer used loses its entry."""
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces and bpf()")
    name = f"mipnt{os.getpid() & 0xFFFF:04x}"
    n = 1000
    coas = [A(int(A("10.77.0.1")) + i) for i in range(n + 1)]
    try:
        _gateway_namespace(name)
        with in_netns(name):
            fast = BpfFastPath(A("10.9.0.1"), [], capacity=4096, route_cache=False)
            fast.start()
            try:

                async def scenario() -> dict[str, object]:
                    seen: dict[str, object] = {}
                    for i in range(n):
                        fast.stage(A(int(A("10.200.0.1")) + i), (coas[i], False), [coas[i]])
                    await asyncio.sleep(0)  # the flush; gated off (a standby): no lookup
                    await asyncio.sleep(0)
                    seen["standby"] = (fast.hop_lookups, len(fast.hop_pending), len(fast.hops))
                    fast.set_live(True)  # becoming live: the first turn of lookups, next turn
                    seen["switch"] = fast.hop_lookups
                    await asyncio.sleep(0)
                    seen["first"] = (fast.hop_lookups, len(fast.hop_pending))
                    for _ in range(3):  # events meanwhile start no second chain
                        fast.refresh_hops()
                    seen["again"] = fast.hop_lookups
                    turns = 0
                    while fast.hop_pending and turns < 100:
                        await asyncio.sleep(0)
                        turns += 1
                    seen["turns"], seen["filled"] = turns, (fast.hop_lookups, len(fast.hops))
                    fast.stage(A("10.201.0.1"), (coas[n], False), [coas[n]])
                    await asyncio.sleep(0)
                    seen["one_more"] = (fast.hop_lookups, len(fast.hops))
                    sh("ip neigh replace 10.9.0.254 lladdr 02:11:22:33:44:66 dev a0 nud permanent")
                    await asyncio.sleep(0.2)  # the monitor's event read
                    macs = {nh.VALUE.unpack(v)[2].hex(":") for v in fast.hops.values()}
                    seen["neighbour"] = (fast.hop_lookups, len(fast.hops), macs)
                    fast.unstage(A("10.201.0.1"))
                    await asyncio.sleep(0)
                    seen["unused"] = (len(fast.hops), int(coas[n]) in fast.hops)

                    async def events(command: str) -> tuple[int, int, int, int]:
                        nonlocal turns
                        sh(command)
                        await asyncio.sleep(0.2)  # the monitor's events read
                        while fast.hop_pending and turns < 400:
                            await asyncio.sleep(0)
                            turns += 1
                        return fast.hop_full, fast.hop_again, fast.hop_lookups, len(fast.hops)

                    seen["outside"] = await events("ip route add 10.79.0.0/16 via 10.9.0.254")
                    seen["inside"] = await events("ip route add 10.77.0.0/24 via 10.9.0.254")
                    seen["link"] = await events("ip link set a0 mtu 1400")
                    seen["limits"] = {nh.VALUE.unpack(v)[1] for v in fast.hops.values()}
                    seen["rule"] = await events("ip rule add to 10.80.0.0/16 lookup main pref 9")
                    seen["oifs"] = {nh.VALUE.unpack(v)[0] for v in fast.hops.values()}
                    seen["index"], seen["errors"] = socket.if_nametoindex("a0"), fast.errors
                    return seen

                seen = asyncio.run(scenario())
            finally:
                fast.stop()
        assert seen["standby"] == (0, n, 0)  # gated off: pending, nothing looked up
        assert seen["switch"] == 0  # set_live itself looks nothing up (a takeover's switch)
        assert seen["first"] == (HOP_TURN, n - HOP_TURN)
        assert seen["again"] == HOP_TURN  # one chain: no lookups beyond the first turn's
        assert seen["turns"] == -(-(n - HOP_TURN) // HOP_TURN)
        assert seen["filled"] == (n, n)
        assert seen["one_more"] == (n + 1, n + 1)
        assert seen["neighbour"] == (n + 1, n + 1, {"02:11:22:33:44:66"})
        assert seen["unused"] == (n, False)
        # a route outside every care-of address: no lookup; one over 255 of them (10.77.0.1 to
        # .255): those 255; the link's MTU: all of them (a full pass); a rule: all again
        assert seen["outside"] == (0, 0, n + 1, n)
        assert seen["inside"] == (0, 255, n + 256, n)
        assert seen["link"] == (1, 255, 2 * n + 256, n)
        assert seen["limits"] == {1400}
        assert seen["rule"] == (2, 255, 3 * n + 256, n)
        assert seen["oifs"] == {seen["index"]} and seen["errors"] == 0  # where the kernel says
    finally:
        sh(f"ip netns del {name}", check=False)


# --- inside a real kernel ---------------------------------------------------------------------


TTL = 41  # the outer TTL, not the default: the kernel's route and the programs' template agree


def _backend(topo: dict[str, str]) -> tuple[KernelBackend, BpfFastPath]:
    """The kernel backend started live in the home agent's namespace, with its BPF fast path
    on both of its interfaces."""
    tag = topo["ha"][-4:]
    fast = BpfFastPath(HA_ADDR, [f"h{tag}", f"g{tag}"], ttl=TTL, capacity=16_384)
    # decapsulated packets arrive on the care-of side interface: strict rp_filter would drop
    # them (the home address is routed through the tunnel device)
    sh(f"ip netns exec {topo['ha']} sysctl -qw net.ipv4.conf.all.rp_filter=0 "
       f"net.ipv4.conf.g{tag}.rp_filter=0")  # fmt: skip
    with in_netns(topo["ha"]):
        backend = KernelBackend(_nolog, HA_ADDR, ttl=TTL, fastpath=fast)
        asyncio.run(backend.start())
        backend.set_live(True)
    return backend, fast


def _filters(ha: str, dev: str) -> str:
    return sh(f"tc -n {ha} filter show dev {dev} ingress", check=False)


@pytest.mark.kernel
@pytest.mark.parametrize("kind", [IPIP, GRE, MINIMAL], ids=["ipip", "gre", "minimal"])
def test_forward_and_reverse_through_the_fast_path(
    topo: dict[str, str], kind: Encapsulation
) -> None:
    cn, ha, coa = topo["cn"], topo["ha"], topo["coa"]
    tag = ha[-4:]
    wire = IPIP if kind is MINIMAL else kind
    n = 20
    backend, fast = _backend(topo)
    try:
        for dev in (f"h{tag}", f"g{tag}"):
            shown = _filters(ha, dev)
            assert "mip_forward" in shown and "mip_reverse" in shown, shown
        with in_netns(ha):
            assert asyncio.run(backend.install_many([spec(HOME, (COA, kind))], TABLE)) == 0
            fast.flush()
            assert fast.installed() == (1, 1)
            # the kernel route is still there: the fallback for what the programs pass on
        assert f"dst {COA}" in sh(f"ip -n {ha} route show table {TABLE}")
        sink = socket_in(coa, socket.AF_INET, socket.SOCK_RAW, wire.value)
        sender = socket_in(cn, socket.AF_INET, socket.SOCK_DGRAM)
        # the first packet finds no neighbour entry for the care-of address: the program
        # passes it on and the kernel's tunnel sends it (and resolves the neighbour)
        sender.sendto(b"warm-up", (str(HOME), 9999))
        warm = drain(sink, 3.0)
        assert len(warm) == 1
        assert warm[0][8] == TTL, warm[0][8]  # the kernel route's outer TTL
        before = _ipip_tx(ha)
        for i in range(n):
            sender.sendto(b"fwd%03d" % i, (str(HOME), 9999))
        packets = drain(sink, 3.0)
        got = [decapsulate(p) for p in packets]
        assert len(got) == n, f"{len(got)}/{n} forwarded"
        assert {p[8] for p in packets} == {TTL}  # the programs' outer TTL: the same
        for d in got:
            assert (d.kind, d.outer_src, d.outer_dst) == (wire, HA_ADDR, COA)
            assert (d.inner_src, d.inner_dst) == (CN_ADDR, HOME)
        # none went through the kernel's tunnel devices: the program encapsulated them all
        assert _ipip_tx(ha) == before, (before, _ipip_tx(ha))
        # reverse: from the registered care-of address (accepted by the program, counted per
        # binding), a wrong care-of address and a spoofed inner source (dropped and counted)
        with in_netns(ha):
            drops_before = backend.reverse_drops()
        mib = _ip_mib(ha)
        reverse_cases(cn, coa, wire, n)
        # forwarded by the program (bpf_redirect), not by the stack
        assert _ip_mib(ha)["ForwDatagrams"] == mib["ForwDatagrams"], (mib, _ip_mib(ha))
        with in_netns(ha):
            assert fast.accepted(HOME, COA) == n
            assert fast.drops() == 2 * n
            drops = backend.reverse_drops()
            counters = backend.status()["counters"]
        assert drops is not None and drops_before is not None
        assert drops - drops_before == 2 * n, (drops_before, drops)
        assert isinstance(counters, dict) and counters["reverse-drop-unregistered"] == drops
        # not live (a standby): the programs stay attached and pass everything on, the
        # kernel's own path takes over
        with in_netns(ha):
            backend.set_live(False)
        assert "mip_forward" in _filters(ha, f"h{tag}")
        before = _ipip_tx(ha)
        for i in range(n):
            sender.sendto(b"standby%03d" % i, (str(HOME), 9999))
        assert len(drain(sink, 3.0)) == n
        assert _ipip_tx(ha) == before + n, (before, _ipip_tx(ha))
        for s in (sink, sender):
            s.close()
    finally:
        with in_netns(ha):
            asyncio.run(backend.stop())
    assert "bpf" not in _filters(ha, f"h{tag}") + _filters(ha, f"g{tag}")


def _frames_to(sock: socket.socket, mac: str) -> list[bytes]:
    """IPv4 frames captured on ``sock`` (AF_PACKET) whose destination MAC is ``mac``."""
    want = bytes.fromhex(mac.replace(":", ""))
    return [f for f in drain(sock, 2.0) if f[:6] == want and f[12:14] == b"\x08\x00"]


def _capture(ns: str, dev: str) -> socket.socket:
    """An AF_PACKET socket on ``dev`` in ``ns``: every frame it sends and receives."""
    sock = socket_in(ns, socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
    sock.bind((dev, 0))
    return sock


def _link(ns: str, dev: str, attr: str) -> str:
    """``dev``'s ``attr`` in ``ns`` (/sys/class/net: ``address``, ``ifindex``)."""
    return sh(f"ip netns exec {ns} cat /sys/class/net/{dev}/{attr}").strip()


def _on_the_wire(
    send: Callable[[int, bytes], None],
    label: bytes,
    n: int,
    tap: socket.socket,
    mac: str,
    receiver: socket.socket,
    delivered: bool,
) -> None:
    """``n`` packets sent once ``tap`` (AF_PACKET) is emptied: ``n`` frames to ``mac`` on it,
    and ``receiver`` got them all (``delivered``) or none (a MAC nobody there answers to)."""
    drain(tap, 0.5)
    send(n, label)
    assert len(_frames_to(tap, mac)) == n
    if delivered:
        assert len(drain(receiver, 3.0)) == n
    else:
        assert drain(receiver, 0.5) == []


@pytest.mark.kernel
def test_the_mac_path_follows_the_neighbour_table(topo: dict[str, str]) -> None:
    """The forward program's MAC path (dataplane/nexthops.py): the care-of address's next-hop
    entry appears once the kernel knows the neighbour, is what the program writes (a forged
    entry's MAC is on the wire), follows a neighbour's new MAC, and is gone when the
    neighbour is deleted or the route to the care-of address no longer leads there; the
    traffic is forwarded throughout."""
    cn, ha, coa = topo["cn"], topo["ha"], topo["coa"]
    tag = ha[-4:]
    n = 10
    backend, fast = _backend(topo)
    g_index = int(_link(ha, f"g{tag}", "ifindex"))
    g_mac = _link(ha, f"g{tag}", "address")
    m_mac = _link(coa, f"m{tag}", "address")
    sink = socket_in(coa, socket.AF_INET, socket.SOCK_RAW, IPIP.value)
    tap = _capture(coa, f"m{tag}")
    sender = socket_in(cn, socket.AF_INET, socket.SOCK_DGRAM)

    def send(count: int, label: bytes) -> None:
        for i in range(count):
            sender.sendto(label + b"%03d" % i, (str(HOME), 9999))

    def hop() -> tuple[int, str, str] | None:
        with in_netns(ha):
            fast.flush()  # what the reader does inside the daemon's loop: the events read
            return fast.next_hop(COA)

    try:
        with in_netns(ha):
            assert asyncio.run(backend.install_many([spec(HOME, (COA, IPIP))], TABLE)) == 0
        assert hop() is None  # no neighbour yet: no entry
        send(1, b"warm")  # the kernel's tunnel resolves the neighbour
        assert len(drain(sink, 3.0)) == 1
        assert hop() == (g_index, m_mac, g_mac)
        drain(tap, 0.5)
        before = _ipip_tx(ha)
        send(n, b"mac")
        got = [decapsulate(p) for p in drain(sink, 3.0)]
        assert len(got) == n and {(d.outer_dst, d.inner_dst) for d in got} == {(COA, HOME)}
        assert _ipip_tx(ha) == before  # the program's, not the kernel tunnel's
        # the program writes the entry's MACs: a forged destination is what goes on the wire
        forged = "02:00:00:00:0f:0f"
        with in_netns(ha):
            entry = nh.VALUE.pack(g_index, 1500, bytes.fromhex(forged.replace(":", "")),
                                  bytes.fromhex(g_mac.replace(":", "")), 0)  # fmt: skip
            assert ba.update_batch(fast.nexthops_fd, [COA.packed], [entry]) == (1, 0)
        _on_the_wire(send, b"forged", n, tap, forged, sink, delivered=False)
        # the neighbour's new MAC (the care-of node's interface changed it): followed
        new = "02:00:00:00:be:ef"
        sh(f"ip -n {coa} link set m{tag} address {new}")
        sh(f"ip -n {ha} neigh replace {COA} lladdr {new} dev g{tag} nud reachable")
        assert hop() == (g_index, new, g_mac)
        _on_the_wire(send, b"moved", n, tap, new, sink, delivered=True)
        assert _ipip_tx(ha) == before
        # the neighbour deleted: no entry, and the traffic still forwarded (the kernel
        # resolves it again; then the entry is back)
        sh(f"ip -n {ha} neigh del {COA} dev g{tag}")
        assert hop() is None
        send(n, b"gone")
        assert len(drain(sink, 3.0)) == n
        assert hop() == (g_index, new, g_mac)
        # the route to the care-of address changed: the entry goes with it
        sh(f"ip -n {ha} route add unreachable {COA}/32")
        assert hop() is None
        sh(f"ip -n {ha} route del unreachable {COA}/32")
        assert hop() == (g_index, new, g_mac)
        # the binding withdrawn: its care-of address's entry too
        with in_netns(ha):
            asyncio.run(backend.remove_many([HOME], TABLE))
            fast.flush()
            assert fast.installed() == (0, 0) and fast.hops == {}
        assert hop() is None
        assert fast.errors == 0, fast.last_error
    finally:
        for s in (sink, tap, sender):
            s.close()
        with in_netns(ha):
            asyncio.run(backend.stop())


@pytest.mark.kernel
def test_a_restart_detaches_what_a_killed_predecessor_left(topo: dict[str, str]) -> None:
    """A member SIGKILLed while live leaves its filters attached (the kernel keeps their
    programs and maps): the next start takes them off, so a restarted standby forwards and
    decapsulates nothing with the dead process's bindings."""
    ha, tag = topo["ha"], topo["ha"][-4:]
    backend, fast = _backend(topo)
    # the process dies: its descriptors close, nothing is detached
    fds = (fast.homes_fd, fast.allowed_fd, fast.drops_fd, fast.nexthops_fd, fast.live_fd)
    for fd in (*fast.progs.values(), *fds):
        os.close(fd)
    shown = _filters(ha, f"h{tag}") + _filters(ha, f"g{tag}")
    assert shown.count("name mip_forward") == 2 and shown.count("name mip_reverse") == 2, shown
    dead = set(re.findall(r" id (\d+)", shown))
    assert len(dead) == 2, shown
    again = BpfFastPath(HA_ADDR, [f"h{tag}", f"g{tag}"], capacity=64)
    try:
        with in_netns(ha):
            again.start()
        # the dead process's programs are gone; the new ones are attached, gated off
        shown = _filters(ha, f"h{tag}") + _filters(ha, f"g{tag}")
        assert shown.count("name mip_forward") == 2 and shown.count("name mip_reverse") == 2
        assert not dead & set(re.findall(r" id (\d+)", shown)), (dead, shown)
        assert not again.live
    finally:
        with in_netns(ha):
            again.stop()
            fast.progs.clear()
            fast.homes_fd = fast.allowed_fd = fast.drops_fd = -1
            fast.nexthops_fd = fast.live_fd = -1
            asyncio.run(backend.stop())


def _ip_mib(ns: str) -> dict[str, int]:
    """The namespace's IP counters (/proc/net/snmp's ``Ip:`` lines): ``ForwDatagrams`` counts
    what the stack forwarded (``ip_forward``), ``InHdrErrors`` its TTL expiries among others."""
    heads, values = [ln.split()[1:] for ln in sh(f"ip netns exec {ns} cat /proc/net/snmp")
                     .splitlines() if ln.startswith("Ip:")][:2]  # fmt: skip
    return dict(zip(heads, (int(v) for v in values), strict=True))


def _tunnelled(inner_src: IPv4Address, inner_dst: IPv4Address, payload: bytes, ttl: int = 64,
               port: int = 7777) -> bytes:  # fmt: skip
    """A UDP packet from ``inner_src`` to ``inner_dst`` in IP-in-IP from the care-of address
    to the Home Agent."""
    head = IPv4Header(0, 0, 1, 0, ttl, socket.IPPROTO_UDP, inner_src, inner_dst)
    inner = build_ipv4(head, struct.pack("!HHHH", 5555, port, 8 + len(payload), 0) + payload)
    return encapsulate(inner, IPIP, COA, HA_ADDR, forwarding=False)


@pytest.mark.kernel
def test_the_reverse_program_forwards_the_inner_packet(topo: dict[str, str]) -> None:
    """The reverse program forwards what it decapsulates itself (a FIB lookup, the inner TTL
    decremented, ``bpf_redirect``): the packets reach the correspondent with the stack's
    forwarding counter unmoved, also under strict ``rp_filter``; no neighbour yet, TTL
    expiring and a local destination go to the kernel's tunnel path still encapsulated
    (received on ``mip-ipip``, as with ``fastpath = "off"``, where strict ``rp_filter`` passes
    them: the home address is routed through that device; the stack forwards, sends the ICMP
    error, delivers); unregistered pairs are still dropped and counted."""
    cn, ha, coa = topo["cn"], topo["ha"], topo["coa"]
    tag = ha[-4:]
    n = 20
    backend, fast = _backend(topo)
    rx = socket_in(cn, socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("0.0.0.0", 7777))
    tap = _capture(cn, f"c{tag}")
    local = socket_in(ha, socket.AF_INET, socket.SOCK_DGRAM)
    local.bind((str(HA_ADDR), 7778))
    raw = socket_in(coa, socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    icmp = socket_in(coa, socket.AF_INET, socket.SOCK_RAW, IPIP.value)
    h_mac = _link(ha, f"h{tag}", "address")
    c_mac = _link(cn, f"c{tag}", "address")

    def send(count: int, label: bytes, **kw: int) -> None:
        for i in range(count):
            raw.sendto(_tunnelled(HOME, CN_ADDR, label + b"%03d" % i, **kw), (str(HA_ADDR), 0))

    def strict(on: bool) -> None:
        v = 1 if on else 0
        sh(f"ip netns exec {ha} sysctl -qw net.ipv4.conf.all.rp_filter={v} "
           f"net.ipv4.conf.g{tag}.rp_filter={v}")  # fmt: skip

    try:
        with in_netns(ha):
            assert asyncio.run(backend.install_many([spec(HOME, (COA, IPIP))], TABLE)) == 0
            fast.flush()
        sh(f"ip -n {ha} neigh flush dev h{tag}")
        # no neighbour for the correspondent: the first packet goes to the kernel's tunnel
        # path, still encapsulated, which forwards it (and resolves the neighbour)
        mib, tunnel = _ip_mib(ha), _ipip_tx(ha, "rx")
        send(1, b"first")
        assert [p[:8] for p in drain(rx, 3.0)] == [b"first000"]
        assert _ip_mib(ha)["ForwDatagrams"] == mib["ForwDatagrams"] + 1
        assert _ipip_tx(ha, "rx") == tunnel + 1  # received on mip-ipip: not decapsulated here
        # then the program forwards: delivered, the stack's forwarding counter unmoved, the
        # FIB's MACs on the frames, the inner TTL decremented (the IP checksum fixed: the
        # correspondent's socket received them)
        drain(tap, 0.3)
        mib = _ip_mib(ha)
        send(n, b"fast")
        got = drain(rx, 3.0)
        assert len(got) == n and all(p.startswith(b"fast") for p in got), [p[:8] for p in got]
        assert _ip_mib(ha)["ForwDatagrams"] == mib["ForwDatagrams"], (mib, _ip_mib(ha))
        frames = _frames_to(tap, c_mac)
        assert len(frames) == n and {f[6:12].hex(":") for f in frames} == {h_mac}
        assert {f[14 + 8] for f in frames} == {63}
        with in_netns(ha):
            assert fast.accepted(HOME, COA) == n + 1
        # strict rp_filter on the receiving interface: the program's packets still go
        # through (the pairs map is the source check)...
        strict(True)
        mib = _ip_mib(ha)
        send(n, b"strict")
        assert len(drain(rx, 3.0)) == n
        assert _ip_mib(ha)["ForwDatagrams"] == mib["ForwDatagrams"]
        # ...and so do those it hands over (no neighbour; the neighbour event read, as the
        # daemon's loop does: the route cache invalidated): the kernel's tunnel path, whose
        # device the home address is routed through (until 2026-12-07 the program handed them
        # over decapsulated, as if received on g{tag}, where strict rp_filter dropped them)
        sh(f"ip -n {ha} neigh flush dev h{tag}")
        with in_netns(ha):
            fast.refresh_hops()
        tunnel = _ipip_tx(ha, "rx")
        send(3, b"handed")
        assert len(drain(rx, 3.0)) == 3
        assert _ipip_tx(ha, "rx") >= tunnel + 1  # the first, at least (then a neighbour)
        strict(False)
        send(1, b"resolve")
        assert len(drain(rx, 3.0)) == 1
        # TTL 1: the stack sends the ICMP time exceeded to the home address (through the
        # tunnel to the care-of address); nothing forwarded
        drain(icmp, 0.3)
        mib = _ip_mib(ha)
        send(1, b"ttl", ttl=1)
        assert drain(rx, 1.0) == []
        after = _ip_mib(ha)
        assert after["InHdrErrors"] == mib["InHdrErrors"] + 1, (mib, after)
        assert after["ForwDatagrams"] == mib["ForwDatagrams"]
        errors = [decapsulate(p).inner for p in drain(icmp, 3.0)]
        assert any(e[9] == socket.IPPROTO_ICMP and e[20] == 11 for e in errors), errors
        # a local destination: delivered by the stack
        raw.sendto(_tunnelled(HOME, HA_ADDR, b"local", port=7778), (str(HA_ADDR), 0))
        assert [p[:5] for p in drain(local, 3.0)] == [b"local"]
        # unregistered pairs: dropped and counted, nothing forwarded
        rx.close()  # reverse_cases binds its own
        with in_netns(ha):
            drops = fast.drops()
        mib = _ip_mib(ha)
        reverse_cases(cn, coa, IPIP, n)
        with in_netns(ha):
            assert fast.drops() == drops + 2 * n
            assert fast.accepted(HOME, COA) == 3 * n + 7  # every registered packet above
        assert _ip_mib(ha)["ForwDatagrams"] == mib["ForwDatagrams"]
    finally:
        for s in (rx, tap, local, raw, icmp):
            s.close()
        with in_netns(ha):
            asyncio.run(backend.stop())


@pytest.mark.kernel
def test_the_reverse_route_cache_follows_the_kernel(topo: dict[str, str]) -> None:
    """The reverse program's route cache (``routes``, keyed by inner destination and TOS,
    stamped with the ``generation``): filled from the FIB's answer, and used: a forged entry
    of the current generation is what goes on the wire, one of an older generation is not
    (the FIB's answer replaces it); a neighbour's new MAC, a route to elsewhere and a
    correspondent that becomes an away home are followed once the event is read (the
    generation bumped: the forged entry no longer used); a source-selecting policy rule
    turns the cache off (generation 0), the FIB path still forwards."""
    cn, ha, coa = topo["cn"], topo["ha"], topo["coa"]
    tag = ha[-4:]
    n = 10
    backend, fast = _backend(topo)
    rx = socket_in(cn, socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("0.0.0.0", 7777))
    tap = _capture(cn, f"c{tag}")
    gtap = _capture(coa, f"m{tag}")
    sink = socket_in(coa, socket.AF_INET, socket.SOCK_RAW, IPIP.value)
    raw = socket_in(coa, socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    h_index = int(_link(ha, f"h{tag}", "ifindex"))
    g_index = int(_link(ha, f"g{tag}", "ifindex"))
    h_mac = _link(ha, f"h{tag}", "address")
    c_mac = _link(cn, f"c{tag}", "address")
    forged = "02:00:00:00:0f:0f"

    def send(count: int, label: bytes) -> None:
        for i in range(count):
            raw.sendto(_tunnelled(HOME, CN_ADDR, label + b"%03d" % i), (str(HA_ADDR), 0))

    def events() -> int:
        """The monitor's events read (what the daemon's loop does): the generation now."""
        with in_netns(ha):
            fast.refresh_hops()
        return fast.generation

    def entry() -> tuple[int, int, str, str, int] | None:
        with in_netns(ha):
            return fast.cached_route(CN_ADDR)

    def forge(generation: int, largest: int = 1500) -> None:
        value = ROUTE.pack(generation, h_index, largest, bytes.fromhex(forged.replace(":", "")),
                           bytes.fromhex(h_mac.replace(":", "")))  # fmt: skip
        with in_netns(ha):
            ba.update(fast.routes_fd, ROUTE_KEY.pack(CN_ADDR.packed, 0), value)

    def bumped(previous: int) -> int:
        """The events read: a generation that is neither 0 (the cache off) nor ``previous``."""
        generation = events()
        assert generation not in (0, previous)
        return generation

    try:
        with in_netns(ha):
            assert asyncio.run(backend.install_many([spec(HOME, (COA, IPIP))], TABLE)) == 0
            fast.flush()
        send(1, b"first")  # the neighbour resolved by the stack (no entry: no neighbour yet)
        assert len(drain(rx, 3.0)) == 1
        gen = events()
        assert gen > 0
        # filled: the FIB's answer under the current generation
        mib = _ip_mib(ha)
        send(n, b"fill")
        assert len(drain(rx, 3.0)) == n
        assert _ip_mib(ha)["ForwDatagrams"] == mib["ForwDatagrams"]
        got = entry()
        assert got is not None and got[:4] == (gen, h_index, c_mac, h_mac), got
        assert got[4] == 20 + 8 + 7  # the largest inner packet passed so far
        # used: a forged entry of the current generation is what goes on the wire
        forge(gen)
        _on_the_wire(send, b"forged", n, tap, forged, rx, delivered=False)
        # a bigger packet than the entry has seen passed: the FIB decides (and the entry grows)
        forge(gen, largest=30)
        send(1, b"bigger")
        assert len(drain(rx, 3.0)) == 1
        assert entry() == (gen, h_index, c_mac, h_mac, 20 + 8 + 9)
        # an older generation's entry: not used, replaced by the FIB's answer
        forge(gen - 1)
        _on_the_wire(send, b"stale", n, tap, c_mac, rx, delivered=True)
        assert entry() == (gen, h_index, c_mac, h_mac, 20 + 8 + 8)
        # the correspondent's new MAC: the forged entry dropped with the neighbour event
        forge(gen)
        new = "02:00:00:00:be:ef"
        sh(f"ip -n {cn} link set c{tag} address {new}")
        sh(f"ip -n {ha} neigh replace {CN_ADDR} lladdr {new} dev h{tag} nud reachable")
        gen2 = bumped(gen)
        _on_the_wire(send, b"moved", n, tap, new, rx, delivered=True)
        assert entry() == (gen2, h_index, new, h_mac, 20 + 8 + 8)
        # a route to the correspondent through the other interface: followed
        forge(gen2)
        other = "02:00:00:00:aa:aa"
        sh(f"ip -n {ha} neigh replace {CN_ADDR} lladdr {other} dev g{tag} nud permanent")
        sh(f"ip -n {ha} route add {CN_ADDR}/32 dev g{tag}")
        gen3 = bumped(gen2)
        _on_the_wire(send, b"moved", n, gtap, other, rx, delivered=False)
        got = entry()
        assert got is not None and got[:3] == (gen3, g_index, other), got
        sh(f"ip -n {ha} route del {CN_ADDR}/32 dev g{tag}")
        events()
        send(n, b"back")
        assert len(drain(rx, 3.0)) == n
        # a policy rule that selects by source: the cache off, the FIB path forwards
        sh(f"ip -n {ha} rule add from {WRONG_COA} lookup main pref 77")
        assert events() == 0
        forge(0)
        send(n, b"nocache")
        assert len(drain(rx, 3.0)) == n
        sh(f"ip -n {ha} rule del from {WRONG_COA} lookup main pref 77")
        gen4 = bumped(gen3)
        send(n, b"again")
        assert len(drain(rx, 3.0)) == n
        # the correspondent becomes an away home: its cached exit is not used any more (the
        # homes map's change bumps the generation); the stack tunnels it to its care-of address
        forge(gen4)
        with in_netns(ha):
            assert asyncio.run(backend.install_many([spec(CN_ADDR, (COA, IPIP))], TABLE)) == 0
            fast.flush()
            assert fast.generation not in (0, gen4)
        drain(sink, 0.3)
        drain(tap, 0.3)
        send(n, b"home")
        tunnelled = [decapsulate(p) for p in drain(sink, 3.0)]
        assert sum(1 for d in tunnelled if d.inner_dst == CN_ADDR) == n, tunnelled
        assert _frames_to(tap, forged) == [] and drain(rx, 0.3) == []
        assert fast.errors == 0, fast.last_error
    finally:
        sh(f"ip -n {ha} rule del pref 77", check=False)
        for s in (rx, tap, gtap, sink, raw):
            s.close()
        with in_netns(ha):
            asyncio.run(backend.stop())


def _ipip_tx(ha: str, way: str = "tx") -> int:
    """Packets the kernel backend's own devices transmitted (``way`` "rx": received) so far."""
    total = 0
    for dev in ("mip-ipip", "mip-gre"):
        out = sh(f"ip -n {ha} -s -j link show dev {dev}", check=False)
        if f'"{way}"' in out:
            import json

            total += int(json.loads(out)[0]["stats64"][way]["packets"])
    return total


@pytest.mark.kernel
def test_10000_bindings_installed_then_withdrawn_in_batches(topo: dict[str, str]) -> None:
    ha = topo["ha"]
    n = 10_000
    homes = [A(int(A("10.64.0.0")) + i) for i in range(n)]
    coas = [A(int(A("198.18.0.0")) + i) for i in range(n)]
    specs = [
        spec(h, (c, GRE if i % 2 else IPIP))
        for i, (h, c) in enumerate(zip(homes, coas, strict=True))
    ]
    backend, fast = _backend(topo)
    try:
        with in_netns(ha):
            assert asyncio.run(backend.install_many(specs, TABLE)) == 0
            fast.flush()
            assert fast.errors == 0, fast.last_error
            assert fast.installed() == (n, n)
            # what the maps hold, read back from the kernel
            assert fast.accepted(homes[123], coas[123]) == 0
            assert fast.accepted(homes[123], coas[124]) is None
            assert ba.lookup(fast.homes_fd, homes[9_999].packed, 36) == home_value(
                HA_ADDR, coas[9_999], True, TTL
            )
            flushes = fast.flushes
            assert asyncio.run(backend.remove_many(homes[: n // 2], TABLE)) == 0
            fast.flush()
            assert fast.errors == 0, fast.last_error
            assert fast.installed() == (n - n // 2, n - n // 2)
            assert fast.flushes - flushes <= n // 2 // 1000 + 1  # batched: one per loop turn
            assert ba.lookup(fast.homes_fd, homes[0].packed, 36) is None
            assert fast.accepted(homes[0], coas[0]) is None
            assert fast.accepted(homes[-1], coas[-1]) == 0
    finally:
        with in_netns(ha):
            asyncio.run(backend.stop())
    assert "bpf" not in sh(f"tc -n {ha} filter show dev h{ha[-4:]} ingress", check=False)


@pytest.mark.kernel
def test_daemon_attaches_the_fast_path_while_active(tmp_path: Path) -> None:
    """``[dataplane] fastpath_interfaces``: the daemon's kernel backend fills the maps from
    the registrations and attaches the programs while active; a clean stop detaches them."""
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    with Segment() as seg:
        ha = seg.add_member("ha", f"{HA}/24")
        far = seg.add_member("far", f"{FAR}/24")
        # ttl: the kernel's routes and the fast path's template agree
        daemon = kernel_homeagent(seg, ha, tmp_path, fastpath_interfaces=[ha.ifname], ttl=37)
        register(seg, far, FAR, flags=0x02)  # T: reverse tunnelling
        data = wait_dataplane(
            seg, ha, lambda d: d["tunnels"] == 1 and d["backend"]["fastpath"]["homes"] == 1
        )
        fast = data["backend"]["fastpath"]
        assert fast["live"] and fast["reverse_pairs"] == 1 and fast["map_errors"] == 0, fast
        shown = seg.run(ha, ["tc", "filter", "show", "dev", ha.ifname, "ingress"]).stdout
        assert "mip_forward" in shown and "mip_reverse" in shown, shown
        routes = seg.run(ha, ["ip", "route", "show", "table", "all", "proto", "77"]).stdout
        assert "encap ip" in routes and " ttl 37 " in routes and " ttl 64 " not in routes, routes
        register(seg, far, FAR, lifetime=0)
        wait_dataplane(seg, ha, lambda d: d["backend"]["fastpath"]["homes"] == 0)
        assert daemon.stop() is not None
        shown = seg.run(ha, ["tc", "filter", "show", "dev", ha.ifname, "ingress"]).stdout
        assert "mip_" not in shown, shown
