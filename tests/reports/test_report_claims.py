"""The Claims table: its statistics are the metrics' cells, its intervals a brute-force
bootstrap's, its verdicts the rules fixed before the replication sweep."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from metrics.counted_runs import write_counted_run
from metrics.test_bootstrap import brute_force
from xlcl.data import LOCALES
from xlcl.metrics import ScoreMatrix, cbt, final_score, mbt, mft, read_run_dir
from xlcl.metrics.bootstrap import Bootstrap, Interval
from xlcl.metrics.intervals import run_counts
from xlcl.reports import build_report
from xlcl.reports.claims import (
    ABOVE,
    BELOW,
    INCONCLUSIVE,
    NOT_REPRODUCED,
    REPRODUCED,
    WITHIN,
    Finding,
    forgetting_terms,
    own_shifts,
    receiver_transfer,
)
from xlcl.schedules import SEQUENTIAL

nan = np.nan
RESAMPLES = 40  # few enough for the brute-force loops
GOLD = {
    "en-US": [1, 2, 0, 1, 3, 1],
    "nb-NO": [2, 1, 1, 0, 1],
    "zh-CN": [1, 1, 2, 1, 0, 2, 1],
    "ja-JP": [2, 2, 1, 1],
}
ORDERS = [("en-US", "nb-NO", "zh-CN", "ja-JP"), ("zh-CN", "ja-JP", "en-US", "nb-NO")]
ORDER_NUMBERS = (2, 10)  # as the runs' configs name ORDERS: numbers, sorted as numbers

# Three locales A, B, C trained in that order: hand-computed statistics below.
HAND = np.array(
    [
        [0.1, 0.1, 0.1],
        [0.5, 0.2, 0.1],  # step 1 trains A
        [0.4, 0.6, 0.2],  # step 2 trains B
        [0.2, 0.5, 0.7],  # step 3 trains C
    ]
)


def test_per_locale_statistics_by_hand() -> None:
    stack = HAND[None]
    # R[3, j] − R[j, j]: A 0.2 − 0.5, B 0.5 − 0.6; C is last.
    np.testing.assert_allclose(forgetting_terms(stack)[0], [-0.3, -0.1, nan])
    # Own step's shift: B moved A by −0.1; C moved A by −0.2 and B by −0.1.
    np.testing.assert_allclose(own_shifts(stack)[0], [nan, -0.1, -0.15])
    # As a receiver: A got −0.1 from B and −0.2 from C; B got −0.1 from C.
    np.testing.assert_allclose(receiver_transfer(stack, 10)[0], [-0.15, -0.1, nan])
    np.testing.assert_allclose(receiver_transfer(stack, 1)[0], [-0.1, -0.1, nan])


@pytest.mark.parametrize("seed", range(4))
def test_per_locale_statistics_are_the_metrics_cells(seed: int) -> None:
    rng = np.random.default_rng(seed)
    matrix = ScoreMatrix(tuple(f"l{i}" for i in range(6)), rng.random((7, 6)), SEQUENTIAL)
    stack = matrix.scores[None]
    assert np.nanmean(forgetting_terms(stack)[0]) == pytest.approx(cbt(matrix))
    np.testing.assert_allclose(own_shifts(stack)[0], mft(matrix, 3)[0].to_numpy())
    hops = mbt(matrix, 3)[[1, 2, 3]].to_numpy()
    expected = [row[~np.isnan(row)].mean() if (~np.isnan(row)).any() else nan for row in hops]
    np.testing.assert_allclose(receiver_transfer(stack, 3)[0], expected)


@pytest.mark.parametrize(
    ("rule", "low", "high", "verdict"),
    [
        (ABOVE, 0.001, 0.2, REPRODUCED),
        (ABOVE, -0.2, -0.001, NOT_REPRODUCED),
        (ABOVE, -0.1, 0.1, INCONCLUSIVE),
        (BELOW, -0.2, -0.001, REPRODUCED),
        (BELOW, 0.001, 0.2, NOT_REPRODUCED),
        (BELOW, 0.0, 0.1, INCONCLUSIVE),
        (WITHIN, -0.03, 0.03, REPRODUCED),
        (WITHIN, -0.01, 0.031, INCONCLUSIVE),
        (WITHIN, 0.031, 0.2, NOT_REPRODUCED),
        (WITHIN, -0.2, -0.031, NOT_REPRODUCED),
        (WITHIN, -0.2, 0.2, INCONCLUSIVE),
        (ABOVE, nan, nan, INCONCLUSIVE),
    ],
)
def test_verdicts_follow_the_fixed_rules(rule: str, low: float, high: float, verdict: str) -> None:
    finding = Finding(1, "s", "p", Interval((low + high) / 2, low, high), rule, 2)
    assert finding.verdict == verdict


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    for i, (order, number) in enumerate(zip(ORDERS, ORDER_NUMBERS, strict=True)):
        write_counted_run(root, f"van{i}", order, seed=i, gold_spans=GOLD, order_number=number)
        write_counted_run(
            root,
            f"lora{i}",
            order,
            seed=10 + i,
            method="shared-lora",
            gold_spans=GOLD,
            rank=8,
            order_number=number,
        )
    return root


def _brute_per_locale(sweep: Path, runs: list[str], statistic) -> tuple[list[str], np.ndarray]:
    """Per resample, the statistic of each run's explicitly resampled matrix, averaged per
    locale over the runs where it has a value: ``(resamples + 1, locales)``, row 0 stored."""
    boot = Bootstrap(resamples=RESAMPLES)
    locales = sorted(GOLD)
    total = np.zeros((RESAMPLES + 1, len(locales)))
    count = np.zeros(len(locales))
    for run_id in runs:
        run = read_run_dir(sweep / run_id)
        counts = run_counts(run.run_id, run.source, run.matrix)
        stack, _ = brute_force(boot, run.matrix, counts)
        values = statistic(np.concatenate([run.matrix.scores[None], stack]))
        for k, locale in enumerate(run.matrix.order):
            if not np.isnan(values[0, k]):
                total[:, locales.index(locale)] += values[:, k]
                count[locales.index(locale)] += 1
    return locales, total / count


def _interval(values: np.ndarray) -> tuple[float, float, float]:
    low, high = np.quantile(values[1:], [0.025, 0.975])
    return float(values[0]), float(low), float(high)


def test_claims_equal_a_brute_force_bootstrap(sweep: Path, tmp_path: Path) -> None:
    files = build_report([sweep], tmp_path / "report", resamples=RESAMPLES)
    table = pd.read_csv(tmp_path / "report" / "tables" / "claims.csv")
    assert list(table["claim"]) == [1, 2, 2, 3, 4, 5, 3, 4, 5]
    vanilla = ["van0", "van1"]

    locales, terms = _brute_per_locale(sweep, vanilla, forgetting_terms)
    latin = [k for k, x in enumerate(locales) if LOCALES[x].latin]
    other = [k for k in range(len(locales)) if k not in latin]
    expected = _interval(terms[:, other].mean(axis=1) - terms[:, latin].mean(axis=1))
    scripts = table[table["statistic"].str.startswith("VANILLA: R[T,j]")].iloc[0]
    assert (scripts["estimate"], scripts["ci_low"], scripts["ci_high"]) == pytest.approx(expected)
    mean, low, high = _interval(terms[:, latin].mean(axis=1))
    group_note = f"Latin {mean:+.3f} [{low:+.3f}, {high:+.3f}] ({len(latin)} locales)"
    assert group_note in (tmp_path / "report" / "tables" / "claims.md").read_text()

    _, shifts = _brute_per_locale(sweep, vanilla, own_shifts)
    named = [locales.index(x) for x in ("zh-CN", "ja-JP")]  # zh-TW is in no run
    rest = [k for k in range(len(locales)) if k not in named]
    expected = _interval(shifts[:, named].mean(axis=1) - shifts[:, rest].mean(axis=1))
    destructive = table[table["statistic"].str.startswith("VANILLA: performance")].iloc[0]
    assert (destructive["estimate"], destructive["ci_low"], destructive["ci_high"]) == (
        pytest.approx(expected)
    )

    _, received = _brute_per_locale(sweep, vanilla, lambda s: receiver_transfer(s, 10))
    named = [locales.index("nb-NO")]  # the only one of the paper's robust receivers here
    rest = [k for k in range(len(locales)) if k not in named]
    expected = _interval(received[:, named].mean(axis=1) - received[:, rest].mean(axis=1))
    robust = table[table["statistic"].str.startswith("VANILLA: MBT")].iloc[0]
    assert (robust["estimate"], robust["ci_low"], robust["ci_high"]) == pytest.approx(expected)

    runs = [read_run_dir(sweep / run_id) for run_id in ("lora0", "lora1", *vanilla)]
    pairs = [(r.matrix, run_counts(r.run_id, r.source, r.matrix)) for r in runs]
    cbt_change = Bootstrap(resamples=RESAMPLES).difference_intervals(pairs[:2], pairs[2:])["cbt"]
    row = table[table["statistic"] == "CBT, SHARED LoRA 8 − VANILLA"].iloc[0]
    assert (row["estimate"], row["ci_low"], row["ci_high"]) == pytest.approx(
        (cbt_change.estimate, cbt_change.low, cbt_change.high)
    )
    for _, finding in table.iterrows():
        rule = ABOVE if finding["claim"] in (1, 5) else BELOW
        interval = Interval(finding["estimate"], finding["ci_low"], finding["ci_high"])
        assert finding["verdict"] == Finding(1, "", "", interval, rule, 2).verdict
    markdown = (tmp_path / "report" / "tables" / "claims.md").read_text()
    assert "the paper's zh-CN, ja-JP, zh-TW rank" in markdown and "zh-TW –" in markdown
    assert "claims, tested" in files.html.read_text()


def test_runs_of_no_paper_method_test_no_claim(sweep: Path, tmp_path: Path) -> None:
    root = tmp_path / "other"
    write_counted_run(root, "x", ORDERS[0], seed=0, method="custom", gold_spans=GOLD)
    files = build_report([root], tmp_path / "report", resamples=RESAMPLES)
    assert not (tmp_path / "report" / "tables" / "claims.md").exists()
    assert all("claims" not in path.name for path in files.tables)


def test_the_rank_claim_compares_the_highest_rank_with_the_lowest(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    for rank, seed in ((8, 1), (64, 2), (16, 3)):
        order = ORDERS[0]
        write_counted_run(
            root, f"r{rank}", order, seed, method="shared-lora", gold_spans=GOLD, rank=rank
        )
    build_report([root], tmp_path / "report", resamples=RESAMPLES)
    table = pd.read_csv(tmp_path / "report" / "tables" / "claims.csv")
    row = table[table["claim"] == 6].iloc[0]
    assert row["statistic"] == "final F1, SHARED LoRA 64 − SHARED LoRA 8"
    runs = [read_run_dir(root / run_id) for run_id in ("r64", "r8")]
    pairs = [(r.matrix, run_counts(r.run_id, r.source, r.matrix)) for r in runs]
    change = Bootstrap(resamples=RESAMPLES).difference_intervals(pairs[:1], pairs[1:])
    expected = change["final_score"]
    assert (row["estimate"], row["ci_low"], row["ci_high"]) == pytest.approx(
        (expected.estimate, expected.low, expected.high)
    )
    assert row["verdict"] == Finding(6, "", "", expected, WITHIN, 2).verdict


def test_runs_of_two_models_are_tested_apart(sweep: Path, tmp_path: Path) -> None:
    write_counted_run(sweep, "other", ORDERS[0], seed=5, gold_spans=GOLD, model="tiny-2")
    build_report([sweep], tmp_path / "report", resamples=RESAMPLES)
    table = pd.read_csv(tmp_path / "report" / "tables" / "claims.csv")
    assert table["statistic"].str.startswith("tiny, span F1: ").sum() == 9
    other = table[table["statistic"].str.startswith("tiny-2, span F1: ")]
    # one VANILLA run of its own: its CBT, scripts, destructive and robust claims
    assert list(other["claim"]) == [2, 3, 4, 5]
    run = read_run_dir(sweep / "other")
    alone = Bootstrap(resamples=RESAMPLES).run_intervals(
        run.matrix, run_counts(run.run_id, run.source, run.matrix)
    )["cbt"]
    assert other.iloc[0]["estimate"] == pytest.approx(alone.estimate)
    assert (other.iloc[0]["ci_low"], other.iloc[0]["ci_high"]) == pytest.approx(
        (alone.low, alone.high)
    )


def test_each_order_alone_is_shown_beside_the_pooled_statistic(sweep: Path, tmp_path: Path) -> None:
    # A method that does not depend on the order, run once, stands against each order;
    # one that does, with one order done, only against that order.
    write_counted_run(
        sweep,
        "alone",
        ORDERS[0],
        seed=7,
        method="nonshared-lora",
        gold_spans=GOLD,
        rank=8,
        schedule="independent",
    )
    write_counted_run(
        sweep,
        "r64",
        ORDERS[1],
        seed=8,
        method="shared-lora",
        gold_spans=GOLD,
        rank=64,
        order_number=ORDER_NUMBERS[1],
    )
    build_report([sweep], tmp_path / "report", resamples=RESAMPLES)
    table = pd.read_csv(tmp_path / "report" / "tables" / "claims.csv").set_index("statistic")
    columns = [f"order {number}" for number in ORDER_NUMBERS]
    matrices = {
        run_id: read_run_dir(sweep / run_id).matrix
        for run_id in ("van0", "van1", "lora0", "lora1", "alone")
    }

    def row(statistic: str) -> list[float]:
        return list(table.loc[statistic, columns])

    vanilla_cbt = [cbt(matrices["van0"]), cbt(matrices["van1"])]
    assert row("CBT of VANILLA") == pytest.approx(vanilla_cbt)
    assert row("CBT, SHARED LoRA 8 − VANILLA") == pytest.approx(
        [cbt(matrices["lora0"]) - vanilla_cbt[0], cbt(matrices["lora1"]) - vanilla_cbt[1]]
    )
    assert row("final F1, NON-SHARED LoRA 8 − VANILLA") == pytest.approx(
        [final_score(matrices["alone"]) - final_score(matrices[v]) for v in ("van0", "van1")]
    )

    def scripts(matrix: ScoreMatrix) -> float:
        terms = dict(zip(matrix.order, forgetting_terms(matrix.scores[None])[0], strict=True))
        kept = {x: v for x, v in terms.items() if not np.isnan(v)}
        latin = [v for x, v in kept.items() if LOCALES[x].latin]
        other = [v for x, v in kept.items() if not LOCALES[x].latin]
        return float(np.mean(other) - np.mean(latin))

    rank = table.loc["final F1, SHARED LoRA 64 − SHARED LoRA 8"]
    assert pd.isna(rank[columns[0]])
    r64 = read_run_dir(sweep / "r64").matrix
    assert rank[columns[1]] == pytest.approx(final_score(r64) - final_score(matrices["lora1"]))

    statistic = "VANILLA: R[T,j] − R[j,j], non-Latin − Latin receivers"
    expected = [scripts(matrices["van0"]), scripts(matrices["van1"])]
    assert row(statistic) == pytest.approx(expected)
    # The table shows them in the orders' numeric order (10 after 2), as score changes.
    shown = " · ".join(f"{n}: {v:+.3f}" for n, v in zip(ORDER_NUMBERS, expected, strict=True))
    markdown = (tmp_path / "report" / "tables" / "claims.md").read_text()
    assert f"| {shown} |" in markdown
