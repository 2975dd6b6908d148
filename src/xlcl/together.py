"""NON-SHARED LoRA with every locale's adapter trained at once over one frozen base.

Training the adapters one by one runs the frozen base once per locale and step, with
batches of one locale. Here one PEFT model holds an adapter and a head per locale, and
every forward pass carries one batch of each locale still training: each sample goes
through its own locale's adapter and head (`AdapterRouter`; the adapters and heads stay
PEFT's, and each is saved in PEFT's format).

Each adapter keeps everything of its own that training one by one has: its batches in the
same order (its step's seed), its loss (the mean over its own tokens), its gradient
clipping, its AdamW and learning-rate schedule, its epochs, its dev F1 and its early
stopping, which restores its best epoch. Adapters share no parameter, so the gradient an
adapter gets is the one it would get alone, up to the padding of the shared batch; with
dropout 0 the results equal training one by one within floating-point tolerance (tested).
With dropout they differ in the masks drawn, not in distribution.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from peft import PeftModel
from peft.tuners.lora import Linear as LoraLinear
from peft.tuners.lora import LoraLayer
from peft.utils.other import ModulesToSaveWrapper

from xlcl.classifier import lora_config
from xlcl.config import LoraSettings, TrainConfig
from xlcl.encode import IGNORE, EncodedSplit, collate, epoch_batches
from xlcl.evaluate.scoring import mixed_precision, score_splits
from xlcl.train import EpochRecord, StepResult, apply_update, optimizer_for, update_due

T = TypeVar("T")
FinishedCallback = Callable[[str, StepResult], None]
AdapterEpochCallback = Callable[[str, EpochRecord, float], None]


class AdapterRouter:
    """Which adapter each sample of the next forward pass goes through.

    A batch is a run of contiguous segments, one per adapter (`set_segments`), or one
    adapter for batches of any size (`set_single`, for scoring). While `route` is active,
    every LoRA layer adds each segment's own adapter output, and the head runs each
    segment's own head. Slicing contiguous segments copies nothing; PEFT's mixed-adapter
    batches (inference only) gather and scatter each sample instead, which made a
    training step 1.8 times slower on a CPU.
    """

    def __init__(self) -> None:
        self.segments: list[tuple[str, int, int]] = []
        self.single: str | None = None

    def set_segments(self, segments: Sequence[tuple[str, int]]) -> None:
        """Route the next batch: `segments` are (adapter, number of samples), in order."""
        bounds = np.cumsum([0, *(count for _, count in segments)])
        self.segments = [
            (name, int(start), int(end))
            for (name, _), start, end in zip(segments, bounds[:-1], bounds[1:], strict=True)
        ]
        self.single = None

    def set_single(self, name: str) -> None:
        """Route every batch through the adapter `name`."""
        self.segments, self.single = [], name

    def segments_for(self, batch_size: int) -> list[tuple[str, int, int]]:
        """(adapter, first row, end row) of each segment of a batch of `batch_size`."""
        if self.single is not None:
            return [(self.single, 0, batch_size)]
        if not self.segments or self.segments[-1][2] != batch_size:
            raise RuntimeError("the router has no adapter for each sample of this batch")
        return self.segments

    @contextmanager
    def route(self, model: PeftModel) -> Iterator[AdapterRouter]:
        """Route the model's LoRA layers and heads for as long as the context lasts."""
        unsupported = {
            type(module).__name__
            for module in model.modules()
            if isinstance(module, LoraLayer) and not isinstance(module, LoraLinear)
        }
        if unsupported:
            raise TypeError(f"cannot route LoRA layers of type {', '.join(sorted(unsupported))}")
        routed: list[torch.nn.Module] = []
        for module in model.modules():
            if isinstance(module, LoraLinear):
                module.forward = partial(self._lora_forward, module)  # type: ignore[method-assign]
            elif isinstance(module, ModulesToSaveWrapper):
                module.forward = partial(self._head_forward, module)  # type: ignore[method-assign]
            else:
                continue
            routed.append(module)
        try:
            yield self
        finally:
            for module in routed:
                del module.forward  # back to the class's forward

    def _lora_forward(self, layer: LoraLinear, x: torch.Tensor) -> torch.Tensor:
        # PEFT's LoRA forward (base + B(A(dropout(x))) * scaling), one adapter per segment.
        result = layer.base_layer(x)
        parts = []
        for name, start, end in self.segments_for(x.shape[0]):
            lora_a, lora_b = layer.lora_A[name], layer.lora_B[name]
            part = x[start:end].to(lora_a.weight.dtype)  # type: ignore[arg-type]
            parts.append(lora_b(lora_a(layer.lora_dropout[name](part))) * layer.scaling[name])
        delta = parts[0] if len(parts) == 1 else torch.cat(parts)
        return result + delta.to(result.dtype)

    def _head_forward(self, head: ModulesToSaveWrapper, x: torch.Tensor) -> torch.Tensor:
        parts = [
            head.modules_to_save[name](x[start:end])
            for name, start, end in self.segments_for(x.shape[0])
        ]
        return parts[0] if len(parts) == 1 else torch.cat(parts)


