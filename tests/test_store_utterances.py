"""``utterances.npz``: each test utterance's counts beside the score table, adding up to it,
seqeval's on a trained model's predictions, and the same bytes after a resume."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from seqeval.metrics import f1_score
from seqeval.metrics.sequence_labeling import get_entities

import xlcl.protocol
from massive_fixture import write_massive_dir
from xlcl.cell_counts import (
    UTTERANCES,
    CellCounts,
    CountsFileError,
    UtteranceCounts,
    read_cell_counts,
    write_cell_counts,
)
from xlcl.classifier import build_classifier
from xlcl.config import LoraSettings, TrainConfig, validate_config
from xlcl.evaluate.scoring import predict_words
from xlcl.methods import method
from xlcl.metrics.intervals import disagreement
from xlcl.store import RunStore, ScoreCell, cpu_model
from xlcl.tasks import TaskScore
from xlcl.tasks.massive_slots import MassiveSlots

ORDER = ["en-US", "ja-JP", "de-DE"]


@pytest.fixture(scope="module")
def massive_dir(tmp_path_factory):
    return write_massive_dir(tmp_path_factory.mktemp("massive"))


def config(model: Path, data: Path, output: Path, **extra):
    return validate_config(
        {
            "model": str(model),
            "method": "vanilla",
            "order": ORDER,
            "data": {"source": str(data)},
            "train": {"epochs": 2, "patience": 2, "batch_size": 2, "learning_rate": 1e-3},
            "output_dir": str(output),
            **extra,
        }
    )


def test_a_run_keeps_each_utterance_s_counts_and_a_resumed_one_the_same_bytes(
    tiny_model, massive_dir, tmp_path, monkeypatch
):
    reference = xlcl.protocol.run(config(tiny_model, massive_dir, tmp_path / "ref"))
    table = pd.read_parquet(reference / "scores.parquet")
    counts = read_cell_counts(reference / UTTERANCES)
    assert counts.kind == "spans" and list(counts.locales) == ORDER
    assert disagreement(counts, table) == ""  # Σtp+Σfn = n_gold, Σtp+Σfp = n_pred, the F1
    for found in counts.locales.values():  # every step scored every locale's 5 utterances
        assert found.steps.tolist() == [0, 1, 2, 3] and found.counts.shape == (5, 4, 3)
    # Stopped after step 1's checkpoint, once step 2's scores are written too: the resumed
    # run drops step 2's counts, scores it again and writes the very same file.
    stopped = config(tiny_model, massive_dir, tmp_path / "stopped")
    original = xlcl.protocol.save_checkpoint
    written = {}

    def stop_after_step_2(run_dir, step, *args, **kwargs):  # type: ignore[no-untyped-def]
        if step == 2:
            written["steps"] = read_cell_counts(run_dir / UTTERANCES).locales["en-US"].steps
            raise KeyboardInterrupt
        return original(run_dir, step, *args, **kwargs)

    monkeypatch.setattr(xlcl.protocol, "save_checkpoint", stop_after_step_2)
    with pytest.raises(KeyboardInterrupt):
        xlcl.protocol.run(stopped)
    monkeypatch.setattr(xlcl.protocol, "save_checkpoint", original)
    assert written["steps"].tolist() == [0, 1, 2]
    resumed = xlcl.protocol.run(stopped)
    manifest = json.loads((resumed / "manifest.json").read_text())
    assert manifest["resumed"][0]["after_step"] == 1
    # the digits depend on the CPU and the threads: both recorded, at the start and each resume
    here = {"cpu": cpu_model(), "threads": torch.get_num_threads()}
    assert manifest["machine"] == manifest["resumed"][0]["machine"] == here
    assert (resumed / UTTERANCES).read_bytes() == (reference / UTTERANCES).read_bytes()


def test_counts_of_a_trained_model_are_seqeval_s(en_us) -> None:
    """Per-utterance counts of a tagger that gets some spans right and others wrong."""
    model = build_classifier(
        str(en_us.model_dir), en_us.labels, method("vanilla"), LoraSettings(), 0
    )
    en_us.train_step(model, TrainConfig(epochs=12, patience=12, batch_size=2, learning_rate=3e-3))
    splits = [en_us.train, en_us.dev]
    cpu = torch.device("cpu")
    score = MassiveSlots().score(model, splits, en_us.labels, 8, 1, cpu, "auto")
    assert score.utterances is not None and score.utterances.n_utterances == 15
    gold = [[en_us.labels[t] for t in g] for split in splits for g in split.gold]
    pred = [
        [en_us.labels[t] for t in p]
        for split in splits
        for p in predict_words(model, split, 8, 1, cpu, "auto")
    ]
    for (tp, fp, fn), g, p in zip(score.utterances.counts, gold, pred, strict=True):
        gold_spans, pred_spans = set(get_entities(g)), set(get_entities(p))
        assert (tp, tp + fp, tp + fn) == (
            len(gold_spans & pred_spans),
            len(pred_spans),
            len(gold_spans),
        )
    totals = score.utterances.totals()
    assert totals["tp"] > 0 and totals["fp"] + totals["fn"] > 0, totals  # right and wrong
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert score.value == pytest.approx(f1_score(gold, pred), abs=1e-12)
    assert (totals["tp"] + totals["fn"], totals["tp"] + totals["fp"]) == (
        score.n_gold,
        score.n_pred,
    )


def test_a_score_its_counts_do_not_give_is_refused() -> None:
    counts = UtteranceCounts.correct([1, 0, 1, 1])
    assert TaskScore(value=0.75, n_sentences=4, utterances=counts).utterances is counts
    with pytest.raises(ValueError, match=r"give 0\.75, not the score 0\.5"):
        TaskScore(value=0.5, n_sentences=4, utterances=counts)
    with pytest.raises(ValueError, match="4 utterances for a cell of 5 sentences"):
        TaskScore(value=0.75, n_sentences=5, utterances=counts)


def cell(step: int, locale: str, rng: np.random.Generator, gold: np.ndarray) -> ScoreCell:
    fn = rng.binomial(gold, 0.3)
    counts = UtteranceCounts.spans(gold - fn, rng.poisson(0.3, gold.size), fn)
    tp, fp, fn_total = counts.totals().values()
    return ScoreCell(
        step, None, locale, counts.score(), counts.score(), 0.0, 0.0,
        tp + fn_total, tp + fp, gold.size, utterances=counts,
    )  # fmt: skip


def store_rows(directory: Path, steps: range, resume_after: int | None = None) -> Path:
    """A store fed rows `steps` of synthetic cells (unscored cells without counts)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "manifest.json").write_text(json.dumps({"run_id": "synthetic"}))
    store = (
        RunStore(directory, {"run_id": "synthetic"})
        if resume_after is None
        else RunStore.resume(directory, resume_after)
    )
    for step in steps:
        rng = np.random.default_rng(step)
        gold = np.random.default_rng(0).integers(0, 4, 7)
        row = [cell(step, locale, rng, gold) for locale in ("en-US", "de-DE")]
        unscored = ScoreCell(step, None, "ja-JP", np.nan, np.nan, np.nan, np.nan, 3, 0, 7)
        store.add_cells([*row, unscored])
    return directory


