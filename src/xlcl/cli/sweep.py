"""`xlcl sweep SWEEP.yaml [options]` runs a grid of runs; `xlcl sweep status DIR` shows it.

``xlcl sweep SWEEP.yaml`` is short for ``xlcl sweep run SWEEP.yaml``; SWEEP.yaml may also name a
packaged sweep (``xlcl sweep sweeps/paper --dry-run``). See docs/sweeps.md.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperGroup

from xlcl.cli.errors import fail


class _RunByDefault(TyperGroup):
    """A group whose first argument, unless it names a command, belongs to ``run``."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:  # typer's own click Context
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(
    cls=_RunByDefault,
    help="Run a grid of runs (xlcl sweep SWEEP.yaml) or show one (xlcl sweep status DIR).",
    no_args_is_help=True,
)

STATE_STYLES = {
    "done": "green",
    "running": "cyan",
    "queued": "white",
    "failed": "red",
    "interrupted": "yellow",
}


@app.command("run")
def run(
    sweep_file: Annotated[
        Path,
        typer.Argument(
            help="YAML sweep file (base, grid, variants), or a packaged one: sweeps/paper"
        ),
    ],
    backend: Annotated[
        str, typer.Option("--backend", help="local (processes here), slurm or ray")
    ] = "local",
    results: Annotated[
        Path | None,
        typer.Option("--results", help="results directory; default: the file's 'results'"),
    ] = None,
    max_parallel: Annotated[
        int | None,
        typer.Option("--max-parallel", min=1, help="runs at a time (local: default 1 per GPU)"),
    ] = None,
    retries: Annotated[
        int, typer.Option("--retries", min=0, help="extra attempts for failed runs")
    ] = 0,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="list the runs and their cost; run nothing")
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    overrides: Annotated[
        list[str] | None,
        typer.Option("--set", help="override a base field, e.g. --set data.max_train=100"),
    ] = None,
    gpus_per_run: Annotated[
        int | None,
        typer.Option("--gpus-per-run", min=0, help="slurm: default 1; ray: 1 if it has GPUs"),
    ] = None,
    ray_address: Annotated[
        str | None, typer.Option("--ray-address", help="ray: cluster address (HOST:PORT, auto)")
    ] = None,
    submitit_cluster: Annotated[
        str, typer.Option("--submitit-cluster", help="slurm: 'slurm', or 'local' to try it here")
    ] = "slurm",
    slurm_timeout: Annotated[
        int, typer.Option("--slurm-timeout", min=1, help="slurm: minutes per task (requeued)")
    ] = 24 * 60,
    submitit_options: Annotated[
        list[str] | None,
        typer.Option("--submitit", help="slurm: executor parameter, e.g. slurm_partition=gpu"),
    ] = None,
) -> None:
    """Run every unfinished run of a sweep; finished runs are skipped by run id."""
    from xlcl.catalog import find_config
    from xlcl.config import ConfigError
    from xlcl.sweep import load_sweep, make_backend, run_sweep

    try:
        sweep = load_sweep(find_config(sweep_file, sweep=True), results, overrides or [])
    except (ConfigError, ValueError) as error:
        fail(str(error))
    if dry_run:
        _dry_run(sweep, json_out)
        return
    try:
        chosen = make_backend(
            backend,
            sweep.results,
            max_parallel=max_parallel,
            gpus_per_run=gpus_per_run,
            ray_address=ray_address,
            slurm_cluster=submitit_cluster,
            slurm_timeout_min=slurm_timeout,
            slurm_parameters=_parameters(submitit_options or []),
        )
    except ValueError as error:
        fail(str(error))
    console = Console(stderr=True)
    entries = run_sweep(sweep, chosen, retries=retries, say=console.print)
    _show(entries, sweep.results, json_out)
    if any(entry.status.state.value != "done" for entry in entries):
        raise typer.Exit(1)


@app.command("status")
def status(
    results: Annotated[Path, typer.Argument(help="results directory of a sweep")],
    json_out: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    stale_after: Annotated[
        float,
        typer.Option("--stale-after", min=1, help="seconds without heartbeat: interrupted"),
    ] = 60.0,
) -> None:
    """Each run as queued, running, done, failed or interrupted, with progress and errors."""
    from xlcl.sweep import sweep_status
    from xlcl.sweep.state import RunFileError

    try:
        entries = sweep_status(results, stale_after)
    except (FileNotFoundError, RunFileError) as error:
        fail(str(error))
    _show(entries, results, json_out)


