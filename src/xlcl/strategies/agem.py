"""Averaged gradient episodic memory (A-GEM, Chaudhry et al. 2019): updates that do not raise
the memory's loss.

Select it with ``strategy: {name: agem, mem_size: 100}``. After a locale's step, `mem_size`
of its training utterances are drawn into the memory, as replay's (all of them, with a
warning, when the locale has fewer). A-GEM does not train on
the memory: before every optimizer update of a later step, `sample_size` memory utterances
are drawn and the gradient g_ref of the task's loss on them is computed; when the update's
gradient g points against it (g · g_ref < 0, over all trainable parameters flattened), g is
projected onto the half-space where it does not:

    g ← g − (g · g_ref / g_ref · g_ref) · g_ref

so that, to first order, the update does not raise the memory's average loss. Otherwise g
is kept.

The reference pass runs in eval mode (no dropout), the model's modes put back after it:
A-GEM's paper computes g_ref in training mode, but dropout there would draw masks from
torch's global generator and shift every later training batch's masks, so that the run
would differ from the plain one by more than the projection. It runs at the step's
precision and through `torch.autograd.grad`, so no parameter's ``.grad`` is touched. The
reference utterances are drawn from the strategy's own generator, seeded in `before_step`
from `StepContext.rng`; its state is in `state_dict`.

``mem_size: 0`` keeps nothing and never projects: the plain method, bit for bit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from pydantic import Field

from xlcl.classifier import trainable_parameters
from xlcl.encode import EncodedSplit, collate_batch
from xlcl.evaluate.scoring import mixed_precision
from xlcl.strategies import (
    Feature,
    StepContext,
    StepPlan,
    Strategy,
    StrategyCost,
    StrategySettings,
)
from xlcl.strategies.ewc import model_pad_id
from xlcl.strategies.replay import kept_utterances, memory_utterances
from xlcl.tasks import Task, get_task

Gradients = list[torch.Tensor | None]


class AGEMSettings(StrategySettings):
    """Settings of `AGEM`.

    ``sample_size: 32``: the paper's reference batch is 256 images (its training batch 10);
    Avalanche's plugin requires the size and has no default. 32 is xlcl's default training
    batch (`train.batch_size`), so the reference pass costs about one more training batch's
    forward and backward pass per update; a starting point, not a tuned value.
    """

    mem_size: int = Field(100, ge=0, description="utterances kept per earlier locale; 0 = off")
    sample_size: int = Field(
        32, ge=1, description="memory utterances in each update's reference batch"
    )


class AGEM(Strategy):
    """A-GEM: each update's gradient projected so as not to raise the memory's loss."""

    Settings = AGEMSettings
    # compile: the reference pass calls the model like EWC's Fisher pass (eval mode is one
    # more compiled entry). in_step_checkpoints: the generator moves on within a step, and
    # its state is in `state_dict`, which a checkpoint inside a step keeps and a run resumed
    # there gets back. Not cuda_graphs: `gradients` branches on the host on the sign of
    # g · g_ref. Not adapters_together: g_ref is over all trainable parameters, not per
    # adapter.
    features = frozenset({Feature.COMPILE, Feature.IN_STEP_CHECKPOINTS})
    schedules = frozenset({"sequential"})

    def __init__(self, settings: AGEMSettings) -> None:
        super().__init__(settings)
        self.mem_size = settings.mem_size
        self.sample_size = settings.sample_size
        self.memory: dict[str, np.ndarray] = {}  # locale -> indices into its train split
        self.generator: np.random.Generator | None = None  # None until a step with memory
        self.reference: tuple[EncodedSplit, ...] = ()  # this step's memory, encoded
        self.task: Task | None = None
        self.precision = "fp32"

    @classmethod
    def cost(
        cls,
        settings: StrategySettings,
        *,
        trainable: int,
        head: int,
        train_sizes: Mapping[str, int],
    ) -> StrategyCost:
        """The memory of the last step, as replay's; g_ref lives for one update, not counted."""
        assert isinstance(settings, AGEMSettings)
        return StrategyCost(memory_utterances=memory_utterances(settings.mem_size, train_sizes))

    def before_step(self, ctx: StepContext, model: torch.nn.Module) -> StepPlan | None:
        """Hold this step's memory and seed the generator of its reference batches."""
        self.reference = tuple(
            ctx.train_splits[locale].subset(self.memory[locale])
            for locale in ctx.earlier
            if len(self.memory.get(locale, ())) > 0
        )
        if self.reference:
            self.generator = np.random.default_rng(int(ctx.rng.integers(2**63)))
            self.task = get_task(ctx.config.task)
            self.precision = ctx.config.train.precision
        return None

    def gradients(self, model: torch.nn.Module, gradients: Gradients) -> Gradients | None:
        """`gradients` projected off the memory's reference gradient, or None to keep them."""
        if not self.reference:
            return None
        assert self.generator is not None and self.task is not None, "seeded in before_step"
        total = sum(len(split) for split in self.reference)
        indices = self.generator.choice(total, size=min(self.sample_size, total), replace=False)
        reference = reference_gradients(model, self.reference, indices, self.task, self.precision)
        return project(gradients, reference)

    def after_step(self, ctx: StepContext, model: torch.nn.Module) -> None:
        """Keep `mem_size` utterances of the locale(s) just trained (replay's draw)."""
        self.memory.update(kept_utterances(ctx, self.mem_size, "agem"))

    def state_dict(self) -> dict[str, Any]:
        """The memory's utterance indices and the reference generator's state (or None)."""
        return {
            "memory": {locale: kept.copy() for locale, kept in self.memory.items()},
            "generator": None if self.generator is None else self.generator.bit_generator.state,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the memory and generator of `state_dict`."""
        self.memory = {
            str(locale): np.asarray(kept, dtype=np.int64)
            for locale, kept in state["memory"].items()
        }
        self.generator = None
        if state["generator"] is not None:
            self.generator = np.random.default_rng()
            self.generator.bit_generator.state = dict(state["generator"])


def reference_gradients(
    model: torch.nn.Module,
    memory: Sequence[EncodedSplit],
    indices: np.ndarray,
    task: Task,
    precision: str,
) -> Gradients:
    """∇ of the task's loss on utterances `indices` of the concatenated `memory`.

    One entry per trainable parameter (`trainable_parameters` order), None where the loss
    does not reach it. Eval mode (no dropout) for the pass, the model's modes restored
    after it; no random draw, no ``.grad`` written.
    """
    parameters = [parameter for _, parameter in trainable_parameters(model)]
    device = parameters[0].device
    batch = collate_batch(memory, indices, model_pad_id(model)).to(device)
    modes = {module: module.training for module in model.modules()}
    model.eval()
    try:
        with torch.enable_grad(), mixed_precision(precision, device):
            logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
            loss = task.loss(logits, batch.labels)
        grads = torch.autograd.grad(loss, parameters, allow_unused=True)
    finally:
        for module, training in modes.items():
            module.training = training
    return [None if grad is None else grad.detach() for grad in grads]


def project(gradients: Gradients, reference: Gradients) -> Gradients | None:
    """``g − (g·g_ref / g_ref·g_ref) · g_ref`` when g·g_ref < 0, else None (keep g).

    Dot products are over all parameters flattened; a None gradient counts as zero.
    """
    pairs = [(g, r) for g, r in zip(gradients, reference, strict=True) if g is not None]
    dots = [(g * r).sum() for g, r in pairs if r is not None]
    if not dots:
        return None
    dot = torch.stack(dots).sum()
    if dot.item() >= 0:
        return None
    squared = torch.stack([(r * r).sum() for r in reference if r is not None]).sum()
    scale = dot / squared
    return [
        g if r is None else (-scale * r if g is None else g - scale * r)
        for g, r in zip(gradients, reference, strict=True)
    ]
