"""The demo: knowledge loss on a laptop CPU, three methods on real MASSIVE in minutes.

Run it with ``xlcl demo`` (``--quick`` for the CI-sized version, ``--out DIR`` for another
results directory, ``--seeds N`` for N seeds). It runs the configs of ``configs/demo/`` one
after another, each a normal run (``xlcl run configs/demo/vanilla.yaml`` gives the same run
directory), writes the HTML report of the runs, and summarizes each method by its final F1,
CBT and CFT, as mean ± std over the seeds when there are several (printed, and as a Markdown
table in ``summary.md`` beside the report).

Finished runs are found by run id and not run again, so a second ``xlcl demo`` only
rebuilds the report. MASSIVE comes from ``$XLCL_MASSIVE`` when it is set, else from the
official archive's public URL (downloaded once, sha256-checked, cached).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from xlcl.catalog import config_root
from xlcl.config import ConfigError, RunConfig, load_config
from xlcl.data.download import OFFICIAL_URL
from xlcl.data.sources import ENV_SOURCE
from xlcl.metrics import ScoreMatrix, cbt, cft, final_locale_score, final_score, read_run_dir
from xlcl.metrics.across import DDOF
from xlcl.metrics.per_run import nanmean
from xlcl.progress import Reporter, Silent
from xlcl.protocol import run
from xlcl.reports import build_report
from xlcl.store import cpu_model
from xlcl.tracking import attach_report

CONFIG_DIR = config_root() / "demo"  # the packaged configs/demo/
QUICK = "quick"  # configs/demo/quick/: the CI-sized demo
METHODS = ("vanilla", "shared-lora", "nonshared-lora")  # one config file each, run in this order
REPORT_DIR = "report"
SUMMARY_FILE = "summary.md"


@dataclass(frozen=True)
class MethodSummary:
    """One method's line of the demo's table (F1 values in [0, 1]): each metric's mean over
    the method's runs, one per seed, and its std (ddof 1) when there are several."""

    label: str
    run_dirs: tuple[Path, ...]
    final_f1: float
    cbt: float
    cft: float
    untrained_f1: float  # mean of R[0, ·]: the untrained model, the level CFT must beat
    std: dict[str, float] = field(default_factory=dict)  # by metric; empty for one run


@dataclass(frozen=True)
class DemoResult:
    """The demo's run directories, its report and its summary table."""

    run_dirs: list[Path]
    report: Path
    summary: list[MethodSummary]
    summary_file: Path  # the table in Markdown, beside the report
    measured_on: str = ""  # "Measured on <CPU>, torch <version>, <n> threads."
    spread: str = ""  # ", mean ± std (ddof 1) over seeds 42, 43, 44" with several seeds


def demo_configs(
    quick: bool = False, out: Path | None = None, tracking: Sequence[str] = (), seeds: int = 1
) -> list[tuple[Path, RunConfig]]:
    """The demo's configs, in run order, with their files: the methods with the configs'
    seed, then again with each of the next ``seeds - 1`` seeds (42, then 43, 44...).

    ``out`` replaces the configs' ``output_dir``; ``tracking`` names trackers to log to
    (docs/tracking.md; the run ids stay the same). Without ``$XLCL_MASSIVE`` the data source is
    the official archive's URL, which `xlcl.data` downloads once and checks by sha256.
    """
    if seeds < 1:
        raise ConfigError(f"--seeds: {seeds} is not a number of seeds (1 or more)")
    directory = CONFIG_DIR / QUICK if quick else CONFIG_DIR
    overrides = [] if out is None else [f"output_dir={out}"]
    if tracking:
        overrides.append(f"tracking=[{', '.join(tracking)}]")
    if not os.environ.get(ENV_SOURCE):
        overrides.append(f"data.source={OFFICIAL_URL}")
    paths = [directory / f"{name}.yaml" for name in METHODS]
    configs = [(path, load_config(path, overrides)) for path in paths]
    for extra in range(1, seeds):
        configs += [
            (path, load_config(path, [*overrides, f"train.seed={config.train.seed + extra}"]))
            for path, config in configs[: len(paths)]
        ]
    return configs


