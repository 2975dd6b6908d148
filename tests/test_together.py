"""NON-SHARED LoRA adapters trained together equal the adapters trained one by one."""

import zlib
from dataclasses import replace

import numpy as np
import pytest
import torch
from peft import PeftModel
from peft.tuners.lora import Linear as LoraLinear
from transformers import AutoModelForTokenClassification, AutoTokenizer

from massive_fixture import write_massive_dir
from tiny_models import without_dropout
from xlcl.classifier import build_classifier, trainable_parameters
from xlcl.config import LoraSettings, TrainConfig
from xlcl.data import load_massive, slot_label_names
from xlcl.encode import collate_batch, encode
from xlcl.evaluate.scoring import score_splits
from xlcl.evaluate.spans import SpanCounts
from xlcl.methods import method
from xlcl.tasks.massive_slots import MassiveSlots
from xlcl.together import (
    AdapterRouter,
    GroupGraphs,
    _batchable_runs,
    adapter_parameters,
    add_adapters,
    length_groups,
    train_adapters_together,
)
from xlcl.train import Objective, train_step

LOCALES = ("en-US", "de-DE", "ja-JP")
TRAIN_SIZES = {"en-US": 10, "de-DE": 6, "ja-JP": 9}  # 3, 2 and 3 batches of 4
SEEDS = (11, 12, 13)
NO_DROPOUT = LoraSettings(dropout=0.0)
OBJECTIVE = Objective(MassiveSlots())
# Scripted dev F1 per epoch: with patience 2, en-US stops after epoch 4 (best 2),
# de-DE runs all 5 epochs, ja-JP stops after epoch 3 (best 1).
DEV_F1 = {
    "en-US": [0.2, 0.5, 0.3, 0.4],
    "de-DE": [0.1, 0.2, 0.3, 0.4, 0.5],
    "ja-JP": [0.5, 0.1, 0.1],
}
CONFIG = TrainConfig(
    epochs=5,
    patience=2,
    learning_rate=5e-3,
    head_learning_rate=2e-2,
    batch_size=4,
    gradient_accumulation=2,
    warmup_ratio=0.2,
    max_grad_norm=0.5,
)


@pytest.fixture(scope="module")
def setup(tiny_model, tmp_path_factory):
    data = load_massive(write_massive_dir(tmp_path_factory.mktemp("m")), list(LOCALES))
    labels = slot_label_names(data)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    ids = {label: index for index, label in enumerate(labels)}

    def split(locale, name):
        return encode(data.utterances(locale, name), tokenizer, ids, 32)

    train = [
        replace(
            split(locale, "train"),
            input_ids=split(locale, "train").input_ids[: TRAIN_SIZES[locale]],
            labels=split(locale, "train").labels[: TRAIN_SIZES[locale]],
        )
        for locale in LOCALES
    ]
    dev = [split(locale, "dev") for locale in LOCALES]
    test = [split(locale, "test") for locale in LOCALES]
    return str(tiny_model), labels, train, dev, test


def fresh_model(model_dir, labels):
    model = build_classifier(model_dir, labels, method("nonshared-lora", 4), NO_DROPOUT, seed=0)
    return without_dropout(model)


def scripted(monkeypatch):
    """Dev F1 from DEV_F1, per locale, whichever way the adapters are trained."""
    scores = {locale: iter(values) for locale, values in DEV_F1.items()}

    def dev_score(model, splits, *args):
        return SpanCounts(10, 10, round(next(scores[splits[0].locale]) * 10))

    monkeypatch.setattr("xlcl.tasks.massive_slots.score_splits", dev_score)


def train_one_by_one(setup, monkeypatch, config=CONFIG):
    model_dir, labels, train, dev, _ = setup
    scripted(monkeypatch)
    models, results = {}, {}
    for locale, train_split, dev_split, seed in zip(LOCALES, train, dev, SEEDS, strict=True):
        model = fresh_model(model_dir, labels)
        results[locale] = train_step(
            model, [train_split], [dev_split], labels, config,
            objective=OBJECTIVE, pad_id=1, device=torch.device("cpu"), eval_batch_size=8,
            seed=seed,
        )  # fmt: skip
        models[locale] = model
    return models, results


