"""The extension example of docs/extending.md (`examples/xlcl_l2_anchor`), run as a user would.

Its strategy (`l2_anchor:L2Anchor`) and task (`exact_match:MassiveSlotsExactMatch`) are
found on PYTHONPATH by ``xlcl run``, on the tiny model and the fixture's data.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoTokenizer

import xlcl.protocol
from massive_fixture import write_massive_dir
from xlcl.checkpoint import CHECKPOINTS, Checkpoint
from xlcl.classifier import trainable_parameters
from xlcl.config import ConfigError, LoraSettings, load_config
from xlcl.data import load_massive
from xlcl.encode import encode
from xlcl.evaluate.scoring import predict_words
from xlcl.methods import method
from xlcl.protocol import run
from xlcl.state_tree import read_state_tree, write_state_tree
from xlcl.strategies import StepContext, hook_rng, strategy_class
from xlcl.tasks import task_class

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "xlcl_l2_anchor"
CONFIG = EXAMPLE / "config.yaml"
STRATEGY = "l2_anchor:L2Anchor"
TASK = "exact_match:MassiveSlotsExactMatch"
ORDER = ["en-US", "de-DE"]


@pytest.fixture(scope="module")
def massive_dir(tmp_path_factory):
    return write_massive_dir(tmp_path_factory.mktemp("massive"), tuple(ORDER))


@pytest.fixture
def on_path(monkeypatch):
    """The example's modules importable in this process, as PYTHONPATH makes them for xlcl."""
    monkeypatch.syspath_prepend(str(EXAMPLE))


def tiny_overrides(tiny_model: Path, massive_dir: Path, output: Path) -> list[str]:
    """The example's config shrunk to the tiny model, the fixture's data and 3 epochs."""
    settings = {
        "model": tiny_model,
        "data.source": massive_dir,
        "output_dir": output,
        "order": "[en-US, de-DE]",
        "trim_vocabulary": "false",
        "train.epochs": 3,
        "train.patience": 3,
        "train.batch_size": 2,
        "train.learning_rate": "5.0e-3",
        "train.head_learning_rate": "5.0e-2",
        "train.threads": 1,  # as the cell recomputed below is scored
    }
    return [f"{key}={value}" for key, value in settings.items()]


