"""LoRA runs trained as one group over one encoder equal the same runs trained alone.

A group of three SHARED LoRA runs (different orders, ranks, rates and so early-stopping
points) and a MULTI LoRA run, on a tiny encoder without dropout in fp32: the score
tables, curves, adapters and checkpoints must be those of the runs alone (rtol 1e-5), and
a mutation of the group's routing or of its step bookkeeping must break that equality.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from safetensors.torch import load_file
from typer.testing import CliRunner

import xlcl.protocol
import xlcl.schedules.grouped
from massive_fixture import write_massive_dir
from tiny_models import save_tiny_model
from xlcl.checkpoint import latest_checkpoint
from xlcl.cli import app
from xlcl.config import ConfigError, validate_config
from xlcl.protocol import run
from xlcl.schedules.grouped import GroupRunsFailed, run_group
from xlcl.schedules.grouping import form_groups, why_not_grouped
from xlcl.store import DONE
from xlcl.together import AdapterRouter, GroupGraphs

# Every utterance is cut to its first 12 subwords (the fixture's en-US and de-DE utterances
# have 19 or more under the tiny tokenizer): the group's batches then need no padding, and
# a run's rows are computed as alone. With padding, each width rounds a little differently,
# and Adam, dividing each gradient by its own scale, makes that drift over many updates
# (up to 2.5e-4 of a tensor's norm was measured on this tiny model); tests/test_together.py
# checks the padded path at rtol 1e-4.
TRAIN = {
    "epochs": 8,
    "patience": 2,
    "batch_size": 4,
    "warmup_ratio": 0.0,
    "head_learning_rate": 0.1,
    "max_length": 12,
}
MEMBERS = [
    # method, rank, alpha, learning rate, order
    ("shared-lora", 4, 8, 5e-3, ["en-US", "de-DE"]),
    ("shared-lora", 8, 8, 2e-3, ["de-DE", "en-US"]),
    ("shared-lora", 2, 4, 5e-3, ["en-US", "de-DE"]),
    ("multi", 4, 4, 5e-3, ["de-DE", "en-US"]),
]
RTOL, ATOL = 1e-5, 1e-6
runner = CliRunner()


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """‖actual − expected‖ / ‖expected‖: a weight tensor's error relative to its size.

    Adam divides each gradient by its own running scale, so the rounding of a shared
    batch's padding moves a weight whose gradients are near 0 by as much as any other;
    element by element, such weights differ by more than rtol of their own tiny values.
    """
    return float((actual - expected).norm() / expected.norm().clamp_min(1e-12))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    # Dropout off in the encoder (and LoRA's below): equal results need equal masks.
    model = save_tiny_model(
        tmp_path_factory.mktemp("tiny-no-dropout"),
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    return model, write_massive_dir(tmp_path_factory.mktemp("massive"))


def configs(setup, output: Path, members=MEMBERS, train=None, **extra):
    model, massive = setup
    return [
        validate_config(
            {
                "model": str(model),
                "method": method,
                "rank": rank,
                "order": order,
                "data": {"source": str(massive)},
                "lora": {"alpha": alpha, "dropout": 0.0},
                "train": {**TRAIN, "learning_rate": rate, "threads": 1, **(train or {})},
                "output_dir": str(output),
                **extra,
            }
        )
        for method, rank, alpha, rate, order in members
    ]


@pytest.fixture(scope="module")
def alone(setup, tmp_path_factory):
    output = tmp_path_factory.mktemp("alone")
    return [run(config) for config in configs(setup, output)]


def differences(reference: Path, got: Path) -> list[str]:
    """Where run directory `got` differs from `reference` beyond the tolerance."""
    found = []
    cells = ["step", "trained_locale", "eval_locale", "f1", "precision", "recall", "n_pred"]
    scores = [pd.read_parquet(d / "scores.parquet")[cells] for d in (reference, got)]
    try:
        pd.testing.assert_frame_equal(*scores, check_exact=False, rtol=RTOL, atol=ATOL)
    except AssertionError as error:
        found.append(f"scores: {str(error).splitlines()[0]}")
    columns = ["step", "epoch", "train_loss", "dev_score", "learning_rate"]
    curves = [pd.read_parquet(d / "curves.parquet")[columns] for d in (reference, got)]
    try:
        pd.testing.assert_frame_equal(*curves, check_exact=False, rtol=RTOL, atol=ATOL)
    except AssertionError as error:
        found.append(f"curves: {str(error).splitlines()[0]}")
    # Adapters and checkpoints' weights. Not the checkpoints' torch generator states: a
    # group draws from one generator for all its runs (dropout masks; none here).
    weights = sorted(p.relative_to(reference) for p in reference.rglob("*.safetensors"))
    weights = [path for path in weights if path.name != "rng.safetensors"]
    if weights != sorted(
        p.relative_to(got) for p in got.rglob("*.safetensors") if p.name != "rng.safetensors"
    ):
        return [*found, "weight files"]
    for path in weights:
        expected, actual = load_file(reference / path), load_file(got / path)
        if expected.keys() != actual.keys():
            found.append(f"{path}: tensor names")
            continue
        for name, tensor in expected.items():
            error = relative_error(actual[name], tensor)
            if error > RTOL:
                found.append(f"{path}: {name} (relative error {error:.1e})")
    return found


def test_a_group_gives_each_run_the_results_it_has_alone(setup, alone, tmp_path, monkeypatch):
    reads = []
    read_and_encode = xlcl.protocol._read_and_encode
    monkeypatch.setattr(
        xlcl.protocol,
        "_read_and_encode",
        lambda *args: reads.append(args[0].run_id) or read_and_encode(*args),
    )
    grouped = run_group(configs(setup, tmp_path))
    assert len(reads) == 1  # the four runs share their locales: the data is read once
    assert [d.name for d in grouped] == [d.name for d in alone]  # the same run ids
    for reference, got in zip(alone, grouped, strict=True):
        assert (got / DONE).is_file()
        assert differences(reference, got) == []
        # the comparison has teeth: every cell scored, and the runs really trained
        scores = pd.read_parquet(got / "scores.parquet")
        assert scores["f1"].notna().all()
        assert (scores.groupby("step")["f1"].mean().diff().dropna() != 0).any()
    # The members stop early at different epochs, so the group's make-up changes as it
    # trains; and the SHARED runs' last checkpoints hold their adapters, named as alone.
    epochs = [tuple(pd.read_parquet(d / "curves.parquet").groupby("step").size()) for d in alone]
    assert len(set(epochs)) > 1
    for reference, got in zip(alone[:3], grouped[:3], strict=True):
        weights = [latest_checkpoint(d, d.name).weights() for d in (reference, got)]
        assert weights[0].keys() == weights[1].keys()
        assert any(".lora_A.default." in name for name in weights[1])
        assert all(relative_error(weights[1][n], w) <= RTOL for n, w in weights[0].items())


def test_a_graphed_group_gives_each_run_the_results_it_has_alone_graphed(
    setup, tmp_path, monkeypatch
):
    # train.cuda_graphs: each pass's full batches, of every member, in one recorded update
    # (GroupGraphs); a CPU runs it eagerly with the graphs' padding, as a run alone does.
    members = [MEMBERS[0], MEMBERS[1], MEMBERS[3]]
    graphs = {"cuda_graphs": True}
    alone = [run(c) for c in configs(setup, tmp_path / "alone", members, train=graphs)]
    passes = []
    update = GroupGraphs.update
    monkeypatch.setattr(
        GroupGraphs,
        "update",
        lambda self, learners, pad_id: (
            passes.append(len(learners)) or update(self, learners, pad_id)
        ),
    )
    grouped = run_group(configs(setup, tmp_path / "group", members, train=graphs))
    assert max(passes) == len(members) and min(passes) < len(members)
    for reference, got in zip(alone, grouped, strict=True):
        assert differences(reference, got) == []


def wrong_scaling(self, layer, x):
    """The router's LoRA forward with the first segment's scaling for every segment."""
    result = layer.base_layer(x)
    segments = self.segments_for(x.shape[0])
    scaling = layer.scaling[segments[0][0]]
    parts = [
        layer.lora_B[name](layer.lora_A[name](x[start:end])) * scaling
        for name, start, end in segments
    ]
    return result + torch.cat(parts)


def next_step_with_the_first_steps_seed(self, model):
    """The member's next learner with its batches drawn as for its first step."""
    learner = original_next_learner(self, model)
    if learner is not None:
        learner.rng = np.random.default_rng(learner.config.seed + 1)
    return learner


