"""The Planner section: the CBT an interference model predicts for a run's order, against
the CBT the run measured (issue #18, docs/planner.md).

A results directory may keep fitted models in ``planner/*.json`` (``xlcl plan fit --out
RESULTS/planner/NAME.json``). Each model is set against every finished sequential run of
the label it was fitted for: the CBT it predicts for the run's order over the run's
locales, the CBT measured (with its paired bootstrap interval where the run keeps
per-utterance counts), and the kind of the order: the one the model's search plans
(``planned``), the one it finds most destructive (``worst``), or ``other``. A run over
locales the model was fitted on is flagged: only runs over unseen locales validate it.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from xlcl.metrics import cbt
from xlcl.metrics.bootstrap import Bootstrap, Interval
from xlcl.metrics.intervals import run_counts
from xlcl.metrics.io import MANIFEST
from xlcl.planner import (
    InterferenceModel,
    PlannerError,
    Scorer,
    load_model,
    search,
    uriel_distances,
)
from xlcl.planner.features import URIEL_CODES, DistanceTable
from xlcl.planner.model import MEAN_BASELINE
from xlcl.reports.analysis import LabelSummary
from xlcl.reports.collect import ReportRun
from xlcl.reports.figures import LABEL_FONT, OKABE_ITO, Plot, new_figure
from xlcl.reports.tables import NA, Table, num, table_frames

PLANNER_DIR = "planner"
MARKERS = {"planned": "^", "worst": "v", "other": "o"}  # the order kinds, in legend order
MIN_CORRELATION_RUNS = 3


@dataclass(frozen=True)
class FoundModel:
    """A fitted interference model and the file it was read from."""

    path: Path
    model: InterferenceModel
    name: str  # as the tables and the figure show it: the file's name, unless two share it

    @property
    def fit_locales(self) -> frozenset[str]:
        """The locales of the cells it was fitted on, as receiver or donor."""
        table = self.model.table
        return frozenset(table.receivers) | frozenset(table.donors)


@dataclass(frozen=True)
class Prediction:
    """One run's order as a model predicts it and as the run measured it."""

    found: FoundModel
    summary: LabelSummary
    run: ReportRun
    kind: str  # a key of `MARKERS`
    predicted: float
    measured: float
    interval: Interval | None  # None: the run has no per-utterance counts
    seen: bool  # whether some locale of the run was in the model's fit

    @property
    def error(self) -> float:
        """Measured minus predicted CBT."""
        return self.measured - self.predicted


@dataclass(frozen=True)
class PlannerSection:
    """What the report shows of the planner: two tables and one figure."""

    predictions: Table
    weights: Table
    plot: Plot


@dataclass(frozen=True)
class _Planned:
    """A model's scorer over one set of locales, and its planned and worst orders."""

    scorer: Scorer
    planned: tuple[str, ...]
    worst: tuple[str, ...]


def planner_section(
    inputs: Sequence[Path], summaries: Sequence[LabelSummary], boot: Bootstrap
) -> tuple[PlannerSection | None, list[str]]:
    """The Planner section of the models in the inputs' ``planner/`` folders, and notes.

    None (and no note) without a model file; None with a note when no run can be
    predicted, or when the URIEL distances cannot be computed (no ``urielplus``).
    """
    paths = model_files(inputs)
    if not paths:
        return None, []
    models, notes = load_models(paths)
    if not models:  # the notes name each file and why it is none
        return None, notes
    try:
        found, predict_notes = predictions(models, summaries, boot)
    except PlannerError as err:
        return None, [*notes, f"Planner section left out: {err}."]
    notes += predict_notes
    if not found:
        return None, [*notes, "Planner section left out: no run to predict."]
    level = f"{boot.level * 100:g}%"
    tables = predictions_table(found, boot), weights_table(models)
    return PlannerSection(*tables, cbt_plot(found, level)), notes


def model_files(inputs: Sequence[Path]) -> list[Path]:
    """``planner/*.json`` of each input directory, and of the parent of a run directory."""
    folders: list[Path] = []
    for path in inputs:
        if not path.is_dir():
            continue
        folders.append(path / PLANNER_DIR)
        if (path / MANIFEST).exists():
            folders.append(path.parent / PLANNER_DIR)
    found = {file.resolve(): file for folder in folders for file in sorted(folder.glob("*.json"))}
    return list(found.values())


