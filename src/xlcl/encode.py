"""Words and BIO tags to subword tensors: first-subword labels and length-bucketed batches.

Only the first subword of a word carries its label; the other subwords and the special
tokens get -100. A word the tokenizer turns into no subword, or that truncation cuts off,
is predicted as ``O`` at evaluation, so scores are always over the original words.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from xlcl.data import Utterance

IGNORE = -100


@dataclass(frozen=True)
class EncodedSplit:
    """One locale's split, tokenized: ragged per-utterance arrays.

    ``first_token[u][w]`` is the index of word ``w``'s first subword in ``input_ids[u]``,
    or -1 when the word has none (empty tokenization or truncated).
    """

    locale: str
    input_ids: list[np.ndarray]
    labels: list[np.ndarray]
    gold: list[np.ndarray]
    first_token: list[np.ndarray]

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def lengths(self) -> np.ndarray:
        """Subword length of each utterance."""
        return np.fromiter((len(ids) for ids in self.input_ids), dtype=np.int64)

    def subset(self, indices: Sequence[int] | np.ndarray) -> EncodedSplit:
        """The utterances `indices` of this split, in that order (no array is copied)."""
        return EncodedSplit(
            self.locale,
            [self.input_ids[i] for i in indices],
            [self.labels[i] for i in indices],
            [self.gold[i] for i in indices],
            [self.first_token[i] for i in indices],
        )


def encode(
    utterances: Sequence[Utterance],
    tokenizer: PreTrainedTokenizerBase,
    label_ids: dict[str, int],
    max_length: int,
) -> EncodedSplit:
    """Tokenize `utterances` (all of one locale) and align their tags to first subwords."""
    if not utterances:
        raise ValueError("cannot encode an empty split")
    if not tokenizer.is_fast:
        raise ValueError("xlcl needs a fast tokenizer (word_ids) for label alignment")
    locale = utterances[0].locale
    batch = tokenizer(
        [list(u.words) for u in utterances],
        is_split_into_words=True,
        truncation=True,
        max_length=max_length,
    )
    input_ids, labels, gold, first_token = [], [], [], []
    for index, utterance in enumerate(utterances):
        ids = np.asarray(batch["input_ids"][index], dtype=np.int64)
        tags = np.asarray([label_ids[tag] for tag in utterance.tags], dtype=np.int64)
        firsts = np.full(len(tags), -1, dtype=np.int64)
        seen: set[int] = set()
        for position, word in enumerate(batch.word_ids(index)):
            if word is not None and word not in seen:
                seen.add(word)
                firsts[word] = position
        token_labels = np.full(len(ids), IGNORE, dtype=np.int64)
        kept = firsts >= 0
        if not kept.any():
            raise ValueError(
                f"{locale} utterance {utterance.id}: no word survives tokenization "
                f"(max_length={max_length})"
            )
        token_labels[firsts[kept]] = tags[kept]
        input_ids.append(ids)
        labels.append(token_labels)
        gold.append(tags)
        first_token.append(firsts)
    return EncodedSplit(locale, input_ids, labels, gold, first_token)


@dataclass(frozen=True)
class Batch:
    """Padded tensors of some utterances of one or more splits."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor

    def to(self, device: torch.device) -> Batch:
        """The same batch on `device`.

        To a GPU it goes through pinned memory: a copy from pageable memory would wait for
        the device to finish its queued work (a host-device sync per batch).
        """
        pin = device.type == "cuda"
        return Batch(*(_to(tensor, device, pin) for tensor in self.tensors))

    @property
    def tensors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Input ids, attention mask and labels."""
        return self.input_ids, self.attention_mask, self.labels


def _to(tensor: torch.Tensor, device: torch.device, pin: bool) -> torch.Tensor:
    return (tensor.pin_memory() if pin else tensor).to(device, non_blocking=True)


def collate(
    input_ids: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    pad_id: int,
    pad_to_multiple: int = 1,
) -> Batch:
    """Pad to the longest utterance of the batch (dynamic padding), rounded up to a multiple."""
    longest = max(len(ids) for ids in input_ids)
    width = -(-longest // pad_to_multiple) * pad_to_multiple
    ids = np.full((len(input_ids), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(input_ids), width), dtype=np.int64)
    targets = np.full((len(input_ids), width), IGNORE, dtype=np.int64)
    for row, (tokens, tags) in enumerate(zip(input_ids, labels, strict=True)):
        ids[row, : len(tokens)] = tokens
        mask[row, : len(tokens)] = 1
        targets[row, : len(tags)] = tags
    return Batch(torch.from_numpy(ids), torch.from_numpy(mask), torch.from_numpy(targets))


BUCKET_WINDOW = 50  # batches sorted by length together; `TrainConfig.bucket_window`


def bucketed_batches(
    lengths: np.ndarray,
    batch_size: int,
    rng: np.random.Generator | None,
    window: int = BUCKET_WINDOW,
) -> list[np.ndarray]:
    """Index batches of similar length.

    With `rng` (training): shuffle, sort within windows of `window` batches, shuffle the
    batches (``window=1``: random batches, only padded to their own longest utterance).
    Without (evaluation): sorted by length, deterministic.
    """
    if rng is None:
        order = np.argsort(lengths, kind="stable")
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    order = rng.permutation(len(lengths))
    span = batch_size * window  # utterances sorted together
    batches: list[np.ndarray] = []
    for start in range(0, len(order), span):
        chunk = order[start : start + span]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def epoch_batches(
    splits: Sequence[EncodedSplit],
    batch_size: int,
    rng: np.random.Generator | None,
    window: int = BUCKET_WINDOW,
) -> list[np.ndarray]:
    """One epoch's batches over the union of `splits`, as indices into their concatenation.

    MULTI trains on all locales at once; the others pass one split. `window`: see
    `bucketed_batches`.
    """
    lengths = np.concatenate([split.lengths for split in splits])
    return bucketed_batches(lengths, batch_size, rng, window)


def collate_batch(
    splits: Sequence[EncodedSplit], indices: np.ndarray, pad_id: int, pad_to_multiple: int = 1
) -> Batch:
    """The padded batch of utterances `indices` of the concatenated `splits`."""
    return collate(*gather(splits, indices), pad_id, pad_to_multiple)


def gather(
    splits: Sequence[EncodedSplit], indices: np.ndarray
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Input ids and token labels of utterances `indices` of the concatenated `splits`."""
    offsets = np.cumsum([0, *(len(split) for split in splits)])
    position = np.searchsorted(offsets, indices, side="right") - 1
    input_ids, labels = [], []
    for split_index, utterance in zip(position, indices - offsets[position], strict=True):
        input_ids.append(splits[split_index].input_ids[utterance])
        labels.append(splits[split_index].labels[utterance])
    return input_ids, labels


def iterate_batches(
    splits: Sequence[EncodedSplit],
    batch_size: int,
    pad_id: int,
    rng: np.random.Generator | None,
) -> Iterator[Batch]:
    """Padded batches of one epoch over the union of `splits`."""
    for indices in epoch_batches(splits, batch_size, rng):
        yield collate_batch(splits, indices, pad_id)
