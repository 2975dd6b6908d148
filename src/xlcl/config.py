"""The one typed configuration of a run: every setting is declared here and only here.

YAML files in ``configs/`` hold experiments; ``xlcl run CONFIG --set train.batch_size=16``
applies overrides to the same model. Unknown keys are errors with a did-you-mean.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from xlcl.encode import BUCKET_WINDOW
from xlcl.methods import Method, method
from xlcl.registry import PluginError
from xlcl.schedules import INDEPENDENT, Schedule
from xlcl.strategies import Feature, resolve_settings, strategy_class, strategy_settings
from xlcl.tasks import DEFAULT_TASK, task_class

# Learning rates: the paper's values were lost in extraction; it says the runs without LoRA
# used the higher one. These defaults are the project's assumption, documented in the README.
FULL_LEARNING_RATE = 5e-5
LORA_LEARNING_RATE = 2e-5
# Epochs and early-stopping patience are the paper's (section 3.2).
FULL_EPOCHS, FULL_PATIENCE = 50, 5
LORA_EPOCHS, LORA_PATIENCE = 100, 15


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DataConfig(_Section):
    """Where MASSIVE comes from and how much of it a run uses."""

    source: str | None = Field(
        None, description="archive path or URL, JSONL directory, or hf://; None = $XLCL_MASSIVE"
    )
    max_train: int | None = Field(None, ge=1, description="first N train utterances per locale")
    max_dev: int | None = Field(None, ge=1, description="first N dev utterances per locale")
    max_test: int | None = Field(None, ge=1, description="first N test utterances per locale")
    skip_invalid: bool = Field(False, description="skip invalid rows and report them")


class TrainConfig(_Section):
    """Optimisation of one training step (one locale, or all locales for MULTI)."""

    epochs: int = Field(..., ge=1)
    patience: int = Field(..., ge=1, description="epochs without dev-F1 improvement")
    learning_rate: float = Field(..., gt=0)
    head_learning_rate: float | None = Field(
        None, gt=0, description="the classification head's rate; None = learning_rate"
    )
    batch_size: int = Field(32, ge=1)
    bucket_window: int = Field(
        BUCKET_WINDOW,
        ge=1,
        description="batches of similar length are formed within windows of this many "
        "batches of the shuffled epoch (less padding); 1 = random batches",
    )
    gradient_accumulation: int = Field(1, ge=1, description="micro-batches per update")
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.0, ge=0, lt=1)
    max_grad_norm: float = Field(1.0, gt=0)
    fused_clipping: bool = Field(
        False,
        description="clip inside fused AdamW's step (its grad_scale), not in a pass of its "
        "own over the gradients; the same update up to rounding when clipped",
    )
    max_length: int = Field(128, ge=8, description="subword tokens per utterance")
    seed: int = Field(42, description="model init; step i trains with seed + i (data, dropout)")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="auto = bf16 autocast on a GPU, fp32 on the CPU"
    )
    compile: bool = Field(
        False, description="torch.compile the model (less per-update overhead on a GPU)"
    )
    cuda_graphs: bool = Field(
        False,
        description="GPU: replay each full batch's update from a CUDA graph per padded "
        "width (on a CPU the same padded updates run eagerly)",
    )
    deterministic: bool = Field(False, description="torch deterministic algorithms only")
    adapters_together: bool = Field(
        False,
        description="NON-SHARED LoRA: train all locales' adapters at once over one base",
    )
    device: str = Field("auto", description="auto, cpu, cuda, cuda:N or mps")
    threads: int | None = Field(None, ge=1, description="torch CPU threads; None = torch default")


class LoraSettings(_Section):
    """LoRA hyper-parameters besides the rank (paper: alpha = r, dropout 0.1)."""

    alpha: int | None = Field(None, ge=1, description="None = the rank")
    dropout: float = Field(0.1, ge=0, lt=1)


class EvaluateConfig(_Section):
    """How the score matrix is filled."""

    batch_size: int = Field(128, ge=1)
    all_models: bool = Field(
        False, description="MONO/NON-SHARED: score each locale's model on every locale"
    )


class CheckpointConfig(_Section):
    """Step checkpoints for resuming a killed run (they do not change its results)."""

    keep: int = Field(2, ge=1, description="complete step checkpoints kept")
    every_updates: int | None = Field(
        None, ge=1, description="also checkpoint inside a step every N optimizer updates"
    )


class TensorBoardSettings(_Section):
    """TensorBoard: event files in ``<run directory>/tensorboard``."""


class MlflowSettings(_Section):
    """MLflow: a tracking store the run logs to."""

    uri: str | None = Field(
        None, description="tracking URI; None = the file store <output_dir>/mlruns"
    )


class WandbSettings(_Section):
    """Weights & Biases: offline run files under ``<output_dir>/wandb`` unless online."""

    project: str = Field("xlcl", description="the W&B project")
    entity: str | None = Field(None, description="the W&B team or user; None = the default")
    mode: Literal["offline", "online"] = Field(
        "offline", description="offline writes files for `wandb sync`; online needs a login"
    )


# The trackers a run can log to, by the name a config uses.
TRACKERS: dict[str, type[_Section]] = {
    "tensorboard": TensorBoardSettings,
    "mlflow": MlflowSettings,
    "wandb": WandbSettings,
}


class TrackingConfig(_Section):
    """Experiment trackers the run logs to (docs/tracking.md); they never change its id.

    ``tracking: [tensorboard, mlflow]`` turns trackers on with their defaults; a mapping
    (``tracking: {wandb: {mode: online}}``) sets their options.
    """

    tensorboard: TensorBoardSettings | None = None
    mlflow: MlflowSettings | None = None
    wandb: WandbSettings | None = None
    group: str | None = Field(
        None, description="MLflow experiment and W&B group; None = 'xlcl' (a sweep: its name)"
    )

    @model_validator(mode="before")
    @classmethod
    def _names(cls, values: Any) -> Any:
        """A list of tracker names is each tracker with its defaults."""
        if not isinstance(values, list):
            return values
        for name in values:
            if name not in TRACKERS:
                close = difflib.get_close_matches(str(name), list(TRACKERS), n=1)
                hint = f"; did you mean '{close[0]}'?" if close else ""
                raise ValueError(f"unknown tracker '{name}'{hint} (known: {', '.join(TRACKERS)})")
        return {name: {} for name in values}

    @property
    def enabled(self) -> dict[str, _Section]:
        """The trackers turned on, by name, with their settings."""
        chosen = {name: getattr(self, name) for name in TRACKERS}
        return {name: settings for name, settings in chosen.items() if settings is not None}


class RunConfig(_Section):
    """One experiment: a model, a method, an order of locales, and how to train."""

    model: str = Field(..., description="Hugging Face name or local path of an encoder")
    method: str = Field(..., description="multi, mono, vanilla, shared-lora or nonshared-lora")
    rank: int | None = Field(None, ge=1, description="LoRA rank; None = full fine-tuning")
    order: int | str | list[str] = Field(
        1, description="1-5 (Table 3), 'random:SEED', or a list of locales"
    )
    locales: list[str] | None = Field(
        None, description="restrict a built-in or random order to these locales"
    )
    trim_vocabulary: bool = Field(
        False, description="keep only the embedding rows of tokens in the run's data"
    )
    data: DataConfig = DataConfig()
    train: TrainConfig
    lora: LoraSettings = LoraSettings()
    evaluate: EvaluateConfig = EvaluateConfig()
    checkpoint: CheckpointConfig = CheckpointConfig()
    output_dir: str = Field("runs", description="parent directory of run directories")
    task: str = Field(
        DEFAULT_TASK, description="massive-slots, massive-intent or 'package.module:Class'"
    )
    strategy: dict[str, Any] | None = Field(
        None, description="a remedy against forgetting: 'name' plus its settings (None = none)"
    )
    tracking: TrackingConfig = Field(
        TrackingConfig(), description="experiment trackers (docs/tracking.md); not in the run id"
    )

    @model_validator(mode="before")
    @classmethod
    def _method_defaults(cls, values: Any) -> Any:
        """Fill epochs, patience and learning rate from the method, unless given."""
        if not isinstance(values, dict):
            return values
        lora = values.get("rank") is not None
        train = dict(values.get("train") or {})
        train.setdefault("epochs", LORA_EPOCHS if lora else FULL_EPOCHS)
        train.setdefault("patience", LORA_PATIENCE if lora else FULL_PATIENCE)
        train.setdefault("learning_rate", LORA_LEARNING_RATE if lora else FULL_LEARNING_RATE)
        return {**values, "train": train}

    @field_validator("task")
    @classmethod
    def _known_task(cls, task: str) -> str:
        task_class(task)
        return task

    @field_validator("strategy")
    @classmethod
    def _resolved_strategy(cls, strategy: dict[str, Any] | None) -> dict[str, Any] | None:
        """The strategy's name and every one of its settings, validated, defaults filled."""
        return None if strategy is None else resolve_settings(strategy)

    @model_validator(mode="after")
    def _supported_features(self) -> RunConfig:
        _check_features(self)
        return self

    @property
    def method_spec(self) -> Method:
        """The validated method of this run."""
        return method(self.method, self.rank)

    @property
    def schedule(self) -> Schedule:
        """The run's schedule, which shapes its score matrix: the method's, or the one its
        strategy turns it into (``merge`` makes NON-SHARED LoRA's ``merged``)."""
        base = self.method_spec.schedule
        if self.strategy is None:
            return base
        supported = strategy_class(self.strategy["name"])
        return supported.schedule(strategy_settings(self.strategy), base)

    @property
    def run_id(self) -> str:
        """Hash of the resolved config; where it is stored and what tracks it (`_NOT_HASHED`)
        do not change a run.

        Keys added after runs existed are hashed only when they differ from their default
        (`_HASHED_WHEN_SET`), so every earlier run keeps its id.
        """
        payload = self.model_dump(mode="json", exclude=_NOT_HASHED)
        for key, default in _HASHED_WHEN_SET.items():
            *sections, name = key.split(".")
            section = payload
            for part in sections:
                section = section[part]
            if section.get(name) == default:
                del section[name]
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:12]


