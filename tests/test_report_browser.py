"""Render the report in headless Chromium: every image decodes, no console message, a real screenshot.

CI installs Debian's chromium in the Makefile's $(STAMP) recipe; there (CI=true) a missing browser fails the
test, locally it skips.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from gradiend.constants import REPORT_FILE
from gradiend.report import write_report
from test_report_synthetic import make_run, reported_run

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--hide-scrollbars",
)


@pytest.fixture(scope="module")
def browser() -> str:
    return find_browser()


def find_browser() -> str:
    """The headless browser's path; skips the test without one (fails it in CI, where `make test` installs it)."""
    found = next((p for b in BROWSERS if (p := shutil.which(b))), None)
    if found is None:
        message = ("chromium is not installed: the browser test needs it "
                   "(apt-get install -y --no-install-recommends chromium; `make test` does this in CI)")
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def _chromium(browser: str, tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    profile = tmp / f"profile-{len(list(tmp.glob('profile-*')))}"
    cmd = [browser, *FLAGS, f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=90, check=False)


def _console(stderr: str) -> list[str]:
    """Messages the page wrote to the console (errors, uncaught exceptions, failed loads) as Chromium logs them."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line or "net::ERR" in line]


def _dom(browser: str, tmp: Path, page: Path) -> tuple[str, list[str]]:
    result = _chromium(browser, tmp, "--virtual-time-budget=5000", "--dump-dom", page.as_uri())
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout, _console(result.stderr)


def test_report_renders_with_all_images_and_no_console_messages(browser: str, tmp_path: Path) -> None:
    report = reported_run() / REPORT_FILE
    dom, console = _dom(browser, tmp_path, report)
    assert console == []
    body = re.search(r"<body[^>]*>", dom).group(0)
    assert 'data-images="ok"' in body and 'data-image-count="4"' in body and 'data-broken-count="0"' in body

    shot = tmp_path / "report.png"
    result = _chromium(browser, tmp_path, f"--screenshot={shot}", "--window-size=1280,2000", report.as_uri())
    assert result.returncode == 0 and shot.is_file(), result.stderr[-2000:]
    from matplotlib.image import imread

    pixels = imread(shot)
    assert pixels.shape[:2] == (2000, 1280)
    assert shot.stat().st_size > 50_000 and np.std(pixels[..., :3]) > 0.1  # text and figures, not a blank page


def test_the_checks_catch_a_broken_page(browser: str, tmp_path: Path) -> None:
    """Negative control: the same checks flag an undecodable image and a script error."""
    report = write_report(make_run(tmp_path, full=False), make_plots=False)
    html = report.read_text().replace("</main>", '<img src="data:image/png;base64,AAAA"></main>')
    broken = tmp_path / "broken.html"
    broken.write_text(html.replace("<script>", "<script>console.error('boom');"))
    dom, console = _dom(browser, tmp_path, broken)
    assert 'data-images="broken"' in dom and 'data-broken-count="1"' in dom
    assert any('"boom"' in line for line in console)
