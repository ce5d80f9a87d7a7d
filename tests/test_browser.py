"""The page in a real headless Chromium: files, drop, paste, drawing, keyboard, phone, no script.

The app runs on a werkzeug server in a background thread; the browser talks to
it over real HTTP. Screenshots are kept in tests/artifacts/. Without Chromium
and chromedriver these tests skip, except under CI=true, where they fail.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Iterator

import pytest
import urllib3
from browsing import ARTIFACTS, DESKTOP, assert_clean_console, chromium, waiting
from helpers import encode_image, paper_digit, served_in_thread
from PIL import Image
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.actions import interaction
from selenium.webdriver.common.actions.pointer_input import PointerInput
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions

from app import create_app
from imaging.ink import READ_SIZE
from serving.trust import REASONS
from training.nondigits import nondigit_pictures

pytestmark = pytest.mark.slow  # a real browser

PHONE = (390, 844)

# Held-out digits the tests upload, by index into the fixture (labels 3, 8, 5, 9, 4).
UPLOADED, DROPPED, PASTED, POSTED, KEYED = 151, 402, 253, 456, 207


# ---- The browser, the server and the page ---------------------------------

@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """The app on 127.0.0.1 at a port the system picks, stopped after the module."""
    with served_in_thread(create_app({"DEVICE": "cpu"})) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    with chromium() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser_without_js() -> Iterator[WebDriver]:
    with chromium(javascript=False) as driver:
        yield driver


@pytest.fixture
def page(browser, server) -> Iterator[WebDriver]:
    """The page freshly loaded at desktop size, its script started."""
    browser.get_log("browser")  # what earlier tests left in the console
    show_as(browser, *DESKTOP)
    browser.get(server)
    waiting(browser).until(
        expected_conditions.visibility_of_element_located((By.ID, "draw-panel")))
    yield browser
    assert_clean_console(browser)


def show_as(driver: WebDriver, width: int, height: int, scale: int = 1,
            mobile: bool = False) -> None:
    """Give the page a viewport of exactly this size (and touch input on a phone)."""
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": width, "height": height, "deviceScaleFactor": scale, "mobile": mobile})
    driver.execute_cdp_cmd("Emulation.setTouchEmulationEnabled",
                           {"enabled": mobile, "maxTouchPoints": 5})


def screenshot(driver: WebDriver, name: str) -> None:
    driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))


def full_page_screenshot(driver: WebDriver, name: str) -> None:
    """The whole page, beyond the viewport (for the long phone layout)."""
    shot = driver.execute_cdp_cmd("Page.captureScreenshot",
                                  {"format": "png", "captureBeyondViewport": True})
    (ARTIFACTS / f"{name}.png").write_bytes(base64.b64decode(shot["data"]))


def png_of(heldout_digits, index: int) -> tuple[bytes, int]:
    """A held-out digit as black ink on a white PNG, and its label."""
    images, labels = heldout_digits
    return encode_image(paper_digit(images[index])), int(labels[index])


def text_of(driver: WebDriver, element_id: str) -> str:
    return driver.find_element(By.ID, element_id).text


def new_result(driver: WebDriver, action: Callable[[], object]) -> None:
    """Run ``action`` and wait until the result region shows a new, finished answer."""
    before = driver.find_element(By.CSS_SELECTOR, "#status > *")
    action()
    wait = waiting(driver)
    wait.until(expected_conditions.staleness_of(before))
    wait.until(lambda d: d.find_element(By.ID, "status").get_attribute("aria-busy") != "true")


def api_error_message(server: str, data: bytes) -> str:
    """The JSON API's error message for uploading ``data``."""
    answer = urllib3.request("POST", f"{server}/predict", fields={"file": ("upload", data)},
                             retries=False, timeout=30)
    assert answer.status == 400
    return answer.json()["error"]["message"]


def as_sentence(message: str) -> str:
    """How the page shows an API message: capitalised, with a full stop."""
    return message[0].upper() + message[1:] + ("" if message[-1] in ".!?" else ".")


def shown_percent(value: float) -> str:
    """How the page shows a probability: one decimal, never 100.0% below 1."""
    tenths = round(value * 1000)
    return f"{(999 if tenths >= 1000 and value < 1 else tenths) / 10:.1f}%"


