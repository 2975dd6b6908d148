"""Merge: NON-SHARED LoRA's adapters merged into one model after every step.

NON-SHARED LoRA trains an adapter and a head per locale, and each locale is scored by its
own: the run has one diagonal, and no transfer between locales. With ``merge`` the
adapters trained so far are merged after each step into one model, which scores every
locale: row i of the score matrix is the merge of the first i adapters (the ``merged``
schedule, `xlcl.schedules.Merged`), a full matrix whose CBT and CFT compare with
VANILLA's. Training is NON-SHARED LoRA's, untouched.

```bash
xlcl run configs/demo/quick/nonshared-lora.yaml --set 'strategy={name: merge, method: ties-svd}'
```

The LoRA weights merge through PEFT's ``add_weighted_adapter``, layer by layer:
``task-arithmetic`` is its ``cat`` (ΔW = Σ_k w_k ΔW_k exactly, at the rank of all the
adapters together); ``ties-svd`` and ``dare-ties-svd`` merge each layer's ΔW_k and keep
a rank-r SVD of the result. PEFT's modes that merge the A and B matrices separately are
left out: their product has cross terms (B_1 A_2) that no adapter trained. PEFT cannot
merge heads (``modules_to_save``), so the heads are merged here with PEFT's same merge
function and the same weights, on their task vectors h_k − h_0 from the initial head h_0
that every adapter's head starts from. ``method: none`` switches merging off: the run is
plain NON-SHARED LoRA's, bit for bit. See docs/remedies.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Literal, cast

import torch
from peft import LoraConfig, PeftModel
from peft.tuners.lora import LoraModel
from peft.utils import load_peft_weights, set_peft_model_state_dict
from peft.utils.merge_utils import dare_ties, task_arithmetic, ties
from peft.utils.other import ModulesToSaveWrapper
from pydantic import Field, PositiveFloat, ValidationInfo, field_validator

from xlcl.schedules import MERGED, Schedule
from xlcl.strategies import Feature, StepContext, Strategy, StrategyCost, StrategySettings

MERGED_ADAPTER = "merged"  # the merged adapter's (and head's) name in the scoring model
TRIMMING = ("ties-svd", "dare-ties-svd")  # the methods that keep a `density` of each ΔW
DEFAULT_DENSITY = 0.2  # TIES's k = 20% (Yadav et al. 2023)
_COMBINATION = {"task-arithmetic": "cat", "ties-svd": "ties_svd", "dare-ties-svd": "dare_ties_svd"}
_SAVED_PREFIX = "base_model.model."  # of the weight names in a saved adapter


class MergeSettings(StrategySettings):
    """Settings of `Merge`."""

    method: Literal["task-arithmetic", "ties-svd", "dare-ties-svd", "none"] = Field(
        "task-arithmetic", description="how the adapters merge; none = off (plain NON-SHARED)"
    )
    weight: PositiveFloat | Literal["mean"] = Field(
        "mean",
        description="every adapter's weight; mean = the adapters' mean (1/i each for "
        "task-arithmetic, 1 each for the TIES methods, which average already)",
    )
    density: float | None = Field(
        None,
        gt=0,
        lt=1,
        validate_default=True,
        description="ties-svd, dare-ties-svd: the fraction of each ΔW kept (default 0.2)",
    )

    @field_validator("density")
    @classmethod
    def _density_of_the_trimming_methods(
        cls, density: float | None, info: ValidationInfo
    ) -> float | None:
        trims = info.data.get("method") in TRIMMING
        if trims and density is None:
            return DEFAULT_DENSITY
        if not trims and density is not None:
            raise ValueError("applies to methods ties-svd and dare-ties-svd only")
        return density


class Merge(Strategy):
    """After every step, the adapters trained so far merged into the model that scores."""

    Settings = MergeSettings
    # Training is the plain method's, with no hook: the engine features that change only
    # how it trains work as without the strategy (cuda_graphs: not run on a GPU yet).
    # in_step_checkpoints: nothing is kept but the saved adapters. adapters_together: a
    # step's row is merged and scored once its adapter and every earlier one are saved, on
    # a model of its own (tested). Not compile: untested (the scoring model would be
    # compiled before PEFT adds the adapters to merge).
    features = frozenset(
        {Feature.CUDA_GRAPHS, Feature.IN_STEP_CHECKPOINTS, Feature.ADAPTERS_TOGETHER}
    )
    schedules = frozenset({"independent"})
    needs_lora = True

    def __init__(self, settings: MergeSettings) -> None:
        super().__init__(settings)
        self.method = settings.method
        self.weight = settings.weight
        self.density = settings.density

    @classmethod
    def schedule(cls, settings: StrategySettings, base: Schedule) -> Schedule:
        """``merged``; the method's own (``independent``) when off."""
        assert isinstance(settings, MergeSettings)
        return base if settings.method == "none" else MERGED

    @classmethod
    def cost(
        cls,
        settings: StrategySettings,
        *,
        trainable: int,
        head: int,
        train_sizes: Mapping[str, int],
    ) -> StrategyCost:
        """The merged model's adapter and head, as extra parameters: one adapter of
        ``trainable − head`` parameters for the SVD methods, n of them for task arithmetic
        (its merged adapter has the rank of all n adapters together), and one head. It is
        rebuilt for every row from the saved adapters and kept nowhere, so nothing counts as
        stored."""
        assert isinstance(settings, MergeSettings)
        if settings.method == "none" or not train_sizes:
            return StrategyCost()
        copies = len(train_sizes) if settings.method == "task-arithmetic" else 1
        return StrategyCost(extra_parameters=copies * (trainable - head) + head)

    def weights(self, count: int) -> list[float]:
        """The weight of each of `count` adapters merged: `weight`, or for ``mean`` 1/count
        (task arithmetic: their mean) or 1 (TIES, DARE-TIES: their disjoint merge is the
        mean of the adapters that agree in sign)."""
        if self.weight != "mean":
            return [self.weight] * count
        return [1.0 / count if self.method == "task-arithmetic" else 1.0] * count

    def merged_model(
        self, ctx: StepContext, model: torch.nn.Module, adapters: Sequence[Path]
    ) -> torch.nn.Module:
        """`model`, a fresh model of the run, with the merge of `adapters` active.

        `adapters` are saved adapter directories (`xlcl.classifier.save_adapter`), in the
        order's order. What PEFT draws (the initial values of the adapters it adds, DARE's
        random drops) comes from torch's generators seeded from `ctx.rng`, which are put
        back afterwards.
        """
        if not isinstance(model, PeftModel):
            raise TypeError("merge merges LoRA adapters: the model has none")
        if self.method == "none":
            raise ValueError("merge is off (method: none): there is nothing to merge")
        device = next(model.parameters()).device
        names = [f"merge-{index}" for index in range(len(adapters))]
        weights = self.weights(len(adapters))
        with torch.random.fork_rng():
            torch.manual_seed(int(ctx.rng.integers(2**63)))
            heads = [
                _add_saved_lora(model, name, directory, device)
                for name, directory in zip(names, adapters, strict=True)
            ]
            model.add_weighted_adapter(
                names,
                weights,
                MERGED_ADAPTER,
                combination_type=_COMBINATION[self.method],
                density=self.density,
            )
            for wrapper_name, wrapper in _head_wrappers(model):
                wrapper.update(MERGED_ADAPTER)
                initial = dict(wrapper.original_module.named_parameters())
                merged = wrapper.modules_to_save[MERGED_ADAPTER]
                with torch.no_grad():
                    for key, parameter in merged.named_parameters():
                        saved = [head[f"{wrapper_name}.{key}"] for head in heads]
                        parameter.copy_(self._merge_head(initial[key], saved, weights))
        model.set_adapter(MERGED_ADAPTER)
        for name in names:
            model.delete_adapter(name)
        return model

    def _merge_head(
        self, initial: torch.Tensor, heads: list[torch.Tensor], weights: list[float]
    ) -> torch.Tensor:
        """The heads merged as PEFT merges ΔW: their task vectors h_k − h_0, with `weights`.

        One adapter merges by task arithmetic whatever the method, as PEFT's LoRA weights
        do. Task arithmetic is written h_0 + Σ w_k (h_k − h_0) = Σ w_k h_k + (1 − Σ w_k) h_0,
        which is h_1 itself, bit for bit, for one head at weight 1.
        """
        if self.method == "task-arithmetic" or len(heads) == 1:
            factors = torch.tensor([*weights, 1.0 - sum(weights)], device=initial.device)
            return task_arithmetic([*heads, initial], factors)
        vectors = [head - initial for head in heads]
        factors = torch.tensor(weights, device=initial.device)
        assert self.density is not None, "validated: the TIES methods have a density"
        merge = ties if self.method == "ties-svd" else dare_ties
        return initial + merge(vectors, factors, self.density)


