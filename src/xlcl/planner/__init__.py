"""The order planner: which order of locales forgets least (issue #18, docs/planner.md).

from xlcl.planner import fit, plan_order, uriel_distances
from xlcl.metrics import load
runs = load([Path("results/remedies")]).runs
model = fit(runs, uriel_distances(sorted({l for r in runs for l in r.matrix.order}))).model
plan_order(["en-US", "de-DE", "ja-JP", "th-TH"], model).to_json()

An interference model (`xlcl.planner.model`) predicts a donor locale's effect on an earlier
receiver from the pair's facts, URIEL distances and positions; the search
(`xlcl.planner.search`) finds the order with the best predicted CBT.
"""

from xlcl.planner.features import (
    DISTANCE_KINDS,
    DistanceTable,
    OverlapTable,
    PlannerError,
    pair_features,
    subword_overlap,
    uriel_distances,
)
from xlcl.planner.model import InterferenceModel, fit, load_model
from xlcl.planner.order import FACTS_BASELINE, Plan, check_fitted_for, plan_order
from xlcl.planner.search import Scorer, facts_order, search

__all__ = [
    "DISTANCE_KINDS",
    "FACTS_BASELINE",
    "DistanceTable",
    "InterferenceModel",
    "OverlapTable",
    "Plan",
    "PlannerError",
    "Scorer",
    "check_fitted_for",
    "facts_order",
    "fit",
    "load_model",
    "pair_features",
    "plan_order",
    "search",
    "subword_overlap",
    "uriel_distances",
]
