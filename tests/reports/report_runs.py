"""Synthetic run directories for the report tests (``docs/run-directory.md``).

Written as xlcl wrote them before tasks: the score is ``f1``; the manifest has no
``schedule``, ``task`` or ``metric``.

Three locales, one per vitality group: en-US (Latn, high), el-GR (Grek, mid), sw-KE
(Latn, low). Two orders: A = en-US el-GR sw-KE, B = sw-KE en-US el-GR.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from xlcl.methods import preset_schedule

nan = np.nan
XLMR = "FacebookAI/xlm-roberta-base"
ORDER_A = ("en-US", "el-GR", "sw-KE")
ORDER_B = ("sw-KE", "en-US", "el-GR")

VANILLA_A = [[0.10, 0.20, 0.30], [0.60, 0.30, 0.35], [0.50, 0.70, 0.40], [0.40, 0.60, 0.80]]
VANILLA_B = [[0.30, 0.10, 0.20], [0.70, 0.20, 0.25], [0.60, 0.65, 0.30], [0.55, 0.50, 0.70]]
SHARED_A = [[0.10, 0.20, 0.30], [0.50, 0.25, 0.30], [0.30, 0.60, 0.35], [0.20, 0.40, 0.70]]
SHARED_B = [[0.30, 0.10, 0.20], [0.60, 0.15, 0.20], [0.40, 0.55, 0.25], [0.30, 0.35, 0.65]]
MULTI_A = [[0.10, 0.20, 0.30], [0.80, 0.70, 0.90]]
NONSHARED_A = [[0.10, 0.20, 0.30], [0.70, nan, nan], [nan, 0.65, nan], [nan, nan, 0.75]]
NONSHARED_B = [[0.30, 0.10, 0.20], [0.72, nan, nan], [nan, 0.68, nan], [nan, nan, 0.60]]


def long_table(order: Sequence[str], f1: Sequence[Sequence[float]], method: str) -> pd.DataFrame:
    """The ``scores.parquet`` rows of a matrix: every (step, eval_locale) cell."""
    rows = []
    for step, row in enumerate(f1):
        trained = preset_schedule(method).trained_locale(step, order)
        for locale, value in zip(order, row, strict=True):
            rows.append(
                {
                    "step": step,
                    "trained_locale": trained,
                    "eval_locale": locale,
                    "f1": value,
                    "precision": value,
                    "recall": value,
                    "n_gold": 100,
                    "n_pred": 100,
                    "n_sentences": 50,
                    "intent_accuracy": nan,
                }
            )
    table = pd.DataFrame(rows)
    table["trained_locale"] = table["trained_locale"].astype("string")
    return table


def write_run(
    parent: Path,
    run_id: str,
    method: str,
    order: Sequence[str],
    f1: Sequence[Sequence[float]],
    rank: int | None = None,
    model: str = XLMR,
    status: str = "done",
    done: bool = True,
    rows: int | None = None,
    strategy: dict[str, object] | None = None,
    manifest_extra: dict[str, object] | None = None,
    epoch_seconds: Sequence[float] = (),
) -> Path:
    """A run directory ``parent/run_id``; ``rows`` keeps only the first rows of the table.

    ``strategy`` goes into the config, ``manifest_extra`` into the manifest; with
    ``epoch_seconds`` a ``curves.parquet`` has one epoch of that many seconds per value.
    """
    path = parent / run_id
    path.mkdir(parents=True)
    manifest = {
        "run_id": run_id,
        "status": status,
        "config": {"model": model, "method": method, "rank": rank, "strategy": strategy},
        "order": list(order),
        "labels": ["O", "B-time", "I-time"],
        "versions": {"python": "3.11.9", "torch": "2.13.0", "xlcl": "0.1.0"},
        "git_revision": "abc1234",
        "device": "cpu",
        "seed": 42,
        "data_checksum": "0" * 64,
        "started_at": "2025-01-01T10:00:00+00:00",
        "finished_at": "2025-01-01T11:00:00+00:00" if status == "done" else None,
        "error": "RuntimeError: out of memory" if status == "failed" else None,
        **(manifest_extra or {}),
    }
    (path / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    table = long_table(order, f1, method)
    if rows is not None:
        table = table.iloc[:rows]
    table.to_parquet(path / "scores.parquet", index=False)
    if epoch_seconds:
        steps = range(1, len(epoch_seconds) + 1)
        curves = {"step": list(steps), "epoch": [1] * len(epoch_seconds)}
        pd.DataFrame({**curves, "seconds": list(epoch_seconds)}).to_parquet(
            path / "curves.parquet", index=False
        )
    if done:
        (path / "DONE").write_text("", encoding="utf-8")
    return path


def write_sweep(parent: Path, model: str = XLMR) -> Path:
    """Vanilla, SHARED LoRA r32 and NON-SHARED LoRA r32 in orders A and B; MULTI in A."""
    sweep = parent / "sweep"
    write_run(sweep, "van-a", "vanilla", ORDER_A, VANILLA_A, model=model)
    write_run(sweep, "van-b", "vanilla", ORDER_B, VANILLA_B, model=model)
    write_run(sweep / "lora", "shr-a", "shared-lora", ORDER_A, SHARED_A, rank=32, model=model)
    write_run(sweep / "lora", "shr-b", "shared-lora", ORDER_B, SHARED_B, rank=32, model=model)
    write_run(sweep, "mul-a", "multi", ORDER_A, MULTI_A, model=model)
    write_run(sweep, "nsh-a", "nonshared-lora", ORDER_A, NONSHARED_A, rank=32, model=model)
    write_run(sweep, "nsh-b", "nonshared-lora", ORDER_B, NONSHARED_B, rank=32, model=model)
    return sweep
