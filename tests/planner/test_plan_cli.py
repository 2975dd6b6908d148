"""`xlcl plan` through typer's CliRunner, on the real command group."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from planner.helpers import write_runs
from xlcl.catalog import find_config
from xlcl.cli import app
from xlcl.config import load_config
from xlcl.data import resolve_order

LOCALES = ("en-US", "de-DE", "ru-RU", "ja-JP", "th-TH", "es-ES")
ORDERS = (LOCALES, LOCALES[::-1], ("ja-JP", "en-US", "th-TH", "es-ES", "ru-RU", "de-DE"))


def invoke(*args: str) -> Any:
    return CliRunner().invoke(app, ["plan", *args])


def test_order_without_a_model_is_the_facts_baseline() -> None:
    result = invoke("order", "--locales", "en-US,ja-JP,ru-RU,th-TH", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["basis"] == "facts baseline (no fitted model)"
    assert document["order"] == ["ja-JP", "ru-RU", "th-TH", "en-US"]
    assert document["predicted"] is None


def test_unknown_locale_is_one_line_with_a_suggestion() -> None:
    result = invoke("order", "--locales", "en-US,en_US,ja-JP")
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "error: unknown locale 'en_US'; did you mean en-US? (MASSIVE has 52)"
    ]


def test_worst_needs_a_model() -> None:
    result = invoke("order", "--locales", "en-US,ja-JP", "--worst")
    assert result.exit_code == 2
    assert "--worst needs a fitted --model" in result.stderr


def test_fit_with_one_run_says_how_many_it_needs(tmp_path: Path) -> None:
    pytest.importorskip("urielplus")
    root = write_runs(tmp_path / "runs", ORDERS[:1])
    result = invoke("fit", str(root), "--out", str(tmp_path / "m.json"))
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "error: fitting needs at least 2 finished sequential runs of one label "
        "(different orders); got 1"
    )


def test_config_fragment_feeds_back_as_an_override(tmp_path: Path) -> None:
    fragment = tmp_path / "plan.yaml"
    result = invoke("order", "--locales", "th-TH,en-US,ru-RU", "--config-out", str(fragment))
    assert result.exit_code == 0, result.output
    order = yaml.safe_load(fragment.read_text())["order"]
    assert order == ["ru-RU", "th-TH", "en-US"]
    flow = fragment.read_text().splitlines()[-1].removeprefix("order: ")
    config = load_config(find_config("demo/quick/vanilla"), [f"order={flow}"])
    assert resolve_order(config.order) == tuple(order)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("urielplus")
    root = tmp_path_factory.mktemp("plan")
    write_runs(root / "runs", ORDERS)
    out = root / "model.json"
    result = invoke("fit", str(root / "runs"), "--out", str(out), "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["for"] == {"task": "massive-slots", "model": "tiny", "method": "vanilla tiny"}
    assert summary["cells"] == 3 * 15
    assert set(summary["leave_one_locale_out"]) >= {"ridge alpha=1", "gradient-boosted trees"}
    return out


def test_order_with_a_model_compares_paper_and_random_orders(model_file: Path) -> None:
    result = invoke("order", "--locales", ",".join(LOCALES), "--model", str(model_file), "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert sorted(document["order"]) == sorted(LOCALES)
    assert document["search"] == "exhaustive"
    assert set(document["paper_orders"]) == {"1", "2", "3", "4", "5"}
    best = document["predicted"]["cbt"]
    assert all(entry["cbt"] <= best + 1e-12 for entry in document["paper_orders"].values())
    spread = document["random_orders"]
    assert spread["n"] == 100 and spread["cbt"]["max"] <= best + 1e-12
    worst = json.loads(
        invoke(
            "order",
            "--locales",
            ",".join(LOCALES),
            "--model",
            str(model_file),
            "--worst",
            "--json",
        ).stdout
    )
    assert worst["predicted"]["cbt"] <= spread["cbt"]["min"] + 1e-12


def test_order_refuses_a_model_fitted_for_another_encoder(model_file: Path) -> None:
    result = invoke(
        "order",
        "--locales",
        "en-US,de-DE",
        "--model",
        str(model_file),
        "--config",
        "demo/quick/vanilla",
    )
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "error: the interference model was fitted for model 'tiny'; the run config asks "
        "for 'e5-small-offline'"
    )


def test_overlap_table_from_massive_and_a_tokenizer_file(tmp_path: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers

    from massive_fixture import write_massive_dir

    data = write_massive_dir(tmp_path / "massive", ("en-US", "de-DE"))
    tokenizer = Tokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.save(str(tmp_path / "tokenizer.json"))
    out = tmp_path / "overlap.json"
    result = invoke(
        "overlap", "--locales", "en-US,de-DE", "--tokenizer", str(tmp_path / "tokenizer.json"),
        "--out", str(out), "--data", str(data),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    # an empty word-level vocabulary maps every word to [UNK]: one shared type of one
    assert json.loads(out.read_text())["pairs"] == [["de-DE", "en-US", 1.0]]


def test_a_model_fitted_with_overlap_needs_the_table(tmp_path: Path) -> None:
    from planner.helpers import flat_distances
    from xlcl.metrics import load
    from xlcl.planner import PlannerError, fit, plan_order, subword_overlap

    runs = load([write_runs(tmp_path / "runs", ORDERS)]).runs
    texts = {locale: [locale.replace("-", " ")] for locale in LOCALES}
    overlap = subword_overlap(texts, str.split, "whitespace")
    model = fit(runs, flat_distances(sorted(LOCALES)), overlap).model
    assert model.columns[13] == "subword_overlap" and model.overlap_tokenizer == "whitespace"
    distances = flat_distances(sorted(LOCALES))
    with pytest.raises(PlannerError, match="uses subword overlap"):
        plan_order(LOCALES, model, distances=distances)
    plan = plan_order(LOCALES, model, overlap=overlap, distances=distances)
    assert sorted(plan.order) == sorted(LOCALES)
