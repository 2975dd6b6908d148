"""The metrics of a set of runs as one JSON-ready document (``xlcl metrics --json``).

``{"runs": {run_id: {...}}, "aggregate": {label: {...}}}``; NaN is written as ``None``
(JSON ``null``). The schema is in ``docs/metrics.md``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from xlcl.metrics.across import CURVES, LOCALE_VALUES, Aggregate, RunMetrics, aggregate, summarize
from xlcl.metrics.groups import Grouping, group_means, ungrouped
from xlcl.metrics.hops import DEFAULT_HOPS
from xlcl.metrics.io import Run
from xlcl.metrics.matrix import MetricsInputError


def build_summary(
    runs: Sequence[Run], hops: int = DEFAULT_HOPS, groupings: Mapping[str, Grouping] | None = None
) -> dict[str, Any]:
    """Per-run metrics and, per label (method, rank, model), their aggregate over runs."""
    metrics = {run.run_id: summarize(run.matrix, hops) for run in runs}
    labels: dict[str, list[Run]] = {}
    for run in runs:
        labels.setdefault(run.label, []).append(run)
    document = {
        "runs": {run.run_id: _run_entry(run, metrics[run.run_id]) for run in runs},
        "aggregate": {
            label: _aggregate_entry(members, [metrics[r.run_id] for r in members], groupings or {})
            for label, members in labels.items()
        },
    }
    return json_safe(document)


def json_safe(value: Any) -> Any:
    """``value`` with numpy scalars and arrays as Python values and NaN as ``None``."""
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, np.ndarray | pd.Series | list | tuple):
        return [json_safe(v) for v in list(value)]
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return None if math.isnan(value) else float(value)
    return value


def _run_entry(run: Run, metrics: RunMetrics) -> dict[str, Any]:
    return {
        "method": metrics.method,
        "schedule": run.matrix.schedule.name,
        "task": run.task,
        "metric": metrics.metric,
        "label": run.label,
        "source": str(run.source),
        "order": list(metrics.order),
        **metrics.scalars,
        "avg_score": metrics.curves["avg_score"],
        "perf_shift": metrics.curves["perf_shift"],
        "fwt": metrics.curves["fwt"],
        "mft": _rows(metrics.mft),
        "mbt": _rows(metrics.mbt),
        "mft_mean": metrics.curves["mft"],
        "mbt_mean": metrics.curves["mbt"],
        "learning_gain": metrics.locales["learning_gain"].to_dict(),
    }


def _aggregate_entry(
    members: list[Run], metrics: list[RunMetrics], groupings: Mapping[str, Grouping]
) -> dict[str, Any]:
    try:
        agg = aggregate(metrics)
    except ValueError as err:  # runs of two metrics under one label
        raise MetricsInputError(f"{members[0].label}: {err}") from None
    locales = list(agg.locale_mean.index)
    return {
        "method": members[0].matrix.method,
        "metric": agg.metric,
        "n_runs": agg.n_runs,
        "runs": [r.run_id for r in members],
        "scalars": agg.scalars.to_dict(orient="index"),
        "curves": {name: agg.curves[name].to_dict(orient="list") for name in CURVES},
        "locales": {loc: _locale_entry(agg, loc) for loc in locales},
        "groups": {
            name: _group_entries(group_means(agg.locale_mean, grouping))
            for name, grouping in groupings.items()
        },
        "ungrouped": {name: ungrouped(locales, grouping) for name, grouping in groupings.items()},
    }


def _locale_entry(agg: Aggregate, locale: str) -> dict[str, Any]:
    mean, n = agg.locale_mean.loc[locale], agg.locale_n.loc[locale]
    entry: dict[str, Any] = {q: {"mean": mean[q], "n": n[q]} for q in LOCALE_VALUES}
    for prefix in ("mft", "mbt"):
        cols = _hop_columns(agg.locale_mean, prefix)
        entry[prefix] = {"mean": mean[cols].to_numpy(), "n": n[cols].to_numpy()}
    return entry


def _group_entries(table: pd.DataFrame) -> dict[str, Any]:
    entries = {}
    for group, row in table.iterrows():
        entry: dict[str, Any] = {"n_locales": int(row["n_locales"])}
        entry.update({q: row[q] for q in LOCALE_VALUES})
        for prefix in ("mft", "mbt"):
            entry[prefix] = row[_hop_columns(table, prefix)].to_numpy()
        entries[str(group)] = entry
    return entries


def _hop_columns(table: pd.DataFrame, prefix: str) -> list[str]:
    return [c for c in table.columns if str(c).startswith(f"{prefix}_")]


def _rows(table: pd.DataFrame) -> dict[str, list[float]]:
    return {str(loc): list(row) for loc, row in zip(table.index, table.to_numpy(), strict=True)}
