"""A row of the score matrix in one pass (`Task.score_each`) equals each split scored alone.

In fp32 on the CPU, for slot filling and intent classification, over splits of different
sizes and locales, with batches that mix them: every field of every cell, the per-utterance
counts included, equals `Task.score` of that split alone. A whole run scored row by row in
one pass writes the score table and ``utterances.npz`` of the run scored cell by cell.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from transformers import AutoTokenizer

from massive_fixture import write_massive_dir
from xlcl.cell_counts import UTTERANCES
from xlcl.classifier import build_classifier
from xlcl.config import LoraSettings, TrainConfig, validate_config
from xlcl.data import MassiveData, load_massive
from xlcl.encode import EncodedSplit
from xlcl.evaluate.scoring import predict_words
from xlcl.methods import method
from xlcl.protocol import run
from xlcl.tasks import Task, TaskScore
from xlcl.tasks.massive_intent import MassiveIntent
from xlcl.tasks.massive_slots import MassiveSlots

CPU = torch.device("cpu")
PAD = 1  # the tiny tokenizer's <pad>
LOCALES = ["en-US", "ja-JP", "de-DE"]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> MassiveData:
    return load_massive(write_massive_dir(tmp_path_factory.mktemp("massive")), LOCALES)


def row_of(
    task: Task, data: MassiveData, tiny_model: Path, labels: list[str]
) -> list[EncodedSplit]:
    """Splits of 10, 5, 3 and 5 utterances of three locales, the last two reordered; the last
    cut to 24 subwords, so that some of its words have no subword (predicted ``O``)."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)

    def encoded(locale: str, split: str, max_length: int = 64) -> EncodedSplit:
        return task.encode(data, locale, split, None, tokenizer, labels, max_length)

    return [
        encoded("en-US", "train"),
        encoded("ja-JP", "test"),
        encoded("de-DE", "dev").subset([4, 0, 2]),
        encoded("de-DE", "test", max_length=24).subset([4, 3, 2, 1, 0]),
    ]


@pytest.fixture(scope="module")
def tagger(en_us) -> torch.nn.Module:
    """A tiny slot tagger trained until it gets some spans right and others wrong."""
    model = build_classifier(
        str(en_us.model_dir), en_us.labels, method("vanilla"), LoraSettings(), 0
    )
    en_us.train_step(model, TrainConfig(epochs=12, patience=12, batch_size=2, learning_rate=3e-3))
    return model


def same(a: TaskScore, b: TaskScore) -> bool:
    """Every field equal, NaN equal to NaN, the per-utterance counts element by element."""
    for field in dataclasses.fields(TaskScore):
        x, y = getattr(a, field.name), getattr(b, field.name)
        if field.name == "utterances":
            if (x is None) != (y is None):
                return False
            if x is not None and (x.kind != y.kind or not np.array_equal(x.counts, y.counts)):
                return False
        elif not (x == y or (isinstance(x, float) and math.isnan(x) and math.isnan(y))):
            return False
    return True


def one_by_one(task: Task, model: torch.nn.Module, splits, labels, batch_size: int):
    return [task.score(model, [split], labels, batch_size, PAD, CPU, "fp32") for split in splits]


def assert_cells_follow_their_splits(
    task: Task, model: torch.nn.Module, splits, labels, batch_size: int, alone
) -> None:
    """The check can fail: swap the two splits of 5 utterances, and each cell follows its
    split; the cells of those two differ (in counts, not in size)."""
    swapped = [splits[0], splits[3], splits[2], splits[1]]
    cells = task.score_each(model, swapped, labels, batch_size, PAD, CPU, "fp32")
    expected = [alone[0], alone[3], alone[2], alone[1]]
    assert all(same(a, b) for a, b in zip(cells, expected, strict=True))
    assert alone[1].n_sentences == alone[3].n_sentences and not same(alone[1], alone[3])
    assert not same(cells[1], alone[1])


@pytest.mark.parametrize("batch_size", [3, 64])
def test_slot_rows_in_one_pass_equal_each_split_alone(
    en_us, tagger, data: MassiveData, batch_size: int
) -> None:
    task = MassiveSlots()
    splits = row_of(task, data, en_us.model_dir, en_us.labels)
    assert any((firsts < 0).any() for firsts in splits[-1].first_token)  # words cut off
    each = task.score_each(tagger, splits, en_us.labels, batch_size, PAD, CPU, "fp32")
    alone = one_by_one(task, tagger, splits, en_us.labels, batch_size)
    assert [score.n_sentences for score in each] == [10, 5, 3, 5]
    assert all(same(a, b) for a, b in zip(each, alone, strict=True))
    # The cells are not trivial: spans predicted, some right and some wrong.
    totals = sum(score.utterances.counts.sum(axis=0) for score in each)
    assert totals[0] > 0 and totals[1] + totals[2] > 0, totals
    assert_cells_follow_their_splits(task, tagger, splits, en_us.labels, batch_size, alone)


