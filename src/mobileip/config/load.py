"""Loading: :func:`load_config` reads the file, :func:`parse_config` checks the text.

Parses each top-level section with its module's ``parse_*`` and ties them into a :class:`Config`;
unknown sections, missing required ones and cross-section clashes are reported here.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import replace
from pathlib import Path

from mobileip.config.control import ControlConfig, parse_control
from mobileip.config.dataplane import parse_dataplane
from mobileip.config.dynamic_ha import parse_dynamic_ha
from mobileip.config.errors import ConfigError, Locator, Table
from mobileip.config.groups import NOT_WITH_GROUPS, parse_groups
from mobileip.config.homeagent import parse_homeagent
from mobileip.config.model import Config
from mobileip.config.persistence import parse_persistence
from mobileip.config.pools import parse_pools
from mobileip.config.redundancy import parse_redundancy
from mobileip.config.revocation import parse_revocation
from mobileip.config.security import parse_security_associations
from mobileip.config.vrrp import parse_vrrp

_SECTIONS = (
    "homeagent",
    "security_association",
    "control",
    "redundancy",
    "vrrp",
    "dataplane",
    "persistence",
    "dynamic_ha",
    "revocation",
    "pool",
    "group",
)


def load_config(path: str | Path) -> Config:
    """Read and validate ``path``; raise :class:`ConfigError` on any problem."""
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{name}: not UTF-8 text") from None
    return parse_config(text, name)


def parse_config(text: str, name: str = "<config>") -> Config:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"\(at line (\d+), column \d+\)", str(exc))
        where = f"line {m.group(1)}: " if m else ""
        what = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        raise ConfigError(f"{name}: {where}not valid TOML: {what}") from None
    loc = Locator(text)

    def table(section: str, required: bool) -> Table | None:
        value = data.get(section)
        if value is None:
            if required:
                raise ConfigError(f"{name}: line 1: [{section}]: required section is missing")
            return None
        if not isinstance(value, dict):
            raise ConfigError(
                f"{name}: line {loc.line(('', 0), section)}: {section}: must be a table"
            )
        return Table(name, loc, section, None, value)

    for key in data:
        if key not in _SECTIONS:
            line = loc.headers.get((key, 0)) or loc.line(("", 0), key)
            raise ConfigError(f"{name}: line {line}: {key}: unknown section")

    ha_table = table("homeagent", True)
    assert ha_table is not None
    homeagent = parse_homeagent(ha_table)

    sas = parse_security_associations(data.get("security_association"), name, loc)
    spis = {sa.spi for sa in sas}

    ctl_table = table("control", False)
    control = parse_control(ctl_table) if ctl_table is not None else ControlConfig()

    red_table = table("redundancy", False)
    redundancy = parse_redundancy(red_table, homeagent) if red_table is not None else None
    if redundancy is not None and redundancy.spi in spis:
        assert red_table is not None
        raise red_table.error("spi", f"SPI {redundancy.spi} is also a mobile node SPI")

    vrrp_table = table("vrrp", False)
    vrrp = parse_vrrp(vrrp_table) if vrrp_table is not None else None

    dp_table = table("dataplane", False)
    dataplane = parse_dataplane(dp_table) if dp_table is not None else None

    persist_table = table("persistence", False)
    persistence = parse_persistence(persist_table) if persist_table is not None else None

    dyn_table = table("dynamic_ha", False)
    dynamic_ha = parse_dynamic_ha(dyn_table) if dyn_table is not None else None

    rev_table = table("revocation", False)
    revocation = parse_revocation(rev_table) if rev_table is not None else None

    pools = parse_pools(data["pool"], name, loc) if "pool" in data else ()

    def check_sa_pools(names: set[str]) -> None:
        for i, sa in enumerate(sas):
            if sa.pool is not None and sa.pool not in names:
                sa_table = Table(name, loc, "security_association", i, {})
                raise sa_table.error("pool", f"no [[pool]] is named {sa.pool!r}")

    if "group" not in data:
        check_sa_pools({p.name for p in pools})

    config = Config(
        name,
        homeagent,
        sas,
        control,
        redundancy,
        vrrp,
        dataplane,
        persistence=persistence,
        dynamic_ha=dynamic_ha,
        revocation=revocation,
        pools=pools,
    )
    if "group" not in data:
        return config
    if pools:  # each group's binding set would hand out the same addresses
        line = loc.headers.get(("pool", 0), 1)
        raise ConfigError(
            f"{name}: line {line}: [[pool]]: not with [[group]]: give each group its own "
            "[[group.pool]] (docs/pools.md)"
        )
    for section in NOT_WITH_GROUPS:
        if section in data:
            line = loc.headers.get((section, 0), 1)
            alone = section in ("dataplane", "revocation")
            where = "not with [[group]]" if alone else "inside each [[group]]"
            raise ConfigError(f"{name}: line {line}: [{section}]: {where} (docs/load-sharing.md)")
    assert ha_table is not None
    groups = parse_groups(data["group"], config, ha_table.data, loc)
    check_sa_pools({p.name for g in groups for p in g.config.pools})  # [[group.pool]]
    return replace(config, groups=groups)
