"""`biasaudit validate` end to end on generated folders (CliRunner, no subprocess)."""

from __future__ import annotations

import json
import os

import pytest
from click.testing import CliRunner
from PIL import Image

from biasaudit.cli import main
from biasaudit.data import Manifest
from biasaudit.data.testing import gradient, tree_hashes, write_bad_inputs, write_ccp


def run(*args: str):
    return CliRunner().invoke(main, ["validate", *map(str, args)])


@pytest.fixture()
def bad(tmp_path):
    return write_bad_inputs(tmp_path / "bad")


def test_bad_folder_lists_every_problem_by_name_and_exits_0(bad, tmp_path):
    before = tree_hashes(bad.root)
    out_file = tmp_path / "out" / "manifest.parquet"
    result = run(bad.root, "--manifest", out_file)
    assert tree_hashes(bad.root) == before
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output and result.exception is None
    lines = result.output.splitlines()
    for name, phrase in {**bad.errors, **bad.warnings}.items():
        # Rows for labels.csv entries are printed under labels.csv with the entry in the reason.
        hits = [ln for ln in lines if (ln.strip().startswith(f"{name}: ") or f"'{name}'" in ln) and phrase in ln]
        assert hits, f"{name} ({phrase}) not reported:\n{result.output}"
    n_ok = len(bad.ok)
    assert f"  ok             {n_ok}" in result.output
    assert f"Errors ({len(bad.errors)}):" in result.output
    assert Manifest.load(out_file).n_ok == n_ok


def test_json_output(bad):
    result = run(bad.root, "--json", "--workers", "2")
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert (info["ok"], info["errors"], info["usable"]) == (len(bad.ok), len(bad.errors), True)
    assert info["label_columns"] == ["smiling"]
    paths = {e["path"] for e in info["error_list"]}
    assert "images/bomb.png" in paths and "images/caf\\xe9.png" in paths


def test_manifest_inside_data_is_refused(bad):
    before = tree_hashes(bad.root)
    result = run(bad.root, "--manifest", bad.root / "manifest.parquet")
    assert result.exit_code == 2
    assert "never written to" in result.output
    assert tree_hashes(bad.root) == before


def test_empty_folder_exits_1_with_a_clear_message(tmp_path):
    result = run(tmp_path)
    assert result.exit_code == 1
    assert "Error:" in result.output and "the folder is empty" in result.output
    assert "Traceback" not in result.output


def test_empty_images_folder_exits_1(tmp_path):
    (tmp_path / "images").mkdir()
    result = run(tmp_path)
    assert result.exit_code == 1
    assert "is not usable: it holds no image files" in result.output


def test_only_bad_images_exit_1_after_listing_them(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.jpg").write_bytes(b"")
    (tmp_path / "images" / "b.png").write_text("nope")
    result = run(tmp_path)
    assert result.exit_code == 1
    assert "images/a.jpg: the file is empty" in result.output
    assert "images/b.png: is not readable as an image" in result.output
    assert "none of its 2 entries is a readable image" in result.output
    assert "Traceback" not in result.output


def test_user_errors_are_clean(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    Image.fromarray(gradient(3, 3)).save(tmp_path / "images" / "a.png")
    result = run(tmp_path)
    assert result.exit_code == 1 and "pass --schema" in result.output
    result = run(tmp_path, "--schema", "nonsense")
    assert result.exit_code == 1 and "'nonsense' is neither a built-in schema" in result.output
    result = run(tmp_path / "missing")
    assert result.exit_code == 1 and "does not exist" in result.output
    assert "Traceback" not in result.output


def test_forced_layout(tmp_path):
    write_ccp(tmp_path / "ccp", n=2)
    result = run(tmp_path / "ccp", "--layout", "ccp")
    assert result.exit_code == 0 and "(layout ccp, schema ccp)" in result.output
    assert "label columns  58 (accessories, bag" in result.output
    result = run(tmp_path / "ccp", "--layout", "lip")
    assert result.exit_code == 1 and "holds no LIP image folders" in result.output


def test_notes_not_tied_to_an_image_are_listed(tmp_path):
    from biasaudit.data.testing import write_celebamask_hq

    base = write_celebamask_hq(tmp_path / "celeba", n=3, size=16)
    (base / "CelebA-HQ-img" / "1.jpg").unlink()
    for p in base.rglob("00001_*.png"):
        p.unlink()
    result = run(tmp_path / "celeba")
    assert result.exit_code == 0, result.output
    assert "Notes (1):" in result.output
    # one image: singular grammar throughout the sentence
    assert ("CelebAMask-HQ-attribute-anno.txt: lists 1 image that is not in this copy (1.jpg); its row is "
            "ignored") in result.output
    (base / "CelebA-HQ-img" / "2.jpg").unlink()
    for p in base.rglob("00002_*.png"):
        p.unlink()
    result = run(tmp_path / "celeba")
    assert ("CelebAMask-HQ-attribute-anno.txt: lists 2 images that are not in this copy (1.jpg, 2.jpg); their "
            "rows are ignored") in result.output


def test_real_process_no_traceback_even_on_a_latin1_terminal(bad, tmp_path):
    import subprocess
    import sys

    env = {**os.environ, "PYTHONIOENCODING": "latin-1", "BIASAUDIT_PROGRESS": "0"}
    ok = subprocess.run([sys.executable, "-m", "biasaudit", "validate", str(bad.root)],
                        capture_output=True, env=env)
    assert ok.returncode == 0, ok.stderr.decode("latin-1")
    assert b"Traceback" not in ok.stderr + ok.stdout
    assert b"images/\\ufb01\\u540d e\\u0301.png: file name is not in Unicode NFC form" in ok.stdout
    (tmp_path / "empty").mkdir()
    empty = subprocess.run([sys.executable, "-m", "biasaudit", "validate", str(tmp_path / "empty")],
                           capture_output=True, env=env)
    assert empty.returncode == 1
    assert b"Traceback" not in empty.stderr and b"the folder is empty" in empty.stderr


def test_max_pixels_option(tmp_path):
    (tmp_path / "images").mkdir()
    Image.fromarray(gradient(10, 10)).save(tmp_path / "images" / "a.png")
    Image.fromarray(gradient(4, 4)).save(tmp_path / "images" / "b.png")
    result = run(tmp_path, "--max-pixels", "50")
    assert result.exit_code == 0
    assert "images/a.png: declares 10×10 = 100 pixels, more than the limit of 50" in result.output
