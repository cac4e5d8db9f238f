"""Prometheus metrics on ``GET /metrics`` of the control listener (prometheus-client).

Every daemon has its own :class:`~prometheus_client.CollectorRegistry` (never the global one),
so several daemons in one process (tests) do not share numbers. Almost everything is read from
the live state at scrape time by :class:`DaemonCollector` (the core's reply and violation
counters, the binding table, the sync engine's ``cmiHaRedun*`` counters, members, queues, the
role driver when there is one), so a metric can never drift from what ``/api/v1/stats`` and
``/api/v1/redundancy`` say. The one real observation stream, the sync lag (seconds from a local
change's acceptance to each member's ack of it), is drained from ``SyncEngine.ack_latencies``
into a histogram every second and at each scrape.

Names: ``mobileip_*`` for the Home Agent, ``mobileip_ha_redun_*`` for the redundancy group,
after CISCO-MOBILE-IP-MIB's ``cmiHaRedun*`` objects (``cmiHaRedunSentBUs`` is
``mobileip_ha_redun_sent_bus_total``). ``docs/operations.md`` lists them all.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from mobileip.daemon.ports import ObservedHost, StatusSource
from mobileip.daemon.redundancy import RedundancyService
from mobileip.wire.codes import meaning

if TYPE_CHECKING:
    from mobileip.sync.engine import SyncEngine

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
VIOLATION_REASONS = (
    "no-sa",
    "bad-authenticator",
    "bad-identification",
    "bad-spi",
    "missing-extension",
)
SYNC_STATES = ("NOT SYNCED", "SYNCED")
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
DRAIN_INTERVAL = 1.0
RECENT_LAGS = 1000

# SyncCounters field -> metric name after the cmiHaRedun* object (plural "BUs" kept)
_REDUN_NAMES = {
    "sent_bu": "sent_bus",  # cmiHaRedunSentBUs
    "sent_bu_total": "total_sent_bus",  # cmiHaRedunTotalSentBUs
    "failed_bu": "failed_bus",  # cmiHaRedunFailedBUs
}


def redun_metric_name(field: str) -> str:
    """``mobileip_ha_redun_<name>`` for a :class:`~mobileip.sync.engine.SyncCounters` field."""
    return "mobileip_ha_redun_" + _REDUN_NAMES.get(field, field)


class MetricsService:
    """``GET /metrics`` for one daemon; also keeps recent sync lag samples for the status page."""

    def __init__(
        self,
        daemon: ObservedHost,
        redundancy: RedundancyService | None = None,
        roles: StatusSource | None = None,
        dataplane: StatusSource | None = None,
        revocation: StatusSource | None = None,
        pools: StatusSource | None = None,
    ) -> None:
        self.daemon = daemon
        self.redundancy = redundancy
        self.roles = roles
        self.dataplane = dataplane
        self.revocation = revocation
        self.pools = pools
        self.registry = CollectorRegistry(auto_describe=False)
        self.sync_lag = Histogram(
            "mobileip_ha_redun_sync_lag_seconds",
            "Time from a local change's acceptance (or its retransmission) to a member's ack",
            buckets=LAG_BUCKETS,
            registry=self.registry,
        )
        self.recent_lags: deque[float] = deque(maxlen=RECENT_LAGS)
        self.registry.register(DaemonCollector(self))
        self._task: asyncio.Task[None] | None = None
        daemon.control.add_json_route("GET", "/metrics", self._scrape)
        daemon.startup_hooks.append(self._start)
        daemon.shutdown_hooks.append(self._stop)

    def engine(self) -> SyncEngine | None:
        return self.redundancy.engine if self.redundancy is not None else None

    def drain(self) -> int:
        """Move the engine's ack latency samples into the histogram; return how many."""
        engine = self.engine()
        if engine is None or not engine.ack_latencies:
            return 0
        samples, engine.ack_latencies = engine.ack_latencies, []
        for s in samples:
            self.sync_lag.observe(s)
        self.recent_lags.extend(samples)
        return len(samples)

    def lag_summary(self) -> dict[str, float | int | None]:
        """Recent sync lag (last :data:`RECENT_LAGS` acks), in milliseconds."""
        self.drain()
        lags = sorted(self.recent_lags)
        if not lags:
            return {"samples": 0, "p50_ms": None, "p99_ms": None, "max_ms": None}

        def pick(q: float) -> float:
            return round(lags[min(len(lags) - 1, int(q * len(lags)))] * 1000, 3)

        return {
            "samples": len(lags),
            "p50_ms": pick(0.5),
            "p99_ms": pick(0.99),
            "max_ms": round(lags[-1] * 1000, 3),
        }

    def exposition(self) -> bytes:
        self.drain()
        return generate_latest(self.registry)

    def _scrape(self, request: web.Request) -> web.Response:
        return web.Response(body=self.exposition(), headers={"Content-Type": CONTENT_TYPE})

    async def _start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._drain_loop())

    async def _stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _drain_loop(self) -> None:
        while True:
            await asyncio.sleep(DRAIN_INTERVAL)
            self.drain()


