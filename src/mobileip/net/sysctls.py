"""Sysctls we change and put back: :class:`Sysctls` remembers each value's original in memory,
:class:`PersistedSysctls` also keeps them in a file until they are put back (survive SIGKILL).

The data plane (``ip_forward``; ``forwarding``, ``proxy_arp``, ``proxy_delay`` on the interface
that answers for the home link) and the VRRP virtual MAC (:mod:`mobileip.net.vmac`:
``arp_ignore``, ``arp_announce``, ``medium_id``, ... on the macvlan and its base interface)
change sysctls and write back what they found at a clean stop. A daemon killed with SIGKILL never
stops cleanly, and the next run used to remember the values the killed one had set as the
"originals", so even its clean stop left them changed.

:class:`PersistedSysctls` writes what it remembers to a small JSON file as soon as it learns a
new original, and a run that finds such a file keeps its originals for those paths (and puts
back, at its clean stop, those it does not set itself); the file goes once everything is
restored. Files live in :data:`STATE_DIR` (``/run/mobileip``, a tmpfs: sysctls do not survive a
reboot, and neither does their record) and are named by their owner after the network namespace
(sysctls under ``net/`` are per namespace, :func:`netns_id`). A file from another boot is
ignored. ``meta`` is the owner's own small record, kept in the same file (the macvlan's
interface index, whether we made it).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import struct
from pathlib import Path
from typing import Any

from mobileip.net import netlink

STATE_DIR = Path("/run/mobileip")


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


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            return f.read().strip()
    except OSError:
        return ""


SO_NETNS_COOKIE = 71  # Linux 5.14+; not in Python 3.11's socket module


def netns_id() -> str:
    """This network namespace, as a file name part: ``c`` + its cookie (``SO_NETNS_COOKIE``,
    never reused within a boot), or without that its inode number (``0`` when it cannot be
    read). An inode is reused: a namespace deleted after a SIGKILL left its record here hands
    that record to the next namespace that gets the inode (seen in the root tests)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            (cookie,) = struct.unpack("=Q", s.getsockopt(socket.SOL_SOCKET, SO_NETNS_COOKIE, 8))
        return f"c{cookie}"
    except OSError:
        pass
    try:
        return str(os.stat("/proc/self/ns/net").st_ino)
    except OSError:
        return "0"


class PersistedSysctls(Sysctls):
    """:class:`Sysctls` whose remembered originals are also on disk (module docstring)."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self.boot = _boot_id()
        self.write_error: str | None = None  # why the file could not be written, if it could not
        self.meta: dict[str, Any] = {}
        self.inherited, self.inherited_meta = self._load()
        # a killed run's originals win over what we find now (it changed those values), and
        # are ours to put back even if this run never sets them
        self.saved.update(self.inherited)

    def _load(self) -> tuple[dict[str, str], dict[str, Any]]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}, {}
        if not isinstance(data, dict) or data.get("boot_id") != self.boot:
            return {}, {}
        saved = data.get("saved")
        meta = data.get("meta")
        return (
            {str(k): str(v) for k, v in saved.items()} if isinstance(saved, dict) else {},
            dict(meta) if isinstance(meta, dict) else {},
        )

    def write(self) -> None:
        """Write the file now (it goes when nothing is remembered and ``meta`` is empty)."""
        if not self.saved and not self.meta:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            return
        tmp = self.path.with_name(self.path.name + ".tmp")
        record: dict[str, Any] = {"boot_id": self.boot, "saved": self.saved}
        if self.meta:
            record["meta"] = self.meta
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(record), "utf-8")
            os.replace(tmp, self.path)
            self.write_error = None
        except OSError as exc:
            self.write_error = str(exc)

    def set(self, path: str, value: str) -> None:
        fresh = path not in self.saved
        super().set(path, value)
        if fresh:
            self.write()

    def forget_prefix(self, prefix: str) -> None:
        super().forget_prefix(prefix)
        self.write()

    def restore(self) -> list[str]:
        failed = super().restore()
        self.inherited = {}
        self.meta = {}
        self.write()  # nothing remembered any more: the file goes
        return failed
