"""The dashboard in a real headless chromium: it renders plotly charts and no errors."""
import io
import subprocess

import pytest

from _webdriver import Browser, chromium_binaries, free_port
from nas import dashboard

pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.skipif(chromium_binaries() is None, reason="chromium and chromedriver are not on PATH")]

_COUNT = "return document.querySelectorAll(arguments[0]).length;"


@pytest.fixture(scope="module")
def server(demo):
    port = free_port()
    process = dashboard.launch(demo["url"], port=port, artifacts=demo["artifacts"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert dashboard.wait_ready(port, process=process, timeout=90), "dashboard did not become healthy"
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def browser():
    with Browser(width=1400, height=1000) as b:
        yield b


def _non_trivial(png: bytes) -> None:
    from PIL import Image

    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    image = Image.open(io.BytesIO(png)).convert("RGB")
    assert image.size[0] >= 1000 and image.size[1] >= 700
    colours = image.getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 200, "screenshot is (nearly) blank"
    background = max(colours)[0] / (image.size[0] * image.size[1])
    assert background < 0.9, "screenshot is mostly one colour"


def test_study_page_renders_charts(server, browser):
    browser.get(f"{server}/study?study=vit-digits&tab=Warm+start+vs+random")
    assert browser.wait_streamlit(".js-plotly-plot", timeout=90), "page did not finish rendering"
    assert browser.js(_COUNT, ".js-plotly-plot") >= 3
    assert browser.js(_COUNT, '[data-testid="stException"]') == 0
    assert browser.js(_COUNT, '[data-testid="stMetric"]') >= 5
    _non_trivial(browser.screenshot())


def test_studies_page_renders_table(server, browser):
    browser.get(server)
    assert browser.wait_streamlit('[data-testid="stDataFrame"]', timeout=90)
    assert browser.js(_COUNT, '[data-testid="stException"]') == 0
    assert "Open vit-digits" in browser.js("return document.body.innerText;")
    _non_trivial(browser.screenshot())
