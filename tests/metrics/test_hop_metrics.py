"""MFT, MBT and fwt_k on hand-computed matrices (fixtures in conftest.py)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from xlcl.metrics import ScoreMatrix, fwt, hop_means, mbt, mft

nan = np.nan


def close(actual: Any, expected: Any) -> None:
    np.testing.assert_allclose(np.asarray(actual, dtype=float), expected, atol=1e-12)


# seq3 effect: step 1: .4 .1 -.1 | step 2: -.1 .3 NaN | step 3: -.1 -.1 NaN
# perf_shift: NaN NaN -.1 -.1


def test_seq3_mft(seq3: ScoreMatrix) -> None:
    table = mft(seq3, hops=2)
    assert list(table.index) == ["a", "b", "c"] and list(table.columns) == [0, 1, 2]
    close(
        table,
        [
            [nan, 0.1, -0.1],  # a (p=1): perf_shift[1]; effect[1, b]; effect[1, c]
            [-0.1, nan, nan],  # b (p=2): perf_shift[2]; effect[2, c] is NaN; p+2 > T
            [-0.1, nan, nan],  # c (p=3): perf_shift[3]; no later locale
        ],
    )
    # run level, mean over positions: h0 mean(-.1, -.1); h1 .1 (a only); h2 -.1 (a only)
    close(hop_means(table), [-0.1, 0.1, -0.1])


def test_seq3_mbt(seq3: ScoreMatrix) -> None:
    table = mbt(seq3, hops=2)
    close(
        table,
        [
            [nan, -0.1, -0.1],  # a: effect[2, a]; effect[3, a]
            [-0.1, -0.1, nan],  # b: effect[3, b]
            [-0.1, nan, nan],
        ],
    )
    close(hop_means(table), [-0.1, -0.1, -0.1])


def test_seq3_fwt(seq3: ScoreMatrix) -> None:
    # k=1: R[1,b] - R[0,b] = .3 - .2 = .1; R[2,c] is NaN, skipped -> .1
    # k=2: R[1,c] - R[0,c] = .2 - .3 = -.1
    close(fwt(seq3), [0.1, -0.1])


# seq4 effect: 1: .6 .1 .1 NaN | 2: -.1 .6 .1 NaN | 3: .2 -.2 .5 .1 | 4: -.3 .1 -.3 .5
# perf_shift: NaN NaN -.1 0 -.5/3


def test_seq4_mft(seq4: ScoreMatrix) -> None:
    close(
        mft(seq4, hops=3),
        [
            [nan, 0.1, 0.1, nan],  # a: effect[1, b], effect[1, c], effect[1, d] = NaN
            [-0.1, 0.1, nan, nan],  # b: effect[2, c], effect[2, d] = NaN
            [0.0, 0.1, nan, nan],  # c: effect[3, d]
            [-0.5 / 3, nan, nan, nan],
        ],
    )
    # h0: (-.1 + 0 - .5/3) / 3; h1: (.1 + .1 + .1) / 3; h2: .1; h3: no cell
    close(hop_means(mft(seq4, hops=3)), [(-0.1 - 0.5 / 3) / 3, 0.1, 0.1, nan])


def test_seq4_mbt(seq4: ScoreMatrix) -> None:
    close(
        mbt(seq4, hops=3),
        [
            [nan, -0.1, 0.2, -0.3],  # a: effect[2, a], effect[3, a], effect[4, a]
            [-0.1, -0.2, 0.1, nan],  # b: effect[3, b], effect[4, b]
            [0.0, -0.3, nan, nan],  # c: effect[4, c]
            [-0.5 / 3, nan, nan, nan],
        ],
    )
    # h1: (-.1 - .2 - .3) / 3; h2: (.2 + .1) / 2; h3: -.3
    close(hop_means(mbt(seq4, hops=3)), [(-0.1 - 0.5 / 3) / 3, -0.2, 0.15, -0.3])


def test_seq4_fwt(seq4: ScoreMatrix) -> None:
    # k=1: (.2-.1) + (.4-.2) + (.3-.1) = .5, / 3; k=2: (.3-.2) + (.2-.1) = .2, / 2;
    # k=3: R[1,d] is NaN -> NaN
    close(fwt(seq4), [0.5 / 3, 0.1, nan])


def test_hops_beyond_the_order_are_nan(seq3: ScoreMatrix) -> None:
    table = mft(seq3, hops=10)
    assert table.shape == (3, 11)
    assert table.loc[:, 3:].isna().all().all()
    assert mbt(seq3, hops=0).shape == (3, 1)


def test_negative_hops_rejected(seq3: ScoreMatrix) -> None:
    with pytest.raises(ValueError, match="hops"):
        mft(seq3, hops=-1)


def test_not_sequential_has_no_hops(mono3: ScoreMatrix, multi3: ScoreMatrix) -> None:
    for run in (mono3, multi3):
        assert mft(run, hops=2).isna().all().all()
        assert mbt(run, hops=2).isna().all().all()
        assert np.isnan(fwt(run)).all() and len(fwt(run)) == 2
