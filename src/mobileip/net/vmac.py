"""The VRRP virtual MAC (RFC 5798 7.3, ``00-00-5E-00-01-{VRID}``) on a macvlan, as keepalived's
``use_vmac`` does it, and the sysctls that go with it (remembered, so a clean stop restores them,
even after a SIGKILL: the originals are kept in ``/run/mobileip`` until then).

A macvlan interface on the home interface (``vrrp.<vrid>`` unless named otherwise) owns the
virtual MAC; the virtual address and the data plane's proxy ARP live on it. Neighbours' ARP
caches then map the virtual address and every away home address to the virtual MAC, which does
not change across a takeover: only its owner does (one frame from the new owner teaches the
switches). Stdlib only: the links go through :class:`~mobileip.net.rtnl.RtnlSocket` (one
``RTM_NEWLINK`` / ``RTM_DELLINK`` each), the sysctls through ``/proc/sys``.

:func:`ensure` creates the macvlan (``private`` mode, down) or adopts an existing one (e.g.
keepalived's) and sets, with a :class:`~mobileip.net.sysctls.PersistedSysctls` (its file:
:func:`state_file`):

* on the macvlan: ``disable_ipv6=1`` (no frame with the virtual MAC from IPv6 autoconfiguration,
  DAD or MLD), ``arp_ignore=1`` (answer ARP only for addresses on the macvlan itself),
  ``rp_filter=0`` (the macvlan has no address on a standby, or only the virtual one, and its
  senders route by the base interface: any reverse-path filter, loose included, drops the ARP
  requests and packets it must take; ``all.rp_filter`` must be 0 too, the kernel uses the
  maximum), ``medium_id=1``;
* on the base interface: ``arp_ignore=1`` (never answer for the virtual address with the real
  MAC), ``arp_announce=2`` (its own ARP requests carry its own address as sender, never the
  virtual one: registration replies leave from the virtual address through the base, and a
  request saying "virtual address is at <real MAC>" would overwrite neighbours' entries;
  seen on the wire before this), ``medium_id=1``.

``medium_id`` matters for proxy ARP (the data plane sets ``proxy_arp=1`` on the macvlan): Linux
answers an ARP request arriving on a proxy-ARP interface when the target's route leaves by
another device, unless both devices carry the same non-zero ``medium_id`` (``arp_fwd_proxy``).
The base interface and the macvlan are one medium: hosts of the home link, routed by the base
interface, are never proxied; away home addresses, routed into the tunnel device (medium 0), are.

Who owns it: the VRRP driver, as in keepalived. The native speaker
(:mod:`mobileip.net.vrrp_socket`, ``VrrpSettings.vmac_interface``) creates it at start, keeps it
**down** while not MASTER (nothing ever leaves with the virtual MAC, frames to it are not
accepted, and the VIP is absent), and on MASTER sets it up, adds the virtual address to it,
sends its adverts from it (source MAC = the virtual MAC, RFC 5798 7.3) and gratuitous ARP for
the virtual address from it. With keepalived (``use_vmac``) keepalived creates it, drives its
link (keepalived keeps it up on a backup too) and adds the address; we only adopt it. The data
plane (``[dataplane] virtual_mac``) adopts whichever exists and adds the proxy-ARP sysctls; only
with the ``static`` driver does the data plane make the macvlan and drive its link itself.

After a SIGKILL: the record on disk holds the originals of every sysctl set here and whether we
made the macvlan (and its interface index). The next :func:`ensure` keeps those originals (a
clean stop then puts back the values from before the killed run), and a macvlan the killed
owner made is deleted and made anew: down, no address, default sysctls.

What the VRRP speaker (native driver) calls, all synchronous (its address thread is fine)::

    v = vmac.ensure(base_interface, vrid, claim=True)  # at start (a leftover one: made anew)
    vmac.set_up(v, True); add VIP to v.index            # on BecameMaster (it sends its own GARP)
    remove VIP from v.index; vmac.set_up(v, False)                        # on BecameBackup
    vmac.release(v)                                 # at stop: deletes it if created or claimed
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from mobileip.net import netlink
from mobileip.net.rtnl import NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST, RtnlSocket
from mobileip.net.sysctls import STATE_DIR, PersistedSysctls, netns_id
from mobileip.net.sysctls import Sysctls as Sysctls  # where the data plane's ARP duties take it

RTM_NEWLINK, RTM_DELLINK = 16, 17
IFLA_ADDRESS, IFLA_IFNAME, IFLA_LINK, IFLA_LINKINFO = 1, 3, 5, 18
IFLA_INFO_KIND, IFLA_INFO_DATA = 1, 2
IFLA_MACVLAN_MODE = 1
MACVLAN_MODE_PRIVATE, MACVLAN_MODE_BRIDGE = 1, 4
IFF_UP = 0x1
NLA_F_NESTED = 0x8000
MEDIUM_ID = 1

_IFI = struct.Struct("=IHHIIBxHiII")  # nlmsghdr + ifinfomsg


class VmacError(RuntimeError):
    """The macvlan cannot be made or found (no such base interface, name taken, no permission)."""


def virtual_mac(vrid: int) -> bytes:
    """RFC 5798 7.3: 00-00-5E-00-01-{VRID} (IPv4)."""
    if not 1 <= vrid <= 255:
        raise ValueError(f"VRID must be 1-255, got {vrid}")
    return bytes((0x00, 0x00, 0x5E, 0x00, 0x01, vrid))


def default_name(vrid: int) -> str:
    """keepalived's default name for a ``use_vmac`` interface."""
    return f"vrrp.{vrid}"


