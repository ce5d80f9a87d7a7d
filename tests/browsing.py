"""A real headless Chromium for the page tests: started, waited on, its console checked.

Without Chromium and chromedriver the tests that use it skip, except under
CI=true, where they fail.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

import folder_paths

ARTIFACTS = folder_paths.get_folder("tests") / "artifacts"  # screenshots, ignored by git
DESKTOP = (1280, 900)
WAIT_S = 15


def browser_paths() -> tuple[str, str]:
    """Chromium and chromedriver; a skip (a failure under CI=true) naming what is missing."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    chromedriver = shutil.which("chromedriver")
    missing = [name for name, path in (("chromium", chromium), ("chromedriver", chromedriver))
               if path is None]
    if missing:
        reason = (f"browser tests need {' and '.join(missing)} on PATH "
                  "(Debian: apt-get install chromium chromium-driver)")
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason}; under CI=true a missing browser is a failure")
        pytest.skip(reason)
    return chromium, chromedriver


def start_chromium(javascript: bool = True) -> WebDriver:
    chromium, chromedriver = browser_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-background-networking",
                     "--disable-dev-shm-usage", "--disable-extensions", "--hide-scrollbars",
                     f"--window-size={DESKTOP[0]},{DESKTOP[1]}"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    if not javascript:
        options.add_experimental_option(
            "prefs", {"profile.managed_default_content_settings.javascript": 2})
    return webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)


@contextmanager
def chromium(javascript: bool = True) -> Iterator[WebDriver]:
    """A headless Chromium, quit when the block ends; the screenshot folder made."""
    driver = start_chromium(javascript)
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()


def waiting(driver: WebDriver) -> WebDriverWait:
    """A wait that looks often: answers take tens of milliseconds."""
    return WebDriverWait(driver, WAIT_S, poll_frequency=0.05)


def assert_clean_console(driver: WebDriver) -> None:
    """No script errors and no Content-Security-Policy violations.

    Failed requests are left out: the error tests cause 4xx answers on purpose.
    """
    problems = [entry["message"] for entry in driver.get_log("browser")
                if (entry["level"] == "SEVERE" and entry.get("source") != "network")
                or "Content Security Policy" in entry["message"]]
    assert problems == []
