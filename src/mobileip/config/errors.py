"""ConfigError and the machinery that makes every message name file, key and line.

Shared by every section module: :class:`Locator` finds line numbers by scanning the TOML text
(``tomllib`` gives none): the key's own line within its table, or the table's header line when
the key is missing. :class:`Table` wraps one table with typed getters that raise
:class:`ConfigError` as ``FILE: line N: dotted.key: what is wrong``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from ipaddress import IPv4Address
from typing import Any


class ConfigError(Exception):
    """A configuration problem; ``str()`` is the complete message for the operator."""


# --- locating keys in the text ---------------------------------------------------------------

_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*(\]\]?)\s*(?:#.*)?$")
_KEY = re.compile(r"""^\s*("[^"]*"|'[^']*'|[A-Za-z0-9_\-]+)\s*(?:\.|=)""")


class Locator:
    """Line numbers of tables and of keys within them, found by scanning the TOML text.

    A table is named by (header, index): ``("homeagent", 0)``, ``("security_association", 2)``;
    top-level keys live in ``("", 0)``. Multi-line strings and arrays can confuse the scan only
    into reporting the table's header line instead of the key's, never a wrong table.
    """

    def __init__(self, text: str) -> None:
        self.headers: dict[tuple[str, int], int] = {}
        self.keys: dict[tuple[str, int], dict[str, int]] = {("", 0): {}}
        counts: dict[str, int] = {}
        current = ("", 0)
        for lineno, line in enumerate(text.splitlines(), start=1):
            m = _HEADER.match(line)
            if m and "=" not in line.split("#", 1)[0].split("]", 1)[0]:
                name = m.group(2).replace(" ", "")
                if m.group(1) == "[[":
                    idx = counts.get(name, 0)
                    counts[name] = idx + 1
                else:  # [group.vrrp] belongs to the last [[group]]
                    parent = name.rsplit(".", 1)[0]
                    idx = counts[parent] - 1 if "." in name and parent in counts else 0
                current = (name, idx)
                self.headers.setdefault(current, lineno)
                self.keys.setdefault(current, {})
                continue
            k = _KEY.match(line)
            if k:
                key = k.group(1).strip("\"'")
                self.keys[current].setdefault(key, lineno)

    def line(self, table: tuple[str, int], key: str | None = None) -> int:
        if key is not None:
            found = self.keys.get(table, {}).get(key)
            if found is not None:
                return found
        return self.headers.get(table, 1)


# --- typed access with errors that say where -------------------------------------------------


class Table:
    """One table of the file: typed getters that raise :class:`ConfigError` naming the key."""

    def __init__(
        self,
        path: str,
        locator: Locator,
        name: str,
        index: int | None,
        data: Mapping[str, Any],
    ) -> None:
        self.path = path
        self.locator = locator
        self.where = (name, index or 0)
        self.dotted = f"{name}[{index}]" if index is not None else name
        self.data = data
        self.used: set[str] = set()

    def error(self, key: str | None, what: str) -> ConfigError:
        line = self.locator.line(self.where, key)
        name = f"{self.dotted}.{key}" if key else f"[{self.dotted}]"
        return ConfigError(f"{self.path}: line {line}: {name}: {what}")

    def has(self, key: str) -> bool:
        return key in self.data

    def raw(self, key: str, required: bool) -> Any:
        self.used.add(key)
        if key not in self.data:
            if required:
                raise self.error(key, "required key is missing")
            return None
        return self.data[key]

    def string(self, key: str, default: str | None = None, *, required: bool = False) -> str | None:
        value = self.raw(key, required)
        if value is None:
            return default
        if not isinstance(value, str):
            raise self.error(key, f"must be a string, not {kind(value)}")
        if not value:
            raise self.error(key, "must not be empty")
        return value

    def choice(self, key: str, choices: Sequence[str], default: str | None = None) -> str | None:
        value = self.string(key, default, required=default is None)
        if value is not None and value not in choices:
            allowed = ", ".join(repr(c) for c in choices)
            raise self.error(key, f"{value!r} is not one of {allowed}")
        return value

    def integer(
        self, key: str, default: int | None, lo: int, hi: int, *, required: bool = False
    ) -> int | None:
        value = self.raw(key, required)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"must be an integer, not {kind(value)}")
        if not lo <= value <= hi:
            raise self.error(key, f"{value} is out of range ({lo} to {hi})")
        return value

    def number(self, key: str, default: float, lo: float, hi: float) -> float:
        value = self.raw(key, False)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(key, f"must be a number, not {kind(value)}")
        if not math.isfinite(value) or not lo <= value <= hi:
            raise self.error(key, f"{value} is out of range ({lo:g} to {hi:g})")
        return float(value)

    def boolean(self, key: str, default: bool) -> bool:
        value = self.raw(key, False)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.error(key, f"must be true or false, not {kind(value)}")
        return value

    def ipv4(self, key: str, default: IPv4Address | None = None, *, required: bool = False) -> Any:
        text = self.string(key, None, required=required)
        if text is None:
            return default
        try:
            return IPv4Address(text)
        except ValueError:
            raise self.error(key, f"{text!r} is not an IPv4 address") from None

    def hex_key(self, key: str) -> bytes:
        text = self.string(key, required=True)
        assert text is not None
        try:
            value = bytes.fromhex(text)
        except ValueError:
            raise self.error(key, "is not valid hex (pairs of 0-9, a-f)") from None
        if not value:
            raise self.error(key, "must not be empty")
        return value

    def string_list(self, key: str, *, required: bool = False) -> list[str]:
        value = self.raw(key, required)
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.error(key, "must be a list of strings")
        return list(value)

    def finish(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise self.error(unknown[0], "unknown key")


def kind(value: object) -> str:
    """How an error message names a TOML value's type: ``a string``, ``a table``..."""
    names = {str: "a string", int: "an integer", float: "a number", bool: "a boolean"}
    names.update({list: "a list", dict: "a table"})
    return names.get(type(value), type(value).__name__)
