"""Roles of a Home Agent in a redundancy group: active (answers the virtual address) or standby.

A :class:`RoleDriver` decides the role; :class:`RoleService` plugs one into the daemon:

* ``static``: the role comes from ``[vrrp] role`` and changes only by hand
  (``POST /api/v1/role {"role": "standby"}``, ``mobileip role standby``);
* ``native``: our own VRRPv3 speaker (:class:`~mobileip.net.vrrp_socket.VrrpSpeaker`) elects;
  MASTER is active (the speaker adds the virtual address and sends gratuitous ARP), anything
  else standby;
* ``keepalived``: keepalived elects and owns the address; we follow the ``INSTANCE "name" STATE
  prio`` lines of its notify FIFO for the configured instance.

What the role means: a standby drops registration requests sent to the virtual address (counted
as dropped ``standby``; every request when no virtual address is configured) and keeps receiving
sync and answering table requests like any member.

Do not take over half-blind: while the redundancy service is NOT SYNCED the native driver
advertises priority :data:`DEMOTED_PRIORITY` and the keepalived driver writes
:data:`TRACK_FILE_DEMOTION` to ``track_file`` (0 once SYNCED), so a restarted member cannot
preempt a synced master with an empty table. ``GET /api/v1/vrrp`` shows it all.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import TYPE_CHECKING, Any

from aiohttp import web

from mobileip.config import DataplaneConfig, VrrpConfig
from mobileip.daemon.keepalived import FifoReader, parse_notify_line, write_track_file
from mobileip.daemon.ports import GateHost, SyncStatus
from mobileip.net.udp import Address

if TYPE_CHECKING:
    from mobileip.net.vrrp_socket import VrrpSpeaker
    from mobileip.vrrp.machine import State

DEMOTED_PRIORITY = 1  # advertised by the native driver while NOT SYNCED
TRACK_FILE_DEMOTION = -100  # written to keepalived's track_file while NOT SYNCED
SYNC_POLL_INTERVAL = 0.05  # seconds between looks at the redundancy service's state
TRACK_FILE_CHECK = 1.0  # seconds between checks that the track file still holds our weight
GARP_REFRESH = 1.0  # seconds between gratuitous ARPs while active (native driver's speaker)
KEPT_TRANSITIONS = 20


class Role(enum.Enum):
    ACTIVE = "active"
    STANDBY = "standby"


@dataclass(frozen=True, slots=True)
class Transition:
    role: Role
    reason: str
    wall: float


RoleCallback = Callable[[Role, str], None]
Log = Callable[..., None]


class RoleDriver:
    """The common part: the current role, its history, callbacks on change."""

    name = "?"

    def __init__(self, initial: Role, reason: str, log: Log) -> None:
        self.role = initial
        self.reason = reason
        self.log = log
        self.callbacks: list[RoleCallback] = []
        self.transitions: deque[Transition] = deque(maxlen=KEPT_TRANSITIONS)
        self.transition_count = 0
        self.synced = True
        self._since = time.monotonic()

    def set_role(self, role: Role, reason: str) -> None:
        self.reason = reason
        if role is self.role:
            return
        self.role = role
        self._since = time.monotonic()
        self.transitions.append(Transition(role, reason, time.time()))
        self.transition_count += 1
        self.log("role.changed", role=role.value, reason=reason, driver=self.name)
        for callback in list(self.callbacks):
            try:
                callback(role, reason)
            except Exception as exc:  # a broken callback must not stop the election
                self.log("role.callback_failed", error=repr(exc))

    def set_synced(self, synced: bool) -> None:
        """The redundancy service's state changed (drivers demote while not synced)."""
        self.synced = synced

    def tick(self) -> None:
        """Called every :data:`SYNC_POLL_INTERVAL` for periodic chores."""

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    def status(self) -> dict[str, Any]:
        return {
            "driver": self.name,
            "role": self.role.value,
            "reason": self.reason,
            "role_for": round(time.monotonic() - self._since, 3),
            "synced": self.synced,
            "transitions": self.transition_count,
            "recent_transitions": [
                {"role": t.role.value, "reason": t.reason, "at": round(t.wall, 3)}
                for t in self.transitions
            ],
        }


class StaticDriver(RoleDriver):
    name = "static"

    def __init__(self, role: Role, log: Log) -> None:
        super().__init__(role, "configured", log)

    def status(self) -> dict[str, Any]:
        return {**super().status(), "vrrp_state": None, "priority": None}


