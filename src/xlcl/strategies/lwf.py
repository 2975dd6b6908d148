"""Learning without Forgetting (LwF): distil the model as it was before the step into the step.

Select it with ``strategy: {name: lwf, alpha: 1, temperature: 2}``. At the start of every
step after the first, the trainable weights are kept as the teacher; every batch's loss
then gains

    alpha · T² · mean over labelled positions of KL(p_teacher ‖ p_student),
    p = softmax(logits / T) over the class axis,

where T is ``temperature`` and the teacher's logits are the model's on the same batch with
the teacher's weights swapped in (`torch.func.functional_call`, no second model). A
labelled position is one whose label is not -100 (`xlcl.encode.IGNORE`): a word's first
subword for token logits ``(batch, length, classes)``; for sequence logits ``(batch,
classes)`` (``massive-intent``, whose label sits at position 0) an utterance whose
``labels[:, 0]`` is not -100, i.e. every one. Padding, special tokens and later subwords
never count. The T² keeps the gradient's scale independent of T (Hinton et al. 2015).

The teacher runs in eval mode (no dropout), so it draws nothing from torch's generator and
the student's dropout masks are those of the run without LwF; every module's mode is put
back before the student's backward pass.

The first step has no teacher: the model before it has learned nothing (its head is
random), and distilling that would pull the first locale towards noise; as in Li & Hoiem's
setting and Avalanche, distillation starts with the second task.

``alpha: 0`` keeps no teacher and adds nothing: the plain method, bit for bit.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field

from xlcl.classifier import trainable_parameters
from xlcl.encode import IGNORE, Batch
from xlcl.strategies import (
    Feature,
    StepContext,
    StepPlan,
    Strategy,
    StrategyCost,
    StrategySettings,
)


class LwFSettings(StrategySettings):
    """Settings of `LwF`.

    Defaults: ``alpha: 1`` weighs distillation as much as the task's loss (Avalanche's
    default and Li & Hoiem's λ_o = 1); ``temperature: 2`` is Li & Hoiem's T (Avalanche's
    default too).
    """

    alpha: float = Field(1.0, ge=0, description="weight of the distillation term; 0 = off")
    temperature: float = Field(2.0, gt=0, description="softmax temperature T of both models")


class LwF(Strategy):
    """Learning without Forgetting: distillation from the weights the step started from."""

    Settings = LwFSettings
    # compile: the teacher's pass calls the same (compiled) module with other parameters
    # swapped in, and its eval mode is one more compiled entry (on a CPU, a compiled tiny
    # model gave the eager model's term).
    # in_step_checkpoints: the teacher changes only in `before_step`, which runs again on
    # the step's starting weights when a run resumes inside the step.
    # Not cuda_graphs: the teacher's pass switches modules' training mode and swaps
    # parameters on the host at every call, which a recorded graph would not replay.
    # Not adapters_together: the teacher would hold every adapter, one step's start each.
    features = frozenset({Feature.COMPILE, Feature.IN_STEP_CHECKPOINTS})
    schedules = frozenset({"sequential"})

    def __init__(self, settings: LwFSettings) -> None:
        super().__init__(settings)
        self.alpha = settings.alpha
        self.temperature = settings.temperature
        self.teacher: dict[str, torch.Tensor] = {}  # parameter name -> value at the step's start

    @classmethod
    def cost(
        cls,
        settings: StrategySettings,
        *,
        trainable: int,
        head: int,
        train_sizes: Mapping[str, int],
    ) -> StrategyCost:
        """The teacher: one copy of the trainable parameters (not the frozen rest), from the
        second locale on."""
        assert isinstance(settings, LwFSettings)
        if settings.alpha == 0 or len(train_sizes) < 2:
            return StrategyCost()
        return StrategyCost(stored_values=trainable)

    def before_step(self, ctx: StepContext, model: torch.nn.Module) -> StepPlan | None:
        """Keep the weights the step starts from as its teacher (none at the first step)."""
        if self.alpha > 0:
            self.teacher = (
                {name: p.detach().clone() for name, p in trainable_parameters(model)}
                if ctx.earlier
                else {}
            )
        return None

    def loss_terms(self, model: torch.nn.Module, batch: Batch, outputs: Any) -> torch.Tensor | None:
        """``alpha · T² · mean KL(p_teacher ‖ p_student)`` over labelled positions, or None."""
        if self.alpha == 0 or not self.teacher:
            return None
        teacher = teacher_logits(model, self.teacher, batch)
        return self.alpha * distillation(outputs.logits, teacher, batch.labels, self.temperature)

    def state_dict(self) -> dict[str, Any]:
        """The teacher: one tensor per trainable parameter, on the model's device."""
        return {"teacher": dict(self.teacher)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the teacher of `state_dict`."""
        self.teacher = {str(name): value for name, value in state["teacher"].items()}


@torch.no_grad()
def teacher_logits(
    model: torch.nn.Module, weights: Mapping[str, torch.Tensor], batch: Batch
) -> torch.Tensor:
    """`model`'s logits on `batch` with `weights` in place of its own, in eval mode.

    Every module's training mode is put back afterwards; nothing is drawn from a generator.
    """
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        outputs = torch.func.functional_call(
            model,
            dict(weights),
            args=(),
            kwargs={"input_ids": batch.input_ids, "attention_mask": batch.attention_mask},
        )
    finally:
        for module, training in modes:
            module.training = training
    return outputs.logits


def distillation(
    student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, temperature: float
) -> torch.Tensor:
    """``T² · mean over labelled positions of KL(softmax(teacher/T) ‖ softmax(student/T))``.

    `student` and `teacher` are ``(batch, length, classes)`` token logits or ``(batch,
    classes)`` sequence logits; `labels` is the batch's ``(batch, length)``, -100 where a
    position is not labelled (a sequence's label is at position 0). The softmax is over
    the class axis. Device work only: no sync, no branch on a value; 0 with no labelled
    position.
    """
    labelled = labels != IGNORE if student.dim() == 3 else labels[:, 0] != IGNORE
    dtype = torch.promote_types(student.dtype, torch.float32)  # bf16 logits: in float32
    log_student = F.log_softmax(student.to(dtype) / temperature, dim=-1)
    log_teacher = F.log_softmax(teacher.to(dtype) / temperature, dim=-1)
    kl = (log_teacher.exp() * (log_teacher - log_student)).sum(dim=-1)
    kl = torch.where(labelled, kl, torch.zeros_like(kl))
    return temperature**2 * kl.sum() / labelled.sum().clamp(min=1)
