"""Persistence of the binding table: the journal format (torn tails, wall-clock expiry), the store
(snapshot + journal, merge by version), a restored member that is still NOT SYNCED, and a real
daemon that is SIGKILLed (a power cut) and comes back with its bindings, lifetimes reduced by the
downtime."""

from __future__ import annotations

import math
import time
from ipaddress import IPv4Address
from pathlib import Path

from helpers import running_homeagent, start_homeagent

from mobileip.core import journal
from mobileip.core.bindings import INFINITE, Binding, BindingTable, MobilityRecord, make_version
from mobileip.daemon.persist import JOURNAL, SNAPSHOT, JournaledTable, TableStore
from mobileip.sync.engine import SyncEngine, SyncSettings, SyncState
from mobileip.wire import sync as sw


def rec(home: int, counter: int, *bindings: Binding, deleted: float = 0.0) -> MobilityRecord:
    return MobilityRecord(home, make_version(counter, 7), counter << 32, 1, bindings, deleted)


def test_entry_round_trip_converts_monotonic_to_wall_and_back() -> None:
    now, wall = 100.0, 1_700_000_000.0
    r = rec(5, 3, Binding(9, 300, now + 250.0, 0x10), Binding(10, 0xFFFF, INFINITE, 0))
    data = journal.encode_all([r, rec(6, 2, deleted=90.0)], now, wall)
    decoded = journal.decode(data)
    assert decoded.entries == 2 and not decoded.torn
    on_disk = decoded.records[5]
    assert on_disk.bindings[0].expires == wall + 250.0
    assert math.isinf(on_disk.bindings[1].expires)
    # 100 s later, after a reboot whose monotonic clock is at 7.0
    back = {
        r.home_address: r
        for r in journal.from_disk(decoded.records.values(), 7.0, wall + 100.0, 600.0)
    }
    assert back[5].bindings[0].expires == 7.0 + 150.0  # 150 s left
    assert back[5].bindings[1].expires == INFINITE
    assert back[5].version == r.version and back[5].last_id == r.last_id
    assert back[6].is_tombstone and back[6].deleted_at == 7.0 - 110.0


def test_expired_while_down_are_dropped_or_tombstoned() -> None:
    now, wall = 0.0, 1000.0
    records = [
        rec(1, 1, Binding(9, 10, 10.0, 0)),  # runs out at wall 1010
        rec(2, 1, Binding(9, 10, 10.0, 0), Binding(8, 500, 500.0, 0)),  # one binding survives
        rec(3, 1, deleted=-700.0),  # tombstone older than the ttl
    ]
    decoded = journal.decode(journal.encode_all(records, now, wall))
    back = {
        r.home_address: r
        for r in journal.from_disk(decoded.records.values(), 50.0, wall + 60.0, 600.0)
    }
    assert back[1].is_tombstone  # keeps its version: an old update cannot resurrect it
    assert [b.care_of_address for b in back[2].bindings] == [8]
    assert 3 not in back


def test_torn_tail_is_detected_at_every_cut() -> None:
    records = [rec(i, 1, Binding(9, 300, 300.0, 0)) for i in range(1, 6)]
    data = journal.encode_all(records, 0.0, 1000.0)
    sizes = [len(journal.MAGIC)]
    for r in records:
        sizes.append(sizes[-1] + len(journal.encode_entry(r, 0.0, 1000.0)))
    for cut in range(len(journal.MAGIC), len(data) + 1):
        d = journal.decode(data[:cut])
        whole = max(i for i, s in enumerate(sizes) if s <= cut)
        assert d.entries == whole and d.good_bytes == sizes[whole]
        assert d.torn == (cut != sizes[whole])
    corrupt = bytearray(data)
    corrupt[sizes[2] + 12] ^= 0xFF  # inside the third entry's body
    assert journal.decode(bytes(corrupt)).entries == 2


