"""The paper's figures from label summaries, drawn with matplotlib's Agg canvas.

Each figure is a ``matplotlib.figure.Figure`` on an explicit ``FigureCanvasAgg``: no pyplot,
no global backend or style change. Colours are colour-blind safe: Okabe-Ito for categories,
cividis for score levels, PuOr (ColorBrewer, diverging) for changes. Figures over locales grow
with the number of locales so that all 52 labels stay readable. Axes name the score by the
runs' metric (``span F1``), or ``score`` where labels of several metrics share a figure.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Colormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from xlcl.metrics.groups import LocaleFacts
from xlcl.reports.analysis import LabelSummary, shared_metric
from xlcl.schedules import JOINT

OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
OTHER = "#999999"  # scripts of a single locale
MISSING = "#e8e8e8"  # NaN cells of heatmaps
DPI = 150
LABEL_FONT = 8


@dataclass(frozen=True, eq=False)
class Plot:
    """One figure of the report: ``name`` is its file stem under ``figures/``."""

    name: str
    title: str
    caption: str
    figure: Figure


def all_plots(
    summaries: Sequence[LabelSummary], facts: Mapping[str, LocaleFacts]
) -> tuple[list[Plot], list[str]]:
    """Every figure the summaries allow, and a note for each one left out."""
    plots, notes = [avg_score_plot(summaries)], []
    models = models_plot(summaries)
    if models is None:
        found = sorted({s.model or "unknown" for s in summaries})
        notes.append(f"Figure 4 left out: runs of one base model only ({', '.join(found)}).")
    else:
        plots.append(models)
    for s in summaries:
        plots.append(matrix_plot(s))
        if s.partial:  # an unfinished run: its curve (Figure 2) and its matrix only
            continue
        if s.order_dependent and s.aggregate.locale_mean["perf_shift"].notna().any():
            plots += [perf_shift_plot(s, facts), hops_plot(s)]
        if s.order_dependent and s.forgetting["mean"].notna().any():
            plots.append(forgetting_plot(s, facts))
    if not any(s.order_dependent for s in summaries):
        notes.append("Figures 3 and 5 and forgetting per locale left out: no sequential run.")
    return plots, notes


def save_plot(plot: Plot, directory: Path) -> tuple[Path, Path]:
    """``<name>.png`` and ``<name>.pdf`` under ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    png, pdf = directory / f"{plot.name}.png", directory / f"{plot.name}.pdf"
    plot.figure.savefig(png, dpi=DPI)
    plot.figure.savefig(pdf)
    return png, pdf


def avg_score_plot(summaries: Sequence[LabelSummary]) -> Plot:
    """Figure 2: average score over the locales learned so far against their number.

    A joint run (MULTI) is one model, dotted: at step i, its score averaged over the order's
    first i locales (spec/metrics.md), as `avg_score` computes it.
    """
    metric = shared_metric(summaries) or "score"
    fig, ax = new_figure(10.0, 4.8)
    for k, s in enumerate(summaries):
        color = OKABE_ITO[k % len(OKABE_ITO)]
        curve = s.aggregate.curves["avg_score"].iloc[1:]  # position 0: before training
        x = curve.index.to_numpy()
        mean, std = curve["mean"].to_numpy() * 100, curve["std"].to_numpy() * 100
        style = ":" if s.first.matrix.schedule == JOINT else ("--" if s.partial else "-")
        ax.plot(x, mean, linestyle=style, color=color, linewidth=1.8, label=_legend(s))
        ax.fill_between(x, mean - std, mean + std, color=color, alpha=0.18, linewidth=0)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("locales learned")
    ax.set_ylabel(f"average {metric} over learned locales (%)")
    ax.grid(alpha=0.3)
    fig.legend(fontsize=LABEL_FONT, loc="outside right center")
    caption = (
        "Mean over orders (line) ± std (band). MULTI (dotted) is one joint model: at step i, "
        f"its {metric} averaged over the first i locales of the order; dashed lines are "
        "unfinished runs."
    )
    return Plot("fig2_avg_score", f"Figure 2: average {metric} while learning", caption, fig)