class NativeDriver(RoleDriver):
    """Our VRRPv3 speaker decides: MASTER is active."""

    name = "native"

    def __init__(
        self, cfg: VrrpConfig, log: Log, synced: bool, vmac_interface: str | None = None
    ) -> None:
        super().__init__(Role.STANDBY, "startup", log)
        assert cfg.interface and cfg.vrid and cfg.virtual_address  # config enforces these
        self.cfg = cfg
        self.synced = synced
        self.vmac_interface = vmac_interface
        self.speaker: VrrpSpeaker | None = None

    @property
    def advertised_priority(self) -> int:
        if self.synced or self.cfg.priority == 255:  # the address owner is never demoted
            return self.cfg.priority
        return min(DEMOTED_PRIORITY, self.cfg.priority)

    async def start(self) -> None:
        from mobileip.net.vrrp_socket import VrrpSettings, VrrpSpeaker

        cfg = self.cfg
        assert cfg.interface and cfg.vrid and cfg.virtual_address
        settings = VrrpSettings(
            interface=cfg.interface,
            vrid=cfg.vrid,
            priority=self.advertised_priority,
            addresses=(cfg.virtual_address,),
            advert_interval=cfg.advert_interval,
            preempt=cfg.preempt,
            # Re-announce the address now and then while active (as keepalived's
            # ``vrrp_garp_master_refresh``): after a partition heals, the other master may step
            # down before it ever hears us, and hosts would keep its MAC for the address. The
            # speaker thread does it, so a busy event loop cannot delay it.
            garp_refresh=GARP_REFRESH,
            # the virtual MAC ([dataplane] virtual_mac): the speaker owns the macvlan, as
            # keepalived does with use_vmac; the data plane adopts it
            vmac_interface=self.vmac_interface,
            rt_priority=cfg.rt_priority,
        )
        if not self.synced:
            self.log("vrrp.demoted", priority=settings.priority, configured=cfg.priority)
        self.speaker = VrrpSpeaker(settings, on_role=self._on_state, log=self._speaker_log)
        await self.speaker.start()

    async def stop(self) -> None:
        if self.speaker is not None:
            await self.speaker.stop()

    def set_synced(self, synced: bool) -> None:
        if synced == self.synced:
            return
        self.synced = synced
        if self.speaker is not None:
            prio = self.advertised_priority
            if synced:
                self.log("vrrp.restored", priority=prio)
            else:
                self.log("vrrp.demoted", priority=prio, configured=self.cfg.priority)
            self.speaker.set_priority(prio)

    def _on_state(self, state: State, reason: str) -> None:
        from mobileip.vrrp.machine import State

        self.set_role(Role.ACTIVE if state is State.MASTER else Role.STANDBY, f"vrrp-{reason}")

    def _speaker_log(self, event: str, **fields: object) -> None:
        self.log(f"vrrp.{event}", **fields)

    def status(self) -> dict[str, Any]:
        speaker = self.speaker
        machine = speaker.machine if speaker is not None else None
        return {
            **super().status(),
            "vrrp_state": speaker.state.name if speaker is not None else "INITIALIZE",
            "vrid": self.cfg.vrid,
            "interface": self.cfg.interface,
            "priority": {
                "configured": self.cfg.priority,
                "advertised": machine.priority if machine else self.advertised_priority,
            },
            "demoted": not self.synced and self.advertised_priority != self.cfg.priority,
            "master": str(machine.master_address) if machine and machine.master_address else None,
            "counters": speaker.counters_snapshot() if speaker is not None else {},
            # gaps between our adverts while MASTER: p50/p99/p99.9/max over the last ones,
            # worst and late (> 1.5 x the interval) since start
            "advert_gap_ms": speaker.advert_gap_stats() if speaker is not None else None,
            "vmac": self._vmac_status(speaker),
        }

    def _vmac_status(self, speaker: VrrpSpeaker | None) -> dict[str, Any] | None:
        if self.vmac_interface is None:
            return None
        v = speaker.vmac if speaker is not None else None
        return {
            "interface": self.vmac_interface,
            "mac": ":".join(f"{b:02x}" for b in v.mac) if v is not None else None,
            "up": bool(speaker and speaker.vmac_ready),
        }


