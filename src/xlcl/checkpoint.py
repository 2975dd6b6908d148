"""Checkpoints: what a killed run needs to continue exactly where it stopped.

One checkpoint per finished step, in ``RUN_DIR/checkpoints/step-NNNN/``:

- ``model.safetensors``: the trainable weights (absent where every step starts from a
  fresh model);
- ``rng.json`` + ``rng.safetensors``: the random states of python, numpy and torch;
- ``extra_state.json`` + ``extra_state.safetensors``: the caller's own state (a method's
  strategy, say), where it passed one;
- ``state.json``: the step, the config hash and every other file's sha256.

With ``checkpoint.every_updates``, also one inside the running step,
``partial-step-NNNN/``, which adds ``train_state.json`` + ``train_state.safetensors``:
optimizer, scheduler, early-stopping state and data position.

Everything but the weights is a *state tree* (`xlcl.state_tree`): JSON, with its
tensors and arrays in a safetensors file. Loading a checkpoint never unpickles anything, so
a run directory from elsewhere cannot run code. Checkpoints of earlier versions of xlcl,
with ``rng.pkl`` and ``train_state.pt``, still load: ``rng.pkl`` through an unpickler that
knows only what RNG states are made of (anything else raises `UnsafeCheckpoint`),
``train_state.pt`` with ``torch.load(weights_only=True)``.

A checkpoint is written in a temporary directory, fsynced, renamed, and only then marked
``COMPLETE``; a directory without the marker, or with a file that does not match its
checksum, is skipped with a warning. The last `keep` step checkpoints are kept.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import random
import shutil
import warnings
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy._core.multiarray import _reconstruct
from safetensors.torch import load_file, save_file
from torch._utils import _rebuild_tensor_v2

from xlcl.atomic import atomic_write, atomic_write_bytes, fsync
from xlcl.state_tree import has_state_tree, read_state_tree, state_tree_files, write_state_tree

CHECKPOINTS = "checkpoints"
COMPLETE = "COMPLETE"
WEIGHTS = "model.safetensors"
STATE = "state.json"
RNG = "rng"  # state trees: NAME.json + NAME.safetensors
TRAIN_STATE = "train_state"
EXTRA_STATE = "extra_state"
LEGACY_RNG = "rng.pkl"  # written by xlcl before state trees
LEGACY_TRAIN_STATE = "train_state.pt"


class CheckpointMismatch(ValueError):
    """A checkpoint written by a different config than the one resuming it."""


class UnsafeCheckpoint(ValueError):
    """A legacy checkpoint file whose pickle asks for more than its kind of state holds."""


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
        """Put python's, numpy's and torch's random generators back as they were.

        Raises `UnsafeCheckpoint` for a legacy ``rng.pkl`` that refers to anything but
        what RNG states are made of: it was not written by xlcl, and could run code.
        """
        if has_state_tree(self.directory, RNG):
            states = read_state_tree(self.directory, RNG)
        else:
            states = _load_legacy_rng(self.directory / LEGACY_RNG)
        random.setstate(states["python"])
        np.random.set_state(states["numpy"])
        torch.set_rng_state(states["torch"])

    def state(self) -> dict[str, Any]:
        """The state passed as `state` when the checkpoint was saved; empty if none was."""
        if not has_state_tree(self.directory, EXTRA_STATE):
            return {}
        state: dict[str, Any] = read_state_tree(self.directory, EXTRA_STATE)
        return state


@dataclass(frozen=True)
class PartialCheckpoint(Checkpoint):
    """A checkpoint inside step `step`: weights plus the state of the step's training."""

    def train_state(self) -> dict[str, Any]:
        """Optimizer, scheduler, early-stopping and data-position state (see `TrainState`).

        Tensors come back on the device they were saved from.
        """
        if has_state_tree(self.directory, TRAIN_STATE):
            state: dict[str, Any] = read_state_tree(self.directory, TRAIN_STATE)
            return state
        path = self.directory / LEGACY_TRAIN_STATE
        try:
            state = torch.load(path, weights_only=True)
        except pickle.UnpicklingError as error:
            raise UnsafeCheckpoint(f"{path}: refused by torch's weights-only loader") from error
        return state


