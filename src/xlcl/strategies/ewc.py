"""Elastic weight consolidation (EWC), online by default: a penalty on moving important weights.

Select it with ``strategy: {name: ewc, ewc_lambda: 100}``. After every step, including the
first locale's, the diagonal Fisher information of the step's training utterances is
estimated at the step's final (best) weights θ*, and every later batch's loss gains

    ewc_lambda / 2 * Σ_k Σ_i F_k,i (θ_i - θ*_k,i)²

over the trainable parameters θ (`xlcl.classifier.trainable_parameters`).

- ``mode: online`` (Schwarz et al. 2018, "Progress & Compress"; Huszár 2018) keeps one
  term: after step t, F ← decay_factor · F + F_t and θ* ← θ_t.
- ``mode: separate`` (Kirkpatrick et al. 2017) keeps one term (F_t, θ_t) per finished step
  and sums their penalties; ``decay_factor`` does not apply to it and must stay 1.

The Fisher F_t is the *empirical* Fisher: squared gradients of the task's loss on the gold
labels (`Task.loss`), in eval mode (no dropout), at the precision the step trained in. It is
computed in micro-batches of ``train.batch_size`` utterances (sorted by length, no random
draw), as Σ_b (n_b / N) · g_b², where g_b is the gradient of batch b's mean loss, n_b its
utterances and N the step's. That approximates the per-example Fisher (1/N) Σ_u g_u², which
it equals with batches of one utterance; with n utterances a batch whose gradients are
uncorrelated it is about 1/n of it, so F's scale (not which weights it marks important)
depends on ``train.batch_size``, and an ``ewc_lambda`` tuned at one batch size is for that
size. Per-example gradients would cost a forward and backward pass per utterance. The
gradients go through `torch.autograd.grad`, so no parameter's ``.grad`` is touched; nothing
is drawn from a random generator.

``ewc_lambda: 0`` computes nothing and adds nothing: the plain method, bit for bit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
from pydantic import Field, ValidationInfo, field_validator

from xlcl.classifier import trainable_parameters
from xlcl.encode import Batch, EncodedSplit, collate_batch, epoch_batches
from xlcl.evaluate.scoring import mixed_precision
from xlcl.strategies import Feature, StepContext, Strategy, StrategyCost, StrategySettings
from xlcl.tasks import Task, get_task

Weights = dict[str, torch.Tensor]  # trainable parameter name -> tensor of its shape


class EWCSettings(StrategySettings):
    """Settings of `EWC`.

    Defaults: Avalanche requires ``ewc_lambda`` and has no default; 100 is a starting point
    for fine-tuning transformers with the mean cross-entropy (as CLiMB's EWC for ViLT), to
    be tuned by the remedies sweep, not a tuned value. ``decay_factor: 1`` is the recursion
    Huszár (2018) derives for a Laplace approximation of the posterior (every locale's
    Fisher kept in full); below 1, older locales' Fisher fade (Schwarz et al. 2018).
    Avalanche's online mode requires a decay_factor and has no default either.
    """

    ewc_lambda: float = Field(100.0, ge=0, description="weight of the penalty; 0 = off")
    mode: Literal["online", "separate"] = Field(
        "online", description="online: one decayed Fisher; separate: one term per step"
    )
    decay_factor: float = Field(
        1.0, ge=0, le=1, description="online: F <- decay_factor * F + F_step; 1 for separate"
    )

    @field_validator("decay_factor")
    @classmethod
    def _decay_is_online_only(cls, decay_factor: float, info: ValidationInfo) -> float:
        if info.data.get("mode") == "separate" and decay_factor != 1.0:
            raise ValueError("applies to mode online only; leave it at 1 for mode separate")
        return decay_factor


class EWC(Strategy):
    """Elastic weight consolidation: online (one decayed Fisher) or separate (one per step)."""

    Settings = EWCSettings
    # cuda_graphs: the penalty is device work only (no sync, no branch on a tensor's value)
    # on Fisher and anchor tensors that `after_step` replaces between steps, never within
    # one, so they are the same objects while a step's graphs are recorded and replayed.
    # compile: the model keeps its parameter names; the penalty and the Fisher pass run
    # outside the compiled forward (the Fisher pass's eval mode is one more compiled entry).
    # in_step_checkpoints: the state changes only in `after_step`.
    # Not adapters_together: `loss_terms` runs once per adapter on the whole model, so a
    # penalty over all trainable parameters would count each adapter's once per adapter.
    features = frozenset({Feature.CUDA_GRAPHS, Feature.COMPILE, Feature.IN_STEP_CHECKPOINTS})
    schedules = frozenset({"sequential"})

    def __init__(self, settings: EWCSettings) -> None:
        super().__init__(settings)
        self.ewc_lambda = settings.ewc_lambda
        self.decay_factor = settings.decay_factor
        self.mode = settings.mode
        # (Fisher, anchor θ*) pairs: at most one online, one per finished step separate.
        self.terms: list[tuple[Weights, Weights]] = []

    @classmethod
    def cost(
        cls,
        settings: StrategySettings,
        *,
        trainable: int,
        head: int,
        train_sizes: Mapping[str, int],
    ) -> StrategyCost:
        """The Fisher and anchor the last step's penalty reads: one pair of `trainable` values
        online, one per earlier locale separate. (The pair `after_step` adds after the last
        step is never read; it is not counted.)"""
        assert isinstance(settings, EWCSettings)
        earlier = max(len(train_sizes) - 1, 0)
        if settings.ewc_lambda == 0 or earlier == 0:
            return StrategyCost()
        terms = 1 if settings.mode == "online" else earlier
        return StrategyCost(stored_values=2 * trainable * terms)

    def loss_terms(self, model: torch.nn.Module, batch: Batch, outputs: Any) -> torch.Tensor | None:
        """``ewc_lambda / 2 * Σ_k Σ F_k (θ - θ*_k)²``; None when off or before any Fisher."""
        if self.ewc_lambda == 0 or not self.terms:
            return None
        names, parameters = zip(*trainable_parameters(model), strict=True)
        squares = [
            FisherPenalty.apply([fisher[n] for n in names], [anchor[n] for n in names], *parameters)
            for fisher, anchor in self.terms
        ]
        return self.ewc_lambda / 2 * torch.stack(squares).sum()

    def after_step(self, ctx: StepContext, model: torch.nn.Module) -> None:
        """Estimate the step's Fisher at its final weights; fold it in; anchor θ* there."""
        if self.ewc_lambda == 0:
            return
        config = ctx.config
        fisher = fisher_diagonal(
            model,
            [ctx.train_splits[locale] for locale in ctx.locales],
            get_task(config.task),
            config.train.batch_size,
            config.train.precision,
        )
        anchor = {name: p.detach().clone() for name, p in trainable_parameters(model)}
        if self.mode == "separate":
            self.terms.append((fisher, anchor))
            return
        if self.terms:
            previous, _ = self.terms[0]
            fisher = {
                name: previous[name].mul(self.decay_factor).add_(value)
                for name, value in fisher.items()
            }
        self.terms = [(fisher, anchor)]

    def state_dict(self) -> dict[str, Any]:
        """The Fisher and anchor of every term: one tensor per trainable parameter each."""
        return {
            "terms": [
                {"fisher": dict(fisher), "anchor": dict(anchor)} for fisher, anchor in self.terms
            ]
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the terms of `state_dict`."""
        self.terms = [
            (
                {str(name): value for name, value in term["fisher"].items()},
                {str(name): value for name, value in term["anchor"].items()},
            )
            for term in state["terms"]
        ]


class FisherPenalty(torch.autograd.Function):
    """``Σ_i F_i (θ_i − θ*_i)²`` over tensors θ, with the gradient ``2 F (θ − θ*)``.

    One autograd node instead of four per tensor, and half their memory traffic: the
    forward pass keeps F (θ − θ*), from which the backward pass needs one product. Device
    work only (no sync, no branch on a value), so CUDA graphs can record it; at the
    parameters' precision, autocast off.
    """

    @staticmethod
    def forward(
        ctx: Any,
        fisher: Sequence[torch.Tensor],
        anchor: Sequence[torch.Tensor],
        *theta: torch.Tensor,
    ) -> torch.Tensor:
        """The penalty; `fisher` and `anchor` take no gradient."""
        weighted, dots = [], []
        with torch.autocast(theta[0].device.type, enabled=False):
            for f, a, t in zip(fisher, anchor, theta, strict=True):
                difference = t - a
                weighted.append(f * difference)
                dots.append(torch.dot(weighted[-1].reshape(-1), difference.reshape(-1)))
        ctx.save_for_backward(*weighted)
        return torch.stack(dots).sum()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        """``2 F (θ − θ*)`` times the incoming gradient, for each θ."""
        scale = 2 * grad
        return (None, None, *(w * scale for w in ctx.saved_tensors))


def fisher_diagonal(
    model: torch.nn.Module,
    splits: Sequence[EncodedSplit],
    task: Task,
    batch_size: int,
    precision: str,
) -> Weights:
    """The empirical Fisher diagonal of `splits`: Σ_b (n_b / N) · (∇ mean loss of batch b)².

    Eval mode (no dropout) for the pass, the model's mode restored after it; no random
    draw, no ``.grad`` written. One tensor per trainable parameter, zero where the loss does
    not reach it.
    """
    named = trainable_parameters(model)
    parameters = [parameter for _, parameter in named]
    device = parameters[0].device
    pad_id = model_pad_id(model)
    fisher = {name: torch.zeros_like(parameter) for name, parameter in named}
    total = sum(len(split) for split in splits)
    autocast = mixed_precision(precision, device)
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            for indices in epoch_batches(splits, batch_size, rng=None):
                batch = collate_batch(splits, indices, pad_id).to(device)
                with autocast:
                    logits = model(
                        input_ids=batch.input_ids, attention_mask=batch.attention_mask
                    ).logits
                    loss = task.loss(logits, batch.labels)
                grads = torch.autograd.grad(loss, parameters, allow_unused=True)
                share = len(indices) / total
                for (name, _), grad in zip(named, grads, strict=True):
                    if grad is not None:
                        fisher[name].add_(grad.detach().pow(2), alpha=share)
    finally:
        model.train(was_training)
    return fisher


def model_pad_id(model: torch.nn.Module) -> int:
    """The pad id the engine pads with: the model config's (as its tokenizer's; 0 if none).

    A trimmed vocabulary keeps the pad id (`xlcl.models.trim`), so the config's holds.
    """
    pad_id = getattr(model.config, "pad_token_id", None)
    return 0 if pad_id is None else int(pad_id)
