""".venv/bin/python bench/bench_span_f1.py [--sentences 100000] [--seed 0]

Times span F1 on MASSIVE-like tags: seqeval's ``f1_score`` (default mode)
against ``span_f1`` on the same tag strings and ``count_spans`` on padded
label ids with a mask, as an evaluation loop holds them. Prints a Markdown
table; every path must give seqeval's F1.

The data: sentence lengths 1 + Poisson(6) (about 7 tokens), 55 slot types with
Zipf-like frequencies, B/I/O labels (111), 0-3 spans of 1-3 tokens per
sentence. Predictions copy gold and corrupt 5% of tokens to a random label,
which also yields invalid BIO.
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Callable

import numpy as np
from seqeval.metrics import f1_score

from xlcl.evaluate.spans import count_spans, span_f1

N_TYPES = 55
CORRUPT_RATE = 0.05


def make_ids(n_sentences: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Gold label ids (sentences, max length) and the mask of real tokens."""
    lengths = 1 + rng.poisson(6, size=n_sentences)
    mask = np.arange(lengths.max()) < lengths[:, None]
    gold = np.zeros(mask.shape, dtype=np.int64)  # label 0 is "O"
    type_p = 1.0 / np.arange(1, N_TYPES + 1)
    type_p /= type_p.sum()
    n_spans = rng.choice(4, size=n_sentences, p=[0.3, 0.4, 0.2, 0.1])
    for row in np.flatnonzero(n_spans):
        for _ in range(n_spans[row]):
            span_len = rng.integers(1, 4)
            start = rng.integers(0, max(lengths[row] - span_len, 0) + 1)
            kind = rng.choice(N_TYPES, p=type_p)
            end = min(start + span_len, lengths[row])
            gold[row, start] = 1 + 2 * kind  # B-kind
            gold[row, start + 1 : end] = 2 + 2 * kind  # I-kind
    return gold, mask


def corrupt(gold: np.ndarray, n_labels: int, rng: np.random.Generator) -> np.ndarray:
    pred = gold.copy()
    flip = rng.random(gold.shape) < CORRUPT_RATE
    pred[flip] = rng.integers(0, n_labels, size=int(flip.sum()))
    return pred


def best_time(fn: Callable[[], float], repeats: int) -> tuple[float, float]:
    """Fastest of ``repeats`` calls in seconds, and the call's result."""
    times, result = [], 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    labels = ["O"] + [f"{p}-slot{k:02d}" for k in range(N_TYPES) for p in "BI"]
    gold_ids, mask = make_ids(args.sentences, rng)
    pred_ids = corrupt(gold_ids, len(labels), rng)
    gold_tags = [[labels[i] for i in row[m]] for row, m in zip(gold_ids, mask, strict=True)]
    pred_tags = [[labels[i] for i in row[m]] for row, m in zip(pred_ids, mask, strict=True)]

    def run_seqeval() -> float:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(f1_score(gold_tags, pred_tags))

    rows = [
        ("seqeval `f1_score` (tags)", run_seqeval, 3),
        ("`span_f1` (tags)", lambda: span_f1(gold_tags, pred_tags)["f1"], 5),
        (
            "`count_spans` (ids + mask)",
            lambda: count_spans(gold_ids, pred_ids, labels, mask).f1,
            20,
        ),
    ]
    results = [(name, *best_time(fn, repeats)) for name, fn, repeats in rows]
    reference = results[0][2]
    assert all(f1 == reference for _, _, f1 in results), results

    n_tokens = int(mask.sum())
    print(
        f"{args.sentences:,} sentences, {n_tokens:,} tokens, {len(labels)} labels, "
        f"padded to {mask.shape[1]}; F1 = {reference:.6f}; best of repeats\n"
    )
    print("| path | time (ms) | speed-up vs seqeval |")
    print("|---|---:|---:|")
    for name, seconds, _ in results:
        print(f"| {name} | {seconds * 1e3:.1f} | {results[0][1] / seconds:.1f}× |")


if __name__ == "__main__":
    main()
