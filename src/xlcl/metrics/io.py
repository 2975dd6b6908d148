"""Reading score matrices: run directories, sweep directories and score table files.

Accepted inputs (``docs/metrics.md``):

- a run directory (``manifest.json`` + ``scores.parquet``, ``docs/run-directory.md``),
  written before tasks existed (score column ``f1``; no ``schedule``, ``task`` or
  ``metric`` in the manifest) or after;
- a sweep directory: any directory holding run directories at any depth;
- a long score table, CSV or Parquet (``step, trained_locale, eval_locale, score``, or
  ``f1`` for ``score``, with optional ``run``, ``method``, ``schedule`` and ``metric``
  columns);
- a square CSV: ``step`` first (0..T), one column per locale in training order.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from xlcl.methods import preset_schedule
from xlcl.metrics.matrix import (
    DEFAULT_METRIC,
    MetricsInputError,
    ScoreMatrix,
    from_long,
    from_square,
)
from xlcl.schedules import Schedule, schedule

MANIFEST = "manifest.json"
SCORES = "scores.parquet"
DONE = "DONE"
UNSPECIFIED = "unspecified"  # the label of runs read from a table without a method
# The task of manifests written before tasks (MASSIVE slot filling; xlcl.tasks.DEFAULT_TASK),
# and the one task that labels leave unnamed, so that those runs keep their labels.
DEFAULT_TASK = "massive-slots"


@dataclass(frozen=True, eq=False)
class Run:
    """One run: its id, its matrix, and the label that groups it with its sibling orders."""

    run_id: str
    matrix: ScoreMatrix
    label: str
    source: Path
    task: str | None = None  # None for a score table


@dataclass(frozen=True)
class RunFacts:
    """What a run's manifest says about it, with the defaults of manifests before tasks."""

    method: str | None
    rank: int | None
    model: str | None
    schedule: Schedule | None  # None: the score table says (joint, else sequential)
    task: str
    metric: str
    strategy: str | None = None  # name and settings, e.g. "replay mem_size=100"

    @property
    def label(self) -> str:
        """The run's aggregation key (`run_label`)."""
        return run_label(self.method, self.rank, self.model, self.task, self.strategy)


@dataclass
class Loaded:
    """The runs read from the inputs, and the unfinished run directories of sweeps skipped."""

    runs: list[Run] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)


def run_label(
    method: str | None,
    rank: int | None = None,
    model: str | None = None,
    task: str | None = None,
    strategy: str | None = None,
) -> str:
    """The aggregation key: method, LoRA rank, model, task and strategy where known.

    ``shared-lora r32 FacebookAI/xlm-roberta-base``; a task other than `DEFAULT_TASK` is
    added (``... massive-intent``), and so is a strategy with its settings (``... replay
    mem_size=100``), so that runs of two tasks or remedies are never averaged together.
    """
    parts = [method or UNSPECIFIED]
    if rank is not None:
        parts.append(f"r{rank}")
    if model is not None:
        parts.append(model)
    if task is not None and task != DEFAULT_TASK:
        parts.append(task)
    if strategy is not None:
        parts.append(strategy)
    return " ".join(parts)


def run_facts(manifest: dict[str, Any]) -> RunFacts:
    """Method, rank, model, schedule, task and metric of a manifest.

    A manifest written before tasks has no ``schedule``, ``task`` or ``metric``: the
    schedule is its method's, the task `DEFAULT_TASK`, the metric span F1.
    """
    config = manifest.get("config") or {}
    method = config.get("method")
    return RunFacts(
        method=method,
        rank=config.get("rank"),
        model=config.get("model"),
        schedule=schedule_named(manifest.get("schedule"), method),
        task=manifest.get("task") or DEFAULT_TASK,
        metric=manifest.get("metric") or DEFAULT_METRIC,
        strategy=_described_strategy(config.get("strategy")),
    )


def _described_strategy(strategy: dict[str, Any] | None) -> str | None:
    """``name key=value ...`` of a config's resolved ``strategy:`` mapping."""
    if not strategy:
        return None
    settings = " ".join(
        f"{key}={value}" for key, value in sorted(strategy.items()) if key != "name"
    )
    return f"{strategy['name']} {settings}".strip()


def schedule_named(name: str | None, method: str | None) -> Schedule | None:
    """The schedule ``name``; without one, the schedule of the preset ``method``; else None.

    Raises `MetricsInputError` for an unknown schedule or method.
    """
    try:
        if name is not None:
            return schedule(name)
        return None if method is None else preset_schedule(method)
    except ValueError as err:
        raise MetricsInputError(str(err)) from None


def load(paths: Sequence[Path]) -> Loaded:
    """Every run in ``paths``; run ids must be unique across all of them."""
    loaded = Loaded()
    for path in paths:
        if not path.exists():
            raise MetricsInputError(f"{path}: no such file or directory")
        if path.is_dir() and (path / MANIFEST).exists():
            loaded.runs.append(read_run_dir(path))
        elif path.is_dir():
            sweep = read_sweep(path)
            loaded.runs.extend(sweep.runs)
            loaded.skipped.extend(sweep.skipped)
        else:
            loaded.runs.extend(read_table(path))
    require_unique_ids((run.run_id, run.source) for run in loaded.runs)
    return loaded


