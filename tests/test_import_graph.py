"""The import graph of the package: no cycles, and each layer imports only what it may.

Every ``import``/``from ... import`` of a ``mobileip`` module counts, wherever it stands (inside a
function or under ``TYPE_CHECKING`` too): a lazy import hides a cycle, it does not remove it.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
PACKAGE = SRC / "mobileip"

# The sans-IO core: decides everything, owns no socket, clock or thread; imports only itself.
SANS_IO = {"wire", "core", "sync", "vrrp"}
# What each part of the package may import (besides itself). Everything not listed here is
# glue at the top (compose, tools, cli, manual) and may import anything below it.
ALLOWED: dict[str, set[str]] = {
    "wire": set(),
    "core": {"wire"},
    "sync": {"wire", "core"},
    "vrrp": {"wire"},
    "log": set(),
    "config": {"wire", "core", "log"},
    "net": {"wire", "core", "vrrp", "log"},
    "daemon": {"wire", "core", "sync", "vrrp", "config", "log", "net"},
    "dataplane": {"wire", "core", "config", "log", "net", "daemon"},
    "agents": {"wire", "core", "config", "log", "net", "dataplane"},
    "web": {"wire", "core", "sync", "config", "log", "net", "daemon", "agents"},
}


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The ``mobileip`` modules ``name`` imports (``from pkg import mod`` counts as the module)."""
    tree = ast.parse(path.read_text(), str(path))
    is_pkg = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join([*base, node.module] if node.module else base)
            else:
                mod = node.module or ""
            targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in known else mod for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t.startswith("mobileip") and t != name:
                out.add(t)
    return out


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imports_of(name, path, known) for name, path in mods.items()}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one member (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return found


def part(module: str) -> str:
    """``mobileip.daemon.roles`` -> ``daemon``; a top-level module is its own part."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def test_no_module_import_cycle() -> None:
    assert cycles(graph()) == []


def test_no_cycle_between_packages() -> None:
    g: dict[str, set[str]] = defaultdict(set)
    for mod, deps in graph().items():
        for d in deps:
            if part(d) != part(mod):
                g[part(mod)].add(part(d))
    assert cycles(dict(g)) == []


def test_each_layer_imports_only_what_it_may() -> None:
    wrong = []
    for mod, deps in sorted(graph().items()):
        allowed = ALLOWED.get(part(mod))
        if allowed is None:
            continue
        for d in sorted(deps):
            if part(d) != part(mod) and part(d) not in allowed:
                wrong.append(f"{mod} imports {d}")
    assert wrong == []


def test_no_service_imports_the_daemon() -> None:
    """Services get small interfaces (daemon/ports.py); only the composition root and the tools
    build or hold a whole daemon."""
    holders = {
        mod
        for mod, deps in graph().items()
        if "mobileip.daemon.homeagent" in deps and part(mod) not in {"compose", "tools"}
    }
    assert holders == set()


def test_the_checker_sees_a_cycle() -> None:
    """The checks above can fail: a made-up graph with a cycle is reported."""
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(g) == [["a", "b", "c"]]
    assert part("mobileip.daemon.roles") == "daemon" and part("mobileip.cli") == "cli"
    known = {"mobileip.sync", "mobileip.sync.engine", "mobileip.daemon.redundancy"}
    here = PACKAGE / "daemon" / "redundancy.py"
    assert "mobileip.sync.engine" in imports_of("mobileip.daemon.redundancy", here, known)
