"""The interference model: the effect on a receiver locale of training a donor h steps later.

It is fitted on measured runs: every cell ``effect[q, p] = R[q, p] − R[q−1, p]`` with
``q > p`` of a sequential run is one example (MBT's quantity at hop ``h = q − p``),
receiver ``order[p]``, donor ``order[q]``. Hop 0, `perf_shift`, is the mean of a step's
hop cells over its receivers and adds no example of its own. The features are the pair's
(`xlcl.planner.features`) plus two positional ones, ``1/h`` (bounded as h grows past the
fitted runs' lengths) and the donor's step as a fraction of the order, ``q/T``.

Two estimators are cross-validated leaving one locale out (every cell that has it as
receiver or donor), a ridge regression on standardised features and gradient-boosted
trees; the one with the lower mean absolute error is kept. A model is saved as JSON: the
ridge's coefficients, or the trees' scikit-learn parameters with the training rows they
are refitted from (deterministically) when loaded.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from xlcl.metrics import Run, effect
from xlcl.metrics.io import MANIFEST, read_manifest, run_facts
from xlcl.planner.features import (
    DistanceTable,
    OverlapTable,
    PlannerError,
    feature_names,
    pair_features,
)

FORMAT = "xlcl-interference-model"
POSITION_FEATURES = ("inverse_hop", "relative_step")
INTERACTION = "×inverse_hop"  # suffix of a pair feature's product with 1/h
MEAN_BASELINE = "mean effect (no model)"  # the cross-validation entry a model must beat
MIN_RUNS = 2  # one order confounds a pair's effect with its positions
MIN_LOCALES = 3  # leaving one out must leave a pair to fit on
RIDGE_ALPHAS = (0.1, 1.0, 10.0, 100.0)
GBT_PARAMS: Mapping[str, Any] = {
    "n_estimators": 60,
    "max_depth": 3,
    "learning_rate": 0.1,
    "subsample": 1.0,
    "random_state": 0,
}


@dataclass(frozen=True)
class Examples:
    """The fitting table: one row per measured hop cell."""

    columns: tuple[str, ...]
    features: np.ndarray  # (cells, columns)
    target: np.ndarray  # (cells,) the measured effect
    receivers: tuple[str, ...]
    donors: tuple[str, ...]


@dataclass(frozen=True)
class Provenance:
    """What a model was fitted for: `plan order` refuses a run config that disagrees."""

    task: str
    model: str | None  # the encoder
    method: str  # the runs' label: method, rank, model, task and strategy
    metric: str
    runs: tuple[str, ...]


def positions(hop: np.ndarray, step: np.ndarray, n_locales: int) -> np.ndarray:
    """The positional features of cells at ``hop`` ≥ 1 whose donor trains at ``step`` (1..T)."""
    return np.stack([1.0 / hop, step / n_locales], axis=-1)


def examples(
    runs: Sequence[Run], distances: DistanceTable, overlap: OverlapTable | None = None
) -> Examples:
    """The hop cells of ``runs`` (sequential ones; NaN cells skipped) with their features."""
    locales = sorted({loc for run in runs for loc in run.matrix.order})
    index = {loc: i for i, loc in enumerate(locales)}
    pairs = pair_features(locales, distances, overlap)
    rows, target, receivers, donors = [], [], [], []
    for run in runs:
        order, n = run.matrix.order, run.matrix.n_locales
        cells = effect(run.matrix)
        for p in range(1, n + 1):
            for q in range(p + 1, n + 1):
                value = cells[q, p - 1]
                if np.isnan(value):
                    continue
                receiver, donor = order[p - 1], order[q - 1]
                place = positions(np.array(q - p), np.array(q), n)
                pair = pairs[index[receiver], index[donor]]
                rows.append(np.concatenate([pair, place, pair * place[0]]))
                target.append(value)
                receivers.append(receiver)
                donors.append(donor)
    names = feature_names(overlap is not None)
    columns = names + POSITION_FEATURES + tuple(name + INTERACTION for name in names)
    features = np.array(rows).reshape(len(rows), len(columns))
    return Examples(columns, features, np.array(target), tuple(receivers), tuple(donors))


def base_width(columns: Sequence[str]) -> int:
    """How many leading columns the trees use: pair and positional features, no products.

    The ridge needs the products with 1/h to let similarity matter more for near steps:
    without them its prediction is a pair part plus a position part, and a symmetric pair
    effect sums to the same CBT in every order. Trees find interactions themselves.
    """
    return sum(not name.endswith(INTERACTION) for name in columns)


@dataclass
class Estimator:
    """A fitted ridge (``coef`` on standardised features) or gradient-boosted trees.

    ``used``: the leading columns of a row it reads (all for the ridge, `base_width` for
    the trees).
    """

    kind: str  # "ridge" or "gbt"
    params: dict[str, Any]
    used: int
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray | None = None
    intercept: float = 0.0
    trees: Any = field(default=None, repr=False)  # sklearn's GradientBoostingRegressor

    def predict(self, features: np.ndarray) -> np.ndarray:
        """The predicted effect of each row."""
        features = features[:, : self.used]
        if self.kind == "ridge":
            assert self.coef is not None
            return ((features - self.mean) / self.scale) @ self.coef + self.intercept
        return np.asarray(self.trees.predict(features), dtype=float)

    def weights(self, columns: Sequence[str]) -> dict[str, float]:
        """Ridge: each standardised feature's coefficient; trees: impurity importances."""
        values = self.coef if self.kind == "ridge" else self.trees.feature_importances_
        assert values is not None
        return {name: float(v) for name, v in zip(columns[: self.used], values, strict=True)}


