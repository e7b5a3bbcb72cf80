"""The report in a real browser (headless Chromium): no console errors, no network
request, every section present, every image decoded, a screenshot that is not blank;
and hostile file names / label values / column names shown as text, never run."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from report_browser import is_blank, load_report, require_browser

from biasaudit.audit.scan import run_scan
from biasaudit.report import SECTIONS, write_report

XSS_IMG = "<img src=x onerror=alert(1)>"
XSS_SCRIPT = "<script>alert(2)</script>"


def check_loaded(loaded, *, n_images_min: int) -> None:
    assert loaded.console_errors == [] and loaded.page_errors == []
    assert loaded.requests == []
    assert loaded.dialogs == []
    assert loaded.section_ids == [s for s, _ in SECTIONS]
    assert len(loaded.images) >= n_images_min
    assert all(img["w"] > 0 for img in loaded.images), [i["alt"] for i in loaded.images if i["w"] == 0][:3]
    assert all(img["alt"] for img in loaded.images)
    assert not is_blank(loaded.screenshot)


def test_scan_only_report_in_chromium(workspace):
    require_browser()
    check_loaded(load_report(write_report(workspace)), n_images_min=8)


def test_full_report_in_chromium(heml_workspace, stage_outputs):
    require_browser()
    loaded = load_report(write_report(heml_workspace, **stage_outputs))
    # exemplars + metric-tree crops + repair samples (4 rows × sample, base, donor)
    check_loaded(loaded, n_images_min=8 + 12)


def test_hostile_names_are_shown_as_text_and_never_run(scanned, tmp_path):
    require_browser()
    import shutil

    data = tmp_path / "data"
    shutil.copytree(scanned[0], data)
    # an image (and its mask) renamed to markup; "/" cannot be in a file name, so the
    # <script> payload goes into a column name and a label value instead
    evil_name = f"{XSS_IMG}.png"
    (data / "images" / "00001.png").rename(data / "images" / evil_name)
    (data / "masks" / "00001.png").rename(data / "masks" / evil_name)
    labels = pd.read_csv(data / "labels.csv", dtype=str)
    labels.loc[labels["image"] == "00001.png", "image"] = evil_name
    labels = labels.rename(columns={"Male": XSS_SCRIPT})
    labels[XSS_SCRIPT] = labels[XSS_SCRIPT].map({"0": XSS_IMG, "1": XSS_SCRIPT})
    labels.to_csv(data / "labels.csv", index=False)
    (data / "images" / "00002.png").write_bytes(b"broken")  # an unusable file: listed with its reason
    ws = tmp_path / "ws"
    run_scan(data, ws, labels=["Smiling"], sensitive=[XSS_SCRIPT], causal=["mouth"], heml=False)
    path = write_report(ws)
    html = path.read_text("utf-8")
    assert XSS_SCRIPT not in html and XSS_IMG not in html
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in html
    loaded = load_report(path)
    assert loaded.dialogs == [] and loaded.requests == [] and loaded.console_errors == []
    from playwright.sync_api import sync_playwright
    from report_browser import CHROMIUM_ARGS, chromium_path

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.goto(Path(path).resolve().as_uri())
        text = page.inner_text("body")
        n_scripts = page.eval_on_selector_all("script", "els => els.length")
        n_bad_imgs = page.eval_on_selector_all("img:not([src^='data:'])", "els => els.length")
        browser.close()
    assert n_scripts == 0 and n_bad_imgs == 0
    assert XSS_SCRIPT in text  # the column name reads as text in the page
    assert "00002.png" in text


@pytest.fixture(scope="module")
def ccp_workspace(ccp_dir, tmp_path_factory) -> Path:
    ws = tmp_path_factory.mktemp("ccp") / "ws"
    run_scan(ccp_dir, ws, labels=["dress"], causal=["dress"], heml=False)
    return ws


@pytest.mark.real_data
def test_ccp_report_in_chromium(ccp_workspace):
    require_browser()
    check_loaded(load_report(write_report(ccp_workspace)), n_images_min=4)


@pytest.mark.real_data
@pytest.mark.slow
def test_ccp_rebalance_report_in_chromium(ccp_workspace, tmp_path):
    require_browser()
    from biasaudit.rebalance.api import run_rebalance

    top = next(f for f in json.loads((ccp_workspace / "findings.json").read_text())["findings"]
               if f["kind"] == "association")
    new = run_rebalance(ccp_workspace, target=top["segment"], out=tmp_path / "new", budget=20).out
    path = write_report(ccp_workspace, rebalance=new, out=tmp_path / "report.html")
    html = path.read_text("utf-8")
    assert html.count('alt="base image') >= 1 and html.count('alt="donor image') >= 1
    check_loaded(load_report(path), n_images_min=4 + 3)

def test_print_stylesheet_gives_a_document(workspace):
    chromium = require_browser()
    from playwright.sync_api import sync_playwright
    from report_browser import CHROMIUM_ARGS

    path = write_report(workspace)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.goto(Path(path).resolve().as_uri())
        page.emulate_media(media="print")
        toc = page.eval_on_selector("nav.toc", "e => getComputedStyle(e).display")
        errors_box = page.eval_on_selector("section#dataset", "e => getComputedStyle(e).overflow")
        pdf = page.pdf(format="A4")
        browser.close()
    assert toc == "none" and errors_box == "visible"
    assert pdf.startswith(b"%PDF") and pdf.count(b"/Type /Page") >= 3
