"""Reading score matrices: run directories, sweep directories and score table files.

Accepted inputs (``docs/metrics.md``):

- a run directory (``manifest.json`` + ``scores.parquet``, ``docs/run-directory.md``);
- a sweep directory: any directory holding run directories at any depth;
- a long score table, CSV or Parquet (``step, trained_locale, eval_locale, f1``, with an
  optional ``run`` column for several runs and an optional ``method`` column);
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

from xlcl.metrics.matrix import MetricsInputError, ScoreMatrix, from_long, from_square

MANIFEST = "manifest.json"
SCORES = "scores.parquet"
DONE = "DONE"
UNSPECIFIED = "unspecified"  # the label of runs read from a table without a method


@dataclass(frozen=True, eq=False)
class Run:
    """One run: its id, its matrix, and the label that groups it with its sibling orders."""

    run_id: str
    matrix: ScoreMatrix
    label: str
    source: Path


@dataclass
class Loaded:
    """The runs read from the inputs, and the unfinished run directories of sweeps skipped."""

    runs: list[Run] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)


def run_label(method: str | None, rank: int | None = None, model: str | None = None) -> str:
    """The aggregation key: method, LoRA rank and model where known (``shared-lora r32 ...``)."""
    parts = [method or UNSPECIFIED]
    if rank is not None:
        parts.append(f"r{rank}")
    if model is not None:
        parts.append(model)
    return " ".join(parts)


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
    config = manifest.get("config") or {}
    method = config.get("method")
    try:
        table = pd.read_parquet(path / SCORES)
        matrix = from_long(table, method=method, order=manifest.get("order"))
    except (OSError, ValueError) as err:
        raise MetricsInputError(f"{path / SCORES}: {err}") from err
    label = run_label(method, config.get("rank"), config.get("model"))
    return Run(run_id=str(manifest["run_id"]), matrix=matrix, label=label, source=path)


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
    method = None
    if "method" in table.columns:
        methods = set(table["method"].dropna())
        if len(methods) != 1:
            raise MetricsInputError(f"run {run_id}: needs one method, got {sorted(methods)}")
        method = str(methods.pop())
    try:
        matrix = from_long(table.reset_index(drop=True), method=method)
    except MetricsInputError as err:
        if "run" not in table.columns:
            raise
        raise MetricsInputError(f"run {run_id}: {err}") from err
    return Run(run_id=run_id, matrix=matrix, label=run_label(method), source=path)


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