def fit_estimator(
    kind: str, params: Mapping[str, Any], x: np.ndarray, y: np.ndarray, used: int
) -> Estimator:
    """Fit a ridge (``params = {"alpha": a}``) or trees (`GBT_PARAMS`) to the first
    ``used`` columns of ``x`` and to ``y``."""
    x = x[:, :used]
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)  # a constant column gets weight 0 from the ridge
    if kind == "ridge":
        from sklearn.linear_model import Ridge

        ridge = Ridge(alpha=params["alpha"]).fit((x - mean) / scale, y)
        coef, intercept = ridge.coef_, float(ridge.intercept_)
        return Estimator(kind, dict(params), used, mean, scale, coef, intercept)
    from sklearn.ensemble import GradientBoostingRegressor

    trees = GradientBoostingRegressor(**params).fit(x, y)
    return Estimator(kind, dict(params), used, mean, scale, trees=trees)


def candidates() -> list[tuple[str, dict[str, Any]]]:
    """The estimators compared by cross-validation; a tie goes to the first."""
    ridges = [("ridge", {"alpha": alpha}) for alpha in RIDGE_ALPHAS]
    return [*ridges, ("gbt", dict(GBT_PARAMS))]


def leave_one_locale_out(table: Examples, kind: str, params: Mapping[str, Any]) -> dict[str, float]:
    """Mean absolute and root-mean-square error of predicting each locale's cells unseen.

    For each locale, fit on the cells that involve neither as receiver nor as donor, and
    predict those that involve it; the errors are pooled over all folds.
    """
    errors = []
    for held in _folds(table):
        model = fit_estimator(
            kind, params, table.features[~held], table.target[~held], _used(kind, table.columns)
        )
        errors.append(model.predict(table.features[held]) - table.target[held])
    return _errors(errors)


def _folds(table: Examples) -> list[np.ndarray]:
    """Per locale, the mask of the cells it is receiver or donor of (all-True folds left out)."""
    folds = []
    for locale in sorted(set(table.receivers) | set(table.donors)):
        held = np.array(
            [r == locale or d == locale for r, d in zip(table.receivers, table.donors, strict=True)]
        )
        if not held.all():
            folds.append(held)
    return folds


def _errors(errors: list[np.ndarray]) -> dict[str, float]:
    pooled = np.concatenate(errors)
    return {"mae": float(np.abs(pooled).mean()), "rmse": float(np.sqrt((pooled**2).mean()))}


