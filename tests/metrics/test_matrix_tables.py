"""ScoreMatrix validation, its shapes by schedule, and its long and square table forms."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from xlcl.metrics import (
    MetricsInputError,
    ScoreMatrix,
    from_long,
    from_square,
    to_long,
    to_square,
)
from xlcl.schedules import INDEPENDENT, JOINT, SEQUENTIAL, Schedule

nan = np.nan


def test_round_trips_keep_the_matrix(seq4: ScoreMatrix) -> None:
    for back in (from_long(to_long(seq4), SEQUENTIAL), from_square(to_square(seq4))):
        assert back.order == seq4.order
        np.testing.assert_array_equal(back.scores, seq4.scores)


def test_long_row_order_does_not_matter(seq3: ScoreMatrix) -> None:
    shuffled = to_long(seq3).sample(frac=1.0, random_state=0)
    np.testing.assert_array_equal(from_long(shuffled).scores, seq3.scores)


def test_order_is_trained_locale_by_step(seq3: ScoreMatrix) -> None:
    assert from_long(to_long(seq3)).order == ("a", "b", "c")
    trained = to_long(seq3)["trained_locale"]
    assert trained[:3].isna().all() and trained.tolist()[3:] == ["a"] * 3 + ["b"] * 3 + ["c"] * 3


def test_joint_long_table(multi3: ScoreMatrix) -> None:
    table = to_long(multi3)
    assert list(table.columns) == ["step", "trained_locale", "eval_locale", "score"]
    assert set(table["trained_locale"].dropna()) == {"joint"}
    back = from_long(table)  # a joint step says joint schedule, whatever the caller knows
    assert back.schedule == JOINT and back.method is None and back.scores.shape == (2, 3)
    assert from_long(table, order=["c", "a", "b"]).order == ("c", "a", "b")


def test_an_old_long_table_scores_by_f1_and_a_new_one_by_score(seq3: ScoreMatrix) -> None:
    new = to_long(seq3)
    old = new.rename(columns={"score": "f1"})
    both = new.assign(f1=np.nan)  # an intent table: score holds accuracy, f1 is NaN
    for table in (new, old, both):
        np.testing.assert_array_equal(from_long(table).scores, seq3.scores)


def test_hand_written_joint_and_independent_matrices_take_their_schedules_shape() -> None:
    # T = 3. joint: row 0 before training, row 1 after the one joint step.
    joint = ScoreMatrix(("a", "b", "c"), [[0.1, 0.2, 0.0], [0.6, 0.9, 0.3]], JOINT)
    assert joint.scores.shape == (JOINT.rows(3), 3) == (2, 3)
    # independent: one row per locale's own model, cells of other locales NaN.
    own = [[0.1, 0.2, 0.0], [0.6, nan, nan], [nan, 0.8, nan], [nan, nan, 0.7]]
    independent = ScoreMatrix(("a", "b", "c"), own, INDEPENDENT)
    assert independent.scores.shape == (INDEPENDENT.rows(3), 3) == (4, 3)
    assert [INDEPENDENT.trained_locale(i, independent.order) for i in range(4)] == [
        None,
        "a",
        "b",
        "c",
    ]
    with pytest.raises(MetricsInputError, match=r"joint run over 3 locales .*\(2, 3\)"):
        ScoreMatrix(("a", "b", "c"), own, JOINT)
    with pytest.raises(MetricsInputError, match=r"independent run over 3 locales .*\(4, 3\)"):
        ScoreMatrix(("a", "b", "c"), [[0.1, 0.2, 0.0], [0.6, 0.9, 0.3]], INDEPENDENT)
    back = from_long(to_long(independent), INDEPENDENT)
    assert back.schedule == INDEPENDENT
    np.testing.assert_array_equal(back.scores, independent.scores)
    square = from_square(to_square(joint), JOINT)
    assert square.schedule == JOINT and square.order == joint.order


def test_the_metric_names_the_score() -> None:
    matrix = ScoreMatrix(("a",), [[0.1], [0.7]], metric="intent accuracy")
    assert matrix.metric == "intent accuracy"
    assert ScoreMatrix(("a",), [[0.1], [0.7]]).metric == "span F1"
    with pytest.raises(MetricsInputError, match=r"intent accuracy outside \[0, 1\]"):
        ScoreMatrix(("a",), [[0.1], [1.7]], metric="intent accuracy")


def test_matrix_is_read_only(seq3: ScoreMatrix) -> None:
    with pytest.raises(ValueError):
        seq3.scores[0, 0] = 1.0


@pytest.mark.parametrize(
    ("scores", "order", "schedule", "message"),
    [
        ([[0.1, 0.2], [0.3, 0.4]], ("a", "b"), SEQUENTIAL, r"sequential run .*shape \(3, 2\)"),
        ([[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]], ("a", "b"), JOINT, r"shape \(2, 2\)"),
        ([[0.1, 0.2], [0.3, 1.4], [0.5, 0.6]], ("a", "b"), SEQUENTIAL, r"F1 outside \[0, 1\].*b"),
        ([[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]], ("a", "a"), SEQUENTIAL, "trained twice"),
    ],
)
def test_invalid_matrices(
    scores: list[list[float]], order: tuple[str, ...], schedule: Schedule, message: str
) -> None:
    with pytest.raises(MetricsInputError, match=message):
        ScoreMatrix(order=order, scores=np.array(scores), schedule=schedule, method="vanilla")


def long(rows: list[tuple[int, str | None, str, float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["step", "trained_locale", "eval_locale", "f1"])


GOOD = [
    (0, None, "a", 0.1),
    (0, None, "b", 0.1),
    (1, "a", "a", 0.5),
    (1, "a", "b", 0.2),
    (2, "b", "a", 0.4),
    (2, "b", "b", 0.6),
]


def test_good_long_table() -> None:
    run = from_long(long(GOOD))
    np.testing.assert_array_equal(run.scores, [[0.1, 0.1], [0.5, 0.2], [0.4, 0.6]])


def test_nan_cells_are_kept() -> None:
    rows = [*GOOD[:3], (1, "a", "b", nan), *GOOD[4:]]
    assert np.isnan(from_long(long(rows), INDEPENDENT).scores[1, 1])


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([r for r in GOOD if r[0] != 1], r"missing step\(s\) \[1\]"),
        (GOOD[:-1], "ragged matrix: step 2 has 1 of 2"),
        ([*GOOD, (2, "b", "b", 0.7)], "duplicated cell: step 2, eval_locale b"),
        ([*GOOD[:-1], (2, "b", "b", 1.2)], r"outside \[0, 1\]"),
        ([*GOOD, (0, None, "c", 0.1)], "evaluated but never trained: c"),
        ([*GOOD[:2], (1, "a", "a", 0.5), (1, "b", "b", 0.2), *GOOD[4:]], "exactly one"),
        ([(0, "a", "a", 0.1), *GOOD[1:]], "step 0"),
        ([*GOOD[:-1], (2, "b", "b", "high")], "not a number"),
        ([(0, None, "a", 0.1), (0, None, "b", 0.1)], "T >= 1"),
        ([*GOOD[:4], (2, "a", "a", 0.4), (2, "a", "b", 0.6)], "trained twice in the order: a"),
        ([(0, None, "a", 0.1), (1, "a", "a", 0.5), (2, "b", "a", 0.4)], "never evaluated: b"),
    ],
)
def test_invalid_long_tables(rows: list[tuple[int, str | None, str, float]], message: str) -> None:
    with pytest.raises(MetricsInputError, match=message):
        from_long(long(rows))


def test_long_table_needs_its_columns() -> None:
    with pytest.raises(MetricsInputError, match=r"lacks column.*trained_locale"):
        from_long(long(GOOD).drop(columns="trained_locale"))


def test_long_table_and_schedule_must_agree(multi3: ScoreMatrix) -> None:
    with pytest.raises(MetricsInputError, match="joint run but the schedule is sequential"):
        from_long(to_long(multi3), SEQUENTIAL)
    with pytest.raises(MetricsInputError, match="schedule is joint but the table has no joint"):
        from_long(long(GOOD), JOINT)
    with pytest.raises(MetricsInputError, match="order differs"):
        from_long(long(GOOD), order=["b", "a"])
    three_steps = [*to_long(multi3).itertuples(index=False), (2, "joint", "a", 0.5)]
    with pytest.raises(MetricsInputError, match="steps 0 and 1"):
        from_long(long(three_steps))
    with pytest.raises(MetricsInputError, match="'joint' may only"):
        from_long(long([*GOOD[:4], (2, "joint", "a", 0.4), (2, "joint", "b", 0.6)]))


def test_invalid_square_tables() -> None:
    with pytest.raises(MetricsInputError, match="'step' column"):
        from_square(pd.DataFrame({"a": [0.1, 0.2]}))
    with pytest.raises(MetricsInputError, match=r"steps 0..1 in order"):
        from_square(pd.DataFrame({"step": [0, 2], "a": [0.1, 0.2]}))
    with pytest.raises(MetricsInputError, match=r"steps 0..1 in order, got \[0, 1, 2\]"):
        from_square(pd.DataFrame({"step": [0, 1, 2], "a": [0.1, 0.2, 0.3], "b": 0.1}), JOINT)
    with pytest.raises(MetricsInputError, match="must hold integers"):
        from_square(pd.DataFrame({"step": ["0", "x"], "a": [0.1, 0.2]}))
    with pytest.raises(MetricsInputError, match="not a number: 'x'"):
        from_square(pd.DataFrame({"step": [0, 1], "a": ["0.1", "x"]}))
