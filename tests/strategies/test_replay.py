"""Experience replay: its memory (bounded, capped), its plans (mixed and interleaved), the
engine's interleaved updates, its state, its cost, and switched off equals VANILLA."""

from __future__ import annotations

import json
import random
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from transformers import AutoTokenizer

import xlcl.train
from strategies.strategy_runs import interrupted_after_step, tables
from xlcl.checkpoint import latest_checkpoint
from xlcl.classifier import build_classifier
from xlcl.config import LoraSettings, TrainConfig, validate_config
from xlcl.data import load_massive, slot_label_names
from xlcl.encode import encode
from xlcl.methods import method
from xlcl.protocol import run
from xlcl.strategies import (
    Interleaved,
    StepContext,
    StepPlan,
    StrategyCost,
    build_strategy,
    hook_rng,
)
from xlcl.strategies.replay import Replay, ReplaySettings

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
    with pytest.warns(UserWarning, match="keeping all 10"):
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


# --- The memory's bounds, and what a run with replay costs -------------------------------


@pytest.mark.parametrize("mem_size", [0, 1, 4, 10])
def test_the_memory_never_holds_more_than_mem_size_utterances_per_locale(train_splits, mem_size):
    replay = build_strategy({"name": "replay", "mem_size": mem_size})
    for step in range(1, len(ORDER) + 1):
        plan = replay.before_step(context(train_splits, step, "before_step"), None)
        replayed = () if plan is None else plan.extra_train
        assert all(len(split) <= mem_size for split in replayed)
        replay.after_step(context(train_splits, step, "after_step"), None)
        for locale, kept in replay.state_dict()["memory"].items():
            assert len(kept) == min(mem_size, len(train_splits[locale])) <= mem_size
            assert len(set(kept.tolist())) == len(kept)
            assert all(0 <= index < len(train_splits[locale]) for index in kept)
    # A step of several locales at once keeps mem_size of each.
    joint = StepContext(1, tuple(ORDER), (), train_splits, None, hook_rng(42, 1, "after_step"))  # type: ignore[arg-type]
    replay = build_strategy({"name": "replay", "mem_size": mem_size})
    replay.after_step(joint, None)
    assert {loc: len(kept) for loc, kept in replay.state_dict()["memory"].items()} == {
        loc: mem_size for loc in ORDER
    }


