"""The run directory: manifest, score matrix, curves, adapters, and a completion marker.

Every file is replaced atomically (write a temporary file, fsync, rename), and ``DONE`` is
written last, so a directory without it is never a finished run. The layout is documented
in ``docs/run-directory.md``.
"""

from __future__ import annotations

import json
import platform
import subprocess
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from xlcl.atomic import atomic_write, atomic_write_bytes
from xlcl.cell_counts import (
    UTTERANCES,
    CellCounts,
    UtteranceCounts,
    read_cell_counts,
    write_cell_counts,
)
from xlcl.config import ConfigError, RunConfig, validate_config

if TYPE_CHECKING:
    from xlcl.strategies import StrategyCost

MANIFEST = "manifest.json"
SCORES = "scores.parquet"
CURVES = "curves.parquet"
ADAPTERS = "adapters"
VOCABULARY = "vocabulary.json"
DONE = "DONE"

SCORE_COLUMNS = [
    "step",
    "trained_locale",
    "eval_locale",
    "score",
    "f1",
    "precision",
    "recall",
    "n_gold",
    "n_pred",
    "n_sentences",
    "intent_accuracy",
]


@dataclass(frozen=True)
class ScoreCell:
    """One cell of the score matrix: `eval_locale` scored after step `step`.

    `score` is the task's metric (the manifest's ``metric`` names it); the other columns
    are the counts behind it, NaN where the task has no such measure. `utterances`: each
    test utterance's counts (``utterances.npz``), None for a cell not scored or a task
    that keeps none.
    """

    step: int
    trained_locale: str | None
    eval_locale: str
    score: float
    f1: float
    precision: float
    recall: float
    n_gold: int
    n_pred: int
    n_sentences: int
    intent_accuracy: float = float("nan")
    utterances: UtteranceCounts | None = field(default=None, compare=False, repr=False)


def _atomic_parquet(path: Path, frame: pd.DataFrame) -> None:
    atomic_write(path, lambda temporary: frame.to_parquet(temporary, index=False))


