"""The score matrix of one run, and its two table forms (long and square).

``R[i, j]`` is the task's score (its metric: span F1 for slot filling, accuracy for intent
classification) on locale ``order[j]`` after training step ``i``; row 0 is the model before
any training. The run's schedule (``xlcl.schedules``) fixes the rows: a joint run has one
training step, so two rows; its columns still follow an order, which gives its Figure 2
curve.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from xlcl.schedules import JOINT, JOINT_LOCALE, SEQUENTIAL, Schedule

DEFAULT_METRIC = "span F1"  # the score of MASSIVE slot filling, and of tables that say nothing
SCORE = "score"  # the score column of a long table
OLD_SCORE = "f1"  # the score column of run directories and tables written before tasks


class MetricsInputError(ValueError):
    """A score table or run directory that cannot be read as a score matrix."""


@dataclass(frozen=True, eq=False)
class ScoreMatrix:
    """``scores[i, j]``: the score on ``order[j]`` after step ``i``, shape (rows, T).

    ``schedule.rows(T)`` rows: T + 1 for sequential and independent runs, 2 for a joint
    one. ``metric`` names the score (``"span F1"``, ``"intent accuracy"``) for display;
    ``method`` is a label only. NaN marks a cell the run cannot produce. The array is
    copied and made read-only.
    """

    order: tuple[str, ...]
    scores: np.ndarray = field(repr=False)
    schedule: Schedule = SEQUENTIAL
    metric: str = DEFAULT_METRIC
    method: str | None = None

    def __post_init__(self) -> None:
        scores = np.array(self.scores, dtype=float)
        scores.setflags(write=False)
        object.__setattr__(self, "scores", scores)
        object.__setattr__(self, "order", tuple(self.order))
        n = len(self.order)
        if n == 0:
            raise MetricsInputError("a score matrix needs at least one locale")
        if len(set(self.order)) != n:
            dup = sorted({loc for loc in self.order if self.order.count(loc) > 1})
            raise MetricsInputError(f"locale trained twice in the order: {', '.join(dup)}")
        rows = self.schedule.rows(n)
        if scores.shape != (rows, n):
            raise MetricsInputError(
                f"score matrix of a {self.schedule.name} run over {n} locales "
                f"must have shape ({rows}, {n}), got {scores.shape}"
            )
        bad = ~np.isnan(scores) & ((scores < 0) | (scores > 1))
        if bad.any():
            i, j = np.argwhere(bad)[0]
            raise MetricsInputError(
                f"{self.metric} outside [0, 1]: {scores[i, j]} at step {i}, locale {self.order[j]}"
            )

    @property
    def n_locales(self) -> int:
        """T, the number of locales of the order."""
        return len(self.order)


def score_column(table: pd.DataFrame) -> str:
    """The column of a long table that holds the score: ``score``, else the older ``f1``."""
    for column in (SCORE, OLD_SCORE):
        if column in table.columns:
            return column
    raise MetricsInputError(f"long table lacks column(s): {SCORE} (or {OLD_SCORE})")


def from_long(
    table: pd.DataFrame,
    schedule: Schedule | None = None,
    order: Sequence[str] | None = None,
    metric: str = DEFAULT_METRIC,
    method: str | None = None,
) -> ScoreMatrix:
    """Matrix from the long table (``step, trained_locale, eval_locale, score``).

    The score is column ``score``, or ``f1`` in tables without one. A table whose step 1
    trained ``joint`` is a joint run; otherwise ``schedule`` says (default sequential) and
    the order is ``trained_locale`` by step. A joint table has no order of its own:
    ``order`` gives it, else the locales' first appearance in the table.
    """
    missing = {"step", "trained_locale", "eval_locale"} - set(table.columns)
    if missing:
        raise MetricsInputError(f"long table lacks column(s): {', '.join(sorted(missing))}")
    column = score_column(table)
    table = table.assign(
        step=_integer_steps(table["step"]), **{column: _numeric(table[column], column)}
    )
    steps = _steps(table)
    schedule, cols = _schedule_and_order(table, _trained_by_step(table, steps), schedule, order)
    _check_cells(table, cols)
    wide = table.pivot(index="step", columns="eval_locale", values=column)
    wide = wide.reindex(index=steps, columns=cols)
    return ScoreMatrix(tuple(cols), wide.to_numpy(dtype=float), schedule, metric, method)


def from_square(
    table: pd.DataFrame,
    schedule: Schedule = SEQUENTIAL,
    metric: str = DEFAULT_METRIC,
    method: str | None = None,
) -> ScoreMatrix:
    """Matrix from the square form: column ``step`` (0, 1, ...), then one per locale."""
    if table.columns.empty or table.columns[0] != "step":
        raise MetricsInputError("square table must start with a 'step' column")
    order = [str(c) for c in table.columns[1:]]
    steps = _integer_steps(table["step"])
    last = schedule.training_steps(len(order))
    if steps != list(range(last + 1)):
        raise MetricsInputError(
            f"square table over {len(order)} locales needs steps 0..{last} in order, got {steps}"
        )
    values = table.iloc[:, 1:].apply(pd.to_numeric, errors="coerce")
    text = table.iloc[:, 1:]
    unparsed = values.isna() & text.notna()
    if unparsed.to_numpy().any():
        i, j = np.argwhere(unparsed.to_numpy())[0]
        raise MetricsInputError(f"not a number: {text.iat[i, j]!r} at step {i}, {order[j]}")
    return ScoreMatrix(tuple(order), values.to_numpy(dtype=float), schedule, metric, method)


def to_long(matrix: ScoreMatrix) -> pd.DataFrame:
    """The long table (``step, trained_locale, eval_locale, score``) of a matrix."""
    rows = [
        (i, matrix.schedule.trained_locale(i, matrix.order), loc, matrix.scores[i, j])
        for i in range(matrix.scores.shape[0])
        for j, loc in enumerate(matrix.order)
    ]
    return pd.DataFrame(rows, columns=["step", "trained_locale", "eval_locale", SCORE])


def to_square(matrix: ScoreMatrix) -> pd.DataFrame:
    """The square form: ``step`` then one column per locale in training order."""
    table = pd.DataFrame(matrix.scores, columns=list(matrix.order))
    table.insert(0, "step", range(matrix.scores.shape[0]))
    return table


def _integer_steps(column: pd.Series) -> list[int]:
    steps = pd.to_numeric(column, errors="coerce")
    if steps.isna().any() or (steps != steps.round()).any():
        raise MetricsInputError("column 'step' must hold integers")
    return [int(s) for s in steps]


def _steps(table: pd.DataFrame) -> list[int]:
    present = sorted(set(table["step"]))
    expected = list(range(present[-1] + 1)) if present else []
    if present != expected or len(present) < 2:
        gaps = sorted(set(expected) - set(present))
        detail = f"missing step(s) {gaps}" if gaps else f"steps {present}"
        raise MetricsInputError(f"steps must run 0..T with T >= 1: {detail}")
    return present


def _trained_by_step(table: pd.DataFrame, steps: list[int]) -> list[str]:
    """trained_locale of steps 1..T, each step holding exactly one value."""
    trained = []
    for step in steps:
        values = table.loc[table["step"] == step, "trained_locale"]
        distinct = set(values.dropna())
        if step == 0:
            if distinct:
                raise MetricsInputError("step 0 (before training) must have no trained_locale")
            continue
        if values.isna().any() or len(distinct) != 1:
            raise MetricsInputError(
                f"step {step} needs exactly one trained_locale, got {sorted(map(str, distinct))}"
            )
        trained.append(str(distinct.pop()))
    return trained


def _schedule_and_order(
    table: pd.DataFrame,
    trained: list[str],
    schedule: Schedule | None,
    order: Sequence[str] | None,
) -> tuple[Schedule, list[str]]:
    """The schedule (joint for a joint table) and the column order of a long table."""
    if trained[0] == JOINT_LOCALE:
        if schedule is not None and schedule != JOINT:
            raise MetricsInputError(f"table of a joint run but the schedule is {schedule.name}")
        cols = list(order) if order is not None else list(dict.fromkeys(table["eval_locale"]))
        if len(trained) != JOINT.training_steps(len(cols)):
            raise MetricsInputError(f"a joint run has steps 0 and 1, got 0..{len(trained)}")
        return JOINT, cols
    if JOINT_LOCALE in trained:
        raise MetricsInputError(f"{JOINT_LOCALE!r} may only be the trained locale of step 1 of 1")
    if schedule == JOINT:
        raise MetricsInputError(f"the schedule is joint but the table has no {JOINT_LOCALE} step")
    twice = sorted({loc for loc in trained if trained.count(loc) > 1})
    if twice:
        raise MetricsInputError(f"locale trained twice in the order: {', '.join(twice)}")
    if order is not None and tuple(order) != tuple(trained):
        raise MetricsInputError("the given order differs from trained_locale by step")
    return schedule or SEQUENTIAL, list(trained)


def _check_cells(table: pd.DataFrame, cols: list[str]) -> None:
    """Every (step, locale) cell exactly once, and no locale outside ``cols``."""
    evaluated = set(table["eval_locale"])
    never = sorted(evaluated - set(cols))
    if never:
        raise MetricsInputError(f"locale(s) evaluated but never trained: {', '.join(never)}")
    unevaluated = sorted(set(cols) - evaluated)
    if unevaluated:
        raise MetricsInputError(f"locale(s) never evaluated: {', '.join(unevaluated)}")
    dup = table.duplicated(["step", "eval_locale"], keep=False)
    if dup.any():
        row = table[dup].iloc[0]
        raise MetricsInputError(
            f"duplicated cell: step {row['step']}, eval_locale {row['eval_locale']}"
        )
    counts = table.groupby("step")["eval_locale"].nunique()
    short = counts[counts < len(cols)]
    if len(short):
        raise MetricsInputError(
            f"ragged matrix: step {short.index[0]} has {short.iloc[0]} of {len(cols)} locales"
        )


def _numeric(column: pd.Series, name: str) -> pd.Series:
    values = pd.to_numeric(column, errors="coerce")
    unparsed = values.isna() & column.notna()
    if unparsed.any():
        raise MetricsInputError(f"not a number in column {name}: {column[unparsed].iloc[0]!r}")
    return values
