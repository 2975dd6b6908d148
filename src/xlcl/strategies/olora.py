"""O-LoRA (Wang et al. 2023, "Orthogonal Subspace Learning for Language Model Continual
Learning"): a new LoRA adapter per locale, kept orthogonal to the frozen earlier ones.

Select it with ``strategy: {name: olora, lambda_orth: 0.5}`` on SHARED LoRA (a LoRA
method with the sequential schedule). Step 1 trains the model's adapter as SHARED LoRA
does. At the start of every later step, the adapter just trained is frozen and kept, and
the model's adapter starts afresh (A Kaiming-uniform as PEFT initialises LoRA, B zero), so
that each LoRA layer computes

    W x + s · Σ_k B_k A_k x + s · B_new A_new dropout(x),    s = lora_alpha / r,

with k over the earlier locales' frozen adapters. Only the new adapter and the shared
classification head train; the head keeps training from step to step, as in SHARED LoRA.
Every batch's loss gains

    lambda_orth · Σ_layers Σ_k Σ_ij |(A_k A_newᵀ)_ij| + lambda_l2 · Σ_layers (‖A_new‖₂ + ‖B_new‖₂)

(‖·‖₂ the Frobenius norm, not squared), as the authors' code (``uie_trainer_lora.py``)
computes them: the orthogonality term on the A matrices only, the l2 term on the new
adapter, at every step (step 1's adapter is a new one too, with no earlier A to be
orthogonal to).

The frozen adapters belong to the strategy, not to the model: plain tensors in its state,
summed into each LoRA layer's output by a forward hook that `prepare_model` puts on the
layer. PEFT's own multi-adapter forward would need every frozen adapter to be a PEFT
adapter: adding one draws its initial weights from torch's global generator, a token
classifier's adapter gets its own copy of the head (PEFT adds the classifier to its
``modules_to_save``), and activating several adapters makes them all trainable and is
refused by the head's wrapper. The hook reads the strategy's current tensors each time it
runs, so `before_step` and `load_state_dict` never touch the model. The frozen path sees
the layer's input without dropout: the authors apply the new adapter's dropout mask to the
old adapters' input too, a mask a hook cannot see, and a second mask would be noise on
weights that do not train.

The new adapter's start is drawn in `before_step` from a generator seeded from
`StepContext.rng` (on the CPU, the same on every device) and put into the model by
`prepare_model`, which the engine calls right after it; a run resumed inside a step redraws
the same start before its checkpoint's weights replace it.

``lambda_orth: 0`` with ``lambda_l2: 0`` is off: no new adapters, no hooks, no term, the
plain SHARED LoRA bit for bit. With both weights 0 the only difference left would be a
fresh, unconstrained adapter per locale on top of the earlier ones' sum, which is not
O-LoRA; ``lambda_orth: 0`` with ``lambda_l2 > 0`` still starts new adapters.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Mapping
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from peft.tuners.lora import LoraLayer
from pydantic import Field

from xlcl.encode import Batch
from xlcl.strategies import (
    Feature,
    StepContext,
    StepPlan,
    Strategy,
    StrategyCost,
    StrategySettings,
)

LIVE = "default"  # the adapter SHARED LoRA trains: the one `get_peft_model` names
Adapter = dict[str, tuple[torch.Tensor, torch.Tensor]]  # LoRA layer name -> its (A, B)


class OLoRASettings(StrategySettings):
    """Settings of `OLoRA`.

    Defaults: the authors' scripts (``lamda_1 = 0.5``, ``lamda_2 = 0``); a starting point
    for MASSIVE, not a tuned value.
    """

    lambda_orth: float = Field(
        0.5, ge=0, description="weight of Σ|A_old A_newᵀ|; 0 with lambda_l2 0 = off"
    )
    lambda_l2: float = Field(
        0.0, ge=0, description="weight of ‖A_new‖₂ + ‖B_new‖₂; 0 with lambda_orth 0 = off"
    )


class OLoRA(Strategy):
    """O-LoRA: each locale's adapter new, orthogonal to the frozen earlier ones summed in."""

    Settings = OLoRASettings
    # in_step_checkpoints: the frozen adapters change only in `before_step`, and a checkpoint
    # inside a step holds them; a run resumed there redraws the step's start, which the
    # checkpoint's weights then replace. Not compile: untested with the layers' hooks. Not
    # cuda_graphs: untested on a GPU. Not adapters_together: one adapter per locale trained
    # in sequence is the method.
    features = frozenset({Feature.IN_STEP_CHECKPOINTS})
    schedules = frozenset({"sequential"})
    needs_lora = True

    def __init__(self, settings: OLoRASettings) -> None:
        super().__init__(settings)
        self.lambda_orth = settings.lambda_orth
        self.lambda_l2 = settings.lambda_l2
        self.on = self.lambda_orth > 0 or self.lambda_l2 > 0
        self.frozen: list[Adapter] = []  # one per earlier locale, in the order's order
        # Per layer, the frozen A's stacked by rows and B's by columns: one matmul pair sums
        # every frozen adapter (Σ_k B_k A_k = [B_1 … B_k] [A_1; …; A_k]).
        self.stacked: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        # The new adapter's start, from `before_step` until `prepare_model` puts it in; no
        # checkpoint is written in between, so it is not part of the state.
        self.start: Adapter | None = None
        self.hooked: weakref.WeakSet[torch.nn.Module] = weakref.WeakSet()

    @classmethod
    def cost(
        cls,
        settings: StrategySettings,
        *,
        trainable: int,
        head: int,
        train_sizes: Mapping[str, int],
    ) -> StrategyCost:
        """The frozen adapters: ``(n_locales − 1)`` adapters of ``trainable − head``
        parameters each (none when off); the head is shared, never copied."""
        assert isinstance(settings, OLoRASettings)
        if settings.lambda_orth == 0 and settings.lambda_l2 == 0:
            return StrategyCost()
        adapter = trainable - head
        return StrategyCost(extra_parameters=max(len(train_sizes) - 1, 0) * adapter)

    def before_step(self, ctx: StepContext, model: torch.nn.Module) -> StepPlan | None:
        """From the second locale on: freeze the adapter just trained; draw the new one's start."""
        if not self.on or not ctx.earlier:
            return None
        assert len(self.frozen) == len(ctx.earlier) - 1, "one frozen adapter per earlier step"
        layers = lora_layers(model)
        self.frozen.append(
            {
                name: (
                    layer.lora_A[LIVE].weight.detach().clone(),
                    layer.lora_B[LIVE].weight.detach().clone(),
                )
                for name, layer in layers
            }
        )
        self.stacked = stack(self.frozen)
        generator = torch.Generator().manual_seed(int(ctx.rng.integers(2**63)))
        self.start = {name: fresh_adapter(layer, generator) for name, layer in layers}
        return None

    def prepare_model(self, model: torch.nn.Module) -> None:
        """Sum the frozen adapters into `model`'s LoRA layers; start the new adapter if due."""
        if not self.on:
            return
        layers = lora_layers(model)
        for name, layer in layers:
            if layer not in self.hooked:
                layer.register_forward_hook(partial(self._add_frozen, name))
                self.hooked.add(layer)
        if self.start is not None:
            with torch.no_grad():
                for name, layer in layers:
                    a, b = self.start[name]
                    layer.lora_A[LIVE].weight.copy_(a)
                    layer.lora_B[LIVE].weight.copy_(b)
            self.start = None

    def loss_terms(self, model: torch.nn.Module, batch: Batch, outputs: Any) -> torch.Tensor | None:
        """``lambda_orth · Σ|A_k A_newᵀ| + lambda_l2 · Σ(‖A_new‖₂ + ‖B_new‖₂)``, or None."""
        orthogonal = self.lambda_orth > 0 and bool(self.stacked)
        if not orthogonal and self.lambda_l2 == 0:
            return None
        layers = lora_layers(model)
        device = layers[0][1].lora_A[LIVE].weight.device
        terms = []
        # In float32 even under bf16 autocast: a sum of |products| over every layer.
        with torch.autocast(device.type, enabled=False):
            if orthogonal:
                orth = [
                    orthogonality(self.stacked[name][0], layer.lora_A[LIVE].weight)
                    for name, layer in layers
                ]
                terms.append(self.lambda_orth * torch.stack(orth).sum())
            if self.lambda_l2 > 0:
                norms = [
                    l2_norms(layer.lora_A[LIVE].weight, layer.lora_B[LIVE].weight)
                    for _, layer in layers
                ]
                terms.append(self.lambda_l2 * torch.stack(norms).sum())
        return torch.stack(terms).sum()

    def state_dict(self) -> dict[str, Any]:
        """The frozen adapters: per earlier locale, each LoRA layer's A and B."""
        return {
            "frozen": [
                {name: {"A": a, "B": b} for name, (a, b) in adapter.items()}
                for adapter in self.frozen
            ]
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the frozen adapters of `state_dict` (hooked models sum them from now on)."""
        self.frozen = [
            {str(name): (value["A"], value["B"]) for name, value in adapter.items()}
            for adapter in state["frozen"]
        ]
        self.stacked = stack(self.frozen)

    def _add_frozen(
        self, name: str, layer: torch.nn.Module, args: tuple[Any, ...], output: torch.Tensor
    ) -> torch.Tensor | None:
        """Forward hook of LoRA layer `name`: its output plus ``s · Σ_k B_k A_k x``."""
        stacked = self.stacked.get(name)
        if stacked is None:
            return None
        a, b = stacked
        assert isinstance(layer, LoraLayer)
        frozen = F.linear(F.linear(args[0].to(a.dtype), a), b) * layer.scaling[LIVE]
        return output + frozen.to(output.dtype)


def lora_layers(model: torch.nn.Module) -> list[tuple[str, Any]]:
    """`model`'s LoRA layers that carry the trained adapter, by name, in module order."""
    return [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, LoraLayer) and LIVE in module.lora_A
    ]


