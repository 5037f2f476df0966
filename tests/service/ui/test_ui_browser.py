"""The merchant pages in headless Chromium, against a real ``tierline serve`` (docs/ui.md).

Two servers (development, SQLite in a temporary folder, the in-process worker, ephemeral ports):
``server`` is seeded with a few signed webhooks whose figures the tests check exactly; ``demo``
with ``tierline simulate`` (50 customers, 200 orders) plus a customer with a very long name,
email and product, for the layout tests. One browser drives both. The layout tests load every
page at 760, 1000 and 1280 px (the widths Shopify admin gives an embedded app), check in the page
that no element overflows its container and that no two tables overlap, and save full-page
screenshots under their ``tmp_path``; ``TIERLINE_DOCS_SCREENSHOTS=1`` also refreshes
``docs/screenshots/``.

Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them). Without them the
module is skipped, except under ``CI=true``, where that is a failure.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.command import Command
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from service.migrate import upgrade
from tests.conftest import make_settings
from tests.support.payloads import (
    API_SECRET,
    customer_payload,
    fulfillment_payload,
    line_item,
    next_id,
    order_payload,
    signed_webhook,
)

pytestmark = pytest.mark.xdist_group("browser")

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
DEV_SHOP = "tierline-dev.myshopify.com"
XSS = "<script>alert(1)</script>"
REPO = Path(__file__).resolve().parents[3]
DOCS_SCREENSHOTS = REPO / "docs" / "screenshots"
TIERLINE = Path(sys.executable).with_name("tierline")
WAIT = 15.0
#: The widths Shopify admin gives an embedded app: a laptop with the sidebar, a wider window, desktop.
WIDTHS = (760, 1000, 1280)


def _require_chromium() -> None:
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    if not missing:
        return
    message = (
        f"browser tests need {' and '.join(missing)}: "
        "apt-get install chromium chromium-driver (.ci/run does this)"
    )
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message}; CI=true requires them")
    pytest.skip(message)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- the server --------------------------------------------------------------------------------


def _send(http: httpx.Client, topic: str, payload: Any = None, *, raw: bytes | None = None) -> None:
    headers, body = signed_webhook(topic, payload, shop=DEV_SHOP, raw=raw)
    response = http.post("/webhooks/shopify", content=body, headers=headers)
    assert response.status_code == 200, response.text


def _seed(http: httpx.Client) -> None:
    """One customer per tier (default thresholds), a COD RTO, a delivered order, a failed delivery."""
    now = datetime.now(UTC)
    people = {"priya": ("Priya", "Sharma"), "arjun": ("Arjun", "Mehta"), "ravi": ("Ravi", "Kumar")}
    people["xss"] = (XSS, "Evil")
    ids = {key: next_id() for key in people}
    for key, (first, last) in people.items():
        _send(http, "customers/create", customer_payload(ids[key], first_name=first, last_name=last))
    prepaid, cod = ["razorpay"], ["Cash on Delivery (COD)"]
    delivered = next_id()
    created = now - timedelta(days=40)
    orders = [
        order_payload(
            delivered,
            customer_id=ids["priya"],
            total="60000.00",
            created=created,
            gateways=prepaid,
            fulfillment_status="fulfilled",
            fulfillments=[
                fulfillment_payload(next_id(), delivered, shipment_status="delivered", created=created)
            ],
        ),
        order_payload(
            next_id(),
            customer_id=ids["arjun"],
            total="30000.00",
            created=now - timedelta(days=70),
            gateways=prepaid,
        ),
        order_payload(
            next_id(),
            customer_id=ids["ravi"],
            total="12000.00",
            created=now - timedelta(days=8),
            gateways=cod,
        ),
        order_payload(
            next_id(),
            customer_id=ids["ravi"],
            total="800.00",
            created=now - timedelta(days=4),
            gateways=cod,
            tags="rto",
        ),
        order_payload(
            next_id(),
            customer_id=ids["xss"],
            total="999.00",
            created=now - timedelta(days=2),
            gateways=prepaid,
        ),
    ]
    for payload in orders:
        _send(http, "orders/create", payload)
    _send(http, "orders/create", raw=b"{this is not json")


def _dev_token(http: httpx.Client) -> str:
    found = re.search(r'<meta name="tierline-dev-token" content="([^"]+)">', http.get("/app").text)
    assert found, "the development page carries no token"
    return found.group(1)


def _wait_for_worker(http: httpx.Client) -> None:
    headers = {"Authorization": f"Bearer {_dev_token(http)}"}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        pending = http.get("/api/deliveries", params={"status": "pending"}, headers=headers).json()
        failed = http.get("/api/deliveries", params={"status": "failed"}, headers=headers).json()
        if not pending["items"] and failed["items"]:
            return
        time.sleep(0.2)
    raise AssertionError("the worker did not settle the seeded deliveries")


@contextmanager
def running_server(folder: Path, *, dev_shop: str = DEV_SHOP) -> Iterator[tuple[str, dict[str, str]]]:
    """A migrated ``tierline serve`` in ``folder``: (base URL, its environment); stopped after."""
    database = f"sqlite+aiosqlite:///{folder / 'tierline.db'}"
    asyncio.run(upgrade(make_settings(database)))
    port = _free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith(("TIERLINE_", "SHOPIFY_"))}
    env |= {
        "DATABASE_URL": database,
        "TIERLINE_ENV": "development",
        "TIERLINE_WORKER": "inline",
        "TIERLINE_WORKER_POLL": "0.2",
        "TIERLINE_DEV_SHOP": dev_shop,
        "SHOPIFY_API_KEY": "browser-test-key",
        "SHOPIFY_API_SECRET": API_SECRET,
        "TIERLINE_ENCRYPTION_KEY": "browser-test-encryption-key-0000000000000000",
        "TIERLINE_LOG_FORMAT": "console",
        "HOST": "127.0.0.1",
        "PORT": str(port),
    }
    log = (folder / "serve.log").open("wb")
    process = subprocess.Popen(
        [str(TIERLINE), "serve"], cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=10) as http:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if http.get("/health").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(
                        "tierline serve did not start:\n" + (folder / "serve.log").read_text()
                    )
                time.sleep(0.2)
        yield base, env
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    _require_chromium()
    with running_server(tmp_path_factory.mktemp("ui-server")) as (base, _):
        with httpx.Client(base_url=base, timeout=10) as http:
            _seed(http)
            _wait_for_worker(http)
        yield base


LONG_NAME = "Venkatanarasimharajuvaripeta Subrahmanyeswara-Lakshminarasimhan"
LONG_EMAIL = "venkatanarasimharajuvaripeta.subrahmanyeswara.lakshminarasimhan@example-long-domain.co.in"
LONG_PRODUCT = (
    "Handwoven Kanjeevaram Pure Silk Saree With Temple Border And Contrast Pallu (Unstitched Blouse)"
)


def _seed_long_names(http: httpx.Client) -> None:
    """A customer whose name, email and product title are far longer than any column."""
    customer_id = next_id()
    first, last = LONG_NAME.split(" ")
    _send(
        http,
        "customers/create",
        customer_payload(customer_id, first_name=first, last_name=last, email=LONG_EMAIL),
    )
    order_id = next_id()
    line = line_item(
        next_id(), title=LONG_PRODUCT, variant_title="Peacock Blue / Free Size", vendor=LONG_PRODUCT
    )
    created = datetime.now(UTC) - timedelta(days=3)
    _send(
        http,
        "orders/create",
        order_payload(order_id, customer_id=customer_id, total="18999.00", created=created, lines=[line]),
    )


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server with ``tierline simulate``'s demo traffic (sent by the real command), a customer
    with very long names, and a failed delivery."""
    _require_chromium()
    folder = tmp_path_factory.mktemp("ui-demo")
    with running_server(folder) as (base, env):
        done = subprocess.run(
            [str(TIERLINE), "simulate", "--customers", "50", "--orders", "200", "--seed", "1"],
            cwd=folder,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        with httpx.Client(base_url=base, timeout=10) as http:
            _seed_long_names(http)
            _send(http, "orders/create", raw=b"{this is not json")
            _wait_for_worker(http)
        yield base


@pytest.fixture(scope="module")
def browser(server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1280,900",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    driver.set_page_load_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()


# --- helpers -----------------------------------------------------------------------------------


def wait(driver: WebDriver, condition: Any, message: str) -> Any:
    return WebDriverWait(driver, WAIT, poll_frequency=0.1).until(condition, message)


def browser_log(driver: WebDriver) -> list[dict[str, Any]]:
    """Chromium's console entries since the last call (``get_log``, typed)."""
    entries: list[dict[str, Any]] = driver.execute(Command.GET_LOG, {"type": "browser"})["value"]
    return entries


def open_page(driver: WebDriver, url: str, heading: str) -> None:
    driver.get(url)
    assert driver.find_element(By.TAG_NAME, "h1").text.startswith(heading)
    # Scripts ran (app.js is deferred); no script error and no Content-Security-Policy violation
    # (an inline script or handler would be one). API answers like a 422 are expected.
    wait(driver, lambda d: d.execute_script("return document.readyState") == "complete", "page load")
    problems = [
        entry["message"]
        for entry in browser_log(driver)
        if entry["level"] == "SEVERE" and "the server responded with a status of 4" not in entry["message"]
    ]
    assert not problems, problems


def shot(driver: WebDriver, tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.png"
    driver.save_screenshot(str(path))
    assert path.stat().st_size > 1000
    return path


#: Runs in the page: every box that is wider than its own box allows (``scrollWidth`` beyond
#: ``clientWidth``: clipped or overflowing content) or that sticks out of its parent, any two tables
#: whose boxes intersect, and a page wider than the window. Inline boxes, hidden ones, form
#: controls, the insides of SVG charts and the visually-hidden captions are not boxes to check.
LAYOUT_PROBLEMS_JS = (Path(__file__).parent / "layout_problems.js").read_text()


def set_width(driver: WebDriver, width: int, height: int = 900) -> None:
    """The page's viewport exactly ``width`` CSS pixels wide (as in an admin iframe of that width)."""
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
    )


def full_page_shot(driver: WebDriver, width: int, path: Path) -> Path:
    """A screenshot of the whole page at this width (the viewport stretched to the page's height)."""
    height = int(driver.execute_script("return document.documentElement.scrollHeight"))
    set_width(driver, width, min(max(height, 600), 6000))
    driver.save_screenshot(str(path))
    set_width(driver, width)
    assert path.stat().st_size > 1000
    return path


def layout_problems(driver: WebDriver) -> list[str]:
    problems: list[str] = driver.execute_script(LAYOUT_PROBLEMS_JS)
    return problems


def rows(driver: WebDriver, table_id: str) -> list[WebElement]:
    return driver.find_elements(By.CSS_SELECTOR, f"#{table_id} tbody tr")


# --- the tests ---------------------------------------------------------------------------------


def test_each_page_renders(browser: WebDriver, server: str, tmp_path: Path) -> None:
    for path, heading, name in (
        ("/app", "Customers", "customers"),
        ("/app/overview", "Top customers and overview", "overview"),
        ("/app/settings", "Settings", "settings"),
        ("/app/deliveries", "Deliveries", "deliveries"),
    ):
        open_page(browser, server + path, heading)
        if name == "overview":
            assert len(browser.find_elements(By.CSS_SELECTOR, "svg.chart rect")) == 4 + 12
        shot(browser, tmp_path, name)


def test_customers_list_and_tier_filter(browser: WebDriver, server: str, tmp_path: Path) -> None:
    open_page(browser, server + "/app", "Customers")
    names = [row.find_element(By.CSS_SELECTOR, "th a").text for row in rows(browser, "customers")]
    assert names == ["Priya Sharma", "Arjun Mehta", "Ravi Kumar", f"{XSS} Evil"]
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.accept()
    browser.find_element(By.CSS_SELECTOR, 'a.chip[data-tier="silver"]').click()
    wait(browser, lambda d: "tier=silver" in d.current_url, "the silver chip did not load")
    filtered = rows(browser, "customers")
    assert [row.get_attribute("data-tier") for row in filtered] == ["silver"]
    cells = [cell.text for cell in filtered[0].find_elements(By.CSS_SELECTOR, "td")]
    assert cells[2:5] == ["₹12,000.00", "1", "1"]  # LTV, orders, COD RTO
    active = browser.find_element(By.CSS_SELECTOR, 'a.chip[aria-current="true"]')
    assert active.text.startswith("Silver")
    shot(browser, tmp_path, "customers-silver")


def test_open_a_customer(browser: WebDriver, server: str, tmp_path: Path) -> None:
    open_page(browser, server + "/app", "Customers")
    browser.find_element(By.LINK_TEXT, "Priya Sharma").click()
    wait(browser, lambda d: "/app/customers/" in d.current_url, "the customer page did not open")
    assert browser.find_element(By.TAG_NAME, "h1").text.startswith("Priya Sharma")
    assert browser.find_element(By.ID, "stat-ltv").text == "₹60,000.00"
    assert "Platinum" in browser.find_element(By.ID, "tier-of-record").text
    assert len(rows(browser, "recent-orders")) == 1
    shot(browser, tmp_path, "customer")


def test_settings_invalid_then_valid_threshold(browser: WebDriver, server: str, tmp_path: Path) -> None:
    open_page(browser, server + "/app/settings", "Settings")
    gold = browser.find_element(By.ID, "threshold-gold")
    gold.clear()
    gold.send_keys("abc")
    browser.find_element(By.ID, "save-settings").click()
    error = browser.find_element(By.ID, "error-tierThresholds-gold")
    wait(browser, lambda d: error.is_displayed() and error.text, "no error next to the gold threshold")
    assert error.text == "must be a decimal amount"
    assert gold.get_attribute("aria-invalid") == "true"
    shot(browser, tmp_path, "settings-invalid")

    gold.clear()
    gold.send_keys("10000")
    silver = browser.find_element(By.ID, "threshold-silver")
    silver.clear()
    silver.send_keys("5000")
    browser.find_element(By.ID, "save-settings").click()
    message = browser.find_element(By.ID, "save-message")
    wait(browser, lambda d: message.text.startswith("Saved."), "the save did not finish")
    assert message.text == "Saved. Tiers recalculated for 4 customers: Gold 1 → 2, Silver 1 → 0."
    assert not error.is_displayed()
    assert gold.get_attribute("value") == "10000.00"
    counts = {
        row.get_attribute("data-tier"): row.find_element(By.TAG_NAME, "td").text
        for row in rows(browser, "tier-counts")
    }
    assert counts == {"platinum": "1", "gold": "2", "silver": "0", "bronze": "1"}
    shot(browser, tmp_path, "settings-saved")
    # The customers page shows the new tiers.
    open_page(browser, server + "/app?tier=gold", "Customers")
    assert len(rows(browser, "customers")) == 2


def test_replay_a_failed_delivery(browser: WebDriver, server: str, tmp_path: Path) -> None:
    open_page(browser, server + "/app/deliveries", "Deliveries")
    (row,) = rows(browser, "deliveries-failed")
    status = row.find_element(By.CSS_SELECTOR, "[data-role=status]")
    assert status.text == "failed"
    assert "json" in row.find_element(By.CSS_SELECTOR, "[data-role=error]").text.lower()
    assert row.find_element(By.CSS_SELECTOR, "[data-role=attempts]").text == "once, not retried"
    row.find_element(By.CSS_SELECTOR, "button[data-replay]").click()
    wait(browser, lambda d: status.text == "pending", "the replayed delivery did not change status")
    notice = browser.find_element(By.ID, "replay-status")
    assert "back in the queue" in notice.text
    # Replayed: the row no longer offers Replay (a second one would only queue it again).
    assert not row.find_elements(By.CSS_SELECTOR, "button[data-replay]")
    assert row.find_element(By.CSS_SELECTOR, "[data-role=action]").text == "Queued again"
    shot(browser, tmp_path, "deliveries-replayed")


def test_settings_suggestion_fills_the_form_without_saving(
    browser: WebDriver, demo: str, tmp_path: Path
) -> None:
    open_page(browser, demo + "/app/settings", "Settings")
    suggested = {
        row.get_attribute("data-tier"): row.find_element(By.CSS_SELECTOR, "[data-suggested]").get_attribute(
            "data-suggested"
        )
        for row in rows(browser, "suggestion-preview")
        if row.get_attribute("data-tier") != "bronze"
    }
    assert set(suggested) == {"platinum", "gold", "silver"}
    browser.find_element(By.ID, "use-suggestion").click()
    for tier, amount in suggested.items():
        assert browser.find_element(By.ID, f"threshold-{tier}").get_attribute("value") == amount
    message = browser.find_element(By.ID, "suggestion-message").text
    assert "Save to apply them" in message
    shot(browser, tmp_path, "settings-suggestion")
    # Nothing was saved: a reload shows the thresholds as they were.
    open_page(browser, demo + "/app/settings", "Settings")
    assert browser.find_element(By.ID, "threshold-platinum").get_attribute("value") == "50000.00"


def _demo_pages(demo: str) -> list[tuple[str, str, str]]:
    """(name, URL, heading) of every page, the customer page for the customer with the most orders
    and for the one with the long names."""
    with httpx.Client(base_url=demo, timeout=10) as http:
        listing = http.get("/app", params={"sort": "orderCount"}).text
        busiest = re.search(r'href="/app/customers/(\d+)"', listing)
        long_one = re.search(
            r'href="/app/customers/(\d+)">Venkatanarasimharajuvaripeta',
            http.get("/app", params={"search": "Venkatanarasimharajuvaripeta"}).text,
        )
    assert busiest is not None
    assert long_one is not None
    return [
        ("customers", "/app", "Customers"),
        ("customer", f"/app/customers/{busiest.group(1)}", ""),
        ("customer-long-names", f"/app/customers/{long_one.group(1)}", LONG_NAME.split(" ")[0]),
        ("overview", "/app/overview", "Top customers and overview"),
        ("settings", "/app/settings", "Settings"),
        ("deliveries", "/app/deliveries", "Deliveries"),
        ("not-found", "/app/customers/1", "Customer not found"),
    ]


@pytest.mark.parametrize("width", WIDTHS)
def test_pages_fit_the_admin_widths(browser: WebDriver, demo: str, tmp_path: Path, width: int) -> None:
    """Every page at this width: no element overflows its container, no tables overlap, the page
    is no wider than the window. Full-page screenshots are kept (and copied to docs/screenshots/
    with TIERLINE_DOCS_SCREENSHOTS=1)."""
    set_width(browser, width)
    try:
        found: dict[str, list[str]] = {}
        for name, path, heading in _demo_pages(demo):
            browser.get(demo + path)
            wait(browser, lambda d: d.execute_script("return document.readyState") == "complete", "load")
            assert browser.find_element(By.TAG_NAME, "h1").text.startswith(heading), name
            assert browser.execute_script("return window.innerWidth") == width
            if name == "overview":
                browser.find_element(By.CSS_SELECTOR, "details summary").click()  # the month table too
            saved = full_page_shot(browser, width, tmp_path / f"{name}-{width}.png")
            problems = layout_problems(browser)
            if problems:
                found[name] = problems
            if os.environ.get("TIERLINE_DOCS_SCREENSHOTS") == "1" and name != "not-found":
                DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(saved, DOCS_SCREENSHOTS / f"{name}-{width}.png")
        assert not found, found
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def test_the_layout_check_sees_an_overflow(browser: WebDriver, demo: str) -> None:
    """The check above can fail: a table forced wider than its container, and two tables pushed on
    top of each other, are both reported."""
    set_width(browser, 1000)
    try:
        browser.get(demo + "/app")
        wait(browser, lambda d: d.execute_script("return document.readyState") == "complete", "load")
        assert layout_problems(browser) == []
        browser.execute_script(
            "document.querySelector('#customers').style.minWidth = '1400px';"
            "const t = document.querySelector('#customers').cloneNode(true); t.id = 'copy';"
            "t.style.position = 'relative'; t.style.marginTop = '-400px';"
            "document.querySelector('main').appendChild(t);"
        )
        problems = layout_problems(browser)
        assert any("sticks out of" in p or "content" in p for p in problems), problems
        assert any("overlap" in p for p in problems), problems
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def test_schema_docs_render_from_this_server_only(browser: WebDriver, demo: str) -> None:
    """/schema draws the API reference with no request to another origin (the machine has no
    route to a CDN, so a page that needed one would stay blank)."""
    browser.get(demo + "/schema")
    wait(
        browser,
        lambda d: d.find_elements(
            By.CSS_SELECTOR, ".swagger-ui .information-container h2, .swagger-ui .title"
        ),
        "Swagger UI did not render",
    )
    assert "tierline" in browser.find_element(By.CSS_SELECTOR, ".swagger-ui .title").text
    assert browser.find_elements(By.CSS_SELECTOR, ".opblock")  # the operations are listed
    resources: list[str] = browser.execute_script(
        "return performance.getEntriesByType('resource').map((entry) => entry.name)"
    )
    assert resources
    assert all(name.startswith(demo) or name.startswith("data:") for name in resources), resources
