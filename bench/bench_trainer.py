""".venv/bin/python bench/bench_trainer.py [--repeats 1] [--epochs 3] [--threads 2]

Other options: ``--max-train 400 --max-dev 100 --max-test 100 --output FILE.md``,
``--methods`` and ``--systems`` (subsets, by name; default all).

MASSIVE comes from ``$XLCL_MASSIVE``, else from
``../shared/data/amazon-massive-dataset-1.1.tar.gz`` next to the repository; the report
goes to ``bench/results/cpu_trainer.md`` by default.

Times one sequential experiment run by xlcl and by the baseline a user would write from
the Hugging Face Trainer, PEFT and seqeval (``bench/hf_trainer_baseline.py``): the real
multilingual-e5-small (``e5-small-offline``), MASSIVE en-US → ru-RU → th-TH (the first
N train/dev/test utterances of each), with the learning settings of the quick demo
(``configs/demo/quick/``): batch 16, max_length 64, AdamW with the fresh classification
head at its own rate (2e-2), weight decay 0.01 (not on biases and LayerNorm), a linear
schedule with 10 % warm-up, the same number of epochs (xlcl's patience is set to the
number of epochs, so early stopping never cuts a step short; both restore the best dev
epoch) and the same score matrix: every locale's test set before training (row 0) and
after each step, word-level span F1 (seqeval's default mode).

Two methods, VANILLA (full fine-tuning, lr 1e-4) and SHARED LoRA r=16 (alpha 4, dropout 0,
adapter lr 2e-3), and six systems: xlcl with ``trim_vocabulary: true``, xlcl without it
(where the gain comes from), the baseline, xlcl (trimmed) and the baseline again under
bf16 autocast on the CPU (``precision: bf16``; ``TrainingArguments(bf16=True)``), which
runs matrix products on the bf16 units of CPUs that have them (AMX, AVX512-BF16), and xlcl
(trimmed) with random batches instead of length-bucketed ones (``bucket_window: 1``, as
the Trainer batches). Each system's speed-up is given against the fp32 baseline and
against the baseline at its own precision. Each experiment runs in its own subprocess,
one after another (never two at a time): wall time includes reading MASSIVE,
tokenizing, loading the model, training, evaluating and whatever each system writes to
disk, but not starting Python; peak memory is the subprocess's peak RSS (``os.wait4``).
Runs are interleaved (the systems in the order above, then in reverse) and repeated;
repeat ``r`` uses seed ``42 + r`` for every system, so the spread of F1 over repeats is
the seed noise that F1 differences are judged against. Every run gets ``--threads`` torch
threads (``OMP_NUM_THREADS``; default 2, one per core of a 2-core machine, as runs never
overlap; use 1 when other jobs share the cores, which makes two OpenMP threads thrash).

Prints a Markdown report and writes it to ``--output``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from hf_trainer_baseline import ARCHIVE, Experiment, Outcome, run_baseline

from xlcl.encode import BUCKET_WINDOW


@dataclass(frozen=True)
class System:
    """Who runs the experiment (xlcl or the Trainer baseline), and how."""

    runner: str  # "xlcl" or "trainer"
    trim: bool = False  # xlcl's trim_vocabulary
    precision: str = "fp32"  # "bf16": autocast on the CPU, for both systems
    bucket_window: int = BUCKET_WINDOW  # xlcl's train.bucket_window; 1: random batches

    @property
    def baseline(self) -> str:
        """The Trainer system at this system's precision, which its speed-up is against."""
        return "HF Trainer, bf16" if self.precision == "bf16" else "HF Trainer"


SYSTEMS = {
    "xlcl": System("xlcl", trim=True),
    "xlcl, no trim": System("xlcl"),
    "HF Trainer": System("trainer"),
    "xlcl, bf16": System("xlcl", trim=True, precision="bf16"),
    "HF Trainer, bf16": System("trainer", precision="bf16"),
    "xlcl, random batches": System("xlcl", trim=True, bucket_window=1),
}
METHODS = {"VANILLA": (None, 1e-4), "SHARED LoRA r=16": (16, 2e-3)}
LOCALES = ("en-US", "ru-RU", "th-TH")


@dataclass(frozen=True)
class Measurement:
    """One experiment of one system: process wall time, peak RSS, score matrix."""

    method: str
    system: str
    repeat: int
    experiment_s: float
    process_s: float
    peak_rss_mb: float
    f1: list[list[float]]

    @property
    def final_f1(self) -> float:
        """Mean F1 of the last row: every locale after the whole order."""
        return statistics.fmean(self.f1[-1])


