"""The report from a real (small) scan workspace and from stage outputs in the shapes of
notes/interfaces.md: sections in order, the verdict names the planted bias, every image
has alt text, nothing is fetched, the inputs are never written, odd inputs still render."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from biasaudit.core.errors import BiasauditError
from biasaudit.report import SECTIONS, ReportOptions, write_report


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []
        self.imgs: list[dict] = []
        self.headings: list[int] = []
        self.urls: list[str] = []
        self.scripts = 0
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.append(a["id"])
        if tag == "img":
            self.imgs.append(a)
        if tag == "script":
            self.scripts += 1
        if re.fullmatch(r"h[1-6]", tag):
            self.headings.append(int(tag[1]))
        for key in ("src", "href"):
            if key in a:
                self.urls.append(a[key])

    def handle_data(self, data):
        self.text.append(data)


def parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text("utf-8"))
    return page


def tree_state(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in sorted(folder.rglob("*")) if p.is_file()}


def test_scan_only_report_has_every_section_in_order_and_names_the_bias(workspace, scanned):
    data = scanned[0]
    before_data, before_ws = tree_state(data), tree_state(workspace)
    path = write_report(workspace)
    assert path == workspace / "report.html"
    page = parse(path)
    ids = [i for i in page.ids if i in dict(SECTIONS)]
    assert ids == [s for s, _ in SECTIONS]
    text = " ".join(page.text)
    verdict = text.split("Findings, ranked")[1]  # the verdict box, after the table of contents
    assert "Hair colour 'blond' predicts Smiling=1" in verdict
    # the input dataset and the workspace's own files are never written
    assert tree_state(data) == before_data
    after = tree_state(workspace)
    assert {k: v for k, v in after.items() if k != "report.html"} == before_ws


def test_accessibility_basics_and_no_network(workspace, stage_outputs):
    path = write_report(workspace, **stage_outputs)
    page = parse(path)
    assert page.scripts == 0
    assert page.imgs and all(img.get("alt", "").strip() for img in page.imgs)
    assert all(img["src"].startswith("data:image/") for img in page.imgs)
    assert all(u.startswith(("#", "data:")) for u in page.urls), [u for u in page.urls if not u.startswith("#")][:3]
    # headings never skip a level going down
    assert page.headings[0] == 1
    assert all(b <= a + 1 for a, b in zip(page.headings, page.headings[1:], strict=False))
    html = path.read_text("utf-8")
    assert "@media print" in html and 'lang="en"' in html
    assert not re.search(r"""(src|href)=["']?https?:""", html)


def test_stage_sections_show_the_interface_files(workspace, stage_outputs):
    html = write_report(workspace, **stage_outputs).read_text("utf-8")
    text = " ".join(parse(workspace / "report.html").text)
    # repair: plan, rejected by reason, V before/after, sample | base | donor
    assert "Cramér's V between hair colour and Smiling went from 0.80 to 0.05 with 76 synthesized" in text
    assert "area out of range" in text and "recombine failed" in text
    assert html.count('alt="synthesized image synthetic/') == 4 and html.count('alt="donor image') == 4
    # fairness: table, worst-group chart with error bars, per-group accuracy
    assert "worst-group accuracy 0.630 when trained on 'original', 0.870 on 'rebalanced'" in text
    assert "Worst-group accuracy per training set" in html and "Accuracy per Blond_Hair value" in text
    # reliance: flip rate per part, highest first
    assert "swapping only the hair flips the model's prediction in 40% of 200 pairs" in text
    assert text.index("brown") < text.rindex("blond")
    # reproduce: commands for every stage
    for cmd in ("biasaudit scan", "biasaudit rebalance", "biasaudit evaluate", "biasaudit probe",
                "biasaudit report"):
        assert cmd in text


def test_heml_section_shows_the_tree_quality_and_metric_trees(heml_workspace):
    page_path = write_report(heml_workspace)
    text = " ".join(parse(page_path).text)
    assert "Segment tree and per-node quality" in text and "P@1 0.50" in text
    html = page_path.read_text("utf-8")
    assert html.count("Metric tree of ") == 3
    assert "Pair 1:" in text and "(Smiling=0)" in text and "(Smiling=1)" in text


