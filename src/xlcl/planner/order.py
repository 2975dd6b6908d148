"""`plan_order`: the planned order of some locales, and where it stands among other orders.

With a fitted model, the plan is searched (`xlcl.planner.search`) and its predicted CBT and
final score are set beside the paper's orders (restricted to the locales) and
`RANDOM_ORDERS` seeded random orders. Without one, the facts baseline ranks the locales by
their facts alone and predicts nothing.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from xlcl.data.locales import require_locales
from xlcl.metrics.io import run_facts
from xlcl.planner.features import DistanceTable, OverlapTable, PlannerError, uriel_distances
from xlcl.planner.model import InterferenceModel
from xlcl.planner.search import (
    EXHAUSTIVE_MAX,
    OBJECTIVES,
    RANDOM_ORDERS,
    Scorer,
    facts_order,
    paper_orders,
    random_orders,
    search,
)

if TYPE_CHECKING:
    from xlcl.config import RunConfig

FACTS_BASELINE = "facts baseline (no fitted model)"


@dataclass
class Plan:
    """A planned order and, with a model, the predictions that compare it."""

    order: tuple[str, ...]
    basis: str
    objective: str
    worst: bool
    search: str
    predicted: dict[str, float] | None = None
    paper: dict[int, dict[str, Any]] | None = None
    random: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The ``xlcl plan order --json`` document."""
        return {
            "order": list(self.order),
            "basis": self.basis,
            "objective": self.objective,
            "direction": "worst" if self.worst else "best",
            "search": self.search,
            "predicted": self.predicted,
            "paper_orders": None
            if self.paper is None
            else {str(number): entry for number, entry in self.paper.items()},
            "random_orders": self.random,
            "notes": self.notes,
        }


def check_fitted_for(model: InterferenceModel, config: RunConfig) -> None:
    """Refuse a model fitted for another task, encoder or method (label) than ``config``'s."""
    asked = run_facts({"config": config.model_dump(mode="json"), "task": config.task})
    fitted = model.provenance
    for name, have, want in (
        ("task", fitted.task, asked.task),
        ("model", fitted.model, asked.model),
        ("method", fitted.method, asked.label),
    ):
        if have is not None and have != want:
            raise PlannerError(
                f"the interference model was fitted for {name} {have!r}; the run config "
                f"asks for {want!r}"
            )


def plan_order(
    locales: Sequence[str],
    model: InterferenceModel | None = None,
    objective: str = "cbt",
    worst: bool = False,
    seed: int = 0,
    overlap: OverlapTable | None = None,
    distances: DistanceTable | None = None,
) -> Plan:
    """Plan the order of ``locales`` (checked, did-you-mean on unknown ones).

    ``distances`` defaults to `uriel_distances` of the locales; its imputation warning is
    kept in the plan's notes.
    """
    checked = require_locales(locales)
    if objective not in OBJECTIVES:
        raise PlannerError(f"unknown objective {objective!r}; expected {' or '.join(OBJECTIVES)}")
    if model is None:
        if worst:
            raise PlannerError("--worst needs a fitted --model: the facts baseline ranks no harm")
        return Plan(facts_order(checked), FACTS_BASELINE, objective, worst, "facts rule")
    if len(checked) < 2:
        raise PlannerError("an order to plan needs at least 2 locales")
    if model.uses_overlap and overlap is None:
        raise PlannerError(
            f"the model uses subword overlap ({model.overlap_tokenizer}): give --overlap FILE"
        )
    notes: list[str] = []
    if distances is None:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            distances = uriel_distances(checked)
        notes += [str(warning.message) for warning in caught]
    scorer = Scorer(
        checked,
        model.effect_tensor(checked, distances, overlap),
        np.array([model.learning_score(locale) for locale in checked]),
    )
    unseen = sorted(set(checked) - set(model.learning_scores))
    if unseen and objective == "final-f1":
        notes.append(
            f"no measured learning score for {', '.join(unseen)}: the fitted runs' mean is used"
        )
    order = search(scorer, worst)
    how = "exhaustive" if scorer.n <= EXHAUSTIVE_MAX else "beam search (width 10) + 2-opt"
    plan = Plan(order, f"model {model.label()}", objective, worst, how, notes=notes)
    plan.predicted = _predicted(scorer, scorer.indices(order))
    plan.paper = {
        number: {"order": list(paper), **_predicted(scorer, scorer.indices(paper))}
        for number, paper in paper_orders(checked).items()
    }
    plan.random = _random_summary(scorer, objective, seed, plan.predicted, worst)
    return plan


def _predicted(scorer: Scorer, orders: np.ndarray) -> dict[str, float]:
    return {"cbt": float(scorer.cbt(orders)[0]), "final_f1": float(scorer.final_f1(orders)[0])}


def _random_summary(
    scorer: Scorer, objective: str, seed: int, predicted: dict[str, float], worst: bool
) -> dict[str, Any]:
    """Predicted CBT and final F1 of `RANDOM_ORDERS` seeded random orders, and how many of
    them the plan beats on its objective (is worse than, with ``worst``)."""
    orders = random_orders(scorer.n, seed)
    key = "cbt" if objective == "cbt" else "final_f1"
    values = scorer.value(objective, orders)
    margin = 1e-12  # an order equal to the plan (up to rounding) is not beaten
    beaten = values > predicted[key] + margin if worst else values < predicted[key] - margin
    return {
        "n": RANDOM_ORDERS,
        "seed": seed,
        **{
            name: _spread(series)
            for name, series in (("cbt", scorer.cbt(orders)), ("final_f1", scorer.final_f1(orders)))
        },
        "plan_beats": int(beaten.sum()),
    }


def _spread(values: np.ndarray) -> dict[str, float]:
    return {
        "mean": float(values.mean()),
        "min": float(values.min()),
        "max": float(values.max()),
    }
