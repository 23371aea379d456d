"""The web console in Debian's Chromium, driven by Playwright, against the real service
with real data. Screenshots of each page go to .data/screenshots for review."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from integration_tests.server import DATA, Service

CHROMIUM = shutil.which("chromium")
playwright = pytest.importorskip("playwright.async_api", reason="playwright is not installed")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")
SHOTS = DATA / "screenshots"


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    async with playwright.async_playwright() as driver:
        launched = await driver.chromium.launch(executable_path=CHROMIUM,
                                                args=["--no-sandbox", "--disable-gpu"])  # fmt: skip
        yield launched
        await launched.close()


async def signed_in(browser: Any, service: Service, width: int = 1280, height: int = 800) -> Any:
    page = await browser.new_page(viewport={"width": width, "height": height})
    page.on("dialog", lambda dialog: dialog.accept())
    await page.goto(f"{service.base_url}/console")
    await page.get_by_label("Public key").fill("abc")
    await page.get_by_label("Secret").fill("123")
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_selector("h1:text('Accounts')")
    return page


async def history(api: httpx.AsyncClient, account: str, count: int) -> None:
    """`count` credits of 1 to `account`, one a minute back-dated into 2026-03-01."""
    await api.post("/v1/accounts", json={"id": f"{account}-source", "balance_rule": "any"})
    items = [{"id": f"{account}-c{i}", "timestamp": f"2026-03-01T{i // 60:02}:{i % 60:02}:00Z",
              "lines": [{"account": f"{account}-source", "currency": "EUR", "amount": "-1"},
                        {"account": account, "currency": "EUR", "amount": "1"}]}
             for i in range(count)]  # fmt: skip
    answer = await api.post(
        "/v1/transactions/batch", json={"mode": "immediate", "transactions": items}
    )
    assert answer.status_code == 200, answer.text


async def test_sign_in_find_an_account_and_read_its_chart_and_journal(
    browser: Any, service: Service, api: httpx.AsyncClient, uid: Any
) -> None:
    account = uid("console")
    await history(api, account, 60)
    page = await signed_in(browser, service)
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.get_by_label("Id (% and _ match anything)").fill(account)
    await page.get_by_role("button", name="Search").click()
    await page.get_by_role("link", name=account, exact=True).wait_for()
    await page.screenshot(path=SHOTS / "console-accounts.png")
    await page.get_by_role("link", name=account, exact=True).click()
    figure = page.locator("figure[data-points]")
    await figure.wait_for()
    assert await figure.get_attribute("data-points") == "100"
    assert await figure.get_attribute("data-last-posted") == "60"
    card = page.locator("section[aria-label='EUR balance'] dd[data-field='posted']")
    assert await card.text_content() == "60"
    await page.locator("canvas").first.wait_for()
    await page.screenshot(path=SHOTS / "console-account.png", full_page=True)
    rows = page.locator("section[aria-labelledby='journal-title'] tbody tr")
    assert await rows.count() == 25
    assert await rows.first.locator("td").nth(1).text_content() == f"{account}-c0"
    await (
        page.locator("section[aria-labelledby='journal-title']")
        .get_by_role("button", name="Next")
        .click()
    )
    await page.get_by_text("page 2").wait_for()
    assert await rows.first.locator("td").nth(1).text_content() == f"{account}-c25"
    # Fewer points over a chosen period: the chart follows.
    await page.get_by_label("Points").fill("12")
    await page.get_by_role("button", name="Draw").click()
    await page.locator("figure[data-points='12']").wait_for()
    assert await figure.get_attribute("data-last-posted") == "60"


async def test_run_a_query_then_execute_a_pending_transaction_from_its_page(
    browser: Any, service: Service, api: httpx.AsyncClient, uid: Any, fund: Any
) -> None:
    alice, bob, held = uid("alice"), uid("bob"), uid("held")
    await fund(alice, "50")
    created = await api.post("/v1/transactions", json={"id": held, "lines": [
        {"account": alice, "currency": "USD", "amount": "-20"},
        {"account": bob, "currency": "USD", "amount": "20"}]})  # fmt: skip
    assert created.status_code == 201
    page = await signed_in(browser, service)
    await page.get_by_role("link", name="Transactions").click()
    await page.get_by_text("Query language", exact=True).click()
    query = '{"must": {"fields": [{"account": {"eq": "%s"}}, {"status": {"eq": "PENDING"}}]}}'
    await page.get_by_label("Or a query in the query language", exact=False).fill(query % bob)
    await page.get_by_role("button", name="Run query").click()
    await page.get_by_role("link", name=held).click()
    await page.get_by_role("button", name="Execute").wait_for()
    await page.screenshot(path=SHOTS / "console-transaction.png", full_page=True)
    await page.get_by_role("button", name="Execute").click()
    await page.locator(".status.COMPLETED").first.wait_for()
    assert (await api.get(f"/v1/accounts/{bob}")).json()["balances"]["USD"]["posted"] == "20"
    await page.get_by_role("link", name=bob).click()
    posted = page.locator("section[aria-label='USD balance'] dd[data-field='posted']")
    await posted.wait_for()
    assert await posted.text_content() == "20"


async def test_a_refused_action_shows_the_problem(
    browser: Any, service: Service, api: httpx.AsyncClient, uid: Any, fund: Any
) -> None:
    alice, bob, paid = uid("alice"), uid("bob"), uid("paid")
    await fund(alice, "10")
    await api.post("/v1/transactions/immediate", json={"id": paid, "lines": [
        {"account": alice, "currency": "USD", "amount": "-10"},
        {"account": bob, "currency": "USD", "amount": "10"}]})  # fmt: skip
    await api.post(
        "/v1/transactions/immediate",
        json={"type": "DEBIT", "account": bob, "currency": "USD", "amount": "10"},
    )
    page = await signed_in(browser, service)
    await page.goto(f"{service.base_url}/console#/transaction/{paid}")
    await page.get_by_role("button", name="Reverse").click()
    alert = page.get_by_role("alert")
    await alert.wait_for()
    assert "Insufficient funds" in (await alert.text_content() or "")
    assert await alert.locator("[data-code='insufficient_funds']").count() == 1
    await page.screenshot(path=SHOTS / "console-problem.png")
    assert (await api.get(f"/v1/transactions/{paid}")).json()["status"] == "COMPLETED"


async def test_the_log_shows_a_new_transfer_live_and_verify_answers(
    browser: Any, service: Service, api: httpx.AsyncClient, uid: Any
) -> None:
    page = await signed_in(browser, service)
    await page.get_by_role("link", name="Log").click()
    await page.get_by_role("button", name="Pause").wait_for()
    await page.wait_for_timeout(500)
    tx = uid("live")
    await api.post("/v1/transactions/immediate",
                   json={"id": tx, "type": "CREDIT", "account": uid("c"), "currency": "EUR",
                         "amount": "3"})  # fmt: skip
    await page.get_by_role("link", name=tx).wait_for(timeout=5000)
    await page.screenshot(path=SHOTS / "console-log.png")
    await page.get_by_role("button", name="Pause").click()
    await page.get_by_role("button", name="Resume").wait_for()
    await page.get_by_role("link", name="Verify").click()
    await page.get_by_role("button", name="Verify the ledger").click()
    verdict = page.locator("[data-ok]")
    await verdict.wait_for(timeout=30_000)
    await page.screenshot(path=SHOTS / "console-verify.png")
    report = await page.locator("section.results").text_content()
    assert await verdict.get_attribute("data-ok") == "true", report


async def test_the_account_page_fits_a_phone_width(
    browser: Any, service: Service, api: httpx.AsyncClient, uid: Any
) -> None:
    account = uid("phone")
    await history(api, account, 3)
    page = await signed_in(browser, service, width=390, height=844)
    await page.goto(f"{service.base_url}/console#/account/{account}")
    await page.locator("figure[data-points]").wait_for()
    await page.screenshot(path=SHOTS / "console-account-phone.png", full_page=True)
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390
    # Keyboard: on a fresh load, Tab reaches the skip link first.
    await page.reload()
    await page.locator("figure[data-points]").wait_for()
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.textContent") == "Skip to content"