def run_xlcl(experiment: Experiment, system: System) -> Outcome:
    """The same experiment through ``xlcl.protocol.run``; the matrix from its scores file."""
    import pandas as pd

    from xlcl.config import RunConfig
    from xlcl.protocol import run
    from xlcl.store import SCORES

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="xlcl-bench-") as output_dir:
        config = RunConfig.model_validate(
            {
                "model": experiment.model_path,
                "method": "vanilla" if experiment.rank is None else "shared-lora",
                "rank": experiment.rank,
                "order": list(experiment.locales),
                "trim_vocabulary": system.trim,
                "data": {
                    "source": experiment.archive,
                    "max_train": experiment.max_train,
                    "max_dev": experiment.max_dev,
                    "max_test": experiment.max_test,
                },
                "train": {
                    "epochs": experiment.epochs,
                    "patience": experiment.epochs,
                    "learning_rate": experiment.learning_rate,
                    "head_learning_rate": experiment.head_learning_rate,
                    "warmup_ratio": experiment.warmup_ratio,
                    "batch_size": experiment.batch_size,
                    "bucket_window": system.bucket_window,
                    "weight_decay": experiment.weight_decay,
                    "max_length": experiment.max_length,
                    "seed": experiment.seed,
                    "precision": experiment.precision,
                    "device": "cpu",
                },
                "lora": {"alpha": experiment.lora_alpha, "dropout": experiment.lora_dropout},
                "evaluate": {"batch_size": experiment.eval_batch_size},
                "output_dir": output_dir,
            }
        )
        scores = pd.read_parquet(run(config) / SCORES)
        seconds = time.perf_counter() - started
    matrix = scores.pivot(index="step", columns="eval_locale", values="f1")
    return Outcome(matrix[list(experiment.locales)].to_numpy().tolist(), seconds)


def child(name: str, experiment: Experiment, result: Path) -> None:
    """Run one experiment in this (sub)process and write its outcome as JSON."""
    system = SYSTEMS[name]
    experiment = replace(experiment, precision=system.precision)
    if system.runner == "trainer":
        outcome = run_baseline(experiment)
    else:
        outcome = run_xlcl(experiment, system)
    result.write_text(json.dumps(asdict(outcome)))


