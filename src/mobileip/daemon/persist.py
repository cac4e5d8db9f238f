"""Optional persistence of the binding table: an append-only journal with periodic snapshots.

With ``[persistence] path = DIR`` the daemon keeps two files in ``DIR``:

* ``snapshot.mipj``: the whole table (every record, tombstones included) as of the last snapshot;
* ``journal.mipj``: every change since, appended in the event-loop turn it happened in.

:class:`JournaledTable` is a :class:`BindingTable` that notes which home addresses changed (local
registrations, records merged from peers, expiries): :func:`attach` puts one in the core before
any other service takes a reference to the table, loads what the files hold, and adds the daemon
hooks. Once per event-loop turn the changed records are appended to the journal in one
``write`` and, with ``fsync = true``, one ``fsync`` (a group commit: a batch of datagrams costs
one disk flush). Every ``snapshot_interval`` seconds, and at a clean stop, the table is written
to ``snapshot.mipj.tmp``, fsynced, renamed over the snapshot, and the journal starts afresh.

At start the snapshot is read, then the journal (a torn entry at its end, from a power cut, is cut
off and counted); records merge by version, so a journal entry older than the snapshot (a crash
between the rename and the truncation) cannot win. Expiry times are wall-clock on disk and become
monotonic again here (:mod:`mobileip.core.journal`): remaining lifetimes shrink by the downtime
and what ran out meanwhile is dropped. A member with ``[redundancy]`` still starts NOT SYNCED and
asks the group; the loaded table is what it merges the group's answer into.

Format and choice (measured against SQLite in WAL mode): docs/robustness.md.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mobileip.core import journal
from mobileip.core.bindings import BindingTable, MobilityRecord
from mobileip.daemon.ports import ServiceHost

if TYPE_CHECKING:
    from mobileip.config import PersistenceConfig

SNAPSHOT = "snapshot.mipj"
JOURNAL = "journal.mipj"


class JournaledTable(BindingTable):
    """A binding table that remembers which home addresses changed since the last drain."""

    def __init__(self, tombstone_ttl: float = 600.0) -> None:
        super().__init__(tombstone_ttl)
        self.dirty: dict[int, None] = {}
        # called when the first change after a drain is noted (the service schedules a flush)
        self.on_dirty: list[Callable[[], None]] = []

    def store(self, rec: MobilityRecord, now: float) -> None:
        super().store(rec, now)
        self._mark(rec.home_address)

    def put_packed(self, home: int, blob: bytes, version: int, wake: float, live: bool) -> None:
        """A peer's update merged packed: stored, and noted for the journal."""
        super().put_packed(home, blob, version, wake, live)
        self._mark(home)

    def insert_new(
        self,
        homes: Sequence[int],
        blobs: Sequence[bytes],
        versions: Sequence[int],
        wakeups: Sequence[float],
        live: int,
    ) -> None:
        """A bulk download's new records: stored in one pass, each noted for the journal."""
        super().insert_new(homes, blobs, versions, wakeups, live)
        if homes:
            first = not self.dirty
            self.dirty.update(dict.fromkeys(homes))
            if first:
                for callback in self.on_dirty:
                    callback()

    def discard(self, home: int) -> MobilityRecord | None:
        old = super().discard(home)
        if old is not None:
            self._mark(home)
        return old

    def _mark(self, home: int) -> None:
        first = not self.dirty
        self.dirty[home] = None
        if first:
            for callback in self.on_dirty:
                callback()

    def drain(self) -> list[int]:
        homes = list(self.dirty)
        self.dirty.clear()
        return homes


@dataclass
class PersistStats:
    loaded: int = 0  # records loaded at start
    dropped_expired: int = 0  # records whose bindings and tombstone ran out while down
    torn_bytes: int = 0  # bytes cut off the end of the journal at start
    journal_entries: int = 0  # entries appended since start
    flushes: int = 0
    fsyncs: int = 0
    snapshots: int = 0
    write_errors: int = 0
    last_flush_ms: float = 0.0
    last_snapshot_ms: float = 0.0


