"""The data plane's sysctl originals, kept in a file until they are put back (survive SIGKILL).

The data plane turns on ``ip_forward`` and, on the interface that answers for the home link,
``forwarding``, ``proxy_arp`` and ``proxy_delay=0`` (:mod:`.arp`), remembering each value it
found so a clean stop writes it back (:class:`~mobileip.net.vmac.Sysctls`). A daemon killed with
SIGKILL never stops cleanly, and the next run used to remember the values the killed one had set
as the "originals", so even its clean stop left them changed.

:class:`PersistedSysctls` writes what it remembers to a small JSON file as soon as it learns a
new original, and a run that finds such a file keeps its originals for those paths (and puts
back, at its clean stop, those it does not set itself); the file goes once everything is
restored. The file lives in ``/run/mobileip`` (a tmpfs: sysctls do not survive a reboot, and
neither does their record) and is named after the network namespace (sysctls under
``net/`` are per namespace) and the data plane's routing table. A file from another boot is
ignored.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from mobileip.net.vmac import Sysctls

STATE_DIR = Path("/run/mobileip")


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            return f.read().strip()
    except OSError:
        return ""


def state_file(table: int, directory: Path = STATE_DIR) -> Path:
    """The file for this network namespace and routing table."""
    try:
        netns = os.stat("/proc/self/ns/net").st_ino
    except OSError:
        netns = 0
    return directory / f"dataplane-sysctls-net{netns}-table{table}.json"


class PersistedSysctls(Sysctls):
    """:class:`Sysctls` whose remembered originals are also on disk (module docstring)."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self.boot = _boot_id()
        self.write_error: str | None = None  # why the file could not be written, if it could not
        self.inherited = self._load()
        # a killed run's originals win over what we find now (it changed those values), and
        # are ours to put back even if this run never sets them
        self.saved.update(self.inherited)

    def _load(self) -> dict[str, str]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict) or data.get("boot_id") != self.boot:
            return {}
        saved = data.get("saved")
        if not isinstance(saved, dict):
            return {}
        return {str(k): str(v) for k, v in saved.items()}

    def _write(self) -> None:
        if not self.saved:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            return
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps({"boot_id": self.boot, "saved": self.saved}), "utf-8")
            os.replace(tmp, self.path)
            self.write_error = None
        except OSError as exc:
            self.write_error = str(exc)

    def set(self, path: str, value: str) -> None:
        fresh = path not in self.saved
        super().set(path, value)
        if fresh:
            self._write()

    def forget_prefix(self, prefix: str) -> None:
        super().forget_prefix(prefix)
        self._write()

    def restore(self) -> list[str]:
        failed = super().restore()
        self.inherited = {}
        self._write()  # nothing remembered any more: the file goes
        return failed
