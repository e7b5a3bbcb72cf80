"""The benchmark runner's bookkeeping (``python -m reports.bench``), without running a benchmark:
the generated block of reports/benchmarks.md leaves the prose byte-identical, the JSON carries
the machine, failures are recorded and the rest carries on."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # `reports` lives beside the package, not inside it

from reports.bench import records, runner, suites  # noqa: E402
from reports.bench.runner import BEGIN, END, remove_block, rewrite_block  # noqa: E402

PROSE = ("# Benchmarks\n\n## SynthFaces\n\nmeasured by hand | with pipes |\n\n"
         "## HEML\n\n<!-- a comment -->\ntrailing spaces   \n\n\n")


def _block(text: str = "figures") -> str:
    return f"{BEGIN}\n## Generated\n\n{text}\n{END}"


def _outside(text: str) -> tuple[str, str]:
    start, end = text.index(BEGIN), text.index(END) + len(END)
    return text[:start], text[end:]


def test_first_block_goes_under_the_title_and_removes_cleanly():
    new = rewrite_block(PROSE, _block())
    assert new.startswith("# Benchmarks\n\n" + BEGIN)
    assert new.count(BEGIN) == 1 and new.count(END) == 1
    assert remove_block(new) == PROSE
    # everything after the block is the original prose, byte for byte
    assert _outside(new)[1] == "\n" + PROSE.split("\n", 1)[1]


def test_rewriting_an_existing_block_keeps_the_prose_byte_identical():
    first = rewrite_block(PROSE, _block("old figures"))
    second = rewrite_block(first, _block("new figures\n| a | b |"))
    assert _outside(second) == _outside(first)
    assert "new figures" in second and "old figures" not in second
    assert rewrite_block(second, _block("new figures\n| a | b |")) == second
    assert remove_block(second) == PROSE


def test_a_page_without_a_title_gets_the_block_first():
    page = "some prose\n"
    new = rewrite_block(page, _block())
    assert new.startswith(BEGIN) and new.endswith(END + "\n\n" + page)
    assert remove_block(new) == page


def test_the_real_benchmarks_page_round_trips():
    page = (ROOT / "reports" / "benchmarks.md").read_text("utf-8")  # with or without a block
    new = rewrite_block(page, _block())
    assert remove_block(new) == remove_block(page)
    if BEGIN in page:
        assert _outside(new) == _outside(page)
    assert _outside(rewrite_block(new, _block("other figures"))) == _outside(new)


@pytest.mark.parametrize("page", [f"# B\n\n{BEGIN}\nno end\n", f"# B\n\n{END}\n", f"# B\n{END}\n{BEGIN}\n"])
def test_a_broken_marker_pair_is_an_error_not_a_rewrite(page):
    with pytest.raises(ValueError, match="bench:"):
        rewrite_block(page, _block())


def test_selection_by_tier_only_and_skip():
    default = runner.select("default", [], [])
    assert "evaluate" not in default and "scan-matrix" not in default
    assert {"scan", "heml", "audit", "rebalance", "segment"} <= set(default)
    assert "evaluate" in runner.select("quick", [], []) and "scan-matrix" not in runner.select("quick", [], [])
    assert {"evaluate", "scan-matrix"} <= set(runner.select("full", [], []))
    assert runner.select("default", ["evaluate", "heml"], []) == ["heml", "evaluate"]
    assert "report" not in runner.select("default", [], ["report"])
    with pytest.raises(ValueError, match="unknown benchmark 'nope'"):
        runner.select("default", ["nope"], [])


def test_figures_keep_every_value_and_their_summary():
    f = records.figure("x", [3, 1, 2, 10], unit="images/s", n=50)
    assert (f["median"], f["min"], f["max"], f["repeat"], f["n"]) == (2.5, 1.0, 10.0, 4, 50)
    assert records.ratio("x / y", f, records.figure("y", [1.25], unit="images/s", n=50))["value"] == 2.0
    with pytest.raises(ValueError):
        records.figure("empty", [], unit="s", n=1)


def _fake_benchmarks(monkeypatch, calls):
    def good(ctx):
        calls.append(("good", ctx.tier, ctx.repeat))
        f = records.figure("stage", [10.0, 12.0, 11.0][: ctx.repeat], unit="images/s", n=40)
        g = records.figure("other stage", [5.0] * ctx.repeat, unit="images/s", n=40)
        return {"command": "python reports/bench/bench_fake.py --n 40", "params": {"n": 40}, "figures": [f, g],
                "ratios": [records.ratio("stage / other stage", f, g)],
                "facts": [records.fact("planted part found", "3/3", n=40)], "details": {}}

    def bad(ctx):
        calls.append(("bad", ctx.tier, ctx.repeat))
        raise RuntimeError("the fake benchmark broke")

    fakes = (suites.Benchmark("good", "A fake that works", good),
             suites.Benchmark("bad", "A fake that fails", bad),
             suites.Benchmark("slow", "Only in the full tier", bad, tiers=("full",)))
    monkeypatch.setattr(runner, "BENCHMARKS", fakes)
    monkeypatch.setattr(runner, "by_name", lambda: {b.name: b for b in fakes})


def test_main_writes_json_with_machine_and_block_and_carries_on_after_a_failure(tmp_path, monkeypatch):
    calls = []
    _fake_benchmarks(monkeypatch, calls)
    md, js = tmp_path / "benchmarks.md", tmp_path / "benchmarks.json"
    md.write_text(PROSE, "utf-8")
    code = runner.main(["--quick", "--note", "shared machine", "--markdown", str(md), "--json", str(js),
                        "--work", str(tmp_path / "work")])
    assert code == 1  # one benchmark failed
    assert calls == [("good", "quick", 2), ("bad", "quick", 2)]  # "slow" is full-tier only

    report = json.loads(js.read_text("utf-8"))
    machine = report["machine"]
    for key in ("cpu_model", "cores_visible", "ram_gib", "gpu", "os", "python", "torch", "git_commit", "date"):
        assert machine[key] not in (None, ""), key
    assert machine["cores_visible"] >= 1 and machine["ram_gib"] > 0
    assert report["tier"] == "quick" and report["repeat"] == 2 and report["note"] == "shared machine"
    good, bad = report["benchmarks"]["good"], report["benchmarks"]["bad"]
    assert good["status"] == "ok" and good["figures"][0]["median"] == 11.0
    assert good["figures"][0]["command"] == "python reports/bench/bench_fake.py --n 40"
    assert bad["status"] == "failed" and "the fake benchmark broke" in bad["error"]

    text = md.read_text("utf-8")
    assert remove_block(text) == PROSE
    block = text[text.index(BEGIN):text.index(END)]
    assert "Generated by `python -m reports.bench`" in block and "tier: quick" in block
    assert "Quick tier" in block and "Note: shared machine" in block and "Machine:" in block
    assert "| stage | 11 | 10 – 12 | images/s | 40 | 2 |" in block
    assert "stage / other stage: **2.2×**" in block
    assert "**Failed:**" in block and "the fake benchmark broke" in block
    assert "Not run: slow (--full)." in block


def test_a_partial_run_keeps_the_other_results_of_the_last_run(tmp_path, monkeypatch):
    _fake_benchmarks(monkeypatch, [])
    md, js = tmp_path / "benchmarks.md", tmp_path / "benchmarks.json"
    out = ["--markdown", str(md), "--json", str(js), "--work", str(tmp_path / "w")]
    runner.main(["--only", "good", *out])
    runner.main(["--only", "bad", *out])
    report = json.loads(js.read_text("utf-8"))
    assert report["benchmarks"]["good"]["status"] == "ok" and report["benchmarks"]["good"]["carried_from"]
    assert report["benchmarks"]["bad"]["status"] == "failed"
    assert "from the run of" in md.read_text("utf-8")


def test_a_missing_script_owned_by_others_is_recorded_not_raised(tmp_path):
    bench = suites.Benchmark("ghost", "Not written yet", suites.external("bench_does_not_exist"))
    rec = runner.run_one(bench, suites.Context(tier="quick", repeat=1, work=tmp_path))
    assert rec["status"] == "missing" and "bench_does_not_exist.py" in rec["error"]


def test_repair_results_become_figures_and_facts():
    # the shape bench_evaluate.py writes to WORK/results.json (one entry per plant)
    results = [{"plant": 0.95, "generator": "synth",
                "times": {"scan": {"seconds": 12.0, "max_rss_mb": 300.0}},
                "metrics": {"runs": [{"seconds": 60.0}, {"seconds": 80.0}, {"seconds": None}],
                            "summary": [{"train": "original", "method": "erm", "n_seeds": 1,
                                         "worst_group_accuracy_mean": 0.08, "worst_group_accuracy_std": float("nan"),
                                         "accuracy_mean": 0.6}]},
                "probes": {"original": {"parts": [{"flip_rate": 0.715, "n_pairs": 200}]},
                           "all_parts": {"parts": [{"flip_rate": 0.7}]}}}]
    figures, facts = suites.evaluate_records(results)
    by = {f["name"]: f for f in figures}
    assert by["synth, plant 0.95: scan step (once)"]["median"] == 12.0
    assert by["synth, plant 0.95: training + scoring one run"]["median"] == 70.0
    values = {f["name"]: f["value"] for f in facts}
    assert values["synth, plant 0.95: original / erm, worst-group accuracy, 1 seed(s)"] == "8.0% (accuracy 60.0%)"
    assert values["synth, plant 0.95: probe hair flip rate, ERM on original"] == "71.5%"
    assert len(facts) == 2  # the all-parts ranking is kept in details, not as a hair flip rate


def test_a_script_owned_by_others_runs_through_its_main_with_the_options_it_knows(tmp_path, monkeypatch):
    import types

    seen = []

    def main(argv):
        if argv == ["--help"]:
            print("usage: [--n N] [--repeat R] [--epochs-scale S]")
            raise SystemExit(0)
        seen.append(argv)
        print("| stage | images/s |")
        f = records.figure("segment (local)", [50.0, 60.0], unit="images/s", n=100)
        return {"figures": [f], "ratios": [records.ratio("ray / local", f, f)],
                "facts": {"ray_cpus": 2, "identity": {"findings_identical": True}}}

    (tmp_path / "bench_fake_engine.py").write_text("")
    monkeypatch.setattr(suites, "SCRIPTS", tmp_path)
    monkeypatch.setitem(sys.modules, "reports.bench.bench_fake_engine", types.SimpleNamespace(main=main))
    monkeypatch.setitem(suites.EXTERNAL_ARGS, "bench_fake_engine",
                        {"all": {"--repeat": lambda ctx: str(ctx.repeat)}, "quick": {"--n": "100", "--quick": None},
                         "default": {"--n": "5000"}})
    rec = runner.run_one(suites.Benchmark("fake", "Fake engine", suites.external("bench_fake_engine")),
                         suites.Context(tier="quick", repeat=2, work=tmp_path))
    assert rec["status"] == "ok", rec.get("error")
    assert seen == [["--repeat", "2", "--n", "100"]]  # --quick is not in its --help: left out
    assert rec["figures"][0]["median"] == 55.0 and rec["ratios"][0]["value"] == 1.0
    assert {f["name"]: f["value"] for f in rec["facts"]} == {"ray cpus": 2, "identity: findings identical": True}
    assert "| stage | images/s |" in rec["details"]["stdout"]
