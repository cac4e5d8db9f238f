"""The data plane's sysctl originals, kept in a file until they are put back (survive SIGKILL).

The data plane turns on ``ip_forward`` and, on the interface that answers for the home link,
``forwarding``, ``proxy_arp`` and ``proxy_delay=0`` (:mod:`.arp`), remembering each value it
found so a clean stop writes it back. They go through a
:class:`~mobileip.net.sysctls.PersistedSysctls` (the mechanism, shared with the VRRP virtual
MAC's sysctls in :mod:`mobileip.net.vmac`): a run that finds the file of a killed one keeps its
originals. This module names the data plane's file: per network namespace (sysctls under
``net/`` are per namespace) and routing table.
"""

from __future__ import annotations

from pathlib import Path

from mobileip.net.sysctls import STATE_DIR, PersistedSysctls, netns_id

__all__ = ["STATE_DIR", "PersistedSysctls", "state_file"]


def state_file(table: int, directory: Path = STATE_DIR) -> Path:
    """The file for this network namespace and routing table."""
    return directory / f"dataplane-sysctls-net{netns_id()}-table{table}.json"
