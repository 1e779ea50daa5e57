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
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--disable-extensions",
        "--no-first-run",
        f"--window-size={width},{height}",
        "--force-prefers-reduced-motion",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # console errors, CSP violations
    service = Service(shutil.which("chromedriver") or CHROMEDRIVER)
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(30)
    return driver


def console_errors(driver: webdriver.Chrome) -> list[str]:
    """Severe console messages since the last call: script errors, failed loads, blocked content."""
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def color_scheme(driver: webdriver.Chrome, scheme: str) -> None:
    """Make the page see `prefers-color-scheme: scheme` ("light" or "dark")."""
    driver.execute_cdp_cmd(
        "Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": scheme}]}
    )


def screenshot(driver: webdriver.Chrome, path: str, width: int) -> None:
    """Save the whole page at `width` CSS pixels wide as a PNG."""
    driver.set_window_size(width, 800)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(width, int(height) + 140)  # the window's frame takes a little of its height
    driver.save_screenshot(path)


_CONTRAST = """
const luminance = (color) => {
  const [r, g, b] = color.match(/[\\d.]+/g).slice(0, 3).map(Number).map((value) => {
    value /= 255;
    return value <= 0.03928 ? value / 12.92 : Math.pow((value + 0.055) / 1.055, 2.4);
  });
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
};
const background = (element) => {
  for (; element; element = element.parentElement) {
    const color = getComputedStyle(element).backgroundColor;
    if (color && color !== "rgba(0, 0, 0, 0)" && color !== "transparent") return color;
  }
  return "rgb(255, 255, 255)";
};
const low = [];
for (const element of document.querySelectorAll(arguments[0])) {
  if (!element.getClientRects().length || !element.textContent.trim()) continue;
  const [one, two] = [luminance(getComputedStyle(element).color), luminance(background(element))];
  const ratio = (Math.max(one, two) + 0.05) / (Math.min(one, two) + 0.05);
  if (ratio < arguments[1]) low.push([element.id || element.className || element.tagName, ratio.toFixed(2)]);
}
return low;
"""


def low_contrast(driver: webdriver.Chrome, selector: str, minimum: float = 4.5) -> list[list[str]]:
    """Visible text under `selector` whose colour against its background is below `minimum` (WCAG AA)."""
    return driver.execute_script(_CONTRAST, selector, minimum)  # type: ignore[no-any-return]  # the script's array
