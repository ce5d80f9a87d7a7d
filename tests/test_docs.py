"""web/docs.py: /docs shows Swagger UI over the service's own document, in a real browser."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from browsing import ARTIFACTS, assert_clean_console, chromium, waiting
from helpers import served_in_thread
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from app import create_app
from web.page import PAGE_POLICY


def test_the_docs_page_runs_under_the_page_policy(client):
    answer = client.get("/docs")
    assert answer.status_code == 200
    assert answer.headers["Content-Security-Policy"] == PAGE_POLICY
    html = answer.get_data(as_text=True)
    assert "<script>" not in html  # its initialiser is a file, as the policy needs
    for asset in ("/docs/assets/swagger-ui-bundle.js", "/docs/assets/swagger-ui.css",
                  "/static/docs.js"):
        assert asset in html
        with client.get(asset) as served:
            assert served.status_code == 200


def test_an_unknown_asset_is_a_json_404(client):
    answer = client.get("/docs/assets/../../app.py")
    assert answer.status_code == 404
    assert answer.json["error"]["code"] == "not_found"


@pytest.fixture
def server() -> Iterator[str]:
    with served_in_thread(create_app({"DEVICE": "cpu"})) as url:
        yield url


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    with chromium() as driver:
        yield driver


@pytest.mark.slow  # a real browser
def test_swagger_ui_lists_every_operation(browser, server):
    browser.get(f"{server}/docs")
    waiting(browser).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".opblock-summary-path"))
    shown = {element.get_attribute("data-path") or element.text
             for element in browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")}
    assert {"/predict", "/readyz", "/metrics", "/admin/reload"} <= shown
    assert "Digit recogniser" in browser.find_element(By.CSS_SELECTOR, ".info .title").text
    browser.save_screenshot(str(ARTIFACTS / "docs.png"))
    assert_clean_console(browser)
