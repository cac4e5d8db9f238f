"""Structured logs: one event per line on stderr, as ``key=value`` pairs or as JSON.

    ts=2026-01-01T00:00:00.000Z level=info event=registration.accepted home=10.1.0.5 coa=...

Values with spaces, quotes or ``=`` are double-quoted (logfmt style). Field order is kept.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}
FORMATS = ("text", "json")


def _timestamp(wall: float) -> str:
    ms = int((wall - int(wall)) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(wall)) + f".{ms:03d}Z"


def _text_value(value: object) -> str:
    text = str(value)
    if text == "" or any(c in text for c in ' "=\\\n\t'):
        escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'"{escaped}"'
    return text


class Logger:
    """Writes one structured line per event; ``fmt`` is ``text`` (key=value) or ``json``."""

    def __init__(self, fmt: str = "text", level: str = "info", stream: TextIO | None = None):
        if fmt not in FORMATS:
            raise ValueError(f"unknown log format {fmt!r}")
        self.fmt = fmt
        self.threshold = LEVELS[level]
        self.stream = stream
        # called with every event, whatever the level (the status page keeps recent ones)
        self.listeners: list[Callable[[str, str, dict[str, Any]], None]] = []

    def log(self, level: str, event: str, **fields: Any) -> None:
        for listener in self.listeners:
            with contextlib.suppress(Exception):  # a listener must not break logging
                listener(level, event, fields)
        if LEVELS[level] < self.threshold:
            return
        record: dict[str, Any] = {"ts": _timestamp(time.time()), "level": level, "event": event}
        record.update(fields)
        if self.fmt == "json":
            line = json.dumps(record, default=str, separators=(",", ":"))
        else:
            line = " ".join(f"{k}={_text_value(v)}" for k, v in record.items())
        stream = self.stream if self.stream is not None else sys.stderr
        try:
            stream.write(line + "\n")
            stream.flush()
        except (OSError, ValueError):
            pass  # a closed stderr must not take the daemon down

    def wants(self, level: str, event: str) -> bool:
        """Would :meth:`log` write ``event`` or hand it to a listener that keeps it? Hot paths
        ask first and skip building fields nobody reads. A listener with a ``notable(level,
        event)`` method is asked; one without it wants everything."""
        if LEVELS[level] >= self.threshold:
            return True
        for listener in self.listeners:
            notable = getattr(listener, "notable", None)
            if notable is None or notable(level, event):
                return True
        return False

    def debug(self, event: str, **fields: Any) -> None:
        self.log("debug", event, **fields)

    def info(self, event: str, **fields: Any) -> None:
        self.log("info", event, **fields)

    def warning(self, event: str, **fields: Any) -> None:
        self.log("warning", event, **fields)

    def error(self, event: str, **fields: Any) -> None:
        self.log("error", event, **fields)
