"""One training step of the protocol: AdamW epochs with early stopping on dev span F1.

A step trains one locale (or, for MULTI, all of them) until the dev F1 has not improved
for `patience` epochs, then restores the best epoch's weights. The optimizer is new at
every step: the paper resets it between locales.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from transformers import get_linear_schedule_with_warmup

from xlcl.classifier import trainable_parameters
from xlcl.config import TrainConfig
from xlcl.encode import Batch, EncodedSplit, collate_batch, epoch_batches
from xlcl.evaluate.scoring import mixed_precision, score_splits
from xlcl.graphs import WIDTH_STEP, GraphedUpdates


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

    def add_epoch(self, record: EpochRecord) -> bool:
        """Record an epoch; whether its dev F1 is the best yet (its weights are kept)."""
        self.epochs.append(record)
        if record.dev_f1 > self.best_dev_f1:
            self.best_dev_f1, self.best_epoch = record.dev_f1, record.epoch
            return True
        return False


EpochCallback = Callable[[EpochRecord, float], None]


def optimizer_for(
    named_parameters: Sequence[tuple[str, torch.nn.Parameter]],
    config: TrainConfig,
    total_steps: int,
    capturable: bool = False,
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """AdamW over `named_parameters` (a model's trainable ones), and a linear schedule.

    Biases and norms have no weight decay; the schedule warms up, then decays linearly.

    The classification head trains at ``head_learning_rate`` when it is set: a fresh head
    on a pretrained encoder needs a far higher rate than the encoder.

    `capturable` (for CUDA graphs) keeps the learning rates in tensors on the parameters'
    device, which the schedule fills in place, and AdamW's step counts there too.
    """
    head_rate = config.head_learning_rate or config.learning_rate
    groups: dict[tuple[float, float], list[torch.nn.Parameter]] = {}
    for name, parameter in named_parameters:
        is_norm_or_bias = parameter.ndim < 2 or "LayerNorm" in name or "layer_norm" in name
        rate = head_rate if "classifier" in name else config.learning_rate
        decay = 0.0 if is_norm_or_bias else config.weight_decay
        groups.setdefault((rate, decay), []).append(parameter)
    parameters = [p for group in groups.values() for p in group]
    # The fused kernel exists for the CPU and CUDA; elsewhere (mps) torch picks its default.
    fusable = all(p.device.type in ("cpu", "cuda") for p in parameters)
    device = parameters[0].device if parameters else torch.device("cpu")

    def as_lr(value: float) -> float | torch.Tensor:
        return torch.tensor(value, device=device) if capturable else value

    optimizer = torch.optim.AdamW(
        [{"params": ps, "lr": as_lr(lr), "weight_decay": wd} for (lr, wd), ps in groups.items()],
        lr=as_lr(config.learning_rate),
        fused=fusable or None,
        capturable=capturable,
    )
    warmup = int(config.warmup_ratio * total_steps)
    return optimizer, get_linear_schedule_with_warmup(optimizer, warmup, total_steps)


def update_due(micro_batches_done: int, micro_batches: int, accumulation: int) -> bool:
    """Whether the optimizer steps after this micro-batch: every `accumulation`, and last."""
    return micro_batches_done % accumulation == 0 or micro_batches_done == micro_batches


def apply_update(
    parameters: Sequence[torch.nn.Parameter],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    max_grad_norm: float,
) -> torch.Tensor:
    """Clip the gradients, step the optimizer and the schedule, clear the gradients.

    Returns whether the gradient norm was non-finite, as a tensor on the device: reading
    it would synchronise with the device, so callers check it once an epoch.
    """
    non_finite = clip_and_step(parameters, optimizer, max_grad_norm)
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return non_finite


def clip_and_step(
    parameters: Sequence[torch.nn.Parameter], optimizer: torch.optim.Optimizer, max_grad_norm: float
) -> torch.Tensor:
    """Clip the gradients and step the optimizer; whether the norm was non-finite (device).

    Device work only, so a CUDA graph can record it (the schedule steps on the host).
    """
    grad_norm = torch.nn.utils.clip_grad_norm_(parameters, max_grad_norm, foreach=True)
    optimizer.step()
    return ~torch.isfinite(grad_norm)


@dataclass
class TrainState:
    """Where a training step stands after some batches: enough to continue it exactly.

    The batch order is not stored: it is replayed from the step's seed.
    """

    epoch: int = 1
    batches_done: int = 0
    loss_sum: float = 0.0
    stale: int = 0
    result: StepResult = field(default_factory=StepResult)
    best_weights: dict[str, torch.Tensor] = field(default_factory=dict)
    optimizer: dict[str, Any] = field(default_factory=dict)
    scheduler: dict[str, Any] = field(default_factory=dict)
    torch_rng: torch.Tensor | None = None
    cuda_rng: list[torch.Tensor] | None = None  # dropout on a GPU draws from these

    def to_dict(self) -> dict[str, Any]:
        """Plain tensors, numbers and lists (loadable with ``weights_only=True``)."""
        return {
            "epoch": self.epoch,
            "batches_done": self.batches_done,
            "loss_sum": self.loss_sum,
            "stale": self.stale,
            "best_dev_f1": self.result.best_dev_f1,
            "best_epoch": self.result.best_epoch,
            "epochs": [asdict(record) for record in self.result.epochs],
            "best_weights": self.best_weights,
            "optimizer": self.optimizer,
            "scheduler": self.scheduler,
            "torch_rng": self.torch_rng,
            "cuda_rng": self.cuda_rng,
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainState:
        """The inverse of `to_dict`."""
        result = StepResult(
            values["best_dev_f1"],
            values["best_epoch"],
            [EpochRecord(**record) for record in values["epochs"]],
        )
        return cls(
            epoch=values["epoch"],
            batches_done=values["batches_done"],
            loss_sum=values["loss_sum"],
            stale=values["stale"],
            result=result,
            best_weights=values["best_weights"],
            optimizer=values["optimizer"],
            scheduler=values["scheduler"],
            torch_rng=values["torch_rng"],
            cuda_rng=values.get("cuda_rng"),  # absent from checkpoints of xlcl before it
        )


StateCallback = Callable[[TrainState], None]


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
    resume: TrainState | None = None,
    save_every: int | None = None,
    on_save: StateCallback | None = None,
) -> StepResult:
    """Train `model` in place on `train`; keep the weights of the best dev-F1 epoch.

    Every `save_every` optimizer updates, `on_save` receives the state to continue from;
    `resume` continues from such a state (the model must already hold its weights).
    """
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    micro_batches = sum(-(-len(split) // config.batch_size) for split in train)
    updates_per_epoch = -(-micro_batches // config.gradient_accumulation)
    # Graphs need one micro-batch an update; a step retried after running out of memory
    # (half the batch, twice the accumulation) runs eagerly.
    graphs = config.cuda_graphs and config.gradient_accumulation == 1
    optimizer, scheduler = optimizer_for(
        trainable_parameters(model), config, config.epochs * updates_per_epoch, graphs
    )
    parameters = [p for _, p in trainable_parameters(model)]
    state = resume or TrainState(best_weights=_snapshot(model))
    if resume is not None:
        optimizer.load_state_dict(resume.optimizer)
        scheduler.load_state_dict(resume.scheduler)
        if resume.torch_rng is not None:
            torch.set_rng_state(resume.torch_rng)
        if resume.cuda_rng is not None and device.type == "cuda":
            torch.cuda.set_rng_state_all(resume.cuda_rng)
    for _ in range(1, state.epoch):  # replay the batch orders of finished epochs
        epoch_batches(train, config.batch_size, rng, config.bucket_window)
    result = state.result
    autocast = mixed_precision(config.precision, device)
    graphed = None
    if graphs:
        uncached = mixed_precision(config.precision, device, cache=False)  # capture needs it

        def one_update(batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
            loss = _forward_backward(model, batch, uncached, accumulation=1)
            return loss, clip_and_step(parameters, optimizer, config.max_grad_norm)

        graphed = GraphedUpdates(one_update, optimizer, device)
    while state.epoch <= config.epochs:
        started = time.perf_counter()
        model.train()
        loss_sum = torch.tensor(state.loss_sum, device=device)
        # Checked when the epoch ends, not after every update: no host-device sync per batch.
        non_finite = torch.zeros((), dtype=torch.bool, device=device)
        batches = epoch_batches(train, config.batch_size, rng, config.bucket_window)
        for index in range(state.batches_done, len(batches)):
            finished = index + 1
            if graphed is not None and len(batches[index]) == config.batch_size:
                batch = collate_batch(train, batches[index], pad_id, WIDTH_STEP)
                loss, failed = graphed.update(batch)
                loss_sum += loss
                non_finite |= failed
                scheduler.step()
            else:
                batch = collate_batch(train, batches[index], pad_id).to(device)
                loss_sum += _forward_backward(model, batch, autocast, config.gradient_accumulation)
                if not update_due(finished, len(batches), config.gradient_accumulation):
                    continue
                non_finite |= apply_update(parameters, optimizer, scheduler, config.max_grad_norm)
            update = -(-finished // config.gradient_accumulation)
            if save_every and on_save and update % save_every == 0 and finished < len(batches):
                _stop_if(non_finite, state.epoch)
                state.batches_done, state.loss_sum = finished, loss_sum.item()
                state.optimizer, state.scheduler = optimizer.state_dict(), scheduler.state_dict()
                state.torch_rng = torch.get_rng_state()
                if device.type == "cuda":
                    state.cuda_rng = torch.cuda.get_rng_state_all()
                on_save(state)
        _stop_if(non_finite, state.epoch)
        dev_f1 = score_splits(
            model, dev, labels, eval_batch_size, pad_id, device, config.precision
        ).f1
        record = EpochRecord(
            epoch=state.epoch,
            train_loss=loss_sum.item() / max(micro_batches, 1),
            dev_f1=dev_f1,
            learning_rate=float(scheduler.get_last_lr()[0]),
            seconds=time.perf_counter() - started,
        )
        if result.add_epoch(record):
            state.stale = 0
            _copy_weights(model, state.best_weights)
        else:
            state.stale += 1
        if on_epoch is not None:
            on_epoch(record, result.best_dev_f1)
        state.epoch, state.batches_done, state.loss_sum = state.epoch + 1, 0, 0.0
        if state.stale >= config.patience:
            break
    _restore(model, state.best_weights)
    return result


def _forward_backward(
    model: torch.nn.Module, batch: Batch, autocast: torch.autocast, accumulation: int
) -> torch.Tensor:
    """Accumulate the gradients of `batch`'s loss; the loss, detached.

    No reference to the autograd graph outlives this call: a CUDA graph captured later
    must not meet gradient accumulators of this eager pass.
    """
    with autocast:
        loss = model(
            input_ids=batch.input_ids, attention_mask=batch.attention_mask, labels=batch.labels
        ).loss
    (loss / accumulation).backward()
    return loss.detach()


def _stop_if(non_finite: torch.Tensor, epoch: int) -> None:
    if bool(non_finite):
        raise FloatingPointError(
            f"non-finite loss or gradient norm in epoch {epoch}; the step is stopped"
        )


def _snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in trainable_parameters(model)}


def _copy_weights(model: torch.nn.Module, into: dict[str, torch.Tensor]) -> None:
    """Overwrite the snapshot `into` in place: no second copy of the weights at any time."""
    with torch.no_grad():
        for name, parameter in trainable_parameters(model):
            into[name].copy_(parameter)


def _restore(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        for name, parameter in trainable_parameters(model):
            parameter.copy_(state[name])
