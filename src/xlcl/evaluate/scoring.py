"""Score a model on encoded splits: batched passes, argmax on the device, span counts.

A pass (`argmax_by_length`) takes the utterances of any number of splits together, sorted
by length; its subword predictions come to the host in one transfer and go back to words
by index arithmetic on flat arrays (`predict_flat_words`). `count_each` counts the spans of
each split of such a pass: a row of the score matrix in one pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from xlcl.encode import EncodedSplit, collate_batch, epoch_batches
from xlcl.evaluate.spans import SpanCounts, count_sentences

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


@dataclass(frozen=True)
class ByLength:
    """What a pass predicted: the argmax of each batch, left on the device, and which
    utterances the batches hold."""

    batches: list[torch.Tensor]  # (rows, width) per batch, or (rows,) for a sequence head
    order: np.ndarray  # the index into the concatenated splits of each row, batch by batch

    def to_host(self) -> np.ndarray:
        """Every batch flattened, one after the other, in one transfer from the device."""
        return torch.cat([batch.flatten() for batch in self.batches]).cpu().numpy()

    def row_starts(self) -> np.ndarray:
        """Where each utterance's row starts in `to_host`, in the order of the splits."""
        widths = np.repeat(
            [batch.shape[1] for batch in self.batches], [batch.shape[0] for batch in self.batches]
        )
        starts = np.empty(len(self.order), dtype=np.int64)
        starts[self.order] = np.cumsum(widths) - widths
        return starts


@torch.no_grad()
def argmax_by_length(
    model: torch.nn.Module,
    splits: Sequence[EncodedSplit],
    batch_size: int,
    pad_id: int,
    device: torch.device,
    precision: str = "auto",
) -> ByLength:
    """The model's argmax over its logits' last axis, batch by batch, left on the device.

    The batches are `iterate_batches`'s without a generator: the utterances of `splits`
    together, sorted by length. The model runs in eval mode and is put back in the mode it
    was in.
    """
    if not splits:
        raise ValueError("no split to score")
    was_training = model.training
    model.eval()
    indices = epoch_batches(splits, batch_size, rng=None)
    on_device: list[torch.Tensor] = []
    with mixed_precision(precision, device):
        for batch_indices in indices:
            batch = collate_batch(splits, batch_indices, pad_id).to(device)
            logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
            on_device.append(logits.argmax(dim=-1))
    model.train(was_training)
    return ByLength(on_device, np.concatenate(indices))


def word_counts(split: EncodedSplit) -> np.ndarray:
    """Number of words of each utterance of `split`."""
    return np.fromiter((len(firsts) for firsts in split.first_token), np.int64, len(split))


def predict_flat_words(
    model: torch.nn.Module,
    splits: Sequence[EncodedSplit],
    batch_size: int,
    pad_id: int,
    device: torch.device,
    precision: str = "auto",
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Predicted label id of every word of `splits`, from one pass over all of them: split
    by split, utterance by utterance, word by word (``O`` for a word with no subword); and
    each split's `word_counts`, which say where its utterances' words are."""
    by_length = argmax_by_length(model, splits, batch_size, pad_id, device, precision)
    tokens = by_length.to_host()  # the pass's one host-device sync
    firsts = np.concatenate([firsts for split in splits for firsts in split.first_token])
    words = [word_counts(split) for split in splits]
    positions = np.repeat(by_length.row_starts(), np.concatenate(words)) + firsts
    kept = firsts >= 0
    predicted = np.full(len(firsts), OUTSIDE, dtype=np.int64)
    predicted[kept] = tokens[positions[kept]]
    return predicted, words


def predict_words(
    model: torch.nn.Module,
    split: EncodedSplit,
    batch_size: int,
    pad_id: int,
    device: torch.device,
    precision: str = "auto",
) -> list[np.ndarray]:
    """Predicted label id of every word of `split`, an array per utterance (``O`` for words
    with no subword)."""
    predicted, (words,) = predict_flat_words(model, [split], batch_size, pad_id, device, precision)
    return np.split(predicted, np.cumsum(words)[:-1])


def count_each(
    model: torch.nn.Module,
    splits: Sequence[EncodedSplit],
    labels: Sequence[str],
    batch_size: int,
    pad_id: int,
    device: torch.device,
    precision: str = "auto",
) -> list[SpanCounts]:
    """Span counts of `model` on each of `splits`, from one pass over all of them."""
    predicted, words = predict_flat_words(model, splits, batch_size, pad_id, device, precision)
    ends = np.cumsum([lengths.sum() for lengths in words])[:-1]
    return [
        count_sentences(np.concatenate(split.gold), pred, lengths, labels)
        for split, pred, lengths in zip(splits, np.split(predicted, ends), words, strict=True)
    ]


def score_splits(
    model: torch.nn.Module,
    splits: Sequence[EncodedSplit],
    labels: Sequence[str],
    batch_size: int,
    pad_id: int,
    device: torch.device,
    precision: str = "auto",
) -> SpanCounts:
    """Span counts of `model` micro-summed over `splits`, one pass per split.

    A pass per split, not one over all: other batch partners can move a logit by a
    rounding step, and the dev scores that pick a MULTI run's epochs stay as they were.
    """
    if not splits:
        raise ValueError("no split to score")
    counts = [
        count_each(model, [split], labels, batch_size, pad_id, device, precision)[0]
        for split in splits
    ]
    return sum(counts[1:], start=counts[0])
