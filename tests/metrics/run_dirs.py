"""Run directories of both formats (``docs/run-directory.md``), written by hand.

Old: written before tasks. ``scores.parquet`` has no ``score`` column (the score is
``f1``), the manifest no ``schedule``, ``task`` or ``metric``, ``curves.parquet`` has
``dev_f1``. New: ``score`` right after ``eval_locale``, the three manifest keys, and
``dev_score``; an intent-classification run has NaN ``f1``, ``precision`` and ``recall``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from xlcl.metrics import ScoreMatrix, to_long

INTENT = "intent accuracy"


def write_old_run_dir(
    root: Path, run_id: str, matrix: ScoreMatrix, method: str, rank: int | None = None
) -> Path:
    """A finished MASSIVE slot-filling run as xlcl wrote it before tasks."""
    manifest = {
        "run_id": run_id,
        "status": "done",
        "config": {"method": method, "rank": rank, "model": "tiny"},
        "order": list(matrix.order),
    }
    table = to_long(matrix).rename(columns={"score": "f1"})
    table = table.assign(precision=table["f1"], recall=table["f1"], n_gold=10, n_pred=10)
    table = table.assign(n_sentences=5, intent_accuracy=np.nan)
    return _write(root / run_id, manifest, table, _curves(matrix, "dev_f1"))


def write_new_run_dir(
    root: Path,
    run_id: str,
    matrix: ScoreMatrix,
    method: str,
    task: str = "massive-intent",
    rank: int | None = None,
) -> Path:
    """A finished run in today's format: ``matrix.metric`` names the score."""
    manifest = {
        "run_id": run_id,
        "status": "done",
        "config": {"method": method, "rank": rank, "model": "tiny"},
        "order": list(matrix.order),
        "schedule": matrix.schedule.name,
        "task": task,
        "metric": matrix.metric,
    }
    table = to_long(matrix)
    slots = matrix.metric != INTENT
    spans = table["score"] if slots else np.nan
    table = table.assign(f1=spans, precision=spans, recall=spans)
    table = table.assign(n_gold=10 if slots else 0, n_pred=10 if slots else 0, n_sentences=5)
    table = table.assign(intent_accuracy=np.nan if slots else table["score"])
    return _write(root / run_id, manifest, table, _curves(matrix, "dev_score"))


def _curves(matrix: ScoreMatrix, dev: str) -> pd.DataFrame:
    steps = range(1, matrix.scores.shape[0])
    return pd.DataFrame(
        {
            "step": list(steps),
            "trained_locale": [matrix.schedule.trained_locale(i, matrix.order) for i in steps],
            "epoch": 1,
            "train_loss": 0.5,
            dev: [float(np.nanmean(matrix.scores[i])) for i in steps],
            "learning_rate": 1e-5,
            "seconds": 1.0,
        }
    )


def _write(path: Path, manifest: dict, scores: pd.DataFrame, curves: pd.DataFrame) -> Path:
    path.mkdir(parents=True)
    (path / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    scores.to_parquet(path / "scores.parquet", index=False)
    curves.to_parquet(path / "curves.parquet", index=False)
    (path / "DONE").write_text("", encoding="utf-8")
    return path
