"""LR adjust: a plan that changes the step's settings; factor 1 is the plain method."""

from __future__ import annotations

import pandas as pd
import pytest

from xlcl.config import validate_config
from xlcl.protocol import run

ORDER = ["en-US", "ja-JP", "de-DE"]
TRAIN = {
    "epochs": 2,
    "patience": 2,
    "batch_size": 4,
    "learning_rate": 1e-3,
    "head_learning_rate": 1e-2,
}


def run_with(tiny_model, massive_dir, output, strategy=None):
    raw = {
        "model": str(tiny_model),
        "method": "vanilla",
        "order": ORDER,
        "data": {"source": str(massive_dir)},
        "train": TRAIN,
        "output_dir": str(output),
    }
    if strategy is not None:
        raw["strategy"] = strategy
    directory = run(validate_config(raw))
    scores = pd.read_parquet(directory / "scores.parquet")
    curves = pd.read_parquet(directory / "curves.parquet").drop(columns=["seconds"])
    return scores, curves


def test_each_step_trains_at_the_previous_steps_rate_times_the_factor(
    tiny_model, massive_dir, tmp_path
):
    plain = run_with(tiny_model, massive_dir, tmp_path / "plain")
    off = run_with(tiny_model, massive_dir, tmp_path / "off", {"name": "lr-adjust", "factor": 1})
    for a, b in zip(plain, off, strict=True):
        pd.testing.assert_frame_equal(a, b, check_exact=True)
    _, curves = run_with(
        tiny_model, massive_dir, tmp_path / "half", {"name": "lr-adjust", "factor": 0.5}
    )
    _, plain_curves = plain
    # Each step has the same updates (10 utterances, batch 4), so the schedule's rate at
    # the end of each epoch scales with the step's base rate: 1, 1/2, 1/4.
    for step, scale in [(1, 1.0), (2, 0.5), (3, 0.25)]:
        rates = curves.loc[curves["step"] == step, "learning_rate"].to_numpy()
        plain_rates = plain_curves.loc[plain_curves["step"] == step, "learning_rate"]
        assert rates == pytest.approx(plain_rates.to_numpy() * scale, rel=1e-12)
    first = curves["step"] == 1
    pd.testing.assert_frame_equal(
        curves[first], plain_curves[first].reset_index(drop=True), check_exact=True
    )
