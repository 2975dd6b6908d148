"""MASSIVE slot filling: BIO tags on the first subword of each word, scored by span F1.

The paper's task. Labels are ``O`` then ``B-``/``I-`` per slot type seen in the run's data;
the loss is the mean cross-entropy over labelled subwords; a cell is seqeval-style span
F1 over the original words (`xlcl.evaluate`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from peft import TaskType
from transformers import AutoModelForTokenClassification, PreTrainedTokenizerBase

from xlcl.cell_counts import UtteranceCounts
from xlcl.data import MassiveData, Utterance, slot_label_names
from xlcl.encode import IGNORE, EncodedSplit, encode
from xlcl.evaluate.scoring import count_each, score_splits
from xlcl.evaluate.spans import SpanCounts
from xlcl.tasks import TaskScore
from xlcl.tasks.massive import MassiveTask


class MassiveSlots(MassiveTask):
    """MASSIVE slot filling (55 slot types, 111 BIO labels), scored by span F1."""

    name = "massive-slots"
    metric = "span F1"
    auto_class = AutoModelForTokenClassification
    task_type = TaskType.TOKEN_CLS

    def label_names(self, data: MassiveData) -> list[str]:
        """``O``, then ``B-``/``I-`` of every slot type in the data."""
        return slot_label_names(data)

    def encode_utterances(
        self,
        utterances: Sequence[Utterance],
        tokenizer: PreTrainedTokenizerBase,
        label_ids: dict[str, int],
        max_length: int,
    ) -> EncodedSplit:
        """Subwords with each word's tag on its first subword (the rest ignored)."""
        return encode(utterances, tokenizer, label_ids, max_length)

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy over the labelled subwords (as the Hugging Face head's)."""
        return F.cross_entropy(
            logits.view(-1, logits.shape[-1]), labels.view(-1), ignore_index=IGNORE
        )

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
        """Span F1, precision and recall, micro-summed over `splits`; each utterance's
        true positives, false positives and false negatives."""
        counts = score_splits(model, splits, labels, batch_size, pad_id, device, precision)
        n_gold = sum(_gold_spans(split, labels) for split in splits)
        return _cell(counts, sum(len(split) for split in splits), n_gold)

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
        """`score` of each split alone, from one pass over all of them."""
        counts = count_each(model, splits, labels, batch_size, pad_id, device, precision)
        return [
            _cell(split_counts, len(split), _gold_spans(split, labels))
            for split_counts, split in zip(counts, splits, strict=True)
        ]

    def unscored(self, split: EncodedSplit, labels: Sequence[str]) -> TaskScore:
        """NaN scores; the split's sentences and gold spans."""
        return TaskScore(
            value=float("nan"), n_sentences=len(split), n_gold=_gold_spans(split, labels)
        )


def _gold_spans(split: EncodedSplit, labels: Sequence[str]) -> int:
    """The gold spans of `split`: its words tagged ``B-``."""
    begins = np.fromiter((label.startswith("B-") for label in labels), bool, len(labels))
    tags = np.concatenate([*split.gold, np.empty(0, dtype=np.int64)])  # none: no span
    return int(np.count_nonzero(begins[tags]))


def _cell(counts: SpanCounts, n_sentences: int, n_gold: int) -> TaskScore:
    """The cell of span counts over `n_sentences` utterances with `n_gold` gold spans."""
    sentences = counts.sentences
    utterances = None
    if sentences is not None:
        tp = sentences.n_correct
        utterances = UtteranceCounts.spans(tp, sentences.n_pred - tp, sentences.n_gold - tp)
    return TaskScore(
        value=counts.f1,
        n_sentences=n_sentences,
        f1=counts.f1,
        precision=counts.precision,
        recall=counts.recall,
        n_gold=n_gold,
        n_pred=counts.n_pred,
        utterances=utterances,
    )
