"""Span F1 equals seqeval's default mode, quirks included; the id path equals the tag path."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from seqeval.metrics import f1_score, precision_score, recall_score

from xlcl.evaluate.spans import SpanCounts, count_spans, span_f1

Tags = list[list[str]]

# Valid BIO, BIOES, and tags seqeval parses oddly: bare prefixes, a bare type
# ("time" is prefix "t", type "ime"), "." and "O-" prefixes, lower case.
TAG_ALPHABET = [
    "O", "B-time", "I-time", "B-date", "I-date", "E-time", "S-date",
    "B", "I", "E", "S", "time", "x", ".", ".-time", "O-time", "I-_", "Btime", "b-time",
]  # fmt: skip

MASSIVE_WORDS: Tags = [
    ["wake", "me", "up", "at", "five", "am", "this", "week"],
    ["what", "is", "the", "weather", "in", "new", "york", "tomorrow"],
    ["play", "the", "latest", "song", "by", "taylor", "swift"],
    ["remind", "me", "about", "the", "dentist", "appointment", "on", "friday"],
    ["olly", "turn", "the", "lights", "off"],
    ["email", "john", "smith", "about", "the", "christmas", "party"],
    ["set", "an", "alarm", "for", "seven", "thirty"],
    ["book", "a", "table", "at", "olive", "garden", "for", "two", "tonight"],
    ["how", "long", "is", "the", "drive", "to", "san", "francisco"],
    ["thanks"],
]
# fmt: off
MASSIVE_GOLD: Tags = [
    ["O", "O", "O", "O", "B-time", "I-time", "B-date", "I-date"],
    ["O", "O", "O", "B-weather_descriptor", "O", "B-place_name", "I-place_name", "B-date"],
    ["O", "O", "O", "O", "O", "B-artist_name", "I-artist_name"],
    ["O", "O", "O", "O", "B-event_name", "I-event_name", "O", "B-date"],
    ["O", "O", "O", "O", "O"],
    ["O", "B-person", "I-person", "O", "O", "B-event_name", "I-event_name"],
    ["O", "O", "O", "O", "B-time", "I-time"],
    ["O", "O", "O", "O", "B-business_name", "I-business_name", "O", "B-business_type",
     "B-timeofday"],
    ["O", "O", "O", "O", "O", "O", "B-place_name", "I-place_name"],
    ["O"],
]
MASSIVE_PRED: Tags = [
    ["O", "O", "O", "O", "B-time", "I-time", "B-date", "I-date"],        # both right
    ["O", "O", "O", "B-weather_descriptor", "O", "B-place_name", "O", "B-date"],  # truncated
    ["O", "O", "O", "O", "O", "I-artist_name", "I-artist_name"],         # I- without B-
    ["O", "O", "O", "O", "B-event_name", "I-date", "O", "B-date"],       # type switch
    ["O", "O", "O", "B-device_type", "O"],                               # spurious
    ["O", "B-person", "I-person", "O", "O", "O", "B-event_name"],        # start moved
    ["O", "O", "O", "O", "B-time", "B-time"],                            # split
    ["O", "O", "O", "O", "B-business_name", "I-business_name", "O", "B-business_type",
     "B-time"],                                                          # wrong type
    ["O", "O", "O", "O", "O", "B-place_name", "I-place_name", "I-place_name"],  # too long
    ["O"],
]
# fmt: on


def seqeval_scores(gold: Tags, pred: Tags) -> dict[str, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "not NE tag" and zero-division warnings
        return {
            "precision": precision_score(gold, pred),
            "recall": recall_score(gold, pred),
            "f1": f1_score(gold, pred),
        }


def to_ids(
    tags: Tags, labels: list[str], n_positions: int, keep: np.ndarray, junk: int
) -> np.ndarray:
    """Padded ids with each sentence's tags at the positions ``keep`` marks, ``junk`` elsewhere."""
    ids = np.full((len(tags), n_positions), junk, dtype=np.int64)
    for row, sentence in enumerate(tags):
        ids[row, np.flatnonzero(keep[row])] = [labels.index(tag) for tag in sentence]
    return ids


