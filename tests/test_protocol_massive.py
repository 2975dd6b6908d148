"""Integration: VANILLA, SHARED LoRA and NON-SHARED LoRA on real MASSIVE with a tiny model.

Saved adapters must load back in plain PEFT and reproduce the stored scores exactly.
"""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForTokenClassification, AutoTokenizer

from tiny_models import save_tiny_model
from xlcl.config import validate_config
from xlcl.data import load_massive
from xlcl.encode import encode
from xlcl.evaluate.scoring import score_splits
from xlcl.protocol import run

pytestmark = pytest.mark.integration
ORDER = ["en-US", "ja-JP", "ru-RU"]
LIMITS = {"max_train": 48, "max_dev": 24, "max_test": 40}


@pytest.fixture(scope="module")
def massive_model(massive_archive, tmp_path_factory):
    data = load_massive(massive_archive, ORDER)
    texts = [" ".join(u.words) for loc in ORDER for u in data.utterances(loc, "train")[:300]]
    return save_tiny_model(tmp_path_factory.mktemp("tiny-massive"), texts)


def run_method(model, archive, tmp_path, method, rank, trim_vocabulary=False, **train):
    config = validate_config(
        {
            "model": str(model),
            "trim_vocabulary": trim_vocabulary,
            "method": method,
            "rank": rank,
            "order": ORDER,
            "data": {"source": str(archive), **LIMITS},
            "train": {
                "epochs": 2,
                "patience": 2,
                "batch_size": 8,
                "learning_rate": 2e-3,
                **train,
            },
            "output_dir": str(tmp_path),
        }
    )
    return run(config)


def rescore(model_dir, adapter_dir, directory, locale):
    """F1 of the adapter loaded by plain PEFT on `locale`'s scored test split."""
    manifest = json.loads((directory / "manifest.json").read_text())
    labels = manifest["labels"]
    base = AutoModelForTokenClassification.from_pretrained(model_dir, num_labels=len(labels))
    model = PeftModel.from_pretrained(base, adapter_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    test = load_massive(manifest["config"]["data"]["source"], [locale]).utterances(locale, "test")
    split = encode(
        test[: LIMITS["max_test"]],
        tokenizer,
        {label: index for index, label in enumerate(labels)},
        max_length=128,
    )
    return score_splits(model, [split], labels, 64, tokenizer.pad_token_id, torch.device("cpu"))


def cell(directory, step, locale):
    scores = pd.read_parquet(directory / "scores.parquet")
    row = scores[(scores["step"] == step) & (scores["eval_locale"] == locale)]
    return row.iloc[0]


def test_vanilla_fills_the_matrix(massive_model, massive_archive, tmp_path):
    directory = run_method(massive_model, massive_archive, tmp_path, "vanilla", None)
    scores = pd.read_parquet(directory / "scores.parquet")
    table = scores.pivot(index="step", columns="eval_locale", values="f1")
    assert table.shape == (4, 3)
    assert not table.isna().any().any()
    assert (scores["n_sentences"] == LIMITS["max_test"]).all()
    assert (scores["n_gold"] > 0).all()


@pytest.mark.parametrize("trim_vocabulary", [False, True])
def test_shared_adapter_reloads_with_identical_predictions(
    massive_model, massive_archive, tmp_path, trim_vocabulary
):
    # A run with a trimmed vocabulary saves an adapter for the untrimmed base model.
    directory = run_method(
        massive_model, massive_archive, tmp_path, "shared-lora", 4, trim_vocabulary
    )
    for locale in ORDER:
        counts = rescore(massive_model, directory / "adapters" / "shared", directory, locale)
        stored = cell(directory, len(ORDER), locale)
        assert (counts.n_gold, counts.n_pred) == (stored["n_gold"], stored["n_pred"])
        assert counts.f1 == stored["f1"]


@pytest.mark.parametrize("together", [False, True])
def test_nonshared_adapters_reload_and_transfer_cells_are_nan(
    massive_model, massive_archive, tmp_path, together
):
    # Trained together, each adapter is saved alone, for the untrimmed base model.
    directory = run_method(
        massive_model,
        massive_archive,
        tmp_path,
        "nonshared-lora",
        4,
        trim_vocabulary=together,
        adapters_together=together,
    )
    for step, locale in enumerate(ORDER, start=1):
        counts = rescore(massive_model, directory / "adapters" / locale, directory, locale)
        stored = cell(directory, step, locale)
        assert counts.n_pred == stored["n_pred"]
        assert counts.f1 == stored["f1"]
        for other in ORDER:
            if other != locale:
                assert math.isnan(cell(directory, step, other)["f1"])
