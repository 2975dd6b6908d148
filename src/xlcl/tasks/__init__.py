"""Tasks: what a run learns and how a score-matrix cell is measured.

A task owns its locales and orders, loading, label names, encoding, building the model,
the loss, and scoring a split (the cell's metric, named by `Task.metric`) or each split
of a row. The engine, the schedules and the strategies know only this interface. Select
one with the run config's top-level ``task:`` key (default ``massive-slots``);
``"package.module:Class"`` names a task of your own on PYTHONPATH.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from xlcl.cell_counts import UtteranceCounts, agrees
from xlcl.registry import resolve_plugin

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase

    from xlcl.config import DataConfig, LoraSettings
    from xlcl.data import MassiveData
    from xlcl.encode import EncodedSplit
    from xlcl.methods import Method
    from xlcl.models import VocabularyTrim

DEFAULT_TASK = "massive-slots"


@dataclass(frozen=True)
class TaskScore:
    """One cell of the score matrix: the task's metric (`value`) and the counts behind it.

    The fields besides `value` are the score table's columns; a task fills those it has
    and leaves the others NaN (or 0 for counts). `utterances` holds what each test
    utterance adds to `value` (``utterances.npz``, for confidence intervals); it must give
    `value` and have `n_sentences` rows. None: the task keeps no such counts.
    """

    value: float
    n_sentences: int
    f1: float = math.nan
    precision: float = math.nan
    recall: float = math.nan
    n_gold: int = 0
    n_pred: int = 0
    intent_accuracy: float = math.nan
    utterances: UtteranceCounts | None = None

    def __post_init__(self) -> None:
        counts = self.utterances
        if counts is None:
            return
        if counts.n_utterances != self.n_sentences:
            raise ValueError(
                f"per-utterance counts of {counts.n_utterances} utterances for a cell of "
                f"{self.n_sentences} sentences"
            )
        if math.isnan(self.value) or not agrees(counts, self.value):
            raise ValueError(
                f"per-utterance counts give {counts.score()!r}, not the score {self.value!r}: "
                "a task that changes the score must give its own counts (or None)"
            )


class Task:
    """A task: data, labels, encoding, model, loss and score. Subclass and register it."""

    name: ClassVar[str]
    metric: ClassVar[str]  # the score's display label, e.g. "span F1"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # A one-pass `score_each` inherited from the parent scores by the parent's metric:
        # a subclass with a `score` of its own must score its rows by that `score`.
        if "score" in cls.__dict__ and "score_each" not in cls.__dict__:
            cls.score_each = Task.score_each  # type: ignore[method-assign]

    def resolve_order(
        self, order: int | str | Sequence[str], locales: Sequence[str] | None
    ) -> tuple[str, ...]:
        """The run's locales in training order, from a config's ``order`` and ``locales``."""
        raise NotImplementedError

    def load(self, data: DataConfig, order: Sequence[str]) -> MassiveData:
        """The utterances of the locales in `order`, validated."""
        raise NotImplementedError

    def label_names(self, data: MassiveData) -> list[str]:
        """The label vocabulary, stored by name in every run."""
        raise NotImplementedError

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
        """The first `limit` utterances of a locale's split, tokenized with their labels."""
        raise NotImplementedError

    def check_model(self, model_path: str) -> None:
        """Raise `ConfigError` (one line) if `model_path` cannot give this task's model.

        A run calls it before it writes anything; by default only `build_model` checks.
        """

    def build_model(
        self,
        model_path: str,
        labels: list[str],
        method: Method,
        lora: LoraSettings,
        seed: int,
        trim: VocabularyTrim | None = None,
    ) -> torch.nn.Module:
        """A fresh model for `labels` (LoRA per `method`); its head initialised from `seed`."""
        raise NotImplementedError

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The training loss of a batch's `logits` against its `labels` (`Batch.labels`)."""
        raise NotImplementedError

    def score(
        self,
        model: torch.nn.Module,
        splits: Sequence[EncodedSplit],
        labels: Sequence[str],
        batch_size: int,
        pad_id: int,
        device: torch.device,
        precision: str,
    ) -> TaskScore:
        """Score `model` on `splits` together (micro-averaged)."""
        raise NotImplementedError

    def score_each(
        self,
        model: torch.nn.Module,
        splits: Sequence[EncodedSplit],
        labels: Sequence[str],
        batch_size: int,
        pad_id: int,
        device: torch.device,
        precision: str,
    ) -> list[TaskScore]:
        """Score `model` on each of `splits` alone: a row of the score matrix.

        Each `TaskScore` is what ``score(model, [split], ...)`` gives, and this default is
        one `score` per split. A task overrides it to score the row in one pass; a subclass
        that overrides `score` alone gets this default back (`__init_subclass__`).
        """
        return [
            self.score(model, [split], labels, batch_size, pad_id, device, precision)
            for split in splits
        ]

    def unscored(self, split: EncodedSplit, labels: Sequence[str]) -> TaskScore:
        """The cell of a locale a model is not scored on: NaN metric, the split's counts."""
        return TaskScore(value=math.nan, n_sentences=len(split))


# Built-in tasks: name -> "module:attr", imported only when used. The one list.
BUILTIN: dict[str, str] = {
    "massive-slots": "xlcl.tasks.massive_slots:MassiveSlots",
    "massive-intent": "xlcl.tasks.massive_intent:MassiveIntent",
}


def task_class(name: str) -> type[Task]:
    """The class a config's ``task`` names: a built-in name or ``module:Class``."""
    return resolve_plugin("task", name, BUILTIN, Task)


def get_task(name: str) -> Task:
    """An instance of the task `name`."""
    return task_class(name)()
