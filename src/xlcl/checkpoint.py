"""Step checkpoints: what a killed run needs to continue exactly where it stopped.

One checkpoint per finished step, in ``RUN_DIR/checkpoints/step-NNNN/``: the trainable
weights (``model.safetensors``; absent where every step starts from a fresh model), the RNG
states of python, numpy and torch, and ``state.json`` with the step, the config hash and the
weights' sha256. A checkpoint is written in a temporary directory, fsynced, renamed, and
only then marked ``COMPLETE``; a directory without the marker, or whose weights do not match
their checksum, is skipped with a warning. The last `keep` checkpoints are kept.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import random
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

CHECKPOINTS = "checkpoints"
COMPLETE = "COMPLETE"
WEIGHTS = "model.safetensors"
STATE = "state.json"
RNG = "rng.pkl"


class CheckpointMismatch(ValueError):
    """A checkpoint written by a different config than the one resuming it."""


@dataclass(frozen=True)
class Checkpoint:
    """A complete, verified checkpoint after step `step`."""

    step: int
    directory: Path

    def weights(self) -> dict[str, torch.Tensor] | None:
        """The saved trainable weights, or None for a run whose steps start fresh."""
        path = self.directory / WEIGHTS
        return load_file(path) if path.exists() else None

    def restore_rng(self) -> None:
        """Put python's, numpy's and torch's random generators back as they were."""
        with open(self.directory / RNG, "rb") as file:
            states = pickle.load(file)
        random.setstate(states["python"])
        np.random.set_state(states["numpy"])
        torch.set_rng_state(states["torch"])


def save_checkpoint(
    run_dir: Path,
    step: int,
    weights: dict[str, torch.Tensor] | None,
    config_hash: str,
    keep: int,
) -> Path:
    """Write the checkpoint of finished step `step` atomically; prune old ones."""
    parent = run_dir / CHECKPOINTS
    parent.mkdir(parents=True, exist_ok=True)
    final = parent / f"step-{step:04d}"
    temporary = parent / f".step-{step:04d}.tmp"
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir()
    state: dict[str, Any] = {"step": step, "config_hash": config_hash, "weights_sha256": None}
    if weights is not None:
        tensors = {name: tensor.detach().cpu().contiguous() for name, tensor in weights.items()}
        save_file(tensors, temporary / WEIGHTS)
        state["weights_sha256"] = _sha256(temporary / WEIGHTS)
    rng = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    (temporary / RNG).write_bytes(pickle.dumps(rng))
    (temporary / STATE).write_text(json.dumps(state, indent=2) + "\n")
    for path in temporary.iterdir():
        _fsync(path)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(temporary, final)
    _fsync(parent)
    (final / COMPLETE).write_text("")
    _fsync(final / COMPLETE)
    _fsync(final)
    _prune(parent, keep)
    return final


def latest_checkpoint(run_dir: Path, config_hash: str) -> Checkpoint | None:
    """The newest complete checkpoint of `run_dir`, skipping incomplete or corrupt ones."""
    parent = run_dir / CHECKPOINTS
    if not parent.is_dir():
        return None
    for directory in sorted(parent.glob("step-*"), reverse=True):
        problem = _problem(directory)
        if problem is not None:
            warnings.warn(f"skipping checkpoint {directory}: {problem}", stacklevel=2)
            continue
        state = json.loads((directory / STATE).read_text())
        if state["config_hash"] != config_hash:
            raise CheckpointMismatch(
                f"{directory} was written by config {state['config_hash']}, not {config_hash}"
            )
        return Checkpoint(int(state["step"]), directory)
    return None


def _problem(directory: Path) -> str | None:
    if not (directory / COMPLETE).exists():
        return "not marked complete (the run was killed while writing it)"
    try:
        state = json.loads((directory / STATE).read_text())
        expected = state["weights_sha256"]
        step = int(state["step"])
    except (OSError, ValueError, KeyError) as error:
        return f"unreadable {STATE}: {error}"
    if directory.name != f"step-{step:04d}":
        return f"{STATE} says step {step}"
    if not (directory / RNG).is_file():
        return f"{RNG} is missing"
    if expected is not None:
        weights = directory / WEIGHTS
        if not weights.is_file() or _sha256(weights) != expected:
            return f"{WEIGHTS} is missing or does not match its checksum"
    return None


def _prune(parent: Path, keep: int) -> None:
    complete = sorted(d for d in parent.glob("step-*") if (d / COMPLETE).exists())
    for directory in complete[:-keep]:
        shutil.rmtree(directory, ignore_errors=True)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
