"""intfloat/multilingual-e5-large-instruct's architecture: XLM-R large, on a tiny random copy.

The real model is an `XLMRobertaModel` of 24 layers, hidden 1024, 16 heads, intermediate
4096, LayerNorm eps 1e-5, one token type and absolute positions (`xlcl.params.XLMR_LARGE`).
The hub is out of reach here, so the tests build a random model of the same architecture
and shape ratios (16 heads, intermediate 4 x hidden, the same eps), scaled down to 4 layers
of width 64 (heads of 4 dimensions), and check on it what a run relies on: graphed
training equals the plain loop, vocabulary trimming leaves the logits unchanged, and a
LoRA base stored in bf16 computes what bf16 autocast computes. Each test takes about a
second on one core.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoModel, AutoTokenizer

import test_graphs
from massive_fixture import write_massive_dir
from tiny_models import save_tiny_model, without_dropout
from xlcl.classifier import build_classifier, store_frozen_linears_in_bf16, trainable_parameters
from xlcl.config import LoraSettings, TrainConfig
from xlcl.data import load_massive, slot_label_names
from xlcl.encode import Batch, EncodedSplit, collate, encode
from xlcl.evaluate.scoring import mixed_precision
from xlcl.methods import method
from xlcl.params import XLMR_LARGE
from xlcl.protocol import _trim_vocabulary

# XLMR_LARGE's shape ratios, scaled down: 16 heads, intermediate = 4 x hidden.
LARGE_SHAPED = dict(
    num_hidden_layers=4,
    hidden_size=64,
    num_attention_heads=16,
    intermediate_size=256,
    layer_norm_eps=1e-5,
    hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0,
)


@pytest.fixture(scope="module")
def large_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny random XLM-R-large-shaped encoder and its tokenizer, saved to disk."""
    return save_tiny_model(tmp_path_factory.mktemp("tiny-e5-large-instruct"), **LARGE_SHAPED)


