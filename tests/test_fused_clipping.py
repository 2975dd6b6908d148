"""Clipping folded into fused AdamW (train.fused_clipping) against clip_grad_norm_ + AdamW.

fp32 on the CPU, whose AdamW is fused as on a GPU. Under the limit fused AdamW divides by
exactly 1: bit for bit today's update. Above it, it divides by 1/c where clip_grad_norm_
multiplies by c: a rounding apart.
"""

import numpy as np
import pytest
import torch

from tiny_models import without_dropout
from xlcl.classifier import build_classifier, trainable_parameters
from xlcl.config import LoraSettings, TrainConfig, load_config
from xlcl.encode import collate_batch
from xlcl.methods import method
from xlcl.tasks.massive_slots import MassiveSlots
from xlcl.train import Objective, clip_and_step, forward_backward, optimizer_for

UPDATES = 5


def updates(en_us, max_grad_norm, fused_clipping):
    """The trainable weights after UPDATES updates on en-US batches, and each update's
    gradient norm and non-finite flag."""
    model_dir, labels, train_split, _ = en_us
    model = build_classifier(str(model_dir), labels, method("vanilla"), LoraSettings(), 0)
    model = without_dropout(model)
    config = TrainConfig(
        epochs=1,
        patience=1,
        learning_rate=1e-2,
        max_grad_norm=max_grad_norm,
        fused_clipping=fused_clipping,
    )
    named = trainable_parameters(model)
    parameters = [p for _, p in named]
    optimizer, _ = optimizer_for(named, config, total_steps=UPDATES)
    objective, autocast = Objective(MassiveSlots()), torch.autocast("cpu", enabled=False)
    norms, flags = [], []
    for update in range(UPDATES):
        rows = np.array([update % len(train_split), (update + 3) % len(train_split)])
        batch = collate_batch([train_split], rows, pad_id=1)
        forward_backward(model, batch, objective, autocast, accumulation=1)
        norms.append(torch.nn.utils.get_total_norm([p.grad for p in parameters], foreach=True))
        flags.append(clip_and_step(parameters, optimizer, config.max_grad_norm, fused_clipping))
        optimizer.zero_grad(set_to_none=True)
    return {name: p.detach().clone() for name, p in named}, norms, flags


def test_under_the_limit_the_updates_are_bit_for_bit_todays(en_us):
    plain, plain_norms, _ = updates(en_us, max_grad_norm=1e6, fused_clipping=False)
    folded, _, _ = updates(en_us, max_grad_norm=1e6, fused_clipping=True)
    assert max(float(n) for n in plain_norms) < 1e6  # no update was clipped
    for name, weight in plain.items():
        assert torch.equal(folded[name], weight), name


def test_above_the_limit_the_updates_are_todays_up_to_rounding(en_us):
    plain, plain_norms, plain_flags = updates(en_us, max_grad_norm=1e-2, fused_clipping=False)
    folded, _, folded_flags = updates(en_us, max_grad_norm=1e-2, fused_clipping=True)
    assert min(float(n) for n in plain_norms) > 1e-2  # every update was clipped
    # Measured: after 5 updates at most 1.19e-7 apart, one ulp of the LayerNorm weights
    # (about 1.0); weights near 0 then differ relatively more, hence the atol.
    ulp_at_one = torch.finfo(torch.float32).eps
    for name, weight in plain.items():
        torch.testing.assert_close(folded[name], weight, rtol=1e-6, atol=2 * ulp_at_one)
    assert any(not torch.equal(folded[n], w) for n, w in plain.items())  # not the same path
    assert [f.item() for f in folded_flags] == [f.item() for f in plain_flags] == [False] * 5


def test_a_non_finite_norm_is_flagged_as_today(en_us):
    model_dir, labels, train_split, _ = en_us
    model = build_classifier(str(model_dir), labels, method("vanilla"), LoraSettings(), 0)
    with torch.no_grad():
        model.classifier.weight.fill_(float("nan"))
    config = TrainConfig(epochs=1, patience=1, learning_rate=1e-2, fused_clipping=True)
    named = trainable_parameters(model)
    optimizer, _ = optimizer_for(named, config, total_steps=1)
    autocast = torch.autocast("cpu", enabled=False)
    batch = collate_batch([train_split], np.array([0, 1]), pad_id=1)
    forward_backward(model, batch, Objective(MassiveSlots()), autocast, accumulation=1)
    assert clip_and_step([p for _, p in named], optimizer, 1.0, fused_clipping=True).item()


def test_a_step_trains_as_today_under_the_limit_graphed_or_not(en_us):
    model_dir, labels, *_ = en_us
    for graphs in (False, True):
        weights = []
        for fused_clipping in (False, True):
            config = TrainConfig(
                epochs=2,
                patience=2,
                learning_rate=1e-2,
                batch_size=4,
                max_grad_norm=1e6,
                cuda_graphs=graphs,
                fused_clipping=fused_clipping,
            )
            spec, lora = method("vanilla"), LoraSettings(dropout=0.0)
            model = without_dropout(build_classifier(str(model_dir), labels, spec, lora, 0))
            en_us.train_step(model, config, seed=3)
            weights.append({name: p.detach().clone() for name, p in trainable_parameters(model)})
        for name, weight in weights[0].items():
            assert torch.equal(weights[1][name], weight), (graphs, name)


def test_the_option_at_its_default_leaves_the_run_id_alone():
    base = ["model=m", "method=vanilla"]
    plain = load_config(None, base)
    assert load_config(None, [*base, "train.fused_clipping=false"]).run_id == plain.run_id
    assert load_config(None, [*base, "train.fused_clipping=true"]).run_id != plain.run_id


def test_without_fused_adamw_the_option_is_refused(en_us):
    # torch's fused AdamW exists for the CPU and CUDA only; a meta device stands for mps.
    weight = torch.nn.Parameter(torch.zeros(2, 2, device="meta"))
    config = TrainConfig(epochs=1, patience=1, learning_rate=1e-2, fused_clipping=True)
    with pytest.raises(ValueError, match=r"train.fused_clipping needs fused AdamW"):
        optimizer_for([("weight", weight)], config, total_steps=1)