def assert_full_result(driver: WebDriver, digit: int) -> None:
    """The digit alone in #prediction, its confidence, ten bars, the model's input, the time."""
    assert text_of(driver, "prediction") == str(digit)
    assert re.fullmatch(r"Confidence \d+\.\d%", text_of(driver, "confidence"))
    meters = driver.find_elements(By.CSS_SELECTOR, "#probabilities meter")
    values = [float(meter.get_attribute("value")) for meter in meters]
    assert len(values) == 10
    assert max(values) == values[digit]
    assert text_of(driver, "confidence") == f"Confidence {shown_percent(values[digit])}"
    assert sum(values) == pytest.approx(1.0, abs=1e-3)
    (top,) = driver.find_elements(By.CSS_SELECTOR, "#probabilities li.top")
    assert top.find_element(By.CLASS_NAME, "digit").text == str(digit)
    seen = driver.find_element(By.ID, "input-image")
    assert seen.get_attribute("src").startswith("data:image/png;base64,")
    assert driver.execute_script("return arguments[0].naturalWidth", seen) == 28
    assert re.fullmatch(r"Answered in \d+ ms", text_of(driver, "timing"))


# ---- Getting an image in ---------------------------------------------------

def test_choosing_a_file_shows_the_digit_and_how_it_was_read(page, tmp_path, heldout_digits):
    data, label = png_of(heldout_digits, UPLOADED)
    digit_file = tmp_path / "digit.png"
    digit_file.write_bytes(data)

    new_result(page, lambda: page.find_element(By.ID, "file").send_keys(str(digit_file)))

    assert_full_result(page, label)
    preview = page.find_element(By.ID, "preview")
    assert preview.is_displayed()
    assert page.execute_script("return arguments[0].naturalWidth", preview) == 160
    assert page.title == "Digit recogniser"  # the page itself did not reload
    screenshot(page, "desktop-upload")


# A File made in the page from base64 bytes, as the drag or the clipboard would carry it.
IMAGE_TRANSFER = """
const bytes = Uint8Array.from(atob(arguments[0]), (c) => c.charCodeAt(0));
const transfer = new DataTransfer();
transfer.items.add(new File([bytes], arguments[1], {type: "image/png"}));
"""

DISPATCH_DROP = IMAGE_TRANSFER + """
const target = arguments[2];
const carrying = {bubbles: true, cancelable: true, dataTransfer: transfer};
target.dispatchEvent(new DragEvent("dragenter", carrying));
target.dispatchEvent(new DragEvent("dragover", carrying));
const highlighted = document.getElementById("drop-zone").classList.contains("dragging");
target.dispatchEvent(new DragEvent("drop", carrying));
return highlighted;
"""

DISPATCH_PASTE = IMAGE_TRANSFER + """
const carrying = {bubbles: true, cancelable: true, clipboardData: transfer};
document.body.dispatchEvent(new ClipboardEvent("paste", carrying));
"""


def test_dropping_a_file_and_pasting_an_image(page, heldout_digits):
    dropped, dropped_label = png_of(heldout_digits, DROPPED)
    pasted, pasted_label = png_of(heldout_digits, PASTED)
    zone = page.find_element(By.ID, "drop-zone")
    highlighted = []

    new_result(page, lambda: highlighted.append(page.execute_script(
        DISPATCH_DROP, base64.b64encode(dropped).decode(), "dropped.png", zone)))

    assert highlighted == [True]
    assert "dragging" not in zone.get_attribute("class")
    assert_full_result(page, dropped_label)
    assert page.execute_script("return document.getElementById('file').files[0].name") == \
        "dropped.png"

    new_result(page, lambda: page.execute_script(
        DISPATCH_PASTE, base64.b64encode(pasted).decode(), "pasted.png"))

    assert_full_result(page, pasted_label)
    assert page.execute_script("return document.getElementById('file').files[0].name") == \
        "pasted.png"


