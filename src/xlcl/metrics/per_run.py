"""Per-run metrics: pure functions of one score matrix (``../spec/metrics.md``).

Every aggregate skips NaN cells; an aggregate with no cell at all is NaN. Arrays indexed
by step have T+1 entries (index = step; row 0 is before training). Transfer metrics
(``perf_shift``, ``cbt``, ``cft``, ``forgetting``) are NaN for MULTI (one joint step) and
for MONO / NON-SHARED (one model per locale: no model sees two locales in turn).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from xlcl.metrics.matrix import ScoreMatrix


def nanmean(values: np.ndarray) -> float:
    """Mean of the non-NaN values; NaN when there is none (no warning)."""
    values = np.asarray(values, dtype=float)
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else float("nan")


def _nanmean_rows(values: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows are NaN by rule
        return np.asarray(np.nanmean(values, axis=1), dtype=float)


def _nan_steps(matrix: ScoreMatrix) -> np.ndarray:
    return np.full(matrix.n_locales + 1, np.nan)


def avg_f1(matrix: ScoreMatrix) -> np.ndarray:
    """avg_f1[i] = mean_{j≤i} R[i, j]; index = step, avg_f1[0] = NaN (nothing learned yet).

    MULTI: mean_{j≤i} R[1, j], its one row along the order (Figure 2's dotted line).
    MONO / NON-SHARED: mean_{j≤i} R[j, j], the models trained so far.
    """
    t = matrix.n_locales
    curve = _nan_steps(matrix)
    for i in range(1, t + 1):
        if matrix.schedule == "joint":
            cells = matrix.f1[1, :i]
        elif matrix.schedule == "independent":
            cells = np.diagonal(matrix.f1[1:])[:i]
        else:
            cells = matrix.f1[i, :i]
        curve[i] = nanmean(cells)
    return curve


def final_f1(matrix: ScoreMatrix) -> float:
    """final_f1 = avg_f1[T] (Table 1 "F1"); for MULTI the mean of its one row."""
    return float(avg_f1(matrix)[-1])


def final_locale_f1(matrix: ScoreMatrix) -> pd.Series:
    """F1 of each locale at the end: R[T, j]; R[j, j] (MONO, NON-SHARED); R[1, j] (MULTI).

    Averaged over orders and within a group these are Table 1's group columns.
    """
    if matrix.schedule == "joint":
        values = matrix.f1[1]
    elif matrix.schedule == "independent":
        values = np.diagonal(matrix.f1[1:])
    else:
        values = matrix.f1[-1]
    return pd.Series(values, index=list(matrix.order), name="final_f1", dtype=float)


def effect(matrix: ScoreMatrix) -> np.ndarray:
    """effect[i, j] = R[i, j] − R[i−1, j]: what step i did to locale j; row 0 NaN.

    For MONO / NON-SHARED and MULTI each model starts from the untrained one, so the
    baseline of every step is row 0: effect[i, j] = R[i, j] − R[0, j].
    """
    f1 = matrix.f1
    out = np.full_like(f1, np.nan)
    if matrix.schedule == "sequential":
        out[1:] = f1[1:] - f1[:-1]
    else:
        out[1:] = f1[1:] - f1[0]
    return out


def perf_shift(matrix: ScoreMatrix) -> np.ndarray:
    """perf_shift[i] = mean_{j<i} (R[i, j] − R[i−1, j]) (eq. 9); NaN for steps 0 and 1."""
    out = _nan_steps(matrix)
    if matrix.schedule != "sequential":
        return out
    eff = effect(matrix)
    for i in range(2, matrix.n_locales + 1):
        out[i] = nanmean(eff[i, : i - 1])
    return out


def cbt(matrix: ScoreMatrix) -> float:
    """CBT = 1/(T−1) · Σ_{i=1}^{T−1} (R[T, i] − R[i, i]) (eq. 12)."""
    t = matrix.n_locales
    if matrix.schedule != "sequential" or t < 2:
        return float("nan")
    last = matrix.f1[t, : t - 1]
    learned = np.diagonal(matrix.f1[1:])[: t - 1]
    return nanmean(last - learned)


def cft(matrix: ScoreMatrix) -> float:
    """CFT = 1/(T−1) · Σ_{i=1}^{T−1} X̄_i, X̄_i = 1/(T−i) · Σ_{j=i+1}^{T} R[i, j] (eq. 10-11).

    A step whose cells ahead of it are all NaN has no X̄_i and is skipped.
    """
    t = matrix.n_locales
    if matrix.schedule != "sequential" or t < 2:
        return float("nan")
    ahead = np.array([nanmean(matrix.f1[i, i:]) for i in range(1, t)])
    return nanmean(ahead)


def forgetting(matrix: ScoreMatrix) -> float:
    """forgetting = 1/(T−1) · Σ_{j<T} (max_{j≤i<T} R[i, j] − R[T, j]).

    The max runs over the rows from the one that learned ℓ_j on (Chaudhry et al. 2018
    take it over every earlier row, zero-shot rows included).
    """
    if matrix.schedule != "sequential" or matrix.n_locales < 2:
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
    if matrix.schedule == "sequential":
        for j in range(t - 1):
            since = matrix.f1[j + 1 : t, j]  # rows j+1..T-1 in 0-based columns: ℓ_j learned
            if not np.isnan(since).all():
                values[j] = np.nanmax(since) - matrix.f1[t, j]
    return pd.Series(values, index=list(matrix.order), name="forgetting", dtype=float)


def learning_f1(matrix: ScoreMatrix) -> float:
    """learning_f1 = mean_j R[j, j]: each locale right after it was learned (MULTI: R[1, j])."""
    if matrix.schedule == "joint":
        return nanmean(matrix.f1[1])
    return nanmean(np.diagonal(matrix.f1[1:]))


def learning_gain(matrix: ScoreMatrix) -> pd.Series:
    """learning_gain(ℓ_p) = effect[p, p]: ℓ's own gain from the step that trained it.

    MULTI: effect[1, j] = R[1, j] − R[0, j], the joint step's gain on each locale.
    """
    eff = effect(matrix)
    values = eff[1] if matrix.schedule == "joint" else np.diagonal(eff[1:])
    return pd.Series(values, index=list(matrix.order), name="learning_gain", dtype=float)
