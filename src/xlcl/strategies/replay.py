"""Experience replay: utterances of earlier locales join the training batches of later ones.

After a locale's step, `mem_size` of its training utterances are drawn (without
replacement, from the strategy's own generator) into the memory; every later step trains
on its own locale's data plus the whole memory, shuffled into the same batches. The dev
set, and so early stopping, stays the current locale's. ``mem_size: 0`` keeps nothing and
is the plain method, bit for bit.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from pydantic import Field

from xlcl.strategies import Feature, StepContext, StepPlan, Strategy, StrategySettings


class ReplaySettings(StrategySettings):
    """Settings of `Replay`."""

    mem_size: int = Field(100, ge=0, description="utterances kept per earlier locale; 0 = off")


class Replay(Strategy):
    """Experience replay with a fixed number of utterances kept per earlier locale."""

    Settings = ReplaySettings
    features = frozenset({Feature.CUDA_GRAPHS, Feature.COMPILE, Feature.IN_STEP_CHECKPOINTS})
    schedules = frozenset({"sequential"})

    def __init__(self, settings: ReplaySettings) -> None:
        super().__init__(settings)
        self.mem_size = settings.mem_size
        self.memory: dict[str, np.ndarray] = {}  # locale -> indices into its train split

    def before_step(self, ctx: StepContext, model: torch.nn.Module) -> StepPlan | None:
        """Replay every earlier locale's kept utterances in this step's batches."""
        replayed = tuple(
            ctx.train_splits[locale].subset(self.memory[locale])
            for locale in ctx.earlier
            if len(self.memory.get(locale, ())) > 0
        )
        return StepPlan(extra_train=replayed) if replayed else None

    def after_step(self, ctx: StepContext, model: torch.nn.Module) -> None:
        """Keep `mem_size` utterances of the locale(s) just trained."""
        for locale in ctx.locales:
            size = len(ctx.train_splits[locale])
            kept = ctx.rng.choice(size, size=min(self.mem_size, size), replace=False)
            self.memory[locale] = np.sort(kept)

    def state_dict(self) -> dict[str, Any]:
        """The memory: each earlier locale's kept utterance indices."""
        return {"memory": {locale: kept.copy() for locale, kept in self.memory.items()}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the memory of `state_dict`."""
        self.memory = {
            str(locale): np.asarray(kept, dtype=np.int64)
            for locale, kept in state["memory"].items()
        }
