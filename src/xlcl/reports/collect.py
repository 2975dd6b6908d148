"""Collecting the runs of a report: finished runs through ``xlcl.metrics``, partial ones here.

``xlcl.metrics.load`` reads finished runs only (it skips unfinished run directories of a
sweep and rejects one given by name). A report also shows runs that are still going, or
that failed, with the steps they have: such a run's matrix is cut to its complete steps
(every locale of its order scored), as if its order ended there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from xlcl.metrics import (
    MetricsInputError,
    ScoreMatrix,
    from_long,
    read_run_dir,
    read_table,
    run_facts,
    score_column,
)
from xlcl.metrics.io import (
    DONE,
    MANIFEST,
    SCORES,
    RunFacts,
    read_manifest,
    require_unique_ids,
    run_label,
)
from xlcl.schedules import SEQUENTIAL

DONE_STATE = "done"
IN_PROGRESS = "in progress"


class ReportInputError(ValueError):
    """Inputs that give nothing to report, or that cannot be read."""


@dataclass(frozen=True, eq=False)
class ReportRun:
    """One run as a report shows it.

    ``matrix`` is what the metrics read: the whole matrix of a finished run, the complete
    steps of a partial one (order cut to the locales learned so far). ``observed`` is every
    cell scored so far over the full order, NaN where not yet scored (Figure 7).
    """

    run_id: str
    source: Path
    matrix: ScoreMatrix
    observed: ScoreMatrix
    method: str | None
    rank: int | None
    model: str | None
    state: str  # "done", "in progress", "failed" or "interrupted"
    task: str | None = None  # None for a score table
    manifest: dict[str, Any] | None = field(default=None, repr=False)
    strategy: str | None = None  # the remedy and its settings ("replay mem_size=100"), or None

    @property
    def partial(self) -> bool:
        """Whether the run has not finished: its metrics cover the steps done so far."""
        return self.state != DONE_STATE

    @property
    def steps_done(self) -> int:
        """Training steps with a complete row of scores."""
        return self.matrix.scores.shape[0] - 1

    @property
    def n_steps(self) -> int:
        """Training steps of the whole run (1 for a joint one)."""
        return self.observed.scores.shape[0] - 1

    @property
    def base_label(self) -> str:
        """The label of the plain method this run's remedy modifies (its own without one)."""
        return run_label(self.method, self.rank, self.model, self.task)

    @property
    def label(self) -> str:
        """The aggregation key: ``xlcl.metrics``' label; partial runs each stand alone."""
        label = run_label(self.method, self.rank, self.model, self.task, self.strategy)
        if self.partial:
            label += f" [{self.state} {self.steps_done}/{self.n_steps}: {self.run_id}]"
        return label


@dataclass
class Collected:
    """The runs found in the inputs, and the run directories left out (path, reason)."""

    runs: list[ReportRun] = field(default_factory=list)
    left_out: list[tuple[Path, str]] = field(default_factory=list)


def collect(paths: Sequence[Path]) -> Collected:
    """Every run in ``paths`` (run directories, sweeps, score tables), finished or not.

    Raises ``ReportInputError`` when an input cannot be read or when no run has a single
    complete training step.
    """
    collected = Collected()
    try:
        for path in paths:
            _collect_path(path, collected)
    except MetricsInputError as err:
        raise ReportInputError(str(err)) from err
    try:
        require_unique_ids((run.run_id, run.source) for run in collected.runs)
    except MetricsInputError as err:
        raise ReportInputError(str(err)) from err
    if not collected.runs:
        why = "; ".join(f"{path}: {reason}" for path, reason in collected.left_out)
        raise ReportInputError(
            "nothing to report: no run with a complete training step" + (f" ({why})" if why else "")
        )
    return collected


def _collect_path(path: Path, collected: Collected) -> None:
    if not path.exists():
        raise ReportInputError(f"{path}: no such file or directory")
    if path.is_file():
        for run in read_table(path):
            matrix = run.matrix
            collected.runs.append(
                ReportRun(run.run_id, path, matrix, matrix, matrix.method, None, None, DONE_STATE)
            )
        return
    run_dirs = (
        [path] if (path / MANIFEST).exists() else sorted(m.parent for m in path.rglob(MANIFEST))
    )
    if not run_dirs:
        raise ReportInputError(f"{path}: no run directory ({MANIFEST}) found under it")
    for run_dir in run_dirs:
        found = _read_run_dir(run_dir)
        if isinstance(found, str):
            collected.left_out.append((run_dir, found))
        else:
            collected.runs.append(found)