def save_checkpoint(
    run_dir: Path,
    step: int,
    weights: Mapping[str, torch.Tensor] | None,
    config_hash: str,
    keep: int,
    *,
    state: Mapping[str, Any] | None = None,
) -> Path:
    """Write the checkpoint of finished step `step` atomically; prune old ones.

    `state`, a state tree (`xlcl.state_tree`), comes back from `Checkpoint.state`.
    """
    parent = run_dir / CHECKPOINTS
    final = _write(parent, f"step-{step:04d}", step, weights, config_hash, None, state)
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
    *,
    state: Mapping[str, Any] | None = None,
) -> Path:
    """Write a checkpoint inside step `step` (weights and the training state) atomically.

    `train_state` and `state` are state trees (`xlcl.state_tree`); they come back
    from `PartialCheckpoint.train_state` and `Checkpoint.state`.
    """
    parent = run_dir / CHECKPOINTS
    final = _write(
        parent, f"partial-step-{step:04d}", step, weights, config_hash, train_state, state
    )
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
    state: Mapping[str, Any] | None,
) -> Path:
    parent.mkdir(parents=True, exist_ok=True)
    final = parent / name
    temporary = parent / f".{name}.tmp"
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir()
    if weights is not None:
        tensors = {key: tensor.detach().cpu().contiguous() for key, tensor in weights.items()}
        atomic_write(temporary / WEIGHTS, lambda path: save_file(tensors, path))
    if train_state is not None:
        write_state_tree(temporary, TRAIN_STATE, train_state)
    if state is not None:
        write_state_tree(temporary, EXTRA_STATE, dict(state))
    rng = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    write_state_tree(temporary, RNG, rng)
    checksums = {path.name: _sha256(path) for path in temporary.iterdir()}
    metadata = {"step": step, "config_hash": config_hash, "sha256": checksums}
    atomic_write_bytes(temporary / STATE, (json.dumps(metadata, indent=2) + "\n").encode())
    atomic_write_bytes(temporary / COMPLETE, b"")  # not in the checksums: it marks them written
    # A directory cannot replace another in one rename: the old one steps aside first and
    # is removed only once the new one is in place, so a kill at any moment leaves one
    # complete checkpoint of this name (`_with_set_aside` finds the old one).
    aside = _set_aside(final)
    shutil.rmtree(aside, ignore_errors=True)
    if final.exists():
        os.replace(final, aside)
    os.replace(temporary, final)
    fsync(parent)
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
    if not (set(state_tree_files(RNG)) <= checksums.keys() or LEGACY_RNG in checksums):
        return "the RNG state is missing"
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


# Legacy checkpoints -----------------------------------------------------------------------


def _load_legacy_rng(path: Path) -> dict[str, Any]:
    with open(path, "rb") as file:
        states: dict[str, Any] = _LegacyRngUnpickler(file, path).load()
    return states


def _load_storage(data: bytes) -> Any:
    # What torch.storage._load_from_bytes does, without its torch.load(weights_only=False).
    return torch.load(io.BytesIO(data), weights_only=True)


def _legacy_rng_globals() -> dict[tuple[str, str], Callable[..., Any]]:
    """The globals a pickle of ``{"python": ..., "numpy": ..., "torch": ...}`` refers to."""
    return {
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,  # as numpy 1 named it
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
        ("torch.storage", "_load_from_bytes"): _load_storage,
        ("collections", "OrderedDict"): OrderedDict,  # a tensor's (empty) backward hooks
    }


class _LegacyRngUnpickler(pickle.Unpickler):
    """Reads a legacy ``rng.pkl``, refusing every global an RNG state does not need."""

    def __init__(self, file: io.BufferedReader, path: Path) -> None:
        super().__init__(file)
        self.path = path
        self.allowed = _legacy_rng_globals()

    def find_class(self, module: str, name: str) -> Any:
        found = self.allowed.get((module, name))
        if found is None:
            raise UnsafeCheckpoint(
                f"{self.path} refers to {module}.{name}, which no RNG state holds: it was "
                "not written by xlcl and could run code, so it is not loaded (remove the "
                "checkpoint to start the run over)"
            )
        return found
