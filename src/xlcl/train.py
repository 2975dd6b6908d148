"""The training engine: AdamW epochs with early stopping on the task's dev score.

A step trains one locale (or, for MULTI, all of them) until the dev score has not improved
for `patience` epochs, then restores the best epoch's weights. The optimizer is new at
every step: the paper resets it between locales.

Everything a model (or one adapter of several) needs to train lives in a `Learner`: its
data stream, optimizer, learning-rate schedule, clipping, epoch end, early stopping and
non-finite check. `train_step` drives one learner over one model; `xlcl.together` drives
several adapters' learners over one frozen base. The loss is an `Objective`: the task's
loss plus a strategy's terms.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from transformers import get_linear_schedule_with_warmup

from xlcl.classifier import is_head_parameter, trainable_parameters
from xlcl.config import TrainConfig
from xlcl.encode import Batch, EncodedSplit, collate_batch, epoch_batches
from xlcl.evaluate.scoring import mixed_precision
from xlcl.graphs import WIDTH_STEP, GraphedUpdates

if TYPE_CHECKING:
    from xlcl.strategies import Interleaved, Strategy
    from xlcl.tasks import Task


@dataclass(frozen=True)
class EpochRecord:
    """What one epoch did: a row of the run's training curves."""

    epoch: int
    train_loss: float
    dev_score: float  # the task's metric on the dev set
    learning_rate: float
    seconds: float


@dataclass
class StepResult:
    """The outcome of one training step."""

    best_dev_score: float = float("-inf")
    best_epoch: int = 0
    epochs: list[EpochRecord] = field(default_factory=list)

    def add_epoch(self, record: EpochRecord) -> bool:
        """Record an epoch; whether its dev score is the best yet (its weights are kept)."""
        self.epochs.append(record)
        if record.dev_score > self.best_dev_score:
            self.best_dev_score, self.best_epoch = record.dev_score, record.epoch
            return True
        return False


EpochCallback = Callable[[EpochRecord, float], None]


@dataclass(frozen=True)
class Objective:
    """What training minimises: the task's loss, plus the strategy's terms when it has any."""

    task: Task
    strategy: Strategy | None = None

    def loss(self, model: torch.nn.Module, batch: Batch, outputs: Any) -> torch.Tensor:
        """The loss of `batch` given the model's `outputs` on it (`outputs.logits`)."""
        loss = self.task.loss(outputs.logits, batch.labels)
        if self.strategy is not None:
            extra = self.strategy.loss_terms(model, batch, outputs)
            if extra is not None:
                loss = loss + extra
        return loss

    def adjust_gradients(
        self, model: torch.nn.Module, parameters: Sequence[torch.nn.Parameter]
    ) -> None:
        """Put the strategy's replacement gradients, if it returns any, into `parameters`."""
        if self.strategy is None:
            return
        replaced = self.strategy.gradients(model, [p.grad for p in parameters])
        if replaced is not None:
            for parameter, gradient in zip(parameters, replaced, strict=True):
                parameter.grad = gradient


def forward_backward(
    model: torch.nn.Module,
    batch: Batch,
    objective: Objective,
    autocast: torch.autocast,
    accumulation: int,
) -> torch.Tensor:
    """Accumulate the gradients of `batch`'s loss; the loss, detached.

    No reference to the autograd graph outlives this call: a CUDA graph captured later
    must not meet gradient accumulators of this eager pass.
    """
    with autocast:
        outputs = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
        loss = objective.loss(model, batch, outputs)
    (loss / accumulation).backward()
    return loss.detach()


