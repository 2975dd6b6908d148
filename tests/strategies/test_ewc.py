"""EWC: its Fisher against hand computations, its penalty and gradient, its state, and off."""

from __future__ import annotations

import random

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from transformers import AutoTokenizer

from strategies.strategy_runs import tables
from xlcl.checkpoint import latest_checkpoint
from xlcl.classifier import trainable_parameters
from xlcl.config import LoraSettings, validate_config
from xlcl.data import load_massive, slot_label_names
from xlcl.encode import collate, encode
from xlcl.methods import method
from xlcl.protocol import run
from xlcl.registry import PluginError
from xlcl.state_tree import read_state_tree, write_state_tree
from xlcl.strategies import StepContext, build_strategy, hook_rng, resolve_settings
from xlcl.tasks.massive_slots import MassiveSlots

ORDER = ["en-US", "ja-JP", "de-DE"]
TRAIN = {"epochs": 2, "patience": 1, "batch_size": 4, "learning_rate": 1e-3}


@pytest.fixture(scope="module")
def labels(massive_dir):
    return slot_label_names(load_massive(massive_dir, ORDER))


@pytest.fixture(scope="module")
def splits(tiny_model, massive_dir, labels):
    """The first two training utterances of each locale, encoded."""
    data = load_massive(massive_dir, ORDER)
    ids = {label: i for i, label in enumerate(labels)}
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    return {
        locale: encode(data.utterances(locale, "train"), tokenizer, ids, 32).subset([0, 1])
        for locale in ORDER
    }


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


def context(splits, step, run_config):
    locale = ORDER[step - 1]
    return StepContext(
        step=step,
        locales=(locale,),
        earlier=tuple(ORDER[: step - 1]),
        train_splits=splits,
        config=run_config,
        rng=hook_rng(0, step, "after_step"),
    )


@pytest.fixture
def model(tiny_model, labels):
    """The tiny slot model in training mode (its dropout is 0.1)."""
    built = MassiveSlots().build_model(
        str(tiny_model), labels, method("vanilla"), LoraSettings(), 0
    )
    built.train()
    return built


def squared_gradient(model, input_ids, token_labels):
    """By hand: (∇ mean cross-entropy of these utterances)², in eval mode, per parameter."""
    batch = collate(input_ids, token_labels, pad_id=1)
    model.eval()
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch.labels.reshape(-1))
    named = trainable_parameters(model)
    grads = torch.autograd.grad(loss, [p for _, p in named], allow_unused=True)
    model.train()
    return {
        name: torch.zeros_like(p) if g is None else g.pow(2)
        for (name, p), g in zip(named, grads, strict=True)
    }


def assert_close(actual, expected):
    assert actual.keys() == expected.keys()
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], rtol=1e-4, atol=1e-9)


def test_the_fisher_of_one_batch_is_its_squared_gradient(tiny_model, massive_dir, splits, model):
    """Batch 4 holds the step's 2 utterances: F = (∇ of their mean loss)²."""
    ewc = build_strategy({"name": "ewc", "ewc_lambda": 1.0})
    split = splits["en-US"]
    expected = squared_gradient(model, split.input_ids, split.labels)
    generators = (random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state())
    ewc.after_step(context(splits, 1, config(tiny_model, massive_dir, "unused")), model)
    # The pass drew nothing and left the model as it found it: training mode, no gradients.
    assert random.getstate() == generators[0]
    assert np.array_equal(np.random.get_state()[1], generators[1])
    assert torch.equal(torch.get_rng_state(), generators[2])
    assert model.training
    assert all(p.grad is None for p in model.parameters())
    [(fisher, anchor)] = ewc.terms
    assert_close(fisher, expected)
    assert any(value.abs().sum() > 0 for value in fisher.values())
    assert all(torch.equal(anchor[n], p) for n, p in trainable_parameters(model))
    assert not any(value.requires_grad for value in anchor.values())


def test_micro_batches_are_weighted_by_their_utterances(tiny_model, massive_dir, splits, model):
    """Batch 1 over 2 utterances: F = (g_1² + g_2²) / 2, the per-example Fisher."""
    ewc = build_strategy({"name": "ewc", "ewc_lambda": 1.0})
    split = splits["en-US"]
    per_utterance = [
        squared_gradient(model, [split.input_ids[u]], [split.labels[u]]) for u in (0, 1)
    ]
    run_config = config(tiny_model, massive_dir, "unused", batch_size=1)
    ewc.after_step(context(splits, 1, run_config), model)
    expected = {
        name: (per_utterance[0][name] + per_utterance[1][name]) / 2 for name in per_utterance[0]
    }
    assert_close(ewc.terms[0][0], expected)


