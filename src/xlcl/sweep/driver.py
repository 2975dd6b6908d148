"""The sweep driver: skip what is done, run the rest on a backend, retry what failed.

A rerun of the same sweep is cheap and safe: finished runs (``DONE``) are skipped by run
id, runs another process is running (a fresh heartbeat) are left alone, and failed or
interrupted runs go again, an interrupted one resuming from its last finished step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xlcl.config import RunConfig
from xlcl.data import resolve_order
from xlcl.metrics.io import schedule_named
from xlcl.schedules.grouping import form_groups
from xlcl.store import MANIFEST, is_complete
from xlcl.sweep.backends import Backend
from xlcl.sweep.shard import Shard
from xlcl.sweep.spec import Sweep
from xlcl.sweep.state import (
    STALE_SECONDS,
    STATE,
    SWEEP_FILE,
    RunState,
    RunStatus,
    end_attempt,
    mark_queued,
    read_json,
    run_status,
    write_json,
)
from xlcl.sweep.worker import Job


def describe(config: RunConfig) -> dict[str, Any]:
    """The run as ``sweep.json`` and ``--dry-run --json`` list it."""
    return {
        "run_id": config.run_id,
        "method": config.method,
        "rank": config.rank,
        "order": config.order,
        "model": config.model,
        "seed": config.train.seed,
        "label": config.method_spec.label,
        "schedule": config.schedule.name,
        "steps": total_steps(config),
    }


def total_steps(config: RunConfig) -> int:
    """Training steps of the run, as its schedule counts them over its locales."""
    locales = len(resolve_order(config.order, config.locales))
    return config.schedule.training_steps(locales)


def write_sweep_file(sweep: Sweep) -> Path:
    """Add the sweep's runs (with their full configs) to ``RESULTS/sweep.json``."""
    path = sweep.results / SWEEP_FILE
    existing = read_json(path) or {"sources": [], "runs": []}
    entries = {entry["run_id"]: entry for entry in existing["runs"]}
    for config in sweep.runs:
        entries[config.run_id] = {**describe(config), "config": config.model_dump(mode="json")}
    sources = list(dict.fromkeys([*existing["sources"], sweep.source]))
    write_json(path, {"sources": sources, "runs": list(entries.values())})
    return path


@dataclass(frozen=True)
class SweepEntry:
    """A run of a results directory: what it is, and where it stands."""

    run: dict[str, Any]  # `describe` of its config
    status: RunStatus


def sweep_status(results: Path, stale_after: float = STALE_SECONDS) -> list[SweepEntry]:
    """Every run of ``RESULTS/sweep.json``, then any other run directory found there."""
    if not results.is_dir():
        raise FileNotFoundError(f"{results}: no such results directory")
    listed = (read_json(results / SWEEP_FILE) or {"runs": []})["runs"]
    runs = {entry["run_id"]: entry for entry in listed}
    for path in sorted(results.iterdir()):
        is_run = (path / MANIFEST).is_file() or (path / STATE).is_file()
        if path.name not in runs and path.is_dir() and is_run:
            runs[path.name] = _describe_directory(path)
    return [
        SweepEntry(run, run_status(results / run_id, run.get("steps"), stale_after))
        for run_id, run in runs.items()
    ]


def _describe_directory(path: Path) -> dict[str, Any]:
    manifest = read_json(path / MANIFEST) or {}
    config = manifest.get("config") or {}
    order = manifest.get("order")
    schedule = schedule_named(manifest.get("schedule"), config.get("method"))
    steps = None
    if order is not None:
        steps = len(order) if schedule is None else schedule.training_steps(len(order))
    return {
        "run_id": path.name,
        "method": config.get("method"),
        "rank": config.get("rank"),
        "order": config.get("order"),
        "model": config.get("model"),
        "seed": manifest.get("seed"),
        "label": manifest.get("method_label"),
        "schedule": None if schedule is None else schedule.name,
        "steps": steps,
    }


def run_sweep(
    sweep: Sweep,
    backend: Backend,
    retries: int = 0,
    say: Callable[[str], None] = lambda text: None,
    group_size: int = 1,
    shard: Shard | None = None,
) -> list[SweepEntry]:
    """Run every unfinished run of `sweep` on `backend`, retrying failures `retries` times.

    With `group_size` above 1, LoRA runs that can share their encoder train in groups of
    up to that many runs, one job each (`xlcl.schedules.grouped.form_groups`). With
    `shard`, only that share of the runs (`xlcl.sweep.shard`); ``sweep.json`` lists them all.
    """
    if retries < 0:
        raise ValueError(f"retries must be 0 or more, got {retries}")
    if group_size < 1:
        raise ValueError(f"--group-size must be at least 1, got {group_size}")
    sweep.results.mkdir(parents=True, exist_ok=True)
    write_sweep_file(sweep)
    runs = sweep.runs if shard is None else shard.select(sweep.runs)
    pending: list[RunConfig] = []
    for config in runs:
        status = run_status(sweep.results / config.run_id, total_steps(config))
        if status.state is RunState.DONE:
            say(f"{config.run_id} {config.method_spec.label}: done, skipped")
        elif status.state is RunState.RUNNING:
            say(f"{config.run_id} {config.method_spec.label}: running at {status.where}, left")
        else:
            pending.append(config)
    for round_ in range(retries + 1):
        if not pending:
            break
        if round_:
            say(f"retry {round_}/{retries}: {len(pending)} run(s)")
        for config in pending:
            mark_queued(sweep.results / config.run_id)
        groups = form_groups(pending, group_size) if group_size > 1 else [[c] for c in pending]
        jobs = [Job.of_group(group, backend.name) for group in groups]
        grouped = sum(len(group) for group in groups if len(group) > 1)
        together = f", {grouped} of them in groups" if grouped else ""
        say(f"{backend.name}: {len(pending)} run(s){together}")
        outcomes = backend.run(jobs)
        again = []
        for group, outcome in zip(groups, outcomes, strict=True):
            for config in group:
                directory = sweep.results / config.run_id
                # A failed group's runs that finished are done.
                state = RunState.DONE if is_complete(directory) else outcome.state
                if not outcome.recorded:
                    error = None if state is RunState.DONE else outcome.error
                    end_attempt(directory, state, error, backend.name)
                say(f"{config.run_id} {config.method_spec.label}: {state.value}")
                if state in (RunState.FAILED, RunState.INTERRUPTED):
                    say(f"  {outcome.error}")
                    again.append(config)
        pending = again
    mine = {config.run_id for config in runs}
    return [entry for entry in sweep_status(sweep.results) if entry.run["run_id"] in mine]
