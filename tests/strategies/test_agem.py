"""A-GEM: its projection, its reference gradient by hand, its memory (bounded, capped), its
state, its cost, off, and resume."""

from __future__ import annotations

import copy
import random

import numpy as np
import pandas as pd
import pytest
import torch
from transformers import AutoTokenizer

from strategies.strategy_runs import interrupted_after_step, tables
from xlcl.checkpoint import latest_checkpoint
from xlcl.classifier import trainable_parameters
from xlcl.config import LoraSettings, validate_config
from xlcl.data import load_massive, slot_label_names
from xlcl.encode import EncodedSplit, collate, encode, gather
from xlcl.methods import method
from xlcl.protocol import run
from xlcl.state_tree import read_state_tree, write_state_tree
from xlcl.strategies import StepContext, StrategyCost, build_strategy, hook_rng
from xlcl.strategies import agem as agem_module
from xlcl.strategies.agem import AGEM, AGEMSettings
from xlcl.tasks.massive_slots import MassiveSlots

ORDER = ["en-US", "ja-JP", "de-DE"]
TRAIN = {"epochs": 2, "patience": 1, "batch_size": 4, "learning_rate": 1e-3}
# At TRAIN's gentle rate the fixture's locales never pull against each other (g·g_ref > 0 at
# every update, so A-GEM changes nothing); at this one some updates of steps 2 and 3 do.
CONFLICTING = {"epochs": 4, "patience": 5, "learning_rate": 1e-2}


@pytest.fixture(scope="module")
def labels(massive_dir):
    return slot_label_names(load_massive(massive_dir, ORDER))


@pytest.fixture(scope="module")
def train_splits(tiny_model, massive_dir, labels):
    data = load_massive(massive_dir, ORDER)
    ids = {label: i for i, label in enumerate(labels)}
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    return {
        locale: encode(data.utterances(locale, "train"), tokenizer, ids, 32) for locale in ORDER
    }


@pytest.fixture
def model(tiny_model, labels):
    """The tiny slot model in training mode (its dropout is 0.1)."""
    built = MassiveSlots().build_model(
        str(tiny_model), labels, method("vanilla"), LoraSettings(), 0
    )
    built.train()
    return built


def config(tiny_model, massive_dir, output, strategy=None, **train):
    raw = {
        "model": str(tiny_model),
        "method": "vanilla",
        "order": ORDER,
        "data": {"source": str(massive_dir)},
        "train": {**TRAIN, **train},
        "output_dir": str(output),
    }
    if strategy is not None:
        raw["strategy"] = strategy
    return validate_config(raw)


def context(train_splits, step, hook, run_config):
    return StepContext(
        step=step,
        locales=(ORDER[step - 1],),
        earlier=tuple(ORDER[: step - 1]),
        train_splits=train_splits,
        config=run_config,
        rng=hook_rng(42, step, hook),
    )


def at_step_2(agem, train_splits, run_config, model):
    """`agem` after step 1's `after_step` and step 2's `before_step`."""
    assert agem.before_step(context(train_splits, 1, "before_step", run_config), model) is None
    assert agem.gradients(model, []) is None  # step 1: no memory yet
    agem.after_step(context(train_splits, 1, "after_step", run_config), model)
    assert agem.before_step(context(train_splits, 2, "before_step", run_config), model) is None
    return agem