class KeepalivedDriver(RoleDriver):
    """keepalived decides (and owns the address); we follow its notify FIFO."""

    name = "keepalived"

    def __init__(self, cfg: VrrpConfig, log: Log, synced: bool) -> None:
        super().__init__(Role.STANDBY, "startup", log)
        assert cfg.notify_fifo and cfg.instance
        self.cfg = cfg
        self.fifo_path = cfg.notify_fifo
        self.instance = cfg.instance
        self.synced = synced
        self.vrrp_state = "UNKNOWN"
        self.keepalived_priority: int | None = None
        self.counters: dict[str, int] = {"lines": 0, "ignored": 0}
        self.reader: FifoReader | None = None
        self._next_check = 0.0

    @property
    def track_weight(self) -> int:
        return 0 if self.synced else TRACK_FILE_DEMOTION

    async def start(self) -> None:
        self._write_track_file()
        self.reader = FifoReader(self.fifo_path, self.handle_line)
        self.reader.open()
        self.log("keepalived.following", fifo=self.fifo_path, instance=self.instance)

    async def stop(self) -> None:
        if self.reader is not None:
            self.reader.close()
        # A stopped Home Agent must not leave keepalived promoted: demote until we are back.
        self.synced = False
        self._write_track_file()

    def set_synced(self, synced: bool) -> None:
        if synced != self.synced:
            self.synced = synced
            self._write_track_file()

    def tick(self) -> None:
        if time.monotonic() >= self._next_check:
            # keepalived's `init_file ... overwrite` rewrites the file when keepalived restarts
            self._write_track_file(only_if_changed=True)

    def _write_track_file(self, only_if_changed: bool = False) -> None:
        path = self.cfg.track_file
        if path is None:
            return
        self._next_check = time.monotonic() + TRACK_FILE_CHECK
        if only_if_changed:
            try:
                with open(path) as f:
                    if f.read().strip() == str(self.track_weight):
                        return
            except OSError:
                pass
        try:
            write_track_file(path, self.track_weight)
        except OSError as exc:
            self.log("keepalived.track_file_failed", path=path, error=str(exc))
            return
        self.log("keepalived.track_file", path=path, weight=self.track_weight)

    def handle_line(self, line: str) -> None:
        """One line from the FIFO (also the unit tests' entry point)."""
        self.counters["lines"] += 1
        parsed = parse_notify_line(line)
        if parsed is None or parsed.instance != self.instance:
            self.counters["ignored"] += 1
            return
        self.vrrp_state = parsed.state
        self.keepalived_priority = parsed.priority
        self.log(
            "keepalived.notify",
            instance=parsed.instance,
            state=parsed.state,
            priority=parsed.priority if parsed.priority is not None else "-",
        )
        role = Role.ACTIVE if parsed.state == "MASTER" else Role.STANDBY
        self.set_role(role, f"keepalived-{parsed.state.lower()}")

    def status(self) -> dict[str, Any]:
        return {
            **super().status(),
            "vrrp_state": self.vrrp_state,
            "instance": self.instance,
            "priority": {"configured": self.cfg.priority, "advertised": self.keepalived_priority},
            "track_file": self.cfg.track_file,
            "track_weight": self.track_weight,
            "demoted": not self.synced,
            "counters": dict(self.counters),
        }


def vmac_interface(cfg: VrrpConfig, dataplane: DataplaneConfig | None) -> str | None:
    """The macvlan the native speaker owns: with ``[dataplane] virtual_mac``, its
    ``vmac_interface`` or keepalived's default name ``vrrp.<vrid>``; None without it (and for
    the other drivers: keepalived makes its own, static leaves it to the data plane)."""
    if cfg.driver != "native" or dataplane is None or not dataplane.virtual_mac:
        return None
    return dataplane.vmac_interface or f"vrrp.{cfg.vrid}"


def make_driver(
    cfg: VrrpConfig, log: Log, synced: bool, dataplane: DataplaneConfig | None = None
) -> RoleDriver:
    if cfg.driver == "native":
        return NativeDriver(cfg, log, synced, vmac_interface(cfg, dataplane))
    if cfg.driver == "keepalived":
        return KeepalivedDriver(cfg, log, synced)
    return StaticDriver(Role(cfg.role or "standby"), log)


