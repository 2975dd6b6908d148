"""Cost estimates, checked against hand-computed counts."""

from __future__ import annotations

import pytest

from xlcl.config import validate_config
from xlcl.sweep.cost import THROUGHPUT, estimate

XLMR = "FacebookAI/xlm-roberta-base"


def config(method, rank=None, **extra):
    return validate_config({"model": XLMR, "method": method, "rank": rank, **extra})


def test_vanilla_on_the_paper_data():
    cost = estimate(config("vanilla"))
    assert cost.train_utterance_epochs == 52 * 11_514 * 50
    # dev after every epoch of every step, test on all 52 locales after steps 0..52
    assert cost.scored_utterances == 52 * 2_033 * 50 + 53 * 52 * 2_974
    speed = THROUGHPUT[XLMR]
    hours = (52 * 11_514 * 50 / speed.train_full + cost.scored_utterances / speed.score) / 3600
    assert cost.gpu_hours == pytest.approx(hours)


def test_limits_and_schedules():
    small = {"order": ["en-US", "de-DE"], "data": {"max_train": 10, "max_dev": 5, "max_test": 4}}
    multi = estimate(config("multi", train={"epochs": 2}, **small))
    assert multi.train_utterance_epochs == 2 * 10 * 2
    assert multi.scored_utterances == 2 * 5 * 2 + 2 * 2 * 4
    nonshared = estimate(config("nonshared-lora", 8, train={"epochs": 3}, **small))
    assert nonshared.scored_utterances == 2 * 5 * 3 + (2 * 4 + 2 * 1 * 4)
    assert estimate(validate_config({"model": "other", "method": "mono"})).gpu_hours is None
