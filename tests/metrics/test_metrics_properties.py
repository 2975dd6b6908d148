"""Properties of the metrics on random matrices (hypothesis)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from xlcl.metrics import (
    ScoreMatrix,
    aggregate,
    cbt,
    forgetting,
    from_long,
    from_square,
    summarize,
    to_long,
    to_square,
)
from xlcl.metrics.summary import json_safe

LOCALES = ("en-US", "de-DE", "ja-JP", "th-TH", "sw-KE", "fi-FI")
scores = st.floats(0.0, 1.0, allow_nan=False)


@st.composite
def matrices(draw: st.DrawFn, nan: bool = True) -> ScoreMatrix:
    t = draw(st.integers(1, len(LOCALES)))
    elements = st.one_of(scores, st.just(np.nan)) if nan else scores
    f1 = draw(arrays(float, (t + 1, t), elements=elements))
    return ScoreMatrix(order=LOCALES[:t], scores=f1, method="vanilla")


def same(a: object, b: object) -> None:
    """Equal, NaN equal to NaN (tables compared with their index and columns)."""
    if isinstance(a, pd.DataFrame | pd.Series) and isinstance(b, pd.DataFrame | pd.Series):
        pd.testing.assert_frame_equal(pd.DataFrame(a), pd.DataFrame(b), check_exact=True)
    else:
        assert json_safe(a) == json_safe(b)


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 6), st.data())
def test_no_change_after_learning_means_no_forgetting(t: int, data: st.DataObject) -> None:
    f1 = data.draw(arrays(float, (t + 1, t), elements=scores))
    for j in range(t):  # every row from the one that learned ℓ_j on keeps R[j, j]
        f1[j + 1 :, j] = f1[j + 1, j]
    run = ScoreMatrix(order=LOCALES[:t], scores=f1)
    assert cbt(run) == 0.0
    assert forgetting(run) == 0.0


@settings(max_examples=40, deadline=None)
@given(matrices(), st.permutations(range(len(LOCALES))))
def test_renaming_locales_renames_per_locale_results(run: ScoreMatrix, perm: list[int]) -> None:
    renamed_order = tuple(LOCALES[i] for i in perm[: run.n_locales])
    rename = dict(zip(run.order, renamed_order, strict=True))
    renamed = ScoreMatrix(order=renamed_order, scores=run.scores, method=run.method)
    a, b = summarize(run, hops=3), summarize(renamed, hops=3)
    same(a.scalars, b.scalars)
    same(a.curves, b.curves)
    same(a.locales.rename(index=rename).sort_index(), b.locales.sort_index())
    same(a.mft.rename(index=rename).sort_index(), b.mft.sort_index())
    same(a.mbt.rename(index=rename).sort_index(), b.mbt.sort_index())


@settings(max_examples=30, deadline=None)
@given(st.lists(matrices(), min_size=1, max_size=4), st.randoms())
def test_aggregate_ignores_the_order_of_runs(runs: list[ScoreMatrix], rnd: object) -> None:
    metrics = [summarize(r, hops=2) for r in runs]
    shuffled = list(metrics)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    a, b = aggregate(metrics), aggregate(shuffled)
    np.testing.assert_allclose(a.scalars.to_numpy(float), b.scalars.to_numpy(float), atol=1e-12)
    np.testing.assert_allclose(a.locale_mean.to_numpy(), b.locale_mean.to_numpy(), atol=1e-12)
    assert a.locale_n.equals(b.locale_n)


@settings(max_examples=40, deadline=None)
@given(matrices())
def test_square_and_long_forms_give_the_same_metrics(run: ScoreMatrix) -> None:
    from_sq = from_square(to_square(run), method=run.method)
    from_lg = from_long(to_long(run).sample(frac=1.0, random_state=1), method=run.method)
    a, b = summarize(from_sq, hops=3), summarize(from_lg, hops=3)
    assert from_sq.order == from_lg.order == run.order
    same(a.scalars, b.scalars)
    same(a.curves, b.curves)
    same(a.locales, b.locales)
    same(a.mft, b.mft)
