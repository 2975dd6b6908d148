"""Hand-built inputs of the planner tests: a distance table that needs no URIEL, fake runs."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from metrics.run_dirs import write_new_run_dir
from xlcl.metrics import ScoreMatrix
from xlcl.planner import DISTANCE_KINDS, DistanceTable


def flat_distances(locales: Sequence[str], seed: int = 0) -> DistanceTable:
    """Symmetric made-up distances in [0, 1], zero on the diagonal."""
    rng = np.random.default_rng(seed)
    n = len(locales)
    tables = {}
    for kind in DISTANCE_KINDS:
        table = np.zeros((n, n))
        for a, b in itertools.combinations(range(n), 2):
            table[a, b] = table[b, a] = rng.uniform()
        tables[kind] = table
    return DistanceTable(tuple(locales), tables)


def synthetic_matrix(order: Sequence[str], seed: int) -> ScoreMatrix:
    """A sequential run whose later steps cost earlier locales of another script more."""
    from xlcl.data import LOCALES

    rng = np.random.default_rng(seed)
    n = len(order)
    scores = np.zeros((n + 1, n))
    scores[0] = 0.02
    for step in range(1, n + 1):
        scores[step] = scores[step - 1]
        donor = LOCALES[order[step - 1]]
        for col in range(step - 1):
            same = LOCALES[order[col]].script == donor.script
            change = (0.01 if same else -0.05) / (step - 1 - col) + rng.normal(0, 0.002)
            scores[step, col] = np.clip(scores[step, col] + change, 0, 1)
        scores[step, step - 1] = 0.7
    return ScoreMatrix(tuple(order), scores, method="vanilla")


def write_runs(root: Path, orders: Sequence[Sequence[str]], task: str = "massive-slots") -> Path:
    """One finished vanilla run directory per order under ``root``."""
    for k, order in enumerate(orders):
        write_new_run_dir(root, f"run{k}", synthetic_matrix(order, k), "vanilla", task=task)
    return root
