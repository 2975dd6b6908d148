"""A killed run resumes exactly; two runs of one config give identical matrices."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from massive_fixture import write_massive_dir
from xlcl.cli import app
from xlcl.config import validate_config
from xlcl.protocol import run
from xlcl.store import DONE

ORDER = ["en-US", "ja-JP", "de-DE"]


def raw_config(
    model: Path, data: Path, output: Path, method: str, rank: int | None, strategy=None
) -> dict:
    extra = {} if strategy is None else {"strategy": strategy}
    return {
        **extra,
        "model": str(model),
        "method": method,
        "rank": rank,
        "order": ORDER,
        "data": {"source": str(data)},
        "train": {"epochs": 3, "patience": 3, "batch_size": 2, "learning_rate": 1e-3},
        "output_dir": str(output),
    }


@pytest.fixture(scope="module")
def massive_dir(tmp_path_factory):
    return write_massive_dir(tmp_path_factory.mktemp("massive"))


def frames(directory: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    scores = pd.read_parquet(directory / "scores.parquet")
    curves = pd.read_parquet(directory / "curves.parquet").drop(columns=["seconds"])
    return scores, curves


def kill_when(
    process: subprocess.Popen, directory: Path, during_checkpoint: bool, delay: float
) -> str | None:
    """SIGKILL `process` while it writes a checkpoint, or `delay` s after it (re)starts work.

    Returns what the kill interrupted, or None when the run finished first.
    """
    manifest = directory / "manifest.json"
    before = manifest.stat().st_mtime_ns if manifest.exists() else None
    started = None
    while process.poll() is None:
        checkpoints = directory / "checkpoints"
        writing = checkpoints.is_dir() and any(checkpoints.glob(".*step-*.tmp"))
        if started is None and manifest.exists() and manifest.stat().st_mtime_ns != before:
            started = time.monotonic()
        due = started is not None and time.monotonic() - started > delay
        if (during_checkpoint and writing) or (not during_checkpoint and due):
            process.send_signal(signal.SIGKILL)
            process.wait()
            return "checkpoint write" if during_checkpoint else "work"
        time.sleep(0.001)
    return None


def test_two_runs_of_one_config_give_identical_matrices(tiny_model, massive_dir, tmp_path):
    raw = raw_config(tiny_model, massive_dir, tmp_path / "a", "vanilla", None)
    first = run(validate_config(raw))
    second = run(validate_config({**raw, "output_dir": str(tmp_path / "b")}))
    assert first.name == second.name
    # On the CPU, torch's deterministic-only mode changes nothing either.
    strict = validate_config({**raw, "train": {**raw["train"], "deterministic": True}})
    third = run(strict)
    assert third.name != first.name
    for a, b, c in zip(frames(first), frames(second), frames(third), strict=True):
        pd.testing.assert_frame_equal(a, b, check_exact=True)
        pd.testing.assert_frame_equal(a, c, check_exact=True)


# Built-in remedies with state: replay's memory, EWC's Fisher and anchor, LwF's teacher,
# A-GEM's memory and the generator its reference batches are drawn from.
REMEDIES = [
    {"name": "replay", "mem_size": 4},
    {"name": "ewc", "ewc_lambda": 10.0},
    {"name": "lwf", "alpha": 1.0},
    {"name": "agem", "mem_size": 4, "sample_size": 2},
    {"name": "lr-adjust", "factor": 0.5},  # stateless: the resumed step's rate comes back
]
# O-LoRA's frozen adapters, on a LoRA method (it modifies adapters); both terms on.
OLORA = {"name": "olora", "lambda_orth": 0.5, "lambda_l2": 0.1}
# Replay's interleaved updates: one every 2 updates, on 16 of the memory's up to 20 utterances.
INTERLEAVED = {"name": "replay", "mem_size": 10, "policy": "interleaved", "interval": 2}
# Merge rebuilds every row from the saved adapters; DARE's drops draw from the step's generator.
MERGE = {"name": "merge", "method": "dare-ties-svd"}


@pytest.mark.parametrize(
    ("method", "rank", "strategy"),
    [
        ("vanilla", None, None),
        ("shared-lora", 4, None),
        *(("vanilla", None, remedy) for remedy in REMEDIES),
        ("shared-lora", 4, OLORA),
        ("vanilla", None, INTERLEAVED),
        ("nonshared-lora", 4, MERGE),
    ],
    ids=[
        "vanilla",
        "shared-lora",
        *(remedy["name"] for remedy in REMEDIES),
        "olora",
        "replay-interleaved",
        "merge",
    ],
)
def test_a_run_killed_again_and_again_resumes_to_the_same_matrix(
    tiny_model, massive_dir, tmp_path, method, rank, strategy
):
    reference = run(
        validate_config(
            raw_config(tiny_model, massive_dir, tmp_path / "ref", method, rank, strategy)
        )
    )
    raw = raw_config(tiny_model, massive_dir, tmp_path / "killed", method, rank, strategy)
    raw["checkpoint"] = {"every_updates": 2}  # checkpoints inside steps too
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(raw))
    command = [sys.executable, "-c", "from xlcl.cli import main; main()", "run", str(path)]
    directory = tmp_path / "killed" / validate_config(raw).run_id
    chance = random.Random(1234)
    kills = []
    for attempt in range(4):
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # Alternate: kill while a checkpoint is being written, or at a random moment of work.
        during_checkpoint = attempt % 2 == 0
        kills.append(kill_when(process, directory, during_checkpoint, chance.uniform(0.2, 2.0)))
        if (directory / DONE).exists():
            break
    assert {"checkpoint write", "work"} <= set(kills), f"the run was not interrupted: {kills}"
    finished = subprocess.run(command, capture_output=True, text=True, check=False)
    assert finished.returncode == 0, finished.stderr
    assert (directory / DONE).exists()
    manifest = json.loads((directory / "manifest.json").read_text())
    assert manifest["status"] == "done"
    for a, b in zip(frames(reference), frames(directory), strict=True):
        pd.testing.assert_frame_equal(a, b, check_exact=True)
    # The per-utterance counts too, byte for byte.
    utterances = "utterances.npz"
    assert (directory / utterances).read_bytes() == (reference / utterances).read_bytes()


def test_resume_refuses_another_config_and_shows_the_difference(tiny_model, massive_dir, tmp_path):
    config = validate_config(raw_config(tiny_model, massive_dir, tmp_path, "vanilla", None))
    directory = run(config)
    result = CliRunner().invoke(
        app, ["run", "--resume", str(directory), "--set", "train.learning_rate=0.5"]
    )
    assert result.exit_code == 2
    assert "train.learning_rate: 0.001 -> 0.5" in result.output
    same = CliRunner().invoke(app, ["run", "--resume", str(directory)])
    assert same.exit_code == 0, same.output
    assert str(directory) in same.output


@pytest.mark.parametrize(("method", "rank"), [("vanilla", None), ("nonshared-lora", 4)])
def test_a_run_stopped_inside_a_step_continues_from_there_exactly(
    tiny_model, massive_dir, tmp_path, monkeypatch, method, rank
):
    raw = raw_config(tiny_model, massive_dir, tmp_path / "ref", method, rank)
    raw["checkpoint"] = {"every_updates": 2}
    reference = run(validate_config(raw))
    raw["output_dir"] = str(tmp_path / "stopped")
    config = validate_config(raw)
    assert config.run_id == reference.name  # checkpoint settings do not change a run

    import xlcl.protocol

    saved = []
    original = xlcl.protocol.save_partial

    def save_then_die(run_dir, step, *args, **kwargs):
        path = original(run_dir, step, *args, **kwargs)
        saved.append((step, path.name))
        # 5 updates an epoch (10 utterances, batch 2): saves after updates 2 and 4 of each of
        # 3 epochs, 6 a step; the 8th is inside step 2.
        if len(saved) == 8:
            raise KeyboardInterrupt
        return path

    monkeypatch.setattr(xlcl.protocol, "save_partial", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        run(config)
    directory = tmp_path / "stopped" / config.run_id
    assert json.loads((directory / "manifest.json").read_text())["status"] == "interrupted"
    assert (directory / "checkpoints" / "partial-step-0002").is_dir()
    monkeypatch.setattr(xlcl.protocol, "save_partial", original)
    assert run(config) == directory
    for a, b in zip(frames(reference), frames(directory), strict=True):
        pd.testing.assert_frame_equal(a, b, check_exact=True)
    assert not list((directory / "checkpoints").glob("partial-*"))