def moved(model, amount):
    with torch.no_grad():
        model.classifier.weight += amount
        model.classifier.bias -= amount


def test_online_fisher_decays_and_the_anchor_follows_the_last_step(
    tiny_model, massive_dir, splits, model
):
    ewc = build_strategy({"name": "ewc", "ewc_lambda": 1.0, "decay_factor": 0.5})
    run_config = config(tiny_model, massive_dir, "unused")
    first = squared_gradient(model, splits["en-US"].input_ids, splits["en-US"].labels)
    ewc.after_step(context(splits, 1, run_config), model)
    moved(model, 0.05)
    second = squared_gradient(model, splits["ja-JP"].input_ids, splits["ja-JP"].labels)
    ewc.after_step(context(splits, 2, run_config), model)
    [(fisher, anchor)] = ewc.terms
    assert_close(fisher, {name: 0.5 * first[name] + second[name] for name in first})
    assert all(torch.equal(anchor[n], p) for n, p in trainable_parameters(model))


def test_the_penalty_is_0_at_the_anchor_and_none_before_any_step_or_when_off(
    tiny_model, massive_dir, splits, model
):
    ewc = build_strategy({"name": "ewc", "ewc_lambda": 3.0})
    assert ewc.loss_terms(model, None, None) is None  # type: ignore[arg-type]  (no Fisher yet)
    ewc.after_step(context(splits, 1, config(tiny_model, massive_dir, "unused")), model)
    penalty = ewc.loss_terms(model, None, None)  # type: ignore[arg-type]
    assert penalty is not None and penalty.item() == 0.0
    off = build_strategy({"name": "ewc", "ewc_lambda": 0})
    off.after_step(context(splits, 1, config(tiny_model, massive_dir, "unused")), model)
    assert off.terms == [] and off.state_dict() == {"terms": []}
    assert off.loss_terms(model, None, None) is None  # type: ignore[arg-type]


def test_separate_mode_sums_one_penalty_per_step(tiny_model, massive_dir, splits, model):
    ewc = build_strategy({"name": "ewc", "ewc_lambda": 2.0, "mode": "separate"})
    run_config = config(tiny_model, massive_dir, "unused")
    ewc.after_step(context(splits, 1, run_config), model)
    moved(model, 0.05)
    ewc.after_step(context(splits, 2, run_config), model)
    assert len(ewc.terms) == 2
    moved(model, 0.1)
    expected = sum(
        (fisher[name] * (p.detach() - anchor[name]) ** 2).sum()
        for fisher, anchor in ewc.terms
        for name, p in trainable_parameters(model)
    )
    penalty = ewc.loss_terms(model, None, None)  # type: ignore[arg-type]
    assert penalty is not None
    torch.testing.assert_close(penalty.detach(), 2.0 / 2 * expected)
    with pytest.raises(PluginError, match=r"strategy\.decay_factor: .*applies to mode online only"):
        resolve_settings({"name": "ewc", "mode": "separate", "decay_factor": 0.5})


def test_the_penalty_gradient_agrees_with_a_central_difference():
    """On a float64 linear layer: ∇ = λ F (θ - θ*), and a central difference agrees."""
    torch.manual_seed(0)
    layer = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 1)).double()
    layer[1].requires_grad_(False)
    named = trainable_parameters(layer)
    fisher = {name: torch.rand_like(p, dtype=torch.float64) for name, p in named}
    anchor = {name: p.detach() + torch.randn_like(p) for name, p in named}
    ewc = build_strategy({"name": "ewc", "ewc_lambda": 0.7})
    ewc.load_state_dict({"terms": [{"fisher": fisher, "anchor": anchor}]})
    penalty = ewc.loss_terms(layer, None, None)  # type: ignore[arg-type]
    assert penalty is not None
    penalty.backward()
    step = 1e-6
    for name, parameter in named:
        torch.testing.assert_close(parameter.grad, 0.7 * fisher[name] * (parameter - anchor[name]))
        flat = parameter.data.view(-1)
        for index in range(flat.numel()):
            original = flat[index].item()
            flat[index] = original + step
            up = ewc.loss_terms(layer, None, None).item()  # type: ignore[arg-type, union-attr]
            flat[index] = original - step
            down = ewc.loss_terms(layer, None, None).item()  # type: ignore[arg-type, union-attr]
            flat[index] = original
            assert (up - down) / (2 * step) == pytest.approx(
                parameter.grad.view(-1)[index].item(), rel=1e-6
            )