def test_a_resumed_store_keeps_the_counts_up_to_its_step_and_writes_the_same_bytes(tmp_path):
    whole = store_rows(tmp_path / "whole", range(5))
    store_rows(tmp_path / "cut", range(4))
    cut = store_rows(tmp_path / "cut", range(2, 5), resume_after=1)
    assert (cut / UTTERANCES).read_bytes() == (whole / UTTERANCES).read_bytes()
    counts = read_cell_counts(whole / UTTERANCES)
    assert list(counts.locales) == ["en-US", "de-DE"]  # ja-JP: never scored, no counts
    assert disagreement(counts, pd.read_parquet(whole / "scores.parquet")) == ""


def test_a_truncated_file_is_named(tmp_path):
    path = store_rows(tmp_path / "run", range(2)) / UTTERANCES
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(CountsFileError, match=f"{path}: unreadable per-utterance counts"):
        read_cell_counts(path)


def test_a_52_locale_run_of_300_utterances_stays_well_under_a_megabyte(tmp_path):
    """53 × 52 cells of 300 utterances, errors that persist over steps as a tagger's do."""
    rng = np.random.default_rng(0)
    cells = []
    for locale in range(52):
        gold = rng.choice([0, 1, 1, 1, 2, 2, 3, 4], 300)
        hard = rng.random(300)  # how hard each utterance is, the same at every step
        for step in range(53):
            quality = 0.05 if step == 0 else 0.75 if step > locale else 0.45
            p = np.clip(quality + 0.3 * (0.5 - hard) + 0.1 * rng.normal(size=300), 0, 1)
            fn = rng.binomial(gold, 1 - p)
            fp = rng.binomial(fn, 0.7) + rng.poisson(2.5 if step == 0 else 0.1, 300)
            cells.append((step, f"l{locale}", UtteranceCounts.spans(gold - fn, fp, fn)))
    write_cell_counts(tmp_path / UTTERANCES, CellCounts.from_cells(cells))
    size = (tmp_path / UTTERANCES).stat().st_size
    assert size < 500_000, size
    again = read_cell_counts(tmp_path / UTTERANCES)
    assert [(s, loc) for s, loc, _ in again.cells()] == sorted(
        [(s, loc) for s, loc, _ in cells], key=lambda c: (int(c[1][1:]), c[0])
    )
