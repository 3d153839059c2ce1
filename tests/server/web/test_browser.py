"""The page in a real headless Chromium, served by a real `visearch serve --http-port`.

Needs Debian's chromium and chromium-driver (`.ci/run` installs them). Where they
are missing the test skips with the reason, except under CI, where it fails: CI
must run it. The screenshot lands in test-artifacts/web-page.png (the README's
docs/web-page.png is a copy of one).
"""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.server.web.processes import visearch_process

ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = ("chromium", "chromium-browser", "google-chrome")


def browser_or_reason() -> tuple[str, str] | str:
    """(browser, driver) paths, or why there are none."""
    browser = next((p for p in map(shutil.which, CHROMIUM) if p), None)
    driver = shutil.which("chromedriver")
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    if browser is None or driver is None:
        return ("Chromium or chromedriver is not installed (apt-get install chromium "
                "chromium-driver; .ci/run does it where it runs as root)")
    return browser, driver


@pytest.fixture(scope="module")
def chrome():
    found = browser_or_reason()
    if isinstance(found, str):
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the browser test: {found}")
        pytest.skip(found)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = found[0]
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1280,900", "--force-device-scale-factor=1"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(found[1]), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def wait_for(driver, script: str, timeout: float = 30):
    """Poll a JavaScript expression until it is truthy; returns its value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = driver.execute_script(f"return {script};")
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {script}; page said: "
                         f"{driver.execute_script('return window.visearch')}")


def post_json(url: str, body: dict) -> dict:
    request = urllib.request.Request(url.rstrip("/") + "/v1/search",
                                     data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def result_ids(driver) -> list[int]:
    return [int(i) for i in driver.execute_script(
        "return [...document.querySelectorAll('#results .result')].map(e => e.dataset.id);")]


@pytest.mark.slow
def test_upload_crop_more_like_this_and_pages_in_chromium(chrome, index_dir, corpus, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    twin = corpus[12]
    query = tmp_path / "query.png"  # the same picture under another name
    query.write_bytes(twin.read_bytes())
    with visearch_process("serve", str(index_dir), "--port", "0", "--device", "cpu",
                          "--grace", "1", "--thumb-cache", str(tmp_path / "thumbs")) as (url, _):
        chrome.get(url)
        wait_for(chrome, "document.getElementById('untrained')")
        chrome.find_element(By.ID, "k").clear()
        chrome.find_element(By.ID, "k").send_keys("12")
        chrome.find_element(By.ID, "file").send_keys(str(query))
        wait_for(chrome, "window.visearch.lastResponse")
        results = chrome.find_elements(By.CSS_SELECTOR, "#results .result")
        assert len(results) == 12
        assert results[0].get_attribute("data-path") == twin.name
        assert chrome.execute_script("return window.visearch.lastResponse.query.crop") is None

        # Draw a crop box over the upper-left of the query image with the mouse.
        canvas = chrome.find_element(By.ID, "crop-layer")
        width, height = canvas.size["width"], canvas.size["height"]
        drag = ActionChains(chrome).move_to_element_with_offset(
            canvas, -width // 2 + 2, -height // 2 + 2)
        drag.click_and_hold().move_by_offset(width // 2, height // 2).release().perform()
        crop = wait_for(chrome, "window.visearch.lastResponse.query.crop")
        left, top, right, bottom = crop
        assert 0 <= left < right <= 96 and 0 <= top < bottom <= 72
        assert right - left >= 30 and bottom - top >= 20
        assert "Region" in chrome.find_element(By.ID, "crop-text").text
        wait_for(chrome, "[...document.querySelectorAll('#results img')]"
                         ".every(i => i.complete && i.naturalWidth > 0)")
        ARTIFACTS.mkdir(exist_ok=True)
        chrome.save_screenshot(str(ARTIFACTS / "web-page.png"))
        assert (ARTIFACTS / "web-page.png").stat().st_size > 10_000

        # Click a result: "more like this" searches by its id and leaves it out.
        clicked = chrome.find_elements(By.CSS_SELECTOR, "#results .result")[1]
        clicked_id = int(clicked.get_attribute("data-id"))
        clicked.click()
        wait_for(chrome, f"window.visearch.lastResponse.query.like_id === {clicked_id}")
        ids = [int(e.get_attribute("data-id"))
               for e in chrome.find_elements(By.CSS_SELECTOR, "#results .result")]
        assert clicked_id not in ids and len(ids) == 12

        # Pages: "next" and "previous" walk one query's ranking; the pages concatenate to
        # the unpaged ranking (40 images: pages of 15, 15 and 10, then no next page).
        chrome.find_element(By.ID, "k").clear()
        chrome.find_element(By.ID, "k").send_keys("15")
        chrome.find_element(By.ID, "text").send_keys("a red circle\n")
        whole = [h["id"] for h in post_json(url, {"text": "a red circle", "k": 40})["hits"]]
        shown = []
        for page in (1, 2, 3):
            wait_for(chrome, f"document.getElementById('page-no').textContent === 'page {page}'"
                             " && window.visearch.lastResponse.query.text === 'a red circle'")
            shown.append(result_ids(chrome))
            if page < 3:
                assert chrome.find_element(By.ID, "next-page").is_enabled()
                chrome.find_element(By.ID, "next-page").click()
        assert [len(p) for p in shown] == [15, 15, 10]
        assert shown[0] + shown[1] + shown[2] == whole
        assert not chrome.find_element(By.ID, "next-page").is_enabled()
        chrome.find_element(By.ID, "prev-page").click()
        wait_for(chrome, "document.getElementById('page-no').textContent === 'page 2'")
        assert result_ids(chrome) == shown[1]
        chrome.find_element(By.ID, "prev-page").click()
        wait_for(chrome, "document.getElementById('page-no').textContent === 'page 1'")
        assert result_ids(chrome) == shown[0]
        assert not chrome.find_element(By.ID, "prev-page").is_enabled()

        # An error is shown, not swallowed: k over the server's limit.
        chrome.find_element(By.ID, "text").clear()
        chrome.find_element(By.ID, "k").clear()
        chrome.find_element(By.ID, "k").send_keys("5000")
        chrome.find_element(By.ID, "text").send_keys("a blue square\n")
        error = wait_for(chrome, "window.visearch.lastError")
        assert error["code"] == "INVALID_ARGUMENT"
        assert "INVALID_ARGUMENT" in chrome.find_element(By.ID, "message").text


def test_artifacts_folder_is_ignored_by_git():
    assert "/test-artifacts/" in Path(ROOT / ".gitignore").read_text()
