"""Experiment tracking: a run's curves, score rows and final metrics in TensorBoard, MLflow
or Weights & Biases.

Turn trackers on in the run config (``tracking: [tensorboard, mlflow]``; docs/tracking.md).
A tracker is told about a step once the step is finished (its checkpoint written), from
what the run directory recorded: a resumed run never logs a step twice, and a tracker
never sees a number the run did not keep. A tracker that fails to start or to log is
reported on one warning line and dropped; training never depends on one.

The x axis of every tracked value is the run's *global step*: the training epochs so far,
over all steps. Row 0 of the score matrix is at 0; epoch e of step i at the epochs of
steps 1..i-1 plus e; row i at step i's last epoch; the final metrics at the run's last.
"""

from __future__ import annotations

import logging
import os
import random
import re
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import yaml

from xlcl.config import MlflowSettings, RunConfig, WandbSettings

LOG = logging.getLogger(__name__)
TENSORBOARD_DIR = "tensorboard"  # in the run directory
MLFLOW_DIR = "mlruns"  # the default MLflow file store, in the output directory
WANDB_DIR = "wandb"  # W&B's run files, in the output directory
DEFAULT_GROUP = "xlcl"
RUN_ID_TAG = "xlcl.run_id"
SCORE_MATRIX = "score_matrix"


class Tracker(Protocol):
    """One tracker's session for one run."""

    fresh: bool  # nothing of this run was tracked here before (a resumed run catches up)

    def params(self, run_id: str, config: dict[str, Any]) -> None: ...

    def metrics(self, values: Mapping[str, float], step: int) -> None: ...

    def table(self, name: str, frame: pd.DataFrame, step: int) -> None: ...

    def file(self, path: Path) -> None: ...

    def close(self, failed: bool) -> None: ...


class TensorBoardTracker:
    """Event files in ``<run directory>/tensorboard``; tables and files become text."""

    def __init__(self, config: RunConfig, directory: Path, group: str) -> None:
        from torch.utils.tensorboard import SummaryWriter

        log_dir = directory / TENSORBOARD_DIR
        self.fresh = not log_dir.is_dir()
        self._writer = SummaryWriter(log_dir=str(log_dir))
        self._group = group

    def params(self, run_id: str, config: dict[str, Any]) -> None:
        self._writer.add_text("run_id", run_id)
        self._writer.add_text("group", self._group)
        self._writer.add_text("config", _fenced(yaml.safe_dump(config, sort_keys=False)))

    def metrics(self, values: Mapping[str, float], step: int) -> None:
        for name, value in values.items():
            self._writer.add_scalar(name, value, step)
        self._writer.flush()

    def table(self, name: str, frame: pd.DataFrame, step: int) -> None:
        self._writer.add_text(name, _fenced(frame.to_csv(index=False)), step)

    def file(self, path: Path) -> None:
        self._writer.add_text(path.stem, str(path.resolve()))

    def close(self, failed: bool) -> None:
        self._writer.close()


class MlflowTracker:
    """A run (tagged with the run id) in the experiment `group` of an MLflow store."""

    def __init__(self, settings: MlflowSettings, config: RunConfig, group: str) -> None:
        from mlflow import MlflowClient

        uri = settings.uri
        if uri is None:
            # MLflow 3 refuses file stores unless asked; the default store is one.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            uri = (Path(config.output_dir).resolve() / MLFLOW_DIR).as_uri()
        self._client = MlflowClient(tracking_uri=uri)
        experiment_id = _experiment_id(self._client, group)
        query = f"tags.`{RUN_ID_TAG}` = '{config.run_id}'"
        found = self._client.search_runs([experiment_id], query, max_results=1)
        self.fresh = not found
        if found:
            self._id = found[0].info.run_id
            self._client.update_run(self._id, status="RUNNING")
        else:
            tags = {RUN_ID_TAG: config.run_id}
            run = self._client.create_run(experiment_id, tags=tags, run_name=config.run_id)
            self._id = run.info.run_id

    def params(self, run_id: str, config: dict[str, Any]) -> None:
        from mlflow.entities import Param

        flat = pd.json_normalize(config, sep=".").iloc[0].to_dict()
        params = [Param(str(key), str(value)) for key, value in flat.items()]
        for start in range(0, len(params), 100):  # MLflow's limit per batch
            self._client.log_batch(self._id, params=params[start : start + 100])

    def metrics(self, values: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(name, value, now, step) for name, value in values.items()]
        self._client.log_batch(self._id, metrics=batch)

    def table(self, name: str, frame: pd.DataFrame, step: int) -> None:
        self._client.log_text(self._id, frame.to_csv(index=False), f"{name}.csv")

    def file(self, path: Path) -> None:
        self._client.log_artifact(self._id, str(path))

    def close(self, failed: bool) -> None:
        self._client.set_terminated(self._id, "FAILED" if failed else "FINISHED")


