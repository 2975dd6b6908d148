"""Slot filling scored by utterance exact match: a task of one's own, derived from a built-in.

An example of a task in a package of one's own (docs/extending.md), selected in a run
config as ``task: "exact_match:MassiveSlotsExactMatch"``. Everything but the score is
MASSIVE slot filling's (`xlcl.tasks.massive_slots.MassiveSlots`): data, labels, encoding,
model and loss. A cell's score is the share of utterances whose every word's tag is right,
so one wrong tag costs the whole utterance; span F1 is kept in its own columns beside it.
Early stopping follows the task's score, so it too selects epochs by exact match.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import torch

from xlcl.cell_counts import UtteranceCounts
from xlcl.encode import EncodedSplit
from xlcl.evaluate.scoring import predict_words
from xlcl.tasks import TaskScore
from xlcl.tasks.massive_slots import MassiveSlots


class MassiveSlotsExactMatch(MassiveSlots):
    """MASSIVE slot filling, scored by the share of utterances tagged exactly right."""

    name = "massive-slots-exact-match"
    metric = "utterance exact match"

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
        """Utterances with every word's tag right, over all utterances; span F1 beside it.

        For brevity the model predicts twice (once for span F1, once here). The score is a
        new one, so are its per-utterance counts: whether each utterance is right.
        """
        spans = super().score(model, splits, labels, batch_size, pad_id, device, precision)
        exact = [
            bool(np.array_equal(predicted, gold))
            for split in splits
            for predicted, gold in zip(
                predict_words(model, split, batch_size, pad_id, device, precision),
                split.gold,
                strict=True,
            )
        ]
        return dataclasses.replace(
            spans,
            value=sum(exact) / spans.n_sentences,
            utterances=UtteranceCounts.correct(exact),
        )