def test_the_state_survives_a_checkpoint_s_state_tree(
    tiny_model, massive_dir, splits, model, tmp_path
):
    ewc = build_strategy({"name": "ewc", "ewc_lambda": 2.0, "mode": "separate"})
    run_config = config(tiny_model, massive_dir, "unused")
    ewc.after_step(context(splits, 1, run_config), model)
    moved(model, 0.05)
    ewc.after_step(context(splits, 2, run_config), model)
    write_state_tree(tmp_path, "extra_state", {"strategy": ewc.state_dict()})
    restored = build_strategy({"name": "ewc", "ewc_lambda": 2.0, "mode": "separate"})
    restored.load_state_dict(read_state_tree(tmp_path, "extra_state")["strategy"])
    assert len(restored.terms) == 2
    for (fisher_a, anchor_a), (fisher_b, anchor_b) in zip(ewc.terms, restored.terms, strict=True):
        assert (
            all(torch.equal(fisher_a[n], fisher_b[n]) for n in fisher_a)
            and fisher_a.keys() == fisher_b.keys()
        )
        assert (
            all(torch.equal(anchor_a[n], anchor_b[n]) for n in anchor_a)
            and anchor_a.keys() == anchor_b.keys()
        )
    moved(model, 0.1)
    assert torch.equal(
        restored.loss_terms(model, None, None),  # type: ignore[arg-type]
        ewc.loss_terms(model, None, None),  # type: ignore[arg-type]
    )


def test_ewc_lambda_0_is_vanilla_bit_for_bit(tiny_model, massive_dir, tmp_path):
    vanilla = run(config(tiny_model, massive_dir, tmp_path / "vanilla"))
    off = run(config(tiny_model, massive_dir, tmp_path / "off", {"name": "ewc", "ewc_lambda": 0}))
    assert off.name != vanilla.name
    for a, b in zip(tables(vanilla), tables(off), strict=True):
        pd.testing.assert_frame_equal(a, b, check_exact=True)
    on = run(config(tiny_model, massive_dir, tmp_path / "on", {"name": "ewc", "ewc_lambda": 1e4}))
    (scores_on, curves_on), (scores_off, curves_off) = tables(on), tables(off)
    # Step 1 has no Fisher yet, so it trains as VANILLA; the penalty changes the later steps.
    first = scores_on["step"] <= 1
    pd.testing.assert_frame_equal(scores_on[first], scores_off[first], check_exact=True)
    later = curves_on["step"] >= 2
    assert curves_on[~later]["train_loss"].equals(curves_off[~later]["train_loss"])
    assert not curves_on[later]["train_loss"].equals(curves_off[later]["train_loss"])
    [term] = latest_checkpoint(on, on.name).state()["strategy"]["terms"]
    assert term["fisher"].keys() == term["anchor"].keys()


def test_a_run_resumed_after_a_step_continues_with_its_fisher(
    tiny_model, massive_dir, tmp_path, monkeypatch
):
    import xlcl.protocol

    strategy = {"name": "ewc", "ewc_lambda": 1e4}
    reference = run(config(tiny_model, massive_dir, tmp_path / "ref", strategy))
    original = xlcl.protocol.save_checkpoint

    def save_then_stop(run_dir, saved_step, *args, **kwargs):
        path = original(run_dir, saved_step, *args, **kwargs)
        if saved_step == 2:
            raise KeyboardInterrupt
        return path

    def interrupted_then_resumed(output):
        resumed_config = config(tiny_model, massive_dir, output, strategy)
        monkeypatch.setattr(xlcl.protocol, "save_checkpoint", save_then_stop)
        with pytest.raises(KeyboardInterrupt):
            run(resumed_config)
        monkeypatch.setattr(xlcl.protocol, "save_checkpoint", original)
        return run(resumed_config)

    resumed = interrupted_then_resumed(tmp_path / "resumed")
    for a, b in zip(tables(reference), tables(resumed), strict=True):
        pd.testing.assert_frame_equal(a, b, check_exact=True)
    # The Fisher is what makes it exact: resumed without it, step 3 is another step.
    monkeypatch.setattr("xlcl.strategies.ewc.EWC.load_state_dict", lambda self, state: None)
    _, curves = tables(interrupted_then_resumed(tmp_path / "forgetful"))
    _, reference_curves = tables(reference)
    step_3 = curves["step"] == 3
    assert not curves[step_3]["train_loss"].equals(reference_curves[step_3]["train_loss"])
