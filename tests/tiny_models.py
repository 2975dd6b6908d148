"""Tiny random encoders with a tokenizer trained on the spot: offline stand-ins for XLM-R."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import (
    AutoModel,
    BertConfig,
    PreTrainedTokenizerFast,
    XLMRobertaConfig,
    XLMRobertaTokenizerFast,
)

SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
SAMPLE_TEXT = [
    "wake me up at five am this week",
    "weck mich um fünf uhr morgens auf",
    "despiértame a las cinco de la mañana",
    "разбуди меня в пять утра",
    "今週は午前五時に起こして",
    "ปลุกฉันตอนตีห้า",
]


def train_tokenizer(texts: Iterable[str], vocab_size: int = 600) -> PreTrainedTokenizerFast:
    """A SentencePiece-style unigram tokenizer (as XLM-R's) trained on `texts`."""
    tokenizer = Tokenizer(models.Unigram())
    tokenizer.normalizer = normalizers.NFKC()
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size, special_tokens=SPECIALS, unk_token="<unk>"
    )
    tokenizer.train_from_iterator(list(texts), trainer=trainer)
    return XLMRobertaTokenizerFast(tokenizer_object=tokenizer)


def save_tiny_model(
    directory: Path,
    texts: Iterable[str] = SAMPLE_TEXT,
    architecture: str = "xlm-roberta",
    **settings: Any,
) -> Path:
    """Write a tiny random encoder and its tokenizer to `directory` (a model path).

    `settings` override the config's (``hidden_dropout_prob=0.0``, ``num_hidden_layers``).
    """
    tokenizer = train_tokenizer(list(texts) + SAMPLE_TEXT)
    common = dict(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        pad_token_id=tokenizer.pad_token_id,
    )
    common.update(settings)
    if architecture == "xlm-roberta":
        config = XLMRobertaConfig(
            **common,
            max_position_embeddings=132,
            type_vocab_size=1,
            bos_token_id=0,
            eos_token_id=2,
        )
    else:
        config = BertConfig(**common, max_position_embeddings=130)
    torch.manual_seed(0)
    AutoModel.from_config(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def without_dropout(model: torch.nn.Module) -> torch.nn.Module:
    """`model` with every dropout off, the base's too: equal results need equal masks."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    return model
