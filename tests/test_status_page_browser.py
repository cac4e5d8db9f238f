"""The status page in a real headless browser (Debian's chromium driven by Playwright).

The page loads, shows the group's members, and its script redraws the binding list after a
registration (no reload). Needs /usr/bin/chromium: scripts/test installs it when run as root;
elsewhere the test skips with that reason. Never ``playwright install``.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from helpers import DaemonHandle, start_homeagent
from test_redundancy_loopback import member_configs, wait_until

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
def browser() -> Iterator[Any]:
    if not os.path.exists(CHROMIUM):
        if os.geteuid() == 0:
            pytest.fail(f"{CHROMIUM} missing: scripts/test installs Debian's chromium as root")
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium, as root)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install 'mobileip[browser]'")
    assert shutil.which("chromium") or os.path.exists(CHROMIUM)
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


def url(ha: DaemonHandle) -> str:
    host, port = ha.control
    return f"http://{host}:{port}/"


def test_status_page_shows_members_and_updates_after_registration(
    tmp_path: Path, browser: Any
) -> None:
    configs = member_configs(2)
    with ExitStack() as stack:
        a, b = (
            start_homeagent(tmp_path / f"m{i}", cfg, name=f"m{i}") for i, cfg in enumerate(configs)
        )
        for ha in (a, b):
            stack.callback(ha.stop, signal.SIGKILL)
        wait_until(
            "both SYNCED",
            lambda: all(h.get("/api/v1/redundancy")["state"] == "SYNCED" for h in (a, b)),
        )
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(url(a))
        assert page.title() == f"mobileip {configs[0]['homeagent']['address']}"

        # the members table names b's sync endpoint, reachable and SYNCED
        peer = f"{configs[1]['redundancy']['listen']}:{configs[1]['redundancy']['port']}"
        row = page.locator(f'#members tr[data-member="{peer}"]')
        row.wait_for(timeout=10_000)
        cells = row.locator("td").all_inner_texts()
        assert cells[0] == configs[1]["redundancy"]["node_id"]
        assert cells[2] == "yes"
        page.wait_for_function(
            "document.querySelector('#members tbody tr td:nth-child(4)').textContent === 'SYNCED'",
            timeout=10_000,
        )
        assert page.inner_text("#sync-state") == "SYNCED"
        assert page.inner_text("#binding-count") == "0"
        assert page.locator("#bindings tbody tr").count() == 0
        # the recent events list shows what the log said (the member was learned)
        assert "sync.member" in page.inner_text("#events")

        # register two mobile nodes on a: the page redraws itself from the JSON API
        assert a.client(home="10.1.5.1").register(600).code == 0
        assert a.client(home="10.1.5.2", coa="192.0.2.77").register(600).code == 0
        page.wait_for_function(
            "document.getElementById('binding-count').textContent === '2'", timeout=10_000
        )
        homes = page.locator("#bindings tbody tr td:first-child").all_inner_texts()
        assert homes == ["10.1.5.1", "10.1.5.2"]
        assert "updated" in page.inner_text("#updated")

        # the search box filters the list (by care-of address here)
        page.fill("#search", "192.0.2.77")
        assert page.locator("#bindings tbody tr td:first-child").all_inner_texts() == ["10.1.5.2"]
        page.fill("#search", "")
        assert page.locator("#bindings tbody tr").count() == 2

        # b's page shows the synced bindings and a's ack lag appears on a's page
        page_b = browser.new_page()
        page_b.goto(url(b))
        assert page_b.inner_text("#binding-count") in ("1", "2")
        page_b.wait_for_function(
            "document.getElementById('binding-count').textContent === '2'", timeout=10_000
        )
        page.wait_for_function(
            "document.getElementById('lag').textContent.startsWith('p50')", timeout=10_000
        )
        assert errors == []


def test_event_ring_keeps_notable_events_and_the_page_escapes_them() -> None:
    from mobileip.log import Logger
    from mobileip.web.status_page import EventRing, render_page

    log = Logger(level="error", stream=io.StringIO())
    ring = EventRing(size=3)
    log.listeners.append(ring)
    log.info("registration.accepted", home="10.1.0.5")  # routine: not kept
    log.info("sync.state", state="SYNCED", reason="no member answered")  # below the level: kept
    log.warning("security.violation", reason="bad-spi", home="</script><b>x</b>")
    assert [e["event"] for e in ring.recent()] == ["security.violation", "sync.state"]
    for i in range(5):
        log.error("datagram.handler_failed", error=str(i))
    assert len(ring.recent()) == 3  # bounded
    log.warning("security.violation", reason="bad-spi", home="</script><b>x</b>")
    status = {
        "address": "10.1.0.1",
        "bindings": 0,
        "members": [],
        "events": ring.recent(),
        "sync": None,
        "role": None,
        "sync_lag": None,
    }
    page = render_page(status, [])
    assert "<b>x</b>" not in page
    assert page.count("</script>") == 2  # the JSON block and the script, nothing injected
    assert "&lt;/script&gt;&lt;b&gt;x&lt;/b&gt;" in page
