"""Which LoRA runs can train as one group over one encoder, and how groups are formed.

The rules only (no torch here: the sweep driver forms groups); the training is
`xlcl.schedules.grouped`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from xlcl.config import ConfigError, RunConfig
from xlcl.data import resolve_order
from xlcl.schedules import JOINT, SEQUENTIAL


def why_not_grouped(config: RunConfig) -> str | None:
    """Why `config`'s run cannot train in a group, or None when it can."""
    train = config.train
    if not config.method_spec.lora:
        return f"{config.method_spec.label} trains the encoder itself"
    if config.schedule.name not in (SEQUENTIAL.name, JOINT.name):
        return f"its schedule ({config.schedule.name}) trains a fresh adapter per locale"
    if config.strategy is not None:
        return f"its strategy ({config.strategy['name']}) has hooks a group does not run"
    unsupported = {
        "train.compile": train.compile,
        "checkpoint.every_updates": config.checkpoint.every_updates is not None,
    }
    for name, is_set in unsupported.items():
        if is_set:
            return f"{name} is not supported in a group"
    return None


def base_key(config: RunConfig) -> str:
    """What runs must share to train over one encoder: equal keys, one group.

    The encoder and its vocabulary (the trim keeps the tokens of the run's locales), the
    data and its encoding, the precision and device, CUDA graphs (all or none), and the
    dev scoring's batches.
    """
    locales = sorted(resolve_order(config.order, config.locales))
    shared = {
        "model": config.model,
        "task": config.task,
        "data": config.data.model_dump(mode="json"),
        "trim_vocabulary": config.trim_vocabulary,
        "locales": locales if config.trim_vocabulary else None,
        "max_length": config.train.max_length,
        "precision": config.train.precision,
        "device": config.train.device,
        "threads": config.train.threads,
        "deterministic": config.train.deterministic,
        "cuda_graphs": config.train.cuda_graphs,
        "eval_batch_size": config.evaluate.batch_size,
    }
    return json.dumps(shared, sort_keys=True)


def form_groups(configs: Sequence[RunConfig], max_size: int) -> list[list[RunConfig]]:
    """`configs` in groups of at most `max_size` runs sharing a `base_key`, in their order;
    a run that cannot be grouped (`why_not_grouped`) is a group of its own."""
    if max_size < 1:
        raise ValueError(f"a group holds at least 1 run, got {max_size}")
    open_groups: dict[str, list[RunConfig]] = {}
    groups: list[list[RunConfig]] = []
    for config in configs:
        if why_not_grouped(config) is not None:
            groups.append([config])
            continue
        key = base_key(config)
        group = open_groups.get(key)
        if group is None or len(group) == max_size:
            group = open_groups[key] = []
            groups.append(group)
        group.append(config)
    return groups


def check_group(configs: Sequence[RunConfig]) -> None:
    """Raise a one-line ConfigError unless `configs` can train as one group."""
    if not configs:
        raise ConfigError("a group needs at least one run")
    ids = [config.run_id for config in configs]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"a group lists a run twice: {', '.join(ids)}")
    for config in configs:
        reason = why_not_grouped(config)
        if reason is not None:
            raise ConfigError(f"run {config.run_id} cannot train in a group: {reason}")
        if base_key(config) != base_key(configs[0]):
            raise ConfigError(
                f"run {config.run_id} cannot train in a group with {configs[0].run_id}: "
                "they differ in the model, data, vocabulary, precision, device or evaluation"
            )
