"""Score a sequence classifier on encoded splits: one batched pass, argmax on the device.

The model's logits are one row per utterance, ``(batch, classes)``: a sequence
classifier's, as `xlcl.tasks.massive_intent` builds.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from xlcl.encode import EncodedSplit
from xlcl.evaluate.scoring import argmax_by_length


@torch.no_grad()
def predict_sequences(
    model: torch.nn.Module,
    splits: Sequence[EncodedSplit],
    batch_size: int,
    pad_id: int,
    device: torch.device,
    precision: str = "auto",
) -> np.ndarray:
    """Predicted label id of every utterance of `splits`, in the order of their concatenation,
    from one pass over all of them.

    The model runs in eval mode and is put back in the mode it was in.
    """
    by_length = argmax_by_length(model, splits, batch_size, pad_id, device, precision)
    by_row = by_length.to_host()  # the pass's one host-device sync
    predicted = np.empty(len(by_row), dtype=np.int64)
    predicted[by_length.order] = by_row  # the batches hold the utterances sorted by length
    return predicted