class TableStore:
    """The two files of one directory, and the journal file kept open for appends."""

    def __init__(self, directory: str | Path, fsync: bool = True) -> None:
        self.dir = Path(directory)
        self.fsync = fsync
        self.stats = PersistStats()
        self._journal: int | None = None

    @property
    def snapshot_path(self) -> Path:
        return self.dir / SNAPSHOT

    @property
    def journal_path(self) -> Path:
        return self.dir / JOURNAL

    def load(self, table: BindingTable, now: float, wall: float) -> int:
        """Fill ``table`` from the files; return how many records it now holds."""
        self.dir.mkdir(parents=True, exist_ok=True)
        found: dict[int, MobilityRecord] = {}
        for path in (self.snapshot_path, self.journal_path):
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                continue
            decoded = journal.decode(data)
            if path == self.journal_path and decoded.torn:
                self.stats.torn_bytes = len(data) - decoded.good_bytes
                with open(path, "r+b") as f:
                    f.truncate(decoded.good_bytes)
            for home, rec in decoded.records.items():
                old = found.get(home)
                if old is None or rec.version >= old.version:
                    found[home] = rec
        restored = list(journal.from_disk(found.values(), now, wall, table.tombstone_ttl))
        self.stats.dropped_expired = len(found) - len(restored)
        for rec in restored:
            table.merge(rec, now)
        self.stats.loaded = len(restored)
        return len(restored)

    def _open_journal(self) -> int:
        if self._journal is None:
            fd = os.open(self.journal_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            if os.fstat(fd).st_size == 0:
                os.write(fd, journal.MAGIC)
            self._journal = fd
        return self._journal

    def append(self, records: list[MobilityRecord], now: float, wall: float) -> None:
        """Append ``records`` in one write (and one fsync when configured)."""
        if not records:
            return
        started = time.perf_counter()
        data = b"".join(journal.encode_entry(r, now, wall) for r in records)
        fd = self._open_journal()
        os.write(fd, data)
        if self.fsync:
            os.fsync(fd)
            self.stats.fsyncs += 1
        self.stats.flushes += 1
        self.stats.journal_entries += len(records)
        self.stats.last_flush_ms = (time.perf_counter() - started) * 1000

    def snapshot(self, table: BindingTable, now: float, wall: float) -> None:
        """Write the whole table, atomically replace the snapshot, start a fresh journal."""
        started = time.perf_counter()
        tmp = self.dir / (SNAPSHOT + ".tmp")
        data = journal.encode_all(table.records(), now, wall)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.snapshot_path)
        self._fsync_dir()
        self.close()
        fd = os.open(self.journal_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.write(fd, journal.MAGIC)
        if self.fsync:
            os.fsync(fd)
        self._journal = fd
        self.stats.snapshots += 1
        self.stats.last_snapshot_ms = (time.perf_counter() - started) * 1000

    def _fsync_dir(self) -> None:
        fd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def close(self) -> None:
        if self._journal is not None:
            os.close(self._journal)
            self._journal = None


class PersistenceService:
    """Plugs a :class:`TableStore` into a daemon (see :func:`attach`)."""

    def __init__(self, daemon: ServiceHost, cfg: PersistenceConfig) -> None:
        self.daemon = daemon
        self.cfg = cfg
        table = daemon.core.table
        assert isinstance(table, JournaledTable)
        self.table = table
        self.store = TableStore(cfg.path, cfg.fsync)
        self._flush_scheduled = False
        self._snapshot_timer: asyncio.TimerHandle | None = None
        self.store.load(table, time.monotonic(), time.time())
        table.drain()  # what we just loaded is on disk already
        table.on_dirty.append(self._schedule_flush)
        daemon.startup_hooks.append(self._start)
        daemon.shutdown_hooks.append(self._stop)
        daemon.control.add_json_route("GET", "/api/v1/persistence", self._status)
        daemon.log.info(
            "persistence.loaded",
            path=cfg.path,
            records=self.store.stats.loaded,
            bindings=len(table),
            dropped_expired=self.store.stats.dropped_expired,
            torn_bytes=self.store.stats.torn_bytes,
        )

    async def _start(self) -> None:
        self._arm_snapshot()

    async def _stop(self) -> None:
        daemon = self.daemon
        if self._snapshot_timer is not None:
            self._snapshot_timer.cancel()
            self._snapshot_timer = None
        try:
            self.flush()
            self.store.snapshot(self.table, time.monotonic(), time.time())
        except OSError as exc:
            self.store.stats.write_errors += 1
            daemon.log.error("persistence.write_failed", error=str(exc))
        self.store.close()

    def _schedule_flush(self) -> None:
        if self._flush_scheduled:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (loading, tests driving the core directly)
            return
        self._flush_scheduled = True
        loop.call_soon(self.flush)

    def flush(self) -> None:
        self._flush_scheduled = False
        homes = self.table.drain()
        records = [r for r in (self.table.get(h) for h in homes) if r is not None]
        try:
            self.store.append(records, time.monotonic(), time.time())
        except OSError as exc:
            self.store.stats.write_errors += 1
            self.daemon.log.error("persistence.write_failed", error=str(exc))

    def _arm_snapshot(self) -> None:
        loop = asyncio.get_running_loop()
        self._snapshot_timer = loop.call_later(self.cfg.snapshot_interval, self._on_snapshot)

    def _on_snapshot(self) -> None:
        self.flush()
        try:
            self.store.snapshot(self.table, time.monotonic(), time.time())
        except OSError as exc:
            self.store.stats.write_errors += 1
            self.daemon.log.error("persistence.write_failed", error=str(exc))
        self._arm_snapshot()

    def _status(self, request: object) -> dict[str, object]:
        out: dict[str, object] = {"path": str(self.cfg.path), "fsync": self.cfg.fsync}
        out.update(vars(self.store.stats))
        return out


def attach(daemon: ServiceHost, cfg: PersistenceConfig) -> PersistenceService:
    """Give the core a :class:`JournaledTable` loaded from ``cfg.path`` and persist it.

    Call before any other service takes a reference to ``daemon.core.table``.
    """
    old = daemon.core.table
    table = JournaledTable(tombstone_ttl=old.tombstone_ttl)
    for rec in old.records():
        table.put(rec, time.monotonic())
    daemon.core.table = table
    return PersistenceService(daemon, cfg)
