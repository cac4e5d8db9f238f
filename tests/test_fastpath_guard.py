"""``[dataplane] fastpath``: the modes' configuration and the ``auto`` mode's guard
(src/mobileip/dataplane/fastpath_guard.py).

* Unmarked tests: the pure gate decision and interface choice, the configuration keys (errors
  name file, key and line).
* Root tests on this machine's kernel, in a namespace of their own: the readers (nftables
  chains, xfrm policies, legacy tables, rp_filter, links) against what ``iptables-nft``,
  ``ip xfrm`` and sysctls configure, and the guard itself driving a recording stand-in for the
  fast path: an nftables rule closes the gate through its event, not the poll; removing it
  reopens. The real programs carrying traffic, and moving off them, are tested inside
  User-Mode Linux (tests/test_kernel_bpf_guard.py).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from ipaddress import IPv4Address
from typing import Any

import pytest
from test_kernel_backend import in_netns

from mobileip.config import ConfigError, parse_config
from mobileip.dataplane import fastpath_guard as g
from mobileip.dataplane.fastpath_guard import (
    FastPathGuard,
    Gate,
    Link,
    Observation,
    choose_interfaces,
    decide,
    effective_rp_filter,
)

OPEN = Observation(active=True, interfaces=("eth0",))


# --- the decision -------------------------------------------------------------------------------


def test_decide_opens_only_with_nothing_bypassed() -> None:
    assert decide(OPEN) == Gate(True, "nothing bypassed")
    closed = {
        "standby": Observation(active=False, interfaces=("eth0",)),
        "no interface": Observation(active=True),
        "nftables: 2 chain(s)": Observation(active=True, interfaces=("eth0",), nft_chains=2),
        "cannot verify nftables: EINVAL": Observation(
            active=True, interfaces=("eth0",), nft_chains=None, nft_error="EINVAL"
        ),
        "iptables (legacy) tables: filter,nat": Observation(
            active=True, interfaces=("eth0",), legacy_tables=("filter", "nat")
        ),
        "xfrm: 1 policy": Observation(active=True, interfaces=("eth0",), xfrm_policies=1),
        "cannot verify xfrm": Observation(active=True, interfaces=("eth0",), xfrm_policies=None),
        "strict rp_filter on eth0": Observation(
            active=True, interfaces=("eth0", "eth1"), rp_filter=(("eth0", 1), ("eth1", 2))
        ),
        "tc: other ingress filters on eth1 (2)": Observation(
            active=True, interfaces=("eth0", "eth1"), tc_filters=(("eth0", 0), ("eth1", 2))
        ),
        "cannot verify tc filters: EPERM": Observation(
            active=True, interfaces=("eth0",), tc_filters=None, tc_error="EPERM"
        ),
    }
    for reason, obs in closed.items():
        gate = decide(obs)
        assert not gate.open and gate.reason.startswith(reason), (reason, gate)
    # loose (2) and off (0) do not close it
    loose = Observation(active=True, interfaces=("a", "b"), rp_filter=(("a", 2), ("b", 0)))
    assert decide(loose).open


def test_tc_events_name_their_interfaces() -> None:
    """A datagram of qdisc, filter and chain events: each one's tcmsg ifindex; other messages
    (a link event) and a truncated tail are not read."""

    def msg(kind: int, ifindex: int) -> bytes:
        body = struct.pack("=BxxxiIII", 0, ifindex, 1, 0xFFFFFFF2, 0) + bytes(8)
        return struct.pack("=IHHII", 16 + len(body), kind, 0, 0, 0) + body

    data = msg(44, 3) + msg(37, 7) + msg(16, 9) + msg(100, -1) + msg(45, 4)[:20]
    assert g.tc_event_indexes(data) == {3, 7, -1}
    assert g.tc_event_indexes(b"") == set()


def test_effective_rp_filter_is_the_larger_of_all_and_the_interface() -> None:
    assert effective_rp_filter(0, {"a": 1, "b": 0}) == (("a", 1), ("b", 0))
    assert effective_rp_filter(1, {"a": 0, "b": 2}) == (("a", 1), ("b", 2))
    assert effective_rp_filter(2, {"a": 1}) == (("a", 2),)


def test_choose_interfaces_is_conservative() -> None:
    links = [
        Link(1, "lo", up=True, ether=False),
        Link(2, "eth0"),
        Link(3, "eth1", up=False),
        Link(4, "veth0", kind="veth"),
        Link(5, "br0", kind="bridge"),
        Link(6, "eth2", master=5),  # a bridge port
        Link(7, "bond0", kind="bond"),
        Link(8, "eth3", master=7),  # a bond slave
        Link(9, "eth4"),
        Link(10, "eth4.7", kind="vlan", lower=9),  # eth4 carries a VLAN: left out
        Link(11, "mip-ipip", kind="ipip", ether=False),
        Link(12, "mip0", kind="tun", ether=False),
        Link(13, "eth5"),
        Link(14, "vrrp.7", kind="macvlan", lower=13, up=False),  # our virtual MAC
        Link(15, "dummy0", kind="dummy"),
        Link(16, "veth1", kind="veth"),
    ]
    own = {"mip-ipip", "mip-gre", "mip0", "veth1"}
    assert choose_interfaces(links, own, vmac="vrrp.7") == ("eth0", "veth0", "eth5", "vrrp.7")
    # without virtual_mac, another macvlan on eth5 makes it an upper device's lower: left out
    assert choose_interfaces(links, own) == ("eth0", "veth0")
    # the virtual MAC named but absent: not listed
    assert choose_interfaces(links[:4], own, vmac="vrrp.9") == ("eth0", "veth0")


# --- configuration ------------------------------------------------------------------------------

BASE = (
    '[homeagent]\naddress = "10.1.0.1"\n\n[[security_association]]\nspi = 256\n'
    'key = "00112233445566778899aabbccddeeff"\nhome_addresses = ["10.1.0.0/24"]\n\n'
    "[dataplane]\n"
)


def _dataplane(text: str) -> Any:
    cfg = parse_config(BASE + text, "ha.toml")
    assert cfg.dataplane is not None
    return cfg.dataplane


def test_config_modes_and_backward_compatibility() -> None:
    assert _dataplane('backend = "kernel"\n').fastpath == "auto"  # the default
    # the default is no error where there is no fast path (the kernel backend's only)
    assert _dataplane('backend = "userspace"\n').fastpath == "auto"
    old = _dataplane('backend = "kernel"\nfastpath_interfaces = ["eth0"]\n')
    assert (old.fastpath, old.fastpath_interfaces) == ("on", ("eth0",))  # as before the key
    auto = _dataplane('backend = "kernel"\nfastpath = "auto"\n')
    assert (auto.fastpath, auto.fastpath_interfaces) == ("auto", ())
    listed = _dataplane('fastpath = "auto"\nfastpath_interfaces = ["eth1"]\n')
    assert (listed.fastpath, listed.fastpath_interfaces) == ("auto", ("eth1",))
    off = _dataplane('backend = "kernel"\nfastpath = "off"\nfastpath_interfaces = ["eth0"]\n')
    assert off.fastpath == "off"


@pytest.mark.parametrize(
    ("text", "line", "key", "what"),
    [
        ('backend = "kernel"\nfastpath = "yes"\n', 11, "fastpath", "is not one of"),
        ('backend = "kernel"\nfastpath = true\n', 11, "fastpath", "must be a string"),
        ('backend = "kernel"\nfastpath = "on"\n', 11, "fastpath", "needs fastpath_interfaces"),
        ('backend = "userspace"\nfastpath = "auto"\n', 11, "fastpath", "kernel backend's"),
        (
            'backend = "userspace"\n\nfastpath_interfaces = ["eth0"]\n',
            12,
            "fastpath_interfaces",
            "kernel backend's",
        ),
    ],
)
def test_config_errors_name_file_key_and_line(text: str, line: int, key: str, what: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(BASE + text, "ha.toml")
    message = str(err.value)
    assert message.startswith(f"ha.toml: line {line}: dataplane.{key}: "), message
    assert what in message, message


# --- on this machine's kernel, in a namespace -------------------------------------------------


@pytest.fixture
def netns() -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    name = f"fpg{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def _ns(ns: str, *cmd: str) -> None:
    subprocess.run(["ip", "netns", "exec", ns, *cmd], check=True, capture_output=True)


def _iptables_nft() -> str:
    path = shutil.which("iptables-nft") or "/usr/sbin/iptables-nft"
    if not os.path.exists(path):
        pytest.skip("iptables-nft is not installed")
    return path


def test_readers_see_what_is_configured(netns: str) -> None:
    ipt = _iptables_nft()
    _ns(netns, "ip", "link", "add", "v0", "type", "veth", "peer", "name", "v1")
    _ns(netns, "ip", "link", "set", "v0", "up")
    with in_netns(netns):
        try:
            before = (g.read_nft_chains(), g.read_xfrm_policies())
        except OSError as exc:
            pytest.skip(f"this kernel cannot list nftables or xfrm: {exc}")
        links = {link.name: link for link in g.read_links()}
        assert links["v0"].up and links["v0"].kind == "veth" and links["v0"].ether
        assert not links["v1"].up and not links["lo"].ether
        assert choose_interfaces(list(links.values()), own=()) == ("v0",)
    assert before == (0, 0)
    _ns(netns, ipt, "-A", "FORWARD", "-s", "192.0.2.1", "-j", "DROP")
    _ns(netns, "ip", "xfrm", "policy", "add", "dir", "fwd", "src", "10.0.0.1", "dst", "10.0.0.2")
    _ns(netns, "sysctl", "-qw", "net.ipv4.conf.v0.rp_filter=1")
    legacy = shutil.which("iptables-legacy")
    if legacy:
        _ns(netns, legacy, "-A", "FORWARD", "-j", "ACCEPT")
    with in_netns(netns):
        assert g.read_nft_chains() >= 1
        assert g.read_xfrm_policies() == 1
        assert dict(g.read_rp_filter(["v0", "absent"])) == {"v0": 1}
        assert g.read_legacy_tables() == (("filter",) if legacy else ())


class _FastPath:
    """What the guard uses of BpfFastPath, recording the gate's writes."""

    def __init__(self, interfaces: tuple[str, ...] = ()) -> None:
        self.interfaces = interfaces
        self.live = False
        self.writes: list[tuple[float, bool]] = []
        self.attached: dict[str, int] = {}
        self.created_clsact: set[str] = set()
        self.detached: list[dict[str, int]] = []

    def set_live(self, live: bool) -> None:
        if live != self.live:
            self.writes.append((time.monotonic(), live))
        self.live = live

        self.detached: list[dict[str, int]] = []

    def _detach(self, indexes: dict[str, int], created: set[str]) -> None:
        self.detached.append(indexes)


