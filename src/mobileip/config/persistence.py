"""``[persistence]``: where bindings are snapshotted to survive a restart (optional).

In a ``[[group]]`` file each group has its own ``[group.persistence]`` instead (groups.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from mobileip.config.errors import Table


@dataclass(frozen=True, slots=True)
class PersistenceConfig:
    path: str
    snapshot_interval: float = 60.0
    fsync: bool = True


def parse_persistence(t: Table) -> PersistenceConfig:
    path = t.string("path", required=True)
    assert path is not None
    cfg = PersistenceConfig(
        path=path,
        snapshot_interval=t.number("snapshot_interval", 60.0, 0.1, 86400.0),
        fsync=t.boolean("fsync", True),
    )
    t.finish()
    return cfg
