"""Metrics of forgetting and transfer: pure functions of score matrices (no torch).

The definitions are ``docs/metrics.md`` (from ``spec/metrics.md``). A matrix holds the
task's score (its ``metric``: span F1, intent accuracy) and its run's schedule. Read runs
with ``load``, compute one run's metrics with the functions below or ``summarize``, several
runs' with ``aggregate``, and the ``xlcl metrics --json`` document with ``build_summary``.
"""

from xlcl.metrics.across import Aggregate, RunMetrics, aggregate, summarize
from xlcl.metrics.groups import attribute_groupings, group_means, read_grouping, ungrouped
from xlcl.metrics.hops import DEFAULT_HOPS, fwt, hop_means, mbt, mft
from xlcl.metrics.io import (
    Loaded,
    Run,
    RunFacts,
    load,
    read_run_dir,
    read_sweep,
    read_table,
    run_facts,
)
from xlcl.metrics.matrix import (
    DEFAULT_METRIC,
    MetricsInputError,
    ScoreMatrix,
    from_long,
    from_square,
    score_column,
    to_long,
    to_square,
)
from xlcl.metrics.per_run import (
    avg_score,
    cbt,
    cft,
    effect,
    final_locale_score,
    final_score,
    forgetting,
    learning_gain,
    learning_score,
    locale_forgetting,
    perf_shift,
)
from xlcl.metrics.summary import build_summary

__all__ = [
    "DEFAULT_HOPS",
    "DEFAULT_METRIC",
    "Aggregate",
    "Loaded",
    "MetricsInputError",
    "Run",
    "RunFacts",
    "RunMetrics",
    "ScoreMatrix",
    "aggregate",
    "attribute_groupings",
    "avg_score",
    "build_summary",
    "cbt",
    "cft",
    "effect",
    "final_locale_score",
    "final_score",
    "forgetting",
    "from_long",
    "from_square",
    "fwt",
    "group_means",
    "hop_means",
    "learning_gain",
    "learning_score",
    "load",
    "locale_forgetting",
    "mbt",
    "mft",
    "perf_shift",
    "read_grouping",
    "read_run_dir",
    "read_sweep",
    "read_table",
    "run_facts",
    "score_column",
    "summarize",
    "to_long",
    "to_square",
    "ungrouped",
]