# Where a run is stored, how it is checkpointed and what it is tracked with do not change
# its results: they are in neither its id nor the config a resume must match.
_NOT_HASHED = {"output_dir", "checkpoint", "tracking"}

# Keys (dotted within a section) newer than the first published runs, with the default
# that leaves them out of the run id. A new key goes here, or its default would move every id.
_HASHED_WHEN_SET: dict[str, Any] = {
    "task": DEFAULT_TASK,
    "strategy": None,
    "train.fused_clipping": False,
}

# The engine features a config can ask for: the key that asks, and whether it does.
_FEATURES: dict[str, tuple[str, Callable[[RunConfig], bool]]] = {
    Feature.CUDA_GRAPHS: ("train.cuda_graphs", lambda c: c.train.cuda_graphs),
    Feature.COMPILE: ("train.compile", lambda c: c.train.compile),
    Feature.ADAPTERS_TOGETHER: ("train.adapters_together", lambda c: c.train.adapters_together),
    Feature.IN_STEP_CHECKPOINTS: (
        "checkpoint.every_updates",
        lambda c: c.checkpoint.every_updates is not None,
    ),
    "accumulation": (
        "train.gradient_accumulation > 1",
        lambda c: c.train.gradient_accumulation > 1,
    ),
}
# Pairs the engine cannot run together: (feature, the one it is not supported with, why).
_UNSUPPORTED_PAIRS: list[tuple[str, str, str]] = [
    (Feature.CUDA_GRAPHS, Feature.COMPILE, ""),
    (Feature.CUDA_GRAPHS, "accumulation", " (a graph records one micro-batch an update)"),
    (Feature.CUDA_GRAPHS, Feature.IN_STEP_CHECKPOINTS, ""),
    (
        Feature.IN_STEP_CHECKPOINTS,
        Feature.ADAPTERS_TOGETHER,
        " (adapters trained together are checkpointed as each one finishes)",
    ),
    (Feature.COMPILE, Feature.ADAPTERS_TOGETHER, ""),
]


