"""A classifier on any Hugging Face encoder, fully trainable or with LoRA (PEFT).

LoRA targets every linear layer of the encoder (`target_modules="all-linear"`) with
``lora_alpha = r`` by default; the classification head is trained and saved with each
adapter (`modules_to_save`, see `head_modules`), so every adapter carries its own head.
Which encoders are supported and tested: docs/models.md, "Supported encoders".
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, TaskType, get_peft_model
from peft.tuners.lora import LoraLayer
from transformers import (
    AutoConfig,
    AutoModelForTokenClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.models.auto.auto_factory import _BaseAutoModelClass as _AutoModelClass

from xlcl.config import ConfigError, LoraSettings
from xlcl.methods import Method
from xlcl.models import VocabularyTrim, trim_embeddings


def lora_config(
    rank: int, settings: LoraSettings, task_type: TaskType, head: list[str]
) -> LoraConfig:
    """The PEFT config of one adapter of rank `rank` on a model with a `task_type` head,
    whose modules (`head_modules`) the adapter trains in full and saves."""
    return LoraConfig(
        r=rank,
        lora_alpha=settings.alpha or rank,
        lora_dropout=settings.dropout,
        target_modules="all-linear",
        modules_to_save=head,
        task_type=task_type,
    )


# The names head modules take in the supported encoders (docs/models.md): BERT's and
# XLM-R's `classifier` and `pooler`, ModernBERT's `head` (dense + norm before `classifier`).
HEAD_PARTS = ("classifier", "pooler", "head")


def head_modules(model: torch.nn.Module, task_type: TaskType) -> list[str]:
    """The modules of a `task_type` model each adapter trains in full and saves: its head.

    Every top-level module with parameters outside the encoder (`base_model_prefix`):
    `classifier`, and ModernBERT's `head`, DeBERTa's sequence `pooler`. A sequence
    classifier's head also includes the encoder's own pooler where it has one (BERT's:
    dense + tanh, which RoBERTa's classification head holds itself). Frozen, it would stay
    as the checkpoint has it, and e5-small's has none: a random projection.
    """
    encoder = getattr(model, "base_model_prefix", "")
    head = [
        name
        for name, module in model.named_children()
        if name != encoder and any(True for _ in module.parameters())
    ]
    pooler = getattr(getattr(model, encoder, None), "pooler", None)
    if task_type == TaskType.SEQ_CLS and isinstance(pooler, torch.nn.Module):
        head.append("pooler")
    unknown = [name for name in head if name not in HEAD_PARTS]
    if unknown:
        raise ValueError(
            f"{type(model).__name__}: head module(s) {unknown} are not among {HEAD_PARTS}"
        )
    return head


def is_head_parameter(name: str) -> bool:
    """Whether the parameter `name` (plain or PEFT-wrapped) belongs to a task's head."""
    return any(part in HEAD_PARTS for part in name.split("."))


def check_model(model_path: str, auto_class: type[_AutoModelClass]) -> None:
    """Raise `ConfigError` (one line) unless `model_path` loads and has an `auto_class` head.

    Reads only the model's config: a run checks its model before it writes anything.
    """
    try:
        config = AutoConfig.from_pretrained(model_path)
    except (OSError, ValueError) as error:
        raise ConfigError(f"model {model_path}: cannot load it ({_first_line(error)})") from None
    heads = auto_class._model_mapping
    if heads is None or type(config) not in heads:
        raise ConfigError(
            f"model {model_path}: its architecture ({config.model_type}) has no task head "
            f"in transformers ({auto_class.__name__})"
        )


def load_tokenizer(model_path: str) -> PreTrainedTokenizerBase:
    """`model_path`'s tokenizer; `ConfigError` (one line) when it cannot be loaded."""
    try:
        return AutoTokenizer.from_pretrained(model_path)
    except (OSError, ValueError) as error:
        raise ConfigError(
            f"model {model_path}: cannot load its tokenizer ({_first_line(error)})"
        ) from None


def _first_line(error: Exception) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def build_classifier(
    model_path: str,
    labels: list[str],
    method: Method,
    lora: LoraSettings,
    seed: int,
    trim: VocabularyTrim | None = None,
    *,
    auto_class: type[_AutoModelClass] = AutoModelForTokenClassification,
    task_type: TaskType = TaskType.TOKEN_CLS,
) -> torch.nn.Module:
    """A fresh classifier (an `auto_class` head) for `labels`; the head is initialised from `seed`.

    With `trim`, only the kept rows of the input embedding remain (inputs must be remapped).
    """
    torch.manual_seed(seed)
    model: PreTrainedModel = auto_class.from_pretrained(
        model_path,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: index for index, label in enumerate(labels)},
    )
    if trim is not None:
        trim_embeddings(model, trim)
    if method.rank is None:
        return model
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=".*gradient_checkpointing", category=FutureWarning
        )
        head = head_modules(model, task_type)
        return get_peft_model(model, lora_config(method.rank, lora, task_type, head))


def store_frozen_linears_in_bf16(model: torch.nn.Module) -> int:
    """Keep the weight and bias of every LoRA layer's frozen base in bf16; how many layers.

    For a model that runs under bf16 autocast only: autocast casts a linear layer's weight
    and bias to bf16 at every call, so storing the frozen ones in bf16 gives the same bits
    without recasting the whole base at every forward pass (which a CUDA graph, captured
    without autocast's cache, would do at every replay) and halves the base's memory. The
    adapters, the heads (and the original head PEFT keeps, which new adapters' heads copy),
    embeddings and LayerNorms keep their dtype.
    """
    frozen = [
        layer.base_layer
        for layer in model.modules()
        if isinstance(layer, LoraLayer)
        and isinstance(layer.base_layer, torch.nn.Linear)
        and not any(p.requires_grad for p in layer.base_layer.parameters())
    ]
    for base in frozen:
        base.to(torch.bfloat16)
    return len(frozen)


def save_adapter(model: torch.nn.Module, directory: Path, adapter: str | None = None) -> None:
    """Save a LoRA model's adapter (and its head) in PEFT's format, in `directory`.

    `adapter` picks one of a model with several (NON-SHARED LoRA trained together); it is
    saved as a one-adapter model's would be. The adapter never holds the input embedding,
    even a trimmed one: it loads on the untrimmed base model, with the tokenizer's own ids.
    """
    if not isinstance(model, PeftModel):
        raise TypeError("only LoRA models have an adapter to save")
    if adapter is None:
        model.save_pretrained(str(directory), save_embedding_layers=False)
        return
    directory.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory.parent) as staging:
        # PEFT writes an adapter other than "default" to a subdirectory named after it.
        model.save_pretrained(staging, selected_adapters=[adapter], save_embedding_layers=False)
        if directory.exists():
            shutil.rmtree(directory)
        os.replace(Path(staging) / adapter, directory)


def trainable_parameters(model: torch.nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
    """The parameters an optimizer updates: all of them, or the adapter and head."""
    return [(name, p) for name, p in model.named_parameters() if p.requires_grad]
