"""keepalived's side of the keepalived-driven role: its notify FIFO and our track file.

keepalived writes one line per state change to ``notify_fifo``::

    INSTANCE "VI_1" MASTER 100
    INSTANCE "VI_1" BACKUP 50
    GROUP "G1" FAULT

:func:`parse_notify_line` turns an ``INSTANCE`` line into a :class:`NotifyLine` (other kinds
and garbage give ``None``). :class:`FifoReader` reads the FIFO without blocking the event loop;
it holds a write end open itself so a keepalived restart (the writer closing) never turns into
an endless stream of end-of-file wake-ups. :func:`write_track_file` writes the weight that
keepalived's ``track_file`` adds to the instance's priority (negative while NOT SYNCED).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

STATES = ("MASTER", "BACKUP", "FAULT", "STOP", "DELETED")

_LINE = re.compile(r'^(INSTANCE|GROUP)\s+"([^"]*)"\s+([A-Z_]+)(?:\s+(-?\d+))?\s*$')


@dataclass(frozen=True, slots=True)
class NotifyLine:
    instance: str
    state: str  # one of STATES
    priority: int | None


def parse_notify_line(line: str) -> NotifyLine | None:
    """An ``INSTANCE "name" STATE [priority]`` line, or None for anything else."""
    m = _LINE.match(line.strip())
    if m is None or m.group(1) != "INSTANCE" or m.group(3) not in STATES:
        return None
    prio = m.group(4)
    return NotifyLine(m.group(2), m.group(3), int(prio) if prio is not None else None)


class FifoReader:
    """Calls ``on_line`` with every complete line written to the FIFO at ``path``."""

    MAX_LINE = 4096

    def __init__(self, path: str, on_line: Callable[[str], None]) -> None:
        self.path = path
        self.on_line = on_line
        self._read_fd: int | None = None
        self._write_fd: int | None = None
        self._buffer = b""
        self._loop: asyncio.AbstractEventLoop | None = None

    def open(self) -> None:
        """Create the FIFO if missing and start reading; OSError when it cannot be done."""
        try:
            mode = os.stat(self.path).st_mode
        except FileNotFoundError:
            os.mkfifo(self.path, 0o600)
        else:
            if not stat.S_ISFIFO(mode):
                raise OSError(f"{self.path} exists and is not a FIFO")
        self._read_fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        self._write_fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._read_fd, self._on_readable)

    def close(self) -> None:
        if self._loop is not None and self._read_fd is not None:
            self._loop.remove_reader(self._read_fd)
        for fd in (self._read_fd, self._write_fd):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._read_fd = self._write_fd = None

    def _on_readable(self) -> None:
        assert self._read_fd is not None
        try:
            chunk = os.read(self._read_fd, 65536)
        except BlockingIOError:
            return
        self._buffer += chunk
        *lines, self._buffer = self._buffer.split(b"\n")
        if len(self._buffer) > self.MAX_LINE:  # no newline in sight: garbage, not a line
            self._buffer = b""
        for raw in lines:
            self.on_line(raw.decode("utf-8", errors="replace"))


def write_track_file(path: str, weight: int) -> None:
    """Replace ``path``'s content with ``weight`` (write a temporary file, then rename)."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(f"{weight}\n")
    os.replace(tmp, target)