def load_models(paths: Sequence[Path]) -> tuple[list[FoundModel], list[str]]:
    """The interference models in ``paths``; a note naming each file that is not one."""
    names = Counter(path.name for path in paths)
    models, notes = [], []
    for path in paths:
        name = path.name if names[path.name] == 1 else str(path)
        try:
            models.append(FoundModel(path, load_model(path), name))
        except PlannerError as err:  # its message names the file
            notes.append(f"Left out {err}.")
        except (KeyError, TypeError, ValueError) as err:
            notes.append(f"Left out {path}: a malformed interference model ({err!r}).")
        except ModuleNotFoundError as err:  # trees are refitted with scikit-learn
            notes.append(
                f"Left out {path}: loading it needs {err.name} (pip install 'xlcl[plan]')."
            )
    return models, notes


def predictions(
    models: Sequence[FoundModel], summaries: Sequence[LabelSummary], boot: Bootstrap
) -> tuple[list[Prediction], list[str]]:
    """Each model's prediction of each finished sequential run of its label, and notes.

    Raises `PlannerError` when the URIEL distances cannot be computed at all.
    """
    distances: dict[tuple[str, ...], DistanceTable] = {}
    notes: list[str] = []
    out: list[Prediction] = []
    for found in models:
        if found.model.uses_overlap:
            notes.append(
                f"Planner: {found.path} was fitted with subword overlap "
                f"({found.model.overlap_tokenizer}); the report has no overlap table, so its "
                "runs are not predicted."
            )
            continue
        label = found.model.provenance.method
        matching = [
            s for s in summaries if s.label == label and not s.partial and s.order_dependent
        ]
        if not matching:
            notes.append(f"Planner: no finished sequential run of {label!r} for {found.path}.")
            continue
        planned: dict[tuple[str, ...], _Planned] = {}
        for s in matching:
            for run in s.runs:
                locales = tuple(sorted(run.matrix.order))
                why = _unpredictable(locales)
                if why:
                    notes.append(f"Planner: run {run.run_id} not predicted: {why}.")
                    continue
                if locales not in distances:
                    distances[locales] = _distances(locales, notes)
                if locales not in planned:
                    planned[locales] = _plan(found.model, distances[locales])
                out.append(_prediction(found, s, run, planned[locales], boot))
    return out, notes


def predictions_table(found: Sequence[Prediction], boot: Bootstrap) -> Table:
    """Per model and run: the order's kind, predicted and measured CBT, interval, error."""
    level = f"{boot.level * 100:g}%"
    display, values = [], []
    for p in found:
        low, high = (p.interval.low, p.interval.high) if p.interval else (math.nan, math.nan)
        display.append(
            {
                "Interference model": p.found.name,
                "Method": p.summary.name,
                "Model": p.summary.model or NA,
                "Run": p.run.run_id,
                "Order": p.kind,
                "Locales seen in fit": "yes" if p.seen else "no",
                "Predicted CBT": num(p.predicted),
                "Measured CBT": num(p.measured),
                f"CBT {level} CI": NA if p.interval is None else f"[{low:.3f}, {high:.3f}]",
                "Error (measured − predicted)": num(p.error),
            }
        )
        values.append(
            {
                "model_file": str(p.found.path),
                "label": p.summary.label,
                "run_id": p.run.run_id,
                "order": " ".join(p.run.matrix.order),
                "kind": p.kind,
                "locales_seen_in_fit": p.seen,
                "predicted_cbt": p.predicted,
                "measured_cbt": p.measured,
                "cbt_ci_low": low,
                "cbt_ci_high": high,
                "error": p.error,
            }
        )
    uncounted = [p.run.run_id for p in found if p.interval is None]
    notes = [
        "Predicted CBT: the interference model's CBT of the run's order over the run's "
        "locales (docs/planner.md). Order: planned is the model's best order of those "
        "locales, worst its most destructive, other any other.",
        f"{level} CI: paired percentile bootstrap of the run's CBT, {boot.resamples} resamples "
        "of each locale's test utterances"
        + (f"; none for {', '.join(uncounted)} (no per-utterance counts)." if uncounted else "."),
        "Runs over locales seen in the fit (yes) are in-sample: only unseen ones validate the "
        "model.",
        *correlation_notes(found),
        *verdict_notes(found),
    ]
    title = "Planner: predicted against measured CBT"
    return Table("planner_cbt", title, *table_frames(display, values), tuple(notes))


