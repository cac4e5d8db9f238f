"""What replicating RFC 3543 revocation state costs (no root, in memory).

    .venv/bin/python scripts/perf/revocation_replication.py --sizes 1000,10000,100000 [--runs 3]

Per size N, medians of ``--runs``:

* **snapshot**: a member holding N negotiated binding ends; a second member boots and asks for
  them (``REQUEST``); both are a real :class:`~mobileip.sync.engine.SyncEngine` with its
  :class:`~mobileip.sync.revocation.RevocationReplicator`, datagrams handed over in memory (no
  loss, no sockets). Wall time until the booting member holds all N, entries per second and
  datagrams.
* **codec**: encode + decode of the same N entries in full Revocation State messages, against the
  baseline of the same run: N one-binding records in Binding Updates (the records every member
  already syncs), as a ratio per entry.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from mobileip.core.bindings import BindingTable
from mobileip.core.revocation import RevocationAgent, RevocationSettings
from mobileip.core.security import SecurityAssociation
from mobileip.sync.engine import SyncEngine, SyncSettings
from mobileip.sync.revocation import RevocationReplicator
from mobileip.wire import sync as w

KEY = bytes(range(32))
AUTH = w.GroupAuth([w.GroupKey(1000, "hmac-sha256", KEY)], send_spi=1000)
FA = IPv4Address("192.0.2.7")
SETTINGS = RevocationSettings(
    IPv4Address("10.1.0.1"),
    {FA: SecurityAssociation(4096, "hmac-md5", b"k" * 16, (IPv4Network("0.0.0.0/0"),))},
)
HOME0 = 0x0A800000


def entries(n: int) -> list[w.RevocationEntry]:
    since, fa, state = 1_700_000_000, int(FA), w.EntryState.NEGOTIATED
    return [
        w.RevocationEntry(HOME0 + i, fa, fa, 434, state, True, i + 1, since, 0, 0, 256, 0, 0)
        for i in range(n)
    ]


class Node:
    def __init__(self, node_id: int, peer: tuple[str, int]) -> None:
        self.endpoint = (f"10.9.0.{node_id}", 434)
        self.engine = SyncEngine(
            SyncSettings(node_id=node_id, peers=(peer,)), BindingTable(), AUTH, node_id
        )
        self.agent = RevocationAgent(SETTINGS, active=node_id == 1)
        self.replicator = RevocationReplicator(self.engine.context, self.agent)
        self.engine.extension = self.replicator


def snapshot(n: int) -> dict[str, Any]:
    a = Node(1, ("10.9.0.2", 434))
    b = Node(2, ("10.9.0.1", 434))
    for e in entries(n):
        a.agent.apply(e, 0.0)
    a.agent.changes.clear()
    nodes = {a.endpoint: a, b.endpoint: b}
    now = 0.0
    a.replicator.request_snapshot(now)  # a knows b (a REQUEST b answers with nothing)
    start = time.perf_counter()
    b.replicator.request_snapshot(now)
    datagrams = 0
    while len(b.agent.entries) < n:
        moved = 0
        for node in (a, b):
            for data, dest in node.engine.datagrams_to_send():
                moved += 1
                nodes[dest].engine.handle_datagram(data, node.endpoint, now)
        datagrams += moved
        if not moved:
            now += 0.01
            for node in (a, b):
                node.engine.handle_timer(now)
    took = time.perf_counter() - start
    assert b.agent.negotiated_count == n
    return {"seconds": took, "entries_per_s": n / took, "datagrams": datagrams}


def codec(n: int) -> dict[str, float]:
    per = (w.MAX_PAYLOAD - w.HEADER_LEN - w.auth_trailer_len(AUTH)) // w.ENTRY_LEN
    es = entries(n)
    msgs = [
        w.RevocationState(1, 1, i + 1, i + 1, False, tuple(es[i : i + per]))
        for i in range(0, n, per)
    ]
    t0 = time.perf_counter()
    for m in msgs:
        w.decode(w.encode(m, AUTH), AUTH)
    revocation = time.perf_counter() - t0
    binding = w.BindingState(int(FA), 600, 0, 250_000)
    records = [w.RecordState(HOME0 + i, 0x0A010001, i + 1, 7, 0, (binding,)) for i in range(n)]
    per_bu = (w.MAX_PAYLOAD - w.HEADER_LEN - w.auth_trailer_len(AUTH)) // w.record_size(records[0])
    bus = [
        w.BindingUpdate(1, 1, i + 1, i + 1, tuple(records[i : i + per_bu]))
        for i in range(0, n, per_bu)
    ]
    t0 = time.perf_counter()
    for bu in bus:
        w.decode(w.encode(bu, AUTH), AUTH)
    baseline = time.perf_counter() - t0
    return {
        "revocation_us_per_entry": revocation / n * 1e6,
        "binding_update_us_per_record": baseline / n * 1e6,
        "ratio": revocation / baseline,
        "entries_per_datagram": per,
        "records_per_datagram": per_bu,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    out = []
    for n in (int(x) for x in args.sizes.split(",")):
        snaps = [snapshot(n) for _ in range(args.runs)]
        codecs = [codec(n) for _ in range(args.runs)]
        row = {
            "n": n,
            "snapshot_s": statistics.median(s["seconds"] for s in snaps),
            "snapshot_entries_per_s": statistics.median(s["entries_per_s"] for s in snaps),
            "snapshot_datagrams": snaps[0]["datagrams"],
            **{k: statistics.median(c[k] for c in codecs) for k in codecs[0]},
        }
        out.append(row)
        print(json.dumps(row))


if __name__ == "__main__":
    main()