def test_guard_rechooses_interfaces_on_activation_and_detaches_the_dropped() -> None:
    """Detected interfaces: chosen at start, again on becoming active; one no longer chosen
    loses our filters (its bookkeeping in the fast path forgotten)."""
    seen = [[Link(1, "lo", ether=False), Link(2, "eth0"), Link(3, "eth1")]]
    fp = _FastPath()
    logs: list[str] = []
    guard = FastPathGuard(fp, lambda e, **f: logs.append(e), links=lambda: seen[-1])  # type: ignore[arg-type]
    guard.prepare()
    assert fp.interfaces == ("eth0", "eth1")
    fp.attached = {"eth0": 2, "eth1": 3}
    seen.append([Link(2, "eth0"), Link(3, "eth1", master=9)])  # eth1 enslaved since
    guard.observe = lambda: Observation(active=guard.active)  # type: ignore[method-assign]
    guard.set_active(True)
    assert fp.interfaces == ("eth0",) and "eth1" not in fp.attached, fp.attached
    assert len(fp.detached) == 1  # the stand-in records the call (eth1 looked up here, if any)
    assert "dataplane.fastpath_interfaces" in logs
    guard.set_active(True)  # already active: not chosen again
    assert logs.count("dataplane.fastpath_interfaces") == 1
    configured = FastPathGuard(_FastPath(("x",)), lambda e, **f: None, interfaces=("x",))  # type: ignore[arg-type]
    assert not configured.detected and configured.interfaces() == ("x",)


