from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from planner.helpers import flat_distances, synthetic_matrix, write_runs
from xlcl.metrics import Run, ScoreMatrix, load
from xlcl.planner import PlannerError, fit, load_model
from xlcl.planner.features import feature_names
from xlcl.planner.model import MEAN_BASELINE, base_width, examples, fit_estimator

REPO = Path(__file__).resolve().parents[2]
LOCALES = ("en-US", "de-DE", "ru-RU", "ja-JP", "th-TH", "es-ES")
ORDERS = (LOCALES, LOCALES[::-1], ("ja-JP", "en-US", "th-TH", "es-ES", "ru-RU", "de-DE"))


def _run(run_id: str, matrix: ScoreMatrix) -> Run:
    return Run(run_id, matrix, "vanilla tiny", Path(run_id), "massive-slots")


def test_examples_are_the_hop_cells_with_their_positions() -> None:
    order = ("en-US", "de-DE", "ja-JP")
    scores = np.array(
        [[0.0, 0.0, 0.0], [0.6, 0.1, 0.0], [0.5, 0.7, 0.1], [0.2, 0.6, 0.8]], dtype=float
    )
    table = examples([_run("a", ScoreMatrix(order, scores))], flat_distances(sorted(order)))
    # effect[q, p] for q > p: (2, en) = -0.1, (3, en) = -0.3, (3, de) = -0.1
    assert table.target == pytest.approx([-0.1, -0.3, -0.1])
    assert table.receivers == ("en-US", "en-US", "de-DE")
    assert table.donors == ("de-DE", "ja-JP", "ja-JP")
    width = len(feature_names(with_overlap=False))
    inverse_hop, relative_step = table.features[:, width], table.features[:, width + 1]
    assert inverse_hop == pytest.approx([1.0, 0.5, 1.0])
    assert relative_step == pytest.approx([2 / 3, 1.0, 1.0])
    # the products with 1/h follow
    assert table.features[1, width + 2 :] == pytest.approx(table.features[1, :width] * 0.5)


def test_fit_refuses_a_single_run_and_says_how_many_it_needs() -> None:
    runs = [_run("a", synthetic_matrix(LOCALES, 0))]
    with pytest.raises(PlannerError, match=r"needs at least 2 finished sequential runs.*got 1"):
        fit(runs, flat_distances(sorted(LOCALES)))


def test_fit_refuses_runs_of_two_labels() -> None:
    runs = [_run("a", synthetic_matrix(LOCALES, 0)), _run("b", synthetic_matrix(ORDERS[1], 1))]
    runs[1] = Run("b", runs[1].matrix, "shared-lora r16 tiny", Path("b"), "massive-slots")
    with pytest.raises(PlannerError, match="runs of 2 labels"):
        fit(runs, flat_distances(sorted(LOCALES)))


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    root = write_runs(tmp_path_factory.mktemp("runs"), ORDERS)
    runs = load([root]).runs
    return fit(runs, flat_distances(sorted(LOCALES))).model


def test_fit_records_what_it_was_fitted_for_and_beats_the_mean(fitted) -> None:  # type: ignore[no-untyped-def]
    assert fitted.provenance.task == "massive-slots"
    assert fitted.provenance.model == "tiny"
    assert fitted.provenance.method == "vanilla tiny"
    assert len(fitted.table.target) == 3 * 15
    errors = fitted.cross_validation
    kept = fitted.label() if fitted.estimator.kind == "ridge" else "gradient-boosted trees"
    assert min(e["mae"] for k, e in errors.items() if k != MEAN_BASELINE) == (errors[kept]["mae"])
    assert errors[kept]["mae"] < errors[MEAN_BASELINE]["mae"]
    assert fitted.learning_scores["en-US"] == pytest.approx(0.7)


@pytest.mark.parametrize("kind", ["ridge", "gbt"])
def test_effect_tensor_equals_row_by_row_prediction(fitted, kind: str) -> None:  # type: ignore[no-untyped-def]
    locales = ("th-TH", "en-US", "ja-JP", "de-DE", "ru-RU")
    params = (
        {"alpha": 1.0}
        if kind == "ridge"
        else {"n_estimators": 30, "max_depth": 3, "learning_rate": 0.1, "random_state": 0}
    )
    used = len(fitted.columns) if kind == "ridge" else base_width(fitted.columns)
    fitted.estimator = fit_estimator(kind, params, fitted.table.features, fitted.table.target, used)
    distances = flat_distances(sorted(LOCALES))
    tensor = fitted.effect_tensor(locales, distances, None)
    n = len(locales)
    matrix = ScoreMatrix(locales, np.zeros((n + 1, n)))
    rows = examples([_run("x", matrix)], distances)  # every (receiver p, donor q > p) cell
    index = {loc: k for k, loc in enumerate(locales)}
    p = np.array([locales.index(r) for r in rows.receivers])
    q = np.array([locales.index(d) for d in rows.donors])
    assert np.isnan(tensor[0, 1, 1, 0])  # j ≤ i: no such cell
    expected = fitted.estimator.predict(rows.features)
    got = tensor[[index[r] for r in rows.receivers], [index[d] for d in rows.donors], p, q]
    assert got == pytest.approx(expected, abs=1e-12)


def test_saved_model_loads_back_with_the_same_predictions(fitted, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "model.json"
    fitted.save(path)
    loaded = load_model(path)
    assert loaded.provenance == fitted.provenance
    assert loaded.estimator.predict(fitted.table.features) == pytest.approx(
        fitted.estimator.predict(fitted.table.features), abs=1e-12
    )


def test_load_model_refuses_other_json(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text('{"a": 1}')
    with pytest.raises(PlannerError, match="not an interference model"):
        load_model(path)


def test_fit_on_the_measured_remedy_runs() -> None:
    """The real e5-small VANILLA runs of results/remedies: two orders of six locales."""
    pytest.importorskip("urielplus")
    from xlcl.planner import uriel_distances

    root = REPO / "results" / "remedies"
    if not root.is_dir():
        pytest.skip("results/remedies is not in this checkout")
    wanted = {"5768425d7c1b", "634360903ba3"}  # plain VANILLA, orders starting de-DE, es-ES
    runs = load([root / run_id for run_id in sorted(wanted)]).runs
    locales = sorted({loc for run in runs for loc in run.matrix.order})
    model = fit(runs, uriel_distances(locales)).model
    assert model.provenance.model == "e5-small-offline"
    assert len(model.table.target) == 2 * 15
    errors = model.cross_validation
    kept = min((name for name in errors if name != MEAN_BASELINE), key=lambda n: errors[n]["mae"])
    assert model.label() == kept  # the candidate with the lowest leave-one-locale-out error