# --- hand-computed cases ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("gold", "pred", "expected"),
    [
        pytest.param(  # seqeval's docstring: 3 gold, 3 pred (MISC 4..5 is wrong), 2 right
            [["O", "O", "B-MISC", "I-MISC", "B-MISC", "O", "O"], ["B-PER", "I-PER", "O"]],
            [["O", "O", "B-MISC", "I-MISC", "B-MISC", "I-MISC", "O"], ["B-PER", "I-PER", "O"]],
            (2 / 3, 2 / 3, 2 / 3),
            id="docstring",
        ),
        pytest.param(  # I- without B- opens a span: both are time 0..1
            [["I-time", "I-time", "O"]],
            [["B-time", "I-time", "O"]],
            (1.0, 1.0, 1.0),
            id="I-without-B",
        ),
        pytest.param(  # I-time after B-date: date 0..0 and time 1..2; pred has date 0..2
            [["B-date", "I-time", "I-time"]],
            [["B-date", "I-date", "I-date"]],
            (0.0, 0.0, 0.0),
            id="type-switch",
        ),
        pytest.param(  # B-date I-time: gold date 0..0 is found, pred time 1..1 is not gold
            [["B-date", "O"]],
            [["B-date", "I-time"]],
            (0.5, 1.0, 2 / 3),
            id="type-switch-half",
        ),
        pytest.param(  # S- is a one-token span; E- after S- opens another: a 0..0, a 1..1
            [["S-a", "E-a"]],
            [["B-a", "O"]],
            (1.0, 0.5, 2 / 3),
            id="S-then-E",
        ),
        pytest.param(  # bare "time" parses as prefix "t", type "ime": same span as I-ime
            [["time", "time"]],
            [["I-ime", "I-ime"]],
            (1.0, 1.0, 1.0),
            id="bare-type",
        ),
        pytest.param(  # the chunk that ends at sentence 2 starts where sentence 1's did:
            # gold a 0..0 and a 0..3 (positions count the "O" after each sentence)
            [["B-a"], [".-a", "I-a"]],
            [["B-a"], ["O", "B-a"]],
            (0.5, 0.5, 0.5),
            id="stale-start-across-sentences",
        ),
        pytest.param(  # "x" (prefix x, type _) after the initial state starts a chunk
            [["x", "B-y"]],
            [["B", "B-y"]],
            (1.0, 1.0, 1.0),
            id="initial-start",
        ),
        pytest.param(  # after the "O" that follows an empty sentence it does not: gold _ 0..1
            [[], ["x", "B-y"]],
            [[], ["B", "B-y"]],
            (0.5, 0.5, 0.5),
            id="empty-first-sentence",
        ),
        pytest.param(  # no spans anywhere: every ratio divides by zero -> 0.0
            [["O", "O"], []],
            [["O", "O"], []],
            (0.0, 0.0, 0.0),
            id="all-O-and-empty",
        ),
        pytest.param(  # nothing predicted: precision divides by zero
            [["B-time"]],
            [["O"]],
            (0.0, 0.0, 0.0),
            id="no-pred",
        ),
        pytest.param(  # gold a 0..1, b 3..3, c 5..5, c 6..6; pred a 0..1, a 3..3, c 5..6
            [["B-a", "I-a", "O", "B-b"], ["B-c", "B-c"]],
            [["B-a", "I-a", "O", "B-a"], ["B-c", "I-c"]],
            (1 / 3, 1 / 4, 2 / 7),
            id="micro-average",
        ),
    ],
)
def test_hand_computed(gold: Tags, pred: Tags, expected: tuple[float, float, float]) -> None:
    scores = span_f1(gold, pred)
    assert (scores["precision"], scores["recall"], scores["f1"]) == pytest.approx(expected)
    assert scores == seqeval_scores(gold, pred)


def test_massive_sentences() -> None:
    assert [len(s) for s in MASSIVE_GOLD] == [len(s) for s in MASSIVE_WORDS]
    scores = span_f1(MASSIVE_GOLD, MASSIVE_PRED)
    # 9 of 18 predicted spans are right, 9 of 15 gold spans are found (see test_massive_counts)
    assert (scores["precision"], scores["recall"], scores["f1"]) == pytest.approx(
        (0.5, 0.6, 6 / 11)
    )
    assert scores == seqeval_scores(MASSIVE_GOLD, MASSIVE_PRED)


def test_massive_counts() -> None:
    labels = sorted({tag for sentence in MASSIVE_GOLD + MASSIVE_PRED for tag in sentence})
    lengths = np.array([len(s) for s in MASSIVE_GOLD])
    keep = np.arange(lengths.max()) < lengths[:, None]
    counts = count_spans(
        to_ids(MASSIVE_GOLD, labels, keep.shape[1], keep, junk=0),
        to_ids(MASSIVE_PRED, labels, keep.shape[1], keep, junk=0),
        labels,
        keep,
    )
    # gold: 2+3+1+2+0+2+1+3+1+0; pred: 2+3+1+3+1+2+2+3+1+0;
    # right: 2 + 2 (weather, date) + 1 (artist via I-) + 1 (date) + 0 + 1 (person) + 0
    # + 2 (business name and type) + 0 + 0
    assert counts == SpanCounts(n_gold=15, n_pred=18, n_correct=9)
    assert counts.scores() == span_f1(MASSIVE_GOLD, MASSIVE_PRED)


# --- agreement with seqeval on random tags ---------------------------------------------------

sentences = st.lists(st.sampled_from(TAG_ALPHABET), max_size=8)


