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
    """Predicted label id of every utterance of `splits`, in the order of their concatenation.

    The model runs in eval mode and is put back in the mode it was in.
    """
    if not splits:
        raise ValueError("no split to score")
    on_device = argmax_by_length(model, splits, batch_size, pad_id, device, precision)
    by_length = torch.cat(on_device).cpu().numpy()  # one host-device sync for the pass
    # The batches hold the utterances sorted by length: undo that.
    lengths = np.concatenate([split.lengths for split in splits])
    predicted = np.empty(len(lengths), dtype=np.int64)
    predicted[np.argsort(lengths, kind="stable")] = by_length
    return predicted