def test_guard_keeps_the_gate_closed_when_the_programs_were_refused() -> None:
    fp = _FastPath(("eth0",))
    logs: list[dict[str, Any]] = []
    guard = FastPathGuard(fp, lambda e, **f: logs.append({"event": e, **f}), interfaces=("eth0",))  # type: ignore[arg-type]
    guard.unavailable("bpf(5): Permission denied; verifier:\nmisaligned packet access")
    guard.observe = lambda: pytest.fail("nothing to observe once refused")  # type: ignore[method-assign]
    guard.set_active(True)
    assert not fp.live and fp.writes == []
    assert guard.gate == Gate(False, "fast path unavailable: bpf(5): Permission denied; verifier:")
    assert guard.status()["state"] == "closed"
    assert [e["event"] for e in logs][:2] == [
        "dataplane.fastpath_unavailable",
        "dataplane.fastpath_gate",
    ]


def test_guard_closes_on_nftables_and_xfrm_events_and_reopens(netns: str) -> None:
    """A long poll interval (60 s): closing within 0.5 s of the policy or rule is the event's
    doing (and so is reopening)."""
    ipt = _iptables_nft()
    _ns(netns, "ip", "link", "add", "v0", "type", "veth", "peer", "name", "v1")
    _ns(netns, "ip", "link", "set", "v0", "up")
    fp = _FastPath()
    logs: list[dict[str, Any]] = []

    def log(event: str, **fields: Any) -> None:
        logs.append({"event": event, **fields})

    async def scenario() -> list[tuple[str, float]]:
        guard = FastPathGuard(fp, log, own=("v1",), poll=60.0)  # type: ignore[arg-type]
        guard.prepare()
        assert fp.interfaces == ("v0",)
        guard.start()
        if not guard.events or guard.gate.reason.startswith("cannot verify"):
            guard.stop()
            pytest.skip(f"no nftables/xfrm netlink here: {guard.gate.reason}")
        assert not fp.live and guard.gate.reason == "standby"
        guard.set_active(True)
        assert fp.live and guard.gate == Gate(True, "nothing bypassed"), guard.gate
        seen = []
        t0 = time.monotonic()  # an xfrm policy: its event closes the gate, its flush reopens
        for argv in (["add", "src", "10.9.0.1", "dst", "10.9.0.2", "dir", "fwd"], ["flush"]):
            cmd = ["ip", "netns", "exec", netns, "ip", "xfrm", "policy", *argv]
            assert await (await asyncio.create_subprocess_exec(*cmd)).wait() == 0
            while fp.live == (argv[0] == "add") and time.monotonic() - t0 < 5:
                await asyncio.sleep(0.01)
            seen.append((guard.gate.reason, time.monotonic() - t0))
        for add in (True, False):
            t0 = time.monotonic()
            if add:
                cmd = ["ip", "netns", "exec", netns, ipt, "-A", "FORWARD", "-j", "ACCEPT"]
                proc = await asyncio.create_subprocess_exec(*cmd)
                assert await proc.wait() == 0
            else:  # iptables-nft leaves its table and chain: delete the table
                delete_nft_table(2, "filter")
            while fp.live == add and time.monotonic() - t0 < 5:
                await asyncio.sleep(0.01)
            seen.append((guard.gate.reason, time.monotonic() - t0))
        guard.set_active(False)
        assert not fp.live and guard.gate.reason == "standby"
        guard.stop()
        return seen

    with in_netns(netns):
        seen = asyncio.run(scenario())
    (xfrm_reason, xfrm_after), (xfrm_gone, xfrm_gone_after) = seen[:2]
    assert xfrm_reason == "xfrm: 1 policy(ies)" and xfrm_after < 0.5, seen
    assert xfrm_gone == "nothing bypassed" and xfrm_gone_after < 1.0, seen
    (closed_reason, closed_after), (opened_reason, opened_after) = seen[2:]
    assert closed_reason.startswith("nftables:"), seen
    assert closed_after < 0.5, seen  # the event, not the 60 s poll
    assert opened_reason == "nothing bypassed" and opened_after < 0.5, seen
    assert [w for _, w in fp.writes] == [True, False, True, False, True, False], fp.writes
    gates = [entry for entry in logs if entry["event"] == "dataplane.fastpath_gate"]
    states = [e["state"] for e in gates]
    assert states == ["closed", "open", *["closed", "open"] * 2, "closed"], gates