@st.composite
def gold_and_pred(draw: st.DrawFn) -> tuple[Tags, Tags]:
    # seqeval rejects zero sentences, so draw at least one
    gold = draw(st.lists(sentences, min_size=1, max_size=5))
    pred = [draw(st.lists(st.sampled_from(TAG_ALPHABET), min_size=len(s), max_size=len(s)))
            for s in gold]  # fmt: skip
    return gold, pred


@settings(max_examples=400, deadline=None)
@given(gold_and_pred())
def test_equals_seqeval(tags: tuple[Tags, Tags]) -> None:
    gold, pred = tags
    assert span_f1(gold, pred) == seqeval_scores(gold, pred)


@settings(max_examples=200, deadline=None)
@given(gold_and_pred(), st.integers(0, 2**32 - 1))
def test_ids_equal_tags(tags: tuple[Tags, Tags], seed: int) -> None:
    gold, pred = tags
    labels = sorted(set(TAG_ALPHABET))
    gen = np.random.default_rng(seed)
    # Tokens at random positions of each row, junk ids (as with non-first subwords) between.
    n_positions = max(len(s) for s in gold) + 3
    keep = np.zeros((len(gold), n_positions), dtype=bool)
    for row, sentence in enumerate(gold):
        keep[row, np.sort(gen.choice(n_positions, len(sentence), replace=False))] = True
    gold_ids = to_ids(gold, labels, n_positions, keep, junk=-100)
    pred_ids = to_ids(pred, labels, n_positions, keep, junk=len(labels) + 7)
    counts = count_spans(gold_ids, pred_ids, labels, keep)
    assert counts.scores() == span_f1(gold, pred)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(0, 40))
def test_counts_add_over_batches(seed: int, split: int) -> None:
    # With O/B/I/E/S prefixes only, no chunk crosses a sentence, so batches add up.
    gen = np.random.default_rng(seed)
    labels = ["O", "B-time", "I-time", "B-date", "I-date", "E-date", "S-time", "B", "I"]
    gold = gen.integers(0, len(labels), size=(40, 9))
    pred = gen.integers(0, len(labels), size=(40, 9))
    mask = np.arange(9) < gen.integers(0, 10, size=40)[:, None]
    whole = count_spans(gold, pred, labels, mask)
    halves = count_spans(gold[:split], pred[:split], labels, mask[:split]) + count_spans(
        gold[split:], pred[split:], labels, mask[split:]
    )
    assert halves == whole
    gold_tags = [[labels[i] for i in row[m]] for row, m in zip(gold, mask, strict=True)]
    pred_tags = [[labels[i] for i in row[m]] for row, m in zip(pred, mask, strict=True)]
    assert whole.scores() == seqeval_scores(gold_tags, pred_tags)


@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.int64])
def test_no_mask_means_every_position(dtype: type[np.integer]) -> None:
    labels = ["O", "B-time", "I-time"]
    gold = np.array([[1, 2, 0], [2, 0, 1]], dtype=dtype)
    pred = np.array([[1, 2, 2], [2, 0, 1]], dtype=dtype)
    # gold: time 0..1, time 4..4, time 6..6; pred: time 0..2, time 4..4, time 6..6
    assert count_spans(gold, pred, labels) == SpanCounts(n_gold=3, n_pred=3, n_correct=2)


# --- edge cases and errors ----------------------------------------------------------------------


def test_zero_sentences_scores_zero() -> None:
    # seqeval raises TypeError here; an empty evaluation set has no spans to score.
    assert span_f1([], []) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    empty = np.zeros((0, 4), dtype=np.int64)
    assert count_spans(empty, empty, ["O"]) == SpanCounts(0, 0, 0)


def test_zero_division_does_not_warn() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert span_f1([["O"]], [["O"]])["f1"] == 0.0


def test_length_mismatch_names_sentence() -> None:
    with pytest.raises(ValueError, match="sentence 1: 2 gold tags but 1 predicted"):
        span_f1([["O"], ["O", "B-a"]], [["O"], ["O"]])
    with pytest.raises(ValueError, match="2 gold sentences but 1 predicted"):
        span_f1([["O"], ["O"]], [["O"]])


def test_rejects_bad_input() -> None:
    with pytest.raises(TypeError, match="sentence 0 is a string"):
        span_f1(["B-a"], ["B-a"])
    with pytest.raises(ValueError, match="empty string"):
        span_f1([["", "O"]], [["O", "O"]])
    ids = np.zeros((2, 3), dtype=np.int64)
    with pytest.raises(ValueError, match=r"pred_ids holds ids outside \[0, 2\)"):
        count_spans(ids, ids + 2, ["O", "B-a"])
    with pytest.raises(ValueError, match="mask must be bool"):
        count_spans(ids, ids, ["O", "B-a"], np.ones((2, 3), dtype=np.int64))
    with pytest.raises(TypeError, match="integer label ids"):
        count_spans(ids, ids.astype(float), ["O", "B-a"])
    with pytest.raises(ValueError, match="2D arrays of one shape"):
        count_spans(ids, ids[:1], ["O", "B-a"])
