"""The viewer page in headless Chromium: upload a BUSI image, see the overlay and the facts."""

from __future__ import annotations

import os
import shutil

import cv2
import pytest
from serving_helpers import app_config, deploy, token_app

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


@pytest.fixture
def browser(tmp_path):
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        if os.environ.get("TUMORSEG_REQUIRE_BROWSER"):
            pytest.fail(
                "Chromium and ChromeDriver are required (apt install chromium chromium-driver)"
            )
        pytest.skip("Chromium/ChromeDriver not installed (apt install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def submit(browser, page: str, path, token: str = "") -> str:
    """Open the viewer at ``page``, type ``token``, choose ``path`` and wait for the page
    to say done or why not; the error it shows ("" when done)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(page)
    if token:
        browser.find_element(By.ID, "token").send_keys(token)
    browser.find_element(By.ID, "file").send_keys(str(path))
    WebDriverWait(browser, 120).until(
        lambda d: (
            d.find_element(By.ID, "status").text.startswith("done")
            or d.find_element(By.ID, "error").text
        )
    )
    return browser.find_element(By.ID, "error").text


def upload(browser, service: str, path) -> None:
    assert submit(browser, service, path) == ""


TOKEN_VARIABLE, TOKEN = "TUMORSEG_VIEWER_TEST_TOKEN", "viewer-s3cret"


@pytest.fixture
def token_service(service, champion_store):
    """The same app a second time under ``/token``, asking for a bearer token; removed
    afterwards (Serve deletes an application its config no longer names)."""
    port = int(service.rsplit(":", 1)[1])
    config = app_config(champion_store, port)
    config["applications"].append(token_app(champion_store, TOKEN_VARIABLE, TOKEN, "/token"))
    deploy(config)
    yield f"{service}/token/"
    deploy(app_config(champion_store, port))


def image_brightness(browser) -> float:
    """The mean red level of what the page drew under the overlay."""
    return browser.execute_script(
        "const c = document.getElementById('image');"
        "const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        "let s = 0; for (let i = 0; i < d.length; i += 4) s += d[i]; return s / (d.length / 4);"
    )


def test_upload_shows_the_image_with_its_mask_overlay(service, browser, busi_root) -> None:
    from selenium.webdriver.common.by import By

    image_path = sorted((busi_root / "malignant").glob("* ([0-9]).png"))[0]
    height, width = cv2.imread(str(image_path), cv2.IMREAD_GRAYSCALE).shape
    upload(browser, service, image_path)
    overlay = browser.find_element(By.ID, "overlay")
    assert overlay.is_displayed()
    assert (int(overlay.get_attribute("width")), int(overlay.get_attribute("height"))) == (
        width,
        height,
    )
    # The mask was drawn pixel by pixel into the overlay (its count equals the answer's area).
    status = browser.execute_script(
        "return fetch('/v1/segment?route=heterogeneous', {method: 'POST',"
        " headers: {'Content-Type': 'image/png'}, body: new Uint8Array(0)}).then(r => r.status)"
    )
    assert status == 400  # the page's own origin talks to the API (and bad input is a 400)
    painted = int(overlay.get_attribute("data-painted"))
    shown_area = int(browser.find_element(By.ID, "fact-tumor-area-px-").text)
    assert painted == shown_area
    # The image itself was drawn under the overlay (not left blank).
    assert image_brightness(browser) > 10
    route = browser.find_element(By.ID, "fact-route").text
    assert route in ("homogeneous", "heterogeneous")


def test_a_dicom_upload_is_shown_from_the_service_s_preview(
    service, browser, busi_root, tmp_path
) -> None:
    from tumorseg.io.dicom import write_dicom

    image_path = sorted((busi_root / "benign").glob("* ([0-9]).png"))[0]
    gray = cv2.imread(str(image_path), cv2.IMREAD_GRAYSCALE)
    upload(browser, service, write_dicom(tmp_path / "study.dcm", gray))
    # The DICOM's own pixels, not a blank canvas.
    assert abs(image_brightness(browser) - float(gray.mean())) < 1.0


def test_a_cine_loop_is_shown_by_its_first_frame(service, browser, busi_root, tmp_path) -> None:
    from selenium.webdriver.common.by import By

    from tumorseg.io.dicom import write_dicom

    image_path = sorted((busi_root / "benign").glob("* ([0-9]).png"))[0]
    gray = cv2.resize(cv2.imread(str(image_path), cv2.IMREAD_GRAYSCALE), (200, 150))
    upload(browser, service, write_dicom(tmp_path / "loop.dcm", [gray, 255 - gray, gray]))
    assert browser.find_element(By.ID, "status").text.startswith("done: a cine loop of 3 frames")
    assert abs(image_brightness(browser) - float(gray.mean())) < 1.0  # frame 0, not frame 1


def test_the_token_field_is_sent_as_a_bearer_token(token_service, browser, busi_root) -> None:
    """A service that asks for a token answers the page only when the user types it."""
    image_path = sorted((busi_root / "benign").glob("* ([0-9]).png"))[0]
    assert submit(browser, token_service, image_path) == "401: missing or wrong bearer token"
    wrong = submit(browser, token_service, image_path, token="not-it")
    assert wrong == "401: missing or wrong bearer token"
    assert submit(browser, token_service, image_path, token=TOKEN) == ""
