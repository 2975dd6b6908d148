"""The paired bootstrap equals a brute-force one; per-utterance counts give seqeval's F1."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from seqeval.metrics import f1_score
from seqeval.metrics.sequence_labeling import get_entities

from xlcl.cell_counts import CORRECT, SPANS, CellCounts, UtteranceCounts, scores_from_sums
from xlcl.evaluate.spans import count_spans
from xlcl.metrics import ScoreMatrix
from xlcl.metrics.bootstrap import CI_METRICS, Bootstrap, stacked_metrics
from xlcl.schedules import INDEPENDENT, JOINT, SEQUENTIAL

nan = np.nan
ORDER = ("en-US", "de-DE", "ja-JP")
B = 40  # resamples: enough for distinct quantiles, few enough for the explicit loops

# tp, fp, fn of each utterance in each cell: SPAN_CELLS[locale][step] = [(tp, fp, fn), ...].
# Gold spans (tp + fn) are one test set's: the same at every step.
SPAN_CELLS = {
    "en-US": [
        [(0, 2, 1), (0, 1, 2), (0, 0, 1), (0, 3, 0)],
        [(1, 0, 0), (1, 1, 1), (1, 0, 0), (0, 0, 0)],
        [(1, 0, 0), (2, 0, 0), (0, 1, 1), (0, 1, 0)],
        [(0, 1, 1), (2, 0, 0), (1, 0, 0), (0, 0, 0)],
    ],
    "de-DE": [
        [(0, 1, 2), (0, 0, 1), (0, 2, 0), (0, 0, 1), (0, 1, 1)],
        [(1, 0, 1), (0, 1, 1), (0, 0, 0), (1, 0, 0), (0, 0, 1)],
        [(2, 0, 0), (1, 0, 0), (0, 0, 0), (1, 1, 0), (1, 0, 0)],
        [(1, 1, 1), (1, 0, 0), (0, 2, 0), (0, 0, 1), (1, 0, 0)],
    ],
    "ja-JP": [
        [(0, 0, 3), (0, 1, 1), (0, 0, 0)],
        [(1, 0, 2), (0, 0, 1), (0, 1, 0)],
        [(2, 1, 1), (1, 0, 0), (0, 0, 0)],
        [(3, 0, 0), (1, 0, 0), (0, 0, 0)],
    ],
}


def span_run(
    cells: dict[str, list[list[tuple[int, int, int]]]] = SPAN_CELLS,
) -> tuple[ScoreMatrix, CellCounts]:
    counted = [
        (step, locale, UtteranceCounts.spans(*np.array(rows).T))
        for locale, steps in cells.items()
        for step, rows in enumerate(steps)
    ]
    counts = CellCounts.from_cells(counted)
    scores = np.full((4, 3), nan)
    for step, locale, cell in counted:
        scores[step, ORDER.index(locale)] = cell.score()
    return ScoreMatrix(ORDER, scores, SEQUENTIAL), counts


def accuracy_run(schedule=INDEPENDENT) -> tuple[ScoreMatrix, CellCounts]:
    """An accuracy run: each model scores only its own locale (off-diagonal cells NaN)."""
    rng = np.random.default_rng(7)
    sizes = {"en-US": 6, "de-DE": 4, "ja-JP": 5}
    rows = schedule.rows(3)
    scores = np.full((rows, 3), nan)
    counted = []
    for j, locale in enumerate(ORDER):
        for step in range(rows):
            if step in (0, schedule.scoring_step(j + 1, 3)):
                cell = UtteranceCounts.correct(rng.random(sizes[locale]) < 0.3 + 0.2 * step)
                counted.append((step, locale, cell))
                scores[step, j] = cell.score()
    return ScoreMatrix(ORDER, scores, schedule), CellCounts.from_cells(counted)


def brute_force(
    boot: Bootstrap, matrix: ScoreMatrix, counts: CellCounts
) -> tuple[np.ndarray, dict[str, list[float]]]:
    """The bootstrap by its definition: per resample, each locale's utterances drawn one by
    one (the same draws), each cell's counts summed utterance by utterance, the score and
    the metrics (`xlcl.metrics.per_run`) of the resampled matrix."""
    draws = {}
    for locale in matrix.order:
        n = counts.locales[locale].counts.shape[0]
        draws[locale] = boot.generator(locale, n).integers(0, n, size=(boot.resamples, n))
    stack = np.full((boot.resamples, *matrix.scores.shape), nan)
    samples: dict[str, list[float]] = {name: [] for name in CI_METRICS}
    for b in range(boot.resamples):
        for j, locale in enumerate(matrix.order):
            for step in range(matrix.scores.shape[0]):
                if np.isnan(matrix.scores[step, j]):
                    continue
                cell = counts.locales[locale].cell(step, counts.kind)
                assert cell is not None
                sums = [0] * len(cell.columns)
                for utterance in draws[locale][b]:
                    for column in range(len(sums)):
                        sums[column] += int(cell.counts[utterance, column])
                if counts.kind == SPANS:
                    tp, fp, fn = sums
                    score = 2 * tp / (2 * tp + fp + fn) if 2 * tp + fp + fn else 0.0
                else:
                    score = sums[0] / len(draws[locale][b])
                stack[b, step, j] = score
        resampled = ScoreMatrix(matrix.order, stack[b], matrix.schedule)
        for name, metric in CI_METRICS.items():
            samples[name].append(metric(resampled))
    return stack, samples


def quantiles(samples: list[float], level: float) -> list[float]:
    return list(np.quantile(samples, [(1 - level) / 2, (1 + level) / 2]))


@pytest.mark.parametrize(
    "make", [span_run, accuracy_run, lambda: accuracy_run(JOINT)], ids=["spans", "acc", "joint"]
)
def test_resamples_equal_a_brute_force_bootstrap_exactly(make) -> None:
    matrix, counts = make()
    boot = Bootstrap(resamples=B, seed=3, level=0.9)
    stack, samples = brute_force(boot, matrix, counts)
    np.testing.assert_array_equal(boot.scores(matrix, counts), stack)
    for name, values in boot.samples(matrix, counts).items():
        np.testing.assert_array_equal(values, samples[name], err_msg=name)
    for name, interval in boot.run_intervals(matrix, counts).items():
        assert interval.estimate == CI_METRICS[name](matrix) or np.isnan(interval.estimate)
        if np.isnan(samples[name]).any():
            assert np.isnan(interval.low) and np.isnan(interval.high)
        else:
            assert [interval.low, interval.high] == quantiles(samples[name], 0.9), name


def test_a_spread_out_interval_holds_the_estimate() -> None:
    matrix, counts = span_run()
    intervals = Bootstrap(resamples=400, seed=0).run_intervals(matrix, counts)
    for name in ("final_score", "cbt", "cft"):
        interval = intervals[name]
        assert interval.low < interval.estimate < interval.high, (name, interval)


def test_means_and_differences_of_runs_equal_the_brute_force_ones() -> None:
    first = span_run()
    # Another method on the same test sets: the same gold spans, other errors.
    other = {
        locale: [[(max(tp - 1, 0), fp + 1, fn + (tp > 0)) for tp, fp, fn in row] for row in rows]
        for locale, rows in SPAN_CELLS.items()
    }
    second = span_run(other)
    boot = Bootstrap(resamples=B, seed=11, level=0.8)
    a, b = brute_force(boot, *first)[1], brute_force(boot, *second)[1]
    mean = boot.mean_intervals([first, second])
    diff = boot.difference_intervals([first], [second])
    for name in ("final_score", "cbt", "cft"):
        pooled = list(np.mean([a[name], b[name]], axis=0))
        assert [mean[name].low, mean[name].high] == quantiles(pooled, 0.8), name
        paired = list(np.array(a[name]) - np.array(b[name]))
        assert [diff[name].low, diff[name].high] == quantiles(paired, 0.8), name
        assert diff[name].estimate == CI_METRICS[name](first[0]) - CI_METRICS[name](second[0])


@pytest.mark.parametrize(
    "make", [span_run, accuracy_run, lambda: accuracy_run(JOINT)], ids=["spans", "acc", "joint"]
)
def test_each_locales_final_score_interval_equals_the_brute_force_one(make) -> None:
    first, second = (
        make(),
        span_run(
            {locale: rows[::-1] for locale, rows in SPAN_CELLS.items()}  # other final cells
        ),
    )
    boot = Bootstrap(resamples=B, seed=5, level=0.8)
    finals = []
    for matrix, counts in (first, second):
        stack = brute_force(boot, matrix, counts)[0]
        t = matrix.n_locales
        rows = [matrix.schedule.scoring_step(j + 1, t) for j in range(t)]
        finals.append({locale: stack[:, rows[j], j] for j, locale in enumerate(matrix.order)})
    for runs, drawn in (([first], finals[:1]), ([first, second], finals)):
        intervals = boot.locale_intervals(runs)
        assert list(intervals) == list(ORDER)
        for j, locale in enumerate(ORDER):
            values = [m.scores[m.schedule.scoring_step(j + 1, 3), j] for m, _ in runs]
            pooled = list(np.mean([found[locale] for found in drawn], axis=0))
            assert intervals[locale].estimate == pytest.approx(np.mean(values)), locale
            assert [intervals[locale].low, intervals[locale].high] == quantiles(pooled, 0.8)


def test_the_difference_needs_the_same_test_sets() -> None:
    smaller = {locale: [rows[:-1] for rows in steps] for locale, steps in SPAN_CELLS.items()}
    with pytest.raises(ValueError, match="not the same test set of en-US: 4 and 3"):
        Bootstrap(resamples=5).difference_intervals([span_run()], [span_run(smaller)])


def test_a_locale_draws_the_same_utterances_in_every_run_and_set_of_runs() -> None:
    boot, again = Bootstrap(resamples=8, seed=5), Bootstrap(resamples=8, seed=5)
    np.testing.assert_array_equal(boot.weights("de-DE", 5), again.weights("de-DE", 5))
    assert (boot.weights("de-DE", 5).sum(axis=1) == 5).all()
    assert not np.array_equal(boot.weights("de-DE", 5), boot.weights("ja-JP", 5))
    assert not np.array_equal(boot.weights("de-DE", 5), Bootstrap(8, seed=6).weights("de-DE", 5))


def test_a_scored_cell_without_counts_is_refused() -> None:
    matrix, counts = span_run()
    partial = CellCounts.from_cells(c for c in counts.cells() if c[:2] != (2, "de-DE"))
    with pytest.raises(ValueError, match=r"no per-utterance counts of de-DE at step\(s\) \[2\]"):
        Bootstrap(resamples=3).scores(matrix, partial)


SCHEDULE_MASKS = {
    "sequential": SEQUENTIAL,
    "independent": INDEPENDENT,
    "joint": JOINT,
}


@pytest.mark.parametrize("name", SCHEDULE_MASKS)
@pytest.mark.parametrize("seed", range(6))
def test_stacked_metrics_are_the_per_run_metrics(name: str, seed: int) -> None:
    schedule = SCHEDULE_MASKS[name]
    rng = np.random.default_rng(seed)
    t = int(rng.integers(1, 6))
    scores = rng.random((4, schedule.rows(t), t))
    scores[:, rng.random(scores.shape[1:]) < 0.2] = nan  # holes: the same in every resample
    matrix = ScoreMatrix(tuple(f"l{i}" for i in range(t)), scores[0], schedule)
    stacked = stacked_metrics(scores, matrix)
    for b in range(scores.shape[0]):
        one = ScoreMatrix(matrix.order, scores[b], schedule)
        for metric, values in stacked.items():
            expected = CI_METRICS[metric](one)
            assert values[b] == expected or (np.isnan(values[b]) and np.isnan(expected)), metric


# MASSIVE-like sentences with the errors a tagger makes, and the seqeval identity.
LABELS = ["O", "B-time", "I-time", "B-date", "I-date", "B-place_name", "I-place_name"]
GOLD = [
    ["O", "O", "B-time", "I-time", "B-date", "I-date"],
    ["O", "B-place_name", "I-place_name", "B-date"],
    ["O", "O", "O"],
    ["B-date", "O", "B-time", "I-time", "I-time"],
    ["O", "B-place_name", "O", "B-date", "I-date"],
    ["B-time"],
]
PRED = [
    ["O", "O", "B-time", "I-time", "B-date", "I-date"],  # right
    ["O", "B-place_name", "O", "B-date"],  # truncated
    ["O", "B-date", "O"],  # spurious
    ["I-date", "O", "B-time", "B-time", "I-time"],  # I- without B-, split
    ["O", "B-place_name", "O", "I-time", "I-date"],  # type switch inside
    ["O"],  # missed
]


def sentence_counts(gold: list[list[str]], pred: list[list[str]]) -> UtteranceCounts:
    ids = {label: i for i, label in enumerate(LABELS)}
    width = max(len(s) for s in gold)
    gold_ids, pred_ids = np.zeros((len(gold), width), int), np.zeros((len(gold), width), int)
    mask = np.zeros((len(gold), width), bool)
    for i, (g, p) in enumerate(zip(gold, pred, strict=True)):
        gold_ids[i, : len(g)] = [ids[t] for t in g]
        pred_ids[i, : len(p)] = [ids[t] for t in p]
        mask[i, : len(g)] = True
    found = count_spans(gold_ids, pred_ids, LABELS, mask).sentences
    assert found is not None
    tp = found.n_correct
    return UtteranceCounts.spans(tp, found.n_pred - tp, found.n_gold - tp)


def seqeval_f1(gold: list[list[str]], pred: list[list[str]]) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(f1_score(gold, pred))


def test_each_sentence_has_seqeval_s_counts_and_resamples_give_seqeval_s_f1() -> None:
    counts = sentence_counts(GOLD, PRED)
    for (tp, fp, fn), g, p in zip(counts.counts, GOLD, PRED, strict=True):
        gold_spans, pred_spans = set(get_entities(g)), set(get_entities(p))
        assert (tp, fp, fn) == (
            len(gold_spans & pred_spans),
            len(pred_spans - gold_spans),
            len(gold_spans - pred_spans),
        )
    assert counts.score() == pytest.approx(seqeval_f1(GOLD, PRED), abs=1e-12)
    weights = Bootstrap(resamples=30, seed=1).weights("en-US", len(GOLD))
    resampled = scores_from_sums(SPANS, weights @ counts.counts, len(GOLD))
    for w, score in zip(weights.astype(int), resampled, strict=True):
        drawn = np.repeat(np.arange(len(GOLD)), w)
        f1 = seqeval_f1([GOLD[i] for i in drawn], [PRED[i] for i in drawn])
        assert score == pytest.approx(f1, abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 7), min_size=1, max_size=6), st.randoms(use_true_random=False))
def test_per_sentence_counts_are_seqeval_s_on_random_tags(lengths, random) -> None:
    # Invalid BIO included (I- after O, I- of another type): each sentence still alone.
    gold = [[random.choice(LABELS) for _ in range(n)] for n in lengths]
    pred = [[random.choice(LABELS) for _ in range(n)] for n in lengths]
    counts = sentence_counts(gold, pred)
    for (tp, fp, fn), g, p in zip(counts.counts, gold, pred, strict=True):
        gold_spans, pred_spans = set(get_entities(g)), set(get_entities(p))
        assert tp == len(gold_spans & pred_spans)
        assert (tp + fn, tp + fp) == (len(gold_spans), len(pred_spans))
    totals = counts.totals()
    all_gold = sum(len(get_entities(g)) for g in gold)
    all_pred = sum(len(get_entities(p)) for p in pred)
    assert (totals["tp"] + totals["fn"], totals["tp"] + totals["fp"]) == (all_gold, all_pred)
    assert counts.score() == pytest.approx(seqeval_f1(gold, pred), abs=1e-12)


def test_accuracy_counts_score_the_share_right() -> None:
    cell = UtteranceCounts.correct([True, False, True, True])
    assert cell.kind == CORRECT and cell.score() == 0.75 and cell.totals() == {"correct": 3}
    with pytest.raises(ValueError, match="correct counts are 0 or 1"):
        UtteranceCounts(CORRECT, np.array([[2]]))
