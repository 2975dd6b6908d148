"""L2 anchoring: each training step is pulled back towards the weights it started from.

An example of a strategy in a package of one's own (docs/extending.md). With the directory
of this file on the path, a run config selects it as ``strategy: {name:
"l2_anchor:L2Anchor", strength: 0.01}``::

    PYTHONPATH=examples/xlcl_l2_anchor xlcl run examples/xlcl_l2_anchor/config.yaml

The loss of every batch gains ``strength / 2 * sum((θ - θ_anchor) ** 2)`` over the
trainable parameters θ, where θ_anchor are their values when the step began: the previous
locale's model in a sequential run, the untrained model in an independent or joint one
(L2-SP). ``strength: 0`` adds nothing and is the plain method, bit for bit.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from pydantic import Field

from xlcl.classifier import trainable_parameters
from xlcl.encode import Batch
from xlcl.strategies import Feature, StepContext, StepPlan, Strategy, StrategySettings


class L2AnchorSettings(StrategySettings):
    """Settings of `L2Anchor`."""

    strength: float = Field(0.01, ge=0, description="weight of the L2 penalty; 0 = off")


class L2Anchor(Strategy):
    """An L2 penalty on the distance of the trainable weights from the step's start."""

    Settings = L2AnchorSettings
    # cuda_graphs: the penalty is device work only, on anchors that stay the same tensors for
    # the whole step (the engine captures a step's graphs after `before_step`). compile: the
    # compiled model keeps its parameter names and the penalty runs outside it.
    # in_step_checkpoints: the anchors change only in `before_step`, which runs again on the
    # step's starting weights when a run resumes inside the step.
    # Not adapters_together: there one model holds every locale's adapter and `loss_terms`
    # runs once per adapter on it, so a penalty over all trainable parameters would count
    # each adapter's distance once for every adapter.
    features = frozenset({Feature.CUDA_GRAPHS, Feature.COMPILE, Feature.IN_STEP_CHECKPOINTS})

    def __init__(self, settings: L2AnchorSettings) -> None:
        super().__init__(settings)
        self.strength = settings.strength
        self.anchors: dict[str, torch.Tensor] = {}  # parameter name -> value at the step's start

    def before_step(self, ctx: StepContext, model: torch.nn.Module) -> StepPlan | None:
        """Record the trainable weights as this step's anchors; the step itself is unchanged."""
        if self.strength > 0:
            self.anchors = {
                name: parameter.detach().clone() for name, parameter in trainable_parameters(model)
            }
        return None

    def loss_terms(self, model: torch.nn.Module, batch: Batch, outputs: Any) -> torch.Tensor | None:
        """``strength / 2 * sum((θ - θ_anchor) ** 2)`` over the trainable parameters."""
        if self.strength == 0:
            return None
        squares = [
            (parameter - self.anchors[name]).pow(2).sum()
            for name, parameter in trainable_parameters(model)
        ]
        return self.strength / 2 * torch.stack(squares).sum()

    def state_dict(self) -> dict[str, Any]:
        """The anchors: one tensor per trainable parameter, on the model's device."""
        return {"anchors": dict(self.anchors)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the anchors of `state_dict`."""
        self.anchors = {str(name): anchor for name, anchor in state["anchors"].items()}
