"""Experience replay: utterances of earlier locales are trained on again in later steps.

After a locale's step, `mem_size` of its training utterances are drawn (without
replacement, from the strategy's own generator) into the memory; a locale with fewer keeps
them all, with a warning. Every later step replays the whole memory, by its ``policy``:

- ``mixed`` (the default): the memory joins the step's own data, shuffled into the same
  batches;
- ``interleaved`` (M'hamdi et al. 2023): the step trains on its own data alone, and after
  every ``interval``-th update takes one extra update on a batch of 16 memory utterances
  (`xlcl.strategies.Interleaved`: drawn from a generator seeded by the step's seed and the
  update's number, so a run resumed inside a step draws the same; the learning-rate
  schedule does not count the extra updates).

The dev set, and so early stopping, stays the current locale's. ``mem_size: 0`` keeps
nothing and is the plain method, bit for bit, under either policy.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field, ValidationInfo, field_validator

from xlcl.strategies import (
    Feature,
    Interleaved,
    StepContext,
    StepPlan,
    Strategy,
    StrategyCost,
    StrategySettings,
)

INTERLEAVED_BATCH = 16  # memory utterances in each interleaved update


class ReplaySettings(StrategySettings):
    """Settings of `Replay`.

    ``policy`` and ``interval`` came after the first replay runs: at their defaults they
    stay out of the resolved config, so those runs keep their ids.
    """

    left_out_at_default: ClassVar[frozenset[str]] = frozenset({"policy", "interval"})

    mem_size: int = Field(100, ge=0, description="utterances kept per earlier locale; 0 = off")
    policy: Literal["mixed", "interleaved"] = Field(
        "mixed",
        description="mixed: the memory joins the batches; interleaved: extra memory updates",
    )
    interval: int = Field(
        100, ge=1, description="interleaved: one memory update after every this many updates"
    )

    @field_validator("interval")
    @classmethod
    def _interval_is_interleaved_only(cls, interval: int, info: ValidationInfo) -> int:
        default = cls.model_fields["interval"].default
        if info.data.get("policy") == "mixed" and interval != default:
            raise ValueError(f"applies to policy interleaved only; leave it at {default} for mixed")
        return interval


class Replay(Strategy):
    """Experience replay with a fixed number of utterances kept per earlier locale."""

    Settings = ReplaySettings
    # Mixed changes no loss and adds no device work; its memory changes only in
    # `after_step`. Interleaved takes extra eager updates between the recorded ones: not
    # cuda_graphs (`supported_features`).
    features = frozenset({Feature.CUDA_GRAPHS, Feature.COMPILE, Feature.IN_STEP_CHECKPOINTS})
    schedules = frozenset({"sequential"})

    def __init__(self, settings: ReplaySettings) -> None:
        super().__init__(settings)
        self.mem_size = settings.mem_size
        self.policy = settings.policy
        self.interval = settings.interval
        self.memory: dict[str, np.ndarray] = {}  # locale -> indices into its train split

    @classmethod
    def cost(
        cls,
        settings: StrategySettings,
        *,
        trainable: int,
        head: int,
        train_sizes: Mapping[str, int],
    ) -> StrategyCost:
        """The utterances the last step replays: ``min(mem_size, size)`` of each earlier locale."""
        assert isinstance(settings, ReplaySettings)
        return StrategyCost(memory_utterances=memory_utterances(settings.mem_size, train_sizes))

    @classmethod
    def supported_features(cls, settings: StrategySettings) -> frozenset[Feature]:
        """`features`, less ``cuda_graphs`` for the interleaved policy."""
        assert isinstance(settings, ReplaySettings)
        if settings.policy == "interleaved":
            return cls.features - {Feature.CUDA_GRAPHS}
        return cls.features

    def before_step(self, ctx: StepContext, model: torch.nn.Module) -> StepPlan | None:
        """Replay every earlier locale's kept utterances, as the policy says."""
        replayed = tuple(
            ctx.train_splits[locale].subset(self.memory[locale])
            for locale in ctx.earlier
            if len(self.memory.get(locale, ())) > 0
        )
        if not replayed:
            return None
        if self.policy == "interleaved":
            return StepPlan(interleaved=Interleaved(replayed, self.interval, INTERLEAVED_BATCH))
        return StepPlan(extra_train=replayed)

    def after_step(self, ctx: StepContext, model: torch.nn.Module) -> None:
        """Keep `mem_size` utterances of the locale(s) just trained."""
        self.memory.update(kept_utterances(ctx, self.mem_size, "replay"))

    def state_dict(self) -> dict[str, Any]:
        """The memory: each earlier locale's kept utterance indices."""
        return {"memory": {locale: kept.copy() for locale, kept in self.memory.items()}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the memory of `state_dict`."""
        self.memory = {
            str(locale): np.asarray(kept, dtype=np.int64)
            for locale, kept in state["memory"].items()
        }


def kept_utterances(ctx: StepContext, mem_size: int, strategy: str) -> dict[str, np.ndarray]:
    """`mem_size` sorted indices into each trained locale's train split, drawn from `ctx.rng`.

    A locale with fewer training utterances keeps them all, and a warning names it.
    """
    kept = {}
    for locale in ctx.locales:
        size = len(ctx.train_splits[locale])
        if mem_size > size:
            warnings.warn(
                f"{strategy}: mem_size {mem_size} is more than the {size} training utterances "
                f"of {locale}; keeping all {size}",
                stacklevel=2,
            )
        drawn = ctx.rng.choice(size, size=min(mem_size, size), replace=False)
        kept[locale] = np.sort(drawn)
    return kept


def memory_utterances(mem_size: int, train_sizes: Mapping[str, int]) -> int:
    """Utterances a memory of `mem_size` per locale holds at the last of `train_sizes`' locales
    (every earlier locale's, capped at its size)."""
    sizes = list(train_sizes.values())
    return sum(min(mem_size, size) for size in sizes[:-1])
