"""The metrics a report shows, computed once per label (method, rank, model) with ``xlcl.metrics``.

Runs that share a label are the orders of one method; a partial run is a label of its own
(see ``ReportRun.label``), so that unfinished runs never mix into finished runs' means.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import pandas as pd

from xlcl.methods import PRESETS, method
from xlcl.metrics import (
    Aggregate,
    RunMetrics,
    aggregate,
    locale_forgetting,
    summarize,
)
from xlcl.metrics.bootstrap import Bootstrap, Counted, Interval
from xlcl.metrics.groups import LocaleFacts, known_locales
from xlcl.metrics.intervals import run_counts
from xlcl.reports.collect import ReportRun


@dataclass(frozen=True)
class LabelIntervals:
    """Bootstrap intervals of a label's means over its runs (`Bootstrap.mean_intervals`:
    final score, CBT, CFT), or why it has none (a run without counts)."""

    level: float
    resamples: int
    intervals: Mapping[str, Interval] | None
    missing: tuple[str, ...] = ()  # per run without counts: "run <id>: <why>"
    counted: tuple[Counted, ...] = ()  # each run's matrix and counts, where all have them


@dataclass(frozen=True, eq=False)
class LabelSummary:
    """The runs of one label, their metrics, their aggregate and per-locale forgetting."""

    label: str
    runs: tuple[ReportRun, ...]
    metrics: tuple[RunMetrics, ...]
    aggregate: Aggregate
    forgetting: pd.DataFrame  # index locale; columns mean, n
    intervals: LabelIntervals | None = None  # None: not computed (see `with_intervals`)

    @property
    def first(self) -> ReportRun:
        """The first run of the label (the one whose score matrix Figure 7 shows)."""
        return self.runs[0]

    @property
    def method(self) -> str | None:
        """The method name of the label's runs (``None`` for a table without one)."""
        return self.first.method

    @property
    def rank(self) -> int | None:
        """The LoRA rank, ``None`` for full fine-tuning or where unknown."""
        return self.first.rank

    @property
    def model(self) -> str | None:
        """The base model from the manifest, ``None`` for score tables."""
        return self.first.model

    @property
    def strategy(self) -> str | None:
        """The remedy and its settings (``replay mem_size=100``), None for a plain method."""
        return self.first.strategy

    @property
    def partial(self) -> bool:
        """Whether this label is one unfinished run."""
        return self.first.partial

    @property
    def name(self) -> str:
        """The paper's name of the method and rank, and the remedy (``VANILLA + ewc``)."""
        remedy = f" + {self.strategy.split()[0]}" if self.strategy else ""
        return self.base_name + remedy

    @property
    def base_name(self) -> str:
        """The paper's name of the method and rank (``SHARED LoRA 32``), without a remedy."""
        if self.method in PRESETS:
            try:
                return method(self.method, self.rank).label
            except ValueError:
                pass
        rank = f" r{self.rank}" if self.rank is not None else ""
        return f"{self.method or 'unspecified'}{rank}"

    @property
    def status(self) -> str:
        """``done``, or the partial run's state with its complete steps (``in progress 3/52``)."""
        run = self.first
        return run.state if not run.partial else f"{run.state} ({run.steps_done}/{run.n_steps})"

    @property
    def order_dependent(self) -> bool:
        """Whether one model saw the locales in turn, so that transfer metrics exist."""
        return self.first.matrix.schedule.order_dependent

    @property
    def metric(self) -> str:
        """The score of the label's runs, e.g. ``span F1`` (``xlcl.metrics.ScoreMatrix``)."""
        return self.aggregate.metric

    @property
    def slug(self) -> str:
        """The label as a file-name fragment."""
        return re.sub(r"[^A-Za-z0-9]+", "-", self.label).strip("-").lower()


def summarize_labels(runs: Sequence[ReportRun], hops: int) -> list[LabelSummary]:
    """One ``LabelSummary`` per label, in the paper's method order, then rank and model."""
    by_label: dict[str, list[ReportRun]] = {}
    for run in runs:
        by_label.setdefault(run.label, []).append(run)
    summaries = [_summary(label, members, hops) for label, members in by_label.items()]
    return sorted(summaries, key=_paper_order)


def with_intervals(summaries: Sequence[LabelSummary], boot: Bootstrap) -> list[LabelSummary]:
    """`summaries` with the intervals of each label's means over its runs.

    Every run of a label, and every label, is resampled with the same draws of each
    locale's test utterances. A label with a run without per-utterance counts has none.
    Raises `xlcl.metrics.MetricsInputError` for counts that disagree with their table.
    """
    out = []
    for s in summaries:
        pairs: list[Counted] = []
        missing = []
        for run in s.runs:
            found = run_counts(run.run_id, run.source, run.matrix)
            if isinstance(found, str):
                missing.append(f"run {run.run_id}: {found}")
            else:
                pairs.append((run.matrix, found))
        intervals = None if missing else boot.mean_intervals(pairs)
        counted = () if missing else tuple(pairs)
        found_intervals = LabelIntervals(
            boot.level, boot.resamples, intervals, tuple(missing), counted
        )
        out.append(replace(s, intervals=found_intervals))
    return out


def shared_metric(summaries: Sequence[LabelSummary]) -> str | None:
    """The metric every summary's score is (``span F1``); None when they differ or none."""
    metrics = {s.metric for s in summaries}
    return metrics.pop() if len(metrics) == 1 else None


def locale_facts() -> Mapping[str, LocaleFacts]:
    """Script, family and vitality of the MASSIVE locales (``xlcl.data.LOCALES``)."""
    return known_locales()


def _summary(label: str, runs: list[ReportRun], hops: int) -> LabelSummary:
    metrics = [summarize(run.matrix, hops) for run in runs]
    forgetting = pd.concat([locale_forgetting(run.matrix) for run in runs])
    grouped = forgetting.groupby(level=0, sort=True)
    return LabelSummary(
        label=label,
        runs=tuple(runs),
        metrics=tuple(metrics),
        aggregate=aggregate(metrics),
        forgetting=pd.DataFrame({"mean": grouped.mean(), "n": grouped.count()}),
    )


def _paper_order(summary: LabelSummary) -> tuple[int, int, str, bool, str, str]:
    names = list(PRESETS)
    position = names.index(summary.method) if summary.method in names else len(names)
    rank = summary.rank if summary.rank is not None else 0
    remedy = summary.strategy or ""  # the plain method first, then its remedies
    return position, rank, summary.model or "", summary.partial, remedy, summary.label
