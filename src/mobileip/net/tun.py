"""TUN devices: open (creating) one, as the Home Agent's userspace data plane and the agents use.

Kernel interfaces live in :mod:`mobileip.net`; this one is a character device and an ioctl.
"""

from __future__ import annotations

import fcntl
import os
import struct

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
MAX_PACKET = 65535


class TunError(OSError):
    """The TUN device cannot be opened or created (no /dev/net/tun, no permission)."""


def open_tun(name: str) -> tuple[int, str]:
    """Open (creating) the TUN device ``name``; returns (fd, actual name)."""
    try:
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    except OSError as exc:
        raise TunError(f"cannot open /dev/net/tun: {exc.strerror}") from None
    try:
        ifr = struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI)
        res = fcntl.ioctl(fd, TUNSETIFF, ifr)
    except OSError as exc:
        os.close(fd)
        raise TunError(f"cannot create TUN device {name!r}: {exc.strerror}") from None
    return fd, res[:16].rstrip(b"\x00").decode()