def _dry_run(sweep: Any, json_out: bool) -> None:
    from xlcl.sweep import describe, estimate
    from xlcl.sweep.state import run_status

    rows = []
    for config in sweep.runs:
        cost = estimate(config)
        row = describe(config)
        row["state"] = run_status(sweep.results / config.run_id, row["steps"]).state.value
        row["cost"] = {
            "train_utterance_epochs": cost.train_utterance_epochs,
            "scored_utterances": cost.scored_utterances,
            "gpu_hours": cost.gpu_hours,
        }
        rows.append(row)
    todo = [row for row in rows if row["state"] != "done"]
    hours = [row["cost"]["gpu_hours"] for row in todo]
    total = {
        "runs": len(rows),
        "to_run": len(todo),
        "train_utterance_epochs": sum(row["cost"]["train_utterance_epochs"] for row in todo),
        "gpu_hours": sum(h for h in hours if h is not None),
        "runs_without_estimate": sum(h is None for h in hours),
    }
    if json_out:
        document = {"results": str(sweep.results), "runs": rows, "total": total}
        typer.echo(json.dumps(document, ensure_ascii=False))
        return
    table = Table(title=f"{sweep.source}: {len(rows)} runs -> {sweep.results}")
    for column in ("run", "method", "model", "order", "seed", "state", "utt-epochs", "GPU-h"):
        right = column in ("seed", "utt-epochs", "GPU-h")
        table.add_column(column, justify="right" if right else "left", no_wrap=column == "run")
    for row in rows:
        table.add_row(
            row["run_id"],
            row["label"],
            _model(row["model"]),
            _order(row["order"]),
            str(row["seed"]),
            _styled(row["state"]),
            f"{row['cost']['train_utterance_epochs'] / 1e6:.2f}M",
            _hours(row["cost"]["gpu_hours"]),
        )
    unknown = total["runs_without_estimate"]
    expected = f"about {total['gpu_hours']:.0f} GPU-hours"
    if unknown:
        speed = f"{unknown} run(s) of a model of unknown speed"
        expected = speed if unknown == total["to_run"] else f"{expected} + {speed}"
    console = Console()
    console.print(table)
    console.print(
        f"to run: {total['to_run']} of {total['runs']} runs, "
        f"{total['train_utterance_epochs'] / 1e6:.1f}M utterance-epochs (upper bound), "
        f"{expected} (see docs/sweeps.md for the throughput assumed)"
    )


def _show(entries: list[Any], results: Path, json_out: bool) -> None:
    if json_out:
        runs = [
            {
                **{key: value for key, value in entry.run.items() if key != "config"},
                "state": entry.status.state.value,
                "steps_done": entry.status.steps_done,
                "steps_total": entry.status.steps_total,
                "attempts": entry.status.attempts,
                "where": entry.status.where,
                "heartbeat_age": entry.status.heartbeat_age,
                "error": entry.status.error,
            }
            for entry in entries
        ]
        typer.echo(json.dumps({"results": str(results), "runs": runs}, ensure_ascii=False))
        return
    table = Table(title=f"sweep {results}")
    for column in ("run", "method", "model", "order", "state", "steps", "tries", "where"):
        table.add_column(column, no_wrap=column in ("run", "state", "steps"))
    counts: dict[str, int] = {}
    for entry in entries:
        state = entry.status.state.value
        counts[state] = counts.get(state, 0) + 1
        done = entry.status.steps_done
        total = entry.status.steps_total
        table.add_row(
            entry.run["run_id"],
            str(entry.run.get("label")),
            _model(entry.run.get("model")),
            _order(entry.run.get("order")),
            _styled(state),
            f"{'-' if done is None else done}/{'?' if total is None else total}",
            str(entry.status.attempts),
            entry.status.where if state in ("running", "interrupted") else "",
        )
    console = Console()
    console.print(table)
    for entry in entries:
        if entry.status.error:
            console.print(f"[red]{entry.run['run_id']}[/] {entry.status.error}", highlight=False)
    console.print(", ".join(f"{count} {state}" for state, count in sorted(counts.items())))


def _parameters(options: list[str]) -> dict[str, Any]:
    import yaml

    parameters: dict[str, Any] = {}
    for option in options:
        key, sep, value = option.partition("=")
        if not sep or not key:
            fail(f"--submitit {option!r}: expected KEY=VALUE, e.g. slurm_partition=gpu")
        parameters[key] = yaml.safe_load(value)
    return parameters


def _order(order: Any) -> str:
    if isinstance(order, list):
        return f"custom ({len(order)})"
    return str(order)


def _model(model: Any) -> str:
    return str(model).rstrip("/").rsplit("/", 1)[-1]


def _styled(state: str) -> str:
    return f"[{STATE_STYLES.get(state, 'white')}]{state}[/]"


def _hours(hours: float | None) -> str:
    return "?" if hours is None or math.isnan(hours) else f"{hours:.1f}"
