"""Hand-made score matrices shared by the metric tests (``R[step, position]``)."""

from __future__ import annotations

import numpy as np
import pytest

from xlcl.metrics import ScoreMatrix
from xlcl.schedules import INDEPENDENT, JOINT

nan = np.nan


@pytest.fixture
def seq3() -> ScoreMatrix:
    """T = 3, order a b c; R[2, c] is NaN."""
    f1 = [
        [0.10, 0.20, 0.30],  # step 0: before training
        [0.50, 0.30, 0.20],  # step 1: a learned
        [0.40, 0.60, nan],  # step 2: b learned
        [0.30, 0.50, 0.70],  # step 3: c learned
    ]
    return ScoreMatrix(order=("a", "b", "c"), scores=np.array(f1), method="vanilla")


@pytest.fixture
def seq4() -> ScoreMatrix:
    """T = 4, order a b c d; R[1, d] is NaN; a peaks at step 3, after it was learned."""
    f1 = [
        [0.0, 0.1, 0.2, 0.1],
        [0.6, 0.2, 0.3, nan],
        [0.5, 0.8, 0.4, 0.2],
        [0.7, 0.6, 0.9, 0.3],
        [0.4, 0.7, 0.6, 0.8],
    ]
    return ScoreMatrix(order=("a", "b", "c", "d"), scores=np.array(f1), method="shared-lora")


@pytest.fixture
def seq3_other_order() -> ScoreMatrix:
    """A second order of seq3's method: c a b."""
    f1 = [
        [0.2, 0.2, 0.2],
        [0.6, 0.4, 0.2],
        [0.4, 0.8, 0.5],
        [0.4, 0.6, 0.9],
    ]
    return ScoreMatrix(order=("c", "a", "b"), scores=np.array(f1), method="vanilla")


@pytest.fixture
def mono3() -> ScoreMatrix:
    """One model per locale: only the diagonal (and row 0) exists."""
    f1 = [
        [0.1, 0.2, 0.0],
        [0.6, nan, nan],
        [nan, 0.8, nan],
        [nan, nan, 0.7],
    ]
    return ScoreMatrix(
        order=("a", "b", "c"), scores=np.array(f1), schedule=INDEPENDENT, method="mono"
    )


@pytest.fixture
def multi3() -> ScoreMatrix:
    """One joint model: row 0 before training, row 1 after the joint step."""
    f1 = [[0.1, 0.2, 0.0], [0.6, 0.9, 0.3]]
    return ScoreMatrix(order=("a", "b", "c"), scores=np.array(f1), schedule=JOINT, method="multi")
