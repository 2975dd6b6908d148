"""`xlcl metrics INPUT... [--json] [--hops H] [--groups FILE] [--ci] [--diff A B]`.

Forgetting and transfer. INPUT is a run directory, a sweep directory, or a score table
(CSV / Parquet, long or square); see docs/metrics.md. The tables name the score by its
metric ("final span F1", "final intent accuracy"). ``--ci`` adds bootstrap confidence
intervals where runs keep per-utterance counts; ``--diff A B`` gives the difference of A's
and B's metrics with its interval. Invalid input exits with code 2 and a one-line error.
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
    Run,
    attribute_groupings,
    build_summary,
    load,
    read_grouping,
)
from xlcl.metrics.across import SCALARS
from xlcl.metrics.bootstrap import DEFAULT_LEVEL, DEFAULT_RESAMPLES, DEFAULT_SEED, Bootstrap
from xlcl.metrics.groups import Grouping, known_locales
from xlcl.metrics.intervals import difference, settings, with_intervals
from xlcl.metrics.summary import json_safe

CI_SHOWN = ("final_score", "cbt", "cft")  # the intervals the tables show


def metrics(
    inputs: Annotated[
        list[Path] | None,
        typer.Argument(help="Run directories, sweep directories or score tables (CSV, Parquet)."),
    ] = None,
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
    ci: Annotated[
        bool,
        typer.Option("--ci", help="Bootstrap intervals of final score, CBT and CFT."),
    ] = False,
    resamples: Annotated[
        int, typer.Option("--resamples", min=1, help="Bootstrap resamples.")
    ] = DEFAULT_RESAMPLES,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the resamples.")] = DEFAULT_SEED,
    level: Annotated[
        float, typer.Option("--level", help="Confidence level of the intervals, in (0, 1).")
    ] = DEFAULT_LEVEL,
    diff: Annotated[
        tuple[Path, Path] | None,
        typer.Option(
            "--diff",
            metavar="A B",
            help="Runs A minus runs B (run or sweep directories), with intervals.",
        ),
    ] = None,
) -> None:
    """Forgetting and transfer metrics per run, over runs, per locale and per group."""
    document: dict[str, Any] = {}
    notes: list[str] = []
    try:
        boot = Bootstrap(resamples, seed, level) if ci or diff else None
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="'--level'") from None
    try:
        if inputs:
            loaded = load(inputs)
            notes += [f"skipped {path}: {reason}" for path, reason in loaded.skipped]
            locales = sorted({loc for run in loaded.runs for loc in run.matrix.order})
            facts = known_locales()
            groupings: dict[str, Grouping] = dict(attribute_groupings(locales, facts))
            if groups is not None:
                groupings["user"] = read_grouping(groups, known=set(facts) | set(locales))
            document = build_summary(loaded.runs, hops=hops, groupings=groupings)
            if boot is not None and ci:
                document, missing = with_intervals(document, loaded.runs, boot)
                notes += missing
        elif diff is None:
            raise MetricsInputError("no INPUT: give run or sweep directories or score tables")
        if boot is not None and diff is not None:
            first, second = (_runs_of(path, notes) for path in diff)
            document = {**document, "ci": settings(boot), "diff": difference(first, second, boot)}
    except MetricsInputError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(code=2) from None
    for note in notes:
        typer.echo(note, err=True)
    document = json_safe(document)
    if json_out:
        typer.echo(json.dumps(document, allow_nan=False, ensure_ascii=False))
        return
    console = Console()
    if "runs" in document:
        _print_tables(document, console, with_ci=ci)
    if "diff" in document:
        _print_diff(document, diff, console)


def _runs_of(path: Path, notes: list[str]) -> list[Run]:
    """The finished runs of one side of ``--diff``."""
    loaded = load([path])
    notes += [f"skipped {skipped}: {reason}" for skipped, reason in loaded.skipped]
    if not loaded.runs:
        raise MetricsInputError(f"--diff: no finished run in {path}")
    return loaded.runs


def _print_diff(document: dict[str, Any], paths: Any, console: Console) -> None:
    diff, boot = document["diff"], document["ci"]
    level = _percent(boot["level"])
    table = Table(
        title=f"{paths[0]} (A, {len(diff['a']['runs'])} run(s)) minus {paths[1]} "
        f"(B, {len(diff['b']['runs'])} run(s)): {level} CI of {boot['resamples']} paired "
        f"resamples, seed {boot['seed']}"
    )
    for column in ("metric", "A", "B", "A − B", f"{level} CI"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    names = _scalar_names(diff["metric"])
    for name, entry in diff["difference"].items():
        table.add_row(
            names[name],
            _num(diff["a"][name]["estimate"]),
            _num(diff["b"][name]["estimate"]),
            _num(entry["estimate"]),
            _interval(entry),
        )
    console.print(table)


def _print_tables(summary: dict[str, Any], console: Console, with_ci: bool = False) -> None:
    metrics = sorted({run["metric"] for run in summary["runs"].values()})
    shared = metrics[0] if len(metrics) == 1 else None
    names = _scalar_names(shared or "score")
    level = _percent(summary["ci"]["level"]) if with_ci else None
    title = "Runs" if level is None else f"Runs ({level} CI: {_ci_about(summary['ci'])})"
    runs = Table(title=title)
    text = ["run", "label"] + ([] if shared else ["score"])
    shown = [] if level is None else [f"{names[s]} {level} CI" for s in CI_SHOWN]
    for column in (*text, "T", *names.values(), *shown):
        runs.add_column(column, justify="left" if column in text else "right")
    for run_id, run in summary["runs"].items():
        cells = [run_id, run["label"]] + ([] if shared else [run["metric"]])
        intervals = [] if level is None else [_interval(_ci(run, s)) for s in CI_SHOWN]
        runs.add_row(*cells, str(len(run["order"])), *[_num(run[s]) for s in SCALARS], *intervals)
    console.print(runs)
    for label, agg in summary["aggregate"].items():
        _print_aggregate(label, agg, console, level)


def _print_aggregate(label: str, agg: dict[str, Any], console: Console, level: str | None) -> None:
    scalars = Table(title=f"{label}: mean ± std over {agg['n_runs']} run(s)")
    scalars.add_column("metric")
    scalars.add_column("mean ± std", justify="right")
    scalars.add_column("n", justify="right")
    if level is not None:
        scalars.add_column(f"{level} CI of the mean", justify="right")
    names = _scalar_names(agg["metric"])
    for name, stats in agg["scalars"].items():
        mean_std = f"{_num(stats['mean'])} ± {_num(stats['std'])}"
        interval = [] if level is None else [_interval(_ci(agg, name))]
        scalars.add_row(names[name], mean_std, str(stats["n"]), *interval)
    console.print(scalars)
    if level is not None and agg.get("ci") is None:
        console.print(f"{label}: no interval ({agg.get('ci_note')})")
    per_locale = Table(title=f"{label}: per locale (mean over runs; n = cells; hop 1 shown)")
    final = names["final_score"]
    shown = [] if level is None else [f"{level} CI"]
    for column in ("locale", final, *shown, "perf shift", "learning gain", "MFT h1", "MBT h1"):
        per_locale.add_column(column, justify="left" if column == "locale" else "right")
    for locale, entry in agg["locales"].items():
        interval = [] if level is None else [_interval(entry["final_score"].get("ci"))]
        per_locale.add_row(
            locale,
            _cell(entry["final_score"]["mean"], entry["final_score"]["n"]),
            *interval,
            _cell(entry["perf_shift"]["mean"], entry["perf_shift"]["n"]),
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


def _ci(entry: dict[str, Any], name: str) -> dict[str, Any] | None:
    """The interval of `name` in a run's or label's entry; None where there is none."""
    intervals = entry.get("ci")
    return None if intervals is None else intervals.get(name)


def _interval(entry: dict[str, Any] | None) -> str:
    if entry is None or entry["low"] is None:
        return "–"
    return f"[{_num(entry['low'])}, {_num(entry['high'])}]"


def _percent(level: float) -> str:
    return f"{level * 100:g}%"


def _ci_about(settings: dict[str, Any]) -> str:
    return f"{settings['resamples']} resamples of the test utterances, seed {settings['seed']}"


def _hop(values: list[Any]) -> Any:
    return values[1] if len(values) > 1 else None


def _num(value: float | None) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:.4f}"


def _cell(value: float | None, n: int | None) -> str:
    return f"{_num(value)} ({n})" if n else "–"
