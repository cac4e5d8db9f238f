"""The live status page: ``GET /`` (HTML) and ``GET /api/v1/status`` (the JSON it refreshes from).

The page is rendered on the server (it is complete without JavaScript), then a small script
polls ``/api/v1/status`` and ``/api/v1/bindings`` every two seconds and redraws the tables; a
search box filters the binding list. No build step, no external assets.

Recent events come from the daemon's structured log: :class:`EventRing` listens to the
:class:`~mobileip.log.Logger` and keeps the last :data:`RING_SIZE` notable events (sync state
changes, member reachability, takeovers and role changes, security violations, warnings and
errors, configuration reloads, administrative clears), whatever the log level.
"""

from __future__ import annotations

import html
import json
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from aiohttp import web

from mobileip.daemon.ports import ServiceHost, StatusSource
from mobileip.daemon.redundancy import RedundancyService
from mobileip.web.control import binding_rows

if TYPE_CHECKING:
    from mobileip.web.metrics import MetricsService

RING_SIZE = 200
NOTABLE_EVENTS = frozenset(
    {
        "homeagent.started",
        "sync.started",
        "sync.state",
        "sync.member",
        "config.reloaded",
        "binding.cleared",
    }
)
NOTABLE_PREFIXES = ("vrrp.", "role.", "keepalived.", "takeover")
REFRESH_MS = 2000
# the pool summary is counted at most this often (s): O(addresses in use) with a sort, ~30 ms at
# 50,000 live (scripts/perf/pools_status.py), so pages polling every REFRESH_MS, however many,
# cost at most one count a second
POOL_SUMMARY_MAX_AGE = 1.0


def _plain(value: Any) -> Any:
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


class EventRing:
    """The last ``size`` notable log events, newest last."""

    def __init__(self, size: int = RING_SIZE) -> None:
        self.events: deque[dict[str, Any]] = deque(maxlen=size)

    def notable(self, level: str, event: str) -> bool:
        if level in ("warning", "error"):
            return True
        return event in NOTABLE_EVENTS or event.startswith(NOTABLE_PREFIXES)

    def __call__(self, level: str, event: str, fields: dict[str, Any]) -> None:
        if not self.notable(level, event):
            return
        entry: dict[str, Any] = {"time": time.time(), "level": level, "event": event}
        entry["fields"] = {k: _plain(v) for k, v in fields.items()}
        self.events.append(entry)

    def recent(self, limit: int = 50) -> list[dict[str, Any]]:
        return list(self.events)[-limit:][::-1]


class StatusPage:
    def __init__(
        self,
        daemon: ServiceHost,
        metrics: MetricsService | None = None,
        redundancy: RedundancyService | None = None,
        roles: StatusSource | None = None,
    ) -> None:
        self.daemon = daemon
        self.redundancy = redundancy
        self.roles = roles
        self.metrics = metrics
        self.ring = EventRing()
        self.started = time.time()
        self._pools_cache: tuple[float, dict[str, Any] | None] | None = None
        daemon.log.listeners.append(self.ring)
        daemon.control.add_json_route("GET", "/", self._page)
        daemon.control.add_json_route("GET", "/api/v1/status", self._status)

    def status(self) -> dict[str, Any]:
        daemon = self.daemon
        core = daemon.core
        now = time.monotonic()
        out: dict[str, Any] = {
            "address": str(daemon.config.homeagent.address),
            "uptime": round(time.time() - self.started, 1),
            "bindings": len(core.table),
            "records": core.table.record_count,
            "accepted": sum(n for code, n in core.stats.replies.items() if code in (0, 1)),
            "denied": sum(n for code, n in core.stats.replies.items() if code not in (0, 1)),
            "security_violations": sum(core.stats.violations.values()),
            "role": _role(self.roles),
            "sync": None,
            "members": [],
            "sync_lag": self.metrics.lag_summary() if self.metrics is not None else None,
            "pools": self.pool_summary(now),
            "events": self.ring.recent(),
        }
        service = self.redundancy
        engine = service.engine if service is not None else None
        if service is not None:
            out["sync"] = {"state": "STARTING", "node_id": str(service.cfg.node_id), "mode": "-"}
        if engine is not None:
            st = engine.status(now)
            out["sync"] = {
                "state": st["state"],
                "node_id": st["node_id"],
                "mode": st["mode"],
                "queue_depth": engine.queue_depth(),
            }
            out["members"] = st["members"]
        return out

    def pool_summary(self, now: float) -> dict[str, Any] | None:
        """Per pool its addresses and how many are in use, and the retired addresses (a shrunk
        or removed pool's, held till their bindings end: in no pool, so counted once); None
        without pools. Counted at most every :data:`POOL_SUMMARY_MAX_AGE` seconds."""
        cached = self._pools_cache
        if cached is not None and now - cached[0] < POOL_SUMMARY_MAX_AGE:
            return cached[1]
        pools = self.daemon.core.pools
        summary: dict[str, Any] | None = None
        if pools is not None:
            in_use = pools.in_use_counts()  # O(addresses in use), prunes ``retired`` too
            summary = {
                "pools": [
                    {"name": p.name, "addresses": p.size, "in_use": in_use[p.name]}
                    for p in pools.definitions()
                ],
                "retired": len(pools.retired),
            }
        self._pools_cache = (now, summary)
        return summary

    def _status(self, request: web.Request) -> dict[str, Any]:
        return self.status()

    def _page(self, request: web.Request) -> web.Response:
        status = self.status()
        rows = binding_rows(self.daemon.core.table, time.monotonic())
        body = render_page(status, rows)
        return web.Response(text=body, content_type="text/html", charset="utf-8")