def add_adapters(model: PeftModel, names: Sequence[str], rank: int, lora: LoraSettings) -> None:
    """Give `model` an adapter and head per name, each a copy of its active adapter.

    The copies start from the same weights as the fresh model one-by-one training builds
    for every locale; the active adapter is removed afterwards.
    """
    template = model.active_adapter
    initial = {
        name.replace(f".{template}.", ".{}."): p.detach().clone()
        for name, p in model.named_parameters()
        if f".{template}." in name
    }
    for name in names:
        model.add_adapter(name, lora_config(rank, lora))
    model.set_adapter(names[0])
    model.delete_adapter(template)
    parameters = dict(model.named_parameters())
    with torch.no_grad():
        for pattern, weights in initial.items():
            for name in names:
                parameters[pattern.format(name)].copy_(weights)
    for name, parameter in parameters.items():
        parameter.requires_grad_(any(f".{adapter}." in name for adapter in names))


def adapter_parameters(model: PeftModel, name: str) -> list[tuple[str, torch.nn.Parameter]]:
    """The adapter `name`'s weights and its head, named as in a one-adapter model."""
    marker = f".{name}."
    return [
        (parameter_name.replace(marker, ".default."), parameter)
        for parameter_name, parameter in model.named_parameters()
        if marker in parameter_name
    ]


@dataclass
class _Adapter:
    """One adapter's own training state."""

    name: str
    train: EncodedSplit
    dev: EncodedSplit
    rng: np.random.Generator
    parameters: list[torch.nn.Parameter]
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    best_weights: list[torch.Tensor]
    loss_sum: torch.Tensor
    non_finite: torch.Tensor
    epoch: int = 0
    batches: list[np.ndarray] = field(default_factory=list)
    position: int = 0
    stale: int = 0
    started: float = 0.0
    result: StepResult = field(default_factory=StepResult)

    @property
    def epoch_done(self) -> bool:
        return self.position >= len(self.batches)


def train_adapters_together(
    model: PeftModel,
    names: Sequence[str],
    train: Sequence[EncodedSplit],
    dev: Sequence[EncodedSplit],
    labels: Sequence[str],
    config: TrainConfig,
    *,
    pad_id: int,
    device: torch.device,
    eval_batch_size: int,
    seeds: Sequence[int],
    on_epoch: AdapterEpochCallback | None = None,
    on_finished: FinishedCallback | None = None,
) -> dict[str, StepResult]:
    """Train the adapters `names` of `model` at once, adapter i on `train[i]` with `seeds[i]`.

    `on_finished` receives each adapter as soon as it stops, with its best weights
    restored, while the others go on training; while it runs, the model routes every
    batch through that adapter (to score or save it). Returns every adapter's result.
    """
    if not (len(names) == len(train) == len(dev) == len(seeds)):
        raise ValueError("names, train, dev and seeds must have one entry per adapter")
    trainer = _Together(model, labels, config, pad_id, device, eval_batch_size, on_epoch)
    adapters = [
        trainer.new_adapter(name, train_split, dev_split, seed)
        for name, train_split, dev_split, seed in zip(names, train, dev, seeds, strict=True)
    ]
    results: dict[str, StepResult] = {}
    active = list(adapters)
    with trainer.router.route(model):
        while True:
            for adapter in [a for a in active if a.epoch_done]:
                if adapter.epoch and trainer.end_epoch(adapter):
                    active.remove(adapter)
                    results[adapter.name] = adapter.result
                    if on_finished is not None:
                        trainer.router.set_single(adapter.name)
                        on_finished(adapter.name, adapter.result)
                else:
                    trainer.start_epoch(adapter)
            if not active:
                return results
            trainer.train_batch(active)