def train_together(setup, monkeypatch, on_finished=None, config=CONFIG):
    """`on_finished(model, name)` is called as each adapter stops."""
    model_dir, labels, train, dev, _ = setup
    scripted(monkeypatch)
    model = fresh_model(model_dir, labels)
    add_adapters(model, LOCALES, 4, NO_DROPOUT)
    results = train_adapters_together(
        model, LOCALES, [[split] for split in train], dev, labels, config,
        objective=OBJECTIVE, pad_id=1, device=torch.device("cpu"), eval_batch_size=8, seeds=SEEDS,
        on_finished=None if on_finished is None else lambda name, _: on_finished(model, name),
    )  # fmt: skip
    return model, results


@pytest.mark.parametrize("way", ["per-segment", "batched", "graphed"])
def test_together_equals_one_by_one_epochs_early_stopping_and_weights(setup, monkeypatch, way):
    # batched: the adapters' matmuls as on a GPU (one bmm over same-size, same-rank
    # segments); graphed: train.cuda_graphs both ways (one update per pass of every full
    # batch, GroupGraphs; one micro-batch an update), run eagerly with the graphs' padding.
    config = CONFIG
    if way != "per-segment":
        monkeypatch.setattr(AdapterRouter, "batched_devices", frozenset({"cpu", "cuda"}))
    if way == "graphed":
        config = CONFIG.model_copy(update={"cuda_graphs": True, "gradient_accumulation": 1})
        passes = []
        update = GroupGraphs.update
        monkeypatch.setattr(
            GroupGraphs, "update", lambda self, *a: passes.append(a[0]) or update(self, *a)
        )
    models, alone = train_one_by_one(setup, monkeypatch, config)
    finished = []
    model, together = train_together(
        setup, monkeypatch, lambda _, name: finished.append(name), config
    )
    if way == "graphed":
        assert max(len(learners) for learners in passes) == len(LOCALES)
    # Each adapter stops at its own epoch, and is reported when it stops: ja-JP after
    # 3 x 3 batches, de-DE after 5 x 2, en-US after 4 x 3.
    assert [len(together[locale].epochs) for locale in LOCALES] == [4, 5, 3]
    assert finished == ["ja-JP", "de-DE", "en-US"]
    for locale in LOCALES:
        one, both = alone[locale], together[locale]
        assert both.best_epoch == one.best_epoch
        assert [r.dev_score for r in both.epochs] == [r.dev_score for r in one.epochs]
        assert [r.train_loss for r in both.epochs] == pytest.approx(
            [r.train_loss for r in one.epochs], rel=1e-5
        )
        assert [r.learning_rate for r in both.epochs] == pytest.approx(
            [r.learning_rate for r in one.epochs]
        )
        expected = dict(trainable_parameters(models[locale]))
        got = dict(adapter_parameters(model, locale))
        assert got.keys() == expected.keys()
        initial = fresh_model(setup[0], setup[1])
        moved = 0
        for name, parameter in got.items():
            torch.testing.assert_close(parameter, expected[name], rtol=1e-4, atol=1e-6)
            moved += not torch.equal(parameter, dict(initial.named_parameters())[name])
        assert moved > len(got) // 2  # the adapters really trained


def test_a_routed_adapter_scores_and_saves_like_its_one_by_one_twin(setup, monkeypatch, tmp_path):
    model_dir, labels, _, _, test = setup
    models, _ = train_one_by_one(setup, monkeypatch)
    batches = {
        split.locale: collate_batch([split], np.arange(len(split)), pad_id=1) for split in test
    }

    @torch.no_grad()
    def logits(model, locale):
        model.eval()
        batch = batches[locale]
        return model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits

    saved = {}

    def score_and_save(model, name):
        # While on_finished runs, the model routes every batch through adapter `name`.
        saved[name] = logits(model, name)
        model.save_pretrained(str(tmp_path), selected_adapters=[name])

    train_together(setup, monkeypatch, score_and_save)
    for locale in LOCALES:
        alone = logits(models[locale], locale)
        torch.testing.assert_close(saved[locale], alone, rtol=1e-4, atol=1e-5)
        base = AutoModelForTokenClassification.from_pretrained(model_dir, num_labels=len(labels))
        reloaded = PeftModel.from_pretrained(base, str(tmp_path / locale))
        torch.testing.assert_close(logits(reloaded, locale), saved[locale], rtol=1e-5, atol=1e-6)
        # and the span F1 that the run records for it
        split = [split for split in test if split.locale == locale]
        counts = score_splits(reloaded, split, labels, 8, 1, torch.device("cpu"))
        assert counts == score_splits(models[locale], split, labels, 8, 1, torch.device("cpu"))