class RoleService:
    """The role driver in the daemon: request gate, sync watcher, control routes."""

    def __init__(
        self,
        daemon: GateHost,
        cfg: VrrpConfig,
        redundancy: SyncStatus | None = None,
    ) -> None:
        self.daemon = daemon
        self.cfg = cfg
        self.redundancy = redundancy
        self.virtual = cfg.virtual_address.ip if cfg.virtual_address is not None else None
        self.driver = make_driver(cfg, daemon.log.info, self._synced_now(), daemon.config.dataplane)
        self._poll: asyncio.TimerHandle | None = None
        daemon.request_gates.append(self._gate)
        daemon.startup_hooks.append(self._start)
        daemon.shutdown_hooks.append(self._stop)
        daemon.control.add_json_route("GET", "/api/v1/vrrp", self._status)
        daemon.control.add_json_route("POST", "/api/v1/role", self._set_role)

    def _synced_now(self) -> bool:
        return self.redundancy is None or self.redundancy.synced

    # --- the request gate --------------------------------------------------------------------

    def _gate(self, src: Address, dst: str | None) -> str | None:
        if self.driver.role is Role.ACTIVE:
            return None
        if self.virtual is None or (dst is not None and IPv4Address(dst) == self.virtual):
            return "standby"
        return None

    # --- lifecycle ---------------------------------------------------------------------------

    async def _start(self) -> None:
        daemon = self.daemon
        self.driver.synced = self._synced_now()
        await self.driver.start()
        daemon.log.info(
            "role.started",
            driver=self.driver.name,
            role=self.driver.role.value,
            synced=self.driver.synced,
            virtual_address=self.virtual or "-",
        )
        self._tick()

    async def _stop(self) -> None:
        if self._poll is not None:
            self._poll.cancel()
            self._poll = None
        await self.driver.stop()

    def _tick(self) -> None:
        self.driver.set_synced(self._synced_now())
        self.driver.tick()
        loop = asyncio.get_running_loop()
        self._poll = loop.call_later(SYNC_POLL_INTERVAL, self._tick)

    # --- control API -------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        data = self.driver.status()
        data["virtual_address"] = (
            str(self.cfg.virtual_address) if self.cfg.virtual_address else None
        )
        data["dropped_standby"] = self.daemon.dropped.get("standby", 0)
        return data

    def _status(self, request: web.Request) -> dict[str, Any]:
        return self.status()

    async def _set_role(self, request: web.Request) -> web.StreamResponse | dict[str, Any]:
        try:
            body = await request.json()
        except ValueError:
            return _error(400, 'body must be JSON like {"role": "active"}')
        role_text = body.get("role") if isinstance(body, dict) else None
        if role_text not in ("active", "standby"):
            return _error(400, 'role must be "active" or "standby"')
        if not isinstance(self.driver, StaticDriver):
            return _error(409, f"the {self.driver.name} driver decides the role; use driver static")
        self.driver.set_role(Role(role_text), "operator")
        return self.status()


def _error(status: int, message: str) -> web.StreamResponse:
    return web.json_response({"error": message}, status=status)


# --- command line helpers (``mobileip role``, ``mobileip show vrrp``) -------------------------


def format_vrrp(data: dict[str, Any]) -> str:
    """``mobileip show vrrp`` as text."""
    prio = data.get("priority") or {}
    lines = [
        f"Role {str(data.get('role', '?')).upper()} ({data.get('reason')}), "
        f"driver {data.get('driver')}, virtual address {data.get('virtual_address') or '-'}",
        f"  VRRP state {data.get('vrrp_state') or '-'}, priority configured "
        f"{prio.get('configured', '-')}, advertised {prio.get('advertised', '-')}"
        + (" (DEMOTED: not synced)" if data.get("demoted") else ""),
        f"  synced {data.get('synced')}, transitions {data.get('transitions')}, "
        f"dropped as standby {data.get('dropped_standby')}",
    ]
    gap = data.get("advert_gap_ms")
    if isinstance(gap, dict) and gap.get("count"):
        lines.append(
            f"  advert gaps (ms) p50 {gap.get('p50')}, p99 {gap.get('p99')}, "
            f"p99.9 {gap.get('p99.9')}, max {gap.get('max')}; worst {gap.get('worst')}, "
            f"late {gap.get('late')} of {gap.get('count')}"
        )
    for t in data.get("recent_transitions", []):
        when = time.strftime("%H:%M:%S", time.localtime(float(t["at"])))
        lines.append(f"    {when} -> {t['role']} ({t['reason']})")
    return "\n".join(lines)