original_next_learner = xlcl.schedules.grouped._Member.next_learner


@pytest.mark.parametrize(
    ("target", "name", "mutant"),
    [
        (AdapterRouter, "_lora_forward", wrong_scaling),
        (xlcl.schedules.grouped._Member, "next_learner", next_step_with_the_first_steps_seed),
    ],
)
def test_a_mutated_group_fails_the_equality(
    setup, alone, tmp_path, monkeypatch, target, name, mutant
):
    monkeypatch.setattr(target, name, mutant)
    # Two runs are enough: their LoRA scalings differ, and both have steps after the first.
    grouped = run_group(configs(setup, tmp_path, members=MEMBERS[:2]))
    found = [d for ref, got in zip(alone, grouped, strict=False) for d in differences(ref, got)]
    assert found


def test_a_stopped_group_resumes_each_run_from_its_own_last_step(
    setup, alone, tmp_path, monkeypatch
):
    original = xlcl.schedules.grouped._Member.record_step
    recorded = []

    def stop_at_the_fourth_step(self, model, learner):
        if len(recorded) == 3:
            raise KeyboardInterrupt
        original(self, model, learner)
        recorded.append(self.run.config.run_id)

    monkeypatch.setattr(xlcl.schedules.grouped._Member, "record_step", stop_at_the_fourth_step)
    with pytest.raises(KeyboardInterrupt):
        run_group(configs(setup, tmp_path))
    monkeypatch.undo()
    directories = [tmp_path / d.name for d in alone]
    assert not any((d / DONE).exists() for d in directories[:3])
    # resumed: the three unfinished SHARED runs alone, the rest in a group again
    run(configs(setup, tmp_path)[0])
    run_group(configs(setup, tmp_path))
    for reference, got in zip(alone, directories, strict=True):
        assert differences(reference, got) == []


