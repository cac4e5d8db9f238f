"""The data plane's batches: sent by a worker thread, results taken in on the loop (no root).

A fake netlink socket stands in for the kernel; the table and the backend are small fakes. What
is checked is the bookkeeping around the thread: a home that changes while its batch is in the
worker is decided by the next batch (its stale spec is not tracked again), every route ends
installed, and the cyclic GC is frozen after :data:`FREEZE_EVERY` routes.
"""

from __future__ import annotations

import asyncio
import gc
import threading
from collections.abc import Hashable
from concurrent.futures import ThreadPoolExecutor
from ipaddress import IPv4Address
from typing import Any

import pytest
from test_dataplane_status import BASE, make_service

from mobileip.dataplane import service as svc
from mobileip.dataplane.backend import TunnelBackend, TunnelSpec


class MessageBackend(TunnelBackend):
    """One message per route; records what the packet path was told."""

    name = "fake"

    def __init__(self) -> None:
        super().__init__(lambda *a, **k: None)
        self.tracked: list[IPv4Address] = []
        self.untracked: list[IPv4Address] = []

    def route_key(self, spec: TunnelSpec) -> Hashable:
        return spec.exits

    def add_messages(self, spec: TunnelSpec, table: int) -> list[bytes] | None:
        return [b"add" + spec.home.packed]

    def del_messages(self, home: IPv4Address, table: int) -> list[bytes]:
        return [b"del" + home.packed]

    def track(self, spec: TunnelSpec) -> None:
        super().track(spec)
        self.tracked.append(spec.home)

    def untrack(self, home: IPv4Address) -> None:
        super().untrack(home)
        self.untracked.append(home)


class GatedSocket:
    """``apply`` in the worker thread; the first call waits until the test lets it go."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.sent: list[bytes] = []
        self.threads: set[str] = set()

    def apply(self, messages: list[bytes]) -> list[Any]:
        self.threads.add(threading.current_thread().name)
        self.entered.set()
        self.release.wait(10)
        self.sent += messages
        return []


def test_home_changed_while_its_batch_is_in_the_worker_is_decided_by_the_next() -> None:
    service, table, _ = make_service()
    backend = MessageBackend()
    service.backend = backend
    bulk = GatedSocket()
    service._bulk = bulk  # type: ignore[assignment]
    service._pool = ThreadPoolExecutor(1, thread_name_prefix="dataplane-rtnl")
    home = BASE + 7
    table.add(home)

    async def run() -> None:
        service.note_homes([home])
        drain = asyncio.create_task(service._drain())
        while not bulk.entered.is_set():
            await asyncio.sleep(0.001)
        # the binding goes away while its route is being sent
        del table.records[home]
        service.note_homes([home])
        bulk.release.set()
        await drain

    try:
        asyncio.run(run())
    finally:
        service._pool.shutdown()
    assert bulk.threads == {"dataplane-rtnl_0"}  # sent off the loop
    assert bulk.sent == [b"add" + IPv4Address(home).packed, b"del" + IPv4Address(home).packed]
    assert backend.tracked == []  # the stale spec never reached the packet path
    assert home not in service.installed and service.pending == 0
    assert service.routes_added == 1 and service.routes_removed == 1


def test_drain_through_the_worker_installs_everything_and_freezes_the_gc() -> None:
    service, table, _ = make_service()
    backend = MessageBackend()
    service.backend = backend
    bulk = GatedSocket()
    bulk.release.set()
    service._bulk = bulk  # type: ignore[assignment]
    service._pool = ThreadPoolExecutor(1, thread_name_prefix="dataplane-rtnl")
    n = svc.FREEZE_EVERY + 10
    for i in range(n):
        table.add(BASE + i)
    frozen = gc.get_freeze_count()
    try:
        service.note_homes(table.homes())
        asyncio.run(service._drain())
    finally:
        service._pool.shutdown()
        gc.unfreeze()
    assert len(service.installed) == n and service.pending == 0
    assert len(bulk.sent) == n and len(backend.tracked) == n
    assert service.gc_freezes == 1 and service.status(homes=0)["gc_freezes"] == 1
    assert gc.get_freeze_count() >= frozen  # (what froze is thawed again above)


class FailingSocket:
    """The first ``apply`` raises (a send the kernel refused), the next ones succeed."""

    def __init__(self) -> None:
        self.calls = 0
        self.sent: list[bytes] = []

    def apply(self, messages: list[bytes]) -> list[Any]:
        self.calls += 1
        if self.calls == 1:
            raise OSError(105, "No buffer space available")
        self.sent += messages
        return []


def test_a_batch_whose_send_raised_is_tried_again() -> None:
    service, table, _ = make_service()
    service.backend = MessageBackend()
    bulk = FailingSocket()
    service._bulk = bulk  # type: ignore[assignment]
    service._pool = ThreadPoolExecutor(1, thread_name_prefix="dataplane-rtnl")
    homes = [BASE + i for i in range(20)]
    for home in homes:
        table.add(home)

    async def run() -> None:
        service.note_homes(homes)
        with pytest.raises(OSError):
            await service._drain()
        assert service.pending == len(homes) and not service.installed  # nothing lost
        await service._drain()

    try:
        asyncio.run(run())
    finally:
        service._pool.shutdown()
    assert sorted(service.installed) == homes and service.pending == 0
    assert len(bulk.sent) == len(homes)