def delete_nft_table(family: int, name: str) -> None:
    """``nft delete table`` (no nft binary needed) in the calling thread's namespace: one
    nfnetlink batch, acknowledged; raises OSError if refused."""
    res_id = struct.pack("!H", g.NFNL_SUBSYS_NFTABLES)
    begin = struct.pack("=BB", socket.AF_UNSPEC, 0) + res_id
    table = name.encode() + b"\0"
    attr = struct.pack("=HH", 4 + len(table), 1) + table + bytes(-len(table) & 3)  # NAME
    body = struct.pack("=BBH", family, 0, 0) + attr
    msgs = [
        (0x10, 0x1, begin),  # NFNL_MSG_BATCH_BEGIN
        (g.NFNL_SUBSYS_NFTABLES << 8 | 2, 0x1 | 0x4, body),  # NFT_MSG_DELTABLE, ACK
        (0x11, 0x1, begin),  # NFNL_MSG_BATCH_END
    ]
    data = b"".join(
        struct.pack("=IHHII", 16 + len(p), kind, flags, seq, 0) + p
        for seq, (kind, flags, p) in enumerate(msgs, start=1)
    )
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, g.NETLINK_NETFILTER) as s:
        s.bind((0, 0))
        s.settimeout(2.0)
        s.send(data)
        reply = s.recv(65536)
    kind = struct.unpack_from("=H", reply, 4)[0]
    err = -struct.unpack_from("=i", reply, 16)[0] if kind == 2 else 0
    if err:
        raise OSError(err, f"deleting nftables table {name}: {os.strerror(err)}")


