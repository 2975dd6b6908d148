"""`xlcl plan fit RESULTS... --out MODEL` and `xlcl plan order --locales L1,L2,... [--model]`.

``fit`` fits the interference model on measured runs (one label: method, rank, encoder,
task, strategy) and prints its leave-one-locale-out error and feature weights; ``order``
plans the order of some locales with it, or with the facts baseline when no model is given;
``overlap`` computes the optional subword-overlap table. See docs/planner.md. Bad input is
a one-line error and exit code 2.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from xlcl.cli.errors import fail

if TYPE_CHECKING:
    from xlcl.planner import OverlapTable, Plan

app = typer.Typer(
    help="Plan the order of locales that forgets least (issue #18; docs/planner.md).",
    no_args_is_help=True,
)


@app.command("fit")
def fit(
    results: Annotated[
        list[Path], typer.Argument(help="Results (sweep) directories or run directories.")
    ],
    out: Annotated[Path, typer.Option("--out", help="Where to write the model (JSON).")],
    label: Annotated[
        str | None,
        typer.Option("--label", help="Fit the runs of this label (as `xlcl metrics` names it)."),
    ] = None,
    overlap: Annotated[
        Path | None,
        typer.Option("--overlap", help="Subword overlap table (xlcl plan overlap) as a feature."),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """Fit the interference model on measured runs; report its cross-validated error."""
    from xlcl.metrics import MetricsInputError, load
    from xlcl.planner import PlannerError, uriel_distances
    from xlcl.planner import fit as fit_model

    notes: list[str] = []
    try:
        loaded = load(results)
        notes += [f"skipped {path}: {reason}" for path, reason in loaded.skipped]
        runs = loaded.runs
        if label is not None:
            labels = sorted({run.label for run in runs})
            runs = [run for run in runs if run.label == label]
            if not runs:
                raise PlannerError(f"no run labelled {label!r}; the labels: {'; '.join(labels)}")
        locales = sorted({loc for run in runs for loc in run.matrix.order})
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            distances = uriel_distances(locales)
        notes += [f"warning: {warning.message}" for warning in caught]
        report = fit_model(runs, distances, _read_overlap(overlap))
    except (MetricsInputError, PlannerError) as err:
        fail(str(err))
    model = report.model
    out.parent.mkdir(parents=True, exist_ok=True)
    model.save(out)
    for note in notes:
        typer.echo(note, err=True)
    summary = {
        "model": str(out),
        "kept": model.label(),
        "for": {
            "task": model.provenance.task,
            "model": model.provenance.model,
            "method": model.provenance.method,
        },
        "runs": len(model.provenance.runs),
        "cells": len(model.table.target),
        "leave_one_locale_out": model.cross_validation,
        "weights": model.estimator.weights(model.columns),
        "seconds": round(report.seconds, 2),
    }
    if json_out:
        typer.echo(json.dumps(summary))
        return
    _print_fit(summary)


def _print_fit(summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    fitted = summary["for"]
    console.print(
        f"{summary['model']}: {summary['kept']} on {summary['cells']} cells of "
        f"{summary['runs']} runs ({fitted['method']}, task {fitted['task']}), "
        f"{summary['seconds']} s"
    )
    errors = Table(title="Leave-one-locale-out error of the predicted effect")
    for column in ("estimator", "MAE", "RMSE"):
        errors.add_column(column, justify="left" if column == "estimator" else "right")
    for name, entry in summary["leave_one_locale_out"].items():
        errors.add_row(name, f"{entry['mae']:.4f}", f"{entry['rmse']:.4f}")
    console.print(errors)
    kind = "coefficient (standardised)" if summary["kept"].startswith("ridge") else "importance"
    weights = Table(title=f"Feature weights: {kind}")
    weights.add_column("feature")
    weights.add_column(kind, justify="right")
    for name, value in summary["weights"].items():
        weights.add_row(name, f"{value:+.4f}")
    console.print(weights)


@app.command("order")
def order(
    locales: Annotated[
        str, typer.Option("--locales", help="The locales to order, comma-separated.")
    ],
    model_path: Annotated[
        Path | None,
        typer.Option("--model", help="A fitted model (xlcl plan fit); else the facts baseline."),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="The run config the order is for: its task, encoder "
            "and method must be the model's.",
        ),
    ] = None,
    objective: Annotated[
        str, typer.Option("--objective", help="cbt or final-f1 (predicted).")
    ] = "cbt",
    worst: Annotated[
        bool, typer.Option("--worst", help="Find the most destructive order instead.")
    ] = False,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the random orders.")] = 0,
    overlap: Annotated[
        Path | None,
        typer.Option("--overlap", help="Subword overlap table, for a model fitted with one."),
    ] = None,
    config_out: Annotated[
        Path | None,
        typer.Option("--config-out", help="Write a run-config fragment with the planned order."),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """Plan the order of locales: the best predicted CBT, beside the paper's and random."""
    from xlcl.config import ConfigError
    from xlcl.data import DataError
    from xlcl.planner import PlannerError, check_fitted_for, load_model, plan_order

    wanted = [locale.strip() for locale in locales.split(",") if locale.strip()]
    try:
        model = load_model(model_path) if model_path is not None else None
        if config is not None:
            from xlcl.catalog import find_config
            from xlcl.config import load_config

            run_config = load_config(find_config(config))
            if model is not None:
                check_fitted_for(model, run_config)
        plan = plan_order(wanted, model, objective, worst, seed, _read_overlap(overlap))
    except (PlannerError, DataError, ConfigError) as err:
        fail(str(err))
    for note in plan.notes:
        typer.echo(f"warning: {note}", err=True)
    if config_out is not None:
        config_out.write_text(config_fragment(plan), encoding="utf-8")
    if json_out:
        typer.echo(json.dumps(plan.to_json(), ensure_ascii=False))
        return
    _print_plan(plan)


