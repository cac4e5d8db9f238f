"""Operator actions on a running daemon: ``clear binding`` and reloading the security associations.

* ``POST /api/v1/bindings/{home}/clear`` (``mobileip clear binding HOME``): an administrative
  deregistration of every binding of ``home``. The core writes a tombstone with a new version and
  publishes a :class:`~mobileip.core.homeagent.BindingChanged` event, so the redundancy group
  hears it exactly like a deregistration from the mobile node.
* SIGHUP (``systemctl reload``) and ``POST /api/v1/reload``: read the configuration file again
  and swap in its security associations without touching the bindings. A bad file keeps the old
  SAs and logs ``config.reload_failed``; the services' hooks swap in their own sections (the
  pools: the reply's ``pools`` lists the pool names added, removed and changed, and how many
  addresses are retired); other sections need a restart, and the reload says which differ.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, fields, replace
from ipaddress import IPv4Address
from typing import Any

from aiohttp import web

from mobileip.agents.client import ControlError, post_json
from mobileip.config import (
    ConfigError,
    SecurityAssociationConfig,
    load_config,
    security_associations,
)
from mobileip.core.pools import AddressPool
from mobileip.daemon.ports import EventHost


@dataclass(frozen=True, slots=True)
class ReloadResult:
    ok: bool
    added: tuple[int, ...] = ()
    removed: tuple[int, ...] = ()
    changed: tuple[int, ...] = ()
    restart_needed: tuple[str, ...] = ()
    error: str | None = None
    # the pools swapped in (names added, removed, changed; how many addresses are retired), or
    # None for a daemon without pools (its first [[pool]] needs a restart: restart_needed)
    pools: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "added": list(self.added),
            "removed": list(self.removed),
            "changed": list(self.changed),
            "pools": self.pools,
            "restart_needed": list(self.restart_needed),
            "error": self.error,
        }


def diff_sas(
    old: tuple[SecurityAssociationConfig, ...], new: tuple[SecurityAssociationConfig, ...]
) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """SPIs added, removed, and changed (key, algorithm or home addresses)."""
    a = {sa.spi: sa for sa in old}
    b = {sa.spi: sa for sa in new}
    added = tuple(sorted(set(b) - set(a)))
    removed = tuple(sorted(set(a) - set(b)))
    changed = tuple(sorted(spi for spi in set(a) & set(b) if a[spi] != b[spi]))
    return added, removed, changed


def diff_pools(old: tuple[AddressPool, ...], new: tuple[AddressPool, ...]) -> dict[str, list[str]]:
    """Pool names added, removed, and changed (range or exclusions), as the daemon applied them."""
    a = {p.name: p for p in old}
    b = {p.name: p for p in new}
    return {
        "added": sorted(set(b) - set(a)),
        "removed": sorted(set(a) - set(b)),
        "changed": sorted(name for name in set(a) & set(b) if a[name] != b[name]),
    }


def reload_security_associations(daemon: EventHost) -> ReloadResult:
    """Re-read ``daemon.config.path`` and install its SAs; keep the old ones on any error."""
    path = daemon.config.path
    try:
        config = load_config(path)
        sas = security_associations(config)
    except (ConfigError, ValueError, OSError) as exc:
        daemon.log.error("config.reload_failed", config=path, error=str(exc), kept="old SAs")
        return ReloadResult(False, error=str(exc))
    old = daemon.config
    added, removed, changed = diff_sas(old.security_associations, config.security_associations)
    daemon.core.sas = sas
    pools = daemon.core.pools
    before = pools.definitions() if pools is not None else ()
    applied: set[str] = set()
    for apply in daemon.config_hooks:  # e.g. the pools (daemon/pools.py)
        applied.update(apply(config))
    pool_changes: dict[str, Any] | None = None
    if pools is not None:
        pool_changes = {**diff_pools(before, pools.definitions()), "retired": len(pools.retired)}
    daemon.config = replace(
        old,
        security_associations=config.security_associations,
        **{name: getattr(config, name) for name in sorted(applied)},
    )
    restart = tuple(
        f.name
        for f in fields(config)
        if f.name not in ("path", "security_associations", *applied)
        and getattr(config, f.name) != getattr(old, f.name)
    )
    daemon.log.info(
        "config.reloaded",
        config=path,
        sas=len(sas),
        added=",".join(map(str, added)) or "-",
        removed=",".join(map(str, removed)) or "-",
        changed=",".join(map(str, changed)) or "-",
        restart_needed=",".join(restart) or "-",
        bindings=len(daemon.core.table),
    )
    if restart:
        daemon.log.warning(
            "config.restart_needed",
            sections=",".join(restart),
            reason="only the security associations are reloaded by SIGHUP",
        )
    return ReloadResult(True, added, removed, changed, restart, pools=pool_changes)


def clear_binding(daemon: EventHost, home: IPv4Address) -> int:
    """Deregister every binding of ``home``; return how many bindings were dropped."""
    now = time.monotonic()
    rec = daemon.core.table.get(int(home))
    count = len(rec.bindings) if rec is not None else 0
    events = daemon.core.administrative_deregister(home, now)
    if not events:
        return 0
    daemon.log.info("binding.cleared", home=home, bindings=count, by="operator")
    daemon.publish(events, now)
    daemon.reschedule_expiry()
    for hook in daemon.cleared_hooks:  # RFC 3543: revoke at the foreign agent
        hook(home, "operator")
    return count


class AdminService:
    """The control routes for :func:`clear_binding` and :func:`reload_security_associations`."""

    def __init__(self, daemon: EventHost) -> None:
        self.daemon = daemon
        daemon.control.add_json_route("POST", "/api/v1/bindings/{home}/clear", self._clear)
        daemon.control.add_json_route("POST", "/api/v1/reload", self._reload)
        daemon.reload_hooks.append(self._on_sighup)

    def _on_sighup(self) -> None:
        reload_security_associations(self.daemon)

    def _clear(self, request: web.Request) -> Any:
        text = request.match_info["home"]
        try:
            home = IPv4Address(text)
        except ValueError:
            return web.json_response({"error": f"not an IPv4 address: {text!r}"}, status=400)
        cleared = clear_binding(self.daemon, home)
        if cleared == 0:
            return web.json_response(
                {"error": f"no binding for {home}", "home_address": str(home)}, status=404
            )
        return {"home_address": str(home), "cleared": cleared}

    def _reload(self, request: web.Request) -> Any:
        result = reload_security_associations(self.daemon)
        return web.json_response(result.as_dict(), status=200 if result.ok else 400)


def cmd_clear_binding(
    control: tuple[str, int], home: IPv4Address, token: str | None, as_json: bool
) -> int:
    """``mobileip clear binding HOME``: 0 cleared, 1 no such binding, 4 control API error."""
    try:
        data = post_json(control, f"/api/v1/bindings/{home}/clear", token=token)
    except ControlError as exc:
        print(f"mobileip: {exc}", file=sys.stderr)
        return 1 if "HTTP 404" in str(exc) else 4
    if as_json:
        print(json.dumps(data, indent=2))
    else:
        print(f"cleared {data['cleared']} binding(s) of {data['home_address']}")
    return 0
