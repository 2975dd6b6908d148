"""Trackers log what the run directory holds, read back through each library's own reader;
they never change a run's numbers, fail into one warning line, and log no step twice."""

from __future__ import annotations

import json
import logging
import struct
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from massive_fixture import write_massive_dir
from xlcl.cli import app
from xlcl.config import ConfigError, validate_config
from xlcl.metrics import read_run_dir, summarize, to_square
from xlcl.protocol import run
from xlcl.tracking import (
    MLFLOW_DIR,
    RUN_ID_TAG,
    SCORE_MATRIX,
    TENSORBOARD_DIR,
    WANDB_DIR,
    wandb_run_dirs,
)

ORDER = ["en-US", "de-DE"]
ALL = ["tensorboard", "mlflow", "wandb"]


@pytest.fixture(scope="module")
def massive_dir(tmp_path_factory):
    return write_massive_dir(tmp_path_factory.mktemp("massive"), tuple(ORDER))


@pytest.fixture(scope="module", autouse=True)
def offline_wandb(tmp_path_factory):
    """W&B writes files only, into a temporary directory, and says nothing."""
    home = tmp_path_factory.mktemp("wandb-home")
    with pytest.MonkeyPatch.context() as patch:
        for name in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR"):
            patch.setenv(name, str(home))
        patch.setenv("WANDB_MODE", "offline")
        patch.setenv("WANDB_SILENT", "true")
        yield


def raw_config(model: Path, data: Path, output: Path, tracking=None) -> dict:
    extra = {} if tracking is None else {"tracking": tracking}
    return {
        **extra,
        "model": str(model),
        "method": "vanilla",
        "order": ORDER,
        "data": {"source": str(data)},
        "train": {"epochs": 2, "patience": 2, "batch_size": 2, "learning_rate": 1e-3},
        "output_dir": str(output),
    }