def test_the_projection_is_none_when_aligned_and_orthogonal_to_g_ref_otherwise(monkeypatch):
    g = [torch.tensor([1.0, 2.0]), None, torch.tensor([[3.0]])]
    aligned = [torch.tensor([1.0, 0.0]), torch.tensor([5.0]), torch.tensor([[0.0]])]
    assert agem_module.project(g, aligned) is None
    assert agem_module.project(g, [torch.zeros(2), None, torch.zeros(1, 1)]) is None  # dot 0
    opposed = [torch.tensor([-1.0, 0.0]), torch.tensor([2.0]), torch.tensor([[-1.0]])]
    # g·g_ref = -1 - 3 = -4 (the None gradient counts as zero); g_ref·g_ref = 1 + 4 + 1 = 6.
    projected = agem_module.project(g, opposed)
    assert projected is not None
    expected = [
        torch.tensor([1.0 - 4 / 6, 2.0]),
        torch.tensor([4 / 6 * 2.0]),
        torch.tensor([[3.0 - 4 / 6]]),
    ]
    for actual, wanted in zip(projected, expected, strict=True):
        torch.testing.assert_close(actual, wanted)
    dot = sum((p * r).sum() for p, r in zip(projected, opposed, strict=True))
    assert abs(float(dot)) < 1e-6
    # Through the hook, with a stubbed reference gradient.
    agem = build_strategy({"name": "agem", "mem_size": 2, "sample_size": 1})
    utterances = [np.zeros(1, dtype=np.int64)] * 3  # the stub never reads them
    memory = EncodedSplit("en-US", utterances, utterances, utterances, utterances)
    agem.reference = (memory,)  # type: ignore[attr-defined]
    agem.generator = np.random.default_rng(0)  # type: ignore[attr-defined]
    agem.task = MassiveSlots()  # type: ignore[attr-defined]
    monkeypatch.setattr(agem_module, "reference_gradients", lambda *args: opposed)
    hooked = agem.gradients(None, g)  # type: ignore[arg-type]
    assert hooked is not None
    for actual, wanted in zip(hooked, expected, strict=True):
        torch.testing.assert_close(actual, wanted)
    monkeypatch.setattr(agem_module, "reference_gradients", lambda *args: aligned)
    assert agem.gradients(None, g) is None  # type: ignore[arg-type]


