"""A learning rate that shrinks from step to step: later locales overwrite less.

In the family of LR ADJUST (Winata et al., 2023, "Overcoming Catastrophic Forgetting in
Massively Multilingual Continual Learning"), which lowers the learning rate as languages
arrive. Its exact rule was not available to us, so this is a documented geometric decay:
step ``s`` trains at ``learning_rate · factor^(s-1)`` (the head's rate too, when set), the
first locale at the configured rate. ``factor: 1`` is the plain method, bit for bit.
See docs/remedies.md.
"""

from __future__ import annotations

import torch
from pydantic import Field

from xlcl.strategies import Feature, StepContext, StepPlan, Strategy, StrategySettings


class LRAdjustSettings(StrategySettings):
    """Settings of `LRAdjust`."""

    factor: float = Field(
        0.9, gt=0, le=1, description="each step's rate is the previous step's times this; 1 = off"
    )


class LRAdjust(Strategy):
    """Geometric decay of the learning rate across steps."""

    Settings = LRAdjustSettings
    features = frozenset({Feature.CUDA_GRAPHS, Feature.COMPILE, Feature.IN_STEP_CHECKPOINTS})
    schedules = frozenset({"sequential"})

    def __init__(self, settings: LRAdjustSettings) -> None:
        super().__init__(settings)
        self.factor = settings.factor

    def before_step(self, ctx: StepContext, model: torch.nn.Module) -> StepPlan | None:
        """The step's optimisation settings with both learning rates scaled."""
        if self.factor == 1 or ctx.step == 1:
            return None
        train = ctx.config.train
        scale = self.factor ** (ctx.step - 1)
        head = None if train.head_learning_rate is None else train.head_learning_rate * scale
        return StepPlan(
            train=train.model_copy(
                update={"learning_rate": train.learning_rate * scale, "head_learning_rate": head}
            )
        )
