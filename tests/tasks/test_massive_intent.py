"""The ``massive-intent`` task: position-0 labels, loss, accuracy, and whole runs."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from peft import PeftModel
from peft.tuners.lora import LoraLayer
from peft.utils.other import ModulesToSaveWrapper
from safetensors.torch import load_file
from transformers import AutoTokenizer
from typer.testing import CliRunner

from massive_fixture import write_massive_dir
from tiny_models import save_tiny_model
from xlcl.cli import app
from xlcl.config import LoraSettings, validate_config
from xlcl.data import MassiveData, load_massive
from xlcl.encode import IGNORE, collate
from xlcl.methods import method
from xlcl.protocol import run
from xlcl.tasks import get_task
from xlcl.tasks.massive_intent import MassiveIntent
from xlcl.together import AdapterRouter, add_adapters

ORDER = ["en-US", "ja-JP", "de-DE"]
INTENTS = ["alarm_set", "calendar_set", "iot_hue_lightoff", "play_music", "weather_query"]
# The fixture's test splits cycle its 5 templates: these intents, as ids into INTENTS.
TEST_INTENTS = [0, 3, 4, 1, 2]
TRAIN = {"epochs": 2, "patience": 1, "batch_size": 4, "learning_rate": 1e-3}
CPU = torch.device("cpu")
TASK = MassiveIntent()


@pytest.fixture(scope="module")
def massive_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_massive_dir(tmp_path_factory.mktemp("massive"))


@pytest.fixture(scope="module")
def data(massive_dir: Path) -> MassiveData:
    return load_massive(massive_dir, ORDER)


@pytest.fixture(scope="module")
def tokenizer(tiny_model: Path):
    return AutoTokenizer.from_pretrained(tiny_model)


def encoded(data: MassiveData, tokenizer, locale: str = "en-US", max_length: int = 64):
    return TASK.encode(data, locale, "test", None, tokenizer, INTENTS, max_length)


def test_the_builtin_name_resolves_to_the_task() -> None:
    task = get_task("massive-intent")
    assert isinstance(task, MassiveIntent)
    assert (task.name, task.metric) == ("massive-intent", "intent accuracy")


def test_labels_are_the_sorted_intents(data: MassiveData) -> None:
    assert TASK.label_names(data) == INTENTS


def test_the_intent_sits_at_position_0_and_every_other_position_is_ignored(
    data: MassiveData, tokenizer
) -> None:
    split = encoded(data, tokenizer)
    utterances = data.utterances("en-US", "test")
    assert len(split) == 5
    for index, utterance in enumerate(utterances):
        expected = tokenizer(list(utterance.words), is_split_into_words=True)["input_ids"]
        assert split.input_ids[index].tolist() == expected
        assert split.input_ids[index][0] == tokenizer.cls_token_id  # <s>, which the head pools
        assert split.labels[index][0] == TEST_INTENTS[index]
        assert (split.labels[index][1:] == IGNORE).all()
        assert len(split.labels[index]) == len(expected)
    assert [gold.tolist() for gold in split.gold] == [[i] for i in TEST_INTENTS]
    assert [first.tolist() for first in split.first_token] == [[0]] * 5
    # The batch keeps the convention: column 0 holds the intents, padding is ignored.
    batch = collate(split.input_ids, split.labels, pad_id=tokenizer.pad_token_id)
    assert batch.labels[:, 0].tolist() == TEST_INTENTS
    assert (batch.labels[:, 1:] == IGNORE).all()


def test_truncation_and_limit_keep_the_intent(data: MassiveData, tokenizer) -> None:
    split = TASK.encode(data, "en-US", "test", 2, tokenizer, INTENTS, max_length=3)
    assert len(split) == 2
    assert [len(ids) for ids in split.input_ids] == [3, 3]
    assert [labels.tolist() for labels in split.labels] == [
        [0, IGNORE, IGNORE],
        [3, IGNORE, IGNORE],
    ]


def test_loss_is_the_cross_entropy_of_the_logits_against_the_intents() -> None:
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 1.5, 0.0]])
    labels = torch.tensor([[0, IGNORE, IGNORE, IGNORE], [2, IGNORE, IGNORE, IGNORE]])
    first = math.log(math.exp(2.0) + math.exp(0.0) + math.exp(-1.0)) - 2.0
    second = math.log(math.exp(0.5) + math.exp(1.5) + math.exp(0.0)) - 0.0
    assert TASK.loss(logits, labels).item() == pytest.approx((first + second) / 2, rel=1e-6)


class LookupModel(torch.nn.Module):
    """Logits that put all mass on a chosen intent per utterance (keyed by its token ids)."""

    def __init__(self, answers: dict[tuple[int, ...], int], classes: int, pad_id: int) -> None:
        super().__init__()
        self.answers, self.classes, self.pad_id = answers, classes, pad_id
        self.modes: list[bool] = []

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> SimpleNamespace:
        self.modes.append(self.training)
        logits = torch.zeros(len(input_ids), self.classes)
        for row, (ids, mask) in enumerate(zip(input_ids, attention_mask, strict=True)):
            logits[row, self.answers[tuple(ids[mask.bool()].tolist())]] = 1.0
        return SimpleNamespace(logits=logits)


def test_score_is_micro_accuracy_over_the_splits(data: MassiveData, tokenizer) -> None:
    splits = [encoded(data, tokenizer, "en-US"), encoded(data, tokenizer, "de-DE")]
    answers = {}
    for split in splits:
        for ids, gold in zip(split.input_ids, split.gold, strict=True):
            answers[tuple(ids.tolist())] = int(gold[0])
    # Wrong on en-US's 2nd and 4th and de-DE's 1st utterance: 7 of 10 right.
    for split, index in [(splits[0], 1), (splits[0], 3), (splits[1], 0)]:
        key = tuple(split.input_ids[index].tolist())
        answers[key] = (answers[key] + 1) % len(INTENTS)
    model = LookupModel(answers, len(INTENTS), tokenizer.pad_token_id)
    model.train()
    score = TASK.score(model, splits, INTENTS, 3, tokenizer.pad_token_id, CPU, "auto")
    assert score.value == pytest.approx(0.7)
    assert score.intent_accuracy == score.value
    assert (score.n_sentences, score.n_gold, score.n_pred) == (10, 10, 7)
    assert score.utterances is not None  # whether each utterance is right, in split order
    assert score.utterances.counts[:, 0].tolist() == [1, 0, 1, 0, 1, 0, 1, 1, 1, 1]
    assert math.isnan(score.f1) and math.isnan(score.precision) and math.isnan(score.recall)
    assert model.modes and not any(model.modes)  # scored in eval mode
    assert model.training  # and given back in training mode


def test_score_of_a_real_classifier_with_a_hand_set_head(
    tiny_model: Path, data: MassiveData, tokenizer
) -> None:
    model = TASK.build_model(str(tiny_model), INTENTS, method("vanilla"), LoraSettings(), 0)
    with torch.no_grad():
        out = model.classifier.out_proj
        out.weight.zero_()
        out.bias.copy_(torch.tensor([0.0, 0.0, 1.0, 0.0, 0.0]))  # always iot_hue_lightoff
    score = TASK.score(model, [encoded(data, tokenizer)], INTENTS, 2, 1, CPU, "auto")
    assert (score.value, score.n_pred, score.n_gold) == (pytest.approx(0.2), 1, 5)


def test_an_unscored_cell_is_nan_with_the_split_counts(data: MassiveData, tokenizer) -> None:
    score = TASK.unscored(encoded(data, tokenizer), INTENTS)
    assert math.isnan(score.value) and math.isnan(score.intent_accuracy)
    assert (score.n_sentences, score.n_gold, score.n_pred) == (5, 5, 0)


def head_parameters(model: torch.nn.Module) -> list[str]:
    """Trainable parameters besides LoRA's, without PEFT's prefix."""
    return [
        name.removeprefix("base_model.model.")
        for name, p in model.named_parameters()
        if p.requires_grad and "lora_" not in name
    ]


def test_lora_trains_the_whole_head_of_xlmr_and_bert(tiny_model: Path, tmp_path: Path) -> None:
    lora = method("shared-lora", 4)
    xlmr = TASK.build_model(str(tiny_model), INTENTS, lora, LoraSettings(), 0)
    assert head_parameters(xlmr) == [
        f"classifier.modules_to_save.default.{name}"
        for name in ("dense.weight", "dense.bias", "out_proj.weight", "out_proj.bias")
    ]
    bert_dir = save_tiny_model(tmp_path / "bert", architecture="bert")
    bert = TASK.build_model(str(bert_dir), INTENTS, lora, LoraSettings(), 0)
    # BERT pools through `bert.pooler` (dense + tanh): it trains with the head.
    assert head_parameters(bert) == [
        "bert.pooler.modules_to_save.default.dense.weight",
        "bert.pooler.modules_to_save.default.dense.bias",
        "classifier.modules_to_save.default.weight",
        "classifier.modules_to_save.default.bias",
    ]
    for model in (xlmr, bert):
        wrappers = [n for n, m in model.named_modules() if isinstance(m, ModulesToSaveWrapper)]
        assert not any(
            isinstance(m, LoraLayer) and any(n.startswith(w) for w in wrappers)
            for n, m in model.named_modules()
        )  # no LoRA inside the head


def test_routed_bert_adapters_each_run_their_own_pooler_and_head(tmp_path: Path) -> None:
    bert_dir = save_tiny_model(tmp_path / "bert", architecture="bert")
    model = TASK.build_model(
        str(bert_dir), INTENTS, method("nonshared-lora", 4), LoraSettings(dropout=0.0), 0
    )
    assert isinstance(model, PeftModel)
    add_adapters(model, ["en-US", "de-DE"], 4, LoraSettings(dropout=0.0))
    de_pooler = model.base_model.model.bert.pooler.modules_to_save["de-DE"]
    de_head = model.base_model.model.classifier.modules_to_save["de-DE"]
    with torch.no_grad():
        de_pooler.dense.weight.zero_()
        de_pooler.dense.bias.zero_()
        de_head.bias.copy_(torch.arange(1.0, 6.0))
    model.eval()
    input_ids = torch.tensor([[0, 5, 6, 2], [0, 7, 8, 2]])
    mask = torch.ones_like(input_ids)
    router = AdapterRouter()
    with router.route(model):
        router.set_segments([("en-US", 1), ("de-DE", 1)])
        both = model(input_ids=input_ids, attention_mask=mask).logits
        router.set_single("en-US")
        alone = model(input_ids=input_ids[:1], attention_mask=mask[:1]).logits
    assert both.shape == (2, len(INTENTS))
    torch.testing.assert_close(both[0], alone[0])
    # de-DE's pooler gives tanh(0) = 0, so its head gives its bias.
    torch.testing.assert_close(both[1], torch.arange(1.0, 6.0))


def make_config(tiny_model: Path, massive_dir: Path, output: Path, name: str, rank, together):
    return validate_config(
        {
            "model": str(tiny_model),
            "task": "massive-intent",
            "method": name,
            "rank": rank,
            "order": ORDER,
            "data": {"source": str(massive_dir)},
            "train": {**TRAIN, "adapters_together": together},
            "output_dir": str(output),
        }
    )


RUNS = {
    "vanilla": ("vanilla", None, False),
    "shared-lora": ("shared-lora", 4, False),
    "nonshared-lora": ("nonshared-lora", 4, True),
}


@pytest.fixture(scope="module")
def runs(tiny_model: Path, massive_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    output = tmp_path_factory.mktemp("runs")
    return {
        key: run(make_config(tiny_model, massive_dir, output, *spec)) for key, spec in RUNS.items()
    }


@pytest.mark.parametrize("key", list(RUNS))
def test_a_run_scores_intent_accuracy(runs: dict[str, Path], key: str) -> None:
    directory = runs[key]
    assert (directory / "DONE").is_file()
    manifest = json.loads((directory / "manifest.json").read_text())
    assert (manifest["task"], manifest["metric"]) == ("massive-intent", "intent accuracy")
    assert manifest["labels"] == INTENTS
    scores = pd.read_parquet(directory / "scores.parquet")
    assert len(scores) == 4 * len(ORDER)
    pd.testing.assert_series_equal(
        scores["score"], scores["intent_accuracy"], check_names=False, check_exact=True
    )
    assert scores["f1"].isna().all() and scores["precision"].isna().all()
    assert (scores["n_sentences"] == 5).all() and (scores["n_gold"] == 5).all()
    scored = scores.dropna(subset=["score"])
    np.testing.assert_array_equal(scored["score"], scored["n_pred"] / scored["n_gold"])
    expected_scored = 12 if key != "nonshared-lora" else 3 + 3  # row 0, then own locale
    assert len(scored) == expected_scored


def test_adapters_trained_together_each_save_a_sequence_classification_head(
    runs: dict[str, Path],
) -> None:
    heads = {}
    for locale in ORDER:
        adapter = runs["nonshared-lora"] / "adapters" / locale
        config = json.loads((adapter / "adapter_config.json").read_text())
        assert config["task_type"] == "SEQ_CLS"
        weights = load_file(adapter / "adapter_model.safetensors")
        head = {
            k.removeprefix("base_model.model."): v for k, v in weights.items() if "lora" not in k
        }
        assert {k: tuple(v.shape) for k, v in head.items()} == {
            "classifier.dense.weight": (32, 32),
            "classifier.dense.bias": (32,),
            "classifier.out_proj.weight": (len(INTENTS), 32),
            "classifier.out_proj.bias": (len(INTENTS),),
        }
        heads[locale] = head["classifier.out_proj.weight"]
    # Each adapter trained its own head from the same fresh one.
    assert not torch.equal(heads["en-US"], heads["ja-JP"])
    assert not torch.equal(heads["en-US"], heads["de-DE"])


def test_metrics_and_report_name_intent_accuracy(runs: dict[str, Path], tmp_path: Path) -> None:
    cli = CliRunner()
    shown = cli.invoke(app, ["metrics", str(runs["vanilla"])], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    assert "final intent accuracy" in shown.stdout
    assert "F1" not in shown.stdout
    as_json = cli.invoke(app, ["metrics", str(runs["vanilla"]), "--json"])
    assert as_json.exit_code == 0, as_json.output
    assert {r["metric"] for r in json.loads(as_json.stdout)["runs"].values()} == {"intent accuracy"}
    out = tmp_path / "report"
    report = cli.invoke(app, ["report", *map(str, runs.values()), "--out", str(out)])
    assert report.exit_code == 0, report.output
    assert f"wrote {out / 'report.html'} (3 run(s)" in report.stdout
    assert "Intent accuracy (%)" in (out / "tables" / "table1.md").read_text()
    assert "Intent accuracy" in (out / "report.html").read_text()
    assert "F1" not in (out / "tables" / "table1.md").read_text()


def test_a_locale_the_task_does_not_know_is_one_line_before_any_run_directory(
    tiny_model: Path, massive_dir: Path, tmp_path: Path
) -> None:
    config = tmp_path / "run.yaml"
    output = tmp_path / "runs"
    config.write_text(
        yaml.safe_dump(
            {
                "model": str(tiny_model),
                "task": "massive-intent",
                "method": "vanilla",
                "order": ["en-US", "xx-XX"],
                "data": {"source": str(massive_dir)},
                "output_dir": str(output),
            }
        )
    )
    result = CliRunner().invoke(app, ["run", str(config)])
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: order: ") and "'xx-XX'" in lines[0]
    assert not output.exists() or not any(output.iterdir())
