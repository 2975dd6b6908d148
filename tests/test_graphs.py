"""Graphed updates (train.cuda_graphs) on the CPU: the same padded updates, run eagerly.

The capture itself needs a GPU (bench/gpu.py checks it there); here the padding to fixed
widths, the learning rates in tensors and the split between graphed full batches and the
eager last batch must give the plain loop's training.
"""

import numpy as np
import pytest
import torch

from tiny_models import without_dropout
from xlcl.classifier import build_classifier, trainable_parameters
from xlcl.config import ConfigError, LoraSettings, TrainConfig, load_config
from xlcl.encode import IGNORE, collate
from xlcl.graphs import WIDTH_STEP, GraphedUpdates
from xlcl.methods import method
from xlcl.strategies import Feature, Strategy
from xlcl.tasks.massive_slots import MassiveSlots
from xlcl.train import Objective, optimizer_for


@pytest.mark.parametrize("rank", [None, 4])
def test_graphed_training_equals_the_plain_loop(en_us, rank):
    model_dir, labels, train_split, _ = en_us
    # 10 utterances, batch 4: two full batches go through GraphedUpdates, the last
    # batch of 2 runs eagerly; the warm-up spreads the learning rate over updates.
    assert len(train_split) == 10
    spec = method("vanilla") if rank is None else method("shared-lora", rank)
    results, weights = {}, {}
    for graphs in (False, True):
        config = TrainConfig(
            epochs=3,
            patience=3,
            learning_rate=1e-2,
            batch_size=4,
            warmup_ratio=0.4,
            cuda_graphs=graphs,
        )
        model = build_classifier(str(model_dir), labels, spec, LoraSettings(dropout=0.0), 0)
        # without dropout: padding changes the masks' shapes
        results[graphs] = en_us.train_step(without_dropout(model), config, seed=3)
        weights[graphs] = {name: p.detach().clone() for name, p in trainable_parameters(model)}
    plain, graphed = results[False], results[True]
    assert [r.epoch for r in graphed.epochs] == [1, 2, 3]
    assert [r.train_loss for r in graphed.epochs] == pytest.approx(
        [r.train_loss for r in plain.epochs], rel=1e-5
    )
    assert [r.learning_rate for r in graphed.epochs] == pytest.approx(
        [r.learning_rate for r in plain.epochs], rel=1e-6
    )
    assert [r.dev_score for r in graphed.epochs] == [r.dev_score for r in plain.epochs]
    assert graphed.best_epoch == plain.best_epoch
    for name, weight in weights[False].items():
        # atol: Adam at lr 1e-2 moves a weight by up to 1e-2 an update; rounding apart,
        # a weight near 0 may differ by 1e-6 between the padded and unpadded passes.
        torch.testing.assert_close(weights[True][name], weight, rtol=1e-4, atol=1e-5)
    trained = {name: p for name, p in weights[False].items() if "classifier" in name}
    assert trained  # and the training moved them: the comparison is not of two fresh heads
    fresh = build_classifier(str(model_dir), labels, spec, LoraSettings(dropout=0.0), 0)
    for name, parameter in trainable_parameters(fresh):
        if name in trained:
            assert not torch.allclose(parameter, trained[name]), name


def test_collate_pads_to_a_multiple_with_masked_ignored_positions():
    ids = [np.array([5, 6, 7]), np.array([8] * 9)]
    labels = [np.array([IGNORE, 2, IGNORE]), np.array([1] * 9)]
    batch = collate(ids, labels, pad_id=1, pad_to_multiple=WIDTH_STEP)
    assert batch.input_ids.shape == (2, 16)
    assert batch.input_ids[0].tolist() == [5, 6, 7] + [1] * 13
    assert batch.attention_mask.sum(dim=1).tolist() == [3, 9]
    assert (batch.labels[:, 9:] == IGNORE).all()
    assert collate(ids, labels, pad_id=1).input_ids.shape == (2, 9)


def test_graphed_updates_refuse_a_width_that_is_not_a_multiple(en_us):
    def update(batch):
        raise AssertionError("a batch of the wrong width reached the update")

    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))])
    updates = GraphedUpdates(update, [optimizer], torch.device("cpu"))
    batch = collate(en_us.train.input_ids[:2], en_us.train.labels[:2], pad_id=1)
    width = batch.input_ids.shape[1]
    assert width % WIDTH_STEP  # the fixture's two first utterances: not a multiple
    with pytest.raises(ValueError, match=f"batch width {width} is not a multiple of 8"):
        updates.update(batch)


def test_capturable_optimizer_keeps_learning_rates_in_tensors(en_us):
    model_dir, labels, *_ = en_us
    model = build_classifier(str(model_dir), labels, method("vanilla"), LoraSettings(), 0)
    config = TrainConfig(epochs=1, patience=1, learning_rate=1e-3, head_learning_rate=1e-2)
    optimizer, scheduler = optimizer_for(trainable_parameters(model), config, 10, True)
    rates = [group["lr"] for group in optimizer.param_groups]
    assert all(isinstance(rate, torch.Tensor) for rate in rates)
    assert sorted({round(float(rate), 6) for rate in rates}) == [1e-3, 1e-2]
    optimizer.step()  # no gradients: nothing moves
    scheduler.step()  # linear decay over 10 updates: filled in place, the same tensors
    assert [group["lr"] for group in optimizer.param_groups] == rates
    assert sorted({round(float(rate), 7) for rate in rates}) == [9e-4, 9e-3]


@pytest.mark.parametrize(
    ("overrides", "name"),
    [
        (["train.compile=true"], "train.compile"),
        (["train.gradient_accumulation=2"], r"train.gradient_accumulation > 1"),
        (["checkpoint.every_updates=10"], "checkpoint.every_updates"),
    ],
)
def test_cuda_graphs_refuse_what_they_cannot_replay(overrides, name):
    base = ["model=m", "method=vanilla", "train.cuda_graphs=true"]
    assert load_config(None, base).train.cuda_graphs
    together = ["method=nonshared-lora", "rank=4", "train.adapters_together=true"]
    assert load_config(None, [*base, *together]).train.adapters_together  # GroupGraphs
    with pytest.raises(ConfigError, match=f"train.cuda_graphs is not supported with {name}"):
        load_config(None, [*base, *overrides])


class SquaredHead(Strategy):
    """A graph-safe loss term: device-only ops on the parameters, nothing allocated."""

    features = frozenset({Feature.CUDA_GRAPHS})

    def loss_terms(self, model, batch, outputs):
        return 0.5 * sum(p.square().sum() for n, p in model.named_parameters() if "classifier" in n)


def test_graphed_updates_record_the_strategys_loss_terms_too(en_us):
    model_dir, labels, *_ = en_us
    losses = {}
    for graphs, strategy in [(False, None), (False, SquaredHead(None)), (True, SquaredHead(None))]:
        config = TrainConfig(
            epochs=2, patience=2, learning_rate=1e-2, batch_size=4, cuda_graphs=graphs
        )
        model = build_classifier(str(model_dir), labels, method("vanilla"), LoraSettings(), 0)
        objective = Objective(MassiveSlots(), strategy)
        result = en_us.train_step(without_dropout(model), config, seed=3, objective=objective)
        losses[graphs, strategy is not None] = [r.train_loss for r in result.epochs]
    # The term is in the loss, graphed or not.
    assert losses[False, True] != pytest.approx(losses[False, False], rel=1e-3)
    assert losses[True, True] == pytest.approx(losses[False, True], rel=1e-5)