def config_fragment(plan: Plan) -> str:
    """A run-config fragment: ``order:`` as a YAML flow list, its ``--set`` in the header."""
    flow = "[" + ", ".join(plan.order) + "]"
    predicted = "" if plan.predicted is None else f", predicted CBT {plan.predicted['cbt']:.4f}"
    return (
        f"# xlcl plan order: {plan.basis}, {plan.search}{predicted}\n"
        f"# use it: xlcl run CONFIG --set 'order={flow}'  (or copy order: into CONFIG)\n"
        f"order: {flow}\n"
    )


def _print_plan(plan: Plan) -> None:
    typer.echo(f"planned order ({plan.basis}; {plan.search}):")
    typer.echo("  " + " ".join(plan.order))
    if plan.predicted is None:
        typer.echo("no predicted CBT: the facts baseline ranks locales by their facts alone")
        return
    typer.echo(
        f"predicted CBT {plan.predicted['cbt']:+.4f}, final F1 {plan.predicted['final_f1']:.4f}"
    )
    for number, entry in (plan.paper or {}).items():
        typer.echo(
            f"  paper order {number}: CBT {entry['cbt']:+.4f}, final F1 {entry['final_f1']:.4f}"
        )
    spread = plan.random or {}
    if spread:
        cbt = spread["cbt"]
        typer.echo(
            f"  {spread['n']} random orders (seed {spread['seed']}): CBT mean "
            f"{cbt['mean']:+.4f}, range [{cbt['min']:+.4f}, {cbt['max']:+.4f}]; "
            f"the plan beats {spread['plan_beats']}"
        )


@app.command("overlap")
def overlap_table(
    locales: Annotated[str, typer.Option("--locales", help="The locales, comma-separated.")],
    tokenizer: Annotated[
        str,
        typer.Option("--tokenizer", help="A tokenizer.json file, or a tokenizer's directory."),
    ],
    out: Annotated[Path, typer.Option("--out", help="Where to write the table (JSON).")],
    data: Annotated[
        str | None,
        typer.Option("--data", help="MASSIVE source (default: $XLCL_MASSIVE)."),
    ] = None,
) -> None:
    """Subword overlap of each pair's MASSIVE train sets under a run's tokenizer."""
    from xlcl.data import DataError, load_massive
    from xlcl.planner import PlannerError, subword_overlap

    wanted = [locale.strip() for locale in locales.split(",") if locale.strip()]
    try:
        tokenize = _tokenizer(tokenizer)
        massive = load_massive(data, wanted)
        texts = {
            locale: [" ".join(u.words) for u in massive.utterances(locale, "train")]
            for locale in wanted
        }
        table = subword_overlap(texts, tokenize, tokenizer)
    except (DataError, PlannerError) as err:
        fail(str(err))
    out.write_text(json.dumps(table.to_json(), indent=1) + "\n", encoding="utf-8")
    typer.echo(str(out))


def _tokenizer(name: str) -> Any:
    """The ``tokenize`` of a tokenizer.json file or a saved tokenizer's directory."""
    from xlcl.planner import PlannerError

    path = Path(name)
    if path.is_file():
        from tokenizers import Tokenizer

        loaded = Tokenizer.from_file(str(path))
        return lambda text: loaded.encode(text, add_special_tokens=False).tokens
    if path.is_dir():
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(path)).tokenize
    raise PlannerError(f"{name}: no tokenizer.json file or tokenizer directory")


def _read_overlap(path: Path | None) -> OverlapTable | None:
    from xlcl.planner import OverlapTable, PlannerError

    if path is None:
        return None
    try:
        return OverlapTable.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError) as err:
        if isinstance(err, PlannerError):
            raise
        raise PlannerError(f"{path}: unreadable overlap table ({err})") from None