@dataclass
class _Together:
    """What every adapter's training shares: the model, its router and the settings."""

    model: PeftModel
    labels: Sequence[str]
    config: TrainConfig
    pad_id: int
    device: torch.device
    eval_batch_size: int
    on_epoch: AdapterEpochCallback | None
    router: AdapterRouter = field(default_factory=AdapterRouter)

    def new_adapter(self, name: str, train: EncodedSplit, dev: EncodedSplit, seed: int) -> _Adapter:
        """The adapter `name`'s state before its first epoch, as `train_step` starts it."""
        config = self.config
        named = adapter_parameters(self.model, name)
        micro_batches = -(-len(train) // config.batch_size)
        updates_per_epoch = -(-micro_batches // config.gradient_accumulation)
        optimizer, scheduler = optimizer_for(named, config, config.epochs * updates_per_epoch)
        parameters = [p for _, p in named]
        return _Adapter(
            name=name,
            train=train,
            dev=dev,
            rng=np.random.default_rng(seed),
            parameters=parameters,
            optimizer=optimizer,
            scheduler=scheduler,
            best_weights=[p.detach().clone() for p in parameters],
            loss_sum=torch.zeros((), device=self.device),
            non_finite=torch.zeros((), dtype=torch.bool, device=self.device),
        )

    def start_epoch(self, adapter: _Adapter) -> None:
        """Draw the adapter's next epoch of batches from its own generator."""
        adapter.epoch += 1
        adapter.batches = epoch_batches(
            [adapter.train], self.config.batch_size, adapter.rng, self.config.bucket_window
        )
        adapter.position = 0
        adapter.loss_sum.zero_()
        adapter.started = time.perf_counter()

    def train_batch(self, active: Sequence[_Adapter]) -> None:
        """Train every adapter in `active` on its next batch, then step those whose turn it is.

        The batches go through the model in groups of similar length (`length_groups`):
        one padded tensor for all would pad every locale to the longest one's length.
        Adapters share no parameter, so the groups' backward passes add up to the same
        gradients as one pass.
        """
        config = self.config
        self.model.train()
        for group in length_groups(active, self.longest):
            self._forward_backward(group)
        for adapter in active:
            adapter.position += 1
            if update_due(adapter.position, len(adapter.batches), config.gradient_accumulation):
                adapter.non_finite |= apply_update(
                    adapter.parameters, adapter.optimizer, adapter.scheduler, config.max_grad_norm
                )

    @staticmethod
    def longest(adapter: _Adapter) -> int:
        """The subword length of the longest utterance in the adapter's next batch."""
        lengths = adapter.train.lengths[adapter.batches[adapter.position]]
        return int(lengths.max())

    def _forward_backward(self, group: Sequence[_Adapter]) -> None:
        config = self.config
        input_ids: list[np.ndarray] = []
        targets: list[np.ndarray] = []
        segments: list[tuple[str, int]] = []
        for adapter in group:
            indices = adapter.batches[adapter.position]
            input_ids.extend(adapter.train.input_ids[i] for i in indices)
            targets.extend(adapter.train.labels[i] for i in indices)
            segments.append((adapter.name, len(indices)))
        batch = collate(input_ids, targets, self.pad_id).to(self.device)
        self.router.set_segments(segments)
        with mixed_precision(config.precision, self.device):
            logits = self.model(
                input_ids=batch.input_ids, attention_mask=batch.attention_mask
            ).logits
        total = torch.zeros((), device=self.device)
        start = 0
        for adapter, (_, count) in zip(group, segments, strict=True):
            rows = slice(start, start + count)
            start += count
            # The mean over this adapter's own tokens: the loss it gets when trained alone.
            loss = F.cross_entropy(
                logits[rows].flatten(0, 1).float(),
                batch.labels[rows].flatten(),
                ignore_index=IGNORE,
            )
            adapter.loss_sum += loss.detach()
            total = total + loss / config.gradient_accumulation
        total.backward()

    def end_epoch(self, adapter: _Adapter) -> bool:
        """Score the adapter's epoch on its dev set; whether it has finished training."""
        if bool(adapter.non_finite):
            raise FloatingPointError(
                f"non-finite loss or gradient norm for adapter {adapter.name} in epoch "
                f"{adapter.epoch}; the step is stopped"
            )
        config = self.config
        self.router.set_single(adapter.name)
        dev_f1 = score_splits(
            self.model,
            [adapter.dev],
            self.labels,
            self.eval_batch_size,
            self.pad_id,
            self.device,
            config.precision,
        ).f1
        record = EpochRecord(
            epoch=adapter.epoch,
            train_loss=adapter.loss_sum.item() / max(len(adapter.batches), 1),
            dev_f1=dev_f1,
            learning_rate=float(adapter.scheduler.get_last_lr()[0]),
            seconds=time.perf_counter() - adapter.started,
        )
        if adapter.result.add_epoch(record):
            adapter.stale = 0
            _copy(adapter.parameters, into=adapter.best_weights)
        else:
            adapter.stale += 1
        if self.on_epoch is not None:
            self.on_epoch(adapter.name, record, adapter.result.best_dev_f1)
        if adapter.stale < config.patience and adapter.epoch < config.epochs:
            return False
        _copy(adapter.best_weights, into=adapter.parameters)
        adapter.optimizer.zero_grad(set_to_none=True)
        return True


def length_groups(
    items: Sequence[T], length: Callable[[T], int], slack: float = 1.25
) -> list[list[T]]:
    """Split `items` into groups whose `length` differs by at most the factor `slack`.

    Sorted by length, a group starts at its shortest member and takes the next ones while
    they are at most `slack` times as long: padding then wastes at most a fifth of a
    group's tokens at the default slack.
    """
    groups: list[list[T]] = []
    shortest = 0
    for item in sorted(items, key=length):
        if not groups or length(item) > slack * shortest:
            groups.append([])
            shortest = length(item)
        groups[-1].append(item)
    return groups


@torch.no_grad()
def _copy(sources: Sequence[torch.Tensor], into: Sequence[torch.Tensor]) -> None:
    for target, source in zip(into, sources, strict=True):
        target.copy_(source)
