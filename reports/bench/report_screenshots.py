"""Screenshots of a report in headless Chromium: its first screen (1280 × 900) and its
first finding, as committed under ``reports/``.

    python reports/bench/report_screenshots.py biasaudit-demo/ws/report.html reports/
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "report"))


def main(report: str, out_dir: str = "reports") -> int:
    from report_browser import is_blank, load_report

    out = Path(out_dir)
    first, findings = out / "report_first_screen.png", out / "report_findings.png"
    loaded = load_report(Path(report), screenshot=first, findings_shot=findings)
    assert not loaded.console_errors and not loaded.requests and not is_blank(loaded.screenshot)
    print(f"wrote {first} and {findings} ({len(loaded.images)} images, loaded in {loaded.load_seconds:.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
