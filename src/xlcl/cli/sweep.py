"""`xlcl sweep SWEEP.yaml [options]` runs a grid of runs; `xlcl sweep status DIR` shows it.

``xlcl sweep SWEEP.yaml`` is short for ``xlcl sweep run SWEEP.yaml``; SWEEP.yaml may also name a
packaged sweep (``xlcl sweep sweeps/paper --dry-run``). See docs/sweeps.md.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperGroup

from xlcl.cli.errors import fail

if TYPE_CHECKING:
    from xlcl.sweep.cost import Priced, SweepCost, Total


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
        typer.Option(
            "--max-parallel", min=1, help="runs at a time (local: default --runs-per-gpu per GPU)"
        ),
    ] = None,
    runs_per_gpu: Annotated[
        int,
        typer.Option(
            "--runs-per-gpu",
            help="K runs share each GPU (local: with CUDA MPS where available; slurm: K runs "
            "a job; ray: 1/K GPU a task); refused if K runs would not fit its memory",
        ),
    ] = 1,
    group_lora: Annotated[
        bool,
        typer.Option(
            "--group-lora",
            help="train SHARED and MULTI LoRA runs that share an encoder (model, data, "
            "precision) as groups over one copy of it, one job per group",
        ),
    ] = False,
    group_size: Annotated[
        int, typer.Option("--group-size", min=2, help="with --group-lora: runs per group")
    ] = 8,
    retries: Annotated[
        int, typer.Option("--retries", min=0, help="extra attempts for failed runs")
    ] = 0,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="list the runs and their cost; run nothing")
    ] = False,
    calibrate: Annotated[
        list[Path] | None,
        typer.Option(
            "--calibrate",
            help="with --dry-run: results or run directories whose finished runs' curves "
            "give the epochs a step runs (repeatable)",
        ),
    ] = None,
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
    shard_text: Annotated[
        str | None,
        typer.Option(
            "--shard",
            help="K/N: run this machine's share K of N (machines without a shared results "
            "directory; the split balances the runs' work and depends on the sweep file only)",
        ),
    ] = None,
) -> None:
    """Run every unfinished run of a sweep; finished runs are skipped by run id."""
    from xlcl.catalog import find_config
    from xlcl.config import ConfigError
    from xlcl.sweep import load_sweep, make_backend, run_sweep
    from xlcl.sweep.backends.packing import gpu_memory, refuse_unfit
    from xlcl.sweep.shard import parse_shard

    try:
        sweep = load_sweep(find_config(sweep_file, sweep=True), results, overrides or [])
        shard = None if shard_text is None else parse_shard(shard_text)
    except (ConfigError, ValueError) as error:
        fail(str(error))
    if calibrate and not dry_run:
        fail("--calibrate prices a dry run: add --dry-run")
    mine = sweep.runs if shard is None else shard.select(sweep.runs)
    if dry_run:  # a shard's runs are priced as a sweep of their own
        _dry_run(
            replace(sweep, runs=mine), json_out, calibrate or [], group_size if group_lora else 1
        )
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
            runs_per_gpu=runs_per_gpu,
        )
        if backend == "local" and runs_per_gpu > 1:  # elsewhere the task checks on its node
            refuse_unfit(mine, runs_per_gpu, gpu_memory())
    except ValueError as error:
        fail(str(error))
    console = Console(stderr=True)
    entries = run_sweep(
        sweep,
        chosen,
        retries=retries,
        say=console.print,
        group_size=group_size if group_lora else 1,
        shard=shard,
    )
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


def _dry_run(sweep: Any, json_out: bool, calibrate: list[Path], group_size: int) -> None:
    from xlcl.sweep import describe
    from xlcl.sweep.cost import Grouping, estimate_sweep, read_calibration
    from xlcl.sweep.state import run_status

    try:
        calibration = read_calibration(calibrate) if calibrate else None
    except ValueError as error:
        fail(str(error))
    rows = []
    for config in sweep.runs:
        row = describe(config)
        row["state"] = run_status(sweep.results / config.run_id, row["steps"]).state.value
        rows.append(row)
    done = {row["run_id"] for row in rows if row["state"] == "done"}
    # A group's speedup is not measured yet (no GPU has run one): priced at 1, no gain.
    priced = estimate_sweep(sweep.runs, done, calibration, grouping=Grouping(size=group_size))
    if not json_out:
        calibrated_from = ""
        if calibration is not None:
            paths = " ".join(map(str, calibrate))
            calibrated_from = f"{len(calibration.runs)} finished runs in {paths}"
        _print_dry_run(sweep, rows, priced, calibrated_from)
        return
    for row in rows:
        run_id = row["run_id"]
        row["replicate_of"] = priced.replicate_of.get(run_id)
        row["cost"] = asdict(priced.upper_bound.costs[run_id])
        calibrated = priced.calibrated
        row["calibrated_cost"] = None if calibrated is None else asdict(calibrated.costs[run_id])
    total = {
        "runs": len(rows),
        "to_run": priced.upper_bound.to_run.runs,
        "replicates": len(priced.replicate_of),
        "upper_bound": _totals(priced.upper_bound),
        "calibrated": None if priced.calibrated is None else _totals(priced.calibrated),
        "calibrated_from": [str(path) for path in calibrate],
        "calibration_runs": None if calibration is None else len(calibration.runs),
    }
    document = {"results": str(sweep.results), "runs": rows, "total": total}
    typer.echo(json.dumps(document, ensure_ascii=False))


def _totals(priced: Priced) -> dict[str, Any]:
    return {"to_run": asdict(priced.to_run), "once": asdict(priced.once)}


def _print_dry_run(
    sweep: Any, rows: list[dict[str, Any]], priced: SweepCost, calibrated_from: str
) -> None:
    Console().print(_dry_run_table(sweep, rows, priced))
    line = f"to run: {priced.upper_bound.to_run.runs} of {len(rows)} runs"
    if priced.replicate_of:
        line += (
            f"; {len(priced.replicate_of)} of the {len(rows)} repeat an order-independent "
            "run under another order (replicate of)"
        )
    grouped = priced.upper_bound.to_run.grouped_runs
    if grouped:
        line += f"; {grouped} of them in groups (--group-lora), priced without a speedup"
    # Plain lines, not rich's: paths stay whole (no wrapping) and brackets are not markup.
    typer.echo(line)
    typer.echo(_summary("upper bound (every step all train.epochs)", priced.upper_bound))
    if priced.calibrated is None:
        typer.echo("calibrated: add --calibrate RESULTS (epochs per step from finished runs)")
    else:
        typer.echo(_summary(f"calibrated ({calibrated_from})", priced.calibrated))
    typer.echo("throughput and overheads assumed: docs/sweeps.md")


def _dry_run_table(sweep: Any, rows: list[dict[str, Any]], priced: SweepCost) -> Table:
    columns = ["run", "method", "model", "order", "seed", "state"]
    if priced.replicate_of:
        columns.append("replicate of")
    columns += ["utt-epochs", "GPU-h"]
    if priced.calibrated is not None:
        columns += ["epochs/step", "utt-epochs cal.", "GPU-h cal."]
    table = Table(title=f"{sweep.source}: {len(rows)} runs -> {sweep.results}")
    for column in columns:
        right = column in ("seed", "utt-epochs", "GPU-h", "utt-epochs cal.", "GPU-h cal.")
        table.add_column(column, justify="right" if right else "left", no_wrap=column == "run")
    for row in rows:
        run_id = row["run_id"]
        upper = priced.upper_bound.costs[run_id]
        cells = [
            run_id,
            row["label"],
            _model(row["model"]),
            _order(row["order"]),
            str(row["seed"]),
            _styled(row["state"]),
        ]
        if priced.replicate_of:
            cells.append(priced.replicate_of.get(run_id, ""))
        cells += [_count(upper.train_utterance_epochs), _hours(upper.gpu_hours)]
        if priced.calibrated is not None:
            calibrated = priced.calibrated.costs[run_id]
            cells += [
                f"{calibrated.epochs.per_step:.2f} {calibrated.epochs.basis}",
                _count(calibrated.train_utterance_epochs),
                _hours(calibrated.gpu_hours),
            ]
        table.add_row(*cells)
    return table


def _summary(name: str, priced: Priced) -> str:
    text = f"{name}: {_total(priced.to_run)}"
    if priced.once.runs == priced.to_run.runs:
        return text
    return f"{text}; each replicate once: {_total(priced.once)}"


def _total(total: Total) -> str:
    hours = f"about {total.gpu_hours:,.0f} GPU-hours"
    unknown = total.runs_without_hours
    if unknown:
        speed = f"{unknown} run(s) of a model of unknown speed"
        hours = speed if unknown == total.runs else f"{hours} + {speed}"
    return f"{total.runs} runs, {_count(total.train_utterance_epochs)} utterance-epochs, {hours}"


def _count(value: float) -> str:
    if value >= 1e6:
        return f"{value / 1e6:,.2f}M"
    return f"{value / 1e3:,.2f}k" if value >= 1e3 else f"{value:,.0f}"


def _clock(seconds: float) -> str:
    """``h:mm``."""
    minutes = round(seconds / 60)
    return f"{minutes // 60}:{minutes % 60:02d}"


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
                "seconds": entry.status.seconds,
                "seconds_cut": entry.status.seconds_cut,
            }
            for entry in entries
        ]
        typer.echo(json.dumps({"results": str(results), "runs": runs}, ensure_ascii=False))
        return
    table = Table(title=f"sweep {results}")
    for column in ("run", "method", "model", "order", "state", "steps", "tries", "time", "where"):
        table.add_column(column, no_wrap=column in ("run", "state", "steps", "time"))
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
            _clock(entry.status.seconds) if entry.status.attempts else "",
            entry.status.where if state in ("running", "interrupted") else "",
        )
    console = Console()
    console.print(table)
    spent = sum(entry.status.seconds for entry in entries)
    cut = sum(entry.status.seconds_cut for entry in entries)
    tries = sum(entry.status.attempts for entry in entries)
    console.print(
        f"time: {_clock(spent)} run-hours in {tries} attempt(s), {_clock(cut)} of it in "
        "attempts interrupted or failed",
        highlight=False,
    )
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
