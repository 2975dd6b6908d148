"""The demo: knowledge loss on a laptop CPU, three methods on real MASSIVE in minutes.

Run it with ``xlcl demo`` (``--quick`` for the CI-sized version, ``--out DIR`` for another
results directory). It runs the configs of ``configs/demo/`` one after another, each a
normal run (``xlcl run configs/demo/vanilla.yaml`` gives the same run directory), writes
the HTML report of the three runs, and summarizes each method by its final F1, CBT and CFT
(printed, and as a Markdown table in ``summary.md`` beside the report).

Finished runs are found by run id and not run again, so a second ``xlcl demo`` only
rebuilds the report. MASSIVE comes from ``$XLCL_MASSIVE`` when it is set, else from the
official archive's public URL (downloaded once, sha256-checked, cached).
"""

from __future__ import annotations

import math
import os
import platform
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from xlcl.catalog import config_root
from xlcl.config import RunConfig, load_config
from xlcl.data.download import OFFICIAL_URL
from xlcl.data.sources import ENV_SOURCE
from xlcl.metrics import ScoreMatrix, cbt, cft, final_locale_score, final_score, read_run_dir
from xlcl.metrics.per_run import nanmean
from xlcl.progress import Reporter, Silent
from xlcl.protocol import run
from xlcl.reports import build_report
from xlcl.tracking import attach_report

CONFIG_DIR = config_root() / "demo"  # the packaged configs/demo/
QUICK = "quick"  # configs/demo/quick/: the CI-sized demo
METHODS = ("vanilla", "shared-lora", "nonshared-lora")  # one config file each, run in this order
REPORT_DIR = "report"
SUMMARY_FILE = "summary.md"


@dataclass(frozen=True)
class MethodSummary:
    """One method's line of the demo's table (F1 values in [0, 1])."""

    label: str
    run_dir: Path
    final_f1: float
    cbt: float
    cft: float
    untrained_f1: float  # mean of R[0, ·]: the untrained model, the level CFT must beat


@dataclass(frozen=True)
class DemoResult:
    """The demo's run directories, its report and its summary table."""

    run_dirs: list[Path]
    report: Path
    summary: list[MethodSummary]
    summary_file: Path  # the table in Markdown, beside the report
    measured_on: str = ""  # "Measured on <CPU>, torch <version>, <n> threads."


def demo_configs(
    quick: bool = False, out: Path | None = None, tracking: Sequence[str] = ()
) -> list[tuple[Path, RunConfig]]:
    """The demo's configs, in run order, with their files.

    ``out`` replaces the configs' ``output_dir``; ``tracking`` names trackers to log to
    (docs/tracking.md; the run ids stay the same). Without ``$XLCL_MASSIVE`` the data source is
    the official archive's URL, which `xlcl.data` downloads once and checks by sha256.
    """
    directory = CONFIG_DIR / QUICK if quick else CONFIG_DIR
    overrides = [] if out is None else [f"output_dir={out}"]
    if tracking:
        overrides.append(f"tracking=[{', '.join(tracking)}]")
    if not os.environ.get(ENV_SOURCE):
        overrides.append(f"data.source={OFFICIAL_URL}")
    paths = [directory / f"{name}.yaml" for name in METHODS]
    return [(path, load_config(path, overrides)) for path in paths]


def run_demo(
    quick: bool = False,
    out: Path | None = None,
    new_reporter: Callable[[], Reporter] = Silent,
    tracking: Sequence[str] = (),
) -> DemoResult:
    """Run (or reuse) the demo's runs, write their report, and summarize each method.

    Each run reports to its own ``new_reporter()``, so its elapsed and remaining times are
    its own. With ``tracking``, the runs and the report go to those trackers.
    """
    configs = demo_configs(quick, out, tracking)
    runs = []
    for index, (path, config) in enumerate(configs, start=1):
        reporter = new_reporter()
        reporter.message(f"[{index}/{len(configs)}] {config.method_spec.label}: {path}")
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
    summary_file.write_text(f"{summary_markdown(summary)}\n\n{measured}\n", encoding="utf-8")
    return DemoResult(run_dirs, files.html, summary, summary_file, measured)


def machine() -> str:
    """The CPU model, torch's version and its thread count: what the demo's digits depend on.

    Floating-point reductions differ between CPUs (with or without AMX, say), and training
    on little data amplifies the difference to a few F1 points (docs/demo.md).
    """
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, torch {torch.__version__}, {torch.get_num_threads()} threads"


def summarize_runs(runs: Sequence[tuple[str, Path]]) -> list[MethodSummary]:
    """The demo's table from (label, finished run directory) pairs."""
    summary = []
    for label, directory in runs:
        matrix = read_run_dir(directory).matrix
        summary.append(
            MethodSummary(
                label=label,
                run_dir=directory,
                final_f1=final_score(matrix),
                cbt=system_cbt(matrix),
                cft=cft(matrix),
                untrained_f1=nanmean(matrix.scores[0]),
            )
        )
    return summary


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
    """The table's cells: F1 points (x100) with one decimal, "–" where a metric is NaN."""
    return [
        [row.label, *(_points(v) for v in (row.final_f1, row.cbt, row.cft, row.untrained_f1))]
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


def _points(value: float) -> str:
    return "–" if math.isnan(value) else f"{100 * value:.1f}"