def weights_table(models: Sequence[FoundModel]) -> Table:
    """Each model's feature weights (a column per model, the largest first) and its
    cross-validated error; the CSV has a row per model and feature."""
    weights = {found.name: found.model.estimator.weights(found.model.columns) for found in models}
    features = list(dict.fromkeys(feature for w in weights.values() for feature in w))
    features.sort(key=lambda f: -max(abs(w.get(f, 0.0)) for w in weights.values()))
    display = [
        {"Feature": f, **{name: num(w.get(f)) for name, w in weights.items()}} for f in features
    ]
    values, notes = [], []
    for found in models:
        model = found.model
        kept = model.cross_validation.get(model.label(), {})
        baseline = model.cross_validation.get(MEAN_BASELINE, {})
        for feature, weight in weights[found.name].items():
            values.append(
                {
                    "model_file": str(found.path),
                    "label": model.provenance.method,
                    "estimator": model.label(),
                    "feature": feature,
                    "weight": weight,
                    "cv_mae": kept.get("mae", math.nan),
                    "cv_rmse": kept.get("rmse", math.nan),
                    "baseline_mae": baseline.get("mae", math.nan),
                    "baseline_rmse": baseline.get("rmse", math.nan),
                }
            )
        notes.append(
            f"{found.name}: {model.label()} fitted on {len(model.provenance.runs)} run(s) of "
            f"{model.provenance.method!r}; leave-one-locale-out MAE of the effect "
            f"{num(kept.get('mae'), digits=4)} against {num(baseline.get('mae'), digits=4)} "
            "for the training mean (no model)."
        )
    notes.append("Weight: a ridge's coefficient of the standardised feature; trees' importance.")
    title = "Planner: the interference models' feature weights"
    return Table("planner_weights", title, *table_frames(display, values), tuple(notes))


def cbt_plot(found: Sequence[Prediction], level: str) -> Plot:
    """Predicted (x) against measured (y) CBT, one point per run: colour per model, marker
    per order kind, bars the measured CBT's interval, hollow where the fit saw the locales."""
    fig, ax = new_figure(7.5, 5.6)
    colors = _model_colors(found)
    for p in found:
        color = colors[p.found.path]
        yerr = None
        if p.interval is not None:
            yerr = [[p.measured - p.interval.low], [p.interval.high - p.measured]]
        ax.errorbar(
            p.predicted, p.measured, yerr=yerr, fmt=MARKERS[p.kind], color=color,
            markerfacecolor="none" if p.seen else color, markersize=7, elinewidth=1, capsize=2,
        )  # fmt: skip
    low, high = _limits(found)
    ax.plot([low, high], [low, high], color="black", linewidth=0.8, linestyle="--")
    ax.set_xlim(low, high)
    ax.set_ylim(low, high)
    ax.set_xlabel("predicted CBT")
    ax.set_ylabel("measured CBT")
    ax.grid(alpha=0.3)
    ax.legend(handles=_legend(found, colors), fontsize=LABEL_FONT, loc="best")
    caption = (
        "One point per run of the label each interference model was fitted for: the CBT the "
        f"model predicts for the run's order against the CBT measured, bars its {level} bootstrap "
        "interval where the run keeps per-utterance counts; dashed, y = x. Marker: the order "
        "the model plans (▲), the one it finds worst (▼), any other (●); hollow: the run's "
        "locales were seen in the fit (in-sample). " + " ".join(correlation_notes(found))
    )
    return Plot(
        "planner_predicted_vs_measured", "Planner: predicted against measured CBT", caption, fig
    )


def correlation_notes(found: Sequence[Prediction]) -> list[str]:
    """Per model, Pearson and Spearman correlation of predicted and measured CBT over its
    runs, and over those on unseen locales alone where they are fewer (and at least 3)."""
    notes = []
    by_model: dict[Path, list[Prediction]] = {}
    for p in found:
        by_model.setdefault(p.found.path, []).append(p)
    for group in by_model.values():
        name = group[0].found.name
        unseen = [p for p in group if not p.seen]
        parts = [_correlation(group, "runs")]
        if MIN_CORRELATION_RUNS <= len(unseen) < len(group):
            parts.append(_correlation(unseen, "runs on unseen locales"))
        notes.append(f"{name}: " + "; ".join(parts) + ".")
    return notes


def verdict_notes(found: Sequence[Prediction]) -> list[str]:
    """Per model, over its runs on unseen locales: the measured CBT of the planned, the
    other and the worst orders, and whether the planned beats the others by more than their
    spread (docs/planner.md's rule: mean planned − mean other > std of the others, ddof 1)."""
    notes = []
    by_model: dict[Path, list[Prediction]] = {}
    for p in found:
        if not p.seen:
            by_model.setdefault(p.found.path, []).append(p)
    for group in by_model.values():
        kinds = {kind: np.array([p.measured for p in group if p.kind == kind]) for kind in MARKERS}
        planned, other, worst = kinds["planned"], kinds["other"], kinds["worst"]
        if len(planned) == 0 or len(other) < 2:
            continue
        spread = float(other.std(ddof=1))
        margin = float(planned.mean() - other.mean())
        beats = "yes" if margin > spread else "no"
        worst_text = f"; worst {worst.mean():.4f} ({len(worst)})" if len(worst) else ""
        notes.append(
            f"{group[0].found.name}, measured CBT on unseen locales: planned "
            f"{planned.mean():.4f} ({len(planned)} runs), other orders {other.mean():.4f} ± "
            f"{spread:.4f} ({len(other)}){worst_text}. Planned beats the other orders by "
            f"more than their spread: {beats} ({margin:+.4f} against {spread:.4f})."
        )
    return notes


