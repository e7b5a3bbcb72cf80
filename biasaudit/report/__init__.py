"""The HTML bias report (DESIGN.md §11): one self-contained file per workspace.

>>> from biasaudit.report import write_report
>>> write_report("WS")  # doctest: +SKIP
PosixPath('WS/report.html')
"""

from biasaudit.report.inputs import ReportInputs, load_inputs
from biasaudit.report.refresh import find_workspace, refresh_report
from biasaudit.report.render import SECTIONS, ReportOptions, render_report, write_report

__all__ = ["SECTIONS", "ReportInputs", "ReportOptions", "find_workspace", "load_inputs", "refresh_report",
           "render_report", "write_report"]