def optimizer_for(
    named_parameters: Sequence[tuple[str, torch.nn.Parameter]],
    config: TrainConfig,
    total_steps: int,
    capturable: bool = False,
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """AdamW over `named_parameters` (a model's trainable ones), and a linear schedule.

    Biases and norms have no weight decay; the schedule warms up, then decays linearly.

    The classification head (and a sequence classifier's pooler, part of its head: see
    `xlcl.classifier.head_modules`) trains at ``head_learning_rate`` when it is set: a fresh
    head on a pretrained encoder needs a far higher rate than the encoder.

    `capturable` (for CUDA graphs) keeps the learning rates in tensors on the parameters'
    device, which the schedule fills in place, and AdamW's step counts there too.
    """
    head_rate = config.head_learning_rate or config.learning_rate
    groups: dict[tuple[float, float], list[torch.nn.Parameter]] = {}
    for name, parameter in named_parameters:
        is_norm_or_bias = parameter.ndim < 2 or "LayerNorm" in name or "layer_norm" in name
        rate = head_rate if is_head_parameter(name) else config.learning_rate
        decay = 0.0 if is_norm_or_bias else config.weight_decay
        groups.setdefault((rate, decay), []).append(parameter)
    parameters = [p for group in groups.values() for p in group]
    # The fused kernel exists for the CPU and CUDA; elsewhere (mps) torch picks its default.
    fusable = all(p.device.type in ("cpu", "cuda") for p in parameters)
    if config.fused_clipping and not fusable:
        devices = sorted({p.device.type for p in parameters})
        raise ValueError(f"train.fused_clipping needs fused AdamW (cpu, cuda), not on {devices}")
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
    fused_clipping: bool = False,
) -> torch.Tensor:
    """Clip the gradients, step the optimizer and the schedule, clear the gradients.

    Returns whether the gradient norm was non-finite, as a tensor on the device: reading
    it would synchronise with the device, so callers check it once an epoch.
    """
    non_finite = clip_and_step(parameters, optimizer, max_grad_norm, fused_clipping)
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return non_finite


