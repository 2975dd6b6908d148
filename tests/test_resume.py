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


def raw_config(model: Path, data: Path, output: Path, method: str, rank: int | None) -> dict:
    return {
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
        writing = checkpoints.is_dir() and any(checkpoints.glob(".step-*.tmp"))
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
    first = run(
        validate_config(raw_config(tiny_model, massive_dir, tmp_path / "a", "vanilla", None))
    )
    second = run(
        validate_config(raw_config(tiny_model, massive_dir, tmp_path / "b", "vanilla", None))
    )
    for a, b in zip(frames(first), frames(second), strict=True):
        pd.testing.assert_frame_equal(a, b, check_exact=True)


@pytest.mark.parametrize(("method", "rank"), [("vanilla", None), ("shared-lora", 4)])
def test_a_run_killed_again_and_again_resumes_to_the_same_matrix(
    tiny_model, massive_dir, tmp_path, method, rank
):
    reference = run(
        validate_config(raw_config(tiny_model, massive_dir, tmp_path / "ref", method, rank))
    )
    raw = raw_config(tiny_model, massive_dir, tmp_path / "killed", method, rank)
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