def machine() -> dict[str, Any]:
    """The CPU model and torch's thread count: what a CPU run's digits depend on.

    Floating-point reductions differ between CPUs (with or without AMX, say) and between
    thread counts, and training on little data amplifies the difference to a few F1 points.
    A run resumes bit-identically only on the same CPU with the same threads.
    """
    import torch  # here: readers of run directories (query, sweeps) never load torch

    return {"cpu": cpu_model(), "threads": torch.get_num_threads()}


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def package_versions() -> dict[str, str]:
    """Versions of the packages that decide a run's numbers."""
    versions = {"python": platform.python_version()}
    for package in ("xlcl", "torch", "transformers", "peft", "tokenizers", "numpy"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def git_revision() -> str | None:
    """The git commit of the working directory, if it is a repository."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class RunStore:
    """Writes one run's directory as the run progresses."""

    def __init__(self, directory: Path, manifest: dict[str, Any]) -> None:
        self.directory = directory
        self.manifest = manifest
        self._cells: list[dict[str, Any]] = []
        self._curves: list[dict[str, Any]] = []
        self._utterances: list[tuple[int, str, UtteranceCounts]] = []

    @classmethod
    def create(
        cls,
        config: RunConfig,
        order: Iterable[str],
        labels: list[str],
        data_checksum: str,
        device: str,
        metric: str,
    ) -> RunStore:
        """Start a run directory (status ``running``) under ``config.output_dir``."""
        directory = Path(config.output_dir) / config.run_id
        directory.mkdir(parents=True, exist_ok=True)
        for stale in (DONE, SCORES, CURVES, UTTERANCES):
            (directory / stale).unlink(missing_ok=True)
        manifest = {
            "run_id": config.run_id,
            "status": "running",
            "config": config.model_dump(mode="json"),
            "method_label": config.method_spec.label,
            "schedule": config.schedule.name,
            "task": config.task,
            "metric": metric,
            "order": list(order),
            "labels": labels,
            "versions": package_versions(),
            "git_revision": git_revision(),
            "device": device,
            "machine": machine(),
            "seed": config.train.seed,
            "data_checksum": data_checksum,
            "started_at": _now(),
            "finished_at": None,
            "error": None,
            "resumed": [],
        }
        store = cls(directory, manifest)
        store._write_manifest()
        return store

    @classmethod
    def resume(cls, directory: Path, after_step: int) -> RunStore:
        """Reopen a run directory, keeping what was recorded up to step `after_step`."""
        manifest = json.loads((directory / MANIFEST).read_text())
        store = cls(directory, manifest)
        if (directory / SCORES).exists():
            scores = pd.read_parquet(directory / SCORES)
            kept = scores[scores["step"] <= after_step]
            store._cells = [{str(k): v for k, v in row.items()} for row in kept.to_dict("records")]
        if (directory / CURVES).exists():
            curves = pd.read_parquet(directory / CURVES)
            kept = curves[curves["step"] <= after_step]
            store._curves = [{str(k): v for k, v in row.items()} for row in kept.to_dict("records")]
        if (directory / UTTERANCES).exists():
            counts = read_cell_counts(directory / UTTERANCES).up_to(after_step)
            store._utterances = list(counts.cells())
        resumed = {"at": _now(), "after_step": after_step, "machine": machine()}
        manifest["resumed"] = [*manifest.get("resumed", []), resumed]
        manifest.update(status="running", finished_at=None, error=None)
        store._write_manifest()
        return store

    def adapter_dir(self, name: str) -> Path:
        """Where the adapter `name` (``shared``, ``joint`` or a locale) is saved."""
        return self.directory / ADAPTERS / name

    def add_cells(self, cells: Iterable[ScoreCell]) -> None:
        """Append score cells; rewrite ``scores.parquet``, then ``utterances.npz`` where
        cells have per-utterance counts."""
        cells = list(cells)
        self._cells.extend({name: getattr(cell, name) for name in SCORE_COLUMNS} for cell in cells)
        frame = pd.DataFrame(self._cells, columns=SCORE_COLUMNS)
        frame["trained_locale"] = frame["trained_locale"].astype("string")
        _atomic_parquet(self.directory / SCORES, frame)
        counted = [(c.step, c.eval_locale, c.utterances) for c in cells if c.utterances is not None]
        self._utterances.extend(counted)
        if counted:
            counts = CellCounts.from_cells(self._utterances)
            write_cell_counts(self.directory / UTTERANCES, counts)

    def add_curve(self, step: int, trained_locale: str, records: Iterable[Any]) -> None:
        """Append one step's epoch records and rewrite ``curves.parquet``."""
        for record in records:
            self._curves.append({"step": step, "trained_locale": trained_locale, **asdict(record)})
        _atomic_parquet(self.directory / CURVES, pd.DataFrame(self._curves))

    @property
    def score_rows(self) -> list[dict[str, Any]]:
        """The recorded score cells (``scores.parquet``'s rows), in the order recorded."""
        return list(self._cells)

    @property
    def curve_rows(self) -> list[dict[str, Any]]:
        """The recorded epoch records (``curves.parquet``'s rows), in the order recorded."""
        return list(self._curves)

    def note_strategy_cost(self, cost: StrategyCost) -> None:
        """Record the run's ``strategy_cost`` (`xlcl.strategies.StrategyCost`'s fields).

        Written when the first step of a run with a strategy starts; a run without one, and
        a manifest written before the field existed, have none.
        """
        recorded = asdict(cost)
        if self.manifest.get("strategy_cost") != recorded:
            self.manifest["strategy_cost"] = recorded
            self._write_manifest()

    def note_oom_retry(self, step: int, batch_size: int) -> None:
        """Record that step `step` restarted with a smaller batch after running out of memory."""
        retry = {"step": step, "batch_size": batch_size, "at": _now()}
        self.manifest["oom_retries"] = [*self.manifest.get("oom_retries", []), retry]
        self._write_manifest()

    def finish(self) -> None:
        """Mark the run done: manifest first, then the completion marker."""
        self.manifest.update(status="done", finished_at=_now())
        self._write_manifest()
        atomic_write_bytes(self.directory / DONE, b"")

    def fail(self, error: BaseException) -> None:
        """Mark the run failed (or interrupted, for Ctrl-C and termination)."""
        interrupted = isinstance(error, KeyboardInterrupt | SystemExit)
        self.manifest.update(
            status="interrupted" if interrupted else "failed",
            finished_at=_now(),
            error=f"{type(error).__name__}: {error}",
        )
        self._write_manifest()

    def _write_manifest(self) -> None:
        text = json.dumps(self.manifest, indent=2, sort_keys=False) + "\n"
        atomic_write_bytes(self.directory / MANIFEST, text.encode())


def stored_config(directory: Path) -> RunConfig:
    """The resolved config a run directory was started with, stored where it now lies."""
    manifest_path = directory / MANIFEST
    if not manifest_path.is_file():
        raise ConfigError(f"{directory}: not a run directory (no {MANIFEST})")
    manifest = json.loads(manifest_path.read_text())
    raw = {**manifest["config"], "output_dir": str(directory.parent)}
    return validate_config(raw, where=str(manifest_path))


def is_complete(directory: Path) -> bool:
    """Whether `directory` holds a finished run."""
    return (directory / DONE).is_file()
