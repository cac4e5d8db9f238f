"""The layout of the sync codec package (mobileip.wire.sync): every module is short and names
the docs/sync-protocol.md sections it implements, and the package exports the whole API."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

from mobileip.wire import sync as wire

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "mobileip" / "wire" / "sync"
MODULES = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")


@pytest.mark.parametrize("name", MODULES)
def test_module_is_short_and_names_its_doc_sections(name: str) -> None:
    path = PACKAGE / f"{name}.py"
    assert len(path.read_text().splitlines()) <= 500
    doc = importlib.import_module(f"mobileip.wire.sync.{name}").__doc__ or ""
    assert "docs/sync-protocol.md" in doc
    text = (ROOT / "docs" / "sync-protocol.md").read_text()
    headings = {line.lstrip("#").strip() for line in text.splitlines() if line.startswith("#")}
    headings |= set(re.findall(r"\*\*([^*]+?)\.\*\*", text))  # bold paragraph titles
    quoted = re.findall(r'"([^"]+)"', " ".join(doc.split()))
    assert quoted and all(q in headings for q in quoted), (quoted, headings)


def test_package_exports_the_api() -> None:
    for name in wire.__all__:
        assert hasattr(wire, name), name
    # the messages and their helpers, as importers use them through the package
    for name in ("encode", "decode", "decode_chunked", "GroupAuth", "GroupKey", "TableSyncChunk"):
        assert name in wire.__all__
    assert set(wire._TYPE_OF) == set(wire.SyncMessage.__args__)
