"""Table 1, Table 2 and the per-locale table against the metric functions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from metrics.run_dirs import INTENT, write_new_run_dir
from reports.report_runs import (
    NONSHARED_A,
    NONSHARED_B,
    ORDER_A,
    ORDER_B,
    SHARED_A,
    SHARED_B,
    VANILLA_A,
    VANILLA_B,
    write_run,
)
from xlcl.methods import preset_schedule
from xlcl.metrics import (
    ScoreMatrix,
    cbt,
    cft,
    final_locale_score,
    final_score,
    forgetting,
    locale_forgetting,
    mbt,
    mft,
)
from xlcl.reports import ReportFiles, build_report, collect, summarize_labels
from xlcl.reports.figures import avg_score_plot
from xlcl.schedules import SEQUENTIAL

XLMR_BASE = 278_043_648  # xlm-roberta-base, pooler included (paper: 278.04 M)
LORA_32 = 5_357_568  # LoRA r=32 on every linear layer, pooler included (paper: 5.36 M)

METHODS = {
    "vanilla": ("vanilla", None, VANILLA_A, VANILLA_B),
    "shared-lora r32": ("shared-lora", 32, SHARED_A, SHARED_B),
    "nonshared-lora r32": ("nonshared-lora", 32, NONSHARED_A, NONSHARED_B),
}


def matrices(key: str) -> list[ScoreMatrix]:
    method, _, a, b = METHODS[key]
    plan = preset_schedule(method)
    return [ScoreMatrix(ORDER_A, np.array(a), plan), ScoreMatrix(ORDER_B, np.array(b), plan)]


def csv(built: ReportFiles, name: str) -> pd.DataFrame:
    return pd.read_csv(built.html.parent / "tables" / f"{name}.csv")


def row(table: pd.DataFrame, key: str) -> pd.Series:
    method, rank = METHODS[key][:2]
    hits = table[(table["method"] == method) & (table["rank"].fillna(0) == (rank or 0))]
    assert len(hits) == 1
    return hits.iloc[0]


def test_every_table_in_three_formats(built: ReportFiles) -> None:
    names = sorted(p.name for p in built.tables)
    stems = ("per_locale", "table1", "table2")
    assert names == sorted(f"{s}.{e}" for s in stems for e in ("csv", "md", "tex"))
    tex = (built.html.parent / "tables" / "table1.tex").read_text()
    assert r"\toprule" in tex and r"\midrule" in tex and r"\bottomrule" in tex
    assert r"$\pm$" in tex and r"F1 (\%)" in tex
    md = (built.html.parent / "tables" / "table1.md").read_text()
    assert "| Method | Model | Status | Runs | Params (M) | Span F1 (%) | Low | Mid | High |" in md


def test_table1_hand_computed_vanilla(built: ReportFiles) -> None:
    vanilla = row(csv(built, "table1"), "vanilla")
    # final F1: order A mean(.4, .6, .8) = .6; order B mean(.55, .5, .7) = .58333
    assert vanilla["score_mean"] == pytest.approx((0.6 + 0.58333333) / 2)
    assert vanilla["score_std"] == pytest.approx(np.std([0.6, 0.58333333], ddof=1))
    # vitality: en-US high (.4, .5), el-GR mid (.6, .7), sw-KE low (.8, .55)
    assert vanilla["high_mean"] == pytest.approx(0.45)
    assert vanilla["mid_mean"] == pytest.approx(0.65)
    assert vanilla["low_mean"] == pytest.approx(0.675)
    assert vanilla["low_std"] == pytest.approx(np.std([0.8, 0.55], ddof=1))
    md = (built.html.parent / "tables" / "table1.md").read_text()
    assert "| VANILLA | FacebookAI/xlm-roberta-base | done | 2 | 278.04 | 59.17 ± 1.18 |" in md


@pytest.mark.parametrize("key", list(METHODS))
def test_table1_against_metrics(built: ReportFiles, key: str) -> None:
    found = row(csv(built, "table1"), key)
    ms = matrices(key)
    finals = [final_score(m) for m in ms]
    assert found["score_mean"] == pytest.approx(np.mean(finals))
    assert found["score_std"] == pytest.approx(np.std(finals, ddof=1))
    assert found["score_n"] == 2
    per_locale = pd.concat([final_locale_score(m) for m in ms]).groupby(level=0).mean()
    assert found["high_mean"] == pytest.approx(per_locale["en-US"])
    assert found["mid_mean"] == pytest.approx(per_locale["el-GR"])
    assert found["low_mean"] == pytest.approx(per_locale["sw-KE"])


def test_table1_parameters(built: ReportFiles) -> None:
    table = csv(built, "table1")
    assert row(table, "vanilla")["params_trainable"] == XLMR_BASE
    assert row(table, "shared-lora r32")["params_trainable"] == LORA_32
    assert row(table, "nonshared-lora r32")["params_trainable"] == 3 * LORA_32  # 3 locales
    multi = table[table["method"] == "multi"].iloc[0]
    assert multi["params_trainable"] == XLMR_BASE
    assert multi["score_mean"] == pytest.approx(0.8) and np.isnan(multi["score_std"])
    assert list(table["method"]) == ["multi", "vanilla", "shared-lora", "nonshared-lora"]


def test_table2_against_metrics(built: ReportFiles) -> None:
    table = csv(built, "table2")
    assert sorted(table["method"]) == ["shared-lora", "vanilla"]  # sequential only
    for key in ("vanilla", "shared-lora r32"):
        found, ms = row(table, key), matrices(key)
        for name, fn in (("cbt", cbt), ("cft", cft)):
            values = [fn(m) for m in ms]
            assert found[f"{name}_mean"] == pytest.approx(np.mean(values))
            assert found[f"{name}_std"] == pytest.approx(np.std(values, ddof=1))
    # vanilla CBT: A ((.4-.6)+(.6-.7))/2 = -.15; B ((.55-.7)+(.5-.65))/2 = -.15
    assert row(table, "vanilla")["cbt_mean"] == pytest.approx(-0.15)


@pytest.mark.parametrize("key", ["vanilla", "shared-lora r32"])
def test_per_locale_against_metrics(built: ReportFiles, key: str) -> None:
    table = csv(built, "per_locale")
    method, rank = METHODS[key][:2]
    mine = table[(table["method"] == method) & (table["rank"].fillna(0) == (rank or 0))]
    mine = mine.set_index("locale")
    ms = matrices(key)

    def mean_over_orders(series: list[pd.Series]) -> pd.Series:
        return pd.concat(series).groupby(level=0).mean()

    expected = {
        "final_score": mean_over_orders([final_locale_score(m) for m in ms]),
        "forgetting": mean_over_orders([locale_forgetting(m) for m in ms]),
        "mft_1": mean_over_orders([mft(m, 1)[1] for m in ms]),
        "mbt_1": mean_over_orders([mbt(m, 1)[1] for m in ms]),
    }
    for column, values in expected.items():
        for locale, value in values.items():
            assert mine.loc[locale, column] == pytest.approx(value, nan_ok=True), (column, locale)
    assert mine.loc["el-GR", "script"] == "Grek" and mine.loc["sw-KE", "vitality"] == "low"


def test_locale_forgetting_is_the_terms_of_forgetting() -> None:
    for key in ("vanilla", "shared-lora r32"):
        for m in matrices(key):
            terms = locale_forgetting(m)
            assert np.isnan(terms.iloc[-1])  # the last locale of the order
            assert np.nanmean(terms) == pytest.approx(forgetting(m))
    # VANILLA_A: en-US max(.6, .5) - .4 = .2; el-GR max(.7) - .6 = .1
    a = locale_forgetting(matrices("vanilla")[0])
    assert a["en-US"] == pytest.approx(0.2) and a["el-GR"] == pytest.approx(0.1)
    assert locale_forgetting(matrices("nonshared-lora r32")[0]).isna().all()


def test_unknown_model_leaves_params_blank(tmp_path: Path) -> None:
    write_run(tmp_path / "runs", "r1", "vanilla", ORDER_A, VANILLA_A, model="someone/private")
    files = build_report([tmp_path / "runs"], tmp_path / "out")
    table = pd.read_csv(tmp_path / "out" / "tables" / "table1.csv")
    assert np.isnan(table.loc[0, "params_trainable"])
    md = (tmp_path / "out" / "tables" / "table1.md").read_text()
    assert "| VANILLA | someone/private | done | 1 | – |" in md
    assert "parameters left blank (architecture of 'someone/private' not available offline)" in md
    assert "not available offline" in files.html.read_text()


def test_the_score_is_named_by_the_runs_metric(tmp_path: Path) -> None:
    intent = ScoreMatrix(ORDER_A, np.array(VANILLA_A), SEQUENTIAL, INTENT)
    write_new_run_dir(tmp_path / "intent", "i1", intent, "vanilla")
    build_report([tmp_path / "intent"], tmp_path / "out")
    md = (tmp_path / "out" / "tables" / "table1.md").read_text()
    assert "### Table 1: intent accuracy by method and vitality" in md
    assert "| Intent accuracy (%) |" in md and "| 60.00 |" in md  # the same numbers as F1
    assert "F1" not in md
    (ax,) = avg_score_plot(summarize_labels(collect([tmp_path / "intent"]).runs, 2)).figure.axes
    assert ax.get_ylabel() == "average intent accuracy over learned locales (%)"

    # with slot filling beside it: one "Score" column, and a Metric column says whose
    write_run(tmp_path / "intent", "s1", "vanilla", ORDER_A, VANILLA_A, model="tiny")
    build_report([tmp_path / "intent"], tmp_path / "both")
    md = (tmp_path / "both" / "tables" / "table1.md").read_text()
    assert "| Method | Model | Status | Runs | Metric | Params (M) | Score (%) |" in md
    table = pd.read_csv(tmp_path / "both" / "tables" / "table1.csv").set_index("label")
    assert table.loc["vanilla tiny", "metric"] == "span F1"
    assert table.loc["vanilla tiny massive-intent", "metric"] == INTENT
    assert list(table["score_mean"]) == pytest.approx([0.6, 0.6])
