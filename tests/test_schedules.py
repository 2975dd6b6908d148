"""Schedules own the shape of the score matrix and the cost terms of a run."""

from __future__ import annotations

import subprocess
import sys

import pytest

from xlcl.schedules import (
    INDEPENDENT,
    JOINT,
    JOINT_LOCALE,
    MERGED,
    SCHEDULES,
    SEQUENTIAL,
    Joint,
    Schedule,
    schedule,
)

ORDER = ("en-US", "de-DE", "th-TH")


@pytest.mark.parametrize(
    ("plan", "rows", "steps", "models", "per_step", "scored", "scored_all"),
    [
        (SEQUENTIAL, 4, 3, 1, 1, 3, 3),
        (INDEPENDENT, 4, 3, 3, 1, 1, 3),
        (JOINT, 2, 1, 1, 3, 3, 3),
        (MERGED, 4, 3, 3, 1, 3, 3),
    ],
)
def test_shape_and_cost_terms_over_three_locales(
    plan: Schedule,
    rows: int,
    steps: int,
    models: int,
    per_step: int,
    scored: int,
    scored_all: int,
) -> None:
    assert plan.rows(3) == rows
    assert plan.training_steps(3) == steps
    assert plan.models(3) == models
    assert plan.locales_per_step(3) == per_step
    assert plan.scored_per_step(3) == scored
    assert plan.scored_per_step(3, all_models=True) == scored_all


def test_trained_locale_by_step() -> None:
    for plan in (SEQUENTIAL, INDEPENDENT, MERGED):
        assert [plan.trained_locale(i, ORDER) for i in range(4)] == [None, *ORDER]
    assert [JOINT.trained_locale(i, ORDER) for i in range(2)] == [None, JOINT_LOCALE]
    assert JOINT_LOCALE == "joint"
    with pytest.raises(ValueError, match=r"step 2 outside 0\.\.1 of a joint run over 3 locales"):
        JOINT.trained_locale(2, ORDER)
    with pytest.raises(ValueError, match=r"step 4 outside 0\.\.3"):
        SEQUENTIAL.trained_locale(4, ORDER)


def test_which_row_scores_a_locale_and_where_a_step_starts() -> None:
    # locale at position 1 once 3 locales are learned: the last model, its own, the joint one
    assert [s.scoring_step(1, 3) for s in (SEQUENTIAL, INDEPENDENT, JOINT)] == [3, 1, 1]
    assert [s.scoring_step(2, 2) for s in (SEQUENTIAL, INDEPENDENT, JOINT)] == [2, 2, 1]
    assert [s.starting_step(3) for s in (SEQUENTIAL, INDEPENDENT)] == [2, 0]
    # merged: the merge of the adapters so far scores every locale, each row building on
    # the one before
    assert [MERGED.scoring_step(1, learned) for learned in (1, 3)] == [1, 3]
    assert MERGED.starting_step(3) == 2
    assert JOINT.starting_step(1) == 0


def test_the_sequential_and_merged_schedules_depend_on_the_order() -> None:
    dependent = [s.name for s in SCHEDULES.values() if s.order_dependent]
    assert dependent == ["sequential", "merged"]


def test_one_map_and_a_lookup_with_did_you_mean() -> None:
    assert list(SCHEDULES) == ["sequential", "independent", "joint", "merged"]
    assert all(SCHEDULES[name].name == name for name in SCHEDULES)
    assert schedule("joint") is JOINT and Joint() == JOINT and JOINT != SEQUENTIAL
    with pytest.raises(ValueError, match="unknown schedule 'sequental'; did you mean 'sequential'"):
        schedule("sequental")


def test_schedules_are_pure_python() -> None:
    code = (
        "import sys, xlcl.schedules; "
        "assert not {'torch', 'numpy', 'pandas'} & set(sys.modules), sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
