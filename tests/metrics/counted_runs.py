"""Finished run directories whose score tables are the sums of their per-utterance counts."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from xlcl.cell_counts import UTTERANCES, CellCounts, UtteranceCounts, write_cell_counts

GOLD = {"en-US": [1, 2, 0, 1, 3, 1], "de-DE": [2, 1, 1, 0, 1], "ja-JP": [1, 1, 2, 1, 0, 2, 1]}


def write_counted_run(
    root: Path,
    run_id: str,
    order: tuple[str, ...],
    seed: int,
    method: str = "vanilla",
    gold_spans: Mapping[str, Sequence[int]] = GOLD,
    rank: int | None = None,
    model: str = "tiny",
    order_number: int | None = None,
    schedule: str = "sequential",
) -> Path:
    """A finished sequential slot-filling run whose table is its counts' sums; each
    utterance's gold spans from `gold_spans`, its errors drawn from `seed`; its config
    names `order_number` as its order (the paper's orders are numbered). Every step
    scores every locale, as an independent run scoring all its models does."""
    rng = np.random.default_rng(seed)
    cells, rows = [], []
    for step in range(len(order) + 1):
        for locale in order:
            gold = np.array(gold_spans[locale])
            fn = rng.binomial(gold, 0.7 if step == 0 else 0.3)
            counts = UtteranceCounts.spans(gold - fn, rng.poisson(0.4, gold.size), fn)
            cells.append((step, locale, counts))
            t = counts.totals()
            f1 = counts.score()
            rows.append(
                {
                    "step": step,
                    "trained_locale": order[step - 1] if step else None,
                    "eval_locale": locale,
                    "score": f1,
                    "f1": f1,
                    "precision": np.nan,
                    "recall": np.nan,
                    "n_gold": t["tp"] + t["fn"],
                    "n_pred": t["tp"] + t["fp"],
                    "n_sentences": gold.size,
                    "intent_accuracy": np.nan,
                }
            )
    directory = root / run_id
    directory.mkdir(parents=True)
    manifest = {
        "run_id": run_id,
        "status": "done",
        "config": {"method": method, "rank": rank, "model": model, "order": order_number},
        "order": list(order),
        "schedule": schedule,
        "task": "massive-slots",
        "metric": "span F1",
    }
    (directory / "manifest.json").write_text(json.dumps(manifest))
    table = pd.DataFrame(rows)
    table["trained_locale"] = table["trained_locale"].astype("string")
    table.to_parquet(directory / "scores.parquet", index=False)
    write_cell_counts(directory / UTTERANCES, CellCounts.from_cells(cells))
    (directory / "DONE").write_bytes(b"")
    return directory
