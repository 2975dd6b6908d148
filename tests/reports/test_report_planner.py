"""The Planner section: the CBT interference models in ``planner/`` predict, against the
CBT the runs of their label measured."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from metrics.counted_runs import write_counted_run
from metrics.run_dirs import write_new_run_dir
from planner.helpers import flat_distances, synthetic_matrix
from reports.report_runs import ORDER_A, ORDER_B, VANILLA_A, VANILLA_B, write_run
from xlcl.metrics import ScoreMatrix, cbt, read_run_dir
from xlcl.metrics.bootstrap import Bootstrap
from xlcl.metrics.intervals import run_counts
from xlcl.planner import InterferenceModel, PlannerError, Scorer, fit, search
from xlcl.planner.features import feature_names
from xlcl.planner.model import INTERACTION, POSITION_FEATURES, Estimator, Examples, Provenance
from xlcl.reports import ReportFiles, build_report

RESAMPLES = 200
LOCALES = ("de-DE", "en-US", "ja-JP")  # sorted: the scorer's indices 0, 1, 2
# The hand-built ridge: effect = INTERCEPT + PER_HOP / h + CJK_RECEIVER · [receiver is CJK]
INTERCEPT, PER_HOP, CJK_RECEIVER = -0.01, -0.02, -0.05
ORDERS = {
    "planned": ("de-DE", "en-US", "ja-JP"),  # ja-JP last: first such in index order
    "worst": ("ja-JP", "de-DE", "en-US"),  # ja-JP first: first such in index order
    "other": ("en-US", "ja-JP", "de-DE"),
}
UNCOUNTED_ORDER = ("ja-JP", "en-US", "de-DE")  # ties with the worst, but is not the one found
CV = {
    "ridge alpha=1": {"mae": 0.05, "rmse": 0.06},
    "mean effect (no model)": {"mae": 0.08, "rmse": 0.09},
}


def hand_cbt(order: tuple[str, ...]) -> float:
    """CBT(π) = 1/(T−1) Σ_{i<j} E[π_i, π_j, i, j] of the hand-built ridge, by hand."""
    t = len(order)
    pairs = [(i, j) for i in range(t) for j in range(i + 1, t)]
    total = sum(INTERCEPT + PER_HOP / (j - i) for i, j in pairs)
    total += CJK_RECEIVER * (t - 1 - order.index("ja-JP"))  # later steps the CJK receiver takes
    return total / (t - 1)


def hand_ridge(label: str, overlap_tokenizer: str | None = None) -> InterferenceModel:
    """A ridge on raw features (mean 0, scale 1) that reads only 1/h and a CJK receiver."""
    names = feature_names(overlap_tokenizer is not None)
    columns = names + POSITION_FEATURES + tuple(name + INTERACTION for name in names)
    coef = np.zeros(len(columns))
    coef[columns.index("inverse_hop")] = PER_HOP
    coef[columns.index("receiver_cjk")] = CJK_RECEIVER
    zeros, ones = np.zeros(len(columns)), np.ones(len(columns))
    estimator = Estimator("ridge", {"alpha": 1.0}, len(columns), zeros, ones, coef, INTERCEPT)
    empty = Examples(columns, np.zeros((0, len(columns))), np.zeros(0), (), ())
    provenance = Provenance("massive-slots", "tiny", label, "span F1", ("fit-a", "fit-b"))
    learned = dict.fromkeys(LOCALES, 0.7)
    return InterferenceModel(
        provenance, estimator, columns, empty, learned, CV, overlap_tokenizer
    )  # fmt: skip


def csv(files: ReportFiles, name: str) -> pd.DataFrame:
    return pd.read_csv(next(p for p in files.tables if p.name == f"{name}.csv"))


@pytest.fixture(scope="module")
def hand(tmp_path_factory: pytest.TempPathFactory) -> tuple[ReportFiles, Path]:
    """Three counted runs (planned, worst, other) and one without counts, a hand-built ridge,
    a model fitted with overlap and a JSON file that is no model; URIEL made up."""
    results = tmp_path_factory.mktemp("hand") / "results"
    for seed, order in enumerate(ORDERS.values()):
        write_counted_run(results, f"run-{seed}", order, seed)
    matrix = ScoreMatrix(UNCOUNTED_ORDER, np.linspace(0.2, 0.8, 12).reshape(4, 3))
    write_new_run_dir(results, "uncounted", matrix, "vanilla", task="massive-slots")
    label = read_run_dir(results / "run-0").label
    (results / "planner").mkdir()
    hand_ridge(label).save(results / "planner" / "m.json")
    hand_ridge(label, overlap_tokenizer="tok").save(results / "planner" / "o.json")
    (results / "planner" / "z-notes.json").write_text(json.dumps({"notes": "no model"}))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("xlcl.reports.planner.uriel_distances", flat_distances)
        files = build_report([results], results.parent / "report", resamples=RESAMPLES)
    return files, results


def test_predicted_cbt_is_the_hand_computed_one_and_the_kinds_are_right(hand) -> None:
    files, _ = hand
    table = csv(files, "planner_cbt").set_index("run_id")
    assert list(table["model_file"].map(lambda p: Path(p).name)) == ["m.json"] * 4
    for seed, (kind, order) in enumerate(ORDERS.items()):
        row = table.loc[f"run-{seed}"]
        assert row["kind"] == kind
        assert row["order"] == " ".join(order)
        assert row["predicted_cbt"] == pytest.approx(hand_cbt(order), abs=1e-12)
    assert hand_cbt(ORDERS["planned"]) == pytest.approx(-0.04)  # (3c + 2.5a) / 2
    assert hand_cbt(ORDERS["worst"]) == pytest.approx(-0.09)  # ... + 2d / 2
    uncounted = table.loc["uncounted"]
    assert uncounted["kind"] == "other"
    assert uncounted["predicted_cbt"] == pytest.approx(hand_cbt(ORDERS["worst"]), abs=1e-12)
    assert not table["locales_seen_in_fit"].any()  # the hand-built model was fitted on none


def test_measured_cbt_has_the_run_s_paired_bootstrap_interval(hand) -> None:
    files, results = hand
    table = csv(files, "planner_cbt").set_index("run_id")
    boot = Bootstrap(resamples=RESAMPLES)
    for run_id in ("run-0", "run-1", "run-2"):
        run = read_run_dir(results / run_id)
        counts = run_counts(run.run_id, run.source, run.matrix)
        assert not isinstance(counts, str)
        interval = boot.run_intervals(run.matrix, counts)["cbt"]
        row = table.loc[run_id]
        assert row["measured_cbt"] == pytest.approx(cbt(run.matrix), abs=1e-12)
        assert (row["cbt_ci_low"], row["cbt_ci_high"]) == pytest.approx(
            (interval.low, interval.high), abs=1e-12
        )
        assert row["error"] == pytest.approx(row["measured_cbt"] - row["predicted_cbt"])
    uncounted = table.loc["uncounted"]
    assert np.isnan(uncounted["cbt_ci_low"]) and np.isnan(uncounted["cbt_ci_high"])
    assert uncounted["measured_cbt"] == pytest.approx(
        cbt(read_run_dir(results / "uncounted").matrix)
    )
    markdown = next(p for p in files.tables if p.name == "planner_cbt.md").read_text()
    assert "none for uncounted (no per-utterance counts)" in markdown


def test_correlations_over_the_runs_are_in_the_notes_and_caption(hand) -> None:
    files, _ = hand
    table = csv(files, "planner_cbt")
    x, y = table["predicted_cbt"].to_numpy(), table["measured_cbt"].to_numpy()
    pearson = np.corrcoef(x, y)[0, 1]
    spearman = np.corrcoef(pd.Series(x).rank(), pd.Series(y).rank())[0, 1]
    expected = f"m.json: Pearson r = {pearson:.2f}, Spearman ρ = {spearman:.2f} over 4 runs."
    assert expected in next(p for p in files.tables if p.name == "planner_cbt.md").read_text()
    assert expected in files.html.read_text(encoding="utf-8")


def test_the_verdict_sets_the_planned_order_against_the_others_spread(hand) -> None:
    files, _ = hand
    table = csv(files, "planner_cbt").set_index("run_id")
    measured = table["measured_cbt"]
    other = measured[["run-2", "uncounted"]]  # both kind "other"
    planned, worst = measured["run-0"], measured["run-1"]
    spread = float(np.std(other, ddof=1))
    margin = planned - other.mean()
    expected = (
        f"m.json, measured CBT on unseen locales: planned {planned:.4f} (1 runs), other "
        f"orders {other.mean():.4f} ± {spread:.4f} (2); worst {worst:.4f} (1). Planned beats "
        f"the other orders by more than their spread: {'yes' if margin > spread else 'no'} "
        f"({margin:+.4f} against {spread:.4f})."
    )
    assert expected in next(p for p in files.tables if p.name == "planner_cbt.md").read_text()


def test_weights_table_holds_each_model_s_weights_and_errors(hand) -> None:
    files, _ = hand
    weights = csv(files, "planner_weights")
    model = hand_ridge("any")
    mine = weights[weights["model_file"].str.endswith("m.json")]
    expected = model.estimator.weights(model.columns)
    assert dict(zip(mine["feature"], mine["weight"], strict=True)) == pytest.approx(expected)
    assert set(mine["cv_mae"]) == {0.05} and set(mine["baseline_mae"]) == {0.08}
    assert weights["model_file"].str.endswith("o.json").any()  # shown, though not predicted
    markdown = next(p for p in files.tables if p.name == "planner_weights.md").read_text()
    rows = [row for row in markdown.splitlines() if row.startswith("| ") and "--:" not in row]
    assert rows[:3] == [
        "| Feature | m.json | o.json |",
        "| receiver_cjk | -0.050 | -0.050 |",  # the largest |weight| first
        "| inverse_hop | -0.020 | -0.020 |",
    ]
    assert "| subword_overlap | – | 0.000 |" in rows  # o.json's feature only
    assert "leave-one-locale-out MAE of the effect 0.0500 against 0.0800" in markdown


def test_the_section_its_figure_and_the_notes_on_files_left_out(hand) -> None:
    files, results = hand
    names = {p.name for p in files.figures}
    assert {"planner_predicted_vs_measured.png", "planner_predicted_vs_measured.pdf"} <= names
    assert {p.name for p in files.tables} >= {"planner_cbt.tex", "planner_weights.tex"}
    html = files.html.read_text(encoding="utf-8")
    assert 'id="planner"' in html and 'href="#planner"' in html
    assert html.index('id="figures"') < html.index('id="planner"') < html.index('id="locales"')
    assert "Planner: predicted against measured CBT" in html and "receiver_cjk" in html
    planner = results / "planner"
    assert (
        f"Left out {planner / 'z-notes.json'}: not an interference model "
        "(xlcl plan fit writes one)." in files.notes
    )
    assert any(note.startswith(f"Planner: {planner / 'o.json'} was fitted with subword overlap")
               for note in files.notes)  # fmt: skip


def _small_results(root: Path) -> Path:
    write_run(root, "van-a", "vanilla", ORDER_A, VANILLA_A)
    write_run(root, "van-b", "vanilla", ORDER_B, VANILLA_B)
    return root


def _page(files: ReportFiles) -> str:
    return re.sub(r"Generated .*? UTC", "", files.html.read_text(encoding="utf-8"))


def test_without_a_model_the_report_is_the_old_one(tmp_path: Path) -> None:
    results = _small_results(tmp_path / "results")
    plain = build_report([results], tmp_path / "plain", resamples=RESAMPLES)
    assert 'id="planner"' not in _page(plain) and 'href="#planner"' not in _page(plain)
    assert not any("lanner" in note for note in plain.notes)
    assert not any(p.name.startswith("planner") for p in [*plain.tables, *plain.figures])
    (results / "planner").mkdir()
    (results / "planner" / "x.json").write_text("[1, 2]")
    noted = build_report([results], tmp_path / "noted", resamples=RESAMPLES)
    note = f"Left out {results / 'planner' / 'x.json'}: not an interference model"
    assert [n for n in noted.notes if n not in plain.notes] == [
        f"{note} (xlcl plan fit writes one)."
    ]
    # the same page but for that note (and where it was written)
    page = _page(noted).replace(str(tmp_path / "noted"), str(tmp_path / "plain"))
    assert re.sub(r"<li>Left out [^<]*x\.json[^<]*</li>", "", page) == _page(plain)
    assert [p.name for p in noted.tables] == [p.name for p in plain.tables]


def test_without_urielplus_the_section_is_left_out_with_one_note(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    results = _small_results(tmp_path / "results")
    (results / "planner").mkdir()
    hand_ridge(read_run_dir(results / "van-a").label).save(results / "planner" / "m.json")

    def no_urielplus(locales: object) -> None:
        raise PlannerError("the typological features need the urielplus package")

    monkeypatch.setattr("xlcl.reports.planner.uriel_distances", no_urielplus)
    files = build_report([results / "van-a"], tmp_path / "out", resamples=RESAMPLES)
    assert [n for n in files.notes if "lanner" in n] == [
        "Planner section left out: the typological features need the urielplus package."
    ]
    assert 'id="planner"' not in files.html.read_text(encoding="utf-8")


def test_a_fitted_model_predicts_unseen_locales_as_its_scorer_does(tmp_path: Path) -> None:
    """Fitted with URIEL on three orders of four locales; set against runs over three
    other locales in its planned, worst and another order; the report is given run
    directories, so the model is found in their parent's planner/."""
    pytest.importorskip("urielplus")
    pytest.importorskip("sklearn")
    from xlcl.planner import uriel_distances

    results = tmp_path / "results"
    seen = ("en-US", "de-DE", "ja-JP", "th-TH")
    for k, order in enumerate([seen, seen[::-1], seen[2:] + seen[:2]]):
        write_new_run_dir(
            results, f"fit{k}", synthetic_matrix(order, k), "vanilla", task="massive-slots"
        )  # fmt: skip
    fitted = fit([read_run_dir(results / f"fit{k}") for k in range(3)], uriel_distances(seen))
    model = fitted.model
    (results / "planner").mkdir()
    model.save(results / "planner" / "v.json")
    unseen = ("fr-FR", "ko-KR", "ru-RU")
    scorer = Scorer(
        unseen,
        model.effect_tensor(unseen, uriel_distances(unseen), None),
        np.array([model.learning_score(loc) for loc in unseen]),
    )
    planned, worst = search(scorer), search(scorer, worst=True)
    other = next(
        o for o in [unseen, unseen[::-1], unseen[1:] + unseen[:1]] if o not in (planned, worst)
    )
    for k, order in enumerate([planned, worst, other]):
        write_new_run_dir(
            results, f"new{k}", synthetic_matrix(order, 10 + k), "vanilla", task="massive-slots"
        )  # fmt: skip
    inputs = sorted(p for p in results.iterdir() if p.name != "planner")
    files = build_report(inputs, tmp_path / "report", resamples=RESAMPLES)
    table = csv(files, "planner_cbt").set_index("run_id")
    assert list(table.index) == ["fit0", "fit1", "fit2", "new0", "new1", "new2"]
    assert list(table["locales_seen_in_fit"]) == [True] * 3 + [False] * 3
    assert list(table.loc[["new0", "new1", "new2"], "kind"]) == ["planned", "worst", "other"]
    for k, order in enumerate([planned, worst, other]):
        expected = scorer.cbt(scorer.indices(order))[0]
        assert table.loc[f"new{k}", "predicted_cbt"] == pytest.approx(expected, abs=1e-12)
    fit_scorer = Scorer(
        tuple(sorted(seen)),
        model.effect_tensor(sorted(seen), uriel_distances(sorted(seen)), None),
        np.zeros(len(seen)),
    )
    first = read_run_dir(results / "fit0").matrix.order
    assert table.loc["fit0", "predicted_cbt"] == pytest.approx(
        fit_scorer.cbt(fit_scorer.indices(first))[0], abs=1e-12
    )
    weights = csv(files, "planner_weights")
    assert dict(zip(weights["feature"], weights["weight"], strict=True)) == pytest.approx(
        model.estimator.weights(model.columns)
    )
    assert set(weights["cv_mae"]) == {model.cross_validation[model.label()]["mae"]}
    assert np.isnan(table["cbt_ci_low"]).all()  # these runs keep no per-utterance counts
