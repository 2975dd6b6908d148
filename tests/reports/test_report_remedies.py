"""The Remedies table, figure and HTML section: each remedy against its plain method."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest

from reports.report_runs import ORDER_A, ORDER_B, VANILLA_A, VANILLA_B, write_run
from xlcl.reports import build_report

EWC = {"name": "ewc", "ewc_lambda": 100.0, "decay_factor": 1.0, "mode": "online"}
EWC_COST = {"extra_parameters": 0, "stored_values": 2_000_000, "memory_utterances": 0}


def _last_row_up(matrix: list[list[float]], by: float) -> list[list[float]]:
    """The matrix with every cell of its last row (after the last step) raised by ``by``."""
    return [*matrix[:-1], [value + by for value in matrix[-1]]]


@pytest.fixture(scope="module")
def remedies(tmp_path_factory: pytest.TempPathFactory):
    runs = tmp_path_factory.mktemp("remedies") / "sweep"
    write_run(runs, "van-a", "vanilla", ORDER_A, VANILLA_A, epoch_seconds=[4.0, 3.0, 3.0])
    write_run(runs, "van-b", "vanilla", ORDER_B, VANILLA_B, epoch_seconds=[5.0, 5.0, 10.0])
    # EWC keeps 0.05 more of every locale at the end, and trains 1.2x and 1.3x as long.
    for run_id, order, matrix, seconds in [
        ("ewc-a", ORDER_A, VANILLA_A, [4.8, 3.6, 3.6]),
        ("ewc-b", ORDER_B, VANILLA_B, [6.5, 6.5, 13.0]),
    ]:
        write_run(
            runs, run_id, "vanilla", order, _last_row_up(matrix, 0.05), strategy=EWC,
            manifest_extra={"strategy_cost": EWC_COST}, epoch_seconds=seconds,
        )  # fmt: skip
    out = tmp_path_factory.mktemp("report") / "out"
    return build_report([runs], out)


def _table(built, name: str):
    import pandas as pd

    return pd.read_csv(next(p for p in built.tables if p.name == f"{name}.csv"))


def test_the_remedy_is_paired_with_its_plain_runs(remedies):
    table = _table(remedies, "remedies").set_index("strategy", drop=False)
    assert list(table["n_runs"]) == [2, 2]
    plain, ewc = table.iloc[0], table.iloc[1]
    assert isinstance(plain["strategy"], float) and math.isnan(plain["strategy"])
    assert ewc["strategy"] == "ewc decay_factor=1.0 ewc_lambda=100.0 mode=online"
    # final score: mean of the last row, 0.05 higher in each order -> paired delta 0.05 ± 0
    assert ewc["delta_final_score_mean"] == pytest.approx(0.05)
    assert ewc["delta_final_score_std"] == pytest.approx(0.0, abs=1e-12)
    assert ewc["delta_final_score_n"] == 2
    # CBT averages R[T, i] - R[i, i] over i < T: every R[T, i] is 0.05 higher
    assert ewc["delta_cbt_mean"] == pytest.approx(0.05)
    # vanilla A: final row 0.40 0.60 0.80 -> 0.60; B: 0.55 0.50 0.70 -> 0.5833
    assert plain["final_score_mean"] == pytest.approx((0.6 + 1.75 / 3) / 2)
    assert ewc["final_score_mean"] == pytest.approx((0.6 + 1.75 / 3) / 2 + 0.05)
    # training time: 12 / 10 and 26 / 20
    assert ewc["time_ratio_mean"] == pytest.approx(1.25)
    assert ewc["time_ratio_std"] == pytest.approx(np.std([1.2, 1.3], ddof=1))
    assert ewc["stored_values"] == 2_000_000
    assert plain["stored_values"] == 0


def test_the_report_has_a_remedies_section_and_figure(remedies):
    html = remedies.html.read_text(encoding="utf-8")
    assert 'id="remedies-section"' in html and 'href="#remedies-section"' in html
    ids = re.findall(r'\bid="([^"]+)"', html)
    assert len(ids) == len(set(ids)), "an HTML id used twice"
    assert "VANILLA + ewc" in html
    figures = {p.name for p in remedies.figures}
    assert figures >= {"remedies_cbt_final.png", "remedies_cbt_final.pdf"}
    markdown = next(p for p in remedies.tables if p.name == "remedies.md").read_text()
    assert "1.250 ± 0.071" in markdown  # the training-time ratio, paired


def test_runs_without_remedies_have_no_remedies_section(built):
    html = Path(built.html).read_text(encoding="utf-8")
    assert 'id="remedies' not in html
    assert not any(p.name.startswith("remedies") for p in built.tables)
