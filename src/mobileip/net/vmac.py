"""The VRRP virtual MAC (RFC 5798 7.3, ``00-00-5E-00-01-{VRID}``) on a macvlan, as keepalived's
``use_vmac`` does it, and the sysctls that go with it (remembered, so a clean stop restores them).

A macvlan interface on the home interface (``vrrp.<vrid>`` unless named otherwise) owns the
virtual MAC; the virtual address and the data plane's proxy ARP live on it. Neighbours' ARP
caches then map the virtual address and every away home address to the virtual MAC, which does
not change across a takeover: only its owner does (one frame from the new owner teaches the
switches). Stdlib only: the links go through :class:`~mobileip.net.rtnl.RtnlSocket` (one
``RTM_NEWLINK`` / ``RTM_DELLINK`` each), the sysctls through ``/proc/sys``.

:func:`ensure` creates the macvlan (``private`` mode, down) or adopts an existing one (e.g.
keepalived's) and sets, with :class:`Sysctls`:

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

What the VRRP speaker (native driver) calls, all synchronous (its address thread is fine)::

    v = vmac.ensure(base_interface, vrid, claim=True)  # at start (a leftover one becomes ours)
    vmac.set_up(v, True); add VIP to v.index; vmac.announce(v, vip)       # on BecameMaster
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

from mobileip.net import netlink
from mobileip.net.rtnl import NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST, RtnlSocket

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


class Sysctls:
    """Writes ``/proc/sys`` values, remembering each one's first previous value; :meth:`restore`
    puts them back in reverse order (values of a device that is gone are skipped)."""

    def __init__(self) -> None:
        self.saved: dict[str, str] = {}

    def set(self, path: str, value: str) -> None:
        full = f"/proc/sys/{path}"
        with open(full, encoding="ascii") as f:
            old = f.read().strip()
        if path not in self.saved:
            self.saved[path] = old
        if old != value:
            netlink.write_sysctl(path, value)

    def forget_prefix(self, prefix: str) -> None:
        """Drop what was remembered under ``prefix`` (a device we delete takes its sysctls)."""
        for path in [p for p in self.saved if p.startswith(prefix)]:
            del self.saved[path]

    def restore(self) -> list[str]:
        """Restore everything; returns the paths that could not be written (a device that is
        gone, e.g. keepalived's macvlan deleted by keepalived first, is skipped silently)."""
        failed = []
        for path, value in reversed(list(self.saved.items())):
            try:
                netlink.write_sysctl(path, value)
            except FileNotFoundError:
                continue
            except OSError:
                failed.append(path)
        self.saved.clear()
        return failed


@dataclass
class Vmac:
    name: str
    index: int
    mac: bytes
    base: str
    created: bool  # we made it (and delete it on release)
    sysctls: Sysctls = field(default_factory=Sysctls)


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


def ensure(
    base: str,
    vrid: int | None,
    name: str | None = None,
    *,
    sock: RtnlSocket | None = None,
    create: bool = True,
    claim: bool = False,
) -> Vmac:
    """The macvlan ``name`` (default ``vrrp.<vrid>``) on ``base``: adopted when it exists
    (``created`` False), else made (down, virtual MAC of ``vrid``) unless ``create`` is False;
    then the sysctls of the module docstring (remembered in ``Vmac.sysctls``).

    ``claim``: an existing one is ours to delete on :func:`release` (``created`` True). The
    native VRRP speaker owns its macvlan, so one left by a killed run is taken over and removed
    at the next clean stop; keepalived's (``use_vmac``) is never claimed."""
    if name is None:
        if vrid is None:
            raise VmacError("a virtual MAC needs a VRID or an interface name")
        name = default_name(vrid)
    if len(name) > 15:
        raise VmacError(f"interface names are at most 15 characters: {name!r}")
    base_index = _index(base)
    if base_index is None:
        raise VmacError(f"no interface named {base!r}")
    created = False
    index = _index(name)
    if index is not None and claim:
        if vrid is not None and read_mac(name) != virtual_mac(vrid):
            raise VmacError(f"{name} exists and does not carry {mac_text(virtual_mac(vrid))}")
        created = True
    if index is None:
        if not create or vrid is None:
            raise VmacError(f"no interface named {name!r} (the VRRP daemon creates it)")
        try:
            _apply([link_add_macvlan(name, base_index, virtual_mac(vrid))], sock)
        except VmacError as exc:
            raise VmacError(f"cannot create macvlan {name} on {base}: {exc}") from None
        created = True
        index = _index(name)
        if index is None:
            raise VmacError(f"macvlan {name} vanished after creation")
    v = Vmac(name, index, read_mac(name), base, created)
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
    """One gratuitous ARP for ``address`` from the virtual MAC (switches learn its new port)."""
    netlink.send_gratuitous_arp(v.name, v.mac, address)


def release(v: Vmac, *, sock: RtnlSocket | None = None) -> None:
    """Undo :func:`ensure`: delete the macvlan if we made it, restore the sysctls we changed."""
    if v.created:
        v.sysctls.forget_prefix(f"net/ipv4/conf/{v.name}/")
        v.sysctls.forget_prefix(f"net/ipv6/conf/{v.name}/")
        if _index(v.name) == v.index:
            _apply([link_del(v.index)], sock)
        v.created = False
    v.sysctls.restore()


def exists(name: str) -> bool:
    return os.path.exists(f"/sys/class/net/{name}")
