"""O-LoRA: its terms on hand-made matrices, the frozen adapters' sum in the forward pass,
the new adapter's start, its state, off equal to SHARED LoRA, and exact resumes."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from transformers import AutoTokenizer

from strategies.strategy_runs import tables
from xlcl.checkpoint import Checkpoint, latest_checkpoint
from xlcl.classifier import trainable_parameters
from xlcl.config import ConfigError, LoraSettings, TrainConfig, validate_config
from xlcl.data import load_massive, slot_label_names
from xlcl.encode import collate, encode
from xlcl.methods import method
from xlcl.protocol import run
from xlcl.state_tree import read_state_tree, write_state_tree
from xlcl.strategies import StepContext, build_strategy, hook_rng, resolve_settings, strategy_class
from xlcl.strategies.olora import LIVE, l2_norms, lora_layers, orthogonality, stack
from xlcl.tasks.massive_slots import MassiveSlots
from xlcl.train import Objective

ORDER = ["en-US", "ja-JP", "de-DE"]
TRAIN = {"epochs": 2, "patience": 1, "batch_size": 4, "learning_rate": 1e-3}
RANK = 4


def context(step):
    """A step context; O-LoRA reads `earlier` and `rng`."""
    return StepContext(
        step=step,
        locales=(ORDER[step - 1],),
        earlier=tuple(ORDER[: step - 1]),
        train_splits={},
        config=None,  # type: ignore[arg-type]
        rng=hook_rng(0, step, "before_step"),
    )


def test_the_orthogonality_term_is_the_absolute_sum_of_a_old_a_new_t():
    old = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    # Rows orthogonal to every old row: 0.
    assert orthogonality(old, torch.tensor([[0.0, 0.0, 2.0]])).item() == 0.0
    # A_old A_newᵀ = [[1, 0], [-2, 3]]: |1| + |0| + |-2| + |3| = 6.
    new = torch.tensor([[1.0, -2.0, 5.0], [0.0, 3.0, 0.0]])
    assert orthogonality(old, new).item() == 6.0
    # Two earlier adapters stacked by rows: the sum of each one's term.
    other = torch.tensor([[0.0, 0.0, -1.0]])
    stacked = stack([{"layer": (old, torch.zeros(1, 2))}, {"layer": (other, torch.zeros(1, 1))}])[
        "layer"
    ][0]
    assert orthogonality(stacked, new).item() == 6.0 + 5.0


def test_the_l2_term_is_the_sum_of_frobenius_norms_not_squared():
    a = torch.tensor([[3.0, 4.0]])
    assert l2_norms(a, torch.zeros(3, 1)).item() == 5.0
    assert l2_norms(a, torch.tensor([[1.0], [2.0], [2.0]])).item() == 8.0


@pytest.fixture(scope="module")
def labels(massive_dir):
    return slot_label_names(load_massive(massive_dir, ORDER))


@pytest.fixture(scope="module")
def batch(tiny_model, massive_dir, labels):
    """Four en-US training utterances."""
    data = load_massive(massive_dir, ORDER)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    ids = {label: i for i, label in enumerate(labels)}
    split = encode(data.utterances("en-US", "train"), tokenizer, ids, 32)
    return collate(split.input_ids[:4], split.labels[:4], pad_id=1)


def lora_model(tiny_model, labels):
    """The tiny slot model with a rank-4 LoRA adapter (SHARED LoRA's), in eval mode."""
    model = MassiveSlots().build_model(
        str(tiny_model), labels, method("shared-lora", RANK), LoraSettings(), 0
    )
    return model.eval()


def train_live_adapter(model, seed):
    """Stand in for a trained step: random values in the live adapter's A and B."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, layer in lora_layers(model):
            for weight in (layer.lora_A[LIVE].weight, layer.lora_B[LIVE].weight):
                weight.copy_(torch.randn(weight.shape, generator=generator) * 0.1)


def live(model):
    """Each LoRA layer's live (A, B), copied."""
    return {
        name: (
            layer.lora_A[LIVE].weight.detach().clone(),
            layer.lora_B[LIVE].weight.detach().clone(),
        )
        for name, layer in lora_layers(model)
    }


def logits(model, batch):
    with torch.no_grad():
        return model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits


def test_the_forward_pass_is_the_base_plus_every_adapter(tiny_model, labels, batch):
    model = lora_model(tiny_model, labels)
    olora = build_strategy({"name": "olora"})
    olora.prepare_model(model)
    adapters = []
    for step in (1, 2, 3):
        olora.before_step(context(step), model)
        olora.prepare_model(model)
        train_live_adapter(model, seed=step)
        adapters.append(live(model))
    # By hand: a model without adapters whose base weights have s · Σ_k B_k A_k merged in.
    merged = lora_model(tiny_model, labels)
    with torch.no_grad():
        for name, layer in lora_layers(merged):
            delta = sum(b @ a for a, b in (adapter[name] for adapter in adapters))
            layer.base_layer.weight += layer.scaling[LIVE] * delta
    with merged.disable_adapter():
        expected = logits(merged, batch)
    torch.testing.assert_close(logits(model, batch), expected, rtol=1e-5, atol=1e-6)
    assert len(olora.frozen) == 2
    for frozen, trained in zip(olora.frozen, adapters[:2], strict=True):
        assert all(torch.equal(frozen[name][0], trained[name][0]) for name in trained)
        assert all(torch.equal(frozen[name][1], trained[name][1]) for name in trained)


def test_the_new_adapter_starts_as_peft_initialises_lora_from_the_step_s_generator(
    tiny_model, labels, batch
):
    model = lora_model(tiny_model, labels)
    olora = build_strategy({"name": "olora"})
    olora.prepare_model(model)
    train_live_adapter(model, seed=1)
    before = logits(model, batch)
    generator = torch.get_rng_state()
    olora.before_step(context(2), model)
    olora.prepare_model(model)
    olora.prepare_model(model)  # again: nothing added twice, no second start
    assert torch.equal(torch.get_rng_state(), generator)  # the global generator is untouched
    for _, layer in lora_layers(model):
        a, b = layer.lora_A[LIVE].weight, layer.lora_B[LIVE].weight
        assert len(layer._forward_hooks) == 1
        assert torch.count_nonzero(b) == 0  # B zero: the step starts where the last ended
        bound = 1 / np.sqrt(a.shape[1])  # Kaiming-uniform with a = √5: U(±1/√fan_in)
        assert a.abs().max() <= bound and a.abs().max() > bound / 2
    torch.testing.assert_close(logits(model, batch), before, rtol=1e-5, atol=1e-6)
    # The same step draws the same start, whatever came before.
    again = lora_model(tiny_model, labels)
    other = build_strategy({"name": "olora"})
    train_live_adapter(again, seed=7)
    other.before_step(context(2), again)
    other.prepare_model(again)
    ours, theirs = live(model), live(again)
    assert all(torch.equal(ours[name][0], theirs[name][0]) for name in ours)


def test_the_terms_on_the_model_and_their_gradient(tiny_model, labels, batch):
    model = lora_model(tiny_model, labels)
    olora = build_strategy({"name": "olora", "lambda_orth": 0.5, "lambda_l2": 0.25})
    olora.prepare_model(model)
    outputs = None
    # Step 1: no earlier adapter, only the l2 term.
    olora.before_step(context(1), model)
    step_1 = olora.loss_terms(model, batch, outputs)
    norms = sum(
        np.linalg.norm(a.double().numpy()) + np.linalg.norm(b.double().numpy())
        for a, b in live(model).values()
    )
    assert step_1 is not None and step_1.item() == pytest.approx(0.25 * norms, rel=1e-5)
    train_live_adapter(model, seed=1)
    olora.before_step(context(2), model)
    olora.prepare_model(model)
    train_live_adapter(model, seed=2)
    old, new = olora.frozen[0], live(model)
    by_hand = sum(
        0.5 * np.abs(old[name][0].double().numpy() @ new[name][0].double().numpy().T).sum()
        + 0.25 * (np.linalg.norm(new[name][0].numpy()) + np.linalg.norm(new[name][1].numpy()))
        for name in new
    )
    term = olora.loss_terms(model, batch, outputs)
    assert term is not None and term.item() == pytest.approx(by_hand, rel=1e-5)
    # Its gradient reaches the new adapter, not the frozen one (a tensor, not a parameter).
    term.backward()
    _, layer = lora_layers(model)[0]
    assert layer.lora_A[LIVE].weight.grad.abs().sum() > 0
    assert not any(a.requires_grad or b.requires_grad for a, b in olora.frozen[0].values())


def test_off_adds_nothing_and_none_is_the_term_at_step_1_without_l2(tiny_model, labels, batch):
    model = lora_model(tiny_model, labels)
    before = logits(model, batch)
    off = build_strategy({"name": "olora", "lambda_orth": 0, "lambda_l2": 0})
    off.prepare_model(model)
    for step in (1, 2):
        assert off.before_step(context(step), model) is None
        off.prepare_model(model)
        assert off.loss_terms(model, batch, None) is None
    assert off.state_dict() == {"frozen": []}
    assert all(not layer._forward_hooks for _, layer in lora_layers(model))
    assert torch.equal(logits(model, batch), before)
    on = build_strategy({"name": "olora"})  # lambda_l2 0: nothing at step 1
    on.before_step(context(1), model)
    assert on.loss_terms(model, batch, None) is None


def test_frozen_adapters_stay_while_the_new_one_and_the_head_train(en_us):
    model = MassiveSlots().build_model(
        str(en_us.model_dir), en_us.labels, method("shared-lora", RANK), LoraSettings(), 0
    )
    olora = build_strategy({"name": "olora", "lambda_orth": 0.5, "lambda_l2": 0.1})
    objective = Objective(MassiveSlots(), olora)
    config = TrainConfig(epochs=1, patience=1, learning_rate=1e-2, batch_size=4)
    olora.prepare_model(model)
    olora.before_step(context(1), model)
    en_us.train_step(model, config, objective=objective)
    trained = live(model)
    olora.before_step(context(2), model)
    olora.prepare_model(model)
    start = live(model)
    head = model.classifier.modules_to_save[LIVE].weight.detach().clone()
    names = {name for name, _ in trainable_parameters(model)}
    assert all(
        ".lora_A.default." in n or ".lora_B.default." in n or "classifier" in n for n in names
    )
    en_us.train_step(model, config, seed=1, objective=objective)
    (frozen,) = olora.frozen
    assert all(torch.equal(frozen[name][0], trained[name][0]) for name in trained)
    assert all(torch.equal(frozen[name][1], trained[name][1]) for name in trained)
    after = live(model)
    assert all(not torch.equal(after[name][0], start[name][0]) for name in after)
    assert all(not torch.equal(after[name][1], start[name][1]) for name in after)
    assert not torch.equal(model.classifier.modules_to_save[LIVE].weight, head)


def test_the_frozen_adapters_survive_a_checkpoint_s_state_tree(tiny_model, labels, batch, tmp_path):
    model = lora_model(tiny_model, labels)
    olora = build_strategy({"name": "olora"})
    olora.prepare_model(model)
    for step in (1, 2, 3):
        olora.before_step(context(step), model)
        olora.prepare_model(model)
        train_live_adapter(model, seed=step)
    write_state_tree(tmp_path, "extra_state", {"strategy": olora.state_dict()})
    restored = build_strategy({"name": "olora"})
    restored.load_state_dict(read_state_tree(tmp_path, "extra_state")["strategy"])
    assert len(restored.frozen) == 2
    for ours, theirs in zip(olora.frozen, restored.frozen, strict=True):
        assert ours.keys() == theirs.keys()
        assert all(torch.equal(ours[k][0], theirs[k][0]) for k in ours)
        assert all(torch.equal(ours[k][1], theirs[k][1]) for k in ours)
    assert torch.equal(
        restored.loss_terms(model, batch, None), olora.loss_terms(model, batch, None)
    )
    # A model rebuilt and given the live weights back sums the restored adapters in.
    rebuilt = lora_model(tiny_model, labels)
    restored.prepare_model(rebuilt)
    weights = dict(trainable_parameters(model))
    with torch.no_grad():
        for name, parameter in trainable_parameters(rebuilt):
            parameter.copy_(weights[name])
    assert torch.equal(logits(rebuilt, batch), logits(model, batch))


def test_it_needs_a_lora_method_with_the_sequential_schedule(tiny_model, massive_dir, tmp_path):
    raw = {
        "model": str(tiny_model),
        "method": "vanilla",
        "order": ORDER,
        "data": {"source": str(massive_dir)},
        "train": TRAIN,
        "output_dir": str(tmp_path),
        "strategy": {"name": "olora"},
    }
    with pytest.raises(ConfigError) as error:
        validate_config(raw)
    message = str(error.value)
    assert "\n" not in message
    assert "strategy olora modifies LoRA adapters: method vanilla trains none" in message
    with pytest.raises(ConfigError, match="not for the independent schedule"):
        validate_config({**raw, "method": "nonshared-lora", "rank": RANK})


def test_settings_and_cost():
    assert resolve_settings({"name": "olora"}) == {
        "name": "olora",
        "lambda_orth": 0.5,
        "lambda_l2": 0.0,
    }
    cls = strategy_class("olora")
    sizes = {locale: 10 for locale in ORDER}
    on = cls.Settings(lambda_orth=0.5)
    # Two earlier locales' adapters of 100 parameters each; the head is not copied.
    assert cls.cost(on, trainable=100, head=10, train_sizes=sizes).extra_parameters == 180
    off = cls.Settings(lambda_orth=0, lambda_l2=0)
    assert cls.cost(off, trainable=100, head=0, train_sizes=sizes).extra_parameters == 0
    l2_only = cls.Settings(lambda_orth=0, lambda_l2=0.1)
    assert cls.cost(l2_only, trainable=100, head=10, train_sizes=sizes).extra_parameters == 180


def config(tiny_model, massive_dir, output, strategy=None, **sections):
    raw = {
        **sections,
        "model": str(tiny_model),
        "method": "shared-lora",
        "rank": RANK,
        "order": ORDER,
        "data": {"source": str(massive_dir)},
        "train": TRAIN,
        "output_dir": str(output),
    }
    if strategy is not None:
        raw["strategy"] = strategy
    return validate_config(raw)


def test_off_is_shared_lora_bit_for_bit_and_on_keeps_each_step_s_adapter(
    tiny_model, massive_dir, tmp_path
):
    plain = run(config(tiny_model, massive_dir, tmp_path / "plain"))
    off = run(
        config(tiny_model, massive_dir, tmp_path / "off", {"name": "olora", "lambda_orth": 0})
    )
    assert off.name != plain.name
    for a, b in zip(tables(plain), tables(off), strict=True):
        pd.testing.assert_frame_equal(a, b, check_exact=True)
    on = run(
        config(tiny_model, massive_dir, tmp_path / "on", {"name": "olora"}, checkpoint={"keep": 4})
    )
    (scores_on, curves_on), (scores_off, curves_off) = tables(on), tables(off)
    # Step 1 trains the model's own adapter with no term (lambda_l2 0): SHARED LoRA exactly.
    first = scores_on["step"] <= 1
    pd.testing.assert_frame_equal(scores_on[first], scores_off[first], check_exact=True)
    later = curves_on["step"] >= 2
    assert curves_on[~later]["train_loss"].equals(curves_off[~later]["train_loss"])
    assert not curves_on[later]["train_loss"].equals(curves_off[later]["train_loss"])
    # After step 3 the state holds steps 1 and 2's adapters as those steps ended.
    frozen = latest_checkpoint(on, on.name).state()["strategy"]["frozen"]
    assert len(frozen) == 2
    for step, adapter in enumerate(frozen, start=1):
        weights = Checkpoint(step, on / "checkpoints" / f"step-{step:04d}").weights()
        assert weights is not None
        for layer, values in adapter.items():
            assert torch.equal(values["A"], weights[f"{layer}.lora_A.{LIVE}.weight"])
            assert torch.equal(values["B"], weights[f"{layer}.lora_B.{LIVE}.weight"])


def test_a_run_stopped_inside_a_step_resumes_exactly_with_its_frozen_adapters(
    tiny_model, massive_dir, tmp_path, monkeypatch
):
    import xlcl.protocol

    strategy = {"name": "olora", "lambda_orth": 0.5, "lambda_l2": 0.1}
    # Checkpoint settings do not change a run: the reference writes none inside its steps.
    reference = run(config(tiny_model, massive_dir, tmp_path / "ref", strategy))
    # 3 updates an epoch (10 utterances, batch 4): one checkpoint inside each epoch.
    stopped_config = config(
        tiny_model, massive_dir, tmp_path / "stopped", strategy, checkpoint={"every_updates": 2}
    )
    original = xlcl.protocol.save_partial

    def save_then_stop(run_dir, step, *args, **kwargs):
        path = original(run_dir, step, *args, **kwargs)
        if step == 3:
            raise KeyboardInterrupt
        return path

    monkeypatch.setattr(xlcl.protocol, "save_partial", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        run(stopped_config)
    monkeypatch.setattr(xlcl.protocol, "save_partial", original)
    resumed = run(stopped_config)
    manifest = json.loads((resumed / "manifest.json").read_text())
    assert [entry["after_step"] for entry in manifest["resumed"]] == [2]  # inside step 3
    for a, b in zip(tables(reference), tables(resumed), strict=True):
        pd.testing.assert_frame_equal(a, b, check_exact=True)
