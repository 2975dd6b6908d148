"""Score a model on encoded splits: one batched pass, argmax on the device, span counts."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from xlcl.encode import EncodedSplit, iterate_batches
from xlcl.evaluate.spans import SpanCounts, count_spans

OUTSIDE = 0  # label id of "O": slot label lists start with it


def uses_bf16(precision: str, device: torch.device) -> bool:
    """Whether `precision` means bf16 autocast on `device` (``auto``: on a GPU only)."""
    return precision == "bf16" or (precision == "auto" and device.type == "cuda")


def mixed_precision(precision: str, device: torch.device, cache: bool = True) -> torch.autocast:
    """bf16 autocast where `uses_bf16` says so; a disabled context otherwise.

    `cache` keeps a weight's bf16 copy from the forward pass for the backward pass; a CUDA
    graph capture needs it off.
    """
    enabled = uses_bf16(precision, device)
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled, cache_enabled=cache)


@torch.no_grad()
def argmax_by_length(
    model: torch.nn.Module,
    splits: Sequence[EncodedSplit],
    batch_size: int,
    pad_id: int,
    device: torch.device,
    precision: str = "auto",
) -> list[torch.Tensor]:
    """The model's argmax over its logits' last axis, a tensor per batch, left on the device.

    Batches follow `iterate_batches` without a generator: the utterances of `splits`
    sorted by length. The model runs in eval mode and is put back in the mode it was in.
    """
    was_training = model.training
    model.eval()
    on_device: list[torch.Tensor] = []
    with mixed_precision(precision, device):
        for batch in iterate_batches(splits, batch_size, pad_id, rng=None):
            batch = batch.to(device)
            logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
            on_device.append(logits.argmax(dim=-1))
    model.train(was_training)
    return on_device


@torch.no_grad()
def predict_words(
    model: torch.nn.Module,
    split: EncodedSplit,
    batch_size: int,
    pad_id: int,
    device: torch.device,
    precision: str = "auto",
) -> list[np.ndarray]:
    """Predicted label id of every word of `split` (``O`` for words with no subword)."""
    on_device = argmax_by_length(model, [split], batch_size, pad_id, device, precision)
    token_predictions = [row for batch in on_device for row in batch.cpu().numpy()]
    # iterate_batches without rng yields utterances sorted by length: undo that.
    order = np.argsort(split.lengths, kind="stable")
    by_utterance: list[np.ndarray] = [np.empty(0, dtype=np.int64)] * len(split)
    for position, utterance in enumerate(order):
        firsts = split.first_token[utterance]
        words = np.full(len(firsts), OUTSIDE, dtype=np.int64)
        kept = firsts >= 0
        words[kept] = token_predictions[position][firsts[kept]]
        by_utterance[utterance] = words
    return by_utterance


def score_splits(
    model: torch.nn.Module,
    splits: Sequence[EncodedSplit],
    labels: Sequence[str],
    batch_size: int,
    pad_id: int,
    device: torch.device,
    precision: str = "auto",
) -> SpanCounts:
    """Span counts of `model` micro-summed over `splits`."""
    total: SpanCounts | None = None
    for split in splits:
        predicted = predict_words(model, split, batch_size, pad_id, device, precision)
        gold, mask = _pad(split.gold)
        pred, _ = _pad(predicted)
        counts = count_spans(gold, pred, labels, mask)
        total = counts if total is None else total + counts
    if total is None:
        raise ValueError("no split to score")
    return total


def _pad(rows: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Ragged rows as one zero-padded 2D array and its mask of real positions."""
    lengths = np.fromiter((len(row) for row in rows), dtype=np.int64, count=len(rows))
    mask = np.arange(lengths.max(initial=0)) < lengths[:, None]
    padded = np.zeros(mask.shape, dtype=np.int64)
    padded[mask] = np.concatenate(rows) if rows else []
    return padded, mask
