"""Per-run metrics: pure functions of one score matrix (``../spec/metrics.md``).

Every aggregate skips NaN cells; an aggregate with no cell at all is NaN. Arrays indexed
by step have T+1 entries (index = step; row 0 is before training). The score is the
task's metric (the spec's F1); the spec's ``avg_f1``, ``final_f1`` and ``learning_f1`` are
``avg_score``, ``final_score`` and ``learning_score`` here. Which row scores a locale, and
which row a step starts from, is the schedule's (``xlcl.schedules``). Transfer metrics
(``perf_shift``, ``cbt``, ``cft``, ``forgetting``) exist only where one model sees the
locales in turn (``schedule.order_dependent``): NaN for joint and independent runs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from xlcl.metrics.matrix import ScoreMatrix


def nanmean(values: np.ndarray) -> float:
    """Mean of the non-NaN values; NaN when there is none (no warning)."""
    values = np.asarray(values, dtype=float)
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else float("nan")


def _nan_steps(matrix: ScoreMatrix) -> np.ndarray:
    return np.full(matrix.n_locales + 1, np.nan)


def _scored(values: np.ndarray, matrix: ScoreMatrix, learned: int | None) -> np.ndarray:
    """values[s(j), j] for positions j = 1..``learned`` (all with None), s(j) the row whose
    model scores ℓ_j once ``learned`` locales are trained, or (None) once ℓ_j is."""
    positions = range(1, (matrix.n_locales if learned is None else learned) + 1)
    rows = [matrix.schedule.scoring_step(j, j if learned is None else learned) for j in positions]
    return values[rows, [j - 1 for j in positions]]


def avg_score(matrix: ScoreMatrix) -> np.ndarray:
    """avg_score[i] = mean_{j≤i} R[i, j]; index = step, avg_score[0] = NaN (nothing learned).

    Joint: mean_{j≤i} R[1, j], its one row along the order (Figure 2's dotted line).
    Independent: mean_{j≤i} R[j, j], the models trained so far.
    """
    curve = _nan_steps(matrix)
    for i in range(1, matrix.n_locales + 1):
        curve[i] = nanmean(_scored(matrix.scores, matrix, learned=i))
    return curve


def final_score(matrix: ScoreMatrix) -> float:
    """final_score = avg_score[T] (Table 1 "F1"); for a joint run the mean of its one row."""
    return float(avg_score(matrix)[-1])


def final_locale_score(matrix: ScoreMatrix) -> pd.Series:
    """Score of each locale at the end: R[T, j]; R[j, j] (independent); R[1, j] (joint).

    Averaged over orders and within a group these are Table 1's group columns.
    """
    values = _scored(matrix.scores, matrix, learned=matrix.n_locales)
    return pd.Series(values, index=list(matrix.order), name="final_score", dtype=float)


def effect(matrix: ScoreMatrix) -> np.ndarray:
    """effect[i, j] = R[i, j] − R[i−1, j]: what step i did to locale j; row 0 NaN.

    The baseline is the row the step started from (``schedule.starting_step``): in an
    independent or joint run every model starts from the untrained one, so it is row 0:
    effect[i, j] = R[i, j] − R[0, j].
    """
    scores = matrix.scores
    out = np.full_like(scores, np.nan)
    for i in range(1, scores.shape[0]):
        out[i] = scores[i] - scores[matrix.schedule.starting_step(i)]
    return out


def perf_shift(matrix: ScoreMatrix) -> np.ndarray:
    """perf_shift[i] = mean_{j<i} (R[i, j] − R[i−1, j]) (eq. 9); NaN for steps 0 and 1."""
    out = _nan_steps(matrix)
    if not matrix.schedule.order_dependent:
        return out
    eff = effect(matrix)
    for i in range(2, matrix.n_locales + 1):
        out[i] = nanmean(eff[i, : i - 1])
    return out


def cbt(matrix: ScoreMatrix) -> float:
    """CBT = 1/(T−1) · Σ_{i=1}^{T−1} (R[T, i] − R[i, i]) (eq. 12)."""
    t = matrix.n_locales
    if not matrix.schedule.order_dependent or t < 2:
        return float("nan")
    last = matrix.scores[t, : t - 1]
    learned = np.diagonal(matrix.scores[1:])[: t - 1]
    return nanmean(last - learned)


def cft(matrix: ScoreMatrix) -> float:
    """CFT = 1/(T−1) · Σ_{i=1}^{T−1} X̄_i, X̄_i = 1/(T−i) · Σ_{j=i+1}^{T} R[i, j] (eq. 10-11).

    A step whose cells ahead of it are all NaN has no X̄_i and is skipped.
    """
    t = matrix.n_locales
    if not matrix.schedule.order_dependent or t < 2:
        return float("nan")
    ahead = np.array([nanmean(matrix.scores[i, i:]) for i in range(1, t)])
    return nanmean(ahead)


def forgetting(matrix: ScoreMatrix) -> float:
    """forgetting = 1/(T−1) · Σ_{j<T} (max_{j≤i<T} R[i, j] − R[T, j]).

    The max runs over the rows from the one that learned ℓ_j on (Chaudhry et al. 2018
    take it over every earlier row, zero-shot rows included).
    """
    if not matrix.schedule.order_dependent or matrix.n_locales < 2:
        return float("nan")
    return nanmean(locale_forgetting(matrix).to_numpy()[:-1])


def locale_forgetting(matrix: ScoreMatrix) -> pd.Series:
    """forgetting(ℓ_j) = max_{j≤i<T} R[i, j] − R[T, j], for j < T; NaN for ℓ_T.

    The per-locale terms of `forgetting` (whose value is their NaN-skipping mean). NaN for
    every locale of a run that is not sequential, and where ℓ_j has no score in the max's
    range.
    """
    t = matrix.n_locales
    values = np.full(t, np.nan)
    if matrix.schedule.order_dependent:
        for j in range(t - 1):
            since = matrix.scores[j + 1 : t, j]  # rows j+1..T-1 in 0-based columns: ℓ_j learned
            if not np.isnan(since).all():
                values[j] = np.nanmax(since) - matrix.scores[t, j]
    return pd.Series(values, index=list(matrix.order), name="forgetting", dtype=float)


def learning_score(matrix: ScoreMatrix) -> float:
    """learning_score = mean_j R[j, j]: each locale right after it was learned (joint: R[1, j])."""
    return nanmean(_scored(matrix.scores, matrix, learned=None))


def learning_gain(matrix: ScoreMatrix) -> pd.Series:
    """learning_gain(ℓ_p) = effect[p, p]: ℓ's own gain from the step that trained it.

    Joint: effect[1, j] = R[1, j] − R[0, j], the joint step's gain on each locale.
    """
    values = _scored(effect(matrix), matrix, learned=None)
    return pd.Series(values, index=list(matrix.order), name="learning_gain", dtype=float)
