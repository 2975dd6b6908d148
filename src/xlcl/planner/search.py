"""Searching the order of locales that an interference model predicts forgets least.

The predicted effect tensor ``E[a, b, i, j]`` (`InterferenceModel.effect_tensor`) gives,
for an order π of T locales (positions 0-based), the predicted CBT

    CBT(π) = 1/(T−1) · Σ_{i=0}^{T−2} Σ_{j=i+1}^{T−1} E[π_i, π_j, i, j],

the mean over the receivers trained before the last step of the sum of the effects of every
later step on them: the spec's CBT, since R[T, i] − R[i, i] telescopes into the effects of
steps i+1..T on ℓ_i. The predicted final F1 is

    F1(π) = 1/T · (Σ_i L[π_i] + Σ_{i<j} E[π_i, π_j, i, j]),

``L`` each locale's measured score right after learning it (order-free in this model), so
both objectives rank orders alike and differ in scale. Up to `EXHAUSTIVE_MAX` locales every
order is scored; above, a beam search (width `BEAM_WIDTH`) builds orders left to right and
2-opt swaps polish the best one until no swap gains.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from xlcl.data.locales import LOCALES
from xlcl.data.orders import ORDERS, resolve_order
from xlcl.planner.features import CJK_SCRIPTS

EXHAUSTIVE_MAX = 8
BEAM_WIDTH = 10
RANDOM_ORDERS = 100
OBJECTIVES = ("cbt", "final-f1")


@dataclass(frozen=True)
class Scorer:
    """Predicted CBT and final F1 of orders of ``locales`` (orders are index tuples)."""

    locales: tuple[str, ...]
    effects: np.ndarray  # E[a, b, i, j]
    learned: np.ndarray  # L[a]

    @property
    def n(self) -> int:
        """T, the number of locales."""
        return len(self.locales)

    def total(self, orders: np.ndarray) -> np.ndarray:
        """Σ_{i<j} E[π_i, π_j, i, j] of each row of ``orders`` (shape (k, T))."""
        i, j = np.triu_indices(self.n, k=1)
        return self.effects[orders[:, i], orders[:, j], i, j].sum(axis=1)

    def cbt(self, orders: np.ndarray) -> np.ndarray:
        """Predicted CBT of each order (NaN for one locale: no receiver)."""
        if self.n < 2:
            return np.full(len(orders), np.nan)
        return self.total(orders) / (self.n - 1)

    def final_f1(self, orders: np.ndarray) -> np.ndarray:
        """Predicted final F1 of each order."""
        return (self.learned.sum() + self.total(orders)) / self.n

    def value(self, objective: str, orders: np.ndarray) -> np.ndarray:
        """The objective (higher is better for both) of each order."""
        return self.cbt(orders) if objective == "cbt" else self.final_f1(orders)

    def indices(self, order: Sequence[str]) -> np.ndarray:
        """An order of locales as one row of indices."""
        where = {loc: k for k, loc in enumerate(self.locales)}
        return np.array([[where[loc] for loc in order]])


def search(scorer: Scorer, worst: bool = False) -> tuple[str, ...]:
    """The order with the highest predicted total effect (lowest with ``worst``).

    Exhaustive up to `EXHAUSTIVE_MAX` locales, else beam search then 2-opt. Deterministic:
    ties go to the order found first (permutations in lexicographic order of the indices).
    """
    sign = -1.0 if worst else 1.0
    if scorer.n <= EXHAUSTIVE_MAX:
        orders = np.array(list(itertools.permutations(range(scorer.n))), dtype=int)
        best = orders[int(np.argmax(sign * scorer.total(orders)))]
    else:
        best = two_opt(scorer, beam(scorer, sign), sign)
    return tuple(scorer.locales[k] for k in best)


def beam(scorer: Scorer, sign: float, width: int = BEAM_WIDTH) -> np.ndarray:
    """Orders built left to right, keeping the ``width`` best prefixes at each position.

    A prefix is ranked by its effects so far plus a look-ahead: for each placed receiver,
    the effects of every later position averaged over donors, so that the prefix's
    receivers count the damage still to come and not only what they have taken.
    """
    n, effects = scorer.n, scorer.effects
    off_diagonal = ~np.eye(n, dtype=bool)
    # mean_b E[a, b, i, j] over donors b ≠ a; NaN (j ≤ i) counts as no effect
    donor_mean = np.nansum(effects * off_diagonal[:, :, None, None], axis=1) / max(n - 1, 1)
    # ahead[a, i, k] = Σ_{j ≥ k} donor_mean[a, i, j]: what a at i may still take from step k on
    ahead = np.flip(np.cumsum(np.flip(donor_mean, axis=2), axis=2), axis=2)
    ahead = np.concatenate([ahead, np.zeros((n, n, 1))], axis=2)
    prefixes = [np.array([a]) for a in range(n)]
    totals = np.zeros(n)
    for k in range(1, n + 1):
        hope = np.array([ahead[p, np.arange(len(p)), k].sum() for p in prefixes])
        ranked = np.lexsort((np.arange(len(prefixes)), -sign * (totals + hope)))[:width]
        prefixes, totals = [prefixes[r] for r in ranked], totals[ranked]
        if k == n:
            break
        grown, grown_totals = [], []
        for prefix, total in zip(prefixes, totals, strict=True):
            rest = np.setdiff1d(np.arange(n), prefix)
            gain = np.nansum(effects[prefix[:, None], rest[None, :], np.arange(k)[:, None], k], 0)
            grown += [np.append(prefix, d) for d in rest]
            grown_totals.append(total + gain)
        prefixes, totals = grown, np.concatenate(grown_totals)
    return prefixes[0]


def two_opt(scorer: Scorer, order: np.ndarray, sign: float, max_passes: int = 500) -> np.ndarray:
    """Swap the two positions that gain most, until no swap gains (or ``max_passes``)."""
    i, j = np.triu_indices(scorer.n, k=1)
    current = order.copy()
    best = sign * scorer.total(current[None])[0]
    for _ in range(max_passes):
        swapped = np.repeat(current[None], len(i), axis=0)
        rows = np.arange(len(i))
        swapped[rows, i], swapped[rows, j] = current[j], current[i]
        values = sign * scorer.total(swapped)
        pick = int(np.argmax(values))
        if values[pick] <= best + 1e-12:
            break
        current, best = swapped[pick], values[pick]
    return current


def facts_order(locales: Sequence[str]) -> tuple[str, ...]:
    """The facts baseline, no fitted model: CJK locales first, then the other non-Latin
    scripts, each script's locales together (scripts by name), Latin last; within a
    script, by family, genus and locale.

    Why: locales of one script share subwords and interfere least with each other; the
    paper's most destructive locales are non-Latin (CJK, Thai, Khmer, Armenian), so they
    go early, where they have least learned to damage, and the many Latin locales end it.
    """

    def key(locale: str) -> tuple[int, str, str, str, str]:
        facts = LOCALES[locale]
        group = 0 if facts.script in CJK_SCRIPTS else (2 if facts.latin else 1)
        return (group, facts.script, facts.family, facts.genus, locale)

    return tuple(sorted(locales, key=key))


def random_orders(n: int, seed: int, count: int = RANDOM_ORDERS) -> np.ndarray:
    """``count`` random permutations of ``range(n)``, from ``numpy.random.default_rng(seed)``."""
    rng = np.random.default_rng(seed)
    return np.array([rng.permutation(n) for _ in range(count)], dtype=int)


def paper_orders(locales: Sequence[str]) -> dict[int, tuple[str, ...]]:
    """The paper's orders (Table 3) restricted to ``locales``, in the paper's relative order."""
    return {number: resolve_order(number, locales) for number in ORDERS}