def _foreign_filter(index: int, prio: int = 7) -> tuple[int, bytes]:
    """Another tool's ingress filter on ``index``: a program (any; ours, loaded apart) at
    ``prio``, as ``tc filter add ... ingress prio 7 bpf da`` would put it. (fd, its delete.)"""
    from mobileip.dataplane import bpf as b
    from mobileip.dataplane import bpf_asm as ba
    from mobileip.net import rtnl as nl

    fd = ba.prog_load(b.forward_program(ba.map_create(ba.MAP_HASH, 4, b.VALUE.size, 4)), "other")
    with nl.RtnlSocket() as sock:
        sock.apply([b.clsact_add(index)], ignore_benign=False)  # EEXIST where ours made it
        assert not sock.apply([b.bpf_filter(index, prio, fd)], ignore_benign=False)
    return fd, b.bpf_filter_del(index, prio)


def test_guard_closes_on_another_tc_filter_and_reopens(netns: str) -> None:
    """The real fast path attached to v0 in a namespace (its own two filters do not close the
    gate); another ingress filter there closes it through its tc event (a 60 s poll), its
    deletion reopens it; one on an interface the fast path does not use changes nothing."""
    from mobileip.dataplane import bpf_asm as ba
    from mobileip.dataplane.bpf import BpfFastPath
    from mobileip.net import rtnl as nl

    for argv in (("link", "add", "v0", "type", "veth", "peer", "name", "v1"),
                 ("link", "set", "v0", "up"), ("link", "set", "v1", "up")):  # fmt: skip
        _ns(netns, "ip", *argv)
    logs: list[dict[str, Any]] = []

    def log(event: str, **fields: Any) -> None:
        logs.append({"event": event, **fields})

    async def scenario() -> list[tuple[str, float, bool]]:
        fast = BpfFastPath(IPv4Address("10.0.0.1"), ["v0"], capacity=64)
        try:
            fast.start()
        except OSError as exc:
            pytest.skip(f"this kernel refuses the fast path: {exc}")
        guard = FastPathGuard(fast, log, interfaces=("v0",), poll=60.0)
        seen: list[tuple[str, float, bool]] = []
        try:
            guard.start()
            guard.set_active(True)
            if guard.gate.reason.startswith("cannot verify"):
                pytest.skip(f"no nftables/xfrm netlink here: {guard.gate.reason}")
            await asyncio.sleep(0.2)  # our own attach's events: checked again, still open
            with in_netns(netns):
                indexes = g.interface_indexes(["v0", "v1", "absent"])
                assert g.read_tc_filters(indexes) == (("v0", 0), ("v1", 0))
            seen.append((guard.gate.reason, 0.0, fast.live))
            for dev, wait in (("v1", 0.3), ("v0", 5.0)):
                index = socket.if_nametoindex(dev)
                t0 = time.monotonic()
                fd, delete = _foreign_filter(index)
                while fast.live and time.monotonic() - t0 < wait:
                    await asyncio.sleep(0.01)
                seen.append((guard.gate.reason, time.monotonic() - t0, fast.live))
                if dev == "v1":
                    continue
                t0 = time.monotonic()
                with nl.RtnlSocket() as sock:
                    assert not sock.apply([delete], ignore_benign=False)
                ba.close(fd)
                while not fast.live and time.monotonic() - t0 < 5:
                    await asyncio.sleep(0.01)
                seen.append((guard.gate.reason, time.monotonic() - t0, fast.live))
        finally:
            guard.stop()
            fast.stop()
        return seen

    with in_netns(netns):
        seen = asyncio.run(scenario())
    assert [(r, live) for r, _, live in seen] == [
        ("nothing bypassed", True),
        ("nothing bypassed", True),  # v1: not the fast path's
        ("tc: other ingress filters on v0 (1)", False),
        ("nothing bypassed", True),
    ], seen
    assert seen[2][1] < 0.5 and seen[3][1] < 0.5, seen  # the events, not the 60 s poll


