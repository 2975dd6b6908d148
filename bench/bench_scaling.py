"""How a run's cost grows with the number of locales T and of utterances n per locale.

Command (CPU; MASSIVE from $XLCL_MASSIVE)::

    .venv/bin/python bench/bench_scaling.py [--locales 1 2 4 8 16] [--utterances 100 200 400 800]

On a GPU (`train.device: auto` picks it), the 52 NON-SHARED adapters together against one
by one: ``bench/bench_scaling.py --model PATH_TO_XLMR_BASE --locales 13 26 52``.

Real runs through `xlcl.protocol.run` with the offline multilingual-e5-small
(``e5-small-offline``, vocabulary trimmed), one epoch a step, batch 16, on the first T
locales of the paper's order 1, with n training, n/4 dev and n/2 test utterances each:

- VANILLA at several T (n = 100) and at several n (T = 2);
- NON-SHARED LoRA r16 at several T, its adapters trained one by one and together
  (``train.adapters_together``).

Each run is timed whole (reading MASSIVE, tokenizing, training, scoring, writing); its
training time is the sum of its epochs' seconds in ``curves.parquet`` (dev scoring
included); the rest is scoring the matrix and setting up. Each is fitted as
``seconds ~ c * x^k`` by least squares in log-log space. Expected: training grows as T x n,
the sequential score matrix as T^2 x n (T + 1 rows of T test sets), so VANILLA's exponent
in T lies between 1 and 2. Prints a Markdown report and writes it to ``--output``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from xlcl.config import validate_config
from xlcl.data import ORDERS
from xlcl.protocol import run

RESULTS = Path(__file__).parent / "results" / "scaling.md"
MODEL = "e5-small-offline"


@dataclass(frozen=True)
class Timing:
    """One run: its size and where its wall time went."""

    label: str
    locales: int
    utterances: int
    total_s: float
    training_s: float  # NaN for adapters trained together: their epochs overlap

    @property
    def other_s(self) -> float:
        """Scoring the matrix, reading and tokenizing the data, loading the model."""
        return self.total_s - self.training_s


def timed_run(
    output: Path,
    method: str,
    locales: int,
    utterances: int,
    together: bool = False,
    model: str = MODEL,
) -> Timing:
    """Run `method` on the first `locales` locales of order 1 and time it."""
    lora = method != "vanilla"
    config = validate_config(
        {
            "model": model,
            "method": method,
            "rank": 16 if lora else None,
            "order": list(ORDERS[1][:locales]),
            "trim_vocabulary": True,
            "data": {
                "max_train": utterances,
                "max_dev": utterances // 4,
                "max_test": utterances // 2,
            },
            "train": {
                "epochs": 1,
                "patience": 1,
                "learning_rate": 2e-3 if lora else 1e-4,
                "head_learning_rate": 2e-2,
                "batch_size": 16,
                "max_length": 64,
                "adapters_together": together,
            },
            "lora": {"alpha": 4, "dropout": 0.0},
            "output_dir": str(output),
        }
    )
    started = time.perf_counter()
    directory = run(config)
    total = time.perf_counter() - started
    epochs = pd.read_parquet(directory / "curves.parquet")["seconds"]
    training = float("nan") if together else float(epochs.sum())
    label = f"{method}{', together' if together else ''}"
    timing = Timing(label, locales, utterances, total, training)
    print(timing, flush=True)
    return timing


def exponent(xs: list[int], seconds: list[float]) -> float:
    """k of the least-squares fit of log(seconds) = log(c) + k log(x)."""
    slope, _ = np.polyfit(np.log(xs), np.log(seconds), 1)
    return float(slope)


def table(title: str, axis: str, timings: list[Timing]) -> list[str]:
    """A Markdown table of `timings` along `axis` (``locales`` or ``utterances``)."""
    xs = [getattr(t, axis) for t in timings]
    lines = [
        f"### {title}",
        "",
        f"| {axis} | total (s) | training (s) | scoring and set-up (s) |",
        "|---:|---:|---:|---:|",
        *[
            f"| {x} | {t.total_s:.1f} | {_seconds(t.training_s)} | {_seconds(t.other_s)} |"
            for x, t in zip(xs, timings, strict=True)
        ],
    ]
    if len(set(xs)) > 1:
        columns = {
            "total": [t.total_s for t in timings],
            "training": [t.training_s for t in timings],
            "scoring and set-up": [t.other_s for t in timings],
        }
        fits = [
            f"{name} {exponent(xs, seconds):.2f} ({exponent(xs[-2:], seconds[-2:]):.2f})"
            for name, seconds in columns.items()
            if not any(np.isnan(seconds))
        ]
        lines += [
            "",
            "Fitted exponent k over all sizes (between the two largest): " + ", ".join(fits),
        ]
    return [*lines, ""]


def _seconds(value: float) -> str:
    return "–" if np.isnan(value) else f"{value:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--locales", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--utterances", type=int, nargs="+", default=[100, 200, 400, 800])
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--model", default=MODEL, help="model name or path (%(default)s)")
    parser.add_argument(
        "--parts",
        nargs="+",
        choices=["vanilla", "nonshared"],
        default=["vanilla", "nonshared"],
        help="which runs to time (%(default)s)",
    )
    parser.add_argument(
        "--nonshared-utterances", type=int, default=100, help="n of the NON-SHARED runs"
    )
    args = parser.parse_args()
    if not os.environ.get("XLCL_MASSIVE"):
        raise SystemExit("set XLCL_MASSIVE to the MASSIVE archive")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as work:
        out = Path(work)
        timed = partial(timed_run, model=args.model)
        timed(out / "warm-up", "vanilla", 1, 16)  # imports, the model's first load
        sections: list[str] = []
        if "vanilla" in args.parts:
            vanilla_t = [timed(out / f"v-t{t}", "vanilla", t, 100) for t in args.locales]
            vanilla_n = [timed(out / f"v-n{n}", "vanilla", 2, n) for n in args.utterances]
            sections += table("VANILLA, T locales (n = 100)", "locales", vanilla_t)
            sections += table("VANILLA, n utterances per locale (T = 2)", "utterances", vanilla_n)
        if "nonshared" in args.parts:
            n = args.nonshared_utterances
            one_by_one = [timed(out / f"ns-t{t}", "nonshared-lora", t, n) for t in args.locales]
            together = [
                timed(out / f"nt-t{t}", "nonshared-lora", t, n, together=True) for t in args.locales
            ]
            sections += [
                *table(
                    f"NON-SHARED LoRA r16, one by one, T locales (n = {n})", "locales", one_by_one
                ),
                *table(f"NON-SHARED LoRA r16, together, T locales (n = {n})", "locales", together),
                "### NON-SHARED LoRA: together against one by one (total seconds)",
                "",
                "| locales | one by one | together | speed-up |",
                "|---:|---:|---:|---:|",
                *[
                    f"| {a.locales} | {a.total_s:.1f} | {b.total_s:.1f} "
                    f"| {a.total_s / b.total_s:.2f}x |"
                    for a, b in zip(one_by_one, together, strict=True)
                ],
            ]
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    lines = [
        f"# Scaling with the number of locales and utterances ({device})",
        "",
        "Command: `XLCL_MASSIVE=../shared/data/amazon-massive-dataset-1.1.tar.gz "
        f".venv/bin/python bench/bench_scaling.py {' '.join(sys.argv[1:])}`",
        "",
        f"{args.model} (vocabulary trimmed), 1 epoch a step, batch 16, dev n/4 and test "
        f"n/2 utterances per locale; torch {torch.__version__}, {torch.get_num_threads()} "
        f"threads, {os.cpu_count()} CPUs ({platform.machine()}); "
        f"{time.perf_counter() - started:.0f} s in all.",
        "",
        *sections,
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)


if __name__ == "__main__":
    main()