def test_a_memory_larger_than_the_split_is_capped_with_a_warning(train_splits):
    replay = build_strategy({"name": "replay", "mem_size": 11})
    message = "replay: mem_size 11 is more than the 10 training utterances of en-US; keeping all 10"
    with pytest.warns(UserWarning, match=message):
        replay.after_step(context(train_splits, 1, "after_step"), None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # at the split's size: no warning
        build_strategy({"name": "replay", "mem_size": 10}).after_step(
            context(train_splits, 1, "after_step"), None
        )


def test_the_cost_is_the_memory_of_the_last_step():
    settings = ReplaySettings(mem_size=6)
    sizes = {"en-US": 10, "ja-JP": 5, "de-DE": 7}
    # min(6, 10) + min(6, 5): the last locale's memory is never replayed.
    assert Replay.cost(settings, trainable=1_000, head=0, train_sizes=sizes) == StrategyCost(
        memory_utterances=11
    )
    assert (
        Replay.cost(ReplaySettings(mem_size=0), trainable=1, head=0, train_sizes=sizes)
        == StrategyCost()
    )
    assert Replay.cost(settings, trainable=1, head=0, train_sizes={"en-US": 10}) == StrategyCost()
    interleaved = ReplaySettings(mem_size=6, policy="interleaved", interval=5)
    assert Replay.cost(interleaved, trainable=1, head=0, train_sizes=sizes).memory_utterances == 11


# --- The interleaved policy -------------------------------------------------------------


def test_the_policy_defaults_to_mixed_and_leaves_run_ids_as_they_were(tiny_model, massive_dir):
    plain = config(tiny_model, massive_dir, "out", {"name": "replay", "mem_size": 4})
    assert plain.strategy == {"name": "replay", "mem_size": 4}
    written = {"name": "replay", "mem_size": 4, "policy": "mixed", "interval": 100}
    assert config(tiny_model, massive_dir, "out", written).run_id == plain.run_id
    interleaved = {"name": "replay", "mem_size": 4, "policy": "interleaved"}
    resolved = config(tiny_model, massive_dir, "out", interleaved)
    assert resolved.strategy == interleaved  # interval at its default stays out too
    written = {**interleaved, "interval": 100}
    assert config(tiny_model, massive_dir, "out", written).run_id == resolved.run_id
    assert resolved.run_id != plain.run_id


def test_interleaved_settings_and_features_are_checked(tiny_model, massive_dir):
    with pytest.raises(ValueError, match=r"strategy\.interval: .*policy interleaved only"):
        config(tiny_model, massive_dir, "out", {"name": "replay", "interval": 5})
    graphs = {**config(tiny_model, massive_dir, "out").model_dump(mode="json")}
    graphs["train"] = {**graphs["train"], "cuda_graphs": True}
    mixed = validate_config({**graphs, "strategy": {"name": "replay"}})
    assert mixed.train.cuda_graphs
    with pytest.raises(ValueError) as refused:
        validate_config({**graphs, "strategy": {"name": "replay", "policy": "interleaved"}})
    message = str(refused.value)
    assert "strategy replay does not support train.cuda_graphs with these settings" in message
    assert "\n" not in message


def test_the_interleaved_plan_holds_the_memory_and_trains_on_the_step_s_data_alone(
    train_splits,
):
    replay = build_strategy(
        {"name": "replay", "mem_size": 3, "policy": "interleaved", "interval": 7}
    )
    assert replay.before_step(context(train_splits, 1, "before_step"), None) is None
    replay.after_step(context(train_splits, 1, "after_step"), None)
    plan = replay.before_step(context(train_splits, 2, "before_step"), None)
    assert plan is not None and plan.extra_train == () and plan.train is None
    assert plan.interleaved is not None
    assert (plan.interleaved.interval, plan.interleaved.batch_size) == (7, 16)
    [memory] = plan.interleaved.memory
    kept = replay.state_dict()["memory"]["en-US"]
    assert memory.locale == "en-US" and len(memory) == 3
    for ids, index in zip(memory.input_ids, kept, strict=True):
        assert np.array_equal(ids, train_splits["en-US"].input_ids[index])


def test_the_engine_takes_an_extra_update_on_the_memory_every_interval_updates(
    en_us, train_splits, massive_dir, monkeypatch
):
    model_dir, labels, *_ = en_us
    assert labels == slot_label_names(load_massive(massive_dir, ORDER))  # the same label ids
    train_config = TrainConfig(epochs=2, patience=2, learning_rate=1e-2, batch_size=4)
    plain = build_classifier(str(model_dir), labels, method("vanilla"), LoraSettings(), seed=0)
    plain_result = en_us.train_step(plain, train_config)
    memory = train_splits["ja-JP"].subset(range(5))  # 5 utterances unlike any en-US one
    passes: list[list[bytes]] = []
    steps = []
    original_pass, original_step = xlcl.train.forward_backward, xlcl.train.clip_and_step

    def recorded_pass(model, batch, *args, **kwargs):
        rows = zip(batch.input_ids, batch.attention_mask, strict=True)
        passes.append([ids[mask.bool()].numpy().tobytes() for ids, mask in rows])
        return original_pass(model, batch, *args, **kwargs)

    def counted_step(*args, **kwargs):
        steps.append(len(passes))
        return original_step(*args, **kwargs)

    monkeypatch.setattr(xlcl.train, "forward_backward", recorded_pass)
    monkeypatch.setattr(xlcl.train, "clip_and_step", counted_step)
    numpy_before = np.random.get_state()[1].copy()
    model = build_classifier(str(model_dir), labels, method("vanilla"), LoraSettings(), seed=0)
    interleaved = Interleaved((memory,), interval=2, batch_size=3)
    result = en_us.train_step(model, train_config, interleaved=interleaved)
    assert np.array_equal(np.random.get_state()[1], numpy_before)
    # 3 updates an epoch (10 utterances, batch 4), 6 in all: extra ones after the 2nd, 4th, 6th.
    memory_rows = {ids.tobytes() for ids in memory.input_ids}
    training_rows = {ids.tobytes() for ids in en_us.train.input_ids}
    is_memory = [set(rows) <= memory_rows for rows in passes]
    assert is_memory == [False, False, True, False, False, True, False, False, True]
    for rows, from_memory in zip(passes, is_memory, strict=True):
        if from_memory:
            assert len(rows) == len(set(rows)) == 3
        else:
            assert set(rows) <= training_rows
    assert steps == list(range(1, 10))  # every pass is followed by its own AdamW step
    # The schedule counts the step's own updates only: the plain run's rates, epoch by epoch.
    rates = [record.learning_rate for record in result.epochs]
    assert rates == [record.learning_rate for record in plain_result.epochs]
    assert result.epochs[0].train_loss != plain_result.epochs[0].train_loss
    # Drawn from (seed, update), never from a global generator: the same draws again.
    first = list(passes)
    passes.clear()
    model = build_classifier(str(model_dir), labels, method("vanilla"), LoraSettings(), seed=0)
    en_us.train_step(model, train_config, interleaved=interleaved)
    assert passes == first
    assert len({tuple(rows) for rows, m in zip(first, is_memory, strict=True) if m}) > 1


def test_interleaved_replay_off_is_vanilla_and_on_keeps_the_plain_schedule(
    tiny_model, massive_dir, tmp_path
):
    vanilla = run(config(tiny_model, massive_dir, tmp_path / "vanilla"))
    off_strategy = {"name": "replay", "mem_size": 0, "policy": "interleaved", "interval": 2}
    off = run(config(tiny_model, massive_dir, tmp_path / "off", off_strategy))
    for a, b in zip(tables(vanilla), tables(off), strict=True):
        pd.testing.assert_frame_equal(a, b, check_exact=True)
    on_strategy = {**off_strategy, "mem_size": 4}
    on = run(config(tiny_model, massive_dir, tmp_path / "on", on_strategy))
    (scores_on, curves_on), (scores_off, curves_off) = tables(on), tables(off)
    first = scores_on["step"] <= 1
    pd.testing.assert_frame_equal(scores_on[first], scores_off[first], check_exact=True)
    later = curves_on["step"] >= 2
    assert not curves_on[later]["train_loss"].equals(curves_off[later]["train_loss"])
    # The extra updates do not move the schedule: every epoch's rate is the plain run's.
    pd.testing.assert_series_equal(curves_on["learning_rate"], curves_off["learning_rate"])
    manifest = json.loads((on / "manifest.json").read_text())
    assert manifest["strategy_cost"] == {
        "extra_parameters": 0,
        "stored_values": 0,
        "memory_utterances": 2 * 4,
    }
    assert "strategy_cost" not in json.loads((vanilla / "manifest.json").read_text())


def test_an_interleaved_run_stopped_inside_a_step_continues_bit_for_bit(
    tiny_model, massive_dir, tmp_path, monkeypatch
):
    import xlcl.protocol

    # 16 of the memory's 20 utterances an extra update: the (seed, update) draw decides which.
    strategy = {"name": "replay", "mem_size": 10, "policy": "interleaved", "interval": 2}
    reference = run(config(tiny_model, massive_dir, tmp_path / "ref", strategy))
    raw = config(tiny_model, massive_dir, tmp_path / "stopped", strategy).model_dump(mode="json")
    stopped_config = validate_config({**raw, "checkpoint": {"every_updates": 1}})
    original = xlcl.protocol.save_partial
    saved = []

    def save_then_stop(run_dir, step, *args, **kwargs):
        path = original(run_dir, step, *args, **kwargs)
        saved.append(step)
        if saved.count(3) == 3:  # inside step 3's second epoch, after an extra update
            raise KeyboardInterrupt
        return path

    monkeypatch.setattr(xlcl.protocol, "save_partial", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        run(stopped_config)
    monkeypatch.setattr(xlcl.protocol, "save_partial", original)
    resumed = run(stopped_config)
    for a, b in zip(tables(reference), tables(resumed), strict=True):
        pd.testing.assert_frame_equal(a, b, check_exact=True)