def test_tc_events_of_shared_blocks_are_dropped_in_the_kernel(netns: str) -> None:
    """The guard's tc event socket carries a classic BPF filter: a filter added to a shared
    block (as the kernel backend adds one flower filter per reverse-tunnelled binding) never
    reaches it, while a socket without the filter sees that event; an interface's own qdisc
    and filter events reach both."""
    from mobileip.dataplane import bpf as b
    from mobileip.dataplane import bpf_asm as ba
    from mobileip.dataplane import kernel_nl as knl
    from mobileip.net import rtnl as nl

    _ns(netns, "ip", "link", "add", "v0", "type", "veth", "peer", "name", "v1")
    block = 0x4D49F00D

    def block_filter(fd: int) -> bytes:
        flags = struct.pack("=I", b.TCA_BPF_FLAG_ACT_DIRECT)
        opts = (b._nla(b.TCA_BPF_FD, struct.pack("=I", fd)) + b._nla(b.TCA_BPF_NAME, b"x\0")
                + b._nla(b.TCA_BPF_FLAGS, flags))  # fmt: skip
        attrs = b._nla(b.TCA_KIND, b"bpf\0") + b._nla(b.TCA_OPTIONS, opts)
        info = (7 << 16) | socket.htons(3)
        return b._tc(b.RTM_NEWTFILTER, b.NLM_F_REQUEST | b.NLM_F_CREATE, -1, 1, block, info, attrs)

    def seen(events: Any) -> set[int]:
        out: set[int] = set()
        while True:
            try:
                out |= g.tc_event_indexes(events.sock.recv(1 << 16))
            except BlockingIOError:
                return out

    with in_netns(netns):
        filtered = g._Events(g.NETLINK_ROUTE, g.RTNLGRP_TC, None, g.NOT_SHARED_BLOCKS)
        plain = g._Events(g.NETLINK_ROUTE, g.RTNLGRP_TC)
        try:
            fd = ba.prog_load(
                b.forward_program(ba.map_create(ba.MAP_HASH, 4, b.VALUE.size, 4)), "x"
            )
            v0, v1 = socket.if_nametoindex("v0"), socket.if_nametoindex("v1")
            with nl.RtnlSocket() as sock:
                assert not sock.apply([knl.clsact_add(v1, block)], ignore_benign=False)
                time.sleep(0.1)
                assert seen(filtered) == seen(plain) == {v1}
                assert not sock.apply([block_filter(fd)], ignore_benign=False)
                time.sleep(0.1)
                assert seen(filtered) == set() and seen(plain) == {-1}
                assert not sock.apply([b.clsact_add(v0), b.bpf_filter(v0, 7, fd)],
                                      ignore_benign=False)  # fmt: skip
                time.sleep(0.1)
                assert seen(filtered) == seen(plain) == {v0}
            ba.close(fd)
        finally:
            filtered.sock.close()
            plain.sock.close()
