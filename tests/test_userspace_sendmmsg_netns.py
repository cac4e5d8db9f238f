"""The userspace backend's batched forward path through a real kernel: the ring, the
``sendmmsg`` table and the raw socket, for a binding with two care-of addresses (simultaneous
bindings: IP-in-IP to one, GRE to the other).

Two network namespaces joined by a veth: ``ha`` (10.78.0.1) runs a
:class:`~mobileip.dataplane.userspace.UserspaceBackend` whose TUN carries the home address
10.79.0.5; ``far`` holds both care-of addresses (10.78.0.2, 10.78.0.3) and receives on raw
IP-in-IP and GRE sockets. A burst of UDP datagrams to the home address (sent before the event
loop runs, so they queue in the TUN and go out in full batches) must arrive once at each
care-of address, in order, each outer header right (its checksum filled in by the kernel: the
table leaves it 0) and each inner packet whole.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from netns import ip, root_skip_reason

pytestmark = pytest.mark.root

HA, COA1, COA2, HOME = "10.78.0.1", "10.78.0.2", "10.78.0.3", "10.79.0.5"
COUNT = 300

RECEIVER = textwrap.dedent(
    """
    import json, select, socket, sys, time
    socks = [socket.socket(socket.AF_INET, socket.SOCK_RAW, p) for p in (4, 47)]
    for s in socks:  # the whole burst fits (SO_RCVBUFFORCE)
        s.setsockopt(socket.SOL_SOCKET, 33, 8 << 20)
    print("ready", flush=True)
    got, end = [], time.monotonic() + 20
    while len(got) < 2 * COUNT and time.monotonic() < end:
        for s in select.select(socks, [], [], 0.5)[0]:
            data = s.recv(65535)
            got.append(data.hex())
    print(json.dumps(got), flush=True)
    """
)

SENDER = textwrap.dedent(
    """
    import asyncio, json, socket, subprocess, sys
    from ipaddress import IPv4Address as A
    from mobileip.dataplane.backend import TunnelSpec
    from mobileip.dataplane.encap import Encapsulation as E
    from mobileip.dataplane.userspace import UserspaceBackend

    async def main():
        b = UserspaceBackend(lambda *a, **k: None, sys.argv[1], A(HA))
        await b.start()
        try:
            b.track(TunnelSpec(A(HOME), ((A(COA1), E.IPIP), (A(COA2), E.GRE)), ()))
            subprocess.run(["ip", "route", "add", HOME + "/32", "dev", b.tun_name], check=True)
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            for i in range(COUNT):  # a burst: the loop has not run yet, they queue in the TUN
                s.sendto(i.to_bytes(4, "big") * (1 + (i % 3) * 170), (HOME, 9))
            for _ in range(100):
                await asyncio.sleep(0.05)
                if b.counters["encap-ipip"] + b.counters["encap-gre"] >= 2 * COUNT:
                    break
            await asyncio.sleep(0.2)
            print(json.dumps(dict(b.counters)), flush=True)
        finally:
            await b.stop()

    asyncio.run(main())
    """
)
# both scripts start with the addresses and the count
PREAMBLE = f"HA, COA1, COA2, HOME, COUNT = {HA!r}, {COA1!r}, {COA2!r}, {HOME!r}, {COUNT}\n"


def test_simultaneous_bindings_through_sendmmsg() -> None:
    reason = root_skip_reason()
    if reason:
        pytest.skip(reason)
    tag = f"usm{os.getpid() % 100000}"
    ha, far = f"{tag}-ha", f"{tag}-far"
    receiver = None
    try:
        for ns in (ha, far):
            ip("netns", "add", ns)
            ip("-n", ns, "link", "set", "lo", "up")
        ip("link", "add", f"{tag}a", "netns", ha, "type", "veth", "peer", "name", f"{tag}b",
           "netns", far)  # fmt: skip
        ip("-n", ha, "addr", "add", f"{HA}/24", "dev", f"{tag}a")
        ip("-n", ha, "link", "set", f"{tag}a", "up")
        for coa in (COA1, COA2):
            ip("-n", far, "addr", "add", f"{coa}/24", "dev", f"{tag}b")
        ip("-n", far, "link", "set", f"{tag}b", "up")
        receiver = subprocess.Popen(
            ["ip", "netns", "exec", far, sys.executable, "-c", PREAMBLE + RECEIVER],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert receiver.stdout is not None
        assert receiver.stdout.readline().strip() == "ready"
        sent = subprocess.run(
            ["ip", "netns", "exec", ha, sys.executable, "-c", PREAMBLE + SENDER, f"{tag}t"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert sent.returncode == 0, sent.stderr[-2000:]
        counters = json.loads(sent.stdout.strip().splitlines()[-1])
        out, _ = receiver.communicate(timeout=60)
        got = [bytes.fromhex(h) for h in json.loads(out.strip().splitlines()[-1])]
    finally:
        if receiver is not None and receiver.poll() is None:
            receiver.kill()
            receiver.wait()
        for ns in (ha, far):
            ip("netns", "del", ns, check=False)
    assert counters.get("encap-ipip") == COUNT and counters.get("encap-gre") == COUNT, counters
    assert not counters.get("send-errors")
    by_coa: dict[str, list[int]] = {COA1: [], COA2: []}
    for pkt in got:
        proto, src, dst = pkt[9], ".".join(map(str, pkt[12:16])), ".".join(map(str, pkt[16:20]))
        assert src == HA and (proto, dst) in ((4, COA1), (47, COA2))
        inner = pkt[20:] if proto == 4 else pkt[24:]
        if proto == 47:
            assert pkt[20:24] == b"\x00\x00\x08\x00"
        assert int.from_bytes(pkt[2:4], "big") == len(pkt)
        words = sum(int.from_bytes(pkt[k : k + 2], "big") for k in range(0, 20, 2))
        assert (words & 0xFFFF) + (words >> 16) == 0xFFFF  # the kernel filled the checksum in
        assert int.from_bytes(inner[2:4], "big") == len(inner)  # the inner packet whole
        assert ".".join(map(str, inner[16:20])) == HOME and inner[9] == 17
        payload = inner[28:]
        seq = int.from_bytes(payload[:4], "big")
        assert payload == seq.to_bytes(4, "big") * (1 + (seq % 3) * 170)
        by_coa[dst].append(seq)
    assert by_coa[COA1] == list(range(COUNT))
    assert by_coa[COA2] == list(range(COUNT))