def test_intent_rows_in_one_pass_equal_each_split_alone(
    tiny_model: Path, data: MassiveData
) -> None:
    task = MassiveIntent()
    intents = task.label_names(data)
    splits = row_of(task, data, tiny_model, intents)
    model = task.build_model(str(tiny_model), intents, method("vanilla"), LoraSettings(), 0)
    each = task.score_each(model, splits, intents, 3, PAD, CPU, "fp32")
    alone = one_by_one(task, model, splits, intents, 3)
    assert all(same(a, b) for a, b in zip(each, alone, strict=True))
    assert 0 < sum(score.n_pred for score in each) < sum(score.n_gold for score in each)
    assert_cells_follow_their_splits(task, model, splits, intents, 3, alone)


def test_predicted_words_are_the_first_subwords_argmax_of_each_utterance_alone(
    en_us, data: MassiveData
) -> None:
    """The index arithmetic of a pass against each utterance through the model by itself,
    for an untrained tagger: a different label on almost every word."""
    model = build_classifier(
        str(en_us.model_dir), en_us.labels, method("vanilla"), LoraSettings(), 0
    ).eval()
    split = row_of(MassiveSlots(), data, en_us.model_dir, en_us.labels)[-1]
    expected = []
    with torch.no_grad():
        for ids, firsts in zip(split.input_ids, split.first_token, strict=True):
            tokens = model(input_ids=torch.from_numpy(ids)[None]).logits[0].argmax(-1).numpy()
            expected.append(np.where(firsts >= 0, tokens[np.maximum(firsts, 0)], 0))
    assert len(np.unique(np.concatenate(expected))) > 3
    predicted = predict_words(model, split, 2, PAD, CPU, "fp32")
    assert [p.tolist() for p in predicted] == [e.tolist() for e in expected]


class Counted(Task):
    """A task whose cell is the number of utterances of the splits it is given."""

    name = "counted"
    metric = "utterances"

    def __init__(self) -> None:
        self.calls: list[list[int]] = []

    def score(self, model, splits, labels, batch_size, pad_id, device, precision) -> TaskScore:
        self.calls.append([len(split) for split in splits])
        return TaskScore(value=sum(len(split) for split in splits) / 100, n_sentences=0)


def test_the_default_is_one_score_per_split(en_us) -> None:
    task = Counted()
    splits = [en_us.train, en_us.dev, en_us.train.subset([0, 1])]
    each = task.score_each(torch.nn.Identity(), splits, en_us.labels, 8, PAD, CPU, "fp32")
    assert [score.value for score in each] == [0.1, 0.05, 0.02]
    assert task.calls == [[10], [5], [2]]


class ExactMatch(MassiveSlots):
    """Slot filling with a score of its own, as docs/extending.md's example has it."""

    def score(self, model, splits, labels, batch_size, pad_id, device, precision) -> TaskScore:
        spans = super().score(model, splits, labels, batch_size, pad_id, device, precision)
        return dataclasses.replace(spans, value=0.5, utterances=None)


class ExactMatchRenamed(ExactMatch):
    """A subclass of it that leaves scoring alone."""

    name = "exact-match-renamed"


def test_a_task_that_overrides_score_alone_scores_its_rows_by_it(en_us, tagger) -> None:
    splits = [en_us.train, en_us.dev]
    for task in (ExactMatch(), ExactMatchRenamed()):
        each = task.score_each(tagger, splits, en_us.labels, 8, PAD, CPU, "fp32")
        assert [score.value for score in each] == [0.5, 0.5]
        assert all(
            same(a, b)
            for a, b in zip(each, one_by_one(task, tagger, splits, en_us.labels, 8), strict=True)
        )
    assert MassiveSlots.score_each is not Task.score_each  # the built-in's own one pass


def test_a_run_scored_row_by_row_writes_the_tables_of_one_scored_cell_by_cell(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = {
        "model": str(tiny_model),
        "method": "vanilla",
        "order": LOCALES,
        "data": {"source": str(write_massive_dir(tmp_path / "massive"))},
        "train": {"epochs": 2, "patience": 2, "batch_size": 2, "learning_rate": 1e-3},
        "evaluate": {"batch_size": 4},  # batches that mix locales
    }
    one_pass = run(validate_config({**raw, "output_dir": str(tmp_path / "one-pass")}))
    monkeypatch.setattr(MassiveSlots, "score_each", Task.score_each)
    per_cell = run(validate_config({**raw, "output_dir": str(tmp_path / "per-cell")}))
    assert one_pass.name == per_cell.name  # the same run id
    pd.testing.assert_frame_equal(
        pd.read_parquet(one_pass / "scores.parquet"),
        pd.read_parquet(per_cell / "scores.parquet"),
        check_exact=True,
    )
    assert (one_pass / UTTERANCES).read_bytes() == (per_cell / UTTERANCES).read_bytes()
