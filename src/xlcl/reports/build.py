"""``build_report``: stored runs in, ``report.html``, ``tables/`` and ``figures/`` out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from xlcl.metrics import DEFAULT_HOPS, MetricsInputError
from xlcl.metrics.bootstrap import DEFAULT_RESAMPLES, Bootstrap
from xlcl.reports.analysis import locale_facts, summarize_labels, with_intervals
from xlcl.reports.claims import claims_table
from xlcl.reports.collect import ReportInputError, collect
from xlcl.reports.figures import Plot, all_plots, save_plot
from xlcl.reports.html import HtmlFigure, Planner, Remedies, render_html
from xlcl.reports.planner import planner_section
from xlcl.reports.remedies import remedies_plot, remedies_table
from xlcl.reports.tables import per_locale_table, table1, table2, write_table

REPORT = "report.html"
TABLES = "tables"
FIGURES = "figures"


@dataclass(frozen=True)
class ReportFiles:
    """What ``build_report`` wrote, and the notes the report carries."""

    html: Path
    tables: list[Path]
    figures: list[Path]
    n_runs: int
    notes: list[str] = field(default_factory=list)


def build_report(
    inputs: Sequence[Path],
    out: Path,
    hops: int = DEFAULT_HOPS,
    resamples: int = DEFAULT_RESAMPLES,
) -> ReportFiles:
    """Write the report of the runs in ``inputs`` (run or sweep directories, score tables).

    Finished runs are aggregated per label (method, rank, model), mean ± std over orders;
    unfinished ones are shown with the steps they have, each on its own. Where runs keep
    per-utterance counts, Tables 1 and 2 add 95% bootstrap intervals (`resamples`, seed 0).
    Interference models in an input's ``planner/`` folder add the Planner section; runs of
    the paper's methods add the paper's claims, tested (`xlcl.reports.claims`).
    Raises ``ReportInputError`` when the inputs hold nothing to report, or counts that
    disagree with their score table.
    """
    collected = collect(inputs)
    notes = [f"Left out {path}: {reason}." for path, reason in collected.left_out]
    partial = [r for r in collected.runs if r.partial]
    if partial:
        notes.append(
            f"{len(partial)} unfinished run(s) shown with their complete steps only, "
            "each on its own row, never averaged with finished runs."
        )
    summaries = summarize_labels(collected.runs, hops)
    boot = Bootstrap(resamples=resamples)  # one set of draws for every interval of the report
    try:
        summaries = with_intervals(summaries, boot)
    except MetricsInputError as err:
        raise ReportInputError(str(err)) from err
    missing = [m for s in summaries if s.intervals for m in s.intervals.missing]
    if any(s.intervals and s.intervals.intervals for s in summaries):
        notes += [f"No 95% CI for {m}." for m in missing]
    elif missing:
        runs = sum(len(s.runs) for s in summaries if s.intervals)
        if len(missing) == runs:
            notes.append("No 95% CIs: no run has per-utterance counts (utterances.npz).")
        else:  # some runs have counts, but every label also has one without
            notes.append(
                "No 95% CIs: a label gets them only when each of its runs has per-utterance "
                "counts (utterances.npz), and every label has a run without: "
                f"{'; '.join(missing)}."
            )
    facts = locale_facts()
    tables = [table1(summaries, facts), table2(summaries)]
    claims = claims_table(summaries, boot, facts, hops)
    if claims is not None:
        tables.append(claims)
    per_locale = per_locale_table(summaries, facts)
    table_paths = []
    for table in [*tables, per_locale]:
        if table.display.empty:
            notes.append(f"{table.title} left out: no run gives it.")
        else:
            table_paths += write_table(table, out / TABLES)
    plots, plot_notes = all_plots(summaries, facts)
    notes += plot_notes
    figure_paths: list[Path] = []
    html_figures: list[HtmlFigure] = []
    for plot in plots:
        paths, figure = _save_plot(plot, out)
        figure_paths += paths
        html_figures.append(figure)
    remedies = None
    remedy_table, remedy_plot = remedies_table(summaries), remedies_plot(summaries)
    if remedy_table is not None and remedy_plot is not None:
        table_paths += write_table(remedy_table, out / TABLES)
        paths, figure = _save_plot(remedy_plot, out)
        figure_paths += paths
        remedies = Remedies(remedy_table, figure)
    planner = None
    section, planner_notes = planner_section(inputs, summaries, boot)
    notes += planner_notes
    if section is not None:
        for table in (section.predictions, section.weights):
            table_paths += write_table(table, out / TABLES)
        paths, figure = _save_plot(section.plot, out)
        figure_paths += paths
        planner = Planner(section.predictions, section.weights, figure)
    html = out / REPORT
    page = render_html(
        tables, per_locale, html_figures, collected.runs, notes, inputs, remedies, planner
    )
    html.write_text(page, encoding="utf-8")
    return ReportFiles(html, table_paths, figure_paths, len(collected.runs), notes)


def _save_plot(plot: Plot, out: Path) -> tuple[list[Path], HtmlFigure]:
    """``plot`` saved under ``out/figures``: its files, and the figure as the page shows it."""
    png, pdf = save_plot(plot, out / FIGURES)
    return [png, pdf], HtmlFigure(plot.name, plot.title, plot.caption, png.read_bytes())
