"""Fair queuing under overload (issue 15 item 1): the sans-IO :class:`FairQueue` (round robin by
source, longest-queue drop, staleness), its invariants as properties, and the UDP endpoint
using it only when a read batch leaves datagrams in the socket. The loopback repro with a real
daemon is tests/test_fairness_loopback.py."""

from __future__ import annotations

import asyncio
import socket
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mobileip.core.fairqueue import FairQueue
from mobileip.net.udp import Address, UdpEndpoint


def drain(q: FairQueue[int], now: float = 0.0) -> list[tuple[object, int]]:
    out = []
    while (popped := q.pop(now)) is not None:
        out.append(popped)
    return out


def test_round_robin_by_source_fifo_within_a_source() -> None:
    q: FairQueue[int] = FairQueue(capacity=100)
    for i in range(5):
        q.push("flood", i, 0.0)
    q.push("victim", 100, 0.0)
    q.push("other", 200, 0.0)
    q.push("victim", 101, 0.0)
    assert drain(q) == [
        ("flood", 0),
        ("victim", 100),
        ("other", 200),
        ("flood", 1),
        ("victim", 101),
        ("flood", 2),
        ("flood", 3),
        ("flood", 4),
    ]
    assert not q and len(q) == 0 and q.sources == 0
    assert q.stats.queued == q.stats.served == 8 and q.stats.dropped == 0


def test_full_queue_drops_from_the_longest_source_not_the_newcomer() -> None:
    q: FairQueue[int] = FairQueue(capacity=10)
    for i in range(10):
        assert q.push("flood", i, 0.0)
    assert not q.push("flood", 10, 0.0)  # the flood is the longest: it loses its own arrival
    assert not q.push("victim", 0, 0.0)  # room made by dropping the flood's oldest
    assert q.depth("victim") == 1 and q.depth("flood") == 9 and len(q) == 10
    assert q.stats.dropped == 2 and q.stats.dropped_by_source == Counter({"flood": 2})
    first = [q.pop(0.0), q.pop(0.0)]
    assert first == [("flood", 1), ("victim", 0)]  # its arrival 10 and its oldest, 0, went


def test_the_drop_is_from_a_longest_queue_after_pops() -> None:
    # a and b tie at 5; serving a leaves b the longest: a newcomer's room comes from b
    q: FairQueue[int] = FairQueue(capacity=10)
    for i in range(5):
        q.push("a", i, 0.0)
        q.push("b", i, 0.0)
    assert q.pop(0.0) == ("a", 0)
    assert q.push("c", 0, 0.0)
    assert not q.push("c", 1, 0.0)
    assert (q.depth("a"), q.depth("b"), q.depth("c")) == (4, 4, 2)
    assert q.stats.dropped_by_source == Counter({"b": 1})


def test_equal_sources_keep_their_arrivals_when_full() -> None:
    # a spray of one-datagram sources: a newcomer is never worth dropping an equal for
    q: FairQueue[int] = FairQueue(capacity=4)
    for i in range(4):
        q.push(f"s{i}", i, 0.0)
    assert not q.push("s9", 9, 0.0)
    assert [s for s, _ in drain(q)] == ["s0", "s1", "s2", "s3"]


def test_stale_datagrams_are_dropped_when_their_turn_comes() -> None:
    q: FairQueue[int] = FairQueue(capacity=10, max_wait=0.5)
    q.push("a", 1, 0.0)
    q.push("a", 2, 0.4)
    assert q.pop(0.8) == ("a", 2)
    assert q.stats.stale == 1 and q.stats.served == 1
    assert q.pop(0.8) is None


def test_clear_and_status() -> None:
    q: FairQueue[int] = FairQueue(capacity=3)
    for i in range(5):
        q.push("a", i, 0.0)
    status = q.status()
    assert status["dropped"] == 2 and status["queued_now"] == 3 and status["max_depth"] == 3
    assert status["top_dropped"] == {"a": 2}
    assert q.clear() == 3 and not q and q.pop(0.0) is None


def test_bad_parameters() -> None:
    with pytest.raises(ValueError):
        FairQueue(capacity=0)
    with pytest.raises(ValueError):
        FairQueue(max_wait=0)


# --- properties --------------------------------------------------------------------------------

ops = st.lists(
    st.one_of(
        st.tuples(st.just("push"), st.integers(0, 5)),  # source 0-5
        st.tuples(st.just("pop"), st.just(0)),
    ),
    max_size=400,
)


