"""A row of the score matrix scored cell by cell against in one pass, side by side (CPU).

Command (MASSIVE from $XLCL_MASSIVE, else the shared archive beside the repository)::

    .venv/bin/python bench/bench_scoring.py [--locales 6] [--utterances 200] [--repeats 3]

One row as `xlcl.protocol.Scorer.cells` scores it, for slot filling: the test sets of the
first ``--locales`` locales of the paper's order 1 (``--utterances`` each), by

- cell by cell: `Task.score_each`'s default, one `MassiveSlots.score` per test set (a
  pass per test set: what rows did before `MassiveSlots.score_each`);
- one pass: `MassiveSlots.score_each`, all test sets in the same length-sorted batches.

The model is the quick demo's (``configs/demo/quick/vanilla.yaml``): the offline
multilingual-e5-small (``e5-small-offline``) with its vocabulary trimmed to the row's
tokens, a fresh head, max_length 64, ``evaluate.batch_size`` (128 unless
``--batch-size``), fp32 unless ``--precision bf16``. The paths take turns, each timed
``--repeats`` times after one untimed row; the table gives the fastest and the median row,
and the ratio of the medians. Every cell of the two paths is compared: in fp32 they must be
equal, every count and per-utterance count (the script fails otherwise); in bf16 it prints
how many cells and utterances differ. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoTokenizer
from transformers.utils import logging as transformers_logging

from xlcl.checkpoint import latest_checkpoint
from xlcl.config import load_config
from xlcl.data import ORDERS
from xlcl.demo import CONFIG_DIR, QUICK
from xlcl.encode import EncodedSplit, epoch_batches
from xlcl.models import VocabularyTrim, resolve_model
from xlcl.protocol import Models, _encode_all, _load_weights, _trim_vocabulary
from xlcl.store import VOCABULARY, stored_config
from xlcl.tasks import Task, TaskScore
from xlcl.tasks.massive_slots import MassiveSlots

REPO = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")

Row = Callable[[], list[TaskScore]]


def timed(row: Row) -> tuple[float, list[TaskScore]]:
    """Seconds one row takes, and its cells."""
    started = time.perf_counter()
    cells = row()
    return time.perf_counter() - started, cells


def padded(splits: list[EncodedSplit], batch_size: int) -> int:
    """Subword positions of the batches of one pass over `splits`, padding included."""
    lengths = np.concatenate([split.lengths for split in splits])
    return sum(
        len(batch) * int(lengths[batch].max()) for batch in epoch_batches(splits, batch_size, None)
    )


def differing(a: list[TaskScore], b: list[TaskScore]) -> tuple[int, int]:
    """Cells whose fields differ, and utterances whose counts differ."""
    cells = utterances = 0
    for x, y in zip(a, b, strict=True):
        assert x.utterances is not None and y.utterances is not None
        rows = np.any(x.utterances.counts != y.utterances.counts, axis=1)
        utterances += int(np.count_nonzero(rows))
        fields = dataclasses.replace(x, utterances=None), dataclasses.replace(y, utterances=None)
        cells += fields[0] != fields[1] or bool(rows.any())
    return cells, utterances


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--locales", type=int, default=6, help="test sets in the row")
    parser.add_argument("--utterances", type=int, default=200, help="test utterances a locale")
    parser.add_argument("--repeats", type=int, default=3, help="timed rows a path")
    parser.add_argument("--batch-size", type=int, default=None, help="evaluate.batch_size")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (%(default)s)")
    parser.add_argument(
        "--run",
        type=Path,
        default=None,
        help="a finished run directory: its trained model (last checkpoint) and test sets "
        "instead of a fresh head (--locales and --utterances then come from the run)",
    )
    args = parser.parse_args()
    archive = os.environ.get("XLCL_MASSIVE") or str(
        REPO.parent / "shared" / "data" / "amazon-massive-dataset-1.1.tar.gz"
    )
    torch.set_num_threads(args.threads)
    transformers_logging.set_verbosity_error()  # not the new head's "MISSING" table
    transformers_logging.disable_progress_bar()
    if args.run is not None:
        model, tests, scoring, order, described = trained_row(args.run, args.precision)
        batch_size = scoring[1]
    else:
        model, tests, scoring, order, described = fresh_row(args, archive)
        batch_size = scoring[1]
    task = MassiveSlots()
    paths: dict[str, Row] = {
        "cell by cell (a pass per test set)": lambda: Task.score_each(task, model, tests, *scoring),
        "one pass (`score_each`)": lambda: task.score_each(model, tests, *scoring),
    }
    names = list(paths)
    seconds: dict[str, list[float]] = {name: [] for name in paths}
    cells: dict[str, list[TaskScore]] = {}
    for name, row in paths.items():  # untimed: first-call allocations
        cells[name] = row()
    for _ in range(args.repeats):
        for name, row in paths.items():
            took, cells[name] = timed(row)
            seconds[name].append(took)
    per_cell, one_pass = cells.values()
    different_cells, different_utterances = differing(per_cell, one_pass)
    if args.precision == "fp32":
        assert different_cells == 0, f"{different_cells} cells differ in fp32"
    against_fp32 = None
    if args.precision == "bf16":  # and how often bf16 itself changes a count
        labels, size, pad_id, device, _ = scoring
        # A LoRA model built for bf16 keeps its frozen base in bf16: fp32 needs its own.
        reference = model if args.run is None else trained_row(args.run, "fp32")[0]
        fp32 = task.score_each(reference, tests, labels, size, pad_id, device, "fp32")
        against_fp32 = differing(one_pass, fp32)

    n_utterances = sum(len(test) for test in tests)
    n_tokens = sum(int(test.lengths.sum()) for test in tests)
    command = " ".join([".venv/bin/python bench/bench_scoring.py", *sys.argv[1:]])
    print(f"Command: `{command}`\n")
    print(
        f"{len(tests)} test sets ({', '.join(order)}), {n_utterances:,} utterances, "
        f"{n_tokens:,} subwords; {described}, batch {batch_size}, "
        f"{args.precision}; torch {torch.__version__}, {args.threads} thread(s), "
        f"{os.cpu_count()} CPUs; {args.repeats} timed rows a path, taking turns.\n"
    )
    positions = {
        names[0]: sum(padded([test], batch_size) for test in tests),
        names[1]: padded(tests, batch_size),
    }
    print("| path | fastest row (s) | median row (s) | rows (s) | padded subwords |")
    print("|---|---:|---:|---|---:|")
    for name, times in seconds.items():
        all_times = ", ".join(f"{t:.2f}" for t in times)
        print(
            f"| {name} | {min(times):.2f} | {statistics.median(times):.2f} | {all_times} "
            f"| {positions[name]:,} |"
        )
    per_cell_s, one_pass_s = (statistics.median(times) for times in seconds.values())
    ratio = per_cell_s / one_pass_s
    print(f"\nOne pass: {ratio:.2f}× faster than cell by cell (medians).")
    print(
        f"Cells that differ: {different_cells} of {len(tests)}; utterances whose counts "
        f"differ: {different_utterances} of {n_utterances}."
    )
    if against_fp32 is not None:
        print(
            f"bf16 one pass against fp32 one pass: {against_fp32[0]} of {len(tests)} cells, "
            f"{against_fp32[1]} of {n_utterances} utterances differ."
        )


def trained_row(
    run: Path, precision: str
) -> tuple[Any, list[EncodedSplit], tuple[Any, ...], list[str], str]:
    """The trained model of finished run `run` (its last checkpoint) and its test sets."""
    config = stored_config(run)
    task = MassiveSlots()
    order = list(config.order) if not isinstance(config.order, int) else list(ORDERS[config.order])
    data = task.load(config.data, order)
    labels = task.label_names(data)
    model_path = resolve_model(config.model)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    splits = _encode_all(config, task, data, order, labels, tokenizer)
    trim = VocabularyTrim.load(run / VOCABULARY) if (run / VOCABULARY).is_file() else None
    tests = [splits[locale]["test"] for locale in order]
    if trim is not None:
        tests = [
            dataclasses.replace(
                test,
                input_ids=[trim.remap(torch.from_numpy(ids)).numpy() for ids in test.input_ids],
            )
            for test in tests
        ]
    model = Models(config, task, labels, model_path, CPU, precision, trim).fresh()
    checkpoint = latest_checkpoint(run, config.run_id)
    weights = None if checkpoint is None else checkpoint.weights()
    assert checkpoint is not None and weights is not None, f"{run}: no weights to score"
    _load_weights(model, weights)
    scoring = (labels, config.evaluate.batch_size, tokenizer.pad_token_id, CPU, precision)
    described = (
        f"{config.method_spec.label} {config.model} trained "
        f"(run {config.run_id}, after step {checkpoint.step})"
    )
    return model, tests, scoring, order, described


def fresh_row(
    args: argparse.Namespace, archive: str
) -> tuple[Any, list[EncodedSplit], tuple[Any, ...], list[str], str]:
    """The quick demo's e5-small with a fresh head, and the first test sets of order 1."""
    order = ORDERS[1][: args.locales]
    overrides = [
        f"data.source={archive}",
        f"order=[{', '.join(order)}]",
        "data.max_train=1",
        "data.max_dev=1",
        f"data.max_test={args.utterances}",
    ]
    if args.batch_size is not None:
        overrides.append(f"evaluate.batch_size={args.batch_size}")
    config = load_config(CONFIG_DIR / QUICK / "vanilla.yaml", overrides)
    task = MassiveSlots()
    data = task.load(config.data, order)
    labels = task.label_names(data)
    model_path = resolve_model(config.model)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    trim, splits = _trim_vocabulary(
        _encode_all(config, task, data, order, labels, tokenizer), tokenizer
    )
    model = Models(config, task, labels, model_path, CPU, args.precision, trim).fresh()
    tests = [splits[locale]["test"] for locale in order]
    scoring = (labels, config.evaluate.batch_size, tokenizer.pad_token_id, CPU, args.precision)
    return model, tests, scoring, list(order), "e5-small-offline (vocabulary trimmed), a fresh head"


if __name__ == "__main__":
    main()