def test_add_adapters_copies_the_fresh_adapter_and_trains_only_the_copies(setup):
    model_dir, labels, *_ = setup
    model = fresh_model(model_dir, labels)
    template = dict(trainable_parameters(model))
    add_adapters(model, LOCALES, 4, NO_DROPOUT)
    trainable = {name for name, _ in trainable_parameters(model)}
    for locale in LOCALES:
        copy = dict(adapter_parameters(model, locale))
        assert copy.keys() == template.keys()
        for name, parameter in copy.items():
            assert torch.equal(parameter, template[name])
            assert parameter.requires_grad
        assert len([n for n in trainable if f".{locale}." in n]) == len(template)
    assert len(trainable) == len(LOCALES) * len(template)
    assert not any(".default." in name for name, _ in model.named_parameters())


def test_the_router_splits_batches_into_segments_and_unhooks_on_exit(setup):
    model = fresh_model(*setup[:2])
    add_adapters(model, LOCALES, 4, NO_DROPOUT)
    router = AdapterRouter()
    router.set_segments([("en-US", 2), ("de-DE", 3)])
    assert router.segments_for(5) == [("en-US", 0, 2), ("de-DE", 2, 5)]
    with pytest.raises(RuntimeError, match="no adapter for each sample"):
        router.segments_for(4)
    router.set_single("ja-JP")
    assert router.segments_for(7) == [("ja-JP", 0, 7)]
    with router.route(model):
        assert sum("forward" in module.__dict__ for module in model.modules()) > 0
    assert not any("forward" in module.__dict__ for module in model.modules())


def test_length_groups_keep_similar_lengths_together():
    lengths = [10, 30, 12, 26, 11, 13, 40]
    groups = length_groups(lengths, length=lambda n: n)
    assert groups == [[10, 11, 12], [13], [26, 30], [40]]
    assert length_groups(lengths, length=lambda n: n, slack=10.0) == [sorted(lengths)]


def test_batched_lora_matmuls_equal_the_per_segment_ones_with_their_gradients(setup, monkeypatch):
    model = fresh_model(*setup[:2])
    add_adapters(model, LOCALES, 4, NO_DROPOUT)
    with torch.no_grad():  # B is 0 when fresh: give every adapter its own non-zero B
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                seed = zlib.crc32(name.encode())
                parameter.normal_(generator=torch.Generator().manual_seed(seed))
    layer = next(m for m in model.modules() if isinstance(m, LoraLinear))
    segments = [("en-US", 0, 2), ("de-DE", 2, 4), ("ja-JP", 4, 7)]
    assert _batchable_runs(layer, segments) == [segments[:2], segments[2:]]
    inputs = torch.randint(5, 60, (7, 6), generator=torch.Generator().manual_seed(0))

    def pass_(devices: frozenset[str]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        monkeypatch.setattr(AdapterRouter, "batched_devices", devices)
        model.zero_grad()
        router = AdapterRouter()
        router.set_segments([(name, end - start) for name, start, end in segments])
        with router.route(model):
            logits = model(input_ids=inputs).logits
        logits.pow(2).sum().backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        return logits.detach(), grads

    calls = []
    bmm = torch.bmm
    monkeypatch.setattr(torch, "bmm", lambda *a: calls.append(1) or bmm(*a))
    plain_logits, plain_grads = pass_(frozenset({"cuda"}))
    assert not calls
    logits, grads = pass_(frozenset({"cpu", "cuda"}))
    assert calls  # the batched path ran
    torch.testing.assert_close(logits, plain_logits, rtol=1e-5, atol=1e-6)
    assert grads.keys() == plain_grads.keys() and len(grads) > 0
    for name, grad in grads.items():
        torch.testing.assert_close(grad, plain_grads[name], rtol=1e-5, atol=1e-6)
