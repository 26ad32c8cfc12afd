"""The viewer in a real browser: headless Chromium opens the page from a file with the network blocked.

Needs Debian's ``chromium`` and ``chromium-driver`` and the ``selenium`` package (``tools/install_browser.sh``
installs the browser). Without them the test skips and says so, unless ``TFORMER_REQUIRE_BROWSER=1`` (CI),
which turns the skip into a failure. The screenshot lands in ``test-artifacts/attention_viewer.png``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tformer.viz import compute_maps, write_html

ARTIFACTS = Path(
    os.environ.get("TFORMER_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "test-artifacts")
)
SOURCE = "The quick fox <script>alert(1)</script>"
TARGET = "le renard brun"


def find_browser() -> tuple[str, str]:
    """(chromium binary, chromedriver) or a skip (a failure under TFORMER_REQUIRE_BROWSER=1) naming what is missing."""
    missing = []
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package (pip install selenium)")
    browser = next(
        (shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None
    )
    driver = shutil.which("chromedriver")
    if browser is None:
        missing.append("a Chromium browser (apt-get install chromium)")
    if driver is None:
        missing.append("chromedriver (apt-get install chromium-driver)")
    if missing:
        message = (
            "headless Chromium not found: missing " + ", ".join(missing) + "; run tools/install_browser.sh"
        )
        if os.environ.get("TFORMER_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return browser, driver


@pytest.fixture(scope="module")
def browser():
    binary, driver_path = find_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1100",
        # no network: names resolve nowhere and any proxy-able request goes to a closed port
        "--host-resolver-rules=MAP * ~NOTFOUND",
        "--proxy-server=http://127.0.0.1:9",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd(
        "Network.emulateNetworkConditions",
        {"offline": True, "latency": 0, "downloadThroughput": 0, "uploadThroughput": 0},
    )
    yield driver
    driver.quit()


def css(driver, selector: str) -> list:
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, selector)


def heatmap(driver) -> str:
    return driver.execute_script("return document.getElementById('heatmap').toDataURL()")


def test_viewer_renders_and_responds_offline(browser, models, tokenizer, tmp_path):
    maps = compute_maps(models["encoder_decoder"], tokenizer, SOURCE, target=TARGET)
    page = write_html(maps, tmp_path / "attention.html")
    browser.get(page.resolve().as_uri())
    assert browser.execute_script("return document.body.dataset.ready") == "1"
    assert browser.execute_script("return performance.getEntriesByType('resource').length") == 0  # no fetches
    assert browser.execute_script("return window.__pwned === undefined && typeof alert === 'function'")
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []

    # every layer and head: tabs per kind of attention, selectors and the overview grid
    assert [t.text for t in css(browser, "#set-tabs .set-tab")] == [s.title for s in maps.sets]
    assert len(css(browser, "#layer option")) == 2 and len(css(browser, "#head option")) == 4 + 1
    thumbs = css(browser, "#overview .thumb")
    assert len(thumbs) == 2 * 4
    assert {(t.get_attribute("data-layer"), t.get_attribute("data-head")) for t in thumbs} == {
        (str(layer), str(head)) for layer in range(2) for head in range(4)
    }

    # token text is shown as text: the markup token reads as written, and nothing ran
    enc = maps.get("encoder")
    keys = css(browser, "#keys .token")
    assert [k.get_attribute("title") for k in keys] == enc.key_tokens
    assert "<script>" in "".join(enc.key_tokens)
    assert "".join(k.get_attribute("textContent") for k in keys).startswith("The quick fox <script>")

    # clicking a token shows what it attends to; clicking a thumbnail switches layer and head
    before_detail, before_map = browser.find_element("id", "detail").text, heatmap(browser)
    css(browser, "#queries .token")[3].click()
    detail = browser.find_element("id", "detail").text
    assert detail != before_detail and "attends to" in detail and enc.query_tokens[3].strip() in detail
    shaded = [
        k
        for k in keys
        if k.value_of_css_property("background-color") not in ("rgba(0, 0, 0, 0)", "transparent")
    ]
    assert shaded and heatmap(browser) != before_map
    thumbs[1 * 4 + 2].click()  # layer 1, head 2
    assert browser.find_element("id", "layer").get_attribute("value") == "1"
    assert browser.find_element("id", "head").get_attribute("value") == "2"
    assert "Layer 1, head 2" in browser.find_element("id", "detail").text
    assert "selected" in css(browser, "#overview .thumb")[1 * 4 + 2].get_attribute("class")

    # cross-attention: target tokens attend to source tokens
    css(browser, "#set-tabs .set-tab")[2].click()
    cross = maps.get("cross")
    assert len(css(browser, "#queries .token")) == len(cross.query_tokens)
    assert len(css(browser, "#keys .token")) == len(cross.key_tokens)
    css(browser, "#keys .token")[1].click()
    assert "is attended by" in browser.find_element("id", "detail").text

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "attention_viewer.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    print(f"screenshot: {shot}")