def test_report_tolerates_partial_and_extended_stage_files(workspace, tmp_path):
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "rebalance.json").write_text(json.dumps({"settings": {}, "future_field": [1, 2]}))
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "metrics.json").write_text(json.dumps({"runs": [{"train": "x"}], "summary": []}))
    (tmp_path / "probe.json").write_text(json.dumps({"parts": [{"part": "hair"}]}))
    doc = json.loads((workspace / "findings.json").read_text())
    # fields another finder may add later, and a kind this report does not know yet
    doc["findings"][0]["parts"] = ["hair"]
    doc["findings"][0]["routed_because"] = "hair overlaps no causal part"
    doc["findings"][0]["proxies"] = [{"column": "Blond_Hair", "summary": "hair colour mirrors Blond_Hair"}]
    doc["findings"].append({"kind": "future_kind", "summary": "a new kind of finding", "evidence": None})
    (workspace / "findings.json").write_text(json.dumps(doc))
    text = " ".join(parse(write_report(workspace, rebalance=tmp_path / "new", eval=tmp_path / "eval",
                                       probe=tmp_path / "probe.json")).text)
    assert "Routed here because:" in text and "hair overlaps no causal part" in text
    assert "Proxies: other attributes" in text and "hair colour mirrors Blond_Hair" in text
    assert "A new kind of finding" in text


def test_unusable_files_are_listed_with_their_reason(scanned, tmp_path):
    import shutil

    from biasaudit.audit.scan import run_scan

    data = tmp_path / "data"
    shutil.copytree(scanned[0], data)
    (data / "images" / "00003.png").write_bytes(b"not a png")
    ws = tmp_path / "ws"
    run_scan(data, ws, labels=["Smiling"], heml=False)
    text = " ".join(parse(write_report(ws)).text)
    assert "00003.png" in text.split("Unusable files")[1].split("Part coverage")[0]
    assert "Every file was usable" not in text


def test_thumbnails_are_sampled_so_size_does_not_follow_the_dataset(workspace):
    small = write_report(workspace, out=workspace / "a.html", options=ReportOptions(thumbs_per_value=2))
    large = write_report(workspace, out=workspace / "b.html", options=ReportOptions(thumbs_per_value=4))
    n_small = small.read_text().count("<img")
    n_large = large.read_text().count("<img")
    assert 0 < n_small < n_large <= 8 * 6 * 4


def test_missing_inputs_raise_errors_that_name_them(workspace, tmp_path):
    with pytest.raises(BiasauditError, match="not a scanned workspace"):
        write_report(tmp_path / "nothing")
    with pytest.raises(BiasauditError, match=r"--rebalance .*rebalance\.json"):
        write_report(workspace, rebalance=tmp_path)
    with pytest.raises(BiasauditError, match=r"--eval .*metrics\.json"):
        write_report(workspace, eval=tmp_path)
    with pytest.raises(BiasauditError, match="--probe"):
        write_report(workspace, probe=tmp_path / "none.json")



def test_refresh_keeps_earlier_stages_and_finds_the_workspace(workspace, stage_outputs, scanned):
    from biasaudit.report import refresh_report

    new, eval_dir, probe = stage_outputs["rebalance"], stage_outputs["eval"], stage_outputs["probe"]
    doc = json.loads((new / "rebalance.json").read_text())
    (new / "rebalance.json").write_text(json.dumps({**doc, "workspace": str(workspace)}))
    metrics = json.loads((eval_dir / "metrics.json").read_text())
    metrics["settings"]["train"] = {"original": str(scanned[0]), "rebalanced": str(new)}
    (eval_dir / "metrics.json").write_text(json.dumps(metrics))

    assert refresh_report(workspace=workspace) == workspace / "report.html"   # after scan
    assert "Synthesized samples beside" not in (workspace / "report.html").read_text()
    assert refresh_report(rebalance=new) == workspace / "report.html"         # after rebalance
    assert "Synthesized samples beside" in (workspace / "report.html").read_text()
    assert refresh_report(eval=eval_dir) == workspace / "report.html"         # after evaluate
    html = (workspace / "report.html").read_text()
    assert "Synthesized samples beside" in html and "Worst-group accuracy per training set" in html
    assert refresh_report(workspace=workspace, probe=probe) == workspace / "report.html"
    html = (workspace / "report.html").read_text()
    assert "Synthesized samples beside" in html and "Flip rate per part" in html and "Accuracy per" in html
    # an evaluation of folders no scan knows has no workspace to refresh
    metrics["settings"]["train"] = {"original": str(scanned[0])}
    (eval_dir / "metrics.json").write_text(json.dumps(metrics))
    assert refresh_report(eval=eval_dir) is None