def stack(frozen: list[Adapter]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per layer, the A's of `frozen` stacked by rows and the B's by columns (none: empty)."""
    if not frozen:
        return {}
    return {
        name: (
            torch.cat([adapter[name][0] for adapter in frozen]),
            torch.cat([adapter[name][1] for adapter in frozen], dim=1),
        )
        for name in frozen[0]
    }


def fresh_adapter(layer: Any, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A new adapter's (A, B) for `layer`, as PEFT initialises LoRA: A Kaiming-uniform with
    a = √5 (uniform in ±1/√fan_in), B zero.

    A is drawn in float32 on the CPU from `generator`, so the draw is the same on every
    device, then put on the layer's device and dtype.
    """
    a_weight = layer.lora_A[LIVE].weight
    a = torch.empty(a_weight.shape)
    torch.nn.init.kaiming_uniform_(a, a=math.sqrt(5), generator=generator)
    return a.to(a_weight), torch.zeros_like(layer.lora_B[LIVE].weight)


def orthogonality(old: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
    """``Σ_ij |(A_old A_newᵀ)_ij|``: `old` the earlier A's stacked by rows, `new` the new A.

    0 exactly when every row of `new` is orthogonal to every row of `old`.
    """
    return (old @ new.T).abs().sum()


def l2_norms(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``‖A‖₂ + ‖B‖₂``, Frobenius norms (not squared), as the authors' ``torch.norm(p=2)``."""
    return torch.linalg.vector_norm(a) + torch.linalg.vector_norm(b)