@dataclass
class InterferenceModel:
    """A fitted interference model and what it was fitted for."""

    provenance: Provenance
    estimator: Estimator
    columns: tuple[str, ...]
    table: Examples
    learning_scores: dict[str, float]  # each locale's mean R[p, p] over the runs
    cross_validation: dict[str, dict[str, float]]
    overlap_tokenizer: str | None = None

    @property
    def uses_overlap(self) -> bool:
        """Whether the model needs a subword overlap table."""
        return self.overlap_tokenizer is not None

    def label(self) -> str:
        """``ridge alpha=10`` or ``gbt``: the estimator kept."""
        if self.estimator.kind == "ridge":
            return f"ridge alpha={self.estimator.params['alpha']:g}"
        return "gradient-boosted trees"

    def learning_score(self, locale: str) -> float:
        """The locale's mean score right after learning it; unseen locales get the mean."""
        if locale in self.learning_scores:
            return self.learning_scores[locale]
        return float(np.mean(list(self.learning_scores.values())))

    def effect_tensor(
        self, locales: Sequence[str], distances: DistanceTable, overlap: OverlapTable | None
    ) -> np.ndarray:
        """``E[a, b, i, j]``: predicted effect on ``locales[a]`` trained at position i of
        training ``locales[b]`` at position j > i (0-based; NaN where j ≤ i).

        Ridge: the prediction is a sum of a pair part and a positional part. Trees: the
        positional features only matter through the trees' thresholds, so each group of
        positions that falls in the same intervals is predicted once for every pair.
        """
        n = len(locales)
        pairs = pair_features(locales, distances, overlap if self.uses_overlap else None)
        i, j = np.triu_indices(n, k=1)
        place = positions((j - i).astype(float), (j + 1).astype(float), n)
        out = np.full((n, n, n, n), np.nan)
        if self.estimator.kind == "ridge":
            out[:, :, i, j] = self._ridge_effects(pairs, place)
            return out
        groups = self._position_groups(place)
        flat = pairs.reshape(n * n, -1)
        for group in np.unique(groups):
            members = np.flatnonzero(groups == group)
            rows = np.hstack([flat, np.repeat(place[members[:1]], n * n, axis=0)])  # no products
            predicted = self.estimator.predict(rows).reshape(n, n)
            out[:, :, i[members], j[members]] = predicted[:, :, None]
        return out

    def _ridge_effects(self, pairs: np.ndarray, place: np.ndarray) -> np.ndarray:
        """(n, n, positions): the ridge's prediction split into its pair, positional and
        (pair × 1/h) parts, so no row of features is built per cell."""
        ridge = self.estimator
        assert ridge.coef is not None
        width = pairs.shape[-1]
        weight = ridge.coef / ridge.scale  # on raw features
        pair_w, place_w, inter_w = weight[:width], weight[width : width + 2], weight[width + 2 :]
        constant = ridge.intercept - float(ridge.mean @ weight)
        pair_part = pairs @ pair_w + constant
        inter_part = pairs @ inter_w
        return (
            pair_part[:, :, None]
            + (place @ place_w)[None, None, :]
            + inter_part[:, :, None] * place[None, None, :, 0]
        )

    def _position_groups(self, place: np.ndarray) -> np.ndarray:
        """A group id per row of ``place``: equal ids fall in the same tree intervals."""
        width = base_width(self.columns) - len(POSITION_FEATURES)
        codes = []
        for column in range(place.shape[1]):
            cuts = sorted(
                {
                    float(t)
                    for tree in self.estimator.trees.estimators_.ravel()
                    for f, t in zip(tree.tree_.feature, tree.tree_.threshold, strict=True)
                    if f == width + column
                }
            )
            # The trees compare float32 inputs with x <= threshold: so does side="left".
            values = place[:, column].astype(np.float32).astype(float)
            codes.append(np.searchsorted(np.array(cuts), values, side="left"))
        return np.ravel_multi_index(tuple(codes), tuple(int(c.max()) + 1 for c in codes))

    def to_json(self) -> dict[str, Any]:
        """The JSON document `save` writes."""
        estimator: dict[str, Any] = {"kind": self.estimator.kind, "params": self.estimator.params}
        if self.estimator.kind == "ridge":
            assert self.estimator.coef is not None
            estimator |= {
                "mean": self.estimator.mean.tolist(),
                "scale": self.estimator.scale.tolist(),
                "coef": self.estimator.coef.tolist(),
                "intercept": self.estimator.intercept,
            }
        provenance = self.provenance
        return {
            "format": FORMAT,
            "version": 1,
            "task": provenance.task,
            "model": provenance.model,
            "method": provenance.method,
            "metric": provenance.metric,
            "runs": list(provenance.runs),
            "estimator": estimator,
            "columns": list(self.columns),
            "weights": self.estimator.weights(self.columns),
            "cross_validation": self.cross_validation,
            "overlap_tokenizer": self.overlap_tokenizer,
            "learning_scores": self.learning_scores,
            "training": {
                "features": self.table.features.tolist(),
                "target": self.table.target.tolist(),
                "receivers": list(self.table.receivers),
                "donors": list(self.table.donors),
            },
        }

    def save(self, path: Path) -> None:
        """Write the model as JSON (no pickles: readable, diffable, safe to load)."""
        path.write_text(json.dumps(self.to_json(), indent=1) + "\n", encoding="utf-8")