def test_store_snapshot_journal_and_merge_by_version(tmp_path: Path) -> None:
    store = TableStore(tmp_path, fsync=True)
    table = JournaledTable()
    store.load(table, 0.0, 1000.0)
    table.put(rec(1, 1, Binding(9, 300, 300.0, 0)), 0.0)
    table.put(rec(2, 1, Binding(9, 300, 300.0, 0)), 0.0)
    store.append([table.get(h) for h in table.drain()], 0.0, 1000.0)  # type: ignore[misc]
    old_entry = journal.encode_entry(rec(1, 1, Binding(9, 300, 300.0, 0)), 0.0, 1000.0)
    table.put(rec(1, 2, Binding(11, 300, 300.0, 0)), 0.0)
    store.snapshot(table, 0.0, 1000.0)
    # a crash between the snapshot's rename and the journal's truncation leaves old entries
    with open(tmp_path / JOURNAL, "ab") as f:
        f.write(old_entry)
    table.put(rec(3, 1, Binding(9, 300, 300.0, 0)), 0.0)
    store.append([table.get(3)], 0.0, 1000.0)  # type: ignore[list-item]
    with open(tmp_path / JOURNAL, "ab") as f:  # and a torn write at the end
        f.write(journal.encode_entry(rec(4, 1, Binding(9, 300, 300.0, 0)), 0.0, 1000.0)[:-3])
    store.close()

    again = TableStore(tmp_path)
    loaded = BindingTable()
    assert again.load(loaded, 5.0, 1010.0) == 3
    assert again.stats.torn_bytes > 0
    assert loaded.get(1).counter == 2  # type: ignore[union-attr]  # the snapshot's newer version
    assert loaded.get(1).bindings[0].care_of_address == 11  # type: ignore[union-attr]
    assert loaded.get(3) is not None and loaded.get(4) is None
    assert loaded.get(2).bindings[0].expires == 5.0 + 290.0  # type: ignore[union-attr]
    assert (tmp_path / SNAPSHOT).exists()
    # the torn tail was cut off: appending again gives a clean journal
    assert not journal.decode((tmp_path / JOURNAL).read_bytes()).torn


def test_restored_member_is_not_synced_and_seeds_the_merge(tmp_path: Path) -> None:
    table = BindingTable()
    home = int(IPv4Address("10.1.0.5"))
    table.put(rec(home, 5, Binding(9, 300, 300.0, 0)), 0.0)
    store = TableStore(tmp_path)
    store.snapshot(table, 0.0, 1000.0)
    store.close()
    restored = BindingTable()
    TableStore(tmp_path).load(restored, 0.0, 1010.0)
    auth = sw.GroupAuth([sw.GroupKey(4096, "hmac-sha256", b"k")], 4096)
    settings = SyncSettings(node_id=1, peers=(("192.0.2.2", 434),))
    engine = SyncEngine(settings, restored, auth, epoch=5)
    engine.start(0.0)
    assert engine.state is SyncState.NOT_SYNCED
    assert engine.datagrams_to_send()  # it asks the group for the table
    # a peer's older copy of the record does not replace the restored newer one
    older = MobilityRecord(home, make_version(4, 2), 0, 1, (Binding(10, 300, 300.0, 0),))
    assert not restored.merge(older, 1.0)
    assert restored.get(home).counter == 5  # type: ignore[union-attr]


def test_power_cut_and_restart_keeps_bindings_with_reduced_lifetimes(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with running_homeagent(tmp_path / "a", persistence={"path": str(state)}) as ha:
        for i, lifetime in ((5, 300), (6, 300), (7, 2)):
            assert ha.client(home=f"10.1.0.{i}").register(lifetime).code == 0
        assert ha.client(home="10.1.0.6").deregister().code == 0
        time.sleep(0.3)  # one event-loop turn is enough; leave a margin on a busy machine
        config = ha.config
        ha.stop(sig=9)  # SIGKILL: no clean shutdown, no final snapshot
    assert (state / JOURNAL).stat().st_size > len(journal.MAGIC)
    time.sleep(2.5)
    handle = start_homeagent(tmp_path / "b", config)
    try:
        rows = {r["home_address"]: r for r in handle.bindings()}
        assert set(rows) == {"10.1.0.5"}, rows  # 10.1.0.6 deregistered, 10.1.0.7 ran out
        left = int(rows["10.1.0.5"]["remaining_lifetime"])
        assert 250 <= left <= 298, left
        persisted = handle.get("/api/v1/persistence")
        assert persisted["loaded"] >= 2
        # and it still accepts registrations (the replay state came back too: a fresh id works)
        assert handle.client(home="10.1.0.5").register(300).code == 0
    finally:
        handle.stop()
    # a clean stop writes a snapshot and starts an empty journal
    assert (state / SNAPSHOT).exists()
    assert (state / JOURNAL).read_bytes() == journal.MAGIC
