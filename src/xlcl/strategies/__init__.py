"""Strategies: remedies against forgetting, plugged into the one training engine.

A strategy derives from `Strategy` and overrides the hooks it needs; every hook is a no-op
by default, so an empty subclass changes nothing. Hooks *return* what they want done (a
`StepPlan`, a loss term) and never mutate the engine, the model's training state or each
other: the result cannot depend on the order in which plug-ins run, which was Avalanche's
trouble. The one exception is `prepare_model`, whose job is to put into the model what the
strategy adds to it (O-LoRA's frozen adapters). A strategy draws random numbers only from
the generator its `StepContext` hands it, never from the global RNG, and keeps whatever it
needs to continue a run in `state_dict()`, which goes into every checkpoint.

In a run config::

    strategy:
      name: replay          # a built-in name, or "package.module:Class" on PYTHONPATH
      mem_size: 100         # the strategy's own settings (its `Settings` model)

Without ``strategy:`` a run is exactly what it was before strategies existed.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from xlcl.registry import PluginError, resolve_plugin

if TYPE_CHECKING:
    import torch

    from xlcl.config import RunConfig, TrainConfig
    from xlcl.encode import Batch, EncodedSplit
    from xlcl.methods import Method
    from xlcl.schedules import Schedule


class Feature(StrEnum):
    """Engine features a strategy may support; a config asking for another is refused."""

    CUDA_GRAPHS = "cuda_graphs"
    ADAPTERS_TOGETHER = "adapters_together"
    COMPILE = "compile"
    IN_STEP_CHECKPOINTS = "in_step_checkpoints"


class StrategySettings(BaseModel):
    """Base of a strategy's settings: frozen, unknown keys forbidden.

    `left_out_at_default` names settings added after runs of the strategy existed: a
    resolved ``strategy:`` mapping leaves them out while they hold their default, so those
    runs keep their ids and labels (as `xlcl.config`'s top-level keys do).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    left_out_at_default: ClassVar[frozenset[str]] = frozenset()


@dataclass(frozen=True)
class StepContext:
    """What a hook knows about the step it surrounds.

    `rng` is the strategy's own generator for this hook call, seeded from the run's seed
    and the step: a resumed run draws the same numbers without storing generator state.
    """

    step: int
    locales: tuple[str, ...]  # trained at this step
    earlier: tuple[str, ...]  # trained at earlier steps, in order
    train_splits: Mapping[str, EncodedSplit]  # encoded train split of every locale above
    config: RunConfig
    rng: np.random.Generator


@dataclass(frozen=True)
class Interleaved:
    """Extra optimizer updates on a memory, taken between a step's own updates.

    After every `interval`-th update of the step (counted over its epochs), the engine
    takes one more on `batch_size` utterances of `memory` (all of them when it holds
    fewer), drawn without replacement from a generator seeded by the step's seed and that
    update's number: no global RNG, nothing to checkpoint. The extra update clips and steps
    AdamW like the others but does not step the learning-rate schedule, so the step's own
    updates see the plain run's rates. It takes no part in the epoch's train loss.
    """

    memory: tuple[EncodedSplit, ...]
    interval: int
    batch_size: int


@dataclass(frozen=True)
class StepPlan:
    """What `Strategy.before_step` asks of the coming step; the defaults change nothing."""

    extra_train: tuple[EncodedSplit, ...] = ()  # joins the step's training batches
    train: TrainConfig | None = None  # replaces the step's optimisation settings
    interleaved: Interleaved | None = None  # extra updates on a memory, between its own


@dataclass(frozen=True)
class StrategyCost:
    """What a strategy holds beyond its plain method, for `xlcl params` and the manifest.

    Counts are of a run over ``n_locales`` locales once it has finished (the largest they
    get); `Strategy.cost` computes them from the settings alone, before anything runs.
    """

    extra_parameters: int = 0  # model parameters added (O-LoRA's frozen adapters)
    stored_values: int = 0  # numbers kept besides the model (EWC's Fisher and anchor)
    memory_utterances: int = 0  # training utterances of earlier locales kept (replay)


class Strategy:
    """A remedy against forgetting. Override only the hooks you need.

    Subclasses declare `Settings` (a `StrategySettings` model; the config's keys besides
    ``name``), the engine `features` they support and the `schedules` they make sense
    for. The engine builds one instance per run: ``Strategy(settings)``.
    """

    Settings: ClassVar[type[StrategySettings]] = StrategySettings
    features: ClassVar[frozenset[Feature]] = frozenset()
    schedules: ClassVar[frozenset[str]] = frozenset({"sequential", "independent", "joint"})
    needs_lora: ClassVar[bool] = False  # modifies LoRA adapters: refused on full fine-tuning

    def __init__(self, settings: StrategySettings) -> None:
        self.settings = settings

    @classmethod
    def unsuited(cls, method: Method) -> str | None:
        """Why this strategy cannot modify `method` (``"modifies LoRA adapters: ..."``), or None."""
        if cls.needs_lora and not method.lora:
            return f"modifies LoRA adapters: method {method.name} trains none (use a LoRA method)"
        if method.schedule.name not in cls.schedules:
            return (
                f"is not for the {method.schedule.name} schedule of method {method.name} "
                f"(it supports: {', '.join(sorted(cls.schedules))})"
            )
        return None

    @classmethod
    def cost(
        cls,
        settings: StrategySettings,
        *,
        trainable: int,
        head: int,
        train_sizes: Mapping[str, int],
    ) -> StrategyCost:
        """The extra parameters, values and utterances a run with `settings` ends up holding.

        `trainable` is the plain method's trainable parameter count (the whole model, or
        one adapter and its head), `head` how many of them are the classification head's (0
        where the head is not counted, as in Table 1's `xlcl params`); `train_sizes` the
        training utterances of each locale of the order. The default: nothing extra.
        """
        return StrategyCost()

    @classmethod
    def schedule(cls, settings: StrategySettings, base: Schedule) -> Schedule:
        """The schedule a run of the method whose schedule is `base` follows with `settings`:
        `base`, unless the strategy changes the score matrix's shape (merge: ``merged``).
        `schedules` still lists the methods' schedules a strategy is for."""
        return base

    @classmethod
    def supported_features(cls, settings: StrategySettings) -> frozenset[Feature]:
        """The engine features a run with `settings` supports: `features`, unless a setting
        rules one out (replay's interleaved updates and CUDA graphs)."""
        return cls.features

    def before_step(self, ctx: StepContext, model: torch.nn.Module) -> StepPlan | None:
        """Called before each training step; may return extra data or other settings."""
        return None

    def prepare_model(self, model: torch.nn.Module) -> None:
        """Put into `model` what this strategy adds to it; by default nothing.

        The engine calls it on every model it builds or restores from a checkpoint, before
        scoring or training it, and at every step trained on its own (not with
        ``train.adapters_together``) right after `before_step`; a second call on the same
        model must not add anything twice. It is the one hook that may change
        the model: modules or forward hooks the strategy owns (O-LoRA's frozen adapters)
        and, right after `before_step`, the values the step's trainable parameters start
        from (O-LoRA's new adapter). It draws no random number.
        """

    def loss_terms(self, model: torch.nn.Module, batch: Batch, outputs: Any) -> torch.Tensor | None:
        """A term added to the task's loss on `batch` (`outputs.logits`), or None."""
        return None

    def gradients(
        self, model: torch.nn.Module, gradients: list[torch.Tensor | None]
    ) -> list[torch.Tensor | None] | None:
        """Before each optimizer update: replacement gradients, or None to keep them.

        `gradients` are the trainable parameters' (in `trainable_parameters` order), after
        the backward passes and before clipping; do not change them in place, return new
        ones (A-GEM's projection). Strategies that override this cannot declare
        ``cuda_graphs`` (the update would need the hook inside the graph).
        """
        return None

    def after_step(self, ctx: StepContext, model: torch.nn.Module) -> None:
        """Called after each training step (with the step's best weights restored)."""

    def state_dict(self) -> dict[str, Any]:
        """Everything this strategy needs to continue a run: numbers, strings, tensors."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from `state_dict()`'s output."""


# Built-in strategies: name -> "module:attr", imported only when used. The one list.
BUILTIN: dict[str, str] = {
    "replay": "xlcl.strategies.replay:Replay",
    "ewc": "xlcl.strategies.ewc:EWC",
    "lwf": "xlcl.strategies.lwf:LwF",
    "lr-adjust": "xlcl.strategies.lr_adjust:LRAdjust",
    "agem": "xlcl.strategies.agem:AGEM",
    "olora": "xlcl.strategies.olora:OLoRA",
    "merge": "xlcl.strategies.merge:Merge",
}


def strategy_class(name: str) -> type[Strategy]:
    """The class a config's ``strategy.name`` refers to: built-in or ``module:Class``."""
    return resolve_plugin("strategy.name", name, BUILTIN, Strategy)


def resolve_settings(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A config's ``strategy:`` mapping, validated: ``name`` and every setting, defaults filled.

    Filling the defaults makes a run's hash the same whether a default is written or not.
    """
    if "name" not in raw:
        raise PluginError("strategy: needs a 'name' (e.g. strategy.name=replay)")
    name = str(raw["name"])
    cls = strategy_class(name)
    settings = {key: value for key, value in raw.items() if key != "name"}
    fields = cls.Settings.model_fields
    for key in settings:
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=1)
            hint = f"; did you mean 'strategy.{close[0]}'?" if close else ""
            known = ", ".join(fields) or "none"
            raise PluginError(f"strategy.{key}: unknown setting of {name}{hint} (known: {known})")
    try:
        validated = cls.Settings.model_validate(settings)
    except ValidationError as error:
        item = error.errors()[0]
        location = ".".join(str(part) for part in item["loc"])
        raise PluginError(f"strategy.{location}: {item['msg']}") from None
    values = validated.model_dump(mode="json")
    for key in cls.Settings.left_out_at_default:
        if values[key] == fields[key].default:
            del values[key]
    return {"name": name, **values}


def strategy_settings(resolved: Mapping[str, Any]) -> StrategySettings:
    """The settings of a resolved ``strategy:`` mapping (see `resolve_settings`)."""
    cls = strategy_class(str(resolved["name"]))
    return cls.Settings.model_validate({k: v for k, v in resolved.items() if k != "name"})


def build_strategy(resolved: Mapping[str, Any]) -> Strategy:
    """The strategy of a resolved ``strategy:`` mapping (see `resolve_settings`)."""
    return strategy_class(str(resolved["name"]))(strategy_settings(resolved))


_HOOK_STREAMS = {"before_step": 0, "after_step": 1, "merge": 2}


def hook_rng(seed: int, step: int, hook: str) -> np.random.Generator:
    """The strategy's own generator for `hook` at `step`: independent of the global RNG."""
    return np.random.default_rng([seed, step, _HOOK_STREAMS[hook]])
