"""asyncio driver for the VRRPv3 machine: raw IP protocol 112 socket, timers, virtual address.

:class:`VrrpSpeaker` takes :class:`VrrpSettings` and an optional role callback; it feeds
received advertisements (TTL 255 only, checksum verified) and timer expiries to
:class:`~mobileip.vrrp.machine.VrrpMachine`, multicasts what it asks for, adds the virtual
addresses (and sends gratuitous ARP from the interface's own MAC) on ``BecameMaster`` and
removes them on ``BecameBackup`` / shutdown.

Standalone runner (logs ``key=value`` lines on stderr; SIGTERM/SIGINT shut down cleanly,
sending priority 0)::

    python -m mobileip.net.vrrp_socket --interface eth0 --vrid 51 --priority 110 \\
        --address 10.1.0.1/24 --advert-interval 0.1 [--no-preempt]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import socket
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface

from mobileip.net import netlink
from mobileip.vrrp.machine import (
    BecameBackup,
    BecameInitialize,
    BecameMaster,
    Output,
    PeerClaimedMaster,
    SendAdvert,
    State,
    VrrpConfig,
    VrrpMachine,
)
from mobileip.wire import vrrp as wire
from mobileip.wire.errors import DecodeError

IP_PKTINFO = 8
SO_BINDTODEVICE = 25

Logger = Callable[..., None]
RoleCallback = Callable[[State, str], None]


@dataclass(frozen=True, slots=True)
class VrrpSettings:
    interface: str
    vrid: int
    priority: int
    addresses: tuple[IPv4Interface, ...]
    advert_interval: float = 1.0  # seconds, 0.01 steps
    preempt: bool = True
    accept_mode: bool = False
    accept_v2_checksum: bool = False
    garp_repeat: int = 3  # gratuitous ARPs per takeover
    garp_spacing: float = 0.2  # seconds between them

    @property
    def advert_interval_cs(self) -> int:
        return round(self.advert_interval * 100)


def log_kv(event: str, **fields: object) -> None:
    """Default logger: one ``key=value`` line on stderr."""
    parts = [f"ts={time.time():.3f}", f"event={event}"]
    parts += [f"{k}={str(v).replace(' ', '_')}" for k, v in fields.items()]
    print(" ".join(parts), file=sys.stderr, flush=True)


def parse_ip_packet(packet: bytes) -> tuple[int, IPv4Address, IPv4Address, bytes]:
    """Return (ttl, src, dst, payload) of a raw IPv4 packet; DecodeError if malformed."""
    if len(packet) < 20 or packet[0] >> 4 != 4:
        raise DecodeError("bad-ip-header", code=None)
    ihl = (packet[0] & 0x0F) * 4
    (total,) = struct.unpack_from("!H", packet, 2)
    if ihl < 20 or len(packet) < ihl or total < ihl:
        raise DecodeError("bad-ip-header", code=None)
    end = min(total, len(packet))
    return packet[8], IPv4Address(packet[12:16]), IPv4Address(packet[16:20]), packet[ihl:end]


class VrrpSpeaker:
    """One virtual router on one interface."""

    def __init__(
        self,
        settings: VrrpSettings,
        on_role: RoleCallback | None = None,
        log: Logger = log_kv,
    ) -> None:
        self.settings = settings
        self.on_role = on_role
        self.log = log
        self.machine: VrrpMachine | None = None
        self.counters: dict[str, int] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sock: socket.socket | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._info: netlink.InterfaceInfo | None = None
        self._want_addresses = False
        self._addresses_changed = asyncio.Event()
        self._addresses_settled = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._garp_handles: list[asyncio.TimerHandle] = []

    @property
    def state(self) -> State:
        return self.machine.state if self.machine else State.INITIALIZE

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        s = self.settings
        self._loop = asyncio.get_running_loop()
        self._info = await netlink.interface_info(s.interface)
        if self._info.primary_address is None:
            raise netlink.NetlinkFailure(f"{s.interface} has no IPv4 address")
        self.machine = VrrpMachine(
            VrrpConfig(
                vrid=s.vrid,
                priority=s.priority,
                addresses=tuple(a.ip for a in s.addresses),
                primary_address=self._info.primary_address,
                advert_interval=s.advert_interval_cs,
                preempt=s.preempt,
                accept_mode=s.accept_mode,
            )
        )
        self._sock = self._open_socket(self._info)
        self._loop.add_reader(self._sock.fileno(), self._on_readable)
        self._worker = asyncio.create_task(self._address_worker())
        # A leftover virtual address from a previous run must not linger while we are backup.
        self._set_want_addresses(False)
        self.log(
            "start",
            interface=s.interface,
            vrid=s.vrid,
            priority=s.priority,
            primary=self._info.primary_address,
            interval=s.advert_interval,
        )
        self.machine.start(self._loop.time())
        self._process()

    async def stop(self) -> None:
        """Clean shutdown: priority-0 advert if master, addresses removed, socket closed."""
        if self.machine is None or self._loop is None:
            return
        self.machine.shutdown(self._loop.time())
        self._process()
        await self._settle_addresses()
        if self._worker:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        if self._sock:
            self._loop.remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
        for handle in self._garp_handles:
            handle.cancel()
        self.log("stopped", vrid=self.settings.vrid, **self.counters)

    def set_priority(self, priority: int) -> None:
        """Change the advertised priority (e.g. lowered while NOT SYNCED)."""
        if self.machine and self._loop:
            self.machine.set_priority(priority, self._loop.time())
            self.log("priority", vrid=self.settings.vrid, priority=priority)
            self._process()

    # --- socket -------------------------------------------------------------------------------

    def _open_socket(self, info: netlink.InterfaceInfo) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, wire.IP_PROTO_VRRP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, info.name.encode())
            mreqn = wire.MULTICAST_GROUP.packed + bytes(4) + struct.pack("@i", info.index)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreqn)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, mreqn)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, wire.REQUIRED_TTL)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        return sock

    def _send(self, data: bytes) -> None:
        assert self._sock is not None and self._info is not None
        primary = self._info.primary_address
        assert primary is not None
        pktinfo = struct.pack("@i4s4s", self._info.index, primary.packed, bytes(4))
        try:
            self._sock.sendmsg(
                [data],
                [(socket.IPPROTO_IP, IP_PKTINFO, pktinfo)],
                0,
                (str(wire.MULTICAST_GROUP), 0),
            )
            self._count("sent")
        except OSError as exc:
            self._count("send-error")
            self.log("send-error", error=exc)

    def _on_readable(self) -> None:
        assert self._sock is not None and self.machine is not None and self._loop is not None
        while True:
            try:
                packet = self._sock.recv(65535)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                self._count("recv-error")
                self.log("recv-error", error=exc)
                break
            try:
                ttl, src, dst, payload = parse_ip_packet(packet)
                if ttl != wire.REQUIRED_TTL:
                    raise DecodeError("bad-ttl", str(ttl), code=None)
                adv = wire.decode(
                    payload, src, dst, accept_v2_checksum=self.settings.accept_v2_checksum
                )
            except DecodeError as exc:
                self._count(f"dropped-{exc.reason}")
                continue
            self._count("received")
            self.machine.handle_advert(adv, src, self._loop.time())
        self._process()

    # --- machine outputs and timer ------------------------------------------------------------

    def _on_timer(self) -> None:
        assert self.machine is not None and self._loop is not None
        self._timer = None
        self.machine.handle_timer(self._loop.time())
        self._process()

    def _process(self) -> None:
        assert self.machine is not None and self._loop is not None and self._info is not None
        assert self._info.primary_address is not None
        for out in self.machine.outputs():
            self._handle_output(out)
        if self._timer:
            self._timer.cancel()
            self._timer = None
        deadline = self.machine.next_timer()
        if deadline is not None:
            self._timer = self._loop.call_at(deadline, self._on_timer)

    def _handle_output(self, out: Output) -> None:
        assert self._info is not None and self._info.primary_address is not None
        vrid = self.settings.vrid
        if isinstance(out, SendAdvert):
            self._send(wire.encode(out.advert, self._info.primary_address))
        elif isinstance(out, BecameMaster):
            self.log("state", vrid=vrid, state="MASTER", reason=out.reason)
            self._set_want_addresses(True)
            self._notify(State.MASTER, out.reason)
        elif isinstance(out, BecameBackup):
            self.log("state", vrid=vrid, state="BACKUP", reason=out.reason, master=out.master)
            self._set_want_addresses(False)
            self._notify(State.BACKUP, out.reason)
        elif isinstance(out, BecameInitialize):
            self.log("state", vrid=vrid, state="INITIALIZE", reason=out.reason)
            self._set_want_addresses(False)
            self._notify(State.INITIALIZE, out.reason)
        elif isinstance(out, PeerClaimedMaster):
            self.log("peer-claimed-master", vrid=vrid, peer=out.peer, priority=out.peer_priority)
            self._schedule_garp()

    def _notify(self, state: State, reason: str) -> None:
        if self.on_role is None:
            return
        try:
            self.on_role(state, reason)
        except Exception as exc:  # a broken callback must not stop the protocol
            self.log("callback-error", error=repr(exc))

    # --- virtual addresses and gratuitous ARP -------------------------------------------------

    def _set_want_addresses(self, want: bool) -> None:
        self._want_addresses = want
        self._addresses_settled.clear()
        self._addresses_changed.set()

    async def _settle_addresses(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._addresses_settled.wait(), 5.0)

    async def _address_worker(self) -> None:
        assert self._info is not None
        present: bool | None = None  # unknown at start: removal is attempted once
        while True:
            await self._addresses_changed.wait()
            self._addresses_changed.clear()
            want = self._want_addresses
            if want != present:
                for addr in self.settings.addresses:
                    try:
                        if want:
                            await netlink.add_address(self._info.index, addr)
                        else:
                            await netlink.remove_address(self._info.index, addr)
                    except netlink.NetlinkFailure as exc:
                        self.log("address-error", address=addr, error=exc)
                present = want
                self.log("addresses", vrid=self.settings.vrid, present=want)
                if want:
                    self._schedule_garp()
            if not self._addresses_changed.is_set():
                self._addresses_settled.set()

    def _schedule_garp(self) -> None:
        assert self._loop is not None
        for handle in self._garp_handles:
            handle.cancel()
        self._garp_handles = [
            self._loop.call_later(i * self.settings.garp_spacing, self._send_garp)
            for i in range(self.settings.garp_repeat)
        ]

    def _send_garp(self) -> None:
        if self.state is not State.MASTER or self._info is None:
            return
        for addr in self.settings.addresses:
            try:
                netlink.send_gratuitous_arp(self._info.name, self._info.mac, addr.ip)
                self._count("garp-sent")
            except OSError as exc:
                self._count("garp-error")
                self.log("garp-error", address=addr, error=exc)

    def _count(self, key: str) -> None:
        self.counters[key] = self.counters.get(key, 0) + 1


# --- standalone runner ------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> VrrpSettings:
    p = argparse.ArgumentParser(prog="python -m mobileip.net.vrrp_socket", description=__doc__)
    p.add_argument("--interface", required=True)
    p.add_argument("--vrid", type=int, required=True)
    p.add_argument("--priority", type=int, default=100)
    p.add_argument("--address", action="append", required=True, type=IPv4Interface)
    p.add_argument("--advert-interval", type=float, default=1.0, help="seconds (0.01-40.95)")
    p.add_argument("--no-preempt", action="store_true")
    p.add_argument("--accept-mode", action="store_true")
    p.add_argument("--accept-v2-checksum", action="store_true")
    a = p.parse_args(argv)
    try:
        settings = VrrpSettings(
            interface=a.interface,
            vrid=a.vrid,
            priority=a.priority,
            addresses=tuple(a.address),
            advert_interval=a.advert_interval,
            preempt=not a.no_preempt,
            accept_mode=a.accept_mode,
            accept_v2_checksum=a.accept_v2_checksum,
        )
        VrrpConfig(  # validate the ranges before touching the network
            settings.vrid,
            settings.priority,
            tuple(x.ip for x in settings.addresses),
            IPv4Address(0),
            settings.advert_interval_cs,
        )
    except ValueError as exc:
        p.error(str(exc))
    return settings


async def run(settings: VrrpSettings) -> None:
    speaker = VrrpSpeaker(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await speaker.start()
    try:
        await stop.wait()
    finally:
        await speaker.stop()


def main(argv: list[str] | None = None) -> int:
    settings = parse_args(argv)
    try:
        asyncio.run(run(settings))
    except (OSError, netlink.NetlinkFailure) as exc:
        log_kv("fatal", error=exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