def test_a_broken_file_is_explained_in_plain_words(page, server, tmp_path):
    broken = b"this is not an image"
    broken_file = tmp_path / "broken.png"
    broken_file.write_bytes(broken)

    new_result(page, lambda: page.find_element(By.ID, "file").send_keys(str(broken_file)))

    assert text_of(page, "error") == as_sentence(api_error_message(server, broken))
    assert not page.find_elements(By.ID, "prediction")
    assert not page.find_elements(By.ID, "probabilities")
    assert not page.find_element(By.ID, "preview").is_displayed()
    screenshot(page, "desktop-error")


def test_a_non_digit_is_a_guess_in_words_and_show_why_draws_the_heatmap(page, tmp_path,
                                                                         heldout_digits):
    star = tmp_path / "star.png"
    star.write_bytes(encode_image(nondigit_pictures("objects", 1, "measure")[0]))
    new_result(page, lambda: page.find_element(By.ID, "file").send_keys(str(star)))
    assert text_of(page, "verdict-label") == "Best guess"
    assert text_of(page, "doubt") == f"Not sure: {REASONS['not_a_digit']}."
    assert not page.find_element(By.ID, "explanation").is_displayed()
    screenshot(page, "desktop-not-a-digit")

    data, label = png_of(heldout_digits, UPLOADED)
    digit_file = tmp_path / "digit.png"
    digit_file.write_bytes(data)
    new_result(page, lambda: page.find_element(By.ID, "file").send_keys(str(digit_file)))
    assert not page.find_element(By.ID, "doubt").is_displayed()
    # Switching "Show why" on asks again for the picture shown, with its heatmap.
    new_result(page, lambda: page.find_element(By.ID, "explain").click())
    assert_full_result(page, label)
    heatmap = page.find_element(By.ID, "explanation")
    assert heatmap.is_displayed()
    assert heatmap.get_attribute("src").startswith("data:image/png;base64,")
    assert page.execute_script("return arguments[0].naturalWidth", heatmap) == 28
    seen = page.find_element(By.ID, "input-image")
    assert heatmap.rect == seen.rect  # drawn exactly over the model's input
    assert "pushed towards the answer" in text_of(page, "legend")
    screenshot(page, "desktop-explained")


# ---- Drawing -----------------------------------------------------------------

def draw_stroke(driver: WebDriver, points: list[tuple[float, float]],
                kind: str = interaction.POINTER_MOUSE) -> None:
    """One stroke through ``points``, given as fractions of the pad's width and height."""
    pad = driver.find_element(By.ID, "pad")
    width, height = pad.size["width"], pad.size["height"]

    def offset(point: tuple[float, float]) -> tuple[int, int]:  # from the pad's centre
        return round((point[0] - 0.5) * width), round((point[1] - 0.5) * height)

    actions = ActionChains(driver, duration=20, devices=[PointerInput(kind, kind)])
    actions.move_to_element_with_offset(pad, *offset(points[0])).click_and_hold()
    for point in points[1:]:
        actions.move_to_element_with_offset(pad, *offset(point))
    actions.release().perform()


def line(start: tuple[float, float], end: tuple[float, float],
         steps: int = 8) -> list[tuple[float, float]]:
    """Points along a straight stroke from ``start`` to ``end``."""
    return [(start[0] + (end[0] - start[0]) * i / steps, start[1] + (end[1] - start[1]) * i / steps)
            for i in range(steps + 1)]


def ink_pixels(driver: WebDriver) -> int:
    """How many of the pad's pixels are dark."""
    return driver.execute_script("""
        const pad = document.getElementById("pad");
        const pixels = pad.getContext("2d").getImageData(0, 0, pad.width, pad.height).data;
        let ink = 0;
        for (let i = 0; i < pixels.length; i += 4) ink += pixels[i] < 128;
        return ink;
    """)


ONE = line((0.5, 0.15), (0.5, 0.85))
SEVEN_BAR = line((0.22, 0.15), (0.5, 0.15))


