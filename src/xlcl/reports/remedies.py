"""The remedies comparison: each remedy against the plain method it modifies.

A remedy's runs are the label of a method with a ``strategy``; its plain method is the label
of the same method, rank, model and task without one (`ReportRun.base_label`). Each row
gives mean ± std over the label's runs (orders and seeds), and two paired columns: the
remedy's change against the plain run of the same order and seed, mean ± std over the
pairs, which is what says whether a remedy beats the plain method by more than the spread
of orders and seeds.

The costs come from the manifest (``strategy_cost``, written since remedies record it) and
from the training curves (``curves.parquet``'s ``seconds``: training epochs only, scoring
left out). Runs without them show ``–``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from xlcl.metrics.across import DDOF
from xlcl.reports.analysis import LabelSummary, shared_metric
from xlcl.reports.collect import ReportRun
from xlcl.reports.figures import LABEL_FONT, OKABE_ITO, Plot, new_figure
from xlcl.reports.tables import NA, Table, pm, stat, table_frames

CURVES = "curves.parquet"
SCALARS = ("final_score", "cbt", "cft", "forgetting")
PAIRED = ("final_score", "cbt")  # the paired changes shown: the score kept, the transfer lost


def remedy_groups(summaries: Sequence[LabelSummary]) -> dict[str, list[LabelSummary]]:
    """Finished labels by plain method, plain first, for methods that have a remedy's runs."""
    done = [s for s in summaries if not s.partial]
    remedied = {s.first.base_label for s in done if s.strategy}
    groups: dict[str, list[LabelSummary]] = {}
    for s in sorted(done, key=lambda s: s.strategy is not None):  # plain first, else stable
        if s.first.base_label in remedied:
            groups.setdefault(s.first.base_label, []).append(s)
    return groups


def remedies_table(summaries: Sequence[LabelSummary]) -> Table | None:
    """Per plain method: itself and each remedy, scores, transfer, costs; None without remedies."""
    groups = remedy_groups(summaries)
    if not groups:
        return None
    metric = shared_metric([s for group in groups.values() for s in group]) or "score"
    display: list[dict[str, str]] = []
    values: list[dict[str, object]] = []
    for group in groups.values():
        plain = next((s for s in group if s.strategy is None), None)
        for s in group:
            stats = {(q, k): stat(s, q, k) for q in SCALARS for k in ("mean", "std")}
            paired = {q: _paired(s, plain, lambda m, q=q: m.scalars[q]) for q in PAIRED}
            time = _paired_ratio(s, plain, _training_seconds)
            cost = _cost(s)
            display.append(
                {
                    "Method": s.base_name,
                    "Remedy": s.strategy or "none",
                    "Runs": str(s.aggregate.n_runs),
                    f"Final {metric} (%)": pm(*_pair(stats, "final_score"), scale=100),
                    "CBT": pm(*_pair(stats, "cbt")),
                    "CFT": pm(*_pair(stats, "cft")),
                    "Forgetting": pm(*_pair(stats, "forgetting")),
                    f"Δ final {metric} (pts, paired)": pm(*paired["final_score"][:2], scale=100),
                    "Δ CBT (paired)": pm(*paired["cbt"][:2]),
                    "Extra params (M)": _millions(cost.get("extra_parameters")),
                    "Stored values (M)": _millions(cost.get("stored_values")),
                    "Kept utterances": _count(cost.get("memory_utterances")),
                    "Training time (× plain)": pm(*time, scale=1.0) if s.strategy else "1",
                }
            )
            values.append(
                {
                    "label": s.label,
                    "plain_label": s.first.base_label,
                    "strategy": s.strategy,
                    "n_runs": s.aggregate.n_runs,
                    **{f"{q}_{k}": stats[q, k] for q in SCALARS for k in ("mean", "std")},
                    **{f"delta_{q}_mean": paired[q][0] for q in PAIRED},
                    **{f"delta_{q}_std": paired[q][1] for q in PAIRED},
                    **{f"delta_{q}_n": paired[q][2] for q in PAIRED},
                    "extra_parameters": cost.get("extra_parameters"),
                    "stored_values": cost.get("stored_values"),
                    "memory_utterances": cost.get("memory_utterances"),
                    "time_ratio_mean": time[0],
                    "time_ratio_std": time[1],
                }
            )
    notes = (
        "Mean ± std (ddof 1) over each label's runs (orders and seeds). Δ: the remedy's run "
        "minus the plain method's run of the same order and seed, mean ± std over those "
        "pairs; a remedy beats its plain method by more than the spread where |mean| > std.",
        "Costs: parameters added and values stored besides the model (`Strategy.cost`, the "
        "manifest's strategy_cost), training utterances of earlier locales kept; training "
        "time is the sum of the training curves' seconds (scoring left out), paired as Δ.",
    )
    title = "Remedies: each against its plain method"
    return Table("remedies", title, *table_frames(display, values), notes)