class DaemonCollector(Collector):
    """Reads the daemon's live state at scrape time."""

    def __init__(self, service: MetricsService) -> None:
        self.service = service

    def collect(self) -> Iterable[Metric]:
        daemon = self.service.daemon
        yield from _core_metrics(daemon)
        yield from _udp_metrics(daemon, self.service.redundancy)
        engine = self.service.engine()
        if engine is not None:
            yield from _redundancy_metrics(engine, time.monotonic())
        yield from _role_metrics(self.service.roles)
        yield from _dataplane_metrics(self.service.dataplane)
        yield from _revocation_metrics(self.service.revocation)
        yield from _pool_metrics(self.service.pools)


def _core_metrics(daemon: ObservedHost) -> Iterator[Metric]:
    core = daemon.core
    replies = CounterMetricFamily(
        "mobileip_registration_replies",
        "Registration replies sent (or held) by reply code",
        labels=["code", "meaning"],
    )
    for code, n in sorted(core.stats.replies.items()):
        replies.add_metric([str(code), meaning(code)], n)
    yield replies
    violations = CounterMetricFamily(
        "mobileip_security_violations",
        "Registration requests refused for security reasons, by reason",
        labels=["reason"],
    )
    for reason in sorted(set(VIOLATION_REASONS) | set(core.stats.violations)):
        violations.add_metric([reason], core.stats.violations.get(reason, 0))
    yield violations
    dropped = CounterMetricFamily(
        "mobileip_datagrams_dropped",
        "Datagrams dropped without a reply, by reason",
        labels=["reason"],
    )
    merged = dict(core.stats.dropped)
    for reason, n in daemon.dropped.items():
        merged[reason] = merged.get(reason, 0) + n
    for reason, n in sorted(merged.items()):
        dropped.add_metric([reason], n)
    yield dropped
    yield GaugeMetricFamily("mobileip_bindings", "Live bindings", value=len(core.table))
    yield GaugeMetricFamily(
        "mobileip_binding_records",
        "Mobility records, tombstones included",
        value=core.table.record_count,
    )
    yield CounterMetricFamily(
        "mobileip_bindings_expired", "Records whose bindings expired", value=core.stats.expired
    )
    yield GaugeMetricFamily(
        "mobileip_security_associations", "Mobile node security associations", value=len(core.sas)
    )


def _udp_metrics(daemon: ObservedHost, service: RedundancyService | None) -> Iterator[Metric]:
    endpoints: list[tuple[str, Any]] = []
    if daemon.endpoint is not None:
        endpoints.append(("registration", daemon.endpoint))
    sync_ep = service.endpoint if service is not None else None
    if sync_ep is not None and sync_ep is not daemon.endpoint:
        endpoints.append(("sync", sync_ep))
    family = CounterMetricFamily(
        "mobileip_udp_datagrams",
        "UDP socket events by socket and event",
        labels=["socket", "event"],
    )
    for name, ep in endpoints:
        for event, n in sorted(ep.counters.items()):
            family.add_metric([name, str(event)], n)
    yield family


