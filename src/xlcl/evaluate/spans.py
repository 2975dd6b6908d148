"""Span-level precision, recall and F1 that equal seqeval's default mode.

seqeval's default (``mode=None``) chunker is conlleval-style and lenient; we
replicate it rule for rule, invalid BIO included, so scores are comparable with
published MASSIVE numbers. Its rules, from
``seqeval.metrics.sequence_labeling.get_entities``:

- A tag is split into a *prefix* ``tag[0]`` and a *type*
  ``tag[1:].split("-", 1)[-1] or "_"``: ``"B-time"`` is (B, time), ``"O"`` is
  (O, _), ``"B"`` is (B, _) and a bare ``"time"`` is (t, ime).
- Sentences are joined into one sequence with an ``"O"`` after each, and the
  chunker walks it once. Whether a chunk ends before token i and whether one
  starts at token i depend only on the tags at i-1 and i (the ``_ends`` and
  ``_starts`` rules below). An I- or E- tag after ``O`` or after a tag of
  another type starts a chunk; an I- tag of another type after B- ends the
  chunk and starts a new one.
- A chunk that ends before token i is (type of token i-1, latest start before
  i, i-1). With prefixes other than O/B/I/E/S (``"."``, a bare type) a chunk
  can end without having started, and then takes the latest start before it,
  even one in an earlier sentence, or position 0 if there is none (the "O"
  after sentence 0 when that is empty); we reproduce that too.
- Micro-averaged: a predicted chunk is correct when the gold sequence has a
  chunk with the same type, start and end.

The two rules are evaluated once per pair of labels into a small table, so
each token costs one lookup. Each token ends at most one chunk, so gold and
predicted chunks are compared position by position, with no sets or sorting.
Seqeval also rejects zero sentences (TypeError), where we score 0.0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

# Prefix classes: the prefix characters the chunk rules single out, then the rest.
_O, _B, _I, _E, _S, _DOT, _OTHER = range(7)
_PREFIX_CLASS = {"O": _O, "B": _B, "I": _I, "E": _E, "S": _S, ".": _DOT}
_END_BIT, _START_BIT = 1, 2

IntArray = npt.NDArray[np.integer]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, eq=False)
class SentenceSpans:
    """Gold, predicted and correctly predicted spans of each sentence, in sentence order.

    A span counts for the sentence of its last token; with O/B/I/E/S labels no span
    crosses a sentence boundary, so these are seqeval's counts of each sentence alone.
    """

    n_gold: npt.NDArray[np.int64]
    n_pred: npt.NDArray[np.int64]
    n_correct: npt.NDArray[np.int64]

    def __add__(self, other: SentenceSpans) -> SentenceSpans:
        """The sentences of `self`, then those of `other`."""
        return SentenceSpans(
            np.concatenate([self.n_gold, other.n_gold]),
            np.concatenate([self.n_pred, other.n_pred]),
            np.concatenate([self.n_correct, other.n_correct]),
        )


@dataclass(frozen=True)
class SpanCounts:
    """Gold, predicted and correctly predicted span counts; add them across batches.

    Sums equal seqeval on the concatenated batches whenever every label's prefix
    is one of O/B/I/E/S (then no chunk crosses a sentence boundary). `sentences`
    holds the same counts per sentence where the counts come from `count_spans`
    (None for counts made by hand); it takes no part in equality.
    """

    n_gold: int
    n_pred: int
    n_correct: int
    sentences: SentenceSpans | None = field(default=None, compare=False, repr=False)

    def __add__(self, other: SpanCounts) -> SpanCounts:
        both = self.sentences is not None and other.sentences is not None
        return SpanCounts(
            self.n_gold + other.n_gold,
            self.n_pred + other.n_pred,
            self.n_correct + other.n_correct,
            self.sentences + other.sentences if both else None,  # type: ignore[operator]
        )

    @property
    def precision(self) -> float:
        """n_correct / n_pred, 0.0 when nothing is predicted."""
        return self.n_correct / self.n_pred if self.n_pred else 0.0

    @property
    def recall(self) -> float:
        """n_correct / n_gold, 0.0 when there is no gold span."""
        return self.n_correct / self.n_gold if self.n_gold else 0.0

    @property
    def f1(self) -> float:
        """2·P·R / (P + R), 0.0 when P + R = 0."""
        p, r = self.precision, self.recall
        # Same operation order as seqeval, so the floats are identical.
        return 2.0 * p * r / (p + r) if p + r else 0.0

    def scores(self) -> dict[str, float]:
        """``{"precision": …, "recall": …, "f1": …}``."""
        return {"precision": self.precision, "recall": self.recall, "f1": self.f1}


def span_f1(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> dict[str, float]:
    """Micro span P/R/F1 of tag sequences, equal to seqeval's default-mode scores.

    Returns ``{"precision", "recall", "f1"}``; each is 0.0 where seqeval's
    default would warn and return 0.0. Raises ValueError if the numbers of
    sentences differ or a gold and predicted sentence differ in length.
    """
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold sentences but {len(pred)} predicted")
    vocab = _Vocabulary()
    gold_ids: list[int] = []
    pred_ids: list[int] = []
    lengths: list[int] = []
    for i, (g, p) in enumerate(zip(gold, pred, strict=True)):
        if isinstance(g, str) or isinstance(p, str):
            raise TypeError(f"sentence {i} is a string, expected a sequence of tags")
        if len(g) != len(p):
            raise ValueError(f"sentence {i}: {len(g)} gold tags but {len(p)} predicted")
        gold_ids.extend(map(vocab.__getitem__, g))
        pred_ids.extend(map(vocab.__getitem__, p))
        lengths.append(len(g))
    table = _ChunkTable(list(vocab))
    counts = table.count(
        np.array(gold_ids, dtype=np.intp),
        np.array(pred_ids, dtype=np.intp),
        np.array(lengths, dtype=np.intp),
    )
    return counts.scores()


class _Vocabulary(dict[str, int]):
    """Ids of tags in order of first appearance; looking up a new tag adds it."""

    def __missing__(self, tag: str) -> int:
        self[tag] = len(self)
        return self[tag]


def count_spans(
    gold_ids: IntArray,
    pred_ids: IntArray,
    labels: Sequence[str],
    mask: BoolArray | None = None,
) -> SpanCounts:
    """Span counts of padded label-id batches, as seqeval counts their tag strings.

    ``gold_ids`` and ``pred_ids`` are (sentences, positions) arrays of indices
    into ``labels``. ``mask`` (same shape, bool) marks the positions that are
    tokens; the rest (padding, special tokens, non-first subwords, e.g.
    ``gold_ids != -100``) are skipped, so a sentence is its masked-in positions
    in order. Without a mask every position is a token. For lengths, pass
    ``np.arange(n_positions) < lengths[:, None]``.
    """
    gold_ids, pred_ids = np.asarray(gold_ids), np.asarray(pred_ids)
    if not (
        np.issubdtype(gold_ids.dtype, np.integer) and np.issubdtype(pred_ids.dtype, np.integer)
    ):
        raise TypeError(f"expected integer label ids, got {gold_ids.dtype} and {pred_ids.dtype}")
    if gold_ids.ndim != 2 or gold_ids.shape != pred_ids.shape:
        raise ValueError(
            f"expected two 2D arrays of one shape, got {gold_ids.shape} and {pred_ids.shape}"
        )
    if mask is None:
        mask = np.ones(gold_ids.shape, dtype=bool)
    mask = np.asarray(mask)
    if mask.dtype != np.bool_ or mask.shape != gold_ids.shape:
        raise ValueError(
            f"mask must be bool of shape {gold_ids.shape}, got {mask.dtype} {mask.shape}"
        )
    lengths = np.count_nonzero(mask, axis=1)
    return count_sentences(gold_ids[mask], pred_ids[mask], lengths, labels)


def count_sentences(
    gold_tokens: IntArray, pred_tokens: IntArray, lengths: IntArray, labels: Sequence[str]
) -> SpanCounts:
    """Span counts of sentences held back to back, as seqeval counts their tag strings.

    ``gold_tokens`` and ``pred_tokens`` are 1D arrays of indices into ``labels``, the
    sentences' tokens one sentence after the other; ``lengths`` gives each sentence's
    number of tokens. `count_spans` of padded batches is this on their masked-in tokens.
    """
    for name, tokens in (("gold_ids", gold_tokens), ("pred_ids", pred_tokens)):
        if tokens.size and (tokens.min() < 0 or tokens.max() >= len(labels)):
            raise ValueError(f"{name} holds ids outside [0, {len(labels)}) at masked-in positions")
    table = _ChunkTable(labels)
    return table.count(
        gold_tokens.astype(np.intp, copy=False), pred_tokens.astype(np.intp, copy=False), lengths
    )


class _ChunkTable:
    """seqeval's chunk rules for every (previous label, label) pair of a vocabulary.

    One state follows the labels: ``outside``, the "O" that seqeval puts after
    each sentence. The table takes (labels + 1)² bytes.
    """

    def __init__(self, labels: Sequence[str]) -> None:
        type_ids: dict[str, int] = {}
        prefix = np.empty(len(labels) + 1, dtype=np.int8)
        self.type = np.empty(len(labels) + 1, dtype=np.intp)
        for i, label in enumerate(labels):
            if not label:
                raise ValueError(f"label {i} is the empty string")
            prefix[i] = _PREFIX_CLASS.get(label[0], _OTHER)
            self.type[i] = type_ids.setdefault(label[1:].split("-", 1)[-1] or "_", len(type_ids))
        self.outside = len(labels)
        prefix[-1], self.type[-1] = _O, type_ids.setdefault("_", len(type_ids))
        self.size = len(labels) + 1
        prev_p, prev_t = prefix[:, None], self.type[:, None]
        cur_p, cur_t = prefix[None, :], self.type[None, :]
        end = _ends(prev_p, prev_t, cur_p, cur_t)
        start = _starts(prev_p, prev_t, cur_p, cur_t)
        self.code = (end * _END_BIT + start * _START_BIT).astype(np.uint8).ravel()

    def chunks(self, tokens: IntArray, lengths: IntArray) -> tuple[BoolArray, BoolArray]:
        """Whether a chunk starts at each token, and whether one ends there (inclusive).

        ``tokens`` holds the sentences back to back, ``lengths`` their lengths.
        Positions index ``tokens``; seqeval's positions also count the "O"
        after each sentence, a monotone relabelling that preserves equality.
        """
        ends_at = np.cumsum(lengths)
        nonempty = lengths > 0
        first, last = (ends_at - lengths)[nonempty], ends_at[nonempty] - 1
        pair = np.empty_like(tokens)
        pair[1:] = tokens[:-1]
        pair[first] = self.outside
        np.multiply(pair, self.size, out=pair)
        np.add(pair, tokens, out=pair)
        code = np.take(self.code, pair)
        # seqeval's chunk start is 0 before any chunk has started: token 0 itself,
        # unless sentence 0 is empty and position 0 is the "O" after it.
        if lengths[0]:
            code[0] |= _START_BIT
        # A chunk ends at token i when the rules say so for the pair (i, i + 1),
        # where i + 1 is the "O" after a sentence's last token.
        next_code = np.empty_like(code)
        next_code[:-1] = code[1:]
        next_code[last] = np.take(self.code, tokens[last] * self.size + self.outside)
        return (code & _START_BIT) != 0, (next_code & _END_BIT) != 0

    def count(self, gold: IntArray, pred: IntArray, lengths: IntArray) -> SpanCounts:
        """Counts of two label-id sequences that hold sentences of ``lengths`` back to back,
        in total and per sentence."""
        if gold.size == 0:
            empty = np.zeros(len(lengths), dtype=np.int64)
            return SpanCounts(0, 0, 0, SentenceSpans(empty, empty.copy(), empty.copy()))
        gold_starts, gold_ends = self.chunks(gold, lengths)
        pred_starts, pred_ends = self.chunks(pred, lengths)
        both_end = np.flatnonzero(gold_ends & pred_ends)
        # A chunk starts at the latest start at or before its end. Two chunks that end
        # together start together iff the latest start of either is a start of both,
        # or neither has started (both then take seqeval's initial position).
        latest = np.where(gold_starts | pred_starts, np.arange(gold.size), -1)
        np.maximum.accumulate(latest, out=latest)
        latest = latest[both_end]
        same_start = (latest < 0) | (gold_starts[latest] & pred_starts[latest])
        same_type = self.type[gold[both_end]] == self.type[pred[both_end]]
        correct_ends = both_end[same_start & same_type]
        sentence = np.repeat(np.arange(len(lengths)), lengths)  # the sentence of each token
        sentences = SentenceSpans(
            *(
                np.bincount(sentence[ends], minlength=len(lengths)).astype(np.int64)
                for ends in (np.flatnonzero(gold_ends), np.flatnonzero(pred_ends), correct_ends)
            )
        )
        return SpanCounts(
            n_gold=int(np.count_nonzero(gold_ends)),
            n_pred=int(np.count_nonzero(pred_ends)),
            n_correct=len(correct_ends),
            sentences=sentences,
        )


def _ends(prev_p: IntArray, prev_t: IntArray, cur_p: IntArray, cur_t: IntArray) -> BoolArray:
    """seqeval's ``end_of_chunk`` on prefix classes and type ids (broadcasts)."""
    prev_closed = (prev_p == _E) | (prev_p == _S)
    prev_open = (prev_p == _B) | (prev_p == _I)
    cur_breaks = (cur_p == _B) | (cur_p == _S) | (cur_p == _O)
    prev_typed = (prev_p != _O) & (prev_p != _DOT)
    return prev_closed | (prev_open & cur_breaks) | (prev_typed & (prev_t != cur_t))


def _starts(prev_p: IntArray, prev_t: IntArray, cur_p: IntArray, cur_t: IntArray) -> BoolArray:
    """seqeval's ``start_of_chunk`` on prefix classes and type ids (broadcasts)."""
    cur_opens = (cur_p == _B) | (cur_p == _S)
    prev_outside = (prev_p == _E) | (prev_p == _S) | (prev_p == _O)
    cur_inside = (cur_p == _E) | (cur_p == _I)
    cur_typed = (cur_p != _O) & (cur_p != _DOT)
    return cur_opens | (prev_outside & cur_inside) | (cur_typed & (prev_t != cur_t))
