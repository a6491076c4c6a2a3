"""``leangen serve`` in a real headless browser: Debian's chromium driven by playwright (never ``playwright install``).

One app on 127.0.0.1 (a free port) with tiny random-weight presets, one browser for the module. Each tab is opened
and used as a person would; a screenshot per tab goes to ``$LEANGEN_TEST_ARTIFACTS`` (default: a pytest temp
folder). Every request the page makes to another host is refused and recorded: the demo must work offline.

Skipped only when gradio, playwright or chromium is missing, and never under ``CI=true`` (``make setup`` installs
them there).
"""
from __future__ import annotations

import os
import socket
import warnings
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlparse

import numpy as np
import pytest
from PIL import Image

CHROMIUM = Path("/usr/bin/chromium")
SOURCES = {"PixelFolder": "pixelfolder-tiny32", "StyleGAN2": "stylegan2-tiny32",
           "StyleGAN2-student": "stylegan2-tiny32-student", "ASAP-Net": "asapnet-tiny32",
           "pix2pixHD-style": "pix2pixhd-tiny32", "SPADE": "spade-tiny32"}
TIMEOUT_MS = 30_000  # one action on two loaded cores


def _need(ok: bool, what: str) -> None:
    if ok:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{what} is missing on CI: `make setup` installs it (the browser tests must run there)")
    pytest.skip(f"{what} is missing (make setup installs it)")


try:
    import gradio  # noqa: F401
    from playwright.sync_api import Page, expect, sync_playwright
    HAVE_PACKAGES = True
    expect.set_options(timeout=TIMEOUT_MS)
except ImportError:
    HAVE_PACKAGES = False


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = Path(os.environ.get("LEANGEN_TEST_ARTIFACTS") or tmp_path_factory.mktemp("serve-artifacts"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _free_port() -> int:
    with socket.socket() as s:  # the app binds it right after
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    _need(HAVE_PACKAGES, "gradio or playwright (the serve and test extras)")
    _need(CHROMIUM.exists(), f"{CHROMIUM} (Debian's chromium: apt-get install chromium chromium-driver)")
    from leangen.serve import ModelSet, build_app, launch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random weights
        models = ModelSet.load(SOURCES, strict=True)
    app = build_app(models)
    port = _free_port()
    launch(app, "127.0.0.1", port, block=False)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        app.close()


@pytest.fixture(scope="module")
def browser(server: str) -> Iterator[Any]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"])
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Any, server: str) -> Iterator["Page"]:
    """A fresh page on the app; requests to any other host are aborted and listed in ``page.external``."""
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    pg = context.new_page()
    pg.set_default_timeout(TIMEOUT_MS)
    external: list[str] = []

    def route(r: Any) -> None:
        if urlparse(r.request.url).hostname in ("127.0.0.1", "localhost"):
            r.continue_()
        else:
            external.append(r.request.url)
            r.abort()

    pg.route("**/*", route)
    pg.external = external  # type: ignore[attr-defined]
    pg.goto(server)
    pg.get_by_role("tab", name="Generate").wait_for()
    try:
        yield pg
    finally:
        context.close()


def _open_tab(page: "Page", name: str) -> None:
    page.get_by_role("tab", name=name).click()


def _done(page: "Page", artifacts: Path, name: str) -> None:
    """Screenshot, no traceback text on the page, nothing fetched from elsewhere."""
    page.screenshot(path=str(artifacts / f"serve-{name}.png"), full_page=True)
    assert "Traceback" not in page.content()
    assert page.external == [], f"the page tried to reach other hosts: {page.external}"  # type: ignore[attr-defined]


def test_generate_tab(page: "Page", artifacts: Path) -> None:
    page.locator("#generate-button").click()
    page.locator("#generate-grid img").wait_for()
    page.locator("#generate-stages img").wait_for()  # PixelFolder (the first model) shows its stages
    assert "8 image(s) of 32x32" in page.locator("#generate-status").inner_text()
    _done(page, artifacts, "generate")


def _upload(page: "Page", path: Path) -> None:
    page.locator("#translate-upload input[type=file]").set_input_files(str(path))
    page.locator("#translate-upload").get_by_text(path.name).wait_for()  # uploaded to the server


def test_translate_upload(page: "Page", artifacts: Path, tmp_path: Path) -> None:
    from leangen.serve.labelmaps import example_labels

    _open_tab(page, "Translate")
    Image.fromarray(example_labels(32).astype(np.uint8)).save(tmp_path / "face.png")
    _upload(page, tmp_path / "face.png")
    page.locator("#translate-button").click()
    images = page.locator("#translate-gallery img")
    images.nth(3).wait_for()  # the label map + ASAP-Net, pix2pixHD-style, SPADE
    assert images.count() == 4
    for name in ("ASAP-Net", "pix2pixHD-style", "SPADE"):
        expect(page.locator("#translate-table")).to_contain_text(name)
    assert "pixel values read as class ids" in page.locator("#translate-status").inner_text()
    _done(page, artifacts, "translate")


@pytest.mark.parametrize("name, message", [("face.jpg", "face.jpg is not a PNG file"),
                                           ("ids.png", "label ids must be in 0..8; this map has 0..200")])
def test_translate_bad_uploads_show_a_message(page: "Page", artifacts: Path, tmp_path: Path, name: str,
                                              message: str) -> None:
    from leangen.serve.labelmaps import example_labels

    _open_tab(page, "Translate")
    labels = example_labels(32).astype(np.uint8)
    labels[0, 0] = 200  # far past the 9 classes (the JPEG is refused before its pixels are read)
    Image.fromarray(labels).convert("RGB" if name.endswith(".jpg") else "L").save(tmp_path / name)
    _upload(page, tmp_path / name)
    page.locator("#translate-button").click()
    page.get_by_text(message).first.wait_for()
    assert page.locator("#translate-gallery img").count() == 0  # nothing translated
    _done(page, artifacts, f"translate-bad-{Path(name).suffix[1:]}")


def test_translate_drawing(page: "Page", artifacts: Path) -> None:
    _open_tab(page, "Translate")
    sketch = page.locator("#translate-sketch")
    sketch.get_by_role("button", name="Brush").click()
    box = sketch.locator("canvas").first.bounding_box()
    assert box is not None
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x - 40, y - 40)
    page.mouse.down()
    for i in range(1, 9):  # a stroke in the default brush colour (orange-yellow)
        page.mouse.move(x - 40 + 10 * i, y - 40 + 10 * i)
    page.mouse.up()
    page.locator("#translate-drawing-button").click()
    page.locator("#translate-gallery img").nth(3).wait_for()
    expect(page.locator("#translate-status")).to_contain_text("drawing (background, orange-yellow)")
    _done(page, artifacts, "translate-drawing")


def test_compare_tab(page: "Page", artifacts: Path) -> None:
    _open_tab(page, "Compare")
    page.locator("#compare-button").click()
    for name in SOURCES:
        expect(page.locator("#compare-table")).to_contain_text(name)
    page.locator("#compare-plot img").wait_for()  # the matplotlib figure
    _done(page, artifacts, "compare")


def test_compress_tab(page: "Page", artifacts: Path) -> None:
    _open_tab(page, "Compress")
    page.locator("#compress-button").click()
    page.locator("#compress-teacher img").wait_for()
    page.locator("#compress-student img").wait_for()
    assert "fewer parameters" in page.locator("#compress-status").inner_text()
    assert "StyleGAN2-student" in page.locator("#compress-table").inner_text()
    _done(page, artifacts, "compress")