def models_plot(summaries: Sequence[LabelSummary]) -> Plot | None:
    """Figure 4: final score per method for each base model; ``None`` with one model only."""
    done = [s for s in summaries if not s.partial and s.model is not None]
    by_method: dict[str, list[LabelSummary]] = {}
    for s in done:
        by_method.setdefault(s.name, []).append(s)
    compared = {name: group for name, group in by_method.items() if len(group) > 1}
    if not compared:
        return None
    models = sorted({s.model for group in compared.values() for s in group if s.model})
    fig, ax = new_figure(max(6.0, 1.4 * len(compared) * max(1, len(models) / 2)), 4.5)
    width = 0.8 / len(models)
    for m, model in enumerate(models):
        xs, means, stds = [], [], []
        for x, group in enumerate(compared.values()):
            for s in group:
                if s.model == model:
                    scalars = s.aggregate.scalars.loc["final_score"]
                    xs.append(x - 0.4 + width * (m + 0.5))
                    means.append(scalars["mean"] * 100)
                    stds.append(0.0 if np.isnan(scalars["std"]) else scalars["std"] * 100)
        ax.bar(xs, means, width, yerr=stds, color=OKABE_ITO[m % len(OKABE_ITO)], label=model)
    ax.set_xticks(range(len(compared)), list(compared), rotation=20, ha="right")
    metric = shared_metric(done) or "score"
    ax.set_ylabel(f"final {metric} (%)")
    ax.legend(fontsize=LABEL_FONT, title="base model")
    ax.grid(axis="y", alpha=0.3)
    caption = f"Final {metric}, mean ± std over orders, of each method on each base model."
    return Plot("fig4_models", "Figure 4: base models compared", caption, fig)


def perf_shift_plot(s: LabelSummary, facts: Mapping[str, LocaleFacts]) -> Plot:
    """Figure 3: each locale's performance shift (its destructiveness), sorted, by script."""
    shift = s.aggregate.locale_mean["perf_shift"].dropna().sort_values()
    scripts = [_script(loc, facts) for loc in shift.index]
    colors = _script_colors(scripts)
    fig, ax = new_figure(_locale_width(len(shift)), 4.5)
    x = np.arange(len(shift))
    ax.bar(x, shift.to_numpy(), color=[colors[sc] for sc in scripts])
    ticks = [f"{loc} {sc}" for loc, sc in zip(shift.index, scripts, strict=True)]
    ax.set_xticks(x, ticks, rotation=90, fontsize=LABEL_FONT)
    ax.set_xlim(-0.6, len(shift) - 0.4)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_ylabel(f"performance shift ({s.metric} change)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(handles=_script_legend(colors, scripts), fontsize=LABEL_FONT, title="script")
    caption = (
        f"{s.label}: what training each locale did to the locales learned before it, mean "
        "over orders; most destructive on the left. Scripts of one locale share the grey."
    )
    return Plot(f"fig3_perf_shift_{s.slug}", f"Figure 3: performance shift, {s.name}", caption, fig)


def hops_plot(s: LabelSummary) -> Plot:
    """Figure 5: MFT and MBT per locale (rows) and hop (columns), mean over orders."""
    mean = s.aggregate.locale_mean.sort_index()
    longest = max(run.matrix.n_locales for run in s.runs)
    hops = [h for h in range(longest) if f"mft_{h}" in mean]
    tables = {p: mean[[f"{p}_{h}" for h in hops]].to_numpy() for p in ("mft", "mbt")}
    finite = np.abs(np.concatenate([t.ravel() for t in tables.values()]))
    vmax = float(np.nanmax(finite)) if np.isfinite(finite).any() else 1.0
    fig, axes = _figure_grid(1, 2, max(6.0, 0.45 * len(hops) * 2 + 3), 0.19 * len(mean) + 2)
    cmap = _cmap("PuOr")
    for ax, (prefix, values) in zip(axes, tables.items(), strict=True):
        image = ax.imshow(values, aspect="auto", cmap=cmap, vmin=-vmax, vmax=vmax)
        ax.set_xticks(range(len(hops)), [str(h) for h in hops], fontsize=LABEL_FONT)
        ax.set_yticks(range(len(mean)), list(mean.index), fontsize=LABEL_FONT)
        ax.set_xlabel("hop distance h")
        ax.set_title("MFT (locale as donor)" if prefix == "mft" else "MBT (locale as receiver)")
    fig.colorbar(image, ax=list(axes), label=f"{s.metric} change", shrink=0.6)
    caption = (
        f"{s.label}: hop 0 is the locale's performance shift; hop h ≥ 1 what the locale did to "
        "the one h steps later (MFT) or what that one did to it (MBT). Grey: no cell."
    )
    return Plot(f"fig5_hops_{s.slug}", f"Figure 5: multi-hop transfer, {s.name}", caption, fig)


def matrix_plot(s: LabelSummary) -> Plot:
    """Figure 7: the first run's score matrix, steps × locales in training order."""
    run = s.first
    observed = run.observed
    rows = observed.scores.shape[0]
    trained = [observed.schedule.trained_locale(i, observed.order) for i in range(1, rows)]
    steps = ["0 before", *(f"{i} {loc}" for i, loc in enumerate(trained, 1))]
    fig, ax = new_figure(_locale_width(observed.n_locales) + 1.5, 0.17 * rows + 2.2)
    image = ax.imshow(observed.scores * 100, aspect="auto", cmap=_cmap("cividis"), vmin=0, vmax=100)
    ax.set_xticks(range(observed.n_locales), list(observed.order), rotation=90, fontsize=LABEL_FONT)
    ax.set_yticks(range(rows), steps, fontsize=LABEL_FONT)
    ax.set_xlabel("evaluated locale (training order)")
    ax.set_ylabel("after step (trained locale)")
    fig.colorbar(image, ax=ax, label=f"{s.metric} (%)", shrink=0.8)
    caption = f"Run {run.run_id} ({s.label}, {run.state}). Grey: no score (NaN or not yet run)."
    return Plot(f"fig7_matrix_{s.slug}", f"Figure 7: score matrix, {s.name}", caption, fig)


def forgetting_plot(s: LabelSummary, facts: Mapping[str, LocaleFacts]) -> Plot:
    """Forgetting per locale (mean over orders) against script, family and vitality."""
    values = s.forgetting["mean"].dropna()
    attributes = {
        "script": {loc: _script(loc, facts) for loc in values.index},
        "family": {loc: facts[loc].family if loc in facts else "unknown" for loc in values.index},
        "vitality": {
            loc: facts[loc].vitality if loc in facts else "unknown" for loc in values.index
        },
    }
    sizes = [len(set(groups.values())) for groups in attributes.values()]
    fig = Figure(figsize=(max(8.0, 0.42 * sum(sizes) + 3), 4.8), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 3, sharey=True, width_ratios=[max(n, 2) for n in sizes])
    for ax, (name, groups) in zip(axes, attributes.items(), strict=True):
        _strip(ax, values, groups, ordered=name == "vitality")
        ax.set_xlabel(name)
    axes[0].set_ylabel(f"forgetting ({s.metric} drop)")
    caption = (
        f"{s.label}: each dot is a locale's forgetting (mean over orders), the bar its group's "
        "mean. The last locale of an order has none."
    )
    return Plot(f"forgetting_{s.slug}", f"Forgetting per locale, {s.name}", caption, fig)


def _strip(ax: Axes, values: pd.Series, groups: Mapping[str, str], ordered: bool) -> None:
    frame = pd.DataFrame({"value": values, "group": [groups[loc] for loc in values.index]})
    means = frame.groupby("group")["value"].mean()
    if ordered:
        names = [g for g in ("low", "mid", "high", "unknown") if g in means.index]
    else:
        names = list(means.sort_values(ascending=False).index)
    for x, name in enumerate(names):
        points = frame.loc[frame["group"] == name, "value"].to_numpy()
        spread = np.linspace(-0.22, 0.22, len(points)) if len(points) > 1 else np.zeros(1)
        ax.scatter(x + spread, points, s=14, color=OKABE_ITO[0], alpha=0.8, linewidths=0)
        ax.hlines(means[name], x - 0.32, x + 0.32, color=OKABE_ITO[5], linewidth=2)
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=LABEL_FONT)
    ax.axhline(0, color="black", linewidth=0.6)
    ax.grid(axis="y", alpha=0.3)