def test_drawing_with_the_mouse_then_undo_and_clear(page):
    assert ink_pixels(page) == 0
    new_result(page, lambda: draw_stroke(page, ONE))
    assert_full_result(page, 1)
    one_ink = ink_pixels(page)
    assert one_ink > 0
    # The pad took the focus, but shows neither a focus ring nor the keyboard pen.
    assert focused_id(page) == "pad"
    assert page.execute_script("return !document.activeElement.matches(':focus-visible')")
    assert not page.find_element(By.ID, "pen").is_displayed()

    new_result(page, lambda: draw_stroke(page, SEVEN_BAR))
    assert_full_result(page, 7)
    assert ink_pixels(page) > one_ink
    screenshot(page, "desktop-drawing")

    new_result(page, lambda: page.find_element(By.ID, "undo").click())
    assert ink_pixels(page) == one_ink
    assert_full_result(page, 1)

    new_result(page, lambda: draw_stroke(page, SEVEN_BAR))
    assert_full_result(page, 7)
    new_result(page, lambda: ActionChains(page).key_down(Keys.CONTROL).send_keys("z")
               .key_up(Keys.CONTROL).perform())
    assert ink_pixels(page) == one_ink
    assert_full_result(page, 1)

    new_result(page, lambda: page.find_element(By.ID, "predict").click())
    assert_full_result(page, 1)

    new_result(page, lambda: page.find_element(By.ID, "clear").click())
    assert ink_pixels(page) == 0
    assert text_of(page, "placeholder") == "No digit yet."
    assert not page.find_elements(By.ID, "probabilities")

    new_result(page, lambda: page.find_element(By.ID, "predict").click())
    assert text_of(page, "error") == "Draw a digit on the pad first."


def boxes_on(driver: WebDriver, layer: str) -> list[dict]:
    """The boxes shown over the pad or the preview: their page rectangles and labels."""
    return driver.execute_script("""
        return Array.from(document.querySelectorAll(`#${arguments[0]} .box`), (box) => {
          const r = box.getBoundingClientRect();
          return {left: r.left, right: r.right, top: r.top, bottom: r.bottom,
                  value: box.textContent};
        });
    """, layer)


def inside(box: dict, frame: dict) -> bool:
    return (frame["left"] - 1 <= box["left"] < box["right"] <= frame["right"] + 1
            and frame["top"] - 1 <= box["top"] < box["bottom"] <= frame["bottom"] + 1)


def test_drawing_a_number_boxes_each_digit(page):
    new_result(page, lambda: draw_stroke(page, line((0.18, 0.2), (0.36, 0.2))))
    new_result(page, lambda: draw_stroke(page, line((0.36, 0.2), (0.26, 0.85))))
    new_result(page, lambda: draw_stroke(page, line((0.62, 0.15), (0.62, 0.85))))
    assert text_of(page, "verdict-label") == "The number is"
    assert text_of(page, "prediction") == "71"
    assert re.fullmatch(r"Least sure digit \d+\.\d%", text_of(page, "confidence"))
    digits = page.find_elements(By.CSS_SELECTOR, "#digits li")
    assert [item.find_element(By.CLASS_NAME, "digit").text for item in digits] == ["7", "1"]
    pad = page.execute_script("return document.getElementById('pad').getBoundingClientRect()")
    boxes = boxes_on(page, "pad-boxes")
    assert [box["value"] for box in boxes] == ["7", "1"]
    assert all(inside(box, pad) for box in boxes)
    assert boxes[0]["right"] <= boxes[1]["left"]  # side by side, as drawn
    # The 1 was drawn at 62% across the pad: its box is there.
    middle = (boxes[1]["left"] + boxes[1]["right"]) / 2
    assert abs(middle - (pad["left"] + 0.62 * pad["width"])) < 0.05 * pad["width"]
    screenshot(page, "desktop-number")

    new_result(page, lambda: page.find_element(By.ID, "clear").click())
    assert boxes_on(page, "pad-boxes") == []


def test_an_uploaded_number_is_boxed_on_the_preview(page, tmp_path, heldout_digits):
    images, labels = heldout_digits
    chosen = [index for digit in (3, 5, 8) for index in [int((labels == digit).argmax())]]
    sheet = Image.new("L", (420, 160), 255)
    for place, index in enumerate(chosen):
        ink = Image.fromarray(images[index], mode="L").resize((112, 112))
        sheet.paste(Image.new("L", ink.size, 0), (20 + 130 * place, 24), ink)
    number_file = tmp_path / "number.png"
    number_file.write_bytes(encode_image(sheet))

    new_result(page, lambda: page.find_element(By.ID, "file").send_keys(str(number_file)))
    assert text_of(page, "prediction") == "358"
    preview = page.execute_script(
        "return document.getElementById('preview').getBoundingClientRect()")
    boxes = boxes_on(page, "preview-boxes")
    assert [box["value"] for box in boxes] == ["3", "5", "8"]
    assert all(inside(box, preview) for box in boxes)
    full_page_screenshot(page, "desktop-upload-number")


