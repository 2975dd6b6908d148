"""Reports: the paper's tables and figures from stored runs, in one HTML file.

``build_report(inputs, out)`` reads run directories, sweeps or score tables (finished or
not), computes every number with ``xlcl.metrics``, and writes ``out/tables/`` (Markdown,
LaTeX, CSV), ``out/figures/`` (PNG, PDF) and ``out/report.html``. See ``docs/reports.md``.
"""

from xlcl.reports.analysis import LabelSummary, shared_metric, summarize_labels
from xlcl.reports.build import ReportFiles, build_report
from xlcl.reports.collect import Collected, ReportInputError, ReportRun, collect
from xlcl.reports.figures import Plot, all_plots, save_plot
from xlcl.reports.html import render_html
from xlcl.reports.tables import Table, per_locale_table, table1, table2, write_table

__all__ = [
    "Collected",
    "LabelSummary",
    "Plot",
    "ReportFiles",
    "ReportInputError",
    "ReportRun",
    "Table",
    "all_plots",
    "build_report",
    "collect",
    "per_locale_table",
    "render_html",
    "save_plot",
    "shared_metric",
    "summarize_labels",
    "table1",
    "table2",
    "write_table",
]