def clip_and_step(
    parameters: Sequence[torch.nn.Parameter],
    optimizer: torch.optim.Optimizer,
    max_grad_norm: float,
    fused_clipping: bool = False,
) -> torch.Tensor:
    """Clip the gradients and step the optimizer; whether the norm was non-finite (device).

    Device work only, so a CUDA graph can record it (the schedule steps on the host).

    With `fused_clipping` (fused AdamW only, see `optimizer_for`) the gradients are not
    scaled in a pass of their own: fused AdamW divides each one by ``grad_scale`` as it
    reads it (how `torch.amp.GradScaler` unscales). The scale is the inverse of
    `clip_grad_norm_`'s factor, so an update under the limit divides by exactly 1 and is
    bit for bit the same; above it, dividing by 1/c instead of multiplying by c rounds
    differently, within an ulp or two of each gradient.
    """
    if not fused_clipping:
        grad_norm = torch.nn.utils.clip_grad_norm_(parameters, max_grad_norm, foreach=True)
        optimizer.step()
        return ~torch.isfinite(grad_norm)
    grads = [p.grad for p in parameters if p.grad is not None]
    grad_norm = torch.nn.utils.get_total_norm(grads, foreach=True)
    clip_coef = torch.clamp(max_grad_norm / (grad_norm + 1e-6), max=1.0)  # clip_grad_norm_'s
    optimizer.grad_scale = 1.0 / clip_coef  # type: ignore[attr-defined]
    optimizer.step()
    optimizer.grad_scale = None  # type: ignore[attr-defined]
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
        """Plain tensors, numbers, strings and containers (see `xlcl.checkpoint`)."""
        return {
            "epoch": self.epoch,
            "batches_done": self.batches_done,
            "loss_sum": self.loss_sum,
            "stale": self.stale,
            "best_dev_score": self.result.best_dev_score,
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
        """The inverse of `to_dict`; also reads the states xlcl wrote before scores had
        their task's name (``dev_f1``) and before GPU generators were kept."""
        records = [
            EpochRecord(**{_LEGACY_NAMES.get(key, key): value for key, value in record.items()})
            for record in values["epochs"]
        ]
        best = values["best_dev_score"] if "best_dev_score" in values else values["best_dev_f1"]
        return cls(
            epoch=values["epoch"],
            batches_done=values["batches_done"],
            loss_sum=values["loss_sum"],
            stale=values["stale"],
            result=StepResult(best, values["best_epoch"], records),
            best_weights=values["best_weights"],
            optimizer=values["optimizer"],
            scheduler=values["scheduler"],
            torch_rng=values["torch_rng"],
            cuda_rng=values.get("cuda_rng"),
        )


_LEGACY_NAMES = {"dev_f1": "dev_score"}
_INTERLEAVED_STREAM = 1  # keeps the interleaved draws apart from the batch order's generator

StateCallback = Callable[[TrainState], None]


class Learner:
    """One model, or one adapter of several (`name`; "" for a model alone), in training.

    Its batches (drawn from its own generator, seeded by the step), its AdamW and
    learning-rate schedule, clipping, epoch bookkeeping, early stopping with its best
    weights, and the non-finite check. Whoever drives it runs the forward and backward
    passes (one model, or many adapters in one pass) and calls `micro_batch_done`;
    `before_update` sees the gradients before each update (a strategy's `gradients` hook).

    With `interleaved` (replay's interleaved policy), `interleaved_batch` names the memory
    utterances of an extra update after every ``interleaved.interval``-th update, and
    `interleaved_update_done` applies it (see `xlcl.strategies.Interleaved`).
    """

    def __init__(
        self,
        name: str,
        named_parameters: Sequence[tuple[str, torch.nn.Parameter]],
        train: Sequence[EncodedSplit],
        dev: Sequence[EncodedSplit],
        config: TrainConfig,
        seed: int,
        device: torch.device,
        resume: TrainState | None = None,
        capturable: bool = False,
        before_update: Callable[[Sequence[torch.nn.Parameter]], None] | None = None,
        interleaved: Interleaved | None = None,
    ) -> None:
        self.name = name
        self.capturable = capturable  # its optimizer's state can be recorded in a CUDA graph
        self.before_update = before_update
        self.interleaved = interleaved
        self.seed = seed
        self.train, self.dev, self.config = list(train), list(dev), config
        self.named_parameters = list(named_parameters)
        self.parameters = [p for _, p in self.named_parameters]
        self.rng = np.random.default_rng(seed)
        self.micro_batches = sum(-(-len(split) // config.batch_size) for split in self.train)
        self.updates_per_epoch = -(-self.micro_batches // config.gradient_accumulation)
        self.optimizer, self.scheduler = optimizer_for(
            self.named_parameters, config, config.epochs * self.updates_per_epoch, capturable
        )
        self.state = resume or TrainState(best_weights=self._snapshot())
        if resume is not None:
            self.optimizer.load_state_dict(resume.optimizer)
            self.scheduler.load_state_dict(resume.scheduler)
        for _ in range(1, self.state.epoch):  # replay the batch orders of finished epochs
            self._draw_batches()
        self.batches: list[np.ndarray] = []
        self.loss_sum = torch.tensor(self.state.loss_sum, device=device)
        # Checked when the epoch ends, not after every update: no host-device sync per batch.
        self.non_finite = torch.zeros((), dtype=torch.bool, device=device)
        self.started = 0.0
        self.finished = False

    @property
    def result(self) -> StepResult:
        """The epochs so far and the best one."""
        return self.state.result

    @property
    def epoch_done(self) -> bool:
        """Whether every batch of the current epoch has been trained on."""
        return self.state.batches_done >= len(self.batches)

    def start_epoch(self) -> None:
        """Draw this epoch's batches; a resumed epoch continues at its data position."""
        self.batches = self._draw_batches()
        self.started = time.perf_counter()

    def next_batch(self) -> np.ndarray:
        """Indices (into the concatenated train splits) of the next micro-batch."""
        return self.batches[self.state.batches_done]

    def micro_batch_done(self, loss: torch.Tensor) -> bool:
        """Count a micro-batch whose gradients are in; update when due. Whether it updated."""
        self.loss_sum += loss
        self.state.batches_done += 1
        accumulation = self.config.gradient_accumulation
        if not update_due(self.state.batches_done, len(self.batches), accumulation):
            return False
        if self.before_update is not None:
            self.before_update(self.parameters)
        self.non_finite |= apply_update(
            self.parameters,
            self.optimizer,
            self.scheduler,
            self.config.max_grad_norm,
            self.config.fused_clipping,
        )
        return True

    def interleaved_batch(self) -> np.ndarray | None:
        """Indices (into the concatenated interleaved memory) of the extra update due after
        the update just taken, or None when none is due.

        Drawn from a generator seeded by the step's seed and the update's number in the
        step: a run resumed inside the step draws the same, with no generator to keep.
        """
        plan = self.interleaved
        if plan is None:
            return None
        update = (self.state.epoch - 1) * self.updates_per_epoch + self.updates_done
        if update % plan.interval != 0:
            return None
        total = sum(len(split) for split in plan.memory)
        rng = np.random.default_rng([self.seed, _INTERLEAVED_STREAM, update])
        return rng.choice(total, size=min(plan.batch_size, total), replace=False)

    def interleaved_update_done(self) -> None:
        """Apply the extra update whose gradients are in: clipping and AdamW as any update,
        but not the learning-rate schedule, which counts the step's own updates only."""
        if self.before_update is not None:
            self.before_update(self.parameters)
        self.non_finite |= clip_and_step(
            self.parameters, self.optimizer, self.config.max_grad_norm, self.config.fused_clipping
        )
        self.optimizer.zero_grad(set_to_none=True)

    def updated_elsewhere(self, loss: torch.Tensor, non_finite: torch.Tensor) -> None:
        """Count a micro-batch whose whole update ran elsewhere (a CUDA graph's replay)."""
        self.loss_sum += loss
        self.non_finite |= non_finite
        self.state.batches_done += 1
        self.scheduler.step()

    @property
    def updates_done(self) -> int:
        """Optimizer updates in the current epoch so far."""
        return -(-self.state.batches_done // self.config.gradient_accumulation)

    def check_finite(self) -> None:
        """Stop the step if a loss or gradient norm of this epoch was not finite."""
        if bool(self.non_finite):
            who = f" for adapter {self.name}" if self.name else ""
            raise FloatingPointError(
                f"non-finite loss or gradient norm{who} in epoch {self.state.epoch}; "
                "the step is stopped"
            )

    def end_epoch(self, dev_score: float, on_epoch: EpochCallback | None = None) -> None:
        """Record the epoch with its dev score; keep its weights if best; stop when due.

        When training stops, the best epoch's weights are back in the model.
        """
        state = self.state
        record = EpochRecord(
            epoch=state.epoch,
            train_loss=self.loss_sum.item() / max(self.micro_batches, 1),
            dev_score=dev_score,
            learning_rate=float(self.scheduler.get_last_lr()[0]),
            seconds=time.perf_counter() - self.started,
        )
        if state.result.add_epoch(record):
            state.stale = 0
            _copy(self.parameters, into=[state.best_weights[n] for n, _ in self.named_parameters])
        else:
            state.stale += 1
        if on_epoch is not None:
            on_epoch(record, state.result.best_dev_score)
        self.finished = state.stale >= self.config.patience or state.epoch >= self.config.epochs
        state.epoch, state.batches_done, state.loss_sum = state.epoch + 1, 0, 0.0
        self.loss_sum.zero_()
        if self.finished:
            _copy([state.best_weights[n] for n, _ in self.named_parameters], into=self.parameters)
            self.optimizer.zero_grad(set_to_none=True)

    def snapshot(self, device: torch.device) -> TrainState:
        """The state to continue this step from the current batch (a checkpoint inside it)."""
        state = self.state
        state.loss_sum = self.loss_sum.item()
        state.optimizer, state.scheduler = self.optimizer.state_dict(), self.scheduler.state_dict()
        state.torch_rng = torch.get_rng_state()
        if device.type == "cuda":
            state.cuda_rng = torch.cuda.get_rng_state_all()
        return state

    def _draw_batches(self) -> list[np.ndarray]:
        return epoch_batches(
            self.train, self.config.batch_size, self.rng, self.config.bucket_window
        )

    def _snapshot(self) -> dict[str, torch.Tensor]:
        return {name: p.detach().clone() for name, p in self.named_parameters}


def train_step(
    model: torch.nn.Module,
    train: Sequence[EncodedSplit],
    dev: Sequence[EncodedSplit],
    labels: Sequence[str],
    config: TrainConfig,
    *,
    objective: Objective,
    pad_id: int,
    device: torch.device,
    eval_batch_size: int,
    seed: int,
    on_epoch: EpochCallback | None = None,
    resume: TrainState | None = None,
    save_every: int | None = None,
    on_save: StateCallback | None = None,
    interleaved: Interleaved | None = None,
) -> StepResult:
    """Train `model` in place on `train`; keep the weights of the best dev-score epoch.

    Every `save_every` optimizer updates, `on_save` receives the state to continue from;
    `resume` continues from such a state (the model must already hold its weights).
    `interleaved` adds extra updates on a memory between the step's own (a strategy's
    `StepPlan.interleaved`); they run eagerly, so not with ``cuda_graphs``.
    """
    if interleaved is not None and config.cuda_graphs:
        raise ValueError("interleaved memory updates are not supported with train.cuda_graphs")
    torch.manual_seed(seed)
    # Graphs need one micro-batch an update; a step retried after running out of memory
    # (half the batch, twice the accumulation) runs eagerly.
    graphs = config.cuda_graphs and config.gradient_accumulation == 1
    learner = Learner(
        "",
        trainable_parameters(model),
        train,
        dev,
        config,
        seed,
        device,
        resume,
        graphs,
        before_update=partial(objective.adjust_gradients, model),
        interleaved=interleaved,
    )
    if resume is not None:
        if resume.torch_rng is not None:
            torch.set_rng_state(resume.torch_rng)
        if resume.cuda_rng is not None and device.type == "cuda":
            torch.cuda.set_rng_state_all(resume.cuda_rng)
    autocast = mixed_precision(config.precision, device)
    graphed = _graphed_updates(model, learner, objective, device) if graphs else None
    task = objective.task
    while not learner.finished:
        learner.start_epoch()
        model.train()
        while not learner.epoch_done:
            indices = learner.next_batch()
            if graphed is not None and len(indices) == config.batch_size:
                batch = collate_batch(learner.train, indices, pad_id, WIDTH_STEP)
                learner.updated_elsewhere(*graphed.update(batch))
            else:
                batch = collate_batch(learner.train, indices, pad_id).to(device)
                loss = forward_backward(
                    model, batch, objective, autocast, config.gradient_accumulation
                )
                if not learner.micro_batch_done(loss):
                    continue
            memory = learner.interleaved_batch()
            if memory is not None:
                assert interleaved is not None, "a memory batch comes from an interleaved plan"
                batch = collate_batch(interleaved.memory, memory, pad_id).to(device)
                forward_backward(model, batch, objective, autocast, accumulation=1)
                learner.interleaved_update_done()
            due = save_every and on_save and learner.updates_done % save_every == 0
            if due and not learner.epoch_done:
                learner.check_finite()
                on_save(learner.snapshot(device))  # type: ignore[misc]
        learner.check_finite()
        dev_score = task.score(
            model, learner.dev, labels, eval_batch_size, pad_id, device, config.precision
        ).value
        learner.end_epoch(dev_score, on_epoch)
    return learner.result


def _graphed_updates(
    model: torch.nn.Module, learner: Learner, objective: Objective, device: torch.device
) -> GraphedUpdates:
    """The learner's update (objective, clipping, AdamW) recorded per batch width."""
    uncached = mixed_precision(learner.config.precision, device, cache=False)  # capture needs it

    def one_update(batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        loss = forward_backward(model, batch, objective, uncached, accumulation=1)
        config = learner.config
        return loss, clip_and_step(
            learner.parameters, learner.optimizer, config.max_grad_norm, config.fused_clipping
        )

    return GraphedUpdates(one_update, [learner.optimizer], device)


@torch.no_grad()
def _copy(sources: Sequence[torch.Tensor], into: Sequence[torch.Tensor]) -> None:
    for target, source in zip(into, sources, strict=True):
        target.copy_(source)
