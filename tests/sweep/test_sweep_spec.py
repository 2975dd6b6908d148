"""Sweep files: expansion of grid x variants into validated, de-duplicated runs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from xlcl.config import ConfigError, load_config
from xlcl.sweep import expand, load_sweep

REPO = Path(__file__).resolve().parents[2]
BASE = {"model": "m", "method": "vanilla", "order": 1}


def test_grid_times_variants_with_variant_keys_winning(tmp_path):
    runs = expand(
        BASE,
        {"order": [1, 2], "train.seed": [1, 2]},
        [
            {"method": "vanilla"},
            {"method": "shared-lora", "rank": 32},
            {"method": "mono", "order": 1},
        ],
        tmp_path,
    )
    # 2 orders x 2 seeds x 3 variants = 12; MONO pinned to order 1 collapses 4 -> 2.
    assert len(runs) == 10
    assert len({run.run_id for run in runs}) == 10
    shared = [run for run in runs if run.method == "shared-lora"]
    assert {(run.order, run.train.seed, run.rank) for run in shared} == {
        (1, 1, 32), (1, 2, 32), (2, 1, 32), (2, 2, 32)
    }  # fmt: skip
    assert shared[0].train.epochs == 100  # LoRA defaults follow the variant's rank
    assert all(run.output_dir == str(tmp_path) for run in runs)


def test_cases_pair_their_keys_and_cross_the_grid_and_variants(tmp_path):
    cases = [{"order": 1, "train.seed": 7}, {"order": 2, "train.seed": 8}]
    variants = [{"method": "vanilla"}, {"method": "vanilla", "train.seed": 9}]
    runs = expand(BASE, {"train.epochs": [1, 2]}, variants, tmp_path, cases=cases)
    # 2 epochs x 2 cases x 2 variants; the second variant's seed overrides the case's.
    assert sorted((run.train.epochs, run.order, run.train.seed) for run in runs) == [
        (1, 1, 7), (1, 1, 9), (1, 2, 8), (1, 2, 9),
        (2, 1, 7), (2, 1, 9), (2, 2, 8), (2, 2, 9),
    ]  # fmt: skip


def test_crossing_ranks_with_full_fine_tuning_points_to_variants(tmp_path):
    with pytest.raises(ConfigError, match="variants"):
        expand(BASE, {"method": ["vanilla", "shared-lora"], "rank": [32]}, [], tmp_path)


def test_unknown_keys_get_did_you_mean(tmp_path):
    with pytest.raises(ConfigError, match=r"did you mean 'train\.seed'"):
        expand(BASE, {"train.sed": [1]}, [], tmp_path)
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"base": BASE, "grids": {"order": [1]}}))
    with pytest.raises(ConfigError, match="did you mean 'grid'"):
        load_sweep(path)


def test_base_path_is_relative_to_the_sweep_file_and_overrides_apply(tmp_path):
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(BASE))
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"base": "base.yaml", "grid": {"order": [1, 2]}}))
    sweep = load_sweep(path, results=tmp_path / "out", overrides=["data.max_train=10"])
    assert [run.order for run in sweep.runs] == [1, 2]
    assert all(run.data.max_train == 10 for run in sweep.runs)
    assert sweep.results == tmp_path / "out"
    default = load_sweep(path)  # relative to where the driver starts, made absolute
    assert default.results == Path.cwd() / "results" / "s"
    assert {run.output_dir for run in default.runs} == {str(Path.cwd() / "results" / "s")}


def test_the_paper_sweep_is_the_paper_grid_with_the_paper_configs_run_ids():
    sweep = load_sweep(REPO / "configs" / "sweeps" / "paper.yaml")
    assert len(sweep.runs) == (12 + 4) * 5
    xlmr = [run for run in sweep.runs if run.model == "FacebookAI/xlm-roberta-base"]
    labels = {run.method_spec.label for run in xlmr}
    assert len(labels) == 12 and "NON-SHARED LoRA 256" in labels
    e5 = {run.method_spec.label for run in sweep.runs if "e5" in run.model}
    assert e5 == {"VANILLA", "SHARED LoRA 32", "NON-SHARED LoRA 32", "MULTI"}
    ids = set(sweep.by_id())
    for path in sorted((REPO / "configs" / "paper").glob("*.yaml")):
        for order in range(1, 6):
            assert load_config(path, [f"order={order}"]).run_id in ids, (path.name, order)


@pytest.mark.parametrize("name", ["replication", "replication-gpu", "replication-xlmr"])
def test_the_replication_sweeps_run_each_method_once_or_per_order(name):
    """Orders 1, 2 and 5 for the sequential methods; MULTI, MONO and NON-SHARED once."""
    sweep = load_sweep(REPO / "configs" / "sweeps" / f"{name}.yaml")
    by_label: dict[str, list[str]] = {}
    for run in sweep.runs:
        assert run.locales is None  # all 52
        by_label.setdefault(run.method_spec.label, []).append(str(run.order))
    low, high = (32, 256) if name == "replication-xlmr" else (16, 64)
    assert by_label == {
        "MULTI": ["1"],
        "MONO": ["1"],
        f"NON-SHARED LoRA {low}": ["1"],
        "VANILLA": ["1", "2", "5"],
        f"SHARED LoRA {low}": ["1", "2", "5"],
        f"SHARED LoRA {high}": ["1", "2", "5"],
    }
    if name == "replication-xlmr":  # the paper sweep's runs: results serve both
        paper = load_sweep(REPO / "configs" / "sweeps" / "paper.yaml").by_id()
        assert set(sweep.by_id()) <= set(paper)


def test_the_planner_validation_runs_seven_orders_of_eight_unseen_locales_per_method():
    """Planned, worst and five random orders; both seeds; VANILLA and SHARED LoRA 16."""
    sweep = load_sweep(REPO / "configs" / "sweeps" / "planner-validation.yaml")
    assert len(sweep.runs) == 28
    unseen = {"fr-FR", "pl-PL", "tr-TR", "el-GR", "ar-SA", "ko-KR", "ja-JP", "zh-CN"}
    orders: dict[str, set[tuple[str, ...]]] = {}
    for run in sweep.runs:
        assert set(run.order) == unseen and len(run.order) == 8
        assert (run.data.max_train, run.data.max_dev, run.data.max_test) == (400, 100, 100)
        orders.setdefault(run.method_spec.label, set()).add(tuple(run.order))
    assert sorted(orders) == ["SHARED LoRA 16", "VANILLA"]
    assert all(len(seen) == 7 for seen in orders.values())
    # the five random orders are shared; the planned and worst ones are each method's own
    assert len(orders["VANILLA"] & orders["SHARED LoRA 16"]) == 5
    seeds = {(run.method_spec.label, tuple(run.order), run.train.seed) for run in sweep.runs}
    assert len(seeds) == 28


@pytest.mark.parametrize(("name", "orders"), [("remedies", 6), ("remedies-2h", 3)])
def test_the_remedies_sweeps_pair_every_remedy_with_its_plain_run(name, orders):
    """Every locale first or last (six orders: first and last); two seeds; each remedy's
    run shares its order and seed with its plain method's run."""
    sweep = load_sweep(REPO / "configs" / "sweeps" / f"{name}.yaml")
    demo = ("en-US", "de-DE", "es-ES", "ru-RU", "hi-IN", "th-TH")
    cases: dict[tuple[str, str | None], set[tuple[tuple[str, ...], int]]] = {}
    for run in sweep.runs:
        strategy = run.strategy["name"] if run.strategy else None
        cases.setdefault((run.method, strategy), set()).add((tuple(run.order), run.train.seed))
        assert sorted(run.order) == sorted(demo)
    assert cases.pop(("nonshared-lora", None)) == {(demo, 42), (demo, 43)}
    paired = cases[("vanilla", None)]
    assert len(paired) == orders and {seed for _, seed in paired} == {42, 43}
    firsts, lasts = {order[0] for order, _ in paired}, {order[-1] for order, _ in paired}
    assert len(firsts) == len(lasts) == orders and firsts | lasts == set(demo)
    assert all(seen == paired for seen in cases.values())
    assert len(cases) == 9 and len(sweep.runs) == 9 * orders + 2


def test_the_2_hour_remedies_sweep_shares_its_seed_42_runs_with_the_full_one():
    full = load_sweep(REPO / "configs" / "sweeps" / "remedies.yaml").by_id()
    short = load_sweep(REPO / "configs" / "sweeps" / "remedies-2h.yaml").runs
    assert len(short) == 29
    shared = {run.run_id for run in short if run.train.seed == 42}
    assert len(shared) == 2 * 9 + 1 and shared <= set(full)
