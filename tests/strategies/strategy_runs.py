"""What the strategies' run-level tests share: reading a run's tables, stopping a run."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import xlcl.protocol
from xlcl.config import RunConfig


def tables(directory: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A run's score table and curves (without wall-clock seconds): what must match."""
    scores = pd.read_parquet(directory / "scores.parquet")
    curves = pd.read_parquet(directory / "curves.parquet").drop(columns=["seconds"])
    return scores, curves


def interrupted_after_step(monkeypatch: pytest.MonkeyPatch, config: RunConfig, step: int) -> None:
    """Run `config`, stopping it (KeyboardInterrupt) once step `step`'s checkpoint is written."""
    original = xlcl.protocol.save_checkpoint

    def save_then_stop(run_dir, saved_step, *args, **kwargs):  # type: ignore[no-untyped-def]
        path = original(run_dir, saved_step, *args, **kwargs)
        if saved_step == step:
            raise KeyboardInterrupt
        return path

    monkeypatch.setattr(xlcl.protocol, "save_checkpoint", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        xlcl.protocol.run(config)
    monkeypatch.setattr(xlcl.protocol, "save_checkpoint", original)
