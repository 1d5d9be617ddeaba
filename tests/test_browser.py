"""A real browser uses the app: Debian's Chromium, driven by Playwright, uploads a photo, sees the result and the
mask overlay, paints one stroke into the mask editor and re-runs. The screenshot: artifacts/browser/app.png.

Needs `apt-get install chromium` and `pip install playwright` (no `playwright install`: the system browser is used).
"""

import io
import re
import runpy
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unmask_hf.io import PREDICTION_LABEL

from .app_server import APP, EXAMPLES, ROOT, running_app  # noqa: F401  (the fixture: the app, running)

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
SCREENSHOTS = ROOT / "artifacts" / "browser"
PHOTO = EXAMPLES / "astronaut_surgical.jpg"  # 512×512, the face's eyes near row 100, columns 200-320
EDITOR_SIDE = runpy.run_path(str(APP))["EDITOR_SIDE"]  # the editor's square canvas; the square photo fills it

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"no {CHROMIUM} (apt-get install chromium)")]
sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")


@pytest.fixture(scope="module")
def page(running_app):  # noqa: F811
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors = []
        page.on("pageerror", lambda error: errors.append(error))  # uncaught exceptions in the app's JavaScript
        page.goto(running_app.url)
        yield page
        browser.close()
    assert errors == []


def fetch(page, selector: str) -> tuple[str, np.ndarray]:
    """The URL of the image shown in `selector` and its pixels (RGB), fetched the way the browser got them."""
    src = page.get_attribute(f"{selector} img", "src")
    return src, np.asarray(Image.open(io.BytesIO(page.request.get(src).body())).convert("RGB"))


def paint(page, points: list[tuple[float, float]]) -> None:
    """One brush stroke through photo pixels `points` in the mask editor."""
    page.locator("#editor").scroll_into_view_if_needed()
    page.locator("#editor button[aria-label=Brush]").click()
    zoom = float(re.search(r"(\d+)%", page.inner_text("#editor")).group(1)) / 100  # the canvas is shown fitted
    box = page.locator("#editor canvas").first.bounding_box()
    side, scale = EDITOR_SIDE * zoom, EDITOR_SIDE / 512
    to_page = lambda x, y: (box["x"] + box["width"] / 2 + (x * scale / EDITOR_SIDE - 0.5) * side,
                            box["y"] + box["height"] / 2 + (y * scale / EDITOR_SIDE - 0.5) * side)
    page.mouse.move(*to_page(*points[0]))
    page.mouse.down()
    for point in points[1:]:
        page.mouse.move(*to_page(*point))
    page.mouse.up()


def test_unmask_and_correct_the_mask_in_a_browser(page):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    photo = np.asarray(Image.open(PHOTO).convert("RGB"))
    page.locator("#photo input[type=file]").set_input_files(str(PHOTO))
    page.wait_for_selector("#photo img")
    page.click("#unmask")
    page.wait_for_selector("#result img", timeout=60_000)
    page.wait_for_selector("#overlay img")
    page.wait_for_function("() => document.querySelector('#editor').innerText.includes('%')")  # editor loaded

    assert "1 face(s) unmasked" in page.inner_text("#status")
    assert PREDICTION_LABEL in page.inner_text("#result")  # the visible label on the result
    first_src, first = fetch(page, "#result")
    overlay_src, overlay = fetch(page, "#overlay")
    assert first.shape == overlay.shape == photo.shape
    filled = (first != photo).any(2)
    assert 0.005 < filled.mean() < 0.2 and not filled[300:].any()  # the mask region changed, the body did not
    assert (np.abs(overlay.astype(int) - photo).sum(2) > 30).mean() > 0.005  # the tinted mask region is shown

    # Correct the mask: paint across the eyes (not part of the predicted mask) and re-run with it.
    paint(page, [(180, 100), (260, 100), (340, 100)])
    page.click("#rerun")
    page.wait_for_function("src => document.querySelector('#result img').src !== src", arg=first_src, timeout=60_000)
    page.wait_for_function("src => document.querySelector('#overlay img').src !== src", arg=overlay_src)
    _, corrected = fetch(page, "#result")
    assert (corrected[95:106, 200:320] != first[95:106, 200:320]).any(2).mean() > 0.5  # the painted eyes were refilled
    assert np.array_equal(corrected[300:], photo[300:]) and np.array_equal(corrected[:40], photo[:40])  # far away: exact
    assert "1 face(s) unmasked" in page.inner_text("#status")
    page.screenshot(path=SCREENSHOTS / "app.png", full_page=True)


def test_mark_a_missed_face_by_clicking_its_eyes(page, tmp_path):
    dark = tmp_path / "dark.png"  # the example photo, too dark for the detector
    Image.fromarray(np.asarray(Image.open(PHOTO).convert("RGB")) // 12).save(dark)
    page.locator("#photo input[type=file]").set_input_files(str(dark))
    page.click("#unmask")
    page.wait_for_function("() => document.querySelector('#status').innerText.includes('No face found')",
                           timeout=60_000)
    page.click("#mark-face button")  # open the accordion
    page.wait_for_selector("#marker img")
    image = page.locator("#marker img")
    image.scroll_into_view_if_needed()
    box = image.bounding_box()  # the 512×512 photo, shown scaled to fit
    for x, y in ((204, 101), (247, 104)):
        image.click(position={"x": x * box["width"] / 512, "y": y * box["height"] / 512})
        page.wait_for_timeout(300)
    page.wait_for_function("() => document.querySelector('#points textarea, #points input').value.split(',').length == 4")
    clicked = [float(v) for v in page.input_value("#points textarea, #points input").split(",")]
    assert np.allclose(clicked, [204, 101, 247, 104], atol=4)  # photo pixels, whatever the display size
    page.click("#unmask-face")
    page.wait_for_function("() => document.querySelector('#status').innerText.includes('1 face(s) unmasked')",
                           timeout=60_000)
    page.screenshot(path=SCREENSHOTS / "mark_face.png", full_page=True)
