"""ScoreMatrix validation and its long and square table forms."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from xlcl.metrics import (
    MetricsInputError,
    ScoreMatrix,
    from_long,
    from_square,
    schedule_of,
    to_long,
    to_square,
)

nan = np.nan


def test_round_trips_keep_the_matrix(seq4: ScoreMatrix) -> None:
    for back in (from_long(to_long(seq4), method="shared-lora"), from_square(to_square(seq4))):
        assert back.order == seq4.order
        np.testing.assert_array_equal(back.f1, seq4.f1)


def test_long_row_order_does_not_matter(seq3: ScoreMatrix) -> None:
    shuffled = to_long(seq3).sample(frac=1.0, random_state=0)
    np.testing.assert_array_equal(from_long(shuffled).f1, seq3.f1)


def test_order_is_trained_locale_by_step(seq3: ScoreMatrix) -> None:
    assert from_long(to_long(seq3)).order == ("a", "b", "c")
    trained = to_long(seq3)["trained_locale"]
    assert trained[:3].isna().all() and trained.tolist()[3:] == ["a"] * 3 + ["b"] * 3 + ["c"] * 3


def test_multi_long_table(multi3: ScoreMatrix) -> None:
    table = to_long(multi3)
    assert set(table["trained_locale"].dropna()) == {"joint"}
    back = from_long(table)
    assert back.method == "multi" and back.f1.shape == (2, 3)
    assert from_long(table, order=["c", "a", "b"]).order == ("c", "a", "b")


def test_matrix_is_read_only(seq3: ScoreMatrix) -> None:
    with pytest.raises(ValueError):
        seq3.f1[0, 0] = 1.0


def test_schedules() -> None:
    assert schedule_of("multi") == "joint"
    assert schedule_of("nonshared-lora") == schedule_of("mono") == "independent"
    assert schedule_of("vanilla") == schedule_of("shared-lora") == schedule_of(None)
    with pytest.raises(MetricsInputError, match="unknown method 'lora'"):
        schedule_of("lora")


@pytest.mark.parametrize(
    ("f1", "order", "method", "message"),
    [
        ([[0.1, 0.2], [0.3, 0.4]], ("a", "b"), None, r"shape \(3, 2\)"),
        ([[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]], ("a", "b"), "multi", r"shape \(2, 2\)"),
        ([[0.1, 0.2], [0.3, 1.4], [0.5, 0.6]], ("a", "b"), None, r"outside \[0, 1\].*step 1, .*b"),
        ([[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]], ("a", "a"), None, "trained twice"),
    ],
)
def test_invalid_matrices(
    f1: list[list[float]], order: tuple[str, ...], method: str | None, message: str
) -> None:
    with pytest.raises(MetricsInputError, match=message):
        ScoreMatrix(order=order, f1=np.array(f1), method=method)


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
    np.testing.assert_array_equal(run.f1, [[0.1, 0.1], [0.5, 0.2], [0.4, 0.6]])


def test_nan_cells_are_kept() -> None:
    rows = [*GOOD[:3], (1, "a", "b", nan), *GOOD[4:]]
    assert np.isnan(from_long(long(rows), method="mono").f1[1, 1])


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


def test_long_table_and_method_must_agree(multi3: ScoreMatrix) -> None:
    with pytest.raises(MetricsInputError, match="joint run but method is 'vanilla'"):
        from_long(to_long(multi3), method="vanilla")
    with pytest.raises(MetricsInputError, match="no joint step"):
        from_long(long(GOOD), method="multi")
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
    with pytest.raises(MetricsInputError, match="must hold integers"):
        from_square(pd.DataFrame({"step": ["0", "x"], "a": [0.1, 0.2]}))
    with pytest.raises(MetricsInputError, match="not a number: 'x'"):
        from_square(pd.DataFrame({"step": [0, 1], "a": ["0.1", "x"]}))
