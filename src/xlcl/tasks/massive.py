"""What MASSIVE's tasks share: its 52 locales, the paper's orders, and loading the data."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from peft import TaskType
from transformers import PreTrainedTokenizerBase
from transformers.models.auto.auto_factory import _BaseAutoModelClass

from xlcl.classifier import build_classifier, check_model
from xlcl.config import DataConfig, LoraSettings
from xlcl.data import MassiveData, Utterance, load_massive, resolve_order
from xlcl.encode import EncodedSplit
from xlcl.methods import Method
from xlcl.models import VocabularyTrim
from xlcl.tasks import Task


class MassiveTask(Task):
    """What MASSIVE's tasks share: its 52 locales, the paper's orders, loading, and a
    Hugging Face head (`auto_class`, with PEFT's `task_type` for LoRA) over the encoder.

    A subclass says how its labels sit on the subwords (`encode_utterances`).
    """

    auto_class: ClassVar[type[_BaseAutoModelClass]]
    task_type: ClassVar[TaskType]

    def resolve_order(
        self, order: int | str | Sequence[str], locales: Sequence[str] | None
    ) -> tuple[str, ...]:
        """The paper's orders 1-5, ``random:SEED`` or a list, over MASSIVE's locales."""
        return resolve_order(order, locales)

    def load(self, data: DataConfig, order: Sequence[str]) -> MassiveData:
        """MASSIVE's utterances of `order` from ``data.source`` (or ``$XLCL_MASSIVE``)."""
        return load_massive(data.source, order, skip_invalid=data.skip_invalid)

    def encode(
        self,
        data: MassiveData,
        locale: str,
        split: str,
        limit: int | None,
        tokenizer: PreTrainedTokenizerBase,
        labels: list[str],
        max_length: int,
    ) -> EncodedSplit:
        """The first `limit` utterances of a locale's split, by `encode_utterances`."""
        label_ids = {label: index for index, label in enumerate(labels)}
        utterances = data.utterances(locale, split)[:limit]  # type: ignore[arg-type]
        return self.encode_utterances(utterances, tokenizer, label_ids, max_length)

    def encode_utterances(
        self,
        utterances: Sequence[Utterance],
        tokenizer: PreTrainedTokenizerBase,
        label_ids: dict[str, int],
        max_length: int,
    ) -> EncodedSplit:
        """`utterances` (all of one locale) as subwords with their labels."""
        raise NotImplementedError

    def check_model(self, model_path: str) -> None:
        """`ConfigError` unless `model_path` loads and its architecture has an `auto_class` head."""
        check_model(model_path, self.auto_class)

    def build_model(
        self,
        model_path: str,
        labels: list[str],
        method: Method,
        lora: LoraSettings,
        seed: int,
        trim: VocabularyTrim | None = None,
    ) -> torch.nn.Module:
        """The `auto_class` head over the encoder (LoRA on every linear layer for LoRA methods)."""
        return build_classifier(
            model_path,
            labels,
            method,
            lora,
            seed,
            trim,
            auto_class=self.auto_class,
            task_type=self.task_type,
        )
