"""Debian's headless Chromium driven by Selenium through Debian's chromedriver (no browser is downloaded).

scripts/ensure-system-deps installs `chromium`, `chromium-driver` and `fonts-noto-cjk`; if either binary
is missing the test fails naming the package. Selenium calls block, so async tests run them in a thread
(`await asyncio.to_thread(...)`) against a server in another process.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service

T = TypeVar("T")

CHROMEDRIVER = "/usr/bin/chromedriver"


def _binaries() -> tuple[str, str]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    assert browser, "chromium is not installed (Debian package `chromium`; scripts/ensure-system-deps installs it)"
    driver = CHROMEDRIVER if os.path.exists(CHROMEDRIVER) else shutil.which("chromedriver")
    assert driver, "chromedriver is not installed (Debian package `chromium-driver`; scripts/ensure-system-deps)"
    return browser, driver


@contextmanager
def chromium(
    width: int = 1920, height: int = 1080, *, no_websocket: bool = False, mobile: bool = False
) -> Iterator[webdriver.Chrome]:
    """A headless Chromium window of `width`x`height` CSS pixels at scale 1; `no_websocket` hides the
    WebSocket API from pages (to see a page fall back to polling); `mobile` emulates a phone (touch, the
    viewport meta tag honoured)."""
    browser, driver = _binaries()
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must never fetch a driver or a browser
    options = Options()
    options.binary_location = browser
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-extensions",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
        f"--window-size={width},{height}",
        "--lang=zh-CN",
    ):
        options.add_argument(flag)
    d = webdriver.Chrome(options=options, service=Service(executable_path=driver))
    try:
        d.set_page_load_timeout(60)
        # the window's outer size includes no chrome in headless mode, but make the viewport exact
        d.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile},
        )
        if mobile:
            d.execute_cdp_cmd("Emulation.setTouchEmulationEnabled", {"enabled": True, "maxTouchPoints": 5})
        if no_websocket:
            d.execute_cdp_cmd(
                "Page.addScriptToEvaluateOnNewDocument",
                {"source": "delete window.WebSocket; window.WebSocket = undefined;"},
            )
        yield d
    finally:
        d.quit()


def until(check: Callable[[], T], *, timeout: float, interval: float = 0.25, what: str = "condition") -> T:
    """Call `check` until it returns something truthy; fail at the deadline with the last value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = check()
        except Exception as exc:  # a page still loading: try again until the deadline
            last = exc
        else:
            if last:
                return last
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout} s (last value {last!r})")
        time.sleep(interval)
