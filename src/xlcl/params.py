"""Trainable parameters of a method, as Table 1 counts them.

Counted on the bare encoder (`AutoModel`, the pooler included where the architecture has
one) without the classification head. LoRA targets every linear layer with PEFT's
``target_modules="all-linear"``. On xlm-roberta-base this gives the paper's counts exactly:
278.04 M for full fine-tuning, 5.36 M for LoRA r=32. Models are built on the meta device,
so nothing is downloaded or allocated; the preset architectures need no network.

With a strategy, its `Strategy.cost` comes too, computed for that count (one model's or
adapter's, no head) and ``train_size`` training utterances per locale (MASSIVE 1.1's
11,514 by default); its `extra_parameters` join the trainable and total counts, as Table 1
counts NON-SHARED LoRA's adapters, each trained at its own step.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoConfig, AutoModel, BertConfig, PretrainedConfig, XLMRobertaConfig

from xlcl.methods import Method
from xlcl.strategies import StrategyCost, strategy_class, strategy_settings
from xlcl.sweep.cost import MASSIVE_SPLIT_SIZES

XLMR_BASE = XLMRobertaConfig(
    vocab_size=250002,
    hidden_size=768,
    num_hidden_layers=12,
    num_attention_heads=12,
    intermediate_size=3072,
    max_position_embeddings=514,
    type_vocab_size=1,
    layer_norm_eps=1e-5,  # the released checkpoints' (transformers' default is 1e-12)
)
XLMR_LARGE = XLMRobertaConfig(
    vocab_size=250002,
    hidden_size=1024,
    num_hidden_layers=24,
    num_attention_heads=16,
    intermediate_size=4096,
    max_position_embeddings=514,
    type_vocab_size=1,
    layer_norm_eps=1e-5,  # the released checkpoints' (transformers' default is 1e-12)
)
E5_SMALL = BertConfig(
    vocab_size=250037,
    hidden_size=384,
    num_hidden_layers=12,
    num_attention_heads=12,
    intermediate_size=1536,
    max_position_embeddings=512,
    type_vocab_size=2,
)

PRESET_ARCHITECTURES: dict[str, PretrainedConfig] = {
    "FacebookAI/xlm-roberta-base": XLMR_BASE,
    "xlm-roberta-base": XLMR_BASE,
    "FacebookAI/xlm-roberta-large": XLMR_LARGE,
    "intfloat/multilingual-e5-large-instruct": XLMR_LARGE,
    "intfloat/multilingual-e5-small": E5_SMALL,
    "e5-small-offline": E5_SMALL,
}


@dataclass(frozen=True)
class ParameterCount:
    """Trainable and total parameters of a method over `n_locales` locales."""

    trainable: int
    total: int
    counted_model: str
    strategy_cost: StrategyCost | None = None  # with a strategy: what it holds besides


def architecture(model: str) -> PretrainedConfig:
    """The config of `model`: a preset, a local directory, or (online) a hub name."""
    if model in PRESET_ARCHITECTURES:
        return PRESET_ARCHITECTURES[model]
    if Path(model).is_dir():
        return AutoConfig.from_pretrained(model)
    try:
        return AutoConfig.from_pretrained(model)
    except OSError as error:
        presets = ", ".join(PRESET_ARCHITECTURES)
        raise ValueError(
            f"cannot read the architecture of {model!r} (offline presets: {presets}): {error}"
        ) from None


def count_parameters(
    method: Method,
    model: str,
    n_locales: int = 52,
    strategy: Mapping[str, Any] | None = None,
    train_size: int = MASSIVE_SPLIT_SIZES["train"],
) -> ParameterCount:
    """Table 1's count for `method` on `model` with `n_locales` locales.

    Trainable parameters count once per parameter set of the schedule (`Schedule.models`):
    `n_locales` times for an independent one. `strategy` is a resolved ``strategy:``
    mapping (`xlcl.strategies.resolve_settings`); its cost's extra parameters are added.
    """
    count = _count_method(method, model, n_locales)
    if strategy is None:
        return count
    name = str(strategy["name"])
    cls = strategy_class(name)
    unsuited = cls.unsuited(method)
    if unsuited:
        raise ValueError(f"strategy {name} {unsuited}")
    per_model = count.trainable // method.schedule.models(n_locales)
    sizes = {f"locale {index}": train_size for index in range(1, n_locales + 1)}
    settings = strategy_settings(strategy)
    cost = cls.cost(settings, trainable=per_model, head=0, train_sizes=sizes)
    extra = cost.extra_parameters
    return replace(
        count, trainable=count.trainable + extra, total=count.total + extra, strategy_cost=cost
    )


def _count_method(method: Method, model: str, n_locales: int) -> ParameterCount:
    config = architecture(model)
    copies = method.schedule.models(n_locales)
    with torch.device("meta"):
        encoder = AutoModel.from_config(config)
    base = sum(p.numel() for p in encoder.parameters())
    counted = f"{type(encoder).__name__} (no classification head)"
    if method.rank is None:
        return ParameterCount(base * copies, base * copies, counted)
    lora = LoraConfig(r=method.rank, lora_alpha=method.rank, target_modules="all-linear")
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=".*gradient_checkpointing", category=FutureWarning
        )
        adapted = get_peft_model(encoder, lora)
    adapter, _ = adapted.get_nb_trainable_parameters()
    return ParameterCount(adapter * copies, base + adapter * copies, f"{counted} + LoRA")