def run_cli(overrides: list[str]) -> Path:
    """``xlcl run CONFIG --set ...`` in a new process with the example on PYTHONPATH; the
    run directory it prints once the run has finished."""
    path = [str(EXAMPLE), *filter(None, [os.environ.get("PYTHONPATH")])]
    command = [sys.executable, "-c", "from xlcl.cli import main; main()", "run", str(CONFIG)]
    finished = subprocess.run(
        [*command, *(argument for o in overrides for argument in ("--set", o))],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(path)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr
    return Path(finished.stdout.strip().splitlines()[-1])


def frames(directory: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    scores = pd.read_parquet(directory / "scores.parquet")
    curves = pd.read_parquet(directory / "curves.parquet").drop(columns=["seconds"])
    return scores, curves


@pytest.fixture
def torch_threads_restored():
    """Torch's thread count as it was, after a test that sets it (or runs with one thread)."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def example_run(tiny_model, massive_dir, tmp_path_factory) -> Path:
    """The example's config through ``xlcl run``, its strategy at the config's strength."""
    return run_cli(tiny_overrides(tiny_model, massive_dir, tmp_path_factory.mktemp("runs")))


def test_the_example_runs_with_its_strategy_and_task(example_run):
    manifest = json.loads((example_run / "manifest.json").read_text())
    assert manifest["status"] == "done"
    assert manifest["config"]["strategy"] == {"name": STRATEGY, "strength": 0.01}
    assert manifest["task"] == TASK
    assert manifest["metric"] == "utterance exact match"
    scores, _ = frames(example_run)
    assert len(scores) == 3 * len(ORDER) and not scores["score"].isna().any()
    assert scores["score"].between(0, 1).all()
    # A share of the 5 test utterances; span F1 is kept beside it, and is another number.
    assert np.allclose(scores["score"] * 5, np.round(scores["score"] * 5))
    assert (scores["score"] != scores["f1"]).any()


def test_a_cell_is_the_share_of_test_utterances_tagged_exactly_right(
    example_run, tiny_model, massive_dir, on_path, torch_threads_restored
):
    manifest = json.loads((example_run / "manifest.json").read_text())
    labels = manifest["labels"]
    task = task_class(TASK)()
    model = task.build_model(str(tiny_model), labels, method("vanilla"), LoraSettings(), seed=0)
    last = len(ORDER)
    weights = load_file(example_run / CHECKPOINTS / f"step-{last:04d}" / "model.safetensors")
    with torch.no_grad():
        for name, parameter in trainable_parameters(model):
            parameter.copy_(weights[name])
    data = load_massive(massive_dir, ORDER)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    ids = {label: index for index, label in enumerate(labels)}
    scores, _ = frames(example_run)
    # As the run scored: its evaluation batch, precision and thread count.
    scoring = (128, tokenizer.pad_token_id, torch.device("cpu"), "auto")
    torch.set_num_threads(1)
    for locale in ORDER:
        test = encode(data.utterances(locale, "test"), tokenizer, ids, 64)
        predicted = predict_words(model, test, *scoring)
        right = [list(p) == list(g) for p, g in zip(predicted, test.gold, strict=True)]
        cell = scores[(scores["step"] == last) & (scores["eval_locale"] == locale)].iloc[0]
        assert cell["score"] == sum(right) / len(right)
        spans = task_class("massive-slots")().score(model, [test], labels, *scoring)
        assert cell["f1"] == spans.f1


def test_strength_0_is_the_run_without_a_strategy_bit_for_bit(
    example_run, tiny_model, massive_dir, tmp_path
):
    base = tiny_overrides(tiny_model, massive_dir, tmp_path)
    off = run_cli([*base, "strategy.strength=0"])
    plain = run_cli([*base, "strategy=null"])
    assert len({off.name, plain.name, example_run.name}) == 3  # three configs, three runs
    assert json.loads((plain / "manifest.json").read_text())["config"]["strategy"] is None
    for a, b in zip(frames(off), frames(plain), strict=True):
        pd.testing.assert_frame_equal(a, b, check_exact=True)
    # Switched on, the penalty is in the training loss.
    _, curves_on = frames(example_run)
    _, curves_plain = frames(plain)
    assert not np.array_equal(curves_on["train_loss"], curves_plain["train_loss"])


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        (["strategy.strenght=1"], "did you mean 'strategy.strength'?"),
        (["strategy.strength=-1"], "strategy.strength: Input should be greater than or equal to 0"),
        (
            ["method=nonshared-lora", "rank=4", "train.adapters_together=true"],
            "strategy l2_anchor:L2Anchor does not support train.adapters_together",
        ),
    ],
)
def test_the_example_s_settings_and_features_are_checked_when_the_config_loads(
    overrides, error, on_path
):
    with pytest.raises(ConfigError) as refused:
        load_config(CONFIG, overrides)
    assert error in str(refused.value)
    assert "\n" not in str(refused.value)


def context() -> StepContext:
    """A step context; `L2Anchor` reads none of it."""
    return StepContext(1, ("en-US",), (), {}, None, hook_rng(0, 1, "before_step"))  # type: ignore[arg-type]


def two_layer_model() -> torch.nn.Module:
    """A trainable linear layer (weight 1x2, bias 1) beside a frozen one."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(2, 1), torch.nn.Linear(1, 1))
    model[1].requires_grad_(False)
    return model


def test_the_penalty_is_0_at_the_anchor_and_its_gradient_strength_times_the_distance(on_path):
    cls = strategy_class(STRATEGY)
    anchor = cls(cls.Settings(strength=0.5))
    model = two_layer_model()
    start = {name: p.detach().clone() for name, p in trainable_parameters(model)}
    assert anchor.before_step(context(), model) is None
    penalty = anchor.loss_terms(model, None, None)  # type: ignore[arg-type]
    assert penalty is not None and penalty.item() == 0.0
    with torch.no_grad():
        model[0].weight += torch.tensor([[1.0, -2.0]])
        model[0].bias += torch.tensor([3.0])
        model[1].weight += 100.0  # frozen: not anchored, not penalised
    penalty = anchor.loss_terms(model, None, None)  # type: ignore[arg-type]
    assert penalty is not None
    assert penalty.item() == 0.5 / 2 * (1 + 4 + 9)
    penalty.backward()
    assert torch.equal(model[0].weight.grad, torch.tensor([[0.5, -1.0]]))  # 0.5 * (θ - θ₀)
    assert torch.equal(model[0].bias.grad, torch.tensor([1.5]))
    assert model[1].weight.grad is None
    # The anchors are detached copies: the parameters moved, the anchors did not.
    assert all(torch.equal(anchor.anchors[name], value) for name, value in start.items())
    assert not any(value.requires_grad for value in anchor.anchors.values())


def test_strength_0_adds_no_term_and_keeps_no_anchors(on_path):
    cls = strategy_class(STRATEGY)
    off = cls(cls.Settings(strength=0))
    model = two_layer_model()
    assert off.before_step(context(), model) is None
    assert off.loss_terms(model, None, None) is None  # type: ignore[arg-type]
    assert off.state_dict() == {"anchors": {}}


def test_the_anchors_come_back_from_a_checkpoint_s_state_tree(on_path, tmp_path):
    cls = strategy_class(STRATEGY)
    anchor = cls(cls.Settings(strength=0.5))
    model = two_layer_model()
    anchor.before_step(context(), model)
    write_state_tree(tmp_path, "extra_state", {"strategy": anchor.state_dict()})
    restored = cls(cls.Settings(strength=0.5))
    restored.load_state_dict(read_state_tree(tmp_path, "extra_state")["strategy"])
    assert restored.anchors.keys() == anchor.anchors.keys()
    assert all(torch.equal(restored.anchors[k], v) for k, v in anchor.anchors.items())
    with torch.no_grad():
        model[0].bias += 1.0
    assert torch.equal(
        restored.loss_terms(model, None, None),  # type: ignore[arg-type]
        anchor.loss_terms(model, None, None),  # type: ignore[arg-type]
    )


def anchors_and_weights(directory: Path, step: int) -> tuple[dict, dict]:
    checkpoint = Checkpoint(step, directory / CHECKPOINTS / f"step-{step:04d}")
    return checkpoint.state()["strategy"]["anchors"], checkpoint.weights()


def test_a_run_stopped_inside_a_step_resumes_exactly_with_its_anchors(
    tiny_model, massive_dir, tmp_path, monkeypatch, on_path, torch_threads_restored
):
    overrides = tiny_overrides(tiny_model, massive_dir, tmp_path / "ref")
    overrides.append("checkpoint.every_updates=2")
    reference = run(load_config(CONFIG, overrides))
    config = load_config(CONFIG, [*overrides, f"output_dir={tmp_path / 'stopped'}"])
    original = xlcl.protocol.save_partial
    saved = []

    def save_then_stop(run_dir, step, *args, **kwargs):
        path = original(run_dir, step, *args, **kwargs)
        saved.append(step)
        # 5 updates an epoch (10 utterances, batch 2): saves after updates 2 and 4 of each of
        # 3 epochs, 6 a step; the 8th is inside step 2.
        if len(saved) == 8:
            raise KeyboardInterrupt
        return path

    monkeypatch.setattr(xlcl.protocol, "save_partial", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        run(config)
    directory = tmp_path / "stopped" / config.run_id
    assert (directory / CHECKPOINTS / "partial-step-0002").is_dir()
    # Step 1's checkpoint holds the anchors of step 1: the weights step 0 ended with.
    anchors, _ = anchors_and_weights(directory, 1)
    _, start = anchors_and_weights(directory, 0)
    assert anchors.keys() == start.keys()
    assert all(torch.equal(anchors[name], start[name]) for name in start)
    monkeypatch.setattr(xlcl.protocol, "save_partial", original)
    assert run(config) == directory
    manifest = json.loads((directory / "manifest.json").read_text())
    assert [resumed["after_step"] for resumed in manifest["resumed"]] == [1]
    for a, b in zip(frames(reference), frames(directory), strict=True):
        pd.testing.assert_frame_equal(a, b, check_exact=True)
    anchors, _ = anchors_and_weights(directory, 2)
    _, start = anchors_and_weights(directory, 1)
    assert all(torch.equal(anchors[name], start[name]) for name in start)
