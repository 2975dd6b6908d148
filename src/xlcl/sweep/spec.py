"""Sweep files: a base run config, a grid of dotted keys, and variants, expanded into runs.

```yaml
base: ../paper/vanilla.yaml        # a run config: a path (relative to this file) or a mapping
grid:                              # dotted config keys -> lists; the runs are their product
  order: [1, 2, 3, 4, 5]
  train.seed: [42]
cases:                             # optional: settings that vary together, crossed with the
  - {order: 1, train.seed: 42}     #   grid and the variants (an order paired with a seed)
  - {order: 2, train.seed: 43}
variants:                          # optional: settings that only make sense together
  - {method: vanilla}
  - {method: shared-lora, rank: 32}
results: results/paper             # optional default for --results
```

Every combination of the grid, crossed with every case and every variant, sets its keys on
a copy of the base; a case's keys override the grid's, a variant's override both. Each
result is validated into a `RunConfig` whose ``output_dir`` is the sweep's results
directory, and runs with the same run id (the hash of the resolved config) collapse into
one, first one kept.
"""

from __future__ import annotations

import copy
import difflib
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from xlcl.config import (
    ConfigError,
    RunConfig,
    apply_override,
    assign,
    read_yaml_mapping,
    validate_config,
)


class SweepFile(BaseModel):
    """The keys a sweep file may hold (anything else is an error)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    base: str | dict[str, Any] = Field(..., description="run config: a YAML path or a mapping")
    grid: dict[str, list[Any]] = Field(default_factory=dict, description="dotted key -> values")
    cases: list[dict[str, Any]] = Field(
        default_factory=list, description="mappings of dotted keys that vary together"
    )
    variants: list[dict[str, Any]] = Field(
        default_factory=list, description="mappings of dotted keys, crossed with the grid"
    )
    results: str | None = Field(None, description="default results directory")

    @field_validator("grid")
    @classmethod
    def _non_empty(cls, grid: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for key, values in grid.items():
            if not values:
                raise ValueError(f"grid key {key!r} has no values")
        return grid


@dataclass(frozen=True)
class Sweep:
    """The runs of a sweep, in expansion order, all writing to `results`."""

    runs: tuple[RunConfig, ...]
    results: Path
    source: str

    def by_id(self) -> dict[str, RunConfig]:
        """The runs keyed by run id."""
        return {config.run_id: config for config in self.runs}


def load_sweep(
    path: str | Path,
    results: str | Path | None = None,
    overrides: Sequence[str] = (),
) -> Sweep:
    """Read a sweep file and expand it; `overrides` (``a.b=value``) apply to the base."""
    path = Path(path)
    raw = read_yaml_mapping(path)
    try:
        spec = SweepFile.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(_explain(path, error)) from None
    base = spec.base if isinstance(spec.base, dict) else read_yaml_mapping(path.parent / spec.base)
    base = copy.deepcopy(base)
    for override in overrides:
        apply_override(base, override)
    where = results if results is not None else spec.results
    if where is None:
        where = Path("results") / path.stem
    # Absolute: workers (Ray nodes, Slurm jobs) need not start in the driver's directory.
    where = Path(where).resolve()
    runs = expand(base, spec.grid, spec.variants, where, source=str(path), cases=spec.cases)
    runs = tuple(_tracked_as(config, path.stem) for config in runs)
    return Sweep(runs=runs, results=where, source=str(path))


def _tracked_as(config: RunConfig, group: str) -> RunConfig:
    """`config` with its trackers' group (MLflow experiment, W&B group) the sweep's name,
    unless the config names one; the run id does not change."""
    tracking = config.tracking
    if not tracking.enabled or tracking.group is not None:
        return config
    return config.model_copy(update={"tracking": tracking.model_copy(update={"group": group})})


def expand(
    base: Mapping[str, Any],
    grid: Mapping[str, Sequence[Any]],
    variants: Sequence[Mapping[str, Any]],
    results: Path,
    source: str = "sweep",
    cases: Sequence[Mapping[str, Any]] = (),
) -> tuple[RunConfig, ...]:
    """The validated, de-duplicated runs of `base` x product(`grid`) x `cases` x `variants`."""
    keys = list(grid)
    runs: dict[str, RunConfig] = {}
    combinations = itertools.product(
        itertools.product(*(grid[key] for key in keys)), cases or [{}], variants or [{}]
    )
    for values, case, variant in combinations:
        raw = copy.deepcopy(dict(base))
        settings = {**dict(zip(keys, values, strict=True)), **case, **variant}
        for key, value in settings.items():
            assign(raw, key, copy.deepcopy(value))
        raw["output_dir"] = str(results)
        described = ", ".join(f"{key}={value!r}" for key, value in settings.items())
        config = _validate(raw, f"{source} [{described or 'base'}]")
        runs.setdefault(config.run_id, config)
    return tuple(runs.values())


def _validate(raw: dict[str, Any], where: str) -> RunConfig:
    try:
        return validate_config(raw, where=where)
    except ValueError as error:  # ConfigError, or a method/rank mismatch from the model
        message = str(error)
        if "rank" in message:
            message += (
                "\n  hint: ranks apply to LoRA methods only; pair methods with ranks under "
                "'variants:' instead of crossing them in 'grid:'"
            )
        raise ConfigError(message) from None


def _explain(path: Path, error: ValidationError) -> str:
    lines = [f"{path}: invalid sweep file"]
    for item in error.errors():
        location = ".".join(str(part) for part in item["loc"]) or "(top level)"
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            close = difflib.get_close_matches(str(item["loc"][0]), list(SweepFile.model_fields))
            hint = f"; did you mean {close[0]!r}?" if close else ""
            message = f"unknown key{hint} (known: {', '.join(SweepFile.model_fields)})"
        lines.append(f"  {location}: {message}")
    return "\n".join(lines)