def load_model(path: Path) -> InterferenceModel:
    """The model `InterferenceModel.save` wrote; trees are refitted from its rows."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise PlannerError(f"{path}: unreadable model ({err})") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise PlannerError(f"{path}: not an interference model (xlcl plan fit writes one)")
    training = document["training"]
    columns = tuple(document["columns"])
    table = Examples(
        columns,
        np.array(training["features"], dtype=float).reshape(-1, len(columns)),
        np.array(training["target"], dtype=float),
        tuple(training["receivers"]),
        tuple(training["donors"]),
    )
    spec = document["estimator"]
    if spec["kind"] == "ridge":
        estimator = Estimator(
            "ridge",
            spec["params"],
            len(columns),
            np.array(spec["mean"]),
            np.array(spec["scale"]),
            np.array(spec["coef"]),
            float(spec["intercept"]),
        )
    else:
        used = base_width(columns)
        estimator = fit_estimator("gbt", spec["params"], table.features, table.target, used)
    provenance = Provenance(
        document["task"],
        document["model"],
        document["method"],
        document["metric"],
        tuple(document["runs"]),
    )
    return InterferenceModel(
        provenance,
        estimator,
        columns,
        table,
        {str(k): float(v) for k, v in document["learning_scores"].items()},
        document["cross_validation"],
        document.get("overlap_tokenizer"),
    )


def provenance_of(runs: Sequence[Run]) -> Provenance:
    """Task, encoder, label and metric shared by ``runs``; a `PlannerError` if they differ."""
    labels = sorted({run.label for run in runs})
    if len(labels) != 1:
        raise PlannerError(
            f"runs of {len(labels)} labels; fit one at a time with --label: {'; '.join(labels)}"
        )
    encoders = {_encoder(run) for run in runs}
    tasks = {run.task or "massive-slots" for run in runs}
    metrics = {run.matrix.metric for run in runs}
    if len(encoders) != 1 or len(tasks) != 1 or len(metrics) != 1:
        raise PlannerError("the runs disagree on encoder, task or metric")
    return Provenance(
        tasks.pop(), encoders.pop(), labels[0], metrics.pop(), tuple(r.run_id for r in runs)
    )


def _encoder(run: Run) -> str | None:
    manifest = run.source / MANIFEST
    if not manifest.is_file():
        return None  # a score table does not say
    return run_facts(read_manifest(manifest)).model


def learning_scores(runs: Sequence[Run]) -> dict[str, float]:
    """Each locale's mean R[p, p] (its score right after learning it) over ``runs``."""
    collected: dict[str, list[float]] = {}
    for run in runs:
        for p, locale in enumerate(run.matrix.order, start=1):
            value = run.matrix.scores[p, p - 1]
            if not np.isnan(value):
                collected.setdefault(locale, []).append(float(value))
    return {locale: float(np.mean(values)) for locale, values in sorted(collected.items())}


@dataclass(frozen=True)
class FitReport:
    """The fitted model and how long fitting took."""

    model: InterferenceModel
    seconds: float


def fit(
    runs: Sequence[Run], distances: DistanceTable, overlap: OverlapTable | None = None
) -> FitReport:
    """Cross-validate every candidate estimator, keep the best, refit it on every cell.

    Needs `MIN_RUNS` sequential runs of one label over at least `MIN_LOCALES` locales.
    """
    start = time.perf_counter()
    sequential = [run for run in runs if run.matrix.schedule.order_dependent]
    if len(sequential) < MIN_RUNS:
        raise PlannerError(
            f"fitting needs at least {MIN_RUNS} finished sequential runs of one label "
            f"(different orders); got {len(sequential)}"
        )
    provenance = provenance_of(sequential)
    table = examples(sequential, distances, overlap)
    locales = set(table.receivers) | set(table.donors)
    if len(locales) < MIN_LOCALES or len(table.target) == 0:
        raise PlannerError(
            f"fitting needs hop cells over at least {MIN_LOCALES} locales; got "
            f"{len(table.target)} cell(s) over {len(locales)}"
        )
    scores = {
        _candidate_name(kind, params): leave_one_locale_out(table, kind, params)
        for kind, params in candidates()
    }
    scores[MEAN_BASELINE] = _mean_baseline(table)
    best_kind, best_params = min(
        candidates(), key=lambda c: scores[_candidate_name(c[0], c[1])]["mae"]
    )
    used = _used(best_kind, table.columns)
    estimator = fit_estimator(best_kind, best_params, table.features, table.target, used)
    model = InterferenceModel(
        provenance,
        estimator,
        table.columns,
        table,
        learning_scores(sequential),
        scores,
        overlap.tokenizer if overlap is not None else None,
    )
    return FitReport(model, time.perf_counter() - start)


def _used(kind: str, columns: Sequence[str]) -> int:
    return len(columns) if kind == "ridge" else base_width(columns)


def _candidate_name(kind: str, params: Mapping[str, Any]) -> str:
    return f"ridge alpha={params['alpha']:g}" if kind == "ridge" else "gradient-boosted trees"


def _mean_baseline(table: Examples) -> dict[str, float]:
    """The same folds, predicting the training cells' mean effect: the bar to beat."""
    return _errors([table.target[~held].mean() - table.target[held] for held in _folds(table)])