def _correlation(group: Sequence[Prediction], what: str) -> str:
    n = len(group)
    if n < MIN_CORRELATION_RUNS:
        return f"{n} {what}, too few for a correlation (at least {MIN_CORRELATION_RUNS})"
    x = np.array([p.predicted for p in group])
    y = np.array([p.measured for p in group])
    spearman = _pearson(pd.Series(x).rank().to_numpy(), pd.Series(y).rank().to_numpy())
    return (
        f"Pearson r = {num(_pearson(x, y), digits=2)}, Spearman ρ = {num(spearman, digits=2)} "
        f"over {n} {what}"
    )


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson's r; NaN where either side is constant (no correlation is defined)."""
    dx, dy = x - x.mean(), y - y.mean()
    denominator = math.sqrt(float(dx @ dx) * float(dy @ dy))
    return float(dx @ dy) / denominator if denominator > 0 else math.nan


def _unpredictable(locales: Sequence[str]) -> str:
    """Why a run's locales cannot be predicted; empty if they can."""
    if len(locales) < 2:
        return "an order of one locale has no CBT"
    unknown = [loc for loc in locales if loc not in URIEL_CODES]
    return f"no URIEL language for {', '.join(unknown)}" if unknown else ""


def _distances(locales: tuple[str, ...], notes: list[str]) -> DistanceTable:
    """`uriel_distances` of ``locales``; its imputation warning becomes a note (once)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = uriel_distances(locales)
    for warning in caught:
        note = f"Planner: {warning.message}"
        if note not in notes:
            notes.append(note)
    return table


def _plan(model: InterferenceModel, distances: DistanceTable) -> _Planned:
    locales = distances.locales
    scorer = Scorer(
        locales,
        model.effect_tensor(locales, distances, None),
        np.array([model.learning_score(locale) for locale in locales]),
    )
    return _Planned(scorer, search(scorer), search(scorer, worst=True))


def _prediction(
    found: FoundModel, s: LabelSummary, run: ReportRun, planned: _Planned, boot: Bootstrap
) -> Prediction:
    order = tuple(run.matrix.order)
    kind = "planned" if order == planned.planned else "worst" if order == planned.worst else "other"
    counts = run_counts(run.run_id, run.source, run.matrix)
    interval = None if isinstance(counts, str) else boot.run_intervals(run.matrix, counts)["cbt"]
    return Prediction(
        found=found,
        summary=s,
        run=run,
        kind=kind,
        predicted=float(planned.scorer.cbt(planned.scorer.indices(order))[0]),
        measured=cbt(run.matrix),
        interval=interval,
        seen=bool(found.fit_locales & set(order)),
    )


def _model_colors(found: Sequence[Prediction]) -> dict[Path, str]:
    paths = list(dict.fromkeys(p.found.path for p in found))
    return {path: OKABE_ITO[k % len(OKABE_ITO)] for k, path in enumerate(paths)}


def _legend(found: Sequence[Prediction], colors: Mapping[Path, str]) -> list[Line2D]:
    """A line per model (its colour, its label's name and file) and per order kind shown."""
    handles = []
    for path, color in colors.items():
        p = next(p for p in found if p.found.path == path)
        name = (
            p.summary.name if p.summary.model is None else f"{p.summary.name} · {p.summary.model}"
        )
        handles.append(
            Line2D([], [], color=color, marker="s", linestyle="", label=f"{name} ({p.found.name})")
        )
    kinds = {p.kind for p in found}
    handles += [
        Line2D([], [], color="black", marker=marker, linestyle="", label=kind)
        for kind, marker in MARKERS.items()
        if kind in kinds
    ]
    return handles


def _limits(found: Sequence[Prediction]) -> tuple[float, float]:
    """A common range of both axes that holds every point and bar, padded by 5%."""
    values = [v for p in found for v in (p.predicted, p.measured) if math.isfinite(v)]
    values += [
        v
        for p in found
        if p.interval
        for v in (p.interval.low, p.interval.high)
        if math.isfinite(v)
    ]
    low, high = (min(values), max(values)) if values else (-1.0, 0.0)
    pad = 0.05 * (high - low) or 0.01
    return low - pad, high + pad


__all__ = [
    "PLANNER_DIR",
    "FoundModel",
    "PlannerSection",
    "Prediction",
    "cbt_plot",
    "correlation_notes",
    "load_models",
    "model_files",
    "planner_section",
    "predictions",
    "predictions_table",
    "verdict_notes",
    "weights_table",
]