# ---- Keyboard and accessibility ---------------------------------------------

def press(driver: WebDriver, *keys: str) -> None:
    ActionChains(driver).send_keys(*keys).perform()


def press_back(driver: WebDriver, times: int) -> None:
    """Shift+Tab ``times`` times."""
    ActionChains(driver).key_down(Keys.SHIFT).send_keys(*[Keys.TAB] * times) \
        .key_up(Keys.SHIFT).perform()


def focused_id(driver: WebDriver) -> str:
    return driver.execute_script("return document.activeElement.id")


def test_the_keyboard_alone_reaches_and_uses_every_control(page, tmp_path, heldout_digits):
    order = []
    for _ in range(7):
        press(page, Keys.TAB)
        order.append(focused_id(page))
    assert order == ["pad", "undo", "clear", "predict", "explain", "file", "recognise"]

    # Each control shows where the focus is.
    for control in order:
        outline = page.execute_script(
            "const e = document.getElementById(arguments[0]); e.focus();"
            "const s = getComputedStyle(e); return [s.outlineStyle, s.outlineWidth];", control)
        assert outline[0] != "none" and float(outline[1].removesuffix("px")) >= 2, control

    # Draw a 1 with the keyboard pen: up to the top, pen down, down the pad, pen up.
    press_back(page, 6)
    assert focused_id(page) == "pad"
    assert page.find_element(By.ID, "pen").is_displayed()
    press(page, *[Keys.ARROW_UP] * 14, Keys.SPACE)
    assert "down" in page.find_element(By.ID, "pen").get_attribute("class")
    new_result(page, lambda: press(page, *[Keys.ARROW_DOWN] * 28, Keys.SPACE))
    assert_full_result(page, 1)
    assert "down" not in page.find_element(By.ID, "pen").get_attribute("class")
    screenshot(page, "desktop-keyboard")

    # Predict with Space, Clear with Enter.
    press(page, Keys.TAB, Keys.TAB, Keys.TAB)
    assert focused_id(page) == "predict"
    new_result(page, lambda: press(page, Keys.SPACE))
    assert_full_result(page, 1)
    press_back(page, 1)
    assert focused_id(page) == "clear"
    new_result(page, lambda: press(page, Keys.ENTER))
    assert ink_pixels(page) == 0
    assert text_of(page, "placeholder") == "No digit yet."

    # Draw again, and Undo with Enter.
    press_back(page, 2)
    assert focused_id(page) == "pad"
    new_result(page, lambda: press(page, *[Keys.ARROW_UP] * 28, Keys.SPACE,
                                   *[Keys.ARROW_DOWN] * 28, Keys.SPACE))
    assert_full_result(page, 1)
    press(page, Keys.TAB)
    assert focused_id(page) == "undo"
    new_result(page, lambda: press(page, Keys.ENTER))
    assert ink_pixels(page) == 0
    assert text_of(page, "placeholder") == "No digit yet."

    # The file input takes a file (a keyboard user picks it in the system dialog),
    # and Enter on Recognise sends it.
    data, label = png_of(heldout_digits, KEYED)
    digit_file = tmp_path / "digit.png"
    digit_file.write_bytes(data)
    press(page, Keys.TAB, Keys.TAB, Keys.TAB, Keys.TAB)
    assert focused_id(page) == "file"
    new_result(page, lambda: page.switch_to.active_element.send_keys(str(digit_file)))
    assert_full_result(page, label)
    press(page, Keys.TAB)
    assert focused_id(page) == "recognise"
    new_result(page, lambda: press(page, Keys.ENTER))
    assert_full_result(page, label)