def mac_text(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


@dataclass
class Vmac:
    name: str
    index: int
    mac: bytes
    base: str
    created: bool  # we made it (and delete it on release)
    sysctls: Sysctls = field(default_factory=Sysctls)
    replaced: bool = False  # a killed run's macvlan was there: deleted and made anew
    # every gratuitous ARP of announce() leaves through this one packet socket (opened lazily)
    garp_socket: socket.socket | None = field(default=None, repr=False, compare=False)


def _attr(kind: int, data: bytes) -> bytes:
    n = 4 + len(data)
    return struct.pack("=HH", n, kind) + data + b"\0" * (-n & 3)


def _ifinfo(kind: int, flags: int, index: int, ifflags: int, change: int, attrs: bytes) -> bytes:
    return _IFI.pack(32 + len(attrs), kind, flags, 0, 0, 0, 0, index, ifflags, change) + attrs


def link_add_macvlan(
    name: str, base_index: int, mac: bytes, mode: int = MACVLAN_MODE_PRIVATE
) -> bytes:
    """RTM_NEWLINK ``ip link add NAME link BASE address MAC type macvlan mode private`` (down)."""
    data = _attr(IFLA_MACVLAN_MODE, struct.pack("=I", mode))
    info = _attr(IFLA_INFO_KIND, b"macvlan\0") + _attr(IFLA_INFO_DATA | NLA_F_NESTED, data)
    attrs = (
        _attr(IFLA_IFNAME, name.encode() + b"\0")
        + _attr(IFLA_LINK, struct.pack("=I", base_index))
        + _attr(IFLA_ADDRESS, mac)
        + _attr(IFLA_LINKINFO | NLA_F_NESTED, info)
    )
    return _ifinfo(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL, 0, 0, 0, attrs)


def link_set_up(index: int, up: bool) -> bytes:
    """RTM_NEWLINK ``ip link set dev INDEX up|down``."""
    return _ifinfo(RTM_NEWLINK, NLM_F_REQUEST, index, IFF_UP if up else 0, IFF_UP, b"")


def link_del(index: int) -> bytes:
    return _ifinfo(RTM_DELLINK, NLM_F_REQUEST, index, 0, 0, b"")


def read_mac(name: str) -> bytes:
    with open(f"/sys/class/net/{name}/address", encoding="ascii") as f:
        return bytes.fromhex(f.read().strip().replace(":", ""))


def is_up(name: str) -> bool:
    with open(f"/sys/class/net/{name}/flags", encoding="ascii") as f:
        return bool(int(f.read().strip(), 16) & IFF_UP)


def _index(name: str) -> int | None:
    try:
        return socket.if_nametoindex(name)
    except OSError:
        return None


def _apply(messages: list[bytes], sock: RtnlSocket | None) -> None:
    own = sock is None
    s = sock or RtnlSocket()
    try:
        failures = s.apply(messages)
    finally:
        if own:
            s.close()
    if failures:
        f = failures[0]
        raise VmacError(str(f))


def state_file(name: str, owner: bool, directory: Path = STATE_DIR) -> Path:
    """Where the originals of the sysctls set for the macvlan ``name`` are kept until put back
    (:class:`~mobileip.net.sysctls.PersistedSysctls`), per network namespace: one file for its
    owner (who creates it: the native speaker, or the data plane with the static driver) and
    one for an adopter (the data plane with keepalived or the native speaker), as both set the
    same sysctls in turn and put them back in the reverse order."""
    role = "owner" if owner else "adopter"
    return directory / f"vmac-sysctls-net{netns_id()}-{name}-{role}.json"


def _device_prefixes(name: str) -> tuple[str, ...]:
    return (f"net/ipv4/conf/{name}/", f"net/ipv4/neigh/{name}/", f"net/ipv6/conf/{name}/")


def _forget_devices_that_moved(state: PersistedSysctls, now: dict[str, int | None]) -> None:
    """A killed run's originals of a device that is gone, or is another device now (another
    interface index: deleted and made again) are not this device's originals: forget them."""
    recorded = state.inherited_meta.get("devices")
    if not isinstance(recorded, dict):
        return
    for name, index in recorded.items():
        if now.get(name, _index(name)) != index:
            for prefix in _device_prefixes(name):
                state.forget_prefix(prefix)


def _left_by_us(meta: dict[str, Any], name: str, index: int) -> bool:
    """The record says a killed run of ours made the macvlan ``name`` at ``index``."""
    devices = meta.get("devices")
    recorded = devices.get(name) if isinstance(devices, dict) else None
    return meta.get("created") is True and recorded in (index, None)


def ensure(
    base: str,
    vrid: int | None,
    name: str | None = None,
    *,
    sock: RtnlSocket | None = None,
    create: bool = True,
    claim: bool = False,
    state_dir: Path = STATE_DIR,
) -> Vmac:
    """The macvlan ``name`` (default ``vrrp.<vrid>``) on ``base``: adopted when it exists
    (``created`` False), else made (down, virtual MAC of ``vrid``) unless ``create`` is False;
    then the sysctls of the module docstring (remembered in ``Vmac.sysctls``, and on disk in
    :func:`state_file` until :func:`release` puts them back, so a restart after SIGKILL still
    puts back the values from before the killed run).

    A macvlan a killed run of ours made (its record says so, same interface index) is deleted
    and made anew (``Vmac.replaced``): down, no address, the kernel's default sysctls, ours to
    delete at :func:`release`. ``claim``: any existing one carrying the virtual MAC is treated
    so. The native VRRP speaker claims (it owns its macvlan); keepalived's (``use_vmac``) is
    never claimed nor replaced (``create=False``)."""
    if name is None:
        if vrid is None:
            raise VmacError("a virtual MAC needs a VRID or an interface name")
        name = default_name(vrid)
    if len(name) > 15:
        raise VmacError(f"interface names are at most 15 characters: {name!r}")
    base_index = _index(base)
    if base_index is None:
        raise VmacError(f"no interface named {base!r}")
    index = _index(name)
    state = PersistedSysctls(state_file(name, create, state_dir))
    _forget_devices_that_moved(state, {base: base_index, name: index})
    created = replaced = False
    if index is not None and create and (claim or _left_by_us(state.inherited_meta, name, index)):
        if vrid is not None and read_mac(name) != virtual_mac(vrid):
            raise VmacError(f"{name} exists and does not carry {mac_text(virtual_mac(vrid))}")
        try:
            _apply([link_del(index)], sock)
        except VmacError as exc:
            raise VmacError(f"cannot delete the leftover macvlan {name}: {exc}") from None
        for prefix in _device_prefixes(name):  # its sysctls went with it
            state.forget_prefix(prefix)
        index, replaced = None, True
    if index is None:
        if not create or vrid is None:
            raise VmacError(f"no interface named {name!r} (the VRRP daemon creates it)")
        # recorded before it exists: a kill right after still leaves it known as ours
        state.meta = {"created": True, "devices": {base: base_index, name: None}}
        state.write()
        try:
            _apply([link_add_macvlan(name, base_index, virtual_mac(vrid))], sock)
        except VmacError as exc:
            state.restore()
            raise VmacError(f"cannot create macvlan {name} on {base}: {exc}") from None
        created = True
        index = _index(name)
        if index is None:
            raise VmacError(f"macvlan {name} vanished after creation")
    state.meta = {"created": created, "devices": {base: base_index, name: index}}
    state.write()
    v = Vmac(name, index, read_mac(name), base, created, state, replaced)
    try:
        with contextlib.suppress(FileNotFoundError):  # no IPv6 in this kernel: nothing to stop
            v.sysctls.set(f"net/ipv6/conf/{name}/disable_ipv6", "1")
        v.sysctls.set(f"net/ipv4/conf/{name}/arp_ignore", "1")
        v.sysctls.set(f"net/ipv4/conf/{name}/rp_filter", "0")
        v.sysctls.set(f"net/ipv4/conf/{name}/medium_id", str(MEDIUM_ID))
        v.sysctls.set(f"net/ipv4/conf/{base}/arp_ignore", "1")
        v.sysctls.set(f"net/ipv4/conf/{base}/arp_announce", "2")
        v.sysctls.set(f"net/ipv4/conf/{base}/medium_id", str(MEDIUM_ID))
    except OSError as exc:
        with contextlib.suppress(VmacError):
            release(v, sock=sock)
        raise VmacError(f"sysctls for {name}: {exc}") from None
    return v


def set_up(v: Vmac, up: bool, *, sock: RtnlSocket | None = None) -> None:
    """Bring the macvlan up (active) or down (standby): one RTM_NEWLINK."""
    _apply([link_set_up(v.index, up)], sock)


def announce(v: Vmac, address: IPv4Address) -> None:
    """One gratuitous ARP for ``address`` from the virtual MAC (switches learn its new port).

    Through one long-lived packet socket per macvlan (``Vmac.garp_socket``, closed by
    :func:`release`), as the VRRP speaker does: a socket per frame
    (``netlink.send_gratuitous_arp``) pays an RCU grace period in bind and close (24 ms on a
    quiet box, hundreds on a loaded one). Unbound and protocol 0 (it receives nothing), the
    device named at each send; non-blocking (a full queue raises ``BlockingIOError``, an
    ``OSError`` like a link that is down)."""
    if v.garp_socket is None:
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        s.setblocking(False)
        v.garp_socket = s
    v.garp_socket.sendto(netlink.gratuitous_arp_frame(v.mac, address), (v.name, netlink.ETH_P_ARP))


def release(v: Vmac, *, sock: RtnlSocket | None = None) -> None:
    """Undo :func:`ensure`: delete the macvlan if we made it, restore the sysctls we changed
    (their record on disk goes with them)."""
    if v.garp_socket is not None:
        v.garp_socket.close()
        v.garp_socket = None
    if v.created:
        for prefix in _device_prefixes(v.name):
            v.sysctls.forget_prefix(prefix)
        if _index(v.name) == v.index:
            _apply([link_del(v.index)], sock)
        v.created = False
    v.sysctls.restore()


def exists(name: str) -> bool:
    return os.path.exists(f"/sys/class/net/{name}")