def _experiment_id(client: Any, name: str) -> str:
    """The id of the MLflow experiment `name`, created if new (a sweep's runs, started at
    once, may race to create it: the loser finds the winner's)."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return str(experiment.experiment_id)
    try:
        return str(client.create_experiment(name))
    except Exception:
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return str(experiment.experiment_id)


def wandb_run_dirs(output_dir: Path, run_id: str) -> list[Path]:
    """The W&B run directories of run `run_id`, oldest first. Each attempt of a resumed run
    writes its own, and W&B appends ``-1``, ``-2``... to a name taken in the same second."""
    pattern = re.compile(rf"(?:offline-)?run-(\d{{8}}_\d{{6}})-{re.escape(run_id)}(?:-(\d+))?")
    found = []
    for path in (output_dir / WANDB_DIR).glob(f"*-{run_id}*"):
        if match := pattern.fullmatch(path.name):
            found.append((match.group(1), int(match.group(2) or 0), path))
    return [path for *_, path in sorted(found)]


class WandbTracker:
    """A W&B run (id = the run id) in `group`; offline files under ``<output_dir>/wandb``."""

    def __init__(self, settings: WandbSettings, config: RunConfig, group: str) -> None:
        import wandb

        where = Path(config.output_dir)
        where.mkdir(parents=True, exist_ok=True)
        self.fresh = not wandb_run_dirs(where, config.run_id)
        self._run = wandb.init(
            project=settings.project,
            entity=settings.entity,
            group=group,
            id=config.run_id,
            name=config.run_id,
            resume="allow",
            mode=settings.mode,
            dir=str(where),
            settings=wandb.Settings(console="off", x_disable_stats=True, silent=True),
        )

    def params(self, run_id: str, config: dict[str, Any]) -> None:
        self._run.config.update(config, allow_val_change=True)

    def metrics(self, values: Mapping[str, float], step: int) -> None:
        self._run.log(dict(values), step=step)

    def table(self, name: str, frame: pd.DataFrame, step: int) -> None:
        import wandb

        self._run.log({name: wandb.Table(dataframe=frame)}, step=step)

    def file(self, path: Path) -> None:
        self._run.save(str(path), base_path=str(path.parent), policy="now")

    def close(self, failed: bool) -> None:
        self._run.finish(exit_code=1 if failed else 0)


class Tracking:
    """A run's trackers. Each call to a tracker is guarded: a failure is one warning line,
    the tracker is dropped, and the run goes on. Trackers draw nothing from the run's
    Python and NumPy generators."""

    def __init__(self, trackers: dict[str, Tracker]) -> None:
        self._trackers = trackers

    @classmethod
    def start(cls, config: RunConfig, directory: Path) -> Tracking:
        """Start the trackers `config` asks for, for the run in `directory`."""
        group = config.tracking.group or DEFAULT_GROUP
        starters: dict[str, Callable[[], Tracker]] = {
            "tensorboard": lambda: TensorBoardTracker(config, directory, group),
            "mlflow": lambda: MlflowTracker(_settings(config, "mlflow"), config, group),
            "wandb": lambda: WandbTracker(_settings(config, "wandb"), config, group),
        }
        trackers: dict[str, Tracker] = {}
        for name in config.tracking.enabled:
            try:
                with _own_generators():
                    trackers[name] = starters[name]()
            except Exception as error:
                _warn(f"{name} could not start", error)
        return cls(trackers)

    @property
    def names(self) -> list[str]:
        """The trackers still logging."""
        return list(self._trackers)

    def begin(self, config: RunConfig, store: RecordedRun, finished_step: int) -> None:
        """Log the config to trackers new to this run, and steps 0..`finished_step` (a
        resumed run's finished steps) to those only: the others logged them before."""
        fresh = [name for name, tracker in self._trackers.items() if tracker.fresh]
        payload = config.model_dump(mode="json")
        self._each("log the config", lambda t: t.params(config.run_id, payload), fresh)
        for step in range(finished_step + 1):
            self._log_step(store, step, fresh)

    def step_finished(self, store: RecordedRun, step: int) -> None:
        """Log step `step`'s epochs and score row, as `store` recorded them."""
        self._log_step(store, step, self.names)

    def run_finished(self, directory: Path, store: RecordedRun) -> None:
        """Log the finished run's metrics and its score matrix (a table)."""
        if not self._trackers:
            return
        from xlcl.metrics import read_run_dir, summarize, to_square

        try:
            matrix = read_run_dir(directory).matrix
            scalars = summarize(matrix).scalars
        except Exception as error:
            _warn("the final metrics could not be computed", error)
            return
        step = len(store.curve_rows)
        finals = _finite({f"final/{name}": value for name, value in scalars.items()})
        self._each("log the final metrics", lambda t: t.metrics(finals, step))
        square = to_square(matrix)
        self._each("log the score matrix", lambda t: t.table(SCORE_MATRIX, square, step))

    def file(self, path: Path) -> None:
        """Attach a file (a report) to the run."""
        self._each(f"attach {path.name}", lambda t: t.file(path))

    def close(self, failed: bool = False) -> None:
        """End every tracker's session (marked failed when the run failed)."""
        self._each("close", lambda t: t.close(failed))
        self._trackers = {}

    def _log_step(self, store: RecordedRun, step: int, names: list[str]) -> None:
        if not names:
            return
        for global_step, values in step_points(store, step):
            self._each("log metrics", _logs(values, global_step), names)

    def _each(
        self, action: str, call: Callable[[Tracker], object], names: list[str] | None = None
    ) -> None:
        for name in list(self._trackers if names is None else names):
            tracker = self._trackers.get(name)
            if tracker is None:
                continue
            try:
                with _own_generators():
                    call(tracker)
            except Exception as error:
                _warn(f"{name} could not {action}; it is dropped", error)
                del self._trackers[name]


class RecordedRun(Protocol):
    """What a run has recorded (`xlcl.store.RunStore`)."""

    @property
    def score_rows(self) -> list[dict[str, Any]]: ...

    @property
    def curve_rows(self) -> list[dict[str, Any]]: ...


def step_points(store: RecordedRun, step: int) -> list[tuple[int, dict[str, float]]]:
    """Step `step`'s tracked values at their global steps: one point per epoch, then the
    score row's mean over the locales it scored (``row/mean_score``) and its step."""
    curves = store.curve_rows
    before = sum(1 for row in curves if row["step"] < step)
    epochs = [row for row in curves if row["step"] == step]
    points = [
        (
            before + index,
            _finite(
                {
                    "epoch/train_loss": row["train_loss"],
                    "epoch/dev_score": row["dev_score"],
                    "epoch/learning_rate": row["learning_rate"],
                }
            ),
        )
        for index, row in enumerate(epochs, start=1)
    ]
    scores = [row["score"] for row in store.score_rows if row["step"] == step]
    scored = [score for score in scores if not np.isnan(score)]
    if scored:
        row = {"row/mean_score": float(np.mean(scored)), "row/step": float(step)}
        points.append((before + len(epochs), row))
    return points


def attach_report(runs: list[tuple[RunConfig, Path]], report: Path) -> None:
    """Attach the HTML `report` to each finished run whose config has trackers."""
    for config, directory in runs:
        if config.tracking.enabled:
            tracking = Tracking.start(config, directory)
            tracking.file(report)
            tracking.close()


def _logs(values: Mapping[str, float], step: int) -> Callable[[Tracker], None]:
    return lambda tracker: tracker.metrics(values, step)


def _settings(config: RunConfig, name: str) -> Any:
    return config.tracking.enabled[name]


def _finite(values: Mapping[str, Any]) -> dict[str, float]:
    """The values as floats, NaN and infinities left out (not every metric has a value)."""
    return {name: float(value) for name, value in values.items() if np.isfinite(value)}


def _fenced(text: str) -> str:
    return f"```\n{text}```"


def _warn(what: str, error: BaseException) -> None:
    """One warning line: what failed and why (the error's text on one line, shortened)."""
    reason = " ".join(f"{type(error).__name__}: {error}".split())
    if len(reason) > 300:
        reason = reason[:297] + "..."
    if isinstance(error, ImportError):
        reason += "; pip install 'xlcl[track]'"
    LOG.warning("tracking: %s (%s); the run goes on", what, reason)


@contextmanager
def _own_generators() -> Iterator[None]:
    """Put Python's and NumPy's global generators back after a tracker call."""
    python, numpy = random.getstate(), np.random.get_state()
    try:
        yield
    finally:
        random.setstate(python)
        np.random.set_state(numpy)
