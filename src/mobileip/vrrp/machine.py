"""Sans-IO VRRPv3 state machine for one virtual router (RFC 5798 section 6).

Times are seconds as floats (``now`` comes from the caller's monotonic clock); intervals on the
wire and in the configuration are centiseconds, as in the RFC. The machine never reads a clock,
opens a socket or draws a random number: the caller feeds it ``start``, ``handle_advert``,
``handle_timer``, ``set_priority`` and ``shutdown``, then drains :meth:`VrrpMachine.outputs` and
arms a timer for :meth:`VrrpMachine.next_timer`.

RFC rules implemented (6.4.1-6.4.3):

* Initialize: priority 255 (address owner) becomes Master at once, anyone else Backup with
  Master_Down_Timer = Master_Down_Interval.
* Backup: an advert with priority 0 sets Master_Down_Timer to Skew_Time; one with priority at
  least ours (or any priority when Preempt_Mode is off) resets it and teaches us
  Master_Adver_Interval; a lower one is discarded so we preempt when the timer fires.
* Master: an advert with priority 0 makes us advertise at once; a higher one (or an equal one
  from a higher primary address) makes us Backup; a lower one is discarded, but we report it
  (:class:`PeerClaimedMaster`) and advertise at once so the peer yields and the owner can
  re-announce the address (split-brain heal).
* Shutdown: a Master sends a priority-0 advert.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from ipaddress import IPv4Address

from mobileip.wire.vrrp import MAX_INTERVAL_CS, PRIORITY_OWNER, PRIORITY_RELEASE, Advertisement


class State(enum.Enum):
    INITIALIZE = "INITIALIZE"
    BACKUP = "BACKUP"
    MASTER = "MASTER"


@dataclass(frozen=True, slots=True)
class VrrpConfig:
    """Settings of one virtual router. ``advert_interval`` is in centiseconds (1-4095)."""

    vrid: int
    priority: int
    addresses: tuple[IPv4Address, ...]
    primary_address: IPv4Address
    advert_interval: int = 100
    preempt: bool = True
    accept_mode: bool = False

    def __post_init__(self) -> None:
        if not 1 <= self.vrid <= 255:
            raise ValueError(f"VRID {self.vrid} outside 1-255")
        if not 1 <= self.priority <= 255:
            raise ValueError(f"priority {self.priority} outside 1-255")
        if not 1 <= self.advert_interval <= MAX_INTERVAL_CS:
            raise ValueError(f"advert interval {self.advert_interval} cs outside 1-4095")
        if not self.addresses:
            raise ValueError("a virtual router needs at least one address")


# --- outputs ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendAdvert:
    """Multicast this advertisement now."""

    advert: Advertisement
    reason: str


@dataclass(frozen=True, slots=True)
class BecameMaster:
    """We own the virtual addresses now: add them and send gratuitous ARP."""

    reason: str


@dataclass(frozen=True, slots=True)
class BecameBackup:
    """Someone else is master: drop the virtual addresses."""

    reason: str
    master: IPv4Address | None = None


@dataclass(frozen=True, slots=True)
class BecameInitialize:
    """Shut down: the virtual addresses must be gone."""

    reason: str


@dataclass(frozen=True, slots=True)
class PeerClaimedMaster:
    """While Master we heard a lower-priority advert: another member also claims master.

    The owner should re-send gratuitous ARP for its addresses (keepalived #166).
    """

    peer: IPv4Address
    peer_priority: int


Output = SendAdvert | BecameMaster | BecameBackup | BecameInitialize | PeerClaimedMaster


def skew_time(priority: int, master_adver_interval_cs: int) -> float:
    """Skew_Time in seconds: ((256 - Priority) * Master_Adver_Interval) / 256."""
    return ((256 - priority) * master_adver_interval_cs) / 256 / 100


def master_down_interval(priority: int, master_adver_interval_cs: int) -> float:
    """Master_Down_Interval in seconds: 3 * Master_Adver_Interval + Skew_Time."""
    return 3 * master_adver_interval_cs / 100 + skew_time(priority, master_adver_interval_cs)


class VrrpMachine:
    """One VRRPv3 virtual router; see the module docstring for the rules."""

    def __init__(self, config: VrrpConfig) -> None:
        self.config = config
        self.state = State.INITIALIZE
        self.priority = config.priority
        self.master_adver_interval = config.advert_interval  # centiseconds
        self.master_address: IPv4Address | None = None
        self._deadline: float | None = None  # Adver_Timer (Master) or Master_Down_Timer (Backup)
        self._outputs: list[Output] = []
        self.counters: dict[str, int] = {}

    # --- queries ------------------------------------------------------------------------------

    @property
    def skew_time(self) -> float:
        return skew_time(self.priority, self.master_adver_interval)

    @property
    def master_down_interval(self) -> float:
        return master_down_interval(self.priority, self.master_adver_interval)

    @property
    def accepts_virtual_traffic(self) -> bool:
        """Whether packets to the virtual addresses are accepted (owner or Accept_Mode)."""
        return self.state is State.MASTER and (
            self.priority == PRIORITY_OWNER or self.config.accept_mode
        )

    def next_timer(self) -> float | None:
        """When :meth:`handle_timer` must be called next (``None``: no timer armed)."""
        return self._deadline

    def outputs(self) -> list[Output]:
        """Return and clear the outputs produced since the last call."""
        out, self._outputs = self._outputs, []
        return out

    # --- inputs -------------------------------------------------------------------------------

    def start(self, now: float) -> None:
        """The Startup event (6.4.1)."""
        if self.state is not State.INITIALIZE:
            return
        if self.priority == PRIORITY_OWNER:
            self._become_master(now, "owner-startup")
        else:
            self.master_adver_interval = self.config.advert_interval
            self._become_backup(now, "startup", None)

    def shutdown(self, now: float) -> None:
        """The Shutdown event: a Master sends priority 0 so a backup takes over in Skew_Time."""
        if self.state is State.MASTER:
            self._send(PRIORITY_RELEASE, "shutdown")
        if self.state is not State.INITIALIZE:
            self.state = State.INITIALIZE
            self._deadline = None
            self.master_address = None
            self._outputs.append(BecameInitialize("shutdown"))

    def set_priority(self, priority: int, now: float) -> None:
        """Change our priority (e.g. lowered while NOT SYNCED); the next advert carries it.

        A Master advertises the new priority at once so backups can preempt without waiting
        one Advertisement_Interval.
        """
        if not 1 <= priority <= 255:
            raise ValueError(f"priority {priority} outside 1-255")
        if priority == self.priority:
            return
        self.priority = priority
        if self.state is State.MASTER:
            self._send(self.priority, "priority-changed")
            self._deadline = now + self.config.advert_interval / 100

    def handle_timer(self, now: float) -> None:
        """Call at (or after) :meth:`next_timer`; early calls are ignored."""
        if self._deadline is None or now < self._deadline:
            return
        if self.state is State.MASTER:
            self._send(self.priority, "adver-timer")
            self._deadline = now + self.config.advert_interval / 100
        elif self.state is State.BACKUP:
            self._become_master(now, "master-down-timer")

    def handle_advert(self, adv: Advertisement, src: IPv4Address, now: float) -> None:
        """An advertisement that passed the wire checks (TTL 255, checksum) arrived from ``src``."""
        if adv.vrid != self.config.vrid:
            self._count("other-vrid")
            return
        if src == self.config.primary_address:
            self._count("own-advert")
            return
        if set(adv.addresses) != set(self.config.addresses):
            # 7.1: log, and drop unless it comes from the address owner.
            self._count("address-mismatch")
            if adv.priority != PRIORITY_OWNER:
                return
        if self.state is State.BACKUP:
            self._backup_advert(adv, src, now)
        elif self.state is State.MASTER:
            self._master_advert(adv, src, now)
        else:
            self._count("not-running")

    # --- rules --------------------------------------------------------------------------------

    def _backup_advert(self, adv: Advertisement, src: IPv4Address, now: float) -> None:
        if adv.priority == PRIORITY_RELEASE:
            self._count("release-received")
            self._deadline = now + self.skew_time
            return
        if not self.config.preempt or adv.priority >= self.priority:
            self.master_adver_interval = adv.max_advert_interval
            self.master_address = src
            self._deadline = now + self.master_down_interval
            return
        self._count("lower-priority-discarded")  # we preempt when Master_Down_Timer fires

    def _master_advert(self, adv: Advertisement, src: IPv4Address, now: float) -> None:
        if adv.priority == PRIORITY_RELEASE:
            self._send(self.priority, "peer-released")
            self._deadline = now + self.config.advert_interval / 100
            return
        if adv.priority > self.priority or (
            adv.priority == self.priority and int(src) > int(self.config.primary_address)
        ):
            self.master_adver_interval = adv.max_advert_interval
            self._become_backup(
                now, f"higher-priority-master src={src} priority={adv.priority}", src
            )
            return
        self._count("lower-priority-master")
        self._outputs.append(PeerClaimedMaster(src, adv.priority))
        self._send(self.priority, "assert-master")
        self._deadline = now + self.config.advert_interval / 100

    def _become_master(self, now: float, reason: str) -> None:
        self.state = State.MASTER
        self.master_address = self.config.primary_address
        self._send(self.priority, reason)
        self._outputs.append(BecameMaster(reason))
        self._deadline = now + self.config.advert_interval / 100

    def _become_backup(self, now: float, reason: str, master: IPv4Address | None) -> None:
        self.state = State.BACKUP
        self.master_address = master
        self._deadline = now + self.master_down_interval
        self._outputs.append(BecameBackup(reason, master))

    def _send(self, priority: int, reason: str) -> None:
        adv = Advertisement(
            self.config.vrid, priority, self.config.advert_interval, self.config.addresses
        )
        self._outputs.append(SendAdvert(adv, reason))

    def _count(self, key: str) -> None:
        self.counters[key] = self.counters.get(key, 0) + 1
