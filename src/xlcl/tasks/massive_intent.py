"""MASSIVE intent classification: one of 60 intents per utterance, scored by accuracy.

Select it with ``task: massive-intent`` (``xlcl run configs/demo/quick/vanilla.yaml --set
task=massive-intent``). Labels are the intents seen in the run's data, sorted.

An utterance's label is one intent, but the engine's batches carry a label per token (the
slot task's shape): collation, length bucketing, CUDA-graph padding and the adapter router
of `xlcl.together` all slice and pad those rows. So the intent id sits at token position 0
of the label row, the ``<s>``/[CLS] token that sequence classifiers pool, and every other
position holds -100; the loss reads column 0 only. `EncodedSplit.gold` holds one array
``[intent_id]`` per utterance and `EncodedSplit.first_token` ``[0]``.

A cell is micro accuracy over its utterances. Of the score table's counts, ``n_gold`` is
the number of utterances (each has one gold intent) and ``n_pred`` the number predicted
correctly, so a cell's accuracy is ``n_pred / n_gold`` and cells sum to pooled accuracies;
the span columns (f1, precision, recall) are NaN.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from peft import TaskType
from transformers import AutoModelForSequenceClassification, PreTrainedTokenizerBase

from xlcl.cell_counts import UtteranceCounts
from xlcl.data import MassiveData, Utterance, intent_names
from xlcl.encode import IGNORE, EncodedSplit
from xlcl.evaluate.accuracy import predict_sequences
from xlcl.tasks import TaskScore
from xlcl.tasks.massive import MassiveTask


class MassiveIntent(MassiveTask):
    """MASSIVE intent classification (60 intents), scored by accuracy."""

    name = "massive-intent"
    metric = "intent accuracy"
    auto_class = AutoModelForSequenceClassification
    task_type = TaskType.SEQ_CLS

    def label_names(self, data: MassiveData) -> list[str]:
        """The intents in the data, sorted."""
        return intent_names(data)

    def encode_utterances(
        self,
        utterances: Sequence[Utterance],
        tokenizer: PreTrainedTokenizerBase,
        label_ids: dict[str, int],
        max_length: int,
    ) -> EncodedSplit:
        """Subwords with the intent id at position 0 of the label row (-100 elsewhere)."""
        return encode_intents(utterances, tokenizer, label_ids, max_length)

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of the ``(batch, classes)`` logits against the intents."""
        return F.cross_entropy(logits, labels[:, 0])

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
        """Accuracy over the utterances of `splits` together; ``n_pred`` counts the correct;
        whether each utterance is."""
        predicted = predict_sequences(model, splits, batch_size, pad_id, device, precision)
        return _cell(predicted == np.concatenate([_intents(split) for split in splits]))

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
        predicted = predict_sequences(model, splits, batch_size, pad_id, device, precision)
        ends = np.cumsum([len(split) for split in splits])[:-1]
        return [
            _cell(split_predicted == _intents(split))
            for split_predicted, split in zip(np.split(predicted, ends), splits, strict=True)
        ]

    def unscored(self, split: EncodedSplit, labels: Sequence[str]) -> TaskScore:
        """NaN accuracy; the split's utterances (each one gold intent)."""
        return TaskScore(value=math.nan, n_sentences=len(split), n_gold=len(split))


def _intents(split: EncodedSplit) -> np.ndarray:
    """The gold intent of each utterance of `split`."""
    return np.concatenate(split.gold)


def _cell(right: np.ndarray) -> TaskScore:
    """The cell of utterances predicted right (True) or wrong."""
    correct = int(np.count_nonzero(right))
    accuracy = correct / len(right)
    return TaskScore(
        value=accuracy,
        n_sentences=len(right),
        n_gold=len(right),
        n_pred=correct,
        intent_accuracy=accuracy,
        utterances=UtteranceCounts.correct(right),
    )


def encode_intents(
    utterances: Sequence[Utterance],
    tokenizer: PreTrainedTokenizerBase,
    label_ids: dict[str, int],
    max_length: int,
) -> EncodedSplit:
    """Tokenize `utterances` (all of one locale); each one's intent id at token position 0."""
    if not utterances:
        raise ValueError("cannot encode an empty split")
    batch = tokenizer(
        [list(u.words) for u in utterances],
        is_split_into_words=True,
        truncation=True,
        max_length=max_length,
    )
    input_ids, labels, gold, first_token = [], [], [], []
    for utterance, ids in zip(utterances, batch["input_ids"], strict=True):
        if not ids:
            raise ValueError(f"{utterance.locale} utterance {utterance.id}: no token")
        intent = label_ids[utterance.intent]
        token_labels = np.full(len(ids), IGNORE, dtype=np.int64)
        token_labels[0] = intent
        input_ids.append(np.asarray(ids, dtype=np.int64))
        labels.append(token_labels)
        gold.append(np.array([intent], dtype=np.int64))
        first_token.append(np.zeros(1, dtype=np.int64))
    return EncodedSplit(utterances[0].locale, input_ids, labels, gold, first_token)
