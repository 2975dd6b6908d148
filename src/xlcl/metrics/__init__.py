"""Metrics of forgetting and transfer: pure functions of score matrices (no torch).

The definitions are ``docs/metrics.md`` (from ``spec/metrics.md``). Read runs with
``load``, compute one run's metrics with the functions below or ``summarize``, several
runs' with ``aggregate``, and the ``xlcl metrics --json`` document with ``build_summary``.
"""

from xlcl.metrics.across import Aggregate, RunMetrics, aggregate, summarize
from xlcl.metrics.groups import attribute_groupings, group_means, read_grouping, ungrouped
from xlcl.metrics.hops import DEFAULT_HOPS, fwt, hop_means, mbt, mft
from xlcl.metrics.io import Loaded, Run, load, read_run_dir, read_sweep, read_table
from xlcl.metrics.matrix import (
    MetricsInputError,
    ScoreMatrix,
    from_long,
    from_square,
    schedule_of,
    to_long,
    to_square,
)
from xlcl.metrics.per_run import (
    avg_f1,
    cbt,
    cft,
    effect,
    final_f1,
    final_locale_f1,
    forgetting,
    learning_f1,
    learning_gain,
    locale_forgetting,
    perf_shift,
)
from xlcl.metrics.summary import build_summary

__all__ = [
    "DEFAULT_HOPS",
    "Aggregate",
    "Loaded",
    "MetricsInputError",
    "Run",
    "RunMetrics",
    "ScoreMatrix",
    "aggregate",
    "attribute_groupings",
    "avg_f1",
    "build_summary",
    "cbt",
    "cft",
    "effect",
    "final_f1",
    "final_locale_f1",
    "forgetting",
    "from_long",
    "from_square",
    "fwt",
    "group_means",
    "hop_means",
    "learning_f1",
    "learning_gain",
    "load",
    "locale_forgetting",
    "mbt",
    "mft",
    "perf_shift",
    "read_grouping",
    "read_run_dir",
    "read_sweep",
    "read_table",
    "schedule_of",
    "summarize",
    "to_long",
    "to_square",
    "ungrouped",
]
