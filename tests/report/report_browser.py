"""Load a report in headless Chromium (the Debian ``chromium`` package, driven by python
playwright with ``executable_path``; playwright never downloads a browser here) and
collect what the browser tests check."""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def chromium_path() -> str | None:
    for candidate in (os.environ.get("BIASAUDIT_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                      shutil.which("chromium-browser")):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def require_browser() -> str:
    """The Chromium executable, or skip the test cleanly when it or playwright is missing
    (fail instead under ``BIASAUDIT_REQUIRE_BROWSER=1``, as ``.ci/run`` sets it: CI must
    run these tests, not skip them)."""
    os.environ["PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD"] = "1"
    missing = pytest.fail if os.environ.get("BIASAUDIT_REQUIRE_BROWSER") == "1" else pytest.skip
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing("python playwright is not installed (pip install -e '.[dev]')")
    path = chromium_path()
    if path is None:
        missing("chromium not found (apt-get install -y chromium)")
    return path


@dataclass
class Loaded:
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    section_ids: list[str] = field(default_factory=list)
    images: list[dict] = field(default_factory=list)
    screenshot: bytes = b""
    load_seconds: float = 0.0


def load_report(path: Path, *, screenshot: Path | None = None, findings_shot: Path | None = None,
                width: int = 1280, height: int = 900) -> Loaded:
    from playwright.sync_api import sync_playwright

    out = Loaded()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.on("console", lambda m: out.console_errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: out.page_errors.append(str(e)))
            page.on("dialog", lambda d: (out.dialogs.append(d.message), d.dismiss()))
            url = Path(path).resolve().as_uri()
            # every request but the page itself is a network request (data: URIs are not requests)
            page.on("request", lambda r: out.requests.append(r.url) if r.url != url else None)
            t0 = time.perf_counter()
            page.goto(url, wait_until="load")
            out.load_seconds = time.perf_counter() - t0
            out.section_ids = page.eval_on_selector_all("main > section", "els => els.map(e => e.id)")
            out.images = page.eval_on_selector_all(
                "img", "els => els.map(e => ({alt: e.alt, w: e.naturalWidth, complete: e.complete}))")
            out.screenshot = page.screenshot(path=str(screenshot) if screenshot else None)
            if findings_shot is not None:
                page.locator("#findings article").first.screenshot(path=str(findings_shot))
        finally:
            browser.close()
    return out


def is_blank(png: bytes) -> bool:
    """True when a screenshot is one flat colour."""
    import io

    import numpy as np
    from PIL import Image

    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.float32)
    return float(pixels.std()) < 2.0