@pytest.fixture(scope="module")
def large_en_us(en_us: Any, large_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """`en_us` (tests/conftest.py) for the large-shaped model: the same fixture utterances
    and labels, encoded with this model's tokenizer (trained anew, its ids differ), in
    `en_us`'s own class, whose `train_step` the tests use."""
    data = load_massive(write_massive_dir(tmp_path_factory.mktemp("en-us-large")), ["en-US"])
    labels = slot_label_names(data)
    assert labels == en_us.labels
    tokenizer = AutoTokenizer.from_pretrained(large_dir)
    ids = {label: index for index, label in enumerate(labels)}
    train = encode(data.utterances("en-US", "train"), tokenizer, ids, 32)
    dev = encode(data.utterances("en-US", "dev"), tokenizer, ids, 32)
    return type(en_us)(large_dir, labels, train, dev)


def test_the_tiny_model_has_e5_large_instructs_architecture(large_dir: Path) -> None:
    config = json.loads((large_dir / "config.json").read_text())
    assert config["architectures"] == ["XLMRobertaModel"]
    assert config["model_type"] == XLMR_LARGE.model_type == "xlm-roberta"
    assert config["type_vocab_size"] == XLMR_LARGE.type_vocab_size == 1
    assert config["layer_norm_eps"] == 1e-5
    assert config["hidden_act"] == XLMR_LARGE.hidden_act == "gelu"
    large_ratios = (
        XLMR_LARGE.num_attention_heads,
        XLMR_LARGE.intermediate_size // XLMR_LARGE.hidden_size,
    )
    assert large_ratios == (16, 4)
    assert (
        config["num_attention_heads"],
        config["intermediate_size"] // config["hidden_size"],
    ) == large_ratios
    assert (config["num_hidden_layers"], config["hidden_size"]) == (4, 64)
    assert (config["pad_token_id"], config["bos_token_id"], config["eos_token_id"]) == (1, 0, 2)
    # absolute positions: a learned table, offset past the pad id as in XLM-R
    encoder = AutoModel.from_pretrained(large_dir)
    assert encoder.embeddings.position_embeddings.num_embeddings == 132
    assert encoder.embeddings.padding_idx == 1


# The key's bias adds the same number to every score of a query's row, which the softmax
# ignores: its true gradient is 0, and what it gets is rounding noise, which Adam scales up
# to steps of up to lr * noise / eps. Padding changes the noise (an element moved 2e-5 apart
# between the two runs, above test_graphs's atol 1e-5), so these biases are checked apart.
KEY_BIAS = ".attention.self.key.bias"


@pytest.mark.parametrize("rank", [None, 4], ids=["vanilla", "shared-lora-4"])
def test_graphed_training_equals_the_plain_loop(large_en_us: Any, rank: int | None) -> None:
    """tests/test_graphs.py's check: losses, learning rates, dev scores, trained weights
    (for VANILLA, with the key biases checked apart)."""
    if rank is not None:  # the key's bias is frozen: test_graphs's test as it stands
        test_graphs.test_graphed_training_equals_the_plain_loop(large_en_us, rank)
        return
    model_dir, labels, train, _ = large_en_us
    assert len(train) == 10  # batch 4: two full batches graphed, the last one of 2 eager
    results, weights = {}, {}
    for graphs in (False, True):  # test_graphs's settings
        config = TrainConfig(
            epochs=3,
            patience=3,
            learning_rate=1e-2,
            batch_size=4,
            warmup_ratio=0.4,
            cuda_graphs=graphs,
        )
        model = build_classifier(str(model_dir), labels, method("vanilla"), LoraSettings(), 0)
        results[graphs] = large_en_us.train_step(without_dropout(model), config, seed=3)
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
    model = build_classifier(str(model_dir), labels, method("vanilla"), LoraSettings(), 0)
    fresh = {name: p.detach() for name, p in trainable_parameters(model)}
    key_biases = 0
    for name, weight in weights[False].items():
        if name.endswith(KEY_BIAS):
            # noise: each run moved them by at most 3e-5 (measured), under a hundredth of
            # what the head moved (4e-2)
            key_biases += 1
            for trained in (weight, weights[True][name]):
                assert float((trained - fresh[name]).abs().max()) < 2e-4, name
            continue
        torch.testing.assert_close(weights[True][name], weight, rtol=1e-4, atol=1e-5)
    assert key_biases == 4
    head = weights[False]["classifier.weight"]
    assert float((head - fresh["classifier.weight"]).abs().max()) > 1e-2  # the head learned


def _batches(splits: list[EncodedSplit]) -> list[Batch]:
    """Every utterance of `splits`, in batches of 8, padded with XLM-R's pad id 1."""
    ids = [row for split in splits for row in split.input_ids]
    labels = [row for split in splits for row in split.labels]
    return [
        collate(ids[start : start + 8], labels[start : start + 8], pad_id=1)
        for start in range(0, len(ids), 8)
    ]


def _logits(model: torch.nn.Module, batches: list[Batch]) -> list[torch.Tensor]:
    model.eval()
    with torch.no_grad():
        return [
            model(input_ids=b.input_ids, attention_mask=b.attention_mask).logits for b in batches
        ]


def _gradients(model: torch.nn.Module, batch: Batch) -> dict[str, torch.Tensor]:
    """The trainable parameters' gradients of the loss on `batch` (dropout is off)."""
    model.train()
    model.zero_grad(set_to_none=True)
    model(
        input_ids=batch.input_ids, attention_mask=batch.attention_mask, labels=batch.labels
    ).loss.backward()
    return {name: p.grad.clone() for name, p in trainable_parameters(model) if p.grad is not None}


@pytest.mark.parametrize("rank", [None, 4], ids=["vanilla", "shared-lora-4"])
def test_a_trimmed_vocabulary_gives_the_same_logits(large_en_us: Any, rank: int | None) -> None:
    model_dir, labels, train, dev = large_en_us
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    # As a run trims (trim_vocabulary): every split's pieces and the special tokens.
    trim, splits = _trim_vocabulary({"en-US": {"train": train, "dev": dev}}, tokenizer)
    vocabulary = len(tokenizer)
    assert 5 < len(trim) < vocabulary
    assert trim.kept[:4] == (0, 1, 2, 3)  # <s> <pad> </s> <unk> keep their ids
    spec = method("vanilla") if rank is None else method("shared-lora", rank)
    full = build_classifier(str(model_dir), labels, spec, LoraSettings(dropout=0.0), 0)
    trimmed = build_classifier(str(model_dir), labels, spec, LoraSettings(dropout=0.0), 0, trim)
    dropped = sum(p.numel() for p in full.parameters()) - sum(
        p.numel() for p in trimmed.parameters()
    )
    assert dropped == (vocabulary - len(trim)) * 64
    old = _batches([train, dev])
    new = _batches(list(splits["en-US"].values()))
    assert any(not torch.equal(a.input_ids, b.input_ids) for a, b in zip(old, new, strict=True))
    for a, b in zip(old, new, strict=True):
        assert torch.equal(trim.remap(a.input_ids), b.input_ids)
    before, after = _logits(full, old), _logits(trimmed, new)
    assert before[0].shape == (8, old[0].input_ids.shape[1], len(labels))
    for x, y in zip(before, after, strict=True):
        assert torch.equal(y, x)  # the same rows and the same arithmetic: the same bits
    # and the logits are not trivially equal: the model is random, its outputs vary
    assert float(before[0].std()) > 1e-2


def test_a_lora_base_stored_in_bf16_gives_autocasts_logits_bit_for_bit(large_en_us: Any) -> None:
    model_dir, labels, train, dev = large_en_us
    model = build_classifier(
        str(model_dir), labels, method("shared-lora", 4), LoraSettings(dropout=0.0), 0
    )
    torch.manual_seed(1)
    with torch.no_grad():  # adapters that do something (PEFT starts B at zero)
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(std=0.1)
    batches = _batches([train, dev])
    fp32 = _logits(model, batches)
    with mixed_precision("bf16", torch.device("cpu")):
        autocast = _logits(model, batches)
        autocast_gradients = _gradients(model, batches[0])
        # 4 layers x (query, key, value, attention output, intermediate, output)
        assert store_frozen_linears_in_bf16(model) == 4 * 6
        stored = _logits(model, batches)
        stored_gradients = _gradients(model, batches[0])
    dtypes = {name: p.dtype for name, p in model.named_parameters()}
    assert {dtype for name, dtype in dtypes.items() if "base_layer" in name} == {torch.bfloat16}
    # the rest (adapters, head, embeddings, LayerNorms) stays in fp32
    assert {dtype for name, dtype in dtypes.items() if "base_layer" not in name} == {torch.float32}
    assert dtypes["base_model.model.roberta.embeddings.word_embeddings.weight"] == torch.float32
    for a, s, f in zip(autocast, stored, fp32, strict=True):
        assert a.dtype == s.dtype == torch.bfloat16
        assert torch.equal(s, a)
        assert not torch.equal(a.float(), f)  # autocast did round: the check is not vacuous
        torch.testing.assert_close(a.float(), f, rtol=0, atol=0.1)
    # and training sees the same: every adapter's and the head's gradient, bit for bit
    assert len(autocast_gradients) == 4 * 6 * 2 + 2  # lora_A and lora_B; head weight, bias
    assert autocast_gradients.keys() == stored_gradients.keys()
    for name, gradient in autocast_gradients.items():
        assert torch.equal(stored_gradients[name], gradient), name
        assert float(gradient.abs().max()) > 0, name