def _redundancy_metrics(engine: SyncEngine, now: float) -> Iterator[Metric]:
    counters = engine.counters
    for field, value in vars(counters).items():
        if field == "dropped" or not isinstance(value, int):
            continue
        yield CounterMetricFamily(
            redun_metric_name(field), f"SyncCounters.{field} (see docs/operations.md)", value=value
        )
    dropped = CounterMetricFamily(
        "mobileip_ha_redun_dropped", "Sync datagrams dropped, by reason", labels=["reason"]
    )
    for reason, n in sorted(counters.dropped.items()):
        dropped.add_metric([reason], n)
    yield dropped
    state = GaugeMetricFamily(
        "mobileip_ha_redun_state", "1 for this member's current sync state", labels=["state"]
    )
    current = engine.state.value
    for name in sorted(set(SYNC_STATES) | {current}):
        state.add_metric([name], 1.0 if name == current else 0.0)
    yield state
    labels = ["member", "node_id"]
    reachable = GaugeMetricFamily(
        "mobileip_ha_redun_member_reachable", "Member reachable", labels=labels
    )
    synced = GaugeMetricFamily(
        "mobileip_ha_redun_member_synced", "Member says SYNCED", labels=labels
    )
    contact = GaugeMetricFamily(
        "mobileip_ha_redun_member_last_contact_seconds", "Seconds since heard from", labels=labels
    )
    pending = GaugeMetricFamily(
        "mobileip_ha_redun_member_pending_updates",
        "Records the member has not acked",
        labels=labels,
    )
    for m in engine.members:
        d = m.describe(now)
        key = [f"{m.endpoint[0]}:{m.endpoint[1]}", str(d["node_id"] or "")]
        reachable.add_metric(key, 1.0 if m.reachable else 0.0)
        synced.add_metric(key, 1.0 if m.synced else 0.0)
        if m.last_heard is not None:
            contact.add_metric(key, max(0.0, now - m.last_heard))
        pending.add_metric(key, len(m.pending))
    yield from (reachable, synced, contact, pending)
    queues = engine.status(now)["queues"]
    depth = GaugeMetricFamily(
        "mobileip_ha_redun_queue_depth", "Sync queues: total and by kind", labels=["queue"]
    )
    depth.add_metric(["total"], engine.queue_depth())
    if isinstance(queues, dict):
        for name in ("fresh", "bulk_senders", "semisync_waiting"):
            value = queues.get(name)
            if isinstance(value, int):
                depth.add_metric([name], value)
    yield depth


def _role_metrics(roles: StatusSource | None) -> Iterator[Metric]:
    """The role service (src/mobileip/daemon/roles.py), read defensively through its ``status()``:
    role, transitions, VRRP state, priorities and speaker counters when the driver has them."""
    if roles is None:
        return
    data = roles.status()
    role = data.get("role")
    if isinstance(role, str):
        yield _one_hot("mobileip_role", "1 for this member's role", role, ("active", "standby"))
    if isinstance(data.get("transitions"), int):
        yield CounterMetricFamily(
            "mobileip_role_transitions", "Role changes since start", value=data["transitions"]
        )
    vrrp = data.get("vrrp_state")
    if isinstance(vrrp, str):
        yield _one_hot(
            "mobileip_vrrp_state", "1 for the VRRP state", vrrp, ("INITIALIZE", "BACKUP", "MASTER")
        )
    priority = data.get("priority")
    if isinstance(priority, int):
        priority = {"advertised": priority}
    if isinstance(priority, dict):
        family = GaugeMetricFamily("mobileip_vrrp_priority", "VRRP priority", labels=["kind"])
        for kind, value in sorted(priority.items()):
            if isinstance(value, int):
                family.add_metric([str(kind)], value)
        yield family
    counters = data.get("counters")
    if isinstance(counters, dict):
        events = CounterMetricFamily(
            "mobileip_vrrp_events", "VRRP speaker counters", labels=["event"]
        )
        for event, n in sorted(counters.items()):
            if isinstance(n, int):
                events.add_metric([str(event)], n)
        yield events