def new_figure(width: float, height: float) -> tuple[Figure, Axes]:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)  # the Agg canvas, explicitly: no pyplot, no global backend
    return fig, fig.add_subplot()


def _figure_grid(rows: int, cols: int, width: float, height: float) -> tuple[Figure, list[Axes]]:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, list(np.ravel(fig.subplots(rows, cols)))


def _cmap(name: str) -> Colormap:
    return mpl.colormaps[name].with_extremes(bad=MISSING)


def _locale_width(n_locales: int) -> float:
    return max(6.0, 0.2 * n_locales + 1.5)


def _script(locale: str, facts: Mapping[str, LocaleFacts]) -> str:
    return facts[locale].script if locale in facts else "unknown"


def _script_colors(scripts: Sequence[str]) -> dict[str, str]:
    """Own Okabe-Ito colours for scripts of two or more locales (most frequent first)."""
    counts = Counter(scripts)
    shared = [sc for sc, n in counts.most_common() if n > 1][: len(OKABE_ITO) - 1]
    return {sc: OKABE_ITO[shared.index(sc)] if sc in shared else OTHER for sc in counts}


def _script_legend(colors: Mapping[str, str], scripts: Sequence[str]) -> list[Patch]:
    counts = Counter(scripts)
    handles = [
        Patch(color=color, label=f"{sc} ({counts[sc]})")
        for sc, color in colors.items()
        if color != OTHER
    ]
    if OTHER in colors.values():
        handles.append(Patch(color=OTHER, label="one locale each (script in label)"))
    return handles


def _legend(s: LabelSummary) -> str:
    name = s.name if s.model is None else f"{s.name} · {s.model}"
    return f"{name} [{s.status}]" if s.partial else f"{name} (n={s.aggregate.n_runs})"