def _check_features(config: RunConfig) -> None:
    """Refuse, with the reason, a config asking for features that cannot run together."""
    asked = {name for name, (_, asks) in _FEATURES.items() if asks(config)}
    spec = config.method_spec
    if Feature.ADAPTERS_TOGETHER in asked and not (spec.lora and spec.schedule == INDEPENDENT):
        raise ValueError(
            "train.adapters_together trains one adapter per locale: it needs an independent "
            f"LoRA method, not {config.method}"
        )
    for feature, other, why in _UNSUPPORTED_PAIRS:
        if feature in asked and other in asked:
            raise ValueError(
                f"{_FEATURES[feature][0]} is not supported with {_FEATURES[other][0]}{why}"
            )
    if config.strategy is None:
        return
    name = config.strategy["name"]
    supported = strategy_class(name)
    unsuited = supported.unsuited(spec)
    if unsuited:
        raise ValueError(f"strategy {name} {unsuited}")
    features = supported.supported_features(strategy_settings(config.strategy))
    for feature in sorted(asked & set(Feature)):
        if feature not in features:
            settings = " with these settings" if feature in supported.features else ""
            raise ValueError(f"strategy {name} does not support {_FEATURES[feature][0]}{settings}")


class ConfigError(ValueError):
    """A config file or override that does not describe a valid run."""


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> RunConfig:
    """Read a YAML config (or start empty), apply ``a.b=value`` overrides, validate."""
    raw = read_yaml_mapping(Path(path)) if path is not None else {}
    return with_overrides(raw, overrides, where=str(path) if path else "config")


