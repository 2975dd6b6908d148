"""One training step of the protocol: AdamW epochs with early stopping on dev span F1.

A step trains one locale (or, for MULTI, all of them) until the dev F1 has not improved
for `patience` epochs, then restores the best epoch's weights. The optimizer is new at
every step: the paper resets it between locales.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from transformers import get_linear_schedule_with_warmup

from xlcl.classifier import trainable_parameters
from xlcl.config import TrainConfig
from xlcl.encode import EncodedSplit, iterate_batches
from xlcl.evaluate.scoring import score_splits


@dataclass(frozen=True)
class EpochRecord:
    """What one epoch did: a row of the run's training curves."""

    epoch: int
    train_loss: float
    dev_f1: float
    learning_rate: float
    seconds: float


@dataclass
class StepResult:
    """The outcome of one training step."""

    best_dev_f1: float = float("-inf")
    best_epoch: int = 0
    epochs: list[EpochRecord] = field(default_factory=list)


EpochCallback = Callable[[EpochRecord, float], None]


def optimizer_for(
    model: torch.nn.Module, config: TrainConfig, total_steps: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """AdamW without weight decay on biases and norms, and a linear schedule with warm-up."""
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for name, parameter in trainable_parameters(model):
        is_norm_or_bias = parameter.ndim < 2 or "LayerNorm" in name or "layer_norm" in name
        (no_decay if is_norm_or_bias else decay).append(parameter)
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=config.learning_rate)
    warmup = int(config.warmup_ratio * total_steps)
    return optimizer, get_linear_schedule_with_warmup(optimizer, warmup, total_steps)


def train_step(
    model: torch.nn.Module,
    train: Sequence[EncodedSplit],
    dev: Sequence[EncodedSplit],
    labels: Sequence[str],
    config: TrainConfig,
    *,
    pad_id: int,
    device: torch.device,
    eval_batch_size: int,
    seed: int,
    on_epoch: EpochCallback | None = None,
) -> StepResult:
    """Train `model` in place on `train`; keep the weights of the best dev-F1 epoch."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    batches_per_epoch = sum(-(-len(split) // config.batch_size) for split in train)
    optimizer, scheduler = optimizer_for(model, config, config.epochs * batches_per_epoch)
    parameters = [p for _, p in trainable_parameters(model)]
    result = StepResult()
    best_state = _snapshot(model)
    stale = 0
    for epoch in range(1, config.epochs + 1):
        started = time.perf_counter()
        model.train()
        loss_sum = torch.zeros((), device=device)
        for batch in iterate_batches(train, config.batch_size, pad_id, rng):
            batch = batch.to(device)
            output = model(
                input_ids=batch.input_ids,
                attention_mask=batch.attention_mask,
                labels=batch.labels,
            )
            output.loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(parameters, config.max_grad_norm)
            if not torch.isfinite(grad_norm):
                raise FloatingPointError(
                    f"non-finite gradient norm at epoch {epoch}; the step is stopped"
                )
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            loss_sum += output.loss.detach()
        dev_f1 = score_splits(model, dev, labels, eval_batch_size, pad_id, device).f1
        record = EpochRecord(
            epoch=epoch,
            train_loss=loss_sum.item() / max(batches_per_epoch, 1),
            dev_f1=dev_f1,
            learning_rate=float(scheduler.get_last_lr()[0]),
            seconds=time.perf_counter() - started,
        )
        result.epochs.append(record)
        if dev_f1 > result.best_dev_f1:
            result.best_dev_f1, result.best_epoch, stale = dev_f1, epoch, 0
            best_state = _snapshot(model)
        else:
            stale += 1
        if on_epoch is not None:
            on_epoch(record, result.best_dev_f1)
        if stale >= config.patience:
            break
    _restore(model, best_state)
    return result


def _snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in trainable_parameters(model)}


def _restore(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        for name, parameter in trainable_parameters(model):
            parameter.copy_(state[name])