def _one_hot(name: str, doc: str, current: str, known: tuple[str, ...]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=["state"])
    for s in sorted({*known, current}):
        family.add_metric([s], 1.0 if s == current else 0.0)
    return family


def _dataplane_metrics(dataplane: StatusSource | None) -> Iterator[Metric]:
    """The data plane (src/mobileip/dataplane/service.py) through its ``status()``: packets by
    event (``encap-ipip``, ``decap-*``, ``drop-*``, errors) per backend, tunnels, takeovers,
    proxy-ARP counters. It counts packets, not bytes, so no byte metric is exported."""
    if dataplane is None:
        return
    data = dataplane.status()
    if isinstance(data.get("active"), bool):
        yield GaugeMetricFamily(
            "mobileip_dataplane_active", "1 when the data plane forwards", value=data["active"]
        )
    if isinstance(data.get("tunnels"), int):
        yield GaugeMetricFamily(
            "mobileip_dataplane_tunnels",
            "Tunnels installed (one per home address)",
            value=data["tunnels"],
        )
    if isinstance(data.get("takeovers"), int):
        yield CounterMetricFamily(
            "mobileip_dataplane_takeovers", "Data plane takeovers", value=data["takeovers"]
        )
    backend = data.get("backend")
    if isinstance(backend, dict) and isinstance(backend.get("counters"), dict):
        packets = CounterMetricFamily(
            "mobileip_dataplane_packets",
            "Data plane packets by event (encap-*, decap-*, delivered-home, drop-*, errors)",
            labels=["backend", "event"],
        )
        name = str(backend.get("backend", "-"))
        for event, n in sorted(backend["counters"].items()):
            if isinstance(n, int):
                packets.add_metric([name, str(event)], n)
        yield packets
    arp = data.get("arp")
    if isinstance(arp, dict) and isinstance(arp.get("counters"), dict):
        arp_family = CounterMetricFamily(
            "mobileip_dataplane_arp", "Proxy and gratuitous ARP events", labels=["event"]
        )
        for event, n in sorted(arp["counters"].items()):
            if isinstance(n, int):
                arp_family.add_metric([str(event)], n)
        yield arp_family


# RFC 3543 revocation: agent counter -> metric (``_total`` added by the client library)
_REVOCATION_COUNTERS = {
    "revocations-sent": ("sent", "Registration Revocations sent (first copies)"),
    "revocations-retransmitted": ("retransmitted", "Registration Revocations sent again"),
    "revocations-acked": ("acked", "Revocations acknowledged by the foreign agent"),
    "revocations-resumed": ("resumed", "Pending revocations resumed by a takeover"),
    "ack-for-settled": ("ack_for_settled", "Late acks for revocations already settled"),
    "revocation-gave-up": ("gave_up", "Revocations given up after max_attempts"),
    "revocations-superseded": ("superseded", "Revocations stopped by a new registration"),
    "revocations-deferred": ("deferred", "Revocations deferred until the group's state was in"),
}