def test_controls_have_accessible_names_and_the_result_is_announced(page):
    names = {element_id: page.find_element(By.ID, element_id).accessible_name
             for element_id in ("pad", "undo", "clear", "predict", "file", "explain",
                                "recognise")}
    assert names == {"pad": "Drawing pad", "undo": "Undo", "clear": "Clear",
                     "predict": "Predict", "file": "Image file",
                     "explain": "Show why: colour the pixels that pushed the answer",
                     "recognise": "Recognise"}
    pad = page.find_element(By.ID, "pad")
    assert pad.aria_role in ("img", "image")  # Chromium reports ARIA 1.3's synonym
    assert "arrow keys move the pen" in text_of(page, pad.get_attribute("aria-describedby"))
    status = page.find_element(By.ID, "status")
    assert status.get_attribute("aria-live") == "polite"
    assert status.aria_role == "status"
    assert page.execute_script("return getComputedStyle(arguments[0]).touchAction", pad) == "none"


def relative_luminance(rgb: tuple[float, ...]) -> float:
    def channel(value: float) -> float:
        value /= 255
        return value / 12.92 if value <= 0.04045 else ((value + 0.055) / 1.055) ** 2.4
    red, green, blue = (channel(value) for value in rgb[:3])
    return 0.2126 * red + 0.7152 * green + 0.0722 * blue


def contrast(foreground: tuple[float, ...], background: tuple[float, ...]) -> float:
    lighter, darker = sorted(map(relative_luminance, (foreground, background)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


# Text colour and the colour behind it (the first opaque background up the tree).
COLOURS = """
const parse = (colour) => colour.match(/[\\d.]+/g).map(Number);
return arguments[0].map((selector) => {
  const element = document.querySelector(selector);
  let behind = element;
  while (behind && parse(getComputedStyle(behind).backgroundColor)[3] === 0) {
    behind = behind.parentElement;
  }
  const background = behind ? getComputedStyle(behind).backgroundColor : "rgb(255, 255, 255)";
  return [selector, parse(getComputedStyle(element).color), parse(background)];
});
"""
# Text needs 4.5:1 against what is behind it; the outlines of controls need 3:1.
TEXT = ["h1", ".lede", "#draw-heading", "#pad-help", "#undo", "#predict", "label[for=file]",
        "#file", "#file-help", "#recognise", ".footer p", ".footer a",
        ".verdict-label", "#prediction", "#confidence", "#timing", ".model-input figcaption",
        "#probabilities li.top .percent", "#probabilities li:not(.top) .percent"]


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_text_has_enough_contrast(page, scheme):
    page.execute_cdp_cmd("Emulation.setEmulatedMedia", {
        "features": [{"name": "prefers-color-scheme", "value": scheme}]})
    try:
        new_result(page, lambda: draw_stroke(page, ONE))
        low = [(selector, round(contrast(text, behind), 2))
               for selector, text, behind in page.execute_script(COLOURS, TEXT)
               if contrast(text, behind) < 4.5]
        assert low == []
        outlines = page.execute_script(
            "return ['#undo', '#drop-zone'].map((s) => getComputedStyle("
            "document.querySelector(s)).borderTopColor.match(/[\\d.]+/g).map(Number));")
        (_, _, surface), = page.execute_script(COLOURS, ["#undo"])
        assert [contrast(outline, surface) >= 3 for outline in outlines] == [True, True]
        screenshot(page, f"desktop-{scheme}")
        new_result(page, lambda: page.find_element(By.ID, "clear").click())
        new_result(page, lambda: page.find_element(By.ID, "predict").click())
        (_, text, behind), = page.execute_script(COLOURS, ["#error"])
        assert contrast(text, behind) >= 4.5
    finally:
        page.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})


# ---- A phone ------------------------------------------------------------------

