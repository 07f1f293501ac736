"""The demo page's "This gateway" card: the gateway's own figures, read from ``/metrics`` by the
page's script, move when a client connects and when messages flow; a ``/metrics`` kept
internal (403, 404) is said so, not shown as zeros."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser

FAST = "/?metrics_every=500"
"""The page reads /metrics every half second here (every 3 s by default)."""


def figure(page: Page, name: str) -> float:
    """The number a tile shows, once it shows one."""
    tile = page.locator(f"#gw-{name}")
    expect(tile).to_have_text(re.compile(r"^\d+(\.\d+)?$"))
    return float(tile.inner_text())


def wait_above(page: Page, name: str, value: float) -> None:
    page.wait_for_function(
        "([id, value]) => Number(document.getElementById(id).textContent) > value",
        arg=[f"gw-{name}", value],
    )


def test_the_figures_come_from_metrics_and_move(new_page: Any, demo_gateway: Any) -> None:
    page = new_page(FAST)
    expect(page.locator("#gw-status")).to_have_text(re.compile(r"^updated "))
    demo_gateway.wait_for_connections(1)  # this page alone (earlier tests' pages are gone)
    expect(page.locator("#gw-connections")).to_have_text("1")
    other = new_page("/")
    other.wait_for_function("window.tidings && tidings.state === 'connected'")
    expect(page.locator("#gw-connections")).to_have_text("2")

    delivered = figure(page, "delivered")
    for n in range(5):
        demo_gateway.broadcast(
            "public.announcements", "announcement", {"title": "Load", "message": f"#{n}"}
        )
    wait_above(page, "delivered", delivered)
    wait_above(page, "deliveries", 0)
    expect(page.locator("#gw-p99")).to_have_text(re.compile(r"^\d+(\.\d+)? m?s$"))
    assert page.errors == [], page.errors


@pytest.mark.parametrize("status", [403, 404])
def test_metrics_kept_internal_is_said_so(browser: Any, demo_gateway: Any, status: int) -> None:
    context = browser.new_context()
    try:
        context.route("**/metrics", lambda route: route.fulfill(status=status, body="no"))
        page = context.new_page()
        page.set_default_timeout(10_000)
        page.goto(demo_gateway.url + FAST)
        expect(page.locator("#gw-status")).to_have_text(f"metrics not available (HTTP {status})")
        expect(page.locator("#gw-connections")).to_have_text("—")
        expect(page.locator("#state")).to_have_text("connected")  # the rest of the page works
    finally:
        context.close()
