"""Cost estimates, checked against hand-computed counts, epochs and hours."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import typer
import yaml
from typer.testing import CliRunner

from xlcl.cli import sweep as sweep_cli
from xlcl.config import RunConfig, validate_config
from xlcl.sweep import expand
from xlcl.sweep.cost import (
    CHECKPOINT_WRITE_RATE,
    ENCODING_RATE,
    GRAPH_CAPTURE_SECONDS,
    THROUGHPUT,
    UPPER_BOUND,
    CalibrationError,
    Epochs,
    Grouping,
    Overheads,
    Packing,
    estimate,
    estimate_sweep,
    read_calibration,
    replicate_of,
)

XLMR = "FacebookAI/xlm-roberta-base"
E5 = "intfloat/multilingual-e5-large-instruct"
XLMR_WEIGHTS = 278_043_648  # trainable parameters of XLM-R base (tests/test_params.py)
XLMR_LORA_32 = 5_357_568  # of its LoRA r32 adapter
LOCALE_UTTERANCES = 11_514 + 2_033 + 2_974  # encoded once per run: train, dev, test


def config(method, rank=None, model=XLMR, **extra):
    return validate_config({"model": model, "method": method, "rank": rank, **extra})


def test_vanilla_on_the_paper_data():
    cost = estimate(config("vanilla"))
    assert cost.epochs == Epochs(50, UPPER_BOUND, runs=0)
    assert cost.train_utterance_epochs == 52 * 11_514 * 50
    # dev after every epoch of every step, test on all 52 locales after steps 0..52
    assert cost.scored_utterances == 52 * 2_033 * 50 + 53 * 52 * 2_974
    # the weights in the checkpoints of rows 0..52, 4 bytes a parameter; no graphs
    overheads = Overheads(
        encoding=52 * LOCALE_UTTERANCES / ENCODING_RATE,
        checkpoints=53 * XLMR_WEIGHTS * 4 / CHECKPOINT_WRITE_RATE,
        graph_capture=0.0,
    )
    assert cost.overhead_seconds == pytest.approx(overheads)
    speed = THROUGHPUT[XLMR]
    hours = (
        52 * 11_514 * 50 / speed.train_full + cost.scored_utterances / speed.score + overheads.total
    ) / 3600
    assert cost.gpu_hours == pytest.approx(hours)


def test_limits_and_schedules():
    small = {"order": ["en-US", "de-DE"], "data": {"max_train": 10, "max_dev": 5, "max_test": 4}}
    multi = estimate(config("multi", train={"epochs": 2}, **small))
    assert multi.train_utterance_epochs == 2 * 10 * 2
    assert multi.scored_utterances == 2 * 5 * 2 + 2 * 2 * 4
    nonshared = estimate(config("nonshared-lora", 8, train={"epochs": 3}, **small))
    assert nonshared.scored_utterances == 2 * 5 * 3 + (2 * 4 + 2 * 1 * 4)
    all_models = {"train": {"epochs": 3}, "evaluate": {"all_models": True}}
    every = estimate(config("nonshared-lora", 8, **all_models, **small))
    assert every.scored_utterances == 2 * 5 * 3 + (2 * 4 + 2 * 2 * 4)  # each model on each
    vanilla = estimate(config("vanilla", train={"epochs": 2}, **small))
    assert vanilla.train_utterance_epochs == multi.train_utterance_epochs  # same data, 2 steps
    assert vanilla.scored_utterances == 2 * 5 * 2 + 3 * 2 * 4
    unknown = estimate(validate_config({"model": "other", "method": "mono"}))
    assert unknown.gpu_hours is None and unknown.overhead_seconds is None


def test_hours_follow_lora_and_cuda_graphs_where_measured():
    speed = THROUGHPUT[XLMR]
    runs = {
        (lora, graphs): estimate(
            config(
                "shared-lora" if lora else "vanilla",
                32 if lora else None,
                train={"epochs": 1, "cuda_graphs": graphs},
                order=["en-US"],
            )
        )
        for lora in (False, True)
        for graphs in (False, True)
    }
    rates = {
        (False, False): speed.train_full,
        (False, True): speed.train_full_graphs,
        (True, False): speed.train_lora,
        (True, True): speed.train_lora_graphs,
    }
    # rows 0 and 1 checkpoint the trainable weights; LoRA also saves its adapter after step 1
    written = {False: 2 * XLMR_WEIGHTS * 4, True: 3 * XLMR_LORA_32 * 4}
    for (lora, graphs), cost in runs.items():
        overheads = Overheads(
            encoding=LOCALE_UTTERANCES / ENCODING_RATE,
            checkpoints=written[lora] / CHECKPOINT_WRITE_RATE,
            graph_capture=GRAPH_CAPTURE_SECONDS if graphs else 0.0,  # one step's widths
        )
        assert cost.overhead_seconds == pytest.approx(overheads)
        scored = 2_033 + 2 * 2_974  # dev once, test before and after the one step
        seconds = 11_514 / rates[lora, graphs] + scored / speed.score + overheads.total
        assert cost.gpu_hours == pytest.approx(seconds / 3600), (lora, graphs)
    assert len({cost.gpu_hours for cost in runs.values()}) == 4
    e5 = THROUGHPUT[E5]
    assert e5.train(lora=False, graphs=True) == e5.train_full  # not measured with graphs


def test_only_the_sequential_schedule_checkpoints_weights():
    mono = estimate(config("mono", order=["en-US", "de-DE"]))  # every step starts fresh
    assert mono.overhead_seconds is not None and mono.overhead_seconds.checkpoints == 0
    nonshared = estimate(config("nonshared-lora", 32, order=["en-US", "de-DE"]))
    assert nonshared.overhead_seconds is not None  # its two adapters only
    assert nonshared.overhead_seconds.checkpoints == pytest.approx(
        2 * XLMR_LORA_32 * 4 / CHECKPOINT_WRITE_RATE
    )


# Calibration: run directories with known curves.


def finished_run(root: Path, run: RunConfig, epochs_per_step: list[int], done=True) -> Path:
    """A run directory of `run` whose step i ran epochs_per_step[i - 1] epochs."""
    path = root / run.run_id
    path.mkdir(parents=True)
    manifest = {
        "run_id": run.run_id,
        "status": "done" if done else "running",
        "config": run.model_dump(mode="json"),
        "task": run.task,
    }
    (path / "manifest.json").write_text(json.dumps(manifest))
    rows = [
        {"step": step, "epoch": epoch, "train_loss": 0.5, "dev_score": 0.5, "seconds": 1.0}
        for step, epochs in enumerate(epochs_per_step, start=1)
        for epoch in range(1, epochs + 1)
    ]
    pd.DataFrame(rows).to_parquet(path / "curves.parquet", index=False)
    if done:
        (path / "DONE").write_text("")
    return path


FULL = {"epochs": 50, "patience": 5}  # full fine-tuning's defaults, given to LoRA runs too


@pytest.fixture
def calibration_dir(tmp_path):
    """Finished runs: VANILLA twice (10, 20; 30 epochs a step), SHARED LoRA 32 (6, 8) and
    VANILLA on e5-small (40), all with full fine-tuning's stopping rule; an unfinished
    VANILLA run (50) and a VANILLA run with another rule (epochs 3: 1, 2) besides."""
    root = tmp_path / "results"
    two = {"order": ["en-US", "de-DE"]}
    finished_run(root, config("vanilla", train={"seed": 1}, **two), [10, 20])
    finished_run(root / "deeper", config("vanilla", train={"seed": 2}, order=["en-US"]), [30])
    finished_run(root, config("shared-lora", 32, train=FULL, **two), [6, 8])
    finished_run(root, config("vanilla", model="e5-small-offline", order=["en-US"]), [40])
    finished_run(root, config("vanilla", train={"seed": 3}, **two), [50, 50], done=False)
    finished_run(root, config("vanilla", train={"epochs": 3, "seed": 4}, **two), [1, 2])
    return root


def test_calibrated_epochs_come_from_the_closest_group(calibration_dir):
    calibration = read_calibration([calibration_dir])
    assert len(calibration.runs) == 5  # the unfinished run is left out
    # the label (VANILLA on XLM-R base): (10 + 20 + 30) / 3 steps
    assert calibration.epochs(config("vanilla")) == Epochs(20.0, "label", runs=2)
    # no VANILLA run on e5-large: every VANILLA run, (10 + 20 + 30 + 40) / 4
    assert calibration.epochs(config("vanilla", model=E5)) == Epochs(25.0, "method", runs=3)
    # no MONO run: every run with the rule, (10 + 20 + 30 + 6 + 8 + 40) / 6
    assert calibration.epochs(config("mono")) == Epochs(19.0, "all runs", runs=4)
    # SHARED LoRA at its own rule (100 epochs, patience 15): none; the upper bound
    assert calibration.epochs(config("shared-lora", 32)) == Epochs(100, UPPER_BOUND, runs=0)
    # the other rule's one run: (1 + 2) / 2, never more than train.epochs
    assert calibration.epochs(config("mono", train={"epochs": 3})) == Epochs(1.5, "all runs", 1)


def test_calibrated_hours_charge_the_calibrated_epochs(calibration_dir):
    calibration = read_calibration([calibration_dir])
    run = config("vanilla")
    upper, calibrated = estimate(run), estimate(run, calibration)
    assert calibrated.train_utterance_epochs == 52 * 11_514 * 20
    assert calibrated.scored_utterances == 52 * 2_033 * 20 + 53 * 52 * 2_974
    assert calibrated.overhead_seconds == upper.overhead_seconds  # not per epoch
    speed = THROUGHPUT[XLMR]
    saved = 52 * 30 * (11_514 / speed.train_full + 2_033 / speed.score) / 3600
    assert upper.gpu_hours is not None
    assert calibrated.gpu_hours == pytest.approx(upper.gpu_hours - saved)


def test_a_run_directory_calibrates_alone(calibration_dir):
    path = next(path for path in sorted(calibration_dir.iterdir()) if (path / "DONE").exists())
    calibration = read_calibration([path, path])  # the same run twice counts once
    assert len(calibration.runs) == 1


def test_calibrating_from_no_finished_run_names_the_path(tmp_path, calibration_dir):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CalibrationError, match=f"{empty}: no finished run"):
        read_calibration([calibration_dir, empty])
    unfinished = tmp_path / "unfinished"
    finished_run(unfinished, config("vanilla"), [3], done=False)
    with pytest.raises(CalibrationError, match=f"{unfinished}: no finished run"):
        read_calibration([unfinished])
    with pytest.raises(CalibrationError, match=f"{tmp_path / 'missing'}: no such directory"):
        read_calibration([tmp_path / "missing"])


# Replicates and sweep totals.


SMALL = {
    "model": XLMR,
    "method": "vanilla",
    "train": {"epochs": 2},
    "data": {"max_train": 10, "max_dev": 5, "max_test": 4},
}
ORDERS = [["en-US", "de-DE"], ["de-DE", "en-US"], ["en-US", "fr-FR"]]
METHODS = [
    {"method": "vanilla"},
    {"method": "shared-lora", "rank": 32},
    {"method": "mono"},
    {"method": "nonshared-lora", "rank": 32},
    {"method": "multi"},
]


def small_sweep(tmp_path):
    """5 methods x 3 orders; the first two orders are one set of locales."""
    return expand(SMALL, {"order": ORDERS}, METHODS, tmp_path)


def test_order_independent_runs_under_another_order_are_replicates(tmp_path):
    runs = small_sweep(tmp_path)
    assert len(runs) == 15
    by = {(run.method, tuple(run.order)): run.run_id for run in runs}
    first, second = (tuple(order) for order in ORDERS[:2])
    assert replicate_of(runs) == {
        by[method, second]: by[method, first] for method in ("mono", "nonshared-lora", "multi")
    }
    seeds = expand(
        SMALL, {"order": ORDERS[:2], "train.seed": [1, 2]}, [{"method": "mono"}], tmp_path
    )
    assert len(replicate_of(seeds)) == 2  # one per seed: another seed is another run


def test_sweep_totals_with_each_replicate_once(tmp_path):
    runs = small_sweep(tmp_path)
    # every run trains 2 locales x 10 utterances x 2 epochs (MULTI: both in one step)
    priced = estimate_sweep(runs)
    assert priced.upper_bound.to_run.runs == 15
    assert priced.upper_bound.to_run.train_utterance_epochs == 15 * 40
    assert priced.upper_bound.once.runs == 12
    assert priced.upper_bound.once.train_utterance_epochs == 12 * 40
    hours = [estimate(run).gpu_hours for run in runs]
    assert priced.upper_bound.to_run.gpu_hours == pytest.approx(sum(hours))
    assert priced.calibrated is None
    # a replicate done: its original need not run either
    mono = [run.run_id for run in runs if run.method == "mono"]
    done = estimate_sweep(runs, done={mono[1]})
    assert (done.upper_bound.to_run.runs, done.upper_bound.once.runs) == (14, 11)
    packed = estimate_sweep(runs, packing=Packing(runs_per_gpu=4, speedup=2.5))
    assert packed.upper_bound.to_run.gpu_hours == pytest.approx(
        priced.upper_bound.to_run.gpu_hours / 2.5
    )
    with pytest.raises(ValueError, match="speedup from 1 to K"):
        Packing(runs_per_gpu=2, speedup=3.0)


def test_grouped_lora_runs_divide_their_own_hours_only(tmp_path):
    runs = small_sweep(tmp_path)
    priced = estimate_sweep(runs)
    grouped = estimate_sweep(runs, grouping=Grouping(size=8, speedup=4.0))
    # The SHARED LoRA runs of the 3 orders share one encoder: one group. VANILLA, MONO,
    # MULTI (full fine-tuning) and NON-SHARED LoRA (an adapter per locale) train alone.
    lora = {run.run_id for run in runs if run.method == "shared-lora"}
    assert grouped.upper_bound.to_run.grouped_runs == len(lora) == 3
    costs = priced.upper_bound.costs
    saved = sum(costs[run_id].gpu_hours for run_id in lora) * (1 - 1 / 4.0)
    assert grouped.upper_bound.to_run.gpu_hours == pytest.approx(
        priced.upper_bound.to_run.gpu_hours - saved
    )
    # groups of 1 are no groups; and a speedup beyond the group's size is refused
    assert estimate_sweep(runs, grouping=Grouping(size=1)).upper_bound.to_run.grouped_runs == 0
    with pytest.raises(ValueError, match="speedup from 1 to the size"):
        Grouping(size=2, speedup=3.0)


# The dry run's command line.


def invoke(*args: str):
    app = typer.Typer()  # as xlcl.cli registers it
    app.add_typer(sweep_cli.app, name="sweep")
    return CliRunner().invoke(app, [*args])


@pytest.fixture
def sweep_file(tmp_path):
    path = tmp_path / "sweep.yaml"
    base = {**SMALL, "train": FULL}
    path.write_text(
        yaml.safe_dump({"base": base, "grid": {"order": ORDERS}, "variants": METHODS[:3]})
    )
    return path


def test_the_dry_run_shows_both_totals(sweep_file, calibration_dir, tmp_path):
    results = str(tmp_path / "results")
    args = ["sweep", str(sweep_file), "--dry-run", "--results", results]
    calibrate = ["--calibrate", str(calibration_dir)]
    result = invoke(*args, *calibrate, "--json")
    assert result.exit_code == 0, result.output
    total = json.loads(result.stdout)["total"]
    assert total["replicates"] == 1  # MONO under the second order
    upper, calibrated = total["upper_bound"], total["calibrated"]
    # 9 runs of 2 locales x 10 utterances, 50 epochs a step; calibrated by their labels,
    # VANILLA 20 and SHARED LoRA 32 7, and MONO 19 (all runs)
    assert upper["to_run"]["train_utterance_epochs"] == 9 * 20 * 50
    assert calibrated["to_run"]["train_utterance_epochs"] == 3 * 20 * (20 + 7 + 19)
    assert calibrated["once"]["train_utterance_epochs"] == 3 * 20 * (20 + 7) + 2 * 20 * 19
    assert total["calibration_runs"] == 5
    result = invoke(*args, *calibrate)
    text = " ".join(result.stdout.split())
    assert "to run: 9 of 9 runs; 1 of the 9 repeat an order-independent run" in text
    assert f"upper bound (every step all train.epochs): 9 runs, {9 * 20 * 50 / 1e3:.2f}k" in text
    assert (
        f"calibrated (5 finished runs in {calibration_dir}): 9 runs, {3 * 20 * 46 / 1e3:.2f}k"
        in text
    )
    assert "GPU-hours; each replicate once: 8 runs" in text


def test_the_dry_run_counts_the_runs_it_would_group(sweep_file, tmp_path):
    args = ["sweep", str(sweep_file), "--dry-run", "--results", str(tmp_path / "results")]
    text = " ".join(invoke(*args, "--group-lora").stdout.split())
    # the SHARED LoRA runs of the 3 orders share one encoder; no GPU has measured a speedup
    assert "3 of them in groups (--group-lora), priced without a speedup" in text
    assert "in groups" not in " ".join(invoke(*args).stdout.split())
    total = json.loads(invoke(*args, "--group-lora", "--json").stdout)["total"]
    assert total["upper_bound"]["to_run"]["grouped_runs"] == 3


def test_calibrated_counts_show_without_hours(sweep_file, calibration_dir, tmp_path):
    args = ["sweep", str(sweep_file), "--dry-run", "--set", "model=e5-small-offline"]
    result = invoke(*args, "--calibrate", str(calibration_dir), "--results", str(tmp_path / "r"))
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())
    # e5-small VANILLA: its label, 40; SHARED LoRA by method, 7; MONO by all runs, 19
    assert f"{3 * 20 * (40 + 7 + 19) / 1e3:.2f}k utterance-epochs, 9 run(s) of a model" in text


def test_calibrating_from_no_finished_run_is_a_one_line_error(sweep_file, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = invoke("sweep", str(sweep_file), "--dry-run", "--calibrate", str(empty))
    assert result.exit_code == 2
    assert (
        result.stderr
        == f"error: --calibrate {empty}: no finished run under it (a run directory with DONE)\n"
    )
    result = invoke("sweep", str(sweep_file), "--calibrate", str(empty))
    assert result.exit_code == 2
    assert "--calibrate prices a dry run: add --dry-run" in result.stderr
