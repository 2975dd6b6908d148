"""Across runs: the metrics of several runs (the orders of one method) side by side.

Scalars and curves: mean ± standard deviation over runs, with ``ddof = 1`` (the sample
standard deviation across orders; NaN for a single run). Per locale: the mean over the
runs in which the cell exists, with the number of contributing cells beside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from xlcl.metrics.hops import DEFAULT_HOPS, fwt, hop_means, mbt, mft
from xlcl.metrics.matrix import ScoreMatrix
from xlcl.metrics.per_run import (
    avg_score,
    cbt,
    cft,
    final_locale_score,
    final_score,
    forgetting,
    learning_gain,
    learning_score,
    perf_shift,
)

DDOF = 1
SCALARS = ("final_score", "cbt", "cft", "forgetting", "learning_score")
CURVES = ("avg_score", "perf_shift", "fwt", "mft", "mbt")  # mft, mbt: run-level mean by hop
LOCALE_VALUES = ("final_score", "perf_shift", "learning_gain")


@dataclass(frozen=True, eq=False)
class RunMetrics:
    """Every metric of one run: scalars, curves (by step, k or hop) and per-locale tables."""

    method: str | None
    metric: str  # the score's name, e.g. "span F1"
    order: tuple[str, ...]
    scalars: dict[str, float]
    curves: dict[str, np.ndarray]
    locales: pd.DataFrame  # index locale; columns LOCALE_VALUES
    mft: pd.DataFrame  # index locale; columns hops 0..H
    mbt: pd.DataFrame


@dataclass(frozen=True, eq=False)
class Aggregate:
    """Metrics over runs: ``mean``/``std``/``n`` tables; per locale ``mean`` and ``n``."""

    n_runs: int
    metric: str  # the runs' score, e.g. "span F1"
    scalars: pd.DataFrame  # index SCALARS; columns mean, std, n
    curves: dict[str, pd.DataFrame]  # index position; columns mean, std, n
    locale_mean: pd.DataFrame  # index locale; columns LOCALE_VALUES, mft_0.., mbt_0..
    locale_n: pd.DataFrame  # same shape: contributing cells


def summarize(matrix: ScoreMatrix, hops: int = DEFAULT_HOPS) -> RunMetrics:
    """All per-run metrics of ``matrix``, hop tables for hops 0..``hops``."""
    mft_table, mbt_table = mft(matrix, hops), mbt(matrix, hops)
    shift = perf_shift(matrix)
    own_shift = pd.Series(shift[1:], index=list(matrix.order), name="perf_shift")
    return RunMetrics(
        method=matrix.method,
        metric=matrix.metric,
        order=matrix.order,
        scalars={
            "final_score": final_score(matrix),
            "cbt": cbt(matrix),
            "cft": cft(matrix),
            "forgetting": forgetting(matrix),
            "learning_score": learning_score(matrix),
        },
        curves={
            "avg_score": avg_score(matrix),
            "perf_shift": shift,
            "fwt": fwt(matrix),
            "mft": hop_means(mft_table).to_numpy(),
            "mbt": hop_means(mbt_table).to_numpy(),
        },
        locales=pd.concat([final_locale_score(matrix), own_shift, learning_gain(matrix)], axis=1),
        mft=mft_table,
        mbt=mbt_table,
    )


def aggregate(runs: Sequence[RunMetrics]) -> Aggregate:
    """Mean ± std over ``runs`` of every scalar and curve; per-locale means and counts."""
    if not runs:
        raise ValueError("aggregate needs at least one run")
    metrics = sorted({r.metric for r in runs})
    if len(metrics) > 1:
        raise ValueError(f"runs of different metrics cannot be averaged: {', '.join(metrics)}")
    scalars = pd.DataFrame([r.scalars for r in runs], columns=list(SCALARS))
    curves = {name: _stack([r.curves[name] for r in runs]) for name in CURVES}
    per_locale = pd.concat([_locale_row(r) for r in runs])
    grouped = per_locale.groupby(level=0, sort=True)
    return Aggregate(
        n_runs=len(runs),
        metric=metrics[0],
        scalars=_describe(scalars),
        curves={name: _describe(table) for name, table in curves.items()},
        locale_mean=grouped.mean(),
        locale_n=grouped.count(),
    )


def _locale_row(run: RunMetrics) -> pd.DataFrame:
    hops = [run.mft.add_prefix("mft_"), run.mbt.add_prefix("mbt_")]
    return pd.concat([run.locales, *[t.rename(columns=str) for t in hops]], axis=1)


def _stack(curves: list[np.ndarray]) -> pd.DataFrame:
    """Runs as rows, positions as columns; shorter runs padded with NaN."""
    width = max(len(c) for c in curves)
    padded = [np.pad(c, (0, width - len(c)), constant_values=np.nan) for c in curves]
    return pd.DataFrame(np.array(padded, dtype=float).reshape(len(curves), width))


def _describe(table: pd.DataFrame) -> pd.DataFrame:
    """Per column of ``table`` (runs as rows): mean, std (ddof 1) and n over non-NaN cells."""
    return pd.DataFrame({"mean": table.mean(), "std": table.std(ddof=DDOF), "n": table.count()})