@settings(max_examples=300, deadline=None)
@given(ops=ops, capacity=st.integers(1, 12))
def test_invariants(ops: list[tuple[str, int]], capacity: int) -> None:
    """Bounded; nothing lost or invented; FIFO per source; round robin (while a source waits,
    no other source is served twice); a drop is always taken from a source
    holding the most (counting the arrival)."""
    q: FairQueue[int] = FairQueue(capacity=capacity)
    model: dict[int, list[int]] = {}
    seq = 0
    pushed: set[int] = set()
    served: list[int] = []
    dropped = 0
    waited: dict[int, Counter[int]] = {}  # source waiting -> others served meanwhile
    for op, source in ops:
        if op == "push":
            seq += 1
            before = {s: list(v) for s, v in model.items() if v}
            longest = max((len(v) for v in before.values()), default=0)
            mine = len(before.get(source, []))
            ok = q.push(source, seq, 0.0)
            pushed.add(seq)
            model.setdefault(source, []).append(seq)
            if len(before) and sum(map(len, before.values())) >= capacity:
                assert not ok
                dropped += 1
                if mine + 1 >= longest:
                    assert model[source].pop() == seq  # the arrival went
                else:
                    victims = [s for s, v in before.items() if len(v) == longest]
                    gone = [s for s in victims if q.depth(s) == longest - 1]
                    assert len(gone) == 1
                    model[gone[0]].pop(0)  # its oldest went
            else:
                assert ok
        else:
            waiting = {s for s, v in model.items() if v}
            popped = q.pop(0.0)
            if not waiting:
                assert popped is None
                continue
            assert popped is not None
            s, item = popped
            assert model[s][0] == item  # FIFO within the source
            model[s].pop(0)
            # round robin: while w waits, nobody is served twice
            for w in waiting - {s}:
                others = waited.setdefault(w, Counter())
                others[s] += 1
                assert others[s] <= 1, f"{s} served twice while {w} waited"
            waited.pop(s, None)
            served.append(item)
        for w in [w for w in waited if not model.get(w)]:
            del waited[w]  # dropped down to nothing: no longer waiting
        assert len(q) == sum(map(len, model.values())) <= capacity
        for s, v in model.items():
            assert q.depth(s) == len(v)
    assert len(set(served)) == len(served) and set(served) <= pushed
    assert q.stats.dropped == dropped
    st_ = q.stats
    assert seq == st_.served + st_.dropped + st_.stale + len(q)  # every push accounted for


@settings(max_examples=300, deadline=None)
@given(
    ops=st.lists(
        st.tuples(st.sampled_from(["push", "pop"]), st.integers(0, 3), st.integers(0, 5)),
        max_size=200,
    ),
    capacity=st.integers(1, 12),
)
def test_pop_many_is_pop_one_by_one(ops: list[tuple[str, int, int]], capacity: int) -> None:
    """pop_many (the lone source's shortcut included) gives what as many pop() calls would, with
    the same stats, staleness too (times move on by 0.3 s a step, max_wait 1 s)."""
    one: FairQueue[int] = FairQueue(capacity=capacity, max_wait=1.0)
    many: FairQueue[int] = FairQueue(capacity=capacity, max_wait=1.0)
    now = 0.0
    for i, (op, source, n) in enumerate(ops):
        now += 0.3 * (i % 3 == 0)
        if op == "push":
            assert one.push(source, i, now) == many.push(source, i, now)
            continue
        singles = []
        for _ in range(n):
            popped = one.pop(now)
            if popped is None:
                break
            singles.append(popped[1])
        assert many.pop_many(now, n) == singles
        assert one.stats == many.stats and len(one) == len(many) and one.sources == many.sources
    assert [x for _, x in drain(one, now)] == many.pop_many(now, capacity)


@settings(max_examples=100, deadline=None)
@given(flood=st.integers(1, 2000), light=st.integers(1, 20), capacity=st.integers(2, 64))
def test_a_light_source_is_never_dropped_behind_a_heavy_one(
    flood: int, light: int, capacity: int
) -> None:
    """However long the flood, a source sending one datagram per round is always served."""
    q: FairQueue[int] = FairQueue(capacity=capacity)
    got = 0
    for i in range(max(flood, light)):
        for _ in range(5):
            if i < flood:
                q.push("flood", i, 0.0)
        if i < light:
            q.push("light", i, 0.0)
        for _ in range(2):
            popped = q.pop(0.0)
            if popped is not None and popped[0] == "light":
                got += 1
    got += sum(1 for s, _ in drain(q) if s == "light")
    assert got == light


# --- the endpoint ------------------------------------------------------------------------------


def test_endpoint_is_fair_only_when_the_socket_has_a_backlog() -> None:
    async def scenario() -> tuple[list[str], Counter[str], Counter[str]]:
        loop = asyncio.get_running_loop()
        order: list[str] = []
        drops: Counter[str] = Counter()

        def handler(data: bytes, src: Address, dst: str | None) -> None:
            order.append(data.decode())

        endpoint = UdpEndpoint.bind(loop, "127.0.0.1", 0, handler, fair_queue=300)
        endpoint.batch = 50
        endpoint.quantum = 8
        endpoint.on_dropped = lambda reason, n: drops.update({reason: n})
        try:
            with (
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as flood,
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as light,
            ):
                flood.bind(("127.0.0.2", 0))
                light.bind(("127.0.0.3", 0))
                # no backlog: arrival order, nothing queued
                light.sendto(b"L-early", endpoint.local_address)
                await asyncio.sleep(0.05)
                for i in range(1000):
                    flood.sendto(f"F{i}".encode(), endpoint.local_address)
                    if i % 100 == 99:
                        light.sendto(f"L{i}".encode(), endpoint.local_address)
                for _ in range(100):
                    await asyncio.sleep(0.01)
                    if endpoint.fair is not None and not endpoint.fair and len(order) > 300:
                        break
            return order, drops, endpoint.counters
        finally:
            endpoint.close()

    order, drops, counters = asyncio.run(scenario())
    lights = [x for x in order if x.startswith("L")]
    assert lights == ["L-early"] + [f"L{i}" for i in range(99, 1000, 100)]
    # the flood's first batch (50) was handled in arrival order, the rest waited its turn:
    # every light datagram came out long before the flood's tail
    assert order.index("L999") < 50 + 2 * 10 + 8 * 2
    assert drops["overload"] == counters["overload_dropped"] > 0
    assert len(order) + drops["overload"] == 1011  # handled or dropped (and counted) by us
    assert counters["kernel_dropped"] == 0
    assert counters["received"] == 1011