def test_phone_layout_and_drawing_with_a_finger(page):
    show_as(page, *PHONE, scale=2, mobile=True)
    try:
        page.refresh()
        waiting(page).until(
            expected_conditions.visibility_of_element_located((By.ID, "pad")))
        assert page.execute_script("return innerWidth") == PHONE[0]
        # Nothing is wider than the screen, and the pad fills most of its width.
        assert page.execute_script("return document.documentElement.scrollWidth") <= PHONE[0]
        pad = page.find_element(By.ID, "pad")
        assert 300 <= pad.size["width"] <= PHONE[0]
        assert abs(pad.size["width"] - 2 * pad.size["height"]) <= 1  # room for a number
        # The pad draws at the screen's resolution.
        assert page.execute_script("return arguments[0].width", pad) == 2 * pad.size["width"]
        screenshot(page, "phone-start")

        record_sent_pictures(page)
        new_result(page, lambda: draw_stroke(page, ONE, kind=interaction.POINTER_TOUCH))
        assert_full_result(page, 1)
        assert ink_pixels(page) > 0
        # The drawing was sent scaled down to the size the server reads, its shape kept.
        pad_pixels = page.execute_script("return [arguments[0].width, arguments[0].height]", pad)
        (sent,) = page.execute_script("return window.sentPictures")
        assert max(sent) == READ_SIZE < max(pad_pixels)
        assert abs(sent[0] / sent[1] - pad_pixels[0] / pad_pixels[1]) < 0.02
        assert not page.find_element(By.ID, "pen").is_displayed()
        # The answer shows below the pad without scrolling.
        digit = page.find_element(By.ID, "prediction")
        assert page.execute_script(
            "return arguments[0].getBoundingClientRect().bottom <= innerHeight", digit)
        screenshot(page, "phone-drawn")
        full_page_screenshot(page, "phone-result")
    finally:
        show_as(page, *DESKTOP)


def record_sent_pictures(driver: WebDriver) -> None:
    """From now on, the page keeps the width and height of every picture it sends
    in ``window.sentPictures``."""
    driver.execute_script("""
        window.sentPictures = [];
        const send = window.fetch;
        window.fetch = async (url, options) => {
          const picture = await createImageBitmap(options.body.get("file"));
          window.sentPictures.push([picture.width, picture.height]);
          return send(url, options);
        };
    """)


# ---- Without JavaScript ---------------------------------------------------------

def test_without_javascript_the_form_posts_and_the_server_shows_the_result(
        browser_without_js, server, tmp_path, heldout_digits):
    driver = browser_without_js
    show_as(driver, *DESKTOP)
    driver.get(server)
    assert not driver.find_element(By.ID, "draw-panel").is_displayed()
    assert text_of(driver, "placeholder") == "No digit yet."

    data, label = png_of(heldout_digits, POSTED)
    digit_file = tmp_path / "digit.png"
    digit_file.write_bytes(data)
    driver.find_element(By.ID, "file").send_keys(str(digit_file))
    driver.find_element(By.ID, "recognise").click()
    waiting(driver).until(
        expected_conditions.presence_of_element_located((By.ID, "prediction")))

    assert driver.title == f"{label} – Digit recogniser"
    assert text_of(driver, "prediction") == str(label)
    meters = driver.find_elements(By.CSS_SELECTOR, "#probabilities meter")
    values = [float(meter.get_attribute("value")) for meter in meters]
    assert len(values) == 10 and max(values) == values[label]
    assert text_of(driver, "confidence") == f"Confidence {shown_percent(values[label])}"
    (top,) = driver.find_elements(By.CSS_SELECTOR, "#probabilities li.top")
    assert top.find_element(By.CLASS_NAME, "digit").text == str(label)
    seen = driver.find_element(By.ID, "input-image")
    assert driver.execute_script("return arguments[0].naturalWidth", seen) == 28
    assert seen.size == {"width": 112, "height": 112}
    assert not driver.find_element(By.ID, "timing").is_displayed()
    screenshot(driver, "nojs-result")

    broken = b"GIF89a and then nothing"
    broken_file = tmp_path / "broken.gif"
    broken_file.write_bytes(broken)
    driver.find_element(By.ID, "file").send_keys(str(broken_file))
    driver.find_element(By.ID, "recognise").click()
    waiting(driver).until(
        expected_conditions.presence_of_element_located((By.ID, "error")))
    assert driver.title == "Error – Digit recogniser"
    assert text_of(driver, "error") == as_sentence(api_error_message(server, broken))
    assert not driver.find_elements(By.ID, "prediction")
    screenshot(driver, "nojs-error")
    assert_clean_console(driver)