def read_yaml_mapping(path: Path) -> dict[str, Any]:
    """A YAML file's top-level mapping (empty for an empty file), or a `ConfigError`."""
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    if loaded is not None and not isinstance(loaded, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return loaded or {}


def with_overrides(
    raw: dict[str, Any], overrides: list[str] | None, where: str = "config"
) -> RunConfig:
    """Apply ``a.b=value`` overrides to a raw mapping (not changed) and validate it."""
    raw = copy.deepcopy(raw)
    for override in overrides or []:
        apply_override(raw, override)
    return validate_config(raw, where=where)


def validate_config(raw: dict[str, Any], where: str = "config") -> RunConfig:
    """Validate a raw mapping into a `RunConfig`, with did-you-mean on unknown keys.

    Every problem is reported on one line that names the key and the reason.
    """
    _check_keys(raw, RunConfig, prefix="", where=where)
    try:
        return RunConfig.model_validate(raw)
    except PluginError as error:
        raise ConfigError(f"{where}: {error}") from None
    except ValidationError as error:
        problems = []
        for item in error.errors():
            location = ".".join(str(part) for part in item["loc"]) or "(top level)"
            message = str(item["msg"]).removeprefix("Value error, ")
            # A plug-in's own errors already start with the key they are about.
            plain = not item["loc"] or message.startswith(location)
            problems.append(message if plain else f"{location}: {message}")
        raise ConfigError(f"{where}: {'; '.join(problems)}") from None


def _check_keys(raw: dict[str, Any], model: type[BaseModel], prefix: str, where: str) -> None:
    fields = model.model_fields
    for key, value in raw.items():
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f"; did you mean '{prefix}{close[0]}'?" if close else ""
            known = ", ".join(fields)
            raise ConfigError(f"{where}: unknown key '{prefix}{key}'{hint} (known: {known})")
        annotation = fields[key].annotation
        is_section = isinstance(annotation, type) and issubclass(annotation, BaseModel)
        if isinstance(value, dict) and is_section:
            _check_keys(value, annotation, f"{prefix}{key}.", where)  # type: ignore[arg-type]


def apply_override(raw: dict[str, Any], override: str) -> None:
    """Apply one ``a.b=value`` override (the value read as YAML) to a raw mapping."""
    key, sep, text = override.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {override!r}: expected key=value, e.g. train.epochs=3")
    assign(raw, key, yaml.safe_load(text) if text else None)


def assign(raw: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``raw[a][b] = value`` for the dotted key ``a.b``, creating sections as needed."""
    node = raw
    parts = dotted.split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"key {dotted!r}: {part!r} is not a section")
        node = child
    node[parts[-1]] = value


def config_diff(old: RunConfig, new: RunConfig) -> list[str]:
    """The fields that change a run's results and differ: ``key: old -> new`` lines."""
    before = _flatten(old.model_dump(mode="json", exclude=_NOT_HASHED))
    after = _flatten(new.model_dump(mode="json", exclude=_NOT_HASHED))
    return [
        f"{key}: {before.get(key)!r} -> {after.get(key)!r}"
        for key in sorted(before.keys() | after.keys())
        if before.get(key) != after.get(key)
    ]


def _flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