def frames(directory: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    scores = pd.read_parquet(directory / "scores.parquet")
    curves = pd.read_parquet(directory / "curves.parquet").drop(columns=["seconds"])
    return scores, curves


def expected_points(directory: Path) -> dict[str, dict[int, float]]:
    """What the trackers must hold, by metric and global step, from the run directory."""
    scores, curves = frames(directory)
    points: dict[str, dict[int, float]] = {}
    for index, row in enumerate(curves.itertuples(), start=1):
        points.setdefault("epoch/train_loss", {})[index] = row.train_loss
        points.setdefault("epoch/dev_score", {})[index] = row.dev_score
        points.setdefault("epoch/learning_rate", {})[index] = row.learning_rate
    for step, row in scores.groupby("step"):
        at = int((curves["step"] <= step).sum())
        points.setdefault("row/mean_score", {})[at] = row["score"].mean()
        points.setdefault("row/step", {})[at] = float(step)
    last = len(curves)
    scalars = summarize(read_run_dir(directory).matrix).scalars
    for name, value in scalars.items():
        if np.isfinite(value):
            points.setdefault(f"final/{name}", {})[last] = value
    return points


@pytest.fixture(scope="module")
def untracked(tiny_model, massive_dir, tmp_path_factory) -> Path:
    return run(validate_config(raw_config(tiny_model, massive_dir, tmp_path_factory.mktemp("a"))))


@pytest.fixture(scope="module")
def tracked(tiny_model, massive_dir, tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("tracked")
    return run(validate_config(raw_config(tiny_model, massive_dir, output, ALL)))


def test_tracking_changes_no_number_of_the_run(tracked, untracked):
    assert tracked.name == untracked.name
    for a, b in zip(frames(tracked), frames(untracked), strict=True):
        pd.testing.assert_frame_equal(a, b, check_exact=True)


# --- reading back through each library's reader ---------------------------------------


def tensorboard_points(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    points: dict[str, list[tuple[int, float]]] = {}
    for events in sorted((run_dir / TENSORBOARD_DIR).glob("events.out.tfevents.*")):
        accumulator = EventAccumulator(str(events), size_guidance={"scalars": 0, "tensors": 0})
        accumulator.Reload()
        for tag in accumulator.Tags()["scalars"]:
            points.setdefault(tag, []).extend((e.step, e.value) for e in accumulator.Scalars(tag))
    return points


def mlflow_run(run_dir: Path):
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=(run_dir.parent / MLFLOW_DIR).as_uri())
    experiment = client.get_experiment_by_name("xlcl")
    found = client.search_runs(
        [experiment.experiment_id], f"tags.`{RUN_ID_TAG}` = '{run_dir.name}'"
    )
    assert len(found) == 1
    return client, found[0]


def mlflow_points(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    client, found = mlflow_run(run_dir)
    return {
        name: [(m.step, m.value) for m in client.get_metric_history(found.info.run_id, name)]
        for name in found.data.metrics
    }


# W&B has no public reader of offline runs: the ``.wandb`` file is a LevelDB-style log
# (32 KiB blocks, 7-byte record headers) of `wandb_internal_pb2.Record` messages, parsed
# here with W&B's own protobuf definitions.
BLOCK, HEADER = 32768, 7
TRACKED_GROUPS = ("epoch", "row", "final")  # not W&B's own keys, nor a table's


def wandb_records(path: Path) -> Iterator[object]:
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    offset, pending = HEADER, b""
    while offset + HEADER <= len(data):
        room = BLOCK - offset % BLOCK
        _, length, kind = struct.unpack("<IHB", data[offset : offset + HEADER])
        if room < HEADER or (length == 0 and kind == 0):
            offset += room
            continue
        pending += data[offset + HEADER : offset + HEADER + length]
        offset += HEADER + length
        if kind in (1, 4):  # a full record, or a split record's last part
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def wandb_points(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    points: dict[str, list[tuple[int, float]]] = {}
    for directory in wandb_run_dirs(run_dir.parent, run_dir.name):
        (path,) = directory.glob("*.wandb")
        for record in wandb_records(path):
            if record.WhichOneof("record_type") != "history":
                continue
            step = record.history.step.num
            for item in record.history.item:
                name = item.key or "/".join(item.nested_key)
                value = json.loads(item.value_json)
                if name.split("/")[0] in TRACKED_GROUPS:
                    points.setdefault(name, []).append((step, float(value)))
    return points


READERS = {"tensorboard": tensorboard_points, "mlflow": mlflow_points, "wandb": wandb_points}


@pytest.mark.parametrize("tracker", ALL)
def test_each_tracker_holds_the_runs_curves_rows_and_final_metrics(tracked, tracker):
    logged = READERS[tracker](tracked)
    expected = expected_points(tracked)
    assert set(logged) == set(expected)
    for name, by_step in expected.items():
        steps = [step for step, _ in logged[name]]
        assert steps == sorted(by_step), name  # every global step once, in order
        values = [value for _, value in logged[name]]
        np.testing.assert_allclose(values, list(by_step.values()), rtol=1e-6, err_msg=name)


def test_mlflow_holds_the_config_and_the_score_matrix(tracked):
    client, found = mlflow_run(tracked)
    manifest = json.loads((tracked / "manifest.json").read_text())
    assert found.data.params["model"] == manifest["config"]["model"]
    assert found.data.params["train.epochs"] == "2"
    assert found.info.status == "FINISHED"
    path = client.download_artifacts(found.info.run_id, f"{SCORE_MATRIX}.csv")
    matrix = pd.read_csv(path)
    expected = to_square(read_run_dir(tracked).matrix)
    pd.testing.assert_frame_equal(matrix, expected, check_dtype=False)


def test_wandb_holds_the_config_and_the_score_matrix(tracked):
    (directory,) = wandb_run_dirs(tracked.parent, tracked.name)
    records = list(wandb_records(next(directory.glob("*.wandb"))))
    configs = [r.config for r in records if r.WhichOneof("record_type") == "config"]
    config = {item.key: json.loads(item.value_json) for c in configs for item in c.update}
    assert config["train"]["epochs"] == 2
    (table,) = directory.glob(f"files/media/table/{SCORE_MATRIX}_*.table.json")
    logged = json.loads(table.read_text())
    expected = to_square(read_run_dir(tracked).matrix)
    assert logged["columns"] == list(expected.columns)
    np.testing.assert_allclose(np.array(logged["data"], dtype=float), expected.to_numpy(float))


# --- resuming: no step logged twice ---------------------------------------------------


class Stop(Exception):
    """Stands for a killed process: raised after step 2's row, before its checkpoint."""


class StopAfterRow:
    def __init__(self, step: int) -> None:
        self.step = step

    def start_step(self, step: int, total: int, locale: str) -> None:
        return None

    def epoch(self, epoch: int, max_epochs: int, dev_score: float, best: float) -> None:
        return None

    def evaluated(self, step: int, mean_score: float) -> None:
        if step == self.step:
            raise Stop

    def message(self, text: str) -> None:
        return None


def test_a_resumed_run_logs_every_step_once(tiny_model, massive_dir, tmp_path, untracked):
    """Attempt 1 stops after row 2 is recorded, before its checkpoint; attempt 2 redoes
    step 2. MLflow, added only for attempt 2, catches up on the steps before it."""
    first = raw_config(tiny_model, massive_dir, tmp_path, ["tensorboard", "wandb"])
    with pytest.raises(Stop):
        run(validate_config(first), StopAfterRow(2))
    directory = run(validate_config({**first, "tracking": ALL}))
    for a, b in zip(frames(directory), frames(untracked), strict=True):
        pd.testing.assert_frame_equal(a, b, check_exact=True)
    expected = expected_points(directory)
    for tracker, read in READERS.items():
        logged = read(directory)
        assert set(logged) == set(expected), tracker
        for name, by_step in expected.items():
            assert [step for step, _ in logged[name]] == sorted(by_step), (tracker, name)
            values = [value for _, value in logged[name]]
            np.testing.assert_allclose(values, list(by_step.values()), rtol=1e-6)
    assert len(wandb_run_dirs(tmp_path, directory.name)) == 2


# --- failures: one warning line, and the run goes on -----------------------------------


def test_trackers_that_fail_are_one_warning_line_each_and_the_run_goes_on(
    tiny_model, massive_dir, tmp_path, untracked, monkeypatch, caplog
):
    from xlcl.tracking import TensorBoardTracker

    def full_disk(self, values, step):
        raise OSError("No space left on device")

    monkeypatch.setitem(sys.modules, "wandb", None)  # not installed
    monkeypatch.setattr(TensorBoardTracker, "metrics", full_disk)
    tracking = {"tensorboard": {}, "mlflow": {"uri": "bogus://nowhere"}, "wandb": {}}
    with caplog.at_level(logging.WARNING, logger="xlcl.tracking"):
        directory = run(validate_config(raw_config(tiny_model, massive_dir, tmp_path, tracking)))
    for a, b in zip(frames(directory), frames(untracked), strict=True):
        pd.testing.assert_frame_equal(a, b, check_exact=True)
    lines = [r.getMessage() for r in caplog.records if r.name == "xlcl.tracking"]
    assert len(lines) == 3, lines
    assert all("\n" not in line and line.startswith("tracking: ") for line in lines)
    by_tracker = {line.split()[1]: line for line in lines}
    assert "could not start" in by_tracker["mlflow"]
    assert "pip install 'xlcl[track]'" in by_tracker["wandb"]
    assert "No space left on device" in by_tracker["tensorboard"]


def test_an_unknown_tracker_is_a_one_line_error_and_writes_nothing(
    tiny_model, massive_dir, tmp_path
):
    raw = raw_config(tiny_model, massive_dir, tmp_path / "runs", ["tensorbord"])
    with pytest.raises(ConfigError, match="did you mean 'tensorboard'"):
        validate_config(raw)
    config = tmp_path / "run.yaml"
    config.write_text(json.dumps({**raw, "tracking": ["mlfow"]}))
    result = CliRunner().invoke(app, ["run", str(config)])
    assert result.exit_code == 2
    (line,) = result.output.strip().splitlines()
    assert "unknown tracker 'mlfow'; did you mean 'mlflow'?" in line
    assert not (tmp_path / "runs").exists()


# --- sweeps and reports -----------------------------------------------------------------


def test_a_sweeps_runs_are_tracked_under_its_name_with_unchanged_ids(tmp_path):
    from xlcl.sweep.spec import load_sweep

    base = {"model": "m", "method": "vanilla", "train": {"epochs": 1}}
    for tracking, name in ((None, "plain"), (["mlflow", "wandb"], "paper-grid")):
        raw = {"base": {**base, **({} if tracking is None else {"tracking": tracking})}}
        raw["grid"] = {"order": [1, 2]}
        (tmp_path / f"{name}.yaml").write_text(json.dumps(raw))
    plain = load_sweep(tmp_path / "plain.yaml", results=tmp_path)
    tracked = load_sweep(tmp_path / "paper-grid.yaml", results=tmp_path)
    assert [c.run_id for c in tracked.runs] == [c.run_id for c in plain.runs]
    assert {c.tracking.group for c in tracked.runs} == {"paper-grid"}
    assert {c.tracking.group for c in plain.runs} == {None}


def test_a_report_is_attached_to_the_tracked_runs(tracked, tmp_path):
    from xlcl.store import stored_config
    from xlcl.tracking import attach_report

    report = tmp_path / "index.html"
    report.write_text("<html>report</html>")
    attach_report([(stored_config(tracked), tracked)], report)
    client, found = mlflow_run(tracked)
    assert [a.path for a in client.list_artifacts(found.info.run_id)] == [
        "index.html",
        f"{SCORE_MATRIX}.csv",
    ]
    assert found.info.status == "FINISHED"
    texts = []
    for events in (tracked / TENSORBOARD_DIR).glob("events.out.tfevents.*"):
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        accumulator = EventAccumulator(str(events), size_guidance={"tensors": 0})
        accumulator.Reload()
        texts += accumulator.Tags()["tensors"]
    assert "index/text_summary" in texts
    # attaching the report resumes the W&B run: a second attempt directory holds it
    attempts = wandb_run_dirs(tracked.parent, tracked.name)
    saved = [path for attempt in attempts for path in attempt.glob("files/index.html")]
    assert [path.read_text() for path in saved] == ["<html>report</html>"]


def test_the_demo_tracks_its_runs_without_changing_their_ids(tmp_path):
    from xlcl.demo import demo_configs

    plain = demo_configs(quick=True, out=tmp_path)
    tracked = demo_configs(quick=True, out=tmp_path, tracking=["tensorboard", "mlflow"])
    assert [c.run_id for _, c in tracked] == [c.run_id for _, c in plain]
    assert all(list(c.tracking.enabled) == ["tensorboard", "mlflow"] for _, c in tracked)


def test_xlcl_run_resume_accepts_a_config_that_differs_only_in_tracking(untracked):
    tracked = CliRunner().invoke(
        app, ["run", "--resume", str(untracked), "--set", "tracking=[mlflow]"]
    )
    assert tracked.exit_code == 0, tracked.output
    assert tracked.output.strip().splitlines()[-1] == str(untracked)
    changed = CliRunner().invoke(app, ["run", "--resume", str(untracked), "--set", "train.seed=7"])
    assert changed.exit_code == 2
    assert "train.seed: 42 -> 7" in changed.output


def test_wandb_run_dirs_finds_every_attempt_oldest_first(tmp_path):
    """A resume in the same second as the first attempt gets W&B's ``-1`` suffix."""
    names = [
        "offline-run-20261201_214718-abc-1",
        "offline-run-20261201_214718-abc",
        "offline-run-20261130_080000-abc",
        "run-20261201_214719-abc",
        "offline-run-20261201_214718-abcd",  # another run's id
        "latest-run",
    ]
    for name in names:
        (tmp_path / WANDB_DIR / name).mkdir(parents=True)
    assert [path.name for path in wandb_run_dirs(tmp_path, "abc")] == [
        "offline-run-20261130_080000-abc",
        "offline-run-20261201_214718-abc",
        "offline-run-20261201_214718-abc-1",
        "run-20261201_214719-abc",
    ]
