"""Experience replay: its memory, its plan, its state, and switched off equals VANILLA."""

from __future__ import annotations

import random

import numpy as np
import pandas as pd
import pytest
import torch
from transformers import AutoTokenizer

from strategies.strategy_runs import interrupted_after_step, tables
from xlcl.checkpoint import latest_checkpoint
from xlcl.config import validate_config
from xlcl.data import load_massive, slot_label_names
from xlcl.encode import encode
from xlcl.protocol import run
from xlcl.strategies import StepContext, StepPlan, build_strategy, hook_rng

ORDER = ["en-US", "ja-JP", "de-DE"]
TRAIN = {"epochs": 2, "patience": 1, "batch_size": 4, "learning_rate": 1e-3}


@pytest.fixture(scope="module")
def train_splits(tiny_model, massive_dir):
    data = load_massive(massive_dir, ORDER)
    label_ids = {label: i for i, label in enumerate(slot_label_names(data))}
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    return {
        locale: encode(data.utterances(locale, "train"), tokenizer, label_ids, 32)
        for locale in ORDER
    }


def context(train_splits, step, hook, config=None):
    locale = ORDER[step - 1]
    return StepContext(
        step=step,
        locales=(locale,),
        earlier=tuple(ORDER[: step - 1]),
        train_splits=train_splits,
        config=config,  # type: ignore[arg-type]  (replay does not read it)
        rng=hook_rng(42, step, hook),
    )


def test_replay_keeps_mem_size_utterances_per_locale_from_its_own_generator(train_splits):
    replay = build_strategy({"name": "replay", "mem_size": 4})
    numpy_before, torch_before, python_before = (
        np.random.get_state()[1].copy(),
        torch.get_rng_state(),
        random.getstate(),
    )
    assert replay.before_step(context(train_splits, 1, "before_step"), None) is None
    replay.after_step(context(train_splits, 1, "after_step"), None)
    replay.after_step(context(train_splits, 2, "after_step"), None)
    # The global generators are untouched.
    assert np.array_equal(np.random.get_state()[1], numpy_before)
    assert torch.equal(torch.get_rng_state(), torch_before)
    assert random.getstate() == python_before
    memory = replay.state_dict()["memory"]
    assert list(memory) == ["en-US", "ja-JP"]
    n_train = len(train_splits["en-US"])
    expected = np.sort(hook_rng(42, 1, "after_step").choice(n_train, size=4, replace=False))
    assert np.array_equal(memory["en-US"], expected)
    assert all(len(set(kept)) == 4 for kept in memory.values())
    plan = replay.before_step(context(train_splits, 3, "before_step"), None)
    assert isinstance(plan, StepPlan) and plan.train is None
    assert [split.locale for split in plan.extra_train] == ["en-US", "ja-JP"]
    for split in plan.extra_train:
        source = train_splits[split.locale]
        kept = memory[split.locale]
        assert len(split) == 4
        for ids, index in zip(split.input_ids, kept, strict=True):
            assert np.array_equal(ids, source.input_ids[index])


def test_a_memory_larger_than_the_split_keeps_the_whole_split(train_splits):
    replay = build_strategy({"name": "replay", "mem_size": 10_000})
    replay.after_step(context(train_splits, 1, "after_step"), None)
    kept = replay.state_dict()["memory"]["en-US"]
    assert np.array_equal(kept, np.arange(len(train_splits["en-US"])))


def test_replay_state_survives_a_round_trip(train_splits):
    replay = build_strategy({"name": "replay", "mem_size": 3})
    replay.after_step(context(train_splits, 1, "after_step"), None)
    copy = build_strategy({"name": "replay", "mem_size": 3})
    copy.load_state_dict(replay.state_dict())
    plan_a = replay.before_step(context(train_splits, 2, "before_step"), None)
    plan_b = copy.before_step(context(train_splits, 2, "before_step"), None)
    assert plan_a is not None and plan_b is not None
    assert [s.input_ids for s in plan_a.extra_train] == [
        s.input_ids for s in plan_b.extra_train
    ] or all(
        np.array_equal(a, b)
        for sa, sb in zip(plan_a.extra_train, plan_b.extra_train, strict=True)
        for a, b in zip(sa.input_ids, sb.input_ids, strict=True)
    )


def config(tiny_model, massive_dir, output, strategy=None):
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
    return validate_config(raw)


def test_replay_with_mem_size_0_is_vanilla_bit_for_bit(tiny_model, massive_dir, tmp_path):
    vanilla = run(config(tiny_model, massive_dir, tmp_path / "vanilla"))
    off = run(config(tiny_model, massive_dir, tmp_path / "off", {"name": "replay", "mem_size": 0}))
    assert off.name != vanilla.name  # a different config, so a different run
    for a, b in zip(tables(vanilla), tables(off), strict=True):
        pd.testing.assert_frame_equal(a, b, check_exact=True)
    replayed = run(
        config(tiny_model, massive_dir, tmp_path / "on", {"name": "replay", "mem_size": 3})
    )
    (scores_on, curves_on), (scores_off, curves_off) = tables(replayed), tables(off)
    # Step 1 has nothing to replay; later steps train on more data and differ.
    first = scores_on["step"] <= 1
    pd.testing.assert_frame_equal(scores_on[first], scores_off[first], check_exact=True)
    later = curves_on["step"] >= 2
    assert curves_on[~later]["train_loss"].equals(curves_off[~later]["train_loss"])
    assert not curves_on[later]["train_loss"].equals(curves_off[later]["train_loss"])
    memory = latest_checkpoint(replayed, replayed.name).state()["strategy"]["memory"]
    assert {locale: len(kept) for locale, kept in memory.items()} == {loc: 3 for loc in ORDER}


def test_a_resumed_replay_run_continues_with_the_memory_of_its_checkpoint(
    tiny_model, massive_dir, tmp_path, monkeypatch
):
    strategy = {"name": "replay", "mem_size": 4}
    reference = run(config(tiny_model, massive_dir, tmp_path / "ref", strategy))
    resumed_config = config(tiny_model, massive_dir, tmp_path / "resumed", strategy)
    interrupted_after_step(monkeypatch, resumed_config, 2)
    resumed = run(resumed_config)
    for a, b in zip(tables(reference), tables(resumed), strict=True):
        pd.testing.assert_frame_equal(a, b, check_exact=True)
    # The memory is what makes it exact: resumed without it, step 3 replays nothing.
    forgetful_config = config(tiny_model, massive_dir, tmp_path / "forgetful", strategy)
    interrupted_after_step(monkeypatch, forgetful_config, 2)
    monkeypatch.setattr("xlcl.strategies.replay.Replay.load_state_dict", lambda self, state: None)
    forgetful = run(forgetful_config)
    _, curves = tables(forgetful)
    _, reference_curves = tables(reference)
    step_3 = curves["step"] == 3
    assert not curves[step_3]["train_loss"].equals(reference_curves[step_3]["train_loss"])