def require_unique_ids(runs: Iterable[tuple[str, Path]]) -> None:
    """Raise `MetricsInputError` when a run id comes from two sources."""
    seen: dict[str, Path] = {}
    for run_id, source in runs:
        if run_id in seen:
            raise MetricsInputError(f"run id {run_id!r} appears twice: {seen[run_id]} and {source}")
        seen[run_id] = source


def read_run_dir(path: Path) -> Run:
    """The run of a finished run directory (status ``done`` and the ``DONE`` marker)."""
    manifest = read_manifest(path / MANIFEST)
    unfinished = _unfinished(path, manifest)
    if unfinished:
        raise MetricsInputError(f"{path}: {unfinished}")
    try:
        facts = run_facts(manifest)
    except MetricsInputError as err:
        raise MetricsInputError(f"{path / MANIFEST}: {err}") from err
    try:
        table = pd.read_parquet(path / SCORES)
        matrix = from_long(table, facts.schedule, manifest.get("order"), facts.metric, facts.method)
    except (OSError, ValueError) as err:
        raise MetricsInputError(f"{path / SCORES}: {err}") from err
    return Run(str(manifest["run_id"]), matrix, facts.label, path, facts.task)


def read_sweep(path: Path) -> Loaded:
    """The finished runs of every run directory under ``path``; unfinished ones skipped."""
    loaded = Loaded()
    for manifest in sorted(path.rglob(MANIFEST)):
        run_dir = manifest.parent
        unfinished = _unfinished(run_dir, read_manifest(manifest))
        if unfinished:
            loaded.skipped.append((run_dir, unfinished))
        else:
            loaded.runs.append(read_run_dir(run_dir))
    if not loaded.runs and not loaded.skipped:
        raise MetricsInputError(f"{path}: no run directory ({MANIFEST}) found under it")
    return loaded


def read_table(path: Path) -> list[Run]:
    """The runs of a long (CSV, Parquet) or square (CSV) score table file."""
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet", ".pq"):
        raise MetricsInputError(
            f"{path}: unknown file type {suffix or '(none)'!r}; expected a run or sweep "
            "directory, .csv or .parquet"
        )
    try:
        if suffix == ".csv":
            if "eval_locale" not in _csv_rows(path)[0]:
                return [_square_run(path)]
            return _long_runs(path, pd.read_csv(path))
        return _long_runs(path, pd.read_parquet(path))
    except (OSError, ValueError) as err:  # MetricsInputError included
        raise MetricsInputError(f"{path}: {err}") from err


def _long_runs(path: Path, table: pd.DataFrame) -> list[Run]:
    if "run" not in table.columns:
        return [_long_run(path, path.name, table)]
    if table["run"].isna().any():
        raise MetricsInputError("column 'run' has empty cells")
    return [_long_run(path, str(rid), part) for rid, part in table.groupby("run", sort=False)]


def _long_run(path: Path, run_id: str, table: pd.DataFrame) -> Run:
    try:
        method = _one_value(table, "method")
        metric = _one_value(table, "metric") or DEFAULT_METRIC
        plan = schedule_named(_one_value(table, "schedule"), method)
        matrix = from_long(table.reset_index(drop=True), plan, metric=metric, method=method)
    except MetricsInputError as err:
        if "run" not in table.columns:
            raise
        raise MetricsInputError(f"run {run_id}: {err}") from err
    return Run(run_id=run_id, matrix=matrix, label=run_label(method), source=path)


def _one_value(table: pd.DataFrame, column: str) -> str | None:
    """The one value of an optional column of a run's rows; None without the column."""
    if column not in table.columns:
        return None
    values = set(table[column].dropna())
    if len(values) != 1:
        raise MetricsInputError(f"needs one {column}, got {sorted(map(str, values))}")
    return str(values.pop())


def _square_run(path: Path) -> Run:
    rows = _csv_rows(path)
    header = [cell.strip() for cell in rows[0]]
    body = [row for row in rows[1:] if any(cell.strip() for cell in row)]
    for line, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise MetricsInputError(
                f"line {line}: ragged matrix: {len(row)} cells, header has {len(header)}"
            )
    table = pd.DataFrame(
        [[cell.strip() or None for cell in row] for row in body], columns=header, dtype=object
    )
    return Run(run_id=path.name, matrix=from_square(table), label=run_label(None), source=path)


def _csv_rows(path: Path) -> list[list[str]]:
    # utf-8-sig: spreadsheets save "CSV UTF-8" with a byte-order mark before the header.
    with path.open(newline="", encoding="utf-8-sig") as handle:
        rows = list(csv.reader(handle))
    if not rows:
        raise MetricsInputError("empty file")
    return rows


def read_manifest(path: Path) -> dict[str, Any]:
    """A run's manifest.json, checked to be a mapping with a run id."""
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise MetricsInputError(f"{path}: unreadable manifest ({err})") from err
    if not isinstance(manifest, dict) or "run_id" not in manifest:
        raise MetricsInputError(f"{path}: manifest without run_id")
    return manifest


def _unfinished(path: Path, manifest: dict[str, Any]) -> str:
    """Why the run directory is not a finished run; empty when it is one."""
    status = manifest.get("status")
    if status != "done":
        return f"run not finished (status {status!r})"
    if not (path / DONE).exists():
        return f"run not finished (no {DONE} marker)"
    return ""
