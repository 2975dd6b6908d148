"""Per-run metrics on hand-computed matrices (fixtures in conftest.py)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from xlcl.metrics import (
    ScoreMatrix,
    avg_score,
    cbt,
    cft,
    effect,
    final_locale_score,
    final_score,
    forgetting,
    learning_gain,
    learning_score,
    perf_shift,
)
from xlcl.schedules import INDEPENDENT

nan = np.nan


def close(actual: Any, expected: Any) -> None:
    np.testing.assert_allclose(np.asarray(actual, dtype=float), expected, atol=1e-12)


# --- seq3 -------------------------------------------------------------------------------
# step 0: .1 .2 .3 | step 1: .5 .3 .2 | step 2: .4 .6 NaN | step 3: .3 .5 .7


def test_seq3_avg_and_final_score(seq3: ScoreMatrix) -> None:
    # avg_score[1] = .5; [2] = (.4 + .6) / 2 = .5; [3] = (.3 + .5 + .7) / 3 = .5
    close(avg_score(seq3), [nan, 0.5, 0.5, 0.5])
    assert final_score(seq3) == pytest.approx(0.5)
    close(final_locale_score(seq3), [0.3, 0.5, 0.7])


def test_seq3_effect(seq3: ScoreMatrix) -> None:
    close(
        effect(seq3),
        [
            [nan, nan, nan],
            [0.4, 0.1, -0.1],  # .5-.1, .3-.2, .2-.3
            [-0.1, 0.3, nan],  # .4-.5, .6-.3, NaN-.2
            [-0.1, -0.1, nan],  # .3-.4, .5-.6, .7-NaN
        ],
    )


def test_seq3_perf_shift(seq3: ScoreMatrix) -> None:
    # step 2: effect[2, a] = -.1; step 3: mean(effect[3, a], effect[3, b]) = mean(-.1, -.1)
    close(perf_shift(seq3), [nan, nan, -0.1, -0.1])


def test_seq3_cbt(seq3: ScoreMatrix) -> None:
    # ((R[3,a] - R[1,a]) + (R[3,b] - R[2,b])) / 2 = ((.3 - .5) + (.5 - .6)) / 2 = -.15
    assert cbt(seq3) == pytest.approx(-0.15)


def test_seq3_cft_skips_a_step_without_cells(seq3: ScoreMatrix) -> None:
    # X1 = mean(R[1,b], R[1,c]) = (.3 + .2) / 2 = .25; X2 = mean(R[2,c]) has no cell: skipped
    assert cft(seq3) == pytest.approx(0.25)


def test_seq3_forgetting(seq3: ScoreMatrix) -> None:
    # a: max(R[1,a], R[2,a]) - R[3,a] = .5 - .3 = .2; b: R[2,b] - R[3,b] = .6 - .5 = .1
    assert forgetting(seq3) == pytest.approx(0.15)


def test_seq3_learning(seq3: ScoreMatrix) -> None:
    # (R[1,a] + R[2,b] + R[3,c]) / 3 = (.5 + .6 + .7) / 3 = .6
    assert learning_score(seq3) == pytest.approx(0.6)
    # effect[p, p]: .4, .3, and NaN (R[2, c] is NaN)
    gain = learning_gain(seq3)
    assert list(gain.index) == ["a", "b", "c"]
    close(gain, [0.4, 0.3, nan])


# --- seq4 -------------------------------------------------------------------------------
# step 0: 0 .1 .2 .1 | 1: .6 .2 .3 NaN | 2: .5 .8 .4 .2 | 3: .7 .6 .9 .3 | 4: .4 .7 .6 .8


def test_seq4_curves(seq4: ScoreMatrix) -> None:
    # avg_score: .6; (.5 + .8) / 2 = .65; (.7 + .6 + .9) / 3 = 2.2 / 3; (.4 + .7 + .6 + .8) / 4
    close(avg_score(seq4), [nan, 0.6, 0.65, 2.2 / 3, 0.625])
    assert final_score(seq4) == pytest.approx(0.625)
    # perf_shift[2] = .5 - .6 = -.1; [3] = mean(.7 - .5, .6 - .8) = 0;
    # [4] = mean(.4 - .7, .7 - .6, .6 - .9) = -.5 / 3
    close(perf_shift(seq4), [nan, nan, -0.1, 0.0, -0.5 / 3])


def test_seq4_transfer(seq4: ScoreMatrix) -> None:
    # CBT: ((.4 - .6) + (.7 - .8) + (.6 - .9)) / 3 = -.6 / 3
    assert cbt(seq4) == pytest.approx(-0.2)
    # CFT: X1 = mean(.2, .3, NaN) = .25; X2 = mean(.4, .2) = .3; X3 = .3 -> .85 / 3
    assert cft(seq4) == pytest.approx(0.85 / 3)


def test_seq4_forgetting_max_after_learning(seq4: ScoreMatrix) -> None:
    # a: max(.6, .5, .7) - .4 = .3 (R[0,a] = 0 not in the range); b: max(.8, .6) - .7 = .1;
    # c: .9 - .6 = .3  ->  .7 / 3
    assert forgetting(seq4) == pytest.approx(0.7 / 3)


def test_seq4_learning(seq4: ScoreMatrix) -> None:
    # (.6 + .8 + .9 + .8) / 4 = 3.1 / 4
    assert learning_score(seq4) == pytest.approx(0.775)
    # .6 - 0, .8 - .2, .9 - .4, .8 - .3
    close(learning_gain(seq4), [0.6, 0.6, 0.5, 0.5])


# --- MONO / NON-SHARED: only the diagonal --------------------------------------------------


def test_independent_uses_the_diagonal(mono3: ScoreMatrix) -> None:
    # avg_score[i] = mean_{j<=i} R[j,j]: .6; (.6 + .8) / 2; (.6 + .8 + .7) / 3
    close(avg_score(mono3), [nan, 0.6, 0.7, 0.7])
    assert final_score(mono3) == pytest.approx(0.7)
    assert learning_score(mono3) == pytest.approx(0.7)
    close(final_locale_score(mono3), [0.6, 0.8, 0.7])
    # every model starts from the untrained one: R[p,p] - R[0,p] = .6 - .1, .8 - .2, .7 - 0
    close(learning_gain(mono3), [0.5, 0.6, 0.7])


def test_independent_has_no_transfer(mono3: ScoreMatrix) -> None:
    assert all(math.isnan(f(mono3)) for f in (cbt, cft, forgetting))
    assert np.isnan(perf_shift(mono3)).all()


def test_independent_ignores_off_diagonal_cells_when_all_models_are_evaluated() -> None:
    f1 = np.array([[0.1, 0.1], [0.5, 0.3], [0.2, 0.6]])
    run = ScoreMatrix(order=("a", "b"), scores=f1, schedule=INDEPENDENT)
    close(avg_score(run), [nan, 0.5, 0.55])  # (.5 + .6) / 2, not R[2, :]
    assert math.isnan(cbt(run))


# --- joint (MULTI): one row along the order --------------------------------------------------


def test_multi_curve_along_the_order(multi3: ScoreMatrix) -> None:
    # R_multi = .6 .9 .3: .6; (.6 + .9) / 2; (.6 + .9 + .3) / 3
    close(avg_score(multi3), [nan, 0.6, 0.75, 0.6])
    assert final_score(multi3) == pytest.approx(0.6)  # the mean of row 1
    assert learning_score(multi3) == pytest.approx(0.6)
    close(final_locale_score(multi3), [0.6, 0.9, 0.3])
    close(learning_gain(multi3), [0.5, 0.7, 0.3])  # R[1, j] - R[0, j]
    close(effect(multi3), [[nan, nan, nan], [0.5, 0.7, 0.3]])


def test_multi_has_no_transfer(multi3: ScoreMatrix) -> None:
    assert all(math.isnan(f(multi3)) for f in (cbt, cft, forgetting))
    assert perf_shift(multi3).shape == (4,)
    assert np.isnan(perf_shift(multi3)).all()


def test_single_locale_run_has_no_transfer() -> None:
    run = ScoreMatrix(order=("a",), scores=np.array([[0.1], [0.7]]), method="vanilla")
    assert final_score(run) == pytest.approx(0.7)
    assert all(math.isnan(f(run)) for f in (cbt, cft, forgetting))


def test_all_nan_aggregate_is_nan_not_zero() -> None:
    f1 = np.array([[0.1, 0.1], [nan, nan], [nan, 0.5]])
    run = ScoreMatrix(order=("a", "b"), scores=f1)
    assert math.isnan(avg_score(run)[1])
    assert math.isnan(cbt(run)) and math.isnan(forgetting(run))
