"""The UDP endpoint: destination address from IP_PKTINFO, replies from a chosen source, batch
reads, handler errors, and multicast membership (in network namespaces, root)."""

from __future__ import annotations

import asyncio
import socket
import sys
import textwrap

import pytest
from netns import Segment, require_root

from mobileip.net.udp import Address, UdpEndpoint


def test_pktinfo_destination_source_choice_and_batches() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        seen: list[tuple[bytes, Address, str | None]] = []
        done = asyncio.Event()

        def handler(data: bytes, src: Address, dst: str | None) -> None:
            if data == b"boom":
                raise ValueError("handler bug")
            seen.append((data, src, dst))
            if len(seen) == 602:
                done.set()

        errors: list[Exception] = []
        ep = UdpEndpoint.bind(loop, "0.0.0.0", 0, handler)
        ep.on_handler_error = errors.append
        port = ep.local_address[1]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.bind(("127.0.0.1", 0))
            client.sendto(b"boom", ("127.0.0.1", port))
            client.sendto(b"to-2", ("127.0.0.2", port))
            client.sendto(b"to-9", ("127.0.0.9", port))
            for i in range(600):  # more than one batch of 256
                client.sendto(b"%d" % i, ("127.0.0.1", port))
            await asyncio.wait_for(done.wait(), 5)
            assert [(d, dst) for d, _, dst in seen[:2]] == [
                (b"to-2", "127.0.0.2"),
                (b"to-9", "127.0.0.9"),
            ]
            assert seen[0][1] == client.getsockname()
            assert ep.counters["received"] == 603
            assert ep.counters["handler_errors"] == 1 and isinstance(errors[0], ValueError)

            # a reply from 127.0.0.9 (the address the request went to), then from the default
            client.settimeout(2)
            assert ep.send(b"reply", seen[1][1], "127.0.0.9")
            data, src = client.recvfrom(100)
            assert (data, src) == (b"reply", ("127.0.0.9", port))
            assert ep.send(b"plain", seen[1][1])
            assert client.recvfrom(100)[1][1] == port
            assert not ep.send(b"x", seen[1][1], "not-an-address")
            assert ep.counters["send_errors"] == 1
        ep.close()

    asyncio.run(main())


RECEIVER = textwrap.dedent(
    """
    import asyncio, sys
    from mobileip.net.udp import UdpEndpoint

    async def main():
        got = asyncio.get_running_loop().create_future()
        ep = UdpEndpoint.bind(asyncio.get_running_loop(), "0.0.0.0", 4999,
                              lambda d, s, dst: got.done() or got.set_result((d, s, dst)))
        ep.join_group("239.1.2.3", sys.argv[1], ttl=1)
        print("joined", flush=True)
        data, src, dst = await asyncio.wait_for(got, 10)
        print(f"got {data.decode()} from {src[0]} to {dst}", flush=True)
        ep.close()

    asyncio.run(main())
    """
)

SENDER = textwrap.dedent(
    """
    import asyncio, sys
    from mobileip.net.udp import UdpEndpoint

    async def main():
        ep = UdpEndpoint.bind(asyncio.get_running_loop(), "0.0.0.0", 4999, lambda *a: None)
        ep.join_group("239.1.2.3", sys.argv[1], ttl=1)
        for _ in range(20):
            ep.send(b"hello-group", ("239.1.2.3", 4999))
            await asyncio.sleep(0.1)
        ep.close()

    asyncio.run(main())
    """
)


@pytest.mark.root
def test_multicast_group_on_a_bridge() -> None:
    require_root()
    with Segment() as seg:
        a = seg.add_member("a", "10.77.9.1/24")
        b = seg.add_member("b", "10.77.9.2/24")
        receiver = seg.spawn(b, [sys.executable, "-c", RECEIVER, b.ifname], label="rx")
        receiver.wait_for("joined", timeout=10)
        seg.spawn(a, [sys.executable, "-c", SENDER, a.ifname], label="tx")
        line = receiver.wait_for("got ", timeout=10)
        assert line.text == "got hello-group from 10.77.9.1 to 239.1.2.3"


def test_bound_to_one_address_and_sends_held_in_bursts() -> None:
    """A socket bound to one address reports it as every datagram's destination; sends inside
    ``holding()`` (and inside a read batch) leave at the end of the block, in order."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        seen: list[str | None] = []
        ep: UdpEndpoint | None = None

        def handler(data: bytes, src: Address, dst: str | None) -> None:
            seen.append(dst)
            assert ep is not None
            ep.send(b"re:" + data, src, dst)  # held until the batch ends

        ep = UdpEndpoint.bind(loop, "127.0.0.3", 0, handler)
        port = ep.local_address[1]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.bind(("127.0.0.1", 0))
            client.setblocking(False)
            for i in range(40):  # more than flush_every (32)
                client.sendto(b"%d" % i, ("127.0.0.3", port))
            got: list[tuple[bytes, str]] = []
            for _ in range(200):
                await asyncio.sleep(0.01)
                while True:
                    try:
                        data, addr = client.recvfrom(100)
                    except BlockingIOError:
                        break
                    got.append((data, addr[0]))
                if len(got) == 40:
                    break
            assert got == [(b"re:%d" % i, "127.0.0.3") for i in range(40)]
            assert seen == ["127.0.0.3"] * 40
            # outside a batch: held inside the block only (nested blocks flush once, at the end)
            me = client.getsockname()
            with ep.holding():
                with ep.holding():
                    assert ep.send(b"a", me) and ep.send(b"b", me)
                with pytest.raises(BlockingIOError):
                    client.recvfrom(100)
            assert [client.recvfrom(100)[0] for _ in range(2)] == [b"a", b"b"]
            assert ep.send_now(b"c", me) and client.recvfrom(100)[0] == b"c"
        assert ep.counters["sent"] == 43 and ep.counters["received"] == 40
        ep.close()

    asyncio.run(main())
