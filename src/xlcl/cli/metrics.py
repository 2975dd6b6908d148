"""`xlcl metrics INPUT... [--json] [--hops H] [--groups FILE]`: forgetting and transfer.

INPUT is a run directory, a sweep directory, or a score table (CSV / Parquet, long or
square); see docs/metrics.md. The tables name the score by its metric ("final span F1",
"final intent accuracy"). Invalid input exits with code 2 and a one-line error.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from xlcl.metrics import (
    DEFAULT_HOPS,
    MetricsInputError,
    attribute_groupings,
    build_summary,
    load,
    read_grouping,
)
from xlcl.metrics.across import SCALARS
from xlcl.metrics.groups import Grouping, known_locales


def metrics(
    inputs: Annotated[
        list[Path],
        typer.Argument(help="Run directories, sweep directories or score tables (CSV, Parquet)."),
    ],
    json_out: Annotated[
        bool, typer.Option("--json", help="Print one JSON document (NaN as null).")
    ] = False,
    hops: Annotated[
        int, typer.Option("--hops", min=0, help="Largest hop distance H of MFT and MBT.")
    ] = DEFAULT_HOPS,
    groups: Annotated[
        Path | None,
        typer.Option("--groups", help="CSV 'locale,group': an extra grouping of the locales."),
    ] = None,
) -> None:
    """Forgetting and transfer metrics per run, over runs, per locale and per group."""
    try:
        loaded = load(inputs)
        locales = sorted({loc for run in loaded.runs for loc in run.matrix.order})
        facts = known_locales()
        groupings: dict[str, Grouping] = dict(attribute_groupings(locales, facts))
        if groups is not None:
            groupings["user"] = read_grouping(groups, known=set(facts) | set(locales))
        summary = build_summary(loaded.runs, hops=hops, groupings=groupings)
    except MetricsInputError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(code=2) from None
    for path, reason in loaded.skipped:
        typer.echo(f"skipped {path}: {reason}", err=True)
    if json_out:
        typer.echo(json.dumps(summary, allow_nan=False, ensure_ascii=False))
    else:
        _print_tables(summary, Console())


def _print_tables(summary: dict[str, Any], console: Console) -> None:
    metrics = sorted({run["metric"] for run in summary["runs"].values()})
    shared = metrics[0] if len(metrics) == 1 else None
    names = _scalar_names(shared or "score")
    runs = Table(title="Runs")
    text = ["run", "label"] + ([] if shared else ["score"])
    for column in (*text, "T", *names.values()):
        runs.add_column(column, justify="left" if column in text else "right")
    for run_id, run in summary["runs"].items():
        cells = [run_id, run["label"]] + ([] if shared else [run["metric"]])
        runs.add_row(*cells, str(len(run["order"])), *[_num(run[s]) for s in SCALARS])
    console.print(runs)
    for label, agg in summary["aggregate"].items():
        _print_aggregate(label, agg, console)


def _print_aggregate(label: str, agg: dict[str, Any], console: Console) -> None:
    scalars = Table(title=f"{label}: mean ± std over {agg['n_runs']} run(s)")
    scalars.add_column("metric")
    scalars.add_column("mean ± std", justify="right")
    scalars.add_column("n", justify="right")
    names = _scalar_names(agg["metric"])
    for name, stats in agg["scalars"].items():
        mean_std = f"{_num(stats['mean'])} ± {_num(stats['std'])}"
        scalars.add_row(names[name], mean_std, str(stats["n"]))
    console.print(scalars)
    per_locale = Table(title=f"{label}: per locale (mean over runs; n = cells; hop 1 shown)")
    final = names["final_score"]
    for column in ("locale", final, "perf shift", "learning gain", "MFT h1", "MBT h1"):
        per_locale.add_column(column, justify="left" if column == "locale" else "right")
    for locale, entry in agg["locales"].items():
        per_locale.add_row(
            locale,
            *[_cell(entry[q]["mean"], entry[q]["n"]) for q in ("final_score", "perf_shift")],
            _cell(entry["learning_gain"]["mean"], entry["learning_gain"]["n"]),
            *[_cell(_hop(entry[p]["mean"]), _hop(entry[p]["n"])) for p in ("mft", "mbt")],
        )
    console.print(per_locale)
    for name, table in agg["groups"].items():
        _print_groups(label, name, table, agg["ungrouped"][name], final, console)


def _print_groups(
    label: str,
    name: str,
    table: dict[str, Any],
    left_out: list[str],
    final: str,
    console: Console,
) -> None:
    title = f"{label}: by {name}"
    if left_out:
        title += f" (not grouped: {', '.join(left_out)})"
    groups = Table(title=title)
    for column in (
        "group",
        "locales",
        final,
        "perf shift",
        "learning gain",
        "MFT h1",
        "MBT h1",
    ):
        groups.add_column(column, justify="left" if column == "group" else "right")
    for group, entry in table.items():
        groups.add_row(
            group,
            str(entry["n_locales"]),
            *[_num(entry[q]) for q in ("final_score", "perf_shift", "learning_gain")],
            *[_num(_hop(entry[p])) for p in ("mft", "mbt")],
        )
    console.print(groups)


def _scalar_names(metric: str) -> dict[str, str]:
    """How the tables name each scalar: the score's by its metric (``final span F1``)."""
    named = {"final_score": f"final {metric}", "learning_score": f"learning {metric}"}
    return {name: named.get(name, name) for name in SCALARS}


def _hop(values: list[Any]) -> Any:
    return values[1] if len(values) > 1 else None


def _num(value: float | None) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:.4f}"


def _cell(value: float | None, n: int | None) -> str:
    return f"{_num(value)} ({n})" if n else "–"
