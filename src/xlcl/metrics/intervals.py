"""Confidence intervals of stored runs: their per-utterance counts, checked, bootstrapped.

`run_counts` reads a run directory's ``utterances.npz`` (``docs/run-directory.md``) and
checks it against its ``scores.parquet``; `with_intervals` and `difference` add the
intervals of `xlcl.metrics.bootstrap` to the ``xlcl metrics`` document (``docs/metrics.md``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from xlcl.cell_counts import (
    SPANS,
    UTTERANCES,
    CellCounts,
    CountsFileError,
    UtteranceCounts,
    agrees,
    read_cell_counts,
)
from xlcl.metrics.bootstrap import (
    Bootstrap,
    Counted,
    Interval,
    interval_values,
    intervals_table,
)
from xlcl.metrics.io import MANIFEST, SCORES, Run
from xlcl.metrics.matrix import MetricsInputError, ScoreMatrix

NO_COUNTS = "no per-utterance counts"


def run_counts(run_id: str, source: Path, matrix: ScoreMatrix) -> CellCounts | str:
    """The per-utterance counts of run `run_id` (read from `source`), or why it has none.

    None: a score table (`source` is a file), no ``utterances.npz`` (a run written before
    the counts, or by a task that keeps none), an unreadable one, or a scored cell of
    `matrix` without counts; the reason names the file. Counts that disagree with the
    score table raise `MetricsInputError` naming the run.
    """
    if not (source / MANIFEST).is_file():
        return f"{NO_COUNTS}: {source} is a score table"
    path = source / UTTERANCES
    if not path.exists():
        return f"{NO_COUNTS}: {path} missing"
    try:
        counts = read_cell_counts(path)
    except CountsFileError as err:
        return str(err)
    try:
        table = pd.read_parquet(source / SCORES)
    except (OSError, ValueError) as err:
        raise MetricsInputError(f"{source / SCORES}: {err}") from err
    problem = disagreement(counts, table)
    if problem:
        raise MetricsInputError(f"run {run_id}: {path} disagrees with {SCORES}: {problem}")
    missing = _uncounted(counts, matrix)
    if missing:
        step, locale = missing[0]
        return (
            f"{NO_COUNTS} for {len(missing)} scored cell(s) in {path} "
            f"(the first: step {step}, {locale})"
        )
    return counts


def disagreement(counts: CellCounts, table: pd.DataFrame) -> str:
    """The first cell whose counts disagree with its row of the score table; empty if none.

    Counts must be of a row with a score, of its ``n_sentences`` utterances, and give its
    score; span counts also its gold (Σ tp + Σ fn = ``n_gold``) and predicted spans
    (Σ tp + Σ fp = ``n_pred``).
    """
    score = "score" if "score" in table.columns else "f1"
    rows = {
        (int(r["step"]), str(r["eval_locale"])): {str(k): v for k, v in r.items()}
        for r in table.to_dict("records")
    }
    for step, locale, cell in counts.cells():
        row = rows.get((step, locale))
        where = f"step {step}, {locale}"
        if row is None or _nan(row[score]):
            return f"{where}: counts for a cell without a score"
        problem = _cell_problem(cell, row, score)
        if problem:
            return f"{where}: {problem}"
    return ""


def _cell_problem(cell: UtteranceCounts, row: Mapping[str, Any], score: str) -> str:
    if cell.n_utterances != row["n_sentences"]:
        return f"{cell.n_utterances} utterances, {row['n_sentences']} sentences in the table"
    if not agrees(cell, float(row[score])):
        return f"the counts give {cell.score():.6f}, the table {float(row[score]):.6f}"
    if cell.kind == SPANS:
        totals = cell.totals()
        for column, total in (
            ("n_gold", totals["tp"] + totals["fn"]),
            ("n_pred", totals["tp"] + totals["fp"]),
        ):
            if column in row and total != row[column]:
                return f"{total} spans from the counts, {column} {row[column]} in the table"
    return ""


def _uncounted(counts: CellCounts, matrix: ScoreMatrix) -> list[tuple[int, str]]:
    """The scored cells of `matrix` that `counts` has no counts for."""
    missing = []
    for j, locale in enumerate(matrix.order):
        found = counts.locales.get(locale)
        steps = set() if found is None else {int(s) for s in found.steps}
        for step in range(matrix.scores.shape[0]):
            if not _nan(matrix.scores[step, j]) and step not in steps:
                missing.append((step, locale))
    return missing


def with_intervals(
    summary: Mapping[str, Any], runs: Sequence[Run], boot: Bootstrap
) -> tuple[dict[str, Any], list[str]]:
    """`summary` (``build_summary``) with intervals, and a note per run without counts.

    Adds ``ci`` (the settings), each run's ``ci`` (``{metric: {estimate, low, high}}``, or
    None with a ``ci_note``) and each label's ``ci``: the interval of the mean over its
    runs, every run resampled with the same draws (None where a run has no counts); and,
    where every run of a label has counts, each of its locales' final score's ``ci``.
    """
    counted: dict[str, CellCounts] = {}
    notes: dict[str, str] = {}
    for run in runs:
        found = run_counts(run.run_id, run.source, run.matrix)
        if isinstance(found, str):
            notes[run.run_id] = found
        else:
            counted[run.run_id] = found
    document = {**summary, "ci": settings(boot)}
    document["runs"] = {
        run_id: {**entry, **_entry(boot, [_pair(runs, run_id, counted)], notes.get(run_id))}
        for run_id, entry in summary["runs"].items()
    }
    aggregate = {}
    for label, entry in summary["aggregate"].items():
        members = entry["runs"]
        lacking = [run_id for run_id in members if run_id in notes]
        note = f"{NO_COUNTS} in run(s) {', '.join(lacking)}" if lacking else None
        pairs = [] if lacking else [_pair(runs, run_id, counted) for run_id in members]
        aggregate[label] = {**entry, **_entry(boot, pairs, note)}
        present = [pair for pair in pairs if pair is not None]
        if present:
            aggregate[label]["locales"] = _locale_intervals(entry["locales"], boot, present)
    document["aggregate"] = aggregate
    return document, [f"no interval for run {rid}: {why}" for rid, why in notes.items()]


def difference(first: Sequence[Run], second: Sequence[Run], boot: Bootstrap) -> dict[str, Any]:
    """The interval of each metric's mean over `first` minus its mean over `second`.

    Raises `MetricsInputError` where a run has no counts, the two sides are of different
    metrics, or their test sets differ.
    """
    sides = []
    for runs in (first, second):
        pairs = []
        for run in runs:
            found = run_counts(run.run_id, run.source, run.matrix)
            if isinstance(found, str):
                raise MetricsInputError(f"--diff: run {run.run_id}: {found}")
            pairs.append((run.matrix, found))
        sides.append(pairs)
    metrics = {run.matrix.metric for run in [*first, *second]}
    if len(metrics) > 1:
        raise MetricsInputError(f"--diff: runs of different metrics: {', '.join(sorted(metrics))}")
    try:
        diff = boot.difference_intervals(sides[0], sides[1])
    except ValueError as err:
        raise MetricsInputError(f"--diff: {err}") from err
    a, b = boot.mean_intervals(sides[0]), boot.mean_intervals(sides[1])
    return {
        "metric": metrics.pop(),
        "a": {"runs": [run.run_id for run in first], **intervals_table(a)},
        "b": {"runs": [run.run_id for run in second], **intervals_table(b)},
        "difference": intervals_table(diff),
    }


def settings(boot: Bootstrap) -> dict[str, Any]:
    """The bootstrap's settings as the document records them."""
    return {"level": boot.level, "resamples": boot.resamples, "seed": boot.seed}


def _pair(runs: Sequence[Run], run_id: str, counted: Mapping[str, CellCounts]) -> Counted | None:
    if run_id not in counted:
        return None
    matrix = next(run.matrix for run in runs if run.run_id == run_id)
    return matrix, counted[run_id]


def _locale_intervals(
    locales: Mapping[str, Any], boot: Bootstrap, runs: Sequence[Counted]
) -> dict[str, Any]:
    """The per-locale table with each locale's final score's interval (``ci``; None where
    no run has its final cell)."""
    intervals = boot.locale_intervals(runs)
    return {
        locale: {
            **entry,
            "final_score": {
                **entry["final_score"],
                "ci": interval_values(intervals[locale]) if locale in intervals else None,
            },
        }
        for locale, entry in locales.items()
    }


def _entry(boot: Bootstrap, pairs: Sequence[Counted | None], note: str | None) -> dict[str, Any]:
    present = [p for p in pairs if p is not None]
    if note is not None or not present:
        return {"ci": None, "ci_note": note or NO_COUNTS}
    intervals: dict[str, Interval] = boot.mean_intervals(present)
    return {"ci": intervals_table(intervals), "ci_note": None}


def _nan(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))