def _revocation_metrics(revocation: StatusSource | None) -> Iterator[Metric]:
    """RFC 3543 revocation (src/mobileip/daemon/revocation.py) through its ``status()``, the
    same numbers as ``GET /api/v1/revocation``: the agent's counters (the main ones by name,
    every one under ``mobileip_revocation_events_total{event}``), pending and negotiated
    gauges, and the group replication's counters and peers."""
    if revocation is None:
        return
    data = revocation.status()
    counters = data.get("counters")
    if isinstance(counters, dict):
        for key, (name, doc) in _REVOCATION_COUNTERS.items():
            value = counters.get(key, 0)
            yield CounterMetricFamily(f"mobileip_revocation_{name}", doc, value=value)
        events = CounterMetricFamily(
            "mobileip_revocation_events", "Every revocation counter", labels=["event"]
        )
        for event, n in sorted(counters.items()):
            if isinstance(n, int):
                events.add_metric([str(event)], n)
        yield events
    pending = data.get("pending")
    if isinstance(pending, list):
        dormant = sum(1 for p in pending if isinstance(p, dict) and p.get("dormant"))
        family = GaugeMetricFamily(
            "mobileip_revocation_pending",
            "Revocations not yet acked (dormant: held by a standby for the active)",
            labels=["kind"],
        )
        family.add_metric(["sending"], len(pending) - dormant)
        family.add_metric(["dormant"], dormant)
        yield family
    if isinstance(data.get("negotiated"), int):
        yield GaugeMetricFamily(
            "mobileip_revocation_negotiated",
            "Bindings with revocation negotiated",
            value=data["negotiated"],
        )
    replication = data.get("replication")
    if not isinstance(replication, dict):
        return
    if isinstance(replication.get("ready"), bool):
        yield GaugeMetricFamily(
            "mobileip_revocation_ready",
            "1 once the group's revocation state is in (revocations are deferred until then)",
            value=replication["ready"],
        )
    rcounters = replication.get("counters")
    if isinstance(rcounters, dict):
        yield CounterMetricFamily(
            "mobileip_revocation_peers_unsupported",
            "Members given up on: they never acked a Revocation State (older versions)",
            value=rcounters.get("peers-unsupported", 0),
        )
        repl = CounterMetricFamily(
            "mobileip_revocation_replication_events",
            "Revocation State replication counters",
            labels=["event"],
        )
        for event, n in sorted(rcounters.items()):
            if isinstance(n, int):
                repl.add_metric([str(event)], n)
        yield repl
    peers = replication.get("peers")
    if isinstance(peers, dict):
        queued = GaugeMetricFamily(
            "mobileip_revocation_replication_queued",
            "Revocation entries waiting to be sent or acked, per member",
            labels=["member", "kind"],
        )
        for member, p in sorted(peers.items()):
            if isinstance(p, dict):
                for kind in ("queued", "in_flight", "missed"):
                    if isinstance(p.get(kind), int):
                        queued.add_metric([str(member), kind], p[kind])
        yield queued


def _pool_metrics(pools: StatusSource | None) -> Iterator[Metric]:
    """Dynamic home address pools (src/mobileip/daemon/pools.py) through ``status()``, the
    numbers of ``GET /api/v1/pools``: per pool its size and live addresses, the retired
    addresses, and the assignment counters (docs/pools.md)."""
    if pools is None:
        return
    data = pools.status()
    size = GaugeMetricFamily(
        "mobileip_pool_addresses", "Addresses a pool can hand out", labels=["pool"]
    )
    in_use = GaugeMetricFamily(
        "mobileip_pool_in_use", "Addresses of a pool held by a live binding", labels=["pool"]
    )
    for p in data.get("pools", []):
        size.add_metric([str(p["name"])], p["size"])
        in_use.add_metric([str(p["name"])], p["in_use"])
    yield size
    yield in_use
    yield GaugeMetricFamily(
        "mobileip_pool_retired",
        "Addresses a reload took out of every pool, still held by their bindings",
        value=len(data.get("retired", [])),
    )
    yield CounterMetricFamily(
        "mobileip_pool_assigned",
        "Addresses taken from a pool for an NAI that had none",
        value=data.get("assigned", 0),
    )
    yield CounterMetricFamily(
        "mobileip_pool_reassigned",
        "0.0.0.0 requests answered with the NAI's existing address",
        value=data.get("reassigned", 0),
    )
    denied = CounterMetricFamily(
        "mobileip_pool_denied", "Dynamic address requests refused, by reason", labels=["reason"]
    )
    for reason, n in sorted(data.get("denied", {}).items()):
        denied.add_metric([str(reason)], n)
    yield denied
