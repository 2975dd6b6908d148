"""Across runs (mean ± std over orders, per-locale means with counts) and group means."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from xlcl.data import LOCALES
from xlcl.metrics import (
    MetricsInputError,
    ScoreMatrix,
    aggregate,
    attribute_groupings,
    group_means,
    read_grouping,
    summarize,
    ungrouped,
)

nan = np.nan

# seq3 (order a b c):            seq3_other_order (order c a b):
#   .1 .2 .3                       .2 .2 .2
#   .5 .3 .2                       .6 .4 .2
#   .4 .6 NaN                      .4 .8 .5
#   .3 .5 .7                       .4 .6 .9
# seq3_other_order: CBT = ((.4 - .6) + (.6 - .8)) / 2 = -.2; final_score = 1.9 / 3;
# effect rows .4 .2 0 | -.2 .4 .3 | 0 -.2 .4; perf_shift NaN NaN -.2 -.1


def test_scalars_mean_and_sample_std(seq3: ScoreMatrix, seq3_other_order: ScoreMatrix) -> None:
    agg = aggregate([summarize(seq3, hops=2), summarize(seq3_other_order, hops=2)])
    assert agg.n_runs == 2
    cbt = agg.scalars.loc["cbt"]
    # mean(-.15, -.2) = -.175; std (ddof 1) = |-.15 - -.2| / sqrt(2)
    assert cbt["mean"] == pytest.approx(-0.175)
    assert cbt["std"] == pytest.approx(0.05 / np.sqrt(2))
    assert cbt["n"] == 2
    # final_score: mean(.5, 1.9 / 3)
    assert agg.scalars.loc["final_score", "mean"] == pytest.approx((0.5 + 1.9 / 3) / 2)


def test_one_run_has_no_std(seq3: ScoreMatrix) -> None:
    agg = aggregate([summarize(seq3)])
    assert np.isnan(agg.scalars["std"]).all()
    assert agg.scalars.loc["cbt", "mean"] == pytest.approx(-0.15)


def test_curves_by_position(seq3: ScoreMatrix, seq3_other_order: ScoreMatrix) -> None:
    agg = aggregate([summarize(seq3, hops=2), summarize(seq3_other_order, hops=2)])
    shift = agg.curves["perf_shift"]
    # step 2: mean(-.1, -.2); step 3: mean(-.1, -.1); steps 0, 1 have no cell
    np.testing.assert_allclose(shift["mean"], [nan, nan, -0.15, -0.1], atol=1e-12)
    assert shift["n"].tolist() == [0, 0, 2, 2]


def test_per_locale_means_and_counts(seq3: ScoreMatrix, seq3_other_order: ScoreMatrix) -> None:
    agg = aggregate([summarize(seq3, hops=2), summarize(seq3_other_order, hops=2)])
    mean, n = agg.locale_mean, agg.locale_n
    assert list(mean.index) == ["a", "b", "c"]
    # final F1: a (.3 + .6) / 2; b (.5 + .9) / 2; c (.7 + .4) / 2
    np.testing.assert_allclose(mean["final_score"], [0.45, 0.7, 0.55], atol=1e-12)
    # perf_shift of ℓ's own step: a NaN / -.2; b -.1 / -.1; c -.1 / NaN (step 1 of order 2)
    np.testing.assert_allclose(mean["perf_shift"], [-0.2, -0.1, -0.1], atol=1e-12)
    assert n["perf_shift"].tolist() == [1, 2, 1]
    # learning gain: a .4 / .4; b .3 / .4; c NaN / .4
    np.testing.assert_allclose(mean["learning_gain"], [0.4, 0.35, 0.4], atol=1e-12)
    assert n["learning_gain"].tolist() == [2, 2, 1]
    # MFT_1: a .1 (order 1, effect[1, b]) / .3 (order 2, effect[2, b]); c NaN / .2
    np.testing.assert_allclose(mean["mft_1"], [0.2, nan, 0.2], atol=1e-12)
    assert n["mft_1"].tolist() == [2, 0, 1]
    # MBT_1: a -.1 (order 1) / -.2 (order 2, effect[3, a]); c NaN / -.2
    np.testing.assert_allclose(mean["mbt_1"], [-0.15, -0.1, -0.2], atol=1e-12)


def test_group_means(seq3: ScoreMatrix, seq3_other_order: ScoreMatrix) -> None:
    agg = aggregate([summarize(seq3, hops=2), summarize(seq3_other_order, hops=2)])
    grouping = {"a": "X", "b": "X", "c": "Y"}
    table = group_means(agg.locale_mean, grouping)
    assert list(table.index) == ["X", "Y"]
    assert table["n_locales"].tolist() == [2, 1]
    # X: final (.45 + .7) / 2; perf_shift (-.2 - .1) / 2
    assert table.loc["X", "final_score"] == pytest.approx(0.575)
    assert table.loc["X", "perf_shift"] == pytest.approx(-0.15)
    assert table.loc["Y", "final_score"] == pytest.approx(0.55)


def test_group_means_leave_out_ungrouped_locales() -> None:
    values = pd.DataFrame({"final_score": [0.2, 0.4, 0.9]}, index=["a", "b", "c"])
    table = group_means(values, {"a": "X", "b": "X"})
    assert table.loc["X", "final_score"] == pytest.approx(0.3)
    assert ungrouped(values.index, {"a": "X", "b": "X"}) == ["c"]


def test_attribute_groupings_from_explicit_facts() -> None:
    facts = {
        "en-US": SimpleNamespace(script="Latn", latin=True, family="IE", vitality="high"),
        "ja-JP": SimpleNamespace(script="Jpan", latin=False, family="Japonic", vitality="high"),
    }
    groupings = attribute_groupings(["en-US", "ja-JP", "xx"], facts)
    assert groupings["latin"] == {"en-US": "Latin", "ja-JP": "non-Latin"}
    assert groupings["script"] == {"en-US": "Latn", "ja-JP": "Jpan"}
    assert groupings["vitality"] == {"en-US": "high", "ja-JP": "high"}
    assert groupings["family"]["ja-JP"] == "Japonic"


def test_attribute_groupings_from_locales_table() -> None:
    groupings = attribute_groupings(["en-US", "zh-CN", "th-TH"], LOCALES)
    assert groupings["latin"] == {"en-US": "Latin", "zh-CN": "non-Latin", "th-TH": "non-Latin"}
    assert groupings["script"]["th-TH"] == "Thai"
    assert set(groupings["vitality"].values()) <= {"low", "mid", "high"}


def test_read_grouping(tmp_path: Path) -> None:
    path = tmp_path / "g.csv"
    path.write_text("locale,group\nen-US,west\n\nja-JP,east\n")
    assert read_grouping(path, known={"en-US", "ja-JP"}) == {"en-US": "west", "ja-JP": "east"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("locale,group\nen-US,west\nen-us,west\n", r"g.csv:3: unknown locale 'en-us'"),
        ("loc,grp\nen-US,west\n", r"g.csv:1: .*header 'locale,group'"),
        ("locale,group\nen-US\n", r"g.csv:2: expected 'locale,group'"),
        ("locale,group\nen-US,a\nen-US,b\n", r"g.csv:3: locale 'en-US' listed twice"),
    ],
)
def test_bad_grouping_files(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "g.csv"
    path.write_text(text)
    with pytest.raises(MetricsInputError, match=message):
        read_grouping(path, known={"en-US"})
