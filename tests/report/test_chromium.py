"""Render the HTML report in headless Chromium: the chart's bars are in the DOM and a screenshot is drawn.

Uses a Chromium or Chrome that is already installed and skips, saying so, when there is none: tests never
install anything (CI installs Debian's chromium in `.ci/run`).
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from darp_onnx.report import diff_models, to_html
from tests.report.cases import cnn

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


def find_browser() -> str | None:
    """The first Chromium-family browser on PATH (or Debian's /usr/bin/chromium), else None."""
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


@pytest.fixture(scope="session")
def chromium() -> str:
    found = find_browser()
    if found is None:
        pytest.skip(f"no Chromium-family browser installed (looked for {', '.join(BROWSERS)}); .ci/run installs "
                    "Debian's chromium, tests never install anything")
    return found


def _run(chromium: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / "profile"
    try:
        return subprocess.run(
            [chromium, *FLAGS, f"--user-data-dir={profile}", *args],
            capture_output=True, text=True, timeout=180,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("headless chromium did not finish in 180 s")


def png_pixels_vary(path: Path) -> bool:
    """True when the PNG decodes to more than a handful of distinct byte values (not a blank page)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat = 8, b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        if kind == b"IDAT":
            idat += data[pos + 8 : pos + 8 + length]
        pos += 12 + length
    return len(set(zlib.decompress(idat))) > 8


@pytest.fixture()
def page(tmp_path) -> Path:
    path = tmp_path / "report.html"
    path.write_text(to_html(diff_models(cnn(), cnn(5, drop_relu=True))), encoding="utf-8")
    return path


def test_dumped_dom_contains_the_chart_bars(chromium, tmp_path, page):
    result = _run(chromium, tmp_path, "--dump-dom", page.as_uri())
    assert result.returncode == 0, result.stderr[-2000:]
    dom = result.stdout
    assert 'id="channels-chart"' in dom
    assert dom.count('class="bar kept"') == 3 and dom.count('class="bar removed"') == 1
    assert "conv1: 5 of 8 output channels kept" in dom


def test_screenshot_is_drawn(chromium, tmp_path, page):
    shot = tmp_path / "report.png"
    result = _run(chromium, tmp_path, "--hide-scrollbars", "--window-size=1200,1000", f"--screenshot={shot}",
                  page.as_uri())
    assert result.returncode == 0, result.stderr[-2000:]
    assert shot.exists() and shot.stat().st_size > 5000
    assert png_pixels_vary(shot)