def test_the_reference_gradient_is_the_memory_batch_s_loss_gradient_by_hand(
    tiny_model, massive_dir, train_splits, model, monkeypatch
):
    run_config = config(tiny_model, massive_dir, "unused")
    agem = at_step_2(
        build_strategy({"name": "agem", "mem_size": 5, "sample_size": 3}),
        train_splits,
        run_config,
        model,
    )
    kept = agem.state_dict()["memory"]["en-US"]
    assert len(kept) == 5
    # The draw the hook will make, from a copy of the strategy's own generator.
    replica = np.random.default_rng()
    replica.bit_generator.state = agem.state_dict()["generator"]
    indices = replica.choice(5, size=3, replace=False)
    captured = []
    original = agem_module.reference_gradients

    def capture(*args):
        captured.append(original(*args))
        return captured[-1]

    monkeypatch.setattr(agem_module, "reference_gradients", capture)
    # A current gradient opposed to g_ref, so the projection happens.
    by_hand = copy.deepcopy(model)
    input_ids, token_labels = gather([train_splits["en-US"].subset(kept)], indices)
    batch = collate(input_ids, token_labels, pad_id=by_hand.config.pad_token_id)
    by_hand.eval()
    logits = by_hand(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    MassiveSlots().loss(logits, batch.labels).backward()
    expected = [p.grad for _, p in trainable_parameters(by_hand)]
    current = [None if g is None else -g.clone() for g in expected]
    generators = (random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state())
    projected = agem.gradients(model, current)
    assert random.getstate() == generators[0]
    assert np.array_equal(np.random.get_state()[1], generators[1])
    assert torch.equal(torch.get_rng_state(), generators[2])
    assert model.training and all(module.training for module in model.modules())
    assert all(p.grad is None for p in model.parameters())
    [reference] = captured
    assert any(g is not None for g in expected)
    for actual, wanted in zip(reference, expected, strict=True):
        if wanted is None:
            assert actual is None
        else:
            torch.testing.assert_close(actual, wanted, rtol=1e-4, atol=1e-7)
    # -g_ref projected off g_ref is zero.
    assert projected is not None
    assert all(g is None or g.abs().max() < 1e-5 for g in projected)


def test_agem_with_mem_size_0_is_vanilla_bit_for_bit(tiny_model, massive_dir, tmp_path):
    vanilla = run(config(tiny_model, massive_dir, tmp_path / "vanilla", **CONFLICTING))
    off_strategy = {"name": "agem", "mem_size": 0}
    off = run(config(tiny_model, massive_dir, tmp_path / "off", off_strategy, **CONFLICTING))
    assert off.name != vanilla.name
    for a, b in zip(tables(vanilla), tables(off), strict=True):
        pd.testing.assert_frame_equal(a, b, check_exact=True)
    strategy = {"name": "agem", "mem_size": 4, "sample_size": 4}
    on = run(config(tiny_model, massive_dir, tmp_path / "on", strategy, **CONFLICTING))
    (scores_on, curves_on), (scores_off, curves_off) = tables(on), tables(off)
    # Step 1 has no memory, so it trains as VANILLA; the projection changes the later steps.
    first = scores_on["step"] <= 1
    pd.testing.assert_frame_equal(scores_on[first], scores_off[first], check_exact=True)
    later = curves_on["step"] >= 2
    assert curves_on[~later]["train_loss"].equals(curves_off[~later]["train_loss"])
    assert not curves_on[later]["train_loss"].equals(curves_off[later]["train_loss"])
    memory = latest_checkpoint(on, on.name).state()["strategy"]["memory"]
    assert {locale: len(kept) for locale, kept in memory.items()} == {loc: 4 for loc in ORDER}


def test_the_state_survives_a_checkpoint_s_state_tree(
    tiny_model, massive_dir, train_splits, model, tmp_path
):
    run_config = config(tiny_model, massive_dir, "unused")
    settings = {"name": "agem", "mem_size": 5, "sample_size": 2}
    fresh = build_strategy(settings)
    write_state_tree(tmp_path, "fresh", {"strategy": fresh.state_dict()})
    assert read_state_tree(tmp_path, "fresh")["strategy"] == {"memory": {}, "generator": None}
    agem = at_step_2(build_strategy(settings), train_splits, run_config, model)
    agem.generator.integers(10, size=3)  # type: ignore[attr-defined]  (moved within the step)
    write_state_tree(tmp_path, "extra_state", {"strategy": agem.state_dict()})
    restored = build_strategy(settings)
    restored.load_state_dict(read_state_tree(tmp_path, "extra_state")["strategy"])
    state, restored_state = agem.state_dict(), restored.state_dict()
    assert state["generator"] == restored_state["generator"]
    assert state["memory"].keys() == restored_state["memory"].keys() == {"en-US"}
    assert np.array_equal(state["memory"]["en-US"], restored_state["memory"]["en-US"])
    draws = agem.generator.integers(2**62, size=4)  # type: ignore[attr-defined]
    assert np.array_equal(restored.generator.integers(2**62, size=4), draws)  # type: ignore[attr-defined]


def test_a_run_resumed_after_step_2_continues_bit_for_bit(
    tiny_model, massive_dir, tmp_path, monkeypatch
):
    strategy = {"name": "agem", "mem_size": 4, "sample_size": 4}
    reference = run(config(tiny_model, massive_dir, tmp_path / "ref", strategy, **CONFLICTING))
    resumed_config = config(tiny_model, massive_dir, tmp_path / "resumed", strategy, **CONFLICTING)
    interrupted_after_step(monkeypatch, resumed_config, 2)
    resumed = run(resumed_config)
    for a, b in zip(tables(reference), tables(resumed), strict=True):
        pd.testing.assert_frame_equal(a, b, check_exact=True)
    # The memory is what makes it exact: resumed without it, step 3 projects nothing.
    forgetful_config = config(
        tiny_model, massive_dir, tmp_path / "forgetful", strategy, **CONFLICTING
    )
    interrupted_after_step(monkeypatch, forgetful_config, 2)
    monkeypatch.setattr("xlcl.strategies.agem.AGEM.load_state_dict", lambda self, state: None)
    _, curves = tables(run(forgetful_config))
    _, reference_curves = tables(reference)
    step_3 = curves["step"] == 3
    assert not curves[step_3]["train_loss"].equals(reference_curves[step_3]["train_loss"])


def test_a_run_stopped_inside_a_step_continues_with_the_generator_of_that_update(
    tiny_model, massive_dir, tmp_path, monkeypatch
):
    import xlcl.protocol

    # 2 of the memory's 4 utterances a reference batch: the generator decides which.
    strategy = {"name": "agem", "mem_size": 4, "sample_size": 2}
    reference = run(config(tiny_model, massive_dir, tmp_path / "ref", strategy, **CONFLICTING))
    raw = config(tiny_model, massive_dir, tmp_path / "stopped", strategy, **CONFLICTING)
    stopped_config = validate_config(
        {**raw.model_dump(mode="json"), "checkpoint": {"every_updates": 1}}
    )
    original = xlcl.protocol.save_partial
    saved = []

    def save_then_stop(run_dir, step, *args, **kwargs):
        path = original(run_dir, step, *args, **kwargs)
        saved.append(step)
        # 3 updates an epoch (10 utterances, batch 4), the last one not checkpointed: the
        # 2 x 4 = 8 of step 1, then the 5th inside step 2 (epoch 3), where the generator
        # has drawn 4 reference batches since the step's plan seeded it.
        if saved.count(2) == 5:
            raise KeyboardInterrupt
        return path

    monkeypatch.setattr(xlcl.protocol, "save_partial", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        run(stopped_config)
    monkeypatch.setattr(xlcl.protocol, "save_partial", original)
    assert saved.count(1) == 8
    resumed = run(stopped_config)
    for a, b in zip(tables(reference), tables(resumed), strict=True):
        pd.testing.assert_frame_equal(a, b, check_exact=True)


@pytest.mark.parametrize("mem_size", [0, 1, 4, 10])
def test_the_memory_never_holds_more_than_mem_size_utterances_per_locale(
    tiny_model, massive_dir, train_splits, model, mem_size
):
    run_config = config(tiny_model, massive_dir, "unused")
    agem = build_strategy({"name": "agem", "mem_size": mem_size, "sample_size": 32})
    for step in range(1, len(ORDER) + 1):
        agem.before_step(context(train_splits, step, "before_step", run_config), model)
        assert all(len(split) <= mem_size for split in agem.reference)  # type: ignore[attr-defined]
        agem.after_step(context(train_splits, step, "after_step", run_config), model)
        for locale, kept in agem.state_dict()["memory"].items():
            assert len(kept) == min(mem_size, len(train_splits[locale])) <= mem_size
            assert len(set(kept.tolist())) == len(kept)


def test_a_memory_larger_than_the_split_is_capped_with_a_warning(
    tiny_model, massive_dir, train_splits, model
):
    run_config = config(tiny_model, massive_dir, "unused")
    agem = build_strategy({"name": "agem", "mem_size": 25})
    message = "agem: mem_size 25 is more than the 10 training utterances of en-US; keeping all 10"
    with pytest.warns(UserWarning, match=message):
        agem.after_step(context(train_splits, 1, "after_step", run_config), model)
    assert np.array_equal(agem.state_dict()["memory"]["en-US"], np.arange(10))


def test_the_cost_is_the_memory_of_the_last_step():
    sizes = {"en-US": 10, "ja-JP": 5, "de-DE": 7}
    settings = AGEMSettings(mem_size=6, sample_size=4)
    assert AGEM.cost(settings, trainable=1_000, head=0, train_sizes=sizes) == StrategyCost(
        memory_utterances=11  # min(6, 10) + min(6, 5); g_ref lives for one update only
    )
    assert (
        AGEM.cost(AGEMSettings(mem_size=0), trainable=1, head=0, train_sizes=sizes)
        == StrategyCost()
    )
