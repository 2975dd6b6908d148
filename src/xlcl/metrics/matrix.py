"""The score matrix of one run, and its two table forms (long and square).

``R[i, j]`` is the span F1 on locale ``order[j]`` after training step ``i``; row 0 is
the model before any training. A MULTI run has one training step (``joint``), so its
matrix has two rows; columns still follow an order, which gives its Figure 2 curve.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

Schedule = Literal["joint", "independent", "sequential"]

SCHEDULES: dict[str, Schedule] = {
    "multi": "joint",
    "mono": "independent",
    "nonshared-lora": "independent",
    "vanilla": "sequential",
    "shared-lora": "sequential",
}
JOINT = "joint"  # trained_locale of MULTI's single step in the long table


class MetricsInputError(ValueError):
    """A score table or run directory that cannot be read as a score matrix."""


def schedule_of(method: str | None) -> Schedule:
    """The schedule of a method; a matrix without a method is read as sequential."""
    if method is None:
        return "sequential"
    if method not in SCHEDULES:
        known = ", ".join(SCHEDULES)
        raise MetricsInputError(f"unknown method {method!r}; known: {known}")
    return SCHEDULES[method]


@dataclass(frozen=True, eq=False)
class ScoreMatrix:
    """``f1[i, j]``: F1 on ``order[j]`` after step ``i``; shape (T+1, T), or (2, T) for MULTI.

    NaN marks a cell the method cannot produce. The array is copied and made read-only.
    """

    order: tuple[str, ...]
    f1: np.ndarray = field(repr=False)
    method: str | None = None

    def __post_init__(self) -> None:
        f1 = np.array(self.f1, dtype=float)
        f1.setflags(write=False)
        object.__setattr__(self, "f1", f1)
        object.__setattr__(self, "order", tuple(self.order))
        n = len(self.order)
        if n == 0:
            raise MetricsInputError("a score matrix needs at least one locale")
        if len(set(self.order)) != n:
            dup = sorted({loc for loc in self.order if self.order.count(loc) > 1})
            raise MetricsInputError(f"locale trained twice in the order: {', '.join(dup)}")
        rows = 2 if self.schedule == "joint" else n + 1
        if f1.shape != (rows, n):
            raise MetricsInputError(
                f"score matrix of {self.method or 'a sequential run'} over {n} locales "
                f"must have shape ({rows}, {n}), got {f1.shape}"
            )
        bad = ~np.isnan(f1) & ((f1 < 0) | (f1 > 1))
        if bad.any():
            i, j = np.argwhere(bad)[0]
            raise MetricsInputError(
                f"F1 outside [0, 1]: {f1[i, j]} at step {i}, locale {self.order[j]}"
            )

    @property
    def schedule(self) -> Schedule:
        """joint (MULTI), independent (MONO, NON-SHARED) or sequential (the rest)."""
        return schedule_of(self.method)

    @property
    def n_locales(self) -> int:
        """T, the number of locales of the order."""
        return len(self.order)


def from_long(
    table: pd.DataFrame, method: str | None = None, order: Sequence[str] | None = None
) -> ScoreMatrix:
    """Matrix from the long table (``step, trained_locale, eval_locale, f1``).

    The order is ``trained_locale`` by step. A MULTI table (``joint`` at step 1) has no
    order of its own: ``order`` gives it, else the locales' first appearance in the table.
    """
    missing = {"step", "trained_locale", "eval_locale", "f1"} - set(table.columns)
    if missing:
        raise MetricsInputError(f"long table lacks column(s): {', '.join(sorted(missing))}")
    table = table.assign(step=_integer_steps(table["step"]), f1=_numeric_f1(table["f1"]))
    steps = _steps(table)
    method, cols = _method_and_order(table, _trained_by_step(table, steps), method, order)
    _check_cells(table, cols)
    wide = table.pivot(index="step", columns="eval_locale", values="f1")
    wide = wide.reindex(index=steps, columns=cols)
    return ScoreMatrix(order=tuple(cols), f1=wide.to_numpy(dtype=float), method=method)


def from_square(table: pd.DataFrame, method: str | None = None) -> ScoreMatrix:
    """Matrix from the square form: column ``step`` (0..T), then one column per locale."""
    if table.columns.empty or table.columns[0] != "step":
        raise MetricsInputError("square table must start with a 'step' column")
    order = [str(c) for c in table.columns[1:]]
    steps = _integer_steps(table["step"])
    expected = list(range(len(order) + 1))
    if steps != expected:
        raise MetricsInputError(
            f"square table over {len(order)} locales needs steps 0..{len(order)} in order, "
            f"got {steps}"
        )
    values = table.iloc[:, 1:].apply(pd.to_numeric, errors="coerce")
    text = table.iloc[:, 1:]
    unparsed = values.isna() & text.notna()
    if unparsed.to_numpy().any():
        i, j = np.argwhere(unparsed.to_numpy())[0]
        raise MetricsInputError(f"not a number: {text.iat[i, j]!r} at step {i}, {order[j]}")
    return ScoreMatrix(order=tuple(order), f1=values.to_numpy(dtype=float), method=method)


def to_long(matrix: ScoreMatrix) -> pd.DataFrame:
    """The long table (``step, trained_locale, eval_locale, f1``) of a matrix."""
    if matrix.schedule == "joint":
        trained: list[str | None] = [None, JOINT]
    else:
        trained = [None, *matrix.order]
    rows = [
        (i, trained[i], loc, matrix.f1[i, j])
        for i in range(matrix.f1.shape[0])
        for j, loc in enumerate(matrix.order)
    ]
    return pd.DataFrame(rows, columns=["step", "trained_locale", "eval_locale", "f1"])


def to_square(matrix: ScoreMatrix) -> pd.DataFrame:
    """The square form: ``step`` then one column per locale in training order."""
    table = pd.DataFrame(matrix.f1, columns=list(matrix.order))
    table.insert(0, "step", range(matrix.f1.shape[0]))
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


def _method_and_order(
    table: pd.DataFrame, trained: list[str], method: str | None, order: Sequence[str] | None
) -> tuple[str | None, list[str]]:
    """The method (``multi`` for a joint table) and the column order of a long table."""
    if trained[0] == JOINT:
        if method not in (None, "multi"):
            raise MetricsInputError(f"table of a joint run but method is {method!r}")
        if len(trained) != 1:
            raise MetricsInputError(f"a joint run has steps 0 and 1, got 0..{len(trained)}")
        cols = list(order) if order is not None else list(dict.fromkeys(table["eval_locale"]))
        return "multi", cols
    if JOINT in trained:
        raise MetricsInputError("'joint' may only be the trained locale of step 1 of 1")
    if method == "multi":
        raise MetricsInputError("method is multi but the table has no joint step")
    twice = sorted({loc for loc in trained if trained.count(loc) > 1})
    if twice:
        raise MetricsInputError(f"locale trained twice in the order: {', '.join(twice)}")
    if order is not None and tuple(order) != tuple(trained):
        raise MetricsInputError("the given order differs from trained_locale by step")
    return method, list(trained)


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


def _numeric_f1(column: pd.Series) -> pd.Series:
    f1 = pd.to_numeric(column, errors="coerce")
    unparsed = f1.isna() & column.notna()
    if unparsed.any():
        raise MetricsInputError(f"not a number in column f1: {column[unparsed].iloc[0]!r}")
    return f1