def _role(roles: StatusSource | None) -> str | None:
    """``active``/``standby`` (and the VRRP state) from the role service, if there is one."""
    if roles is None:
        return None
    data = roles.status()
    if not isinstance(data, dict) or data.get("role") is None:
        return None
    vrrp = data.get("vrrp_state")
    return f"{data['role']} ({vrrp})" if vrrp else str(data["role"])


def _e(value: Any) -> str:
    return html.escape("-" if value is None else str(value))


def _member_rows(members: list[dict[str, Any]]) -> str:
    out = []
    for m in members:
        out.append(
            f'<tr data-member="{_e(m.get("address"))}:{_e(m.get("port"))}">'
            f"<td>{_e(m.get('node_id'))}</td><td>{_e(m.get('address'))}:{_e(m.get('port'))}</td>"
            f"<td>{'yes' if m.get('reachable') else 'no'}</td>"
            f"<td>{'SYNCED' if m.get('synced') else 'NOT SYNCED'}</td>"
            f"<td>{_e(m.get('last_contact'))}</td><td>{_e(m.get('pending_updates'))}</td></tr>"
        )
    return "".join(out) or '<tr><td colspan="6">no other member</td></tr>'


def _binding_rows(rows: list[dict[str, Any]]) -> str:
    return "".join(
        f'<tr data-home="{_e(r["home_address"])}"><td>{_e(r["home_address"])}</td>'
        f"<td>{_e(r['care_of_address'])}</td><td>{_e(r['remaining_lifetime'])}</td>"
        f"<td>{_e(r['flag_letters'])}</td><td>{_e(r['identification_hex'])}</td></tr>"
        for r in rows
    )


def _event_rows(events: list[dict[str, Any]]) -> str:
    out = []
    for ev in events:
        when = time.strftime("%H:%M:%S", time.gmtime(ev["time"]))
        fields = " ".join(f"{k}={v}" for k, v in ev["fields"].items())
        out.append(
            f'<tr class="{_e(ev["level"])}"><td>{when}</td><td>{_e(ev["level"])}</td>'
            f"<td>{_e(ev['event'])}</td><td>{_e(fields)}</td></tr>"
        )
    return "".join(out)


def _lag_text(lag: dict[str, Any] | None) -> str:
    if not lag or not lag.get("samples"):
        return "no acks yet"
    return f"p50 {lag['p50_ms']} ms, p99 {lag['p99_ms']} ms, max {lag['max_ms']} ms"


def _pools_text(pools: dict[str, Any] | None) -> str:
    if not pools:
        return "none"
    parts = [f"{p['name']} {p['in_use']}/{p['addresses']} in use" for p in pools["pools"]]
    return ", ".join([*parts, f"{pools['retired']} retired"])