def _read_run_dir(path: Path) -> ReportRun | str:
    """The run of a run directory, or why it has nothing to report yet."""
    manifest = _read_manifest(path / MANIFEST)
    try:
        facts = run_facts(manifest)
    except MetricsInputError as err:
        raise ReportInputError(f"{path / MANIFEST}: {err}") from err
    state = run_state(path, manifest)
    if state == DONE_STATE:
        matrix = read_run_dir(path).matrix
        return _report_run(manifest, path, matrix, matrix, facts, state)
    order = manifest.get("order")
    if not order:
        return f"{state}: the manifest has no order yet"
    if not (path / SCORES).exists():
        return f"{state}: no scores yet"
    try:
        table = pd.read_parquet(path / SCORES)
    except (OSError, ValueError) as err:
        raise ReportInputError(f"{path / SCORES}: {err}") from err
    try:
        observed = _observed(table, tuple(order), facts)
    except (KeyError, ValueError) as err:
        raise ReportInputError(f"{path / SCORES}: {err}") from err
    done = _complete_steps(table, observed)
    if done == 0:
        return f"{state}: no training step finished yet"
    if done == observed.scores.shape[0] - 1:  # every step scored: nothing to cut
        matrix = observed
    else:
        learned = table["eval_locale"].isin(observed.order[:done])
        cut = table[(table["step"] <= done) & learned].reset_index(drop=True)
        try:
            matrix = from_long(cut, observed.schedule, metric=facts.metric, method=facts.method)
        except MetricsInputError as err:
            raise ReportInputError(f"{path / SCORES}: {err}") from err
    return _report_run(manifest, path, matrix, observed, facts, state)


def _report_run(
    manifest: dict[str, Any],
    path: Path,
    matrix: ScoreMatrix,
    observed: ScoreMatrix,
    facts: RunFacts,
    state: str,
) -> ReportRun:
    return ReportRun(
        run_id=str(manifest["run_id"]),
        source=path,
        matrix=matrix,
        observed=observed,
        method=facts.method,
        rank=facts.rank,
        model=facts.model,
        state=state,
        task=facts.task,
        manifest=manifest,
        strategy=facts.strategy,
    )


def run_state(path: Path, manifest: dict[str, Any]) -> str:
    """``done`` (status done and DONE marker), ``in progress``, ``failed`` or ``interrupted``."""
    status = manifest.get("status")
    if status == "done":
        return DONE_STATE if (path / DONE).exists() else IN_PROGRESS
    if status in ("failed", "interrupted"):
        return str(status)
    return IN_PROGRESS


def _observed(table: pd.DataFrame, order: tuple[str, ...], facts: RunFacts) -> ScoreMatrix:
    """The scored cells over the full order, NaN where a cell is not scored yet."""
    schedule = facts.schedule or SEQUENTIAL
    rows = schedule.rows(len(order))
    known = table[table["eval_locale"].isin(order) & (table["step"] < rows)]
    wide = known.pivot(index="step", columns="eval_locale", values=score_column(table))
    wide = wide.reindex(index=range(rows), columns=list(order))
    return ScoreMatrix(order, wide.to_numpy(dtype=float), schedule, facts.metric, facts.method)


def _complete_steps(table: pd.DataFrame, observed: ScoreMatrix) -> int:
    """The last step k such that steps 0..k each have a row for every locale of the order.

    Rows, not values: a cell the run cannot produce is a stored row with a NaN score.
    """
    known = table[table["eval_locale"].isin(observed.order)]
    per_step = known.groupby("step")["eval_locale"].nunique()
    done = -1
    for step in range(observed.scores.shape[0]):
        if per_step.get(step, 0) < observed.n_locales:
            break
        done = step
    return max(done, 0)


def _read_manifest(path: Path) -> dict[str, Any]:
    try:
        return read_manifest(path)
    except MetricsInputError as err:
        raise ReportInputError(str(err)) from err
