"""A headless Chromium driven by Selenium, from Debian's chromium and chromium-driver packages.

The driver binary is given explicitly, so Selenium never tries to download one.
"""

from __future__ import annotations

import shutil

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def start_browser(width: int = 1280, height: int = 1000) -> webdriver.Chrome:
    """A headless Chromium with a fresh profile; the caller quits it."""
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--disable-extensions", "--no-first-run", f"--window-size={width},{height}",
                     "--force-prefers-reduced-motion"):
        options.add_argument(argument)
    service = Service(shutil.which("chromedriver") or CHROMEDRIVER)
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(30)
    return driver


def color_scheme(driver: webdriver.Chrome, scheme: str) -> None:
    """Make the page see `prefers-color-scheme: scheme` ("light" or "dark")."""
    driver.execute_cdp_cmd("Emulation.setEmulatedMedia",
                           {"features": [{"name": "prefers-color-scheme", "value": scheme}]})


def screenshot(driver: webdriver.Chrome, path: str, width: int) -> None:
    """Save the whole page at `width` CSS pixels wide as a PNG."""
    driver.set_window_size(width, 800)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(width, int(height) + 140)  # the window's frame takes a little of its height
    driver.save_screenshot(path)