def render_page(status: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    sync = status.get("sync") or {}
    # inside <script> nothing is entity-decoded: keep "</script>" out with a JSON escape instead
    initial = json.dumps({"status": status, "bindings": rows}).replace("<", "\\u003c")
    return _TEMPLATE.format(
        address=_e(status["address"]),
        role=_e(status.get("role")),
        sync_state=_e(sync.get("state", "standalone")),
        node_id=_e(sync.get("node_id")),
        mode=_e(sync.get("mode")),
        bindings=_e(status["bindings"]),
        pools=_e(_pools_text(status.get("pools"))),
        lag=_e(_lag_text(status.get("sync_lag"))),
        members=_member_rows(status["members"]),
        binding_rows=_binding_rows(rows),
        events=_event_rows(status["events"]),
        refresh=REFRESH_MS,
        initial=initial,
        script=_SCRIPT,
    )


_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>mobileip {address}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:1.5em;color:#222}}
table{{border-collapse:collapse;margin-bottom:1.5em}}
td,th{{border:1px solid #ccc;padding:.2em .6em;text-align:left;font-size:.9em}}
th{{background:#eee}} .warning td{{background:#fff4d6}} .error td{{background:#fde0e0}}
.summary span{{margin-right:2em}} #search{{margin-bottom:.5em;width:20em}}
</style></head>
<body data-refresh="{refresh}">
<h1>Home Agent {address}</h1>
<p class="summary"><span>role: <b id="role">{role}</b></span>
<span>sync: <b id="sync-state">{sync_state}</b> (node <span id="node-id">{node_id}</span>,
mode <span id="mode">{mode}</span>)</span>
<span>bindings: <b id="binding-count">{bindings}</b></span>
<span>pools: <b id="pools">{pools}</b></span>
<span>sync lag: <b id="lag">{lag}</b></span>
<span id="updated"></span></p>
<h2>Group members</h2>
<table id="members"><thead><tr><th>node id</th><th>endpoint</th><th>reachable</th>
<th>state</th><th>last contact (s)</th><th>unacked</th></tr></thead>
<tbody>{members}</tbody></table>
<h2>Bindings</h2>
<input id="search" type="search" placeholder="filter by home or care-of address">
<table id="bindings"><thead><tr><th>home address</th><th>care-of address</th>
<th>remaining (s)</th><th>flags</th><th>identification</th></tr></thead>
<tbody>{binding_rows}</tbody></table>
<h2>Recent events</h2>
<table id="events"><thead><tr><th>time (UTC)</th><th>level</th><th>event</th><th>details</th>
</tr></thead><tbody>{events}</tbody></table>
<script id="initial" type="application/json">{initial}</script>
<script>{script}</script>
</body></html>
"""

_SCRIPT = r"""
"use strict";
const $ = (id) => document.getElementById(id);
const esc = (v) => String(v ?? "-").replace(/[&<>"']/g,
  (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"})[c]);
let bindings = JSON.parse($("initial").textContent).bindings;

function lagText(l) {
  if (!l || !l.samples) return "no acks yet";
  return `p50 ${l.p50_ms} ms, p99 ${l.p99_ms} ms, max ${l.max_ms} ms`;
}
function poolsText(p) {
  if (!p) return "none";
  return p.pools.map((x) => `${x.name} ${x.in_use}/${x.addresses} in use`)
    .concat([`${p.retired} retired`]).join(", ");
}
function drawBindings() {
  const q = $("search").value.trim();
  $("bindings").tBodies[0].innerHTML = bindings
    .filter((r) => !q || r.home_address.includes(q) || r.care_of_address.includes(q))
    .map((r) => `<tr data-home="${esc(r.home_address)}"><td>${esc(r.home_address)}</td>` +
      `<td>${esc(r.care_of_address)}</td><td>${esc(r.remaining_lifetime)}</td>` +
      `<td>${esc(r.flag_letters)}</td><td>${esc(r.identification_hex)}</td></tr>`)
    .join("");
}
function drawStatus(s) {
  $("role").textContent = s.role ?? "-";
  $("sync-state").textContent = s.sync ? s.sync.state : "standalone";
  $("node-id").textContent = s.sync ? s.sync.node_id : "-";
  $("mode").textContent = s.sync ? s.sync.mode : "-";
  $("binding-count").textContent = s.bindings;
  $("pools").textContent = poolsText(s.pools);
  $("lag").textContent = lagText(s.sync_lag);
  $("members").tBodies[0].innerHTML = s.members.length ? s.members.map((m) =>
    `<tr data-member="${esc(m.address)}:${esc(m.port)}"><td>${esc(m.node_id)}</td>` +
    `<td>${esc(m.address)}:${esc(m.port)}</td><td>${m.reachable ? "yes" : "no"}</td>` +
    `<td>${m.synced ? "SYNCED" : "NOT SYNCED"}</td><td>${esc(m.last_contact)}</td>` +
    `<td>${esc(m.pending_updates)}</td></tr>`).join("")
    : '<tr><td colspan="6">no other member</td></tr>';
  $("events").tBodies[0].innerHTML = s.events.map((e) => {
    const t = new Date(e.time * 1000).toISOString().substring(11, 19);
    const f = Object.entries(e.fields).map(([k, v]) => `${k}=${v}`).join(" ");
    return `<tr class="${esc(e.level)}"><td>${t}</td><td>${esc(e.level)}</td>` +
      `<td>${esc(e.event)}</td><td>${esc(f)}</td></tr>`;
  }).join("");
}
async function refresh() {
  try {
    const [s, b] = await Promise.all([fetch("api/v1/status"), fetch("api/v1/bindings")]);
    if (!s.ok || !b.ok) throw new Error(`HTTP ${s.status}/${b.status}`);
    drawStatus(await s.json());
    bindings = await b.json();
    drawBindings();
    $("updated").textContent = "updated " + new Date().toISOString().substring(11, 19);
  } catch (err) {
    $("updated").textContent = "refresh failed: " + err.message;
  }
}
$("search").addEventListener("input", drawBindings);
setInterval(refresh, Number(document.body.dataset.refresh));
"""
