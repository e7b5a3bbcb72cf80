"""Findings as sentences: the numbers a reviewer reads, checked by hand."""

from __future__ import annotations

from biasaudit.report.sentences import (
    contingency,
    deficit_cells,
    expected_counts,
    finding_sentence,
    format_ci,
    format_q,
)

ASSOC = {
    "kind": "association", "segment": "hair", "attribute": "hair colour: blond", "label": "Smiling",
    "summary": "hair colour 'blond' co-occurs with Smiling=1 ...",
    # 90 of the 100 smiling faces are blond; 100 blond of 200 → 50 expected
    "evidence": {"value": "blond", "attribute_kind": "colour",
                 "table": {"black": {"0": 90, "1": 10}, "blond": {"0": 10, "1": 90}},
                 "cells": [{"value": "blond", "label": "Smiling=0", "observed": 10, "expected": 50.0,
                            "std_residual": -11.3}]},
}


def test_association_sentence_gives_the_count_and_the_expected_count():
    assert finding_sentence(ASSOC) == (
        "Hair colour 'blond' predicts Smiling=1: 90 of the 100 images with Smiling=1 show it, where 50 "
        "would be expected if hair colour did not depend on Smiling.")


def test_association_on_a_sensitive_column_says_tied_to():
    assert "is tied to Smiling=1" in finding_sentence(ASSOC, sensitive=["Smiling"])


def test_expected_counts_are_row_total_times_column_total_over_n():
    rows, cols, counts = contingency({"table": {"a": {"0": 30, "1": 10}, "b": {"0": 20, "1": 40}}})
    assert rows == ["a", "b"] and cols == ["0", "1"]
    # a: 40 of 100, column 0: 50 of 100 → 20 expected
    assert expected_counts(counts) == [[20.0, 20.0], [30.0, 30.0]]


def test_under_representation_and_shortcut_sentences():
    under = {"kind": "under_representation", "attribute": "hair colour: red", "label": None,
             "evidence": {"observed": 13, "n": 288, "expected_share": 0.2, "value": "red"}}
    assert finding_sentence(under) == ("Hair colour 'red' is rare: 13 of 288 images (4.5%), where an even share "
                                       "would be 58 (20%).")
    short = {"kind": "shortcut", "segment": "hair", "attribute": "hair appearance (embedding)", "label": "Smiling",
             "evidence": {"auc": 0.91, "whole_image_auc": 0.95}}
    assert finding_sentence(short).startswith("The hair region alone predicts Smiling: a linear probe")
    assert "AUC 0.91 (the whole image: 0.95)" in finding_sentence(short)


def test_unknown_or_partial_findings_fall_back_to_the_summary():
    assert finding_sentence({"kind": "new_kind", "summary": "something odd"}) == "Something odd"
    broken = {**ASSOC, "evidence": {"value": "blond", "table": "not a table"}}
    assert finding_sentence(broken) == "Hair colour 'blond' co-occurs with Smiling=1 ..."
    assert finding_sentence({}) == "(no summary)"


def test_deficit_cells_and_formats():
    assert deficit_cells(ASSOC["evidence"]) == {("blond", "0")}
    assert format_ci([0.72, 0.8697]) == "0.72–0.87"
    assert format_ci(None) == ""
    assert format_q(3.2e-37) == "3.2e-37" and format_q(0.0042) == "0.004" and format_q(None) == "–"
