"""Multi-hop transfer: MFT (ℓ as donor), MBT (ℓ as receiver), and M'hamdi et al.'s fwt_k.

These are the project's cell-level reading of the paper's eq. 13 (``docs/metrics.md``):
hop h ≥ 1 is one cell of ``effect``; hop 0 is ``perf_shift`` of ℓ's own step, as the
paper says "a hop distance of zero corresponds to the performance change metric".
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from xlcl.metrics.matrix import ScoreMatrix
from xlcl.metrics.per_run import effect, nanmean, perf_shift

DEFAULT_HOPS = 10  # Figure 5 shows h = 0..10


def mft(matrix: ScoreMatrix, hops: int = DEFAULT_HOPS) -> pd.DataFrame:
    """MFT_h(ℓ_p) = effect[p, p + h] for 1 ≤ h, p + h ≤ T; MFT_0(ℓ_p) = perf_shift[p].

    Rows: locales in training order; columns: hops 0..H. NaN where p + h > T, and for
    every cell of a run that is not sequential.
    """
    return _hop_table(matrix, hops, donor=True)


def mbt(matrix: ScoreMatrix, hops: int = DEFAULT_HOPS) -> pd.DataFrame:
    """MBT_h(ℓ_p) = effect[p + h, p] for 1 ≤ h, p + h ≤ T; MBT_0(ℓ_p) = perf_shift[p].

    Rows: locales in training order; columns: hops 0..H.
    """
    return _hop_table(matrix, hops, donor=False)


def hop_means(table: pd.DataFrame) -> pd.Series:
    """Run-level MFT_h / MBT_h = mean over positions p of the per-locale values (NaN skipped)."""
    return pd.Series(
        [nanmean(table[h].to_numpy()) for h in table.columns], index=table.columns, dtype=float
    )


def fwt(matrix: ScoreMatrix) -> np.ndarray:
    """fwt_k = mean_{i=1}^{T−k} (R[i, i + k] − R[0, i + k]), for k = 1..T−1 (index k − 1).

    M'hamdi et al. 2023's k-hop forward transfer: a level relative to the untrained model.
    """
    t = matrix.n_locales
    out = np.full(max(t - 1, 0), np.nan)
    if not matrix.schedule.order_dependent:
        return out
    r = matrix.scores
    for k in range(1, t):
        # 1-based R[i, i+k] is r[i, i+k-1] (columns are 0-based)
        cells = [r[i, i + k - 1] - r[0, i + k - 1] for i in range(1, t - k + 1)]
        out[k - 1] = nanmean(np.array(cells))
    return out


def _hop_table(matrix: ScoreMatrix, hops: int, donor: bool) -> pd.DataFrame:
    if hops < 0:
        raise ValueError(f"hops must be >= 0, got {hops}")
    t = matrix.n_locales
    values = np.full((t, hops + 1), np.nan)
    if matrix.schedule.order_dependent:
        eff = effect(matrix)
        values[:, 0] = perf_shift(matrix)[1:]
        for p in range(1, t + 1):  # 1-based position: step p trained order[p - 1]
            for h in range(1, min(hops, t - p) + 1):
                step, col = (p, p + h - 1) if donor else (p + h, p - 1)
                values[p - 1, h] = eff[step, col]
    return pd.DataFrame(values, index=list(matrix.order), columns=list(range(hops + 1)))