def test_runs_a_group_cannot_hold_are_refused_or_kept_apart(setup, tmp_path):
    shared, *_, multi = configs(setup, tmp_path)
    vanilla = configs(setup, tmp_path, members=[("vanilla", None, None, 1e-3, ["en-US"])])[0]
    nonshared = configs(setup, tmp_path, members=[("nonshared-lora", 4, 4, 1e-3, ["en-US"])])[0]
    assert why_not_grouped(shared) is None and why_not_grouped(multi) is None
    assert "trains the encoder itself" in why_not_grouped(vanilla)
    assert "fresh adapter per locale" in why_not_grouped(nonshared)
    with pytest.raises(ConfigError, match=f"run {vanilla.run_id} cannot train in a group"):
        run_group([shared, vanilla])
    other_data = configs(setup, tmp_path, data={"source": str(setup[1]), "max_train": 3})[0]
    with pytest.raises(ConfigError, match="differ in the model, data"):
        run_group([shared, other_data])
    groups = form_groups([shared, vanilla, multi, other_data, nonshared], max_size=8)
    assert groups == [[shared, multi], [vanilla], [other_data], [nonshared]]
    graphed = configs(setup, tmp_path, train={"cuda_graphs": True})[0]
    assert why_not_grouped(graphed) is None  # graphs are all or none in a group
    assert form_groups([shared, graphed, multi], max_size=8) == [[shared, multi], [graphed]]
    assert form_groups([shared, multi], max_size=1) == [[shared], [multi]]


def test_a_run_with_a_non_finite_loss_fails_alone_and_the_others_finish(setup, alone, tmp_path):
    # A learning rate of 1e30 overflows the run's weights in its first updates.
    doomed = ("shared-lora", 4, 8, 1e30, ["de-DE", "en-US"])
    good, bad = configs(setup, tmp_path, members=[MEMBERS[0], doomed])
    with pytest.raises(GroupRunsFailed, match=f"run {bad.run_id}: non-finite loss"):
        run_group([good, bad])
    assert differences(alone[0], tmp_path / good.run_id) == []  # finished as it does alone
    assert (tmp_path / good.run_id / DONE).is_file()
    manifest = json.loads((tmp_path / bad.run_id / "manifest.json").read_text())
    assert manifest["status"] == "failed"
    assert manifest["error"].startswith("FloatingPointError: non-finite loss")
    assert not (tmp_path / bad.run_id / DONE).exists()


def test_xlcl_run_group_with_trains_a_group_and_refuses_a_mismatch_in_one_line(setup, tmp_path):
    shared, other, *_ = configs(setup, tmp_path / "runs")
    files = {}
    for name, config in [("a", shared), ("b", other)]:
        files[name] = tmp_path / f"{name}.yaml"
        files[name].write_text(yaml.safe_dump(config.model_dump(mode="json")))
    result = runner.invoke(app, ["run", str(files["a"]), "--group-with", str(files["b"])])
    assert result.exit_code == 0, result.output
    printed = result.stdout.strip().splitlines()[-2:]
    assert printed == [str(tmp_path / "runs" / c.run_id) for c in (shared, other)]
    assert all((Path(line) / DONE).is_file() for line in printed)
    # another precision: not one encoder's runs
    bf16 = tmp_path / "c.yaml"
    bf16.write_text(files["b"].read_text().replace("precision: auto", "precision: bf16"))
    result = runner.invoke(app, ["run", str(files["a"]), "--group-with", str(bf16)])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines[-1].startswith("error: run ") and "cannot train in a group with" in lines[-1]
    assert "differ in the model, data, vocabulary, precision" in lines[-1]
    assert "Traceback" not in result.output
