"""Checkpoints: what a killed run needs to continue exactly where it stopped.

One checkpoint per finished step, in ``RUN_DIR/checkpoints/step-NNNN/``: the trainable
weights (``model.safetensors``; absent where every step starts from a fresh model), the RNG
states of python, numpy and torch, and ``state.json`` with the step, the config hash and
every file's sha256. Optionally also one inside the running step,
``partial-step-NNNN/``, which adds ``train_state.pt``: optimizer, scheduler, early-stopping
state and data position. A checkpoint is written in a temporary directory, fsynced, renamed,
and only then marked ``COMPLETE``; a directory without the marker, or with a file that does
not match its checksum, is skipped with a warning. The last `keep` step checkpoints are kept.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import random
import shutil
import warnings
from collections.abc import Mapping
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
TRAIN_STATE = "train_state.pt"


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


@dataclass(frozen=True)
class PartialCheckpoint(Checkpoint):
    """A checkpoint inside step `step`: weights plus the state of the step's training."""

    def train_state(self) -> dict[str, Any]:
        """Optimizer, scheduler, early-stopping and data-position state (see `TrainState`)."""
        state: dict[str, Any] = torch.load(self.directory / TRAIN_STATE, weights_only=True)
        return state


def save_checkpoint(
    run_dir: Path,
    step: int,
    weights: Mapping[str, torch.Tensor] | None,
    config_hash: str,
    keep: int,
) -> Path:
    """Write the checkpoint of finished step `step` atomically; prune old ones."""
    parent = run_dir / CHECKPOINTS
    final = _write(parent, f"step-{step:04d}", step, weights, config_hash, train_state=None)
    for partial in [*parent.glob("partial-step-*"), *parent.glob(".partial-step-*.old")]:
        shutil.rmtree(partial, ignore_errors=True)
    _prune(parent, keep)
    return final


def save_partial(
    run_dir: Path,
    step: int,
    weights: Mapping[str, torch.Tensor],
    config_hash: str,
    train_state: dict[str, Any],
) -> Path:
    """Write a checkpoint inside step `step` (weights and the training state) atomically."""
    parent = run_dir / CHECKPOINTS
    final = _write(parent, f"partial-step-{step:04d}", step, weights, config_hash, train_state)
    for older in parent.glob("partial-step-*"):
        if older != final:
            shutil.rmtree(older, ignore_errors=True)
    return final


def latest_partial(run_dir: Path, config_hash: str, step: int) -> PartialCheckpoint | None:
    """The complete checkpoint inside step `step`, if the run was stopped during it."""
    directory = _with_set_aside(run_dir / CHECKPOINTS / f"partial-step-{step:04d}")
    if not directory.is_dir():
        return None
    problem = _problem(directory)
    if problem is not None:
        warnings.warn(f"skipping checkpoint {directory}: {problem}", stacklevel=2)
        return None
    _check_config(directory, config_hash)
    return PartialCheckpoint(step, directory)


def _write(
    parent: Path,
    name: str,
    step: int,
    weights: Mapping[str, torch.Tensor] | None,
    config_hash: str,
    train_state: dict[str, Any] | None,
) -> Path:
    parent.mkdir(parents=True, exist_ok=True)
    final = parent / name
    temporary = parent / f".{name}.tmp"
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir()
    if weights is not None:
        tensors = {key: tensor.detach().cpu().contiguous() for key, tensor in weights.items()}
        save_file(tensors, temporary / WEIGHTS)
    if train_state is not None:
        torch.save(train_state, temporary / TRAIN_STATE)
    rng = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    (temporary / RNG).write_bytes(pickle.dumps(rng))
    checksums = {path.name: _sha256(path) for path in temporary.iterdir()}
    state = {"step": step, "config_hash": config_hash, "sha256": checksums}
    (temporary / STATE).write_text(json.dumps(state, indent=2) + "\n")
    (temporary / COMPLETE).write_text("")  # not in the checksums: it marks them written
    for path in temporary.iterdir():
        _fsync(path)
    _fsync(temporary)
    # A directory cannot replace another in one rename: the old one steps aside first and
    # is removed only once the new one is in place, so a kill at any moment leaves one
    # complete checkpoint of this name (`_with_set_aside` finds the old one).
    aside = _set_aside(final)
    shutil.rmtree(aside, ignore_errors=True)
    if final.exists():
        os.replace(final, aside)
    os.replace(temporary, final)
    _fsync(parent)
    shutil.rmtree(aside, ignore_errors=True)
    return final


def _set_aside(final: Path) -> Path:
    return final.parent / f".{final.name}.old"


def _set_aside_name(aside: Path) -> str:
    """The name of the checkpoint `aside` was set aside from (inverse of `_set_aside`)."""
    return aside.name[1:].removesuffix(".old")


def _with_set_aside(directory: Path) -> Path:
    """`directory`, or its set-aside copy when a kill came between the two renames."""
    aside = _set_aside(directory)
    return aside if not directory.exists() and aside.is_dir() else directory


def latest_checkpoint(run_dir: Path, config_hash: str) -> Checkpoint | None:
    """The newest complete checkpoint of `run_dir`, skipping incomplete or corrupt ones."""
    parent = run_dir / CHECKPOINTS
    if not parent.is_dir():
        return None
    names = {directory.name for directory in parent.glob("step-*")}
    names |= {_set_aside_name(aside) for aside in parent.glob(".step-*.old")}
    for name in sorted(names, reverse=True):
        directory = _with_set_aside(parent / name)
        problem = _problem(directory)
        if problem is not None:
            warnings.warn(f"skipping checkpoint {directory}: {problem}", stacklevel=2)
            continue
        step = _check_config(directory, config_hash)
        return Checkpoint(step, directory)
    return None


def _check_config(directory: Path, config_hash: str) -> int:
    state = json.loads((directory / STATE).read_text())
    if state["config_hash"] != config_hash:
        raise CheckpointMismatch(
            f"{directory} was written by config {state['config_hash']}, not {config_hash}"
        )
    return int(state["step"])


def _problem(directory: Path) -> str | None:
    if not (directory / COMPLETE).exists():
        return "not marked complete (the run was killed while writing it)"
    try:
        state = json.loads((directory / STATE).read_text())
        checksums: dict[str, str] = state["sha256"]
        step = int(state["step"])
    except (OSError, ValueError, KeyError) as error:
        return f"unreadable {STATE}: {error}"
    if not directory.name.removesuffix(".old").endswith(f"step-{step:04d}"):
        return f"{STATE} says step {step}"
    if RNG not in checksums:
        return f"{RNG} is missing"
    for name, expected in checksums.items():
        path = directory / name
        if not path.is_file() or _sha256(path) != expected:
            return f"{name} is missing or does not match its checksum"
    return None


def _prune(parent: Path, keep: int) -> None:
    """Keep the newest `keep` complete step checkpoints (set-aside ones count as theirs)."""
    complete = {d.name: d for d in parent.glob("step-*") if (d / COMPLETE).exists()}
    for aside in parent.glob(".step-*.old"):
        complete.setdefault(_set_aside_name(aside), aside)
    for name in sorted(complete)[:-keep]:
        shutil.rmtree(complete[name], ignore_errors=True)


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
