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
    all_models = {"train": {"epochs": 3}, "evaluate": {"all_models": True}}
    every = estimate(config("nonshared-lora", 8, **all_models, **small))
    assert every.scored_utterances == 2 * 5 * 3 + (2 * 4 + 2 * 2 * 4)  # each model on each
    vanilla = estimate(config("vanilla", train={"epochs": 2}, **small))
    assert vanilla.train_utterance_epochs == multi.train_utterance_epochs  # same data, 2 steps
    assert vanilla.scored_utterances == 2 * 5 * 2 + 3 * 2 * 4
    assert estimate(validate_config({"model": "other", "method": "mono"})).gpu_hours is None


def test_hours_follow_lora_and_cuda_graphs_where_measured():
    speed = THROUGHPUT[XLMR]
    runs = {
        (lora, graphs): estimate(
            config(
                "shared-lora" if lora else "vanilla",
                32 if lora else None,
                train={"epochs": 1, "cuda_graphs": graphs},
                order=["en-US"],
            )
        )
        for lora in (False, True)
        for graphs in (False, True)
    }
    rates = {
        (False, False): speed.train_full,
        (False, True): speed.train_full_graphs,
        (True, False): speed.train_lora,
        (True, True): speed.train_lora_graphs,
    }
    for key, cost in runs.items():
        scored = 2_033 + 2 * 2_974  # dev once, test before and after the one step
        hours = (11_514 / rates[key] + scored / speed.score) / 3600
        assert cost.gpu_hours == pytest.approx(hours), key
    assert len({cost.gpu_hours for cost in runs.values()}) == 4
    e5 = THROUGHPUT["intfloat/multilingual-e5-large-instruct"]
    assert e5.train(lora=False, graphs=True) == e5.train_full  # not measured with graphs