def remedies_plot(summaries: Sequence[LabelSummary]) -> Plot | None:
    """CBT against final score, one point per remedy (± std both ways), plain methods marked."""
    groups = remedy_groups(summaries)
    if not groups:
        return None
    metric = shared_metric([s for group in groups.values() for s in group]) or "score"
    fig, ax = new_figure(8.0, 5.2)
    for k, group in enumerate(groups.values()):
        color = OKABE_ITO[k % len(OKABE_ITO)]
        for s in group:
            x, xerr = stat(s, "cbt", "mean"), _zero_nan(stat(s, "cbt", "std"))
            y = stat(s, "final_score", "mean") * 100
            yerr = _zero_nan(stat(s, "final_score", "std")) * 100
            plain = s.strategy is None
            ax.errorbar(
                x,
                y,
                xerr=xerr,
                yerr=yerr,
                fmt="s" if plain else "o",
                color=color,
                markersize=9 if plain else 6,
                markeredgecolor="black" if plain else color,
                elinewidth=1,
                capsize=2,
                label=s.base_name if plain else None,
            )
            text = s.base_name if plain else s.strategy.split()[0]  # type: ignore[union-attr]
            weight = "bold" if plain else "normal"
            ax.annotate(
                text, (x, y), xytext=(5, 4), textcoords="offset points",
                fontsize=LABEL_FONT, color=color, fontweight=weight,
            )  # fmt: skip
    ax.axvline(0, color="black", linewidth=0.6)
    ax.set_xlabel("CBT (backward transfer; below 0 is forgetting)")
    ax.set_ylabel(f"final {metric} (%)")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=LABEL_FONT, title="plain method (square)")
    caption = (
        f"Each remedy (circle) and its plain method (square, bold label), one colour per plain "
        f"method: mean CBT and final {metric} over the runs (orders and seeds), bars ± std. "
        "Up and to the right is better."
    )
    return Plot("remedies_cbt_final", f"Remedies: CBT against final {metric}", caption, fig)


def _pair(stats: Mapping[tuple[str, str], float], q: str) -> tuple[float, float]:
    return stats[q, "mean"], stats[q, "std"]


def _paired(
    s: LabelSummary, plain: LabelSummary | None, value: Callable[..., float]
) -> tuple[float, float, int]:
    """Mean, std and count of ``value(remedy run) - value(plain run)`` over (order, seed) pairs."""
    if s.strategy is None or plain is None:
        return math.nan, math.nan, 0
    by_key = {_pairing(r): m for r, m in zip(plain.runs, plain.metrics, strict=True)}
    deltas = [
        value(m) - value(by_key[_pairing(r)])
        for r, m in zip(s.runs, s.metrics, strict=True)
        if _pairing(r) in by_key
    ]
    return _spread(deltas)


def _paired_ratio(
    s: LabelSummary, plain: LabelSummary | None, value: Callable[[ReportRun], float]
) -> tuple[float, float]:
    """Mean and std of ``value(remedy run) / value(plain run)`` over (order, seed) pairs."""
    if s.strategy is None or plain is None:
        return math.nan, math.nan
    by_key = {_pairing(r): r for r in plain.runs}
    ratios = [
        value(r) / value(by_key[_pairing(r)]) for r in s.runs if _pairing(r) in by_key
    ]  # fmt: skip
    mean, std, _ = _spread([x for x in ratios if math.isfinite(x)])
    return mean, std


def _pairing(run: ReportRun) -> tuple[tuple[str, ...], object]:
    """What a remedy's run shares with its plain run: the order and the seed."""
    seed = (run.manifest or {}).get("seed")
    return tuple(run.observed.order), seed


def _spread(values: Sequence[float]) -> tuple[float, float, int]:
    if not values:
        return math.nan, math.nan, 0
    array = np.asarray(values, dtype=float)
    std = float(array.std(ddof=DDOF)) if len(array) > DDOF else math.nan
    return float(array.mean()), std, len(array)


def _training_seconds(run: ReportRun) -> float:
    """Seconds the run spent in training epochs, from its curves; NaN without them."""
    path = Path(run.source) / CURVES
    try:
        curves = pd.read_parquet(path, columns=["seconds"])
    except (OSError, ValueError, KeyError):
        return math.nan
    total = float(curves["seconds"].sum())
    return total if total > 0 else math.nan


def _cost(s: LabelSummary) -> dict[str, int]:
    """The label's strategy cost from its first run's manifest (the same for all its runs)."""
    cost = (s.first.manifest or {}).get("strategy_cost")
    if s.strategy is None:
        return {"extra_parameters": 0, "stored_values": 0, "memory_utterances": 0}
    return dict(cost) if isinstance(cost, Mapping) else {}


def _millions(value: int | None) -> str:
    return NA if value is None else f"{value / 1e6:,.2f}"


def _count(value: int | None) -> str:
    return NA if value is None else f"{value:,}"


def _zero_nan(value: float) -> float:
    return 0.0 if math.isnan(value) else value


__all__ = ["remedies_plot", "remedies_table", "remedy_groups"]