def _add_saved_lora(
    model: PeftModel, name: str, directory: Path, device: torch.device
) -> dict[str, torch.Tensor]:
    """Add the LoRA weights saved in `directory` to `model` as the adapter `name`, without
    their head; return the head's weights, by their saved names.

    PEFT refuses to merge adapters that each have a head (``modules_to_save``), so the
    adapter goes in at the tuner's level, on exactly the layers saved, with no head.
    """
    saved = load_peft_weights(str(directory), device=str(device))
    lora = {key: value for key, value in saved.items() if ".lora_" in key}
    layers = {key.removeprefix(_SAVED_PREFIX).rsplit(".lora_", 1)[0] for key in lora}
    config = LoraConfig.from_pretrained(str(directory))
    tuner = model.base_model
    assert isinstance(tuner, LoraModel), "a LoRA method's model"
    tuner.peft_config[name] = replace(config, modules_to_save=None, target_modules=layers)
    tuner.inject_adapter(tuner.model, name)
    loaded = set_peft_model_state_dict(model, lora, adapter_name=name)
    missing, unexpected = cast("tuple[list[str], list[str]]", loaded)  # torch's named tuple
    wrong = [key for key in missing if f".{name}." in key] + list(unexpected)
    if wrong:
        raise ValueError(f"{directory}: the adapter does not fit the model ({wrong[0]})")
    return {key: value for key, value in saved.items() if key not in lora}


def _head_wrappers(model: PeftModel) -> list[tuple[str, ModulesToSaveWrapper]]:
    """The model's heads (PEFT's ``modules_to_save``), by their module names."""
    return [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, ModulesToSaveWrapper)
    ]
