"""Tunnel backends of the active Home Agent: ``userspace``, ``kernel`` and ``none``.

What to tunnel is decided sans-IO by :func:`desired_tunnels` (the binding table in, one
:class:`TunnelSpec` per away mobile node out); a backend only makes it so:

* :class:`UserspaceBackend` needs no tunnel modules. A TUN device (``tun_name``) carries the home
  addresses of away mobile nodes: a /32 route per bound home address points at it, so the kernel
  forwards packets for them into the TUN; we read each one, encapsulate it
  (:func:`~mobileip.dataplane.encap.encapsulate`: IP-in-IP, or minimal / GRE when the binding's
  M / G flag asked) and send it to the care-of address on an ``IPPROTO_RAW`` socket. Raw sockets
  for protocols 4, 47 and 55 receive reverse-tunnelled packets (RFC 3024); a packet whose outer
  source is the registered care-of address of its inner source's binding (with the T flag) is
  decapsulated and written to the TUN, and the kernel forwards it. The TUN's MTU leaves room for
  the outer header, so the kernel itself answers oversized DF packets with "fragmentation needed".
* :class:`KernelBackend`: one collect-metadata ``ipip`` and one ``gre`` device, one encap route
  per away home address; the kernel encapsulates and decapsulates (minimal encapsulation as
  IP-in-IP). RFC 3519 UDP-tunnelled homes are routed into a TUN (``tun_name``) served by the
  userspace UDP tunnel (:mod:`.udp_tun`). Chosen automatically (``backend = "auto"``) when
  :func:`kernel_supports_tunnels` says the kernel can.
* :class:`NoBackend`: control plane only.

This module picks the backend (:func:`make_backend`); the backends live in :mod:`.backend`,
:mod:`.userspace` and :mod:`.kernel`, whose names it re-exports.
"""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import IPv4Address

from mobileip.dataplane.backend import (
    OUTER_OVERHEAD,
    BackendError,
    Log,
    NoBackend,
    TunnelBackend,
    TunnelSpec,
    desired_tunnels,
)
from mobileip.dataplane.bpf import BpfFastPath
from mobileip.dataplane.kernel import KernelBackend, kernel_supports_tunnels
from mobileip.dataplane.userspace import UserspaceBackend

__all__ = [
    "OUTER_OVERHEAD",
    "BackendError",
    "KernelBackend",
    "Log",
    "NoBackend",
    "TunnelBackend",
    "TunnelSpec",
    "UserspaceBackend",
    "desired_tunnels",
    "kernel_supports_tunnels",
    "make_backend",
]


def make_backend(
    name: str,
    log: Log,
    tun_name: str,
    source: IPv4Address,
    own: Iterable[IPv4Address] = (),
    ttl: int = 64,
    home_interface: str | None = None,
    fastpath: BpfFastPath | None = None,
) -> TunnelBackend:
    if name == "userspace":
        return UserspaceBackend(
            log, tun_name, source, frozenset(own), ttl, home_interface=home_interface
        )
    if name == "kernel":
        # the TUN of RFC 3519 UDP-tunnelled homes (the hybrid path, dataplane/udp_tun.py)
        return KernelBackend(
            log, source, ttl=ttl, udp_tun=tun_name, own=frozenset(own), fastpath=fastpath
        )
    return NoBackend(log)