def run_demo(
    quick: bool = False,
    out: Path | None = None,
    new_reporter: Callable[[], Reporter] = Silent,
    tracking: Sequence[str] = (),
    seeds: int = 1,
) -> DemoResult:
    """Run (or reuse) the demo's runs, write their report, and summarize each method over
    ``seeds`` seeds.

    Each run reports to its own ``new_reporter()``, so its elapsed and remaining times are
    its own. With ``tracking``, the runs and the report go to those trackers.
    """
    configs = demo_configs(quick, out, tracking, seeds)
    runs = []
    for index, (path, config) in enumerate(configs, start=1):
        reporter = new_reporter()
        seed = f" seed {config.train.seed}" if seeds > 1 else ""
        reporter.message(f"[{index}/{len(configs)}] {config.method_spec.label}{seed}: {path}")
        runs.append((config.method_spec.label, run(config, reporter)))
    run_dirs = [directory for _, directory in runs]
    new_reporter().message("writing the report")
    files = build_report(run_dirs, Path(configs[0][1].output_dir) / REPORT_DIR)
    attach_report(
        [(config, path) for (_, config), path in zip(configs, run_dirs, strict=True)], files.html
    )
    summary = summarize_runs(runs)
    summary_file = files.html.parent / SUMMARY_FILE
    measured = f"Measured on {machine()}."
    spread = ""
    if seeds > 1:
        used = sorted({config.train.seed for _, config in configs})
        spread = f", mean ± std (ddof 1) over seeds {', '.join(map(str, used))}"
    text = f"{summary_markdown(summary)}\n\nF1 points (x100){spread}. {measured}\n"
    summary_file.write_text(text, encoding="utf-8")
    return DemoResult(run_dirs, files.html, summary, summary_file, measured, spread)


def machine() -> str:
    """The CPU model, torch's version and its thread count: what the demo's digits depend on.

    Floating-point reductions differ between CPUs (with or without AMX, say), and training
    on little data amplifies the difference to a few F1 points (docs/demo.md).
    """
    return f"{cpu_model()}, torch {torch.__version__}, {torch.get_num_threads()} threads"


SUMMARY_METRICS = ("final_f1", "cbt", "cft", "untrained_f1")


def summarize_runs(runs: Sequence[tuple[str, Path]]) -> list[MethodSummary]:
    """The demo's table from (label, finished run directory) pairs: one line per label, in
    order of first appearance, over that label's runs."""
    by_label: dict[str, list[Path]] = {}
    for label, directory in runs:
        by_label.setdefault(label, []).append(directory)
    summary = []
    for label, directories in by_label.items():
        values = np.array([_run_metrics(directory) for directory in directories])
        means = dict(zip(SUMMARY_METRICS, values.mean(axis=0), strict=True))
        std = {}
        if len(directories) > 1:
            std = dict(zip(SUMMARY_METRICS, values.std(axis=0, ddof=DDOF), strict=True))
        summary.append(MethodSummary(label, tuple(directories), **means, std=std))
    return summary


def _run_metrics(directory: Path) -> list[float]:
    """One run's values of `SUMMARY_METRICS`."""
    matrix = read_run_dir(directory).matrix
    return [final_score(matrix), system_cbt(matrix), cft(matrix), nanmean(matrix.scores[0])]


def system_cbt(matrix: ScoreMatrix) -> float:
    """CBT of the system at the end: mean_{i<T} (final_locale_score(ℓ_i) − R[i, i]).

    Sequential runs: `xlcl.metrics.cbt`. NON-SHARED LoRA (and MONO) keep one model per
    locale, so the final system scores ℓ_i with the model trained on it, R[i, i]: its CBT
    is 0 by construction (`cbt` itself is NaN there: no single model sees two locales).
    """
    schedule, t = matrix.schedule, matrix.n_locales
    if schedule.order_dependent:
        return cbt(matrix)
    if schedule.training_steps(t) < t:
        return math.nan  # one joint step: no locale is learned before another
    final = final_locale_score(matrix).to_numpy()[:-1]
    learned = np.diagonal(matrix.scores[1:])[:-1]
    return nanmean(final - learned)


SUMMARY_COLUMNS = ("method", "final F1", "CBT", "CFT", "untrained F1")


def summary_rows(summary: Sequence[MethodSummary]) -> list[list[str]]:
    """The table's cells: F1 points (x100) with one decimal, "–" where a metric is NaN, and
    "mean ± std" over several seeds."""
    return [
        [row.label, *(_cell(getattr(row, name), row.std.get(name)) for name in SUMMARY_METRICS)]
        for row in summary
    ]


def summary_markdown(summary: Sequence[MethodSummary]) -> str:
    """The summary as a Markdown table (``summary.md`` beside the report; docs/demo.md)."""
    lines = [
        "| " + " | ".join(SUMMARY_COLUMNS) + " |",
        "| --- |" + " ---: |" * (len(SUMMARY_COLUMNS) - 1),
    ]
    lines += ["| " + " | ".join(cells) + " |" for cells in summary_rows(summary)]
    return "\n".join(lines)


def _cell(mean: float, std: float | None) -> str:
    if math.isnan(mean):
        return "–"
    if std is None:
        return f"{100 * mean:.1f}"
    return f"{100 * mean:.1f} ± {100 * std:.1f}"