def measure(
    system: str, method: str, repeat: int, experiment: Experiment, scratch: Path, threads: int
) -> Measurement:
    """Run `system` on `experiment` in a fresh Python; its peak RSS comes from ``wait4``."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    name = f"{method}-{system}-{repeat}".replace(" ", "_").replace(",", "").replace("=", "")
    result, log = scratch / f"{name}.json", scratch / f"{name}.log"
    command = [sys.executable, __file__, "--child", system, "--result", str(result)]
    command += ["--experiment", json.dumps(asdict(experiment))]
    started = time.perf_counter()
    with log.open("w") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    process_s = time.perf_counter() - started
    if process.returncode != 0:
        tail = log.read_text()[-3000:]
        raise RuntimeError(f"{system} {method} failed ({process.returncode}):\n{tail}")
    outcome = json.loads(result.read_text())
    # Linux reports ru_maxrss in KiB.
    return Measurement(
        method, system, repeat, outcome["seconds"], process_s, usage.ru_maxrss / 1024, outcome["f1"]
    )


def report(measurements: list[Measurement], settings: str) -> str:
    """The Markdown report: medians per system, speed-ups, F1 and the final score matrices."""
    lines = [
        "# CPU benchmark: xlcl vs a Hugging Face Trainer baseline",
        "",
        settings,
        "",
        "Wall time: the whole experiment inside its subprocess (data, tokenization, model, "
        "training, evaluation, disk writes); process adds Python start-up and imports. "
        "Medians over repeats; F1 is the mean of the final row (every locale after the whole "
        "order), mean ± half-range over the repeats' seeds.",
        "",
        "Speed-ups are against the HF Trainer in fp32 and against the Trainer at the "
        "system's own precision (bf16: autocast on the CPU, `TrainingArguments(bf16=True)`).",
        "",
        "| method | system | wall (s) | process (s) | speed-up vs HF Trainer "
        "| vs Trainer, same precision | peak RSS (MB) | final-row F1 | per repeat (s) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    matrices = []
    for method in METHODS:
        rows = {
            system: [m for m in measurements if m.method == method and m.system == system]
            for system in SYSTEMS
        }
        wall = {
            system: statistics.median(m.experiment_s for m in runs)
            for system, runs in rows.items()
            if runs
        }
        for system in wall:
            runs = rows[system]
            finals = [m.final_f1 for m in runs]
            spread = (max(finals) - min(finals)) / 2
            lines.append(
                f"| {method} | {system} | {wall[system]:.1f} "
                f"| {statistics.median(m.process_s for m in runs):.1f} "
                f"| {_speed_up(wall, system, 'HF Trainer')} "
                f"| {_speed_up(wall, system, SYSTEMS[system].baseline)} "
                f"| {statistics.median(m.peak_rss_mb for m in runs):,.0f} "
                f"| {statistics.fmean(finals):.3f} ± {spread:.3f} "
                f"| {', '.join(f'{m.experiment_s:.0f}' for m in runs)} |"
            )
            matrices.append(_matrix(method, system, runs[0]))
    return "\n".join([*lines, "", "## Score matrices (span F1, first repeat)", "", *matrices])


def _speed_up(wall: dict[str, float], system: str, baseline: str) -> str:
    return f"{wall[baseline] / wall[system]:.2f}×" if baseline in wall else "–"


def _matrix(method: str, system: str, measurement: Measurement) -> str:
    header = " | ".join(LOCALES)
    lines = [f"{method}, {system} (seed {42 + measurement.repeat}):", ""]
    lines += [f"| step | {header} |", "|---|" + "---:|" * len(LOCALES)]
    for step, row in enumerate(measurement.f1):
        lines.append(f"| {step} | " + " | ".join(f"{f1:.3f}" for f1 in row) + " |")
    return "\n".join([*lines, ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[2])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--max-train", type=int, default=400)
    parser.add_argument("--max-dev", type=int, default=100)
    parser.add_argument("--max-test", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2, help="torch threads of each run")
    parser.add_argument("--output", type=Path, default=Path("bench/results/cpu_trainer.md"))
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--systems", nargs="+", choices=SYSTEMS, default=list(SYSTEMS))
    parser.add_argument("--child", choices=SYSTEMS, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--experiment", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        fields = json.loads(args.experiment)
        experiment = Experiment(**{**fields, "locales": tuple(fields["locales"])})
        child(args.child, experiment, args.result)
        return

    from xlcl.models import resolve_model

    base = Experiment(
        model_path=resolve_model("e5-small-offline"),
        archive=str(ARCHIVE),
        locales=LOCALES,
        rank=None,
        max_train=args.max_train,
        max_dev=args.max_dev,
        max_test=args.max_test,
        epochs=args.epochs,
        learning_rate=1e-4,
    )
    settings = (
        f"e5-small-offline, {' → '.join(LOCALES)}, {args.max_train}/{args.max_dev}/"
        f"{args.max_test} train/dev/test utterances per locale, {args.epochs} epochs, "
        f"batch {base.batch_size} (eval {base.eval_batch_size}), max_length {base.max_length}, "
        f"head lr {base.head_learning_rate:g}, warm-up ratio {base.warmup_ratio:g}, LoRA "
        f"alpha {base.lora_alpha} dropout {base.lora_dropout:g}, weight decay "
        f"{base.weight_decay:g}; {args.repeats} repeat(s); torch {torch.__version__}, "
        f"{args.threads} thread(s) per run, runs one at a time, "
        f"{os.cpu_count()} CPUs ({platform.machine()}), shared machine."
    )
    print(settings, flush=True)
    measurements = []
    with tempfile.TemporaryDirectory(prefix="bench-trainer-") as scratch:
        for repeat in range(args.repeats):
            order = args.systems if repeat % 2 == 0 else args.systems[::-1]
            for method in args.methods:
                rank, learning_rate = METHODS[method]
                experiment = replace(
                    base, rank=rank, learning_rate=learning_rate, seed=base.seed + repeat
                )
                for system in order:
                    m = measure(system, method, repeat, experiment, Path(scratch), args.threads)
                    measurements.append(m)
                    print(
                        f"repeat {repeat} {method:<16} {system:<14} {m.experiment_s:7.1f} s "
                        f"{m.peak_rss_mb:7,.0f} MB  final F1 {m.final_f1:.3f}",
                        flush=True,
                    )
    markdown = report(measurements, settings)
    print("\n" + markdown)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(markdown + "\n")


if __name__ == "__main__":
    main()
