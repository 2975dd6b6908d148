"""NON-SHARED LoRA with every locale's adapter trained at once over one frozen base.

Training the adapters one by one runs the frozen base once per locale and step, with
batches of one locale. Here one PEFT model holds an adapter and a head per locale, and
every forward pass carries one batch of each locale still training: each sample goes
through its own locale's adapter and head (`AdapterRouter`; the adapters and heads stay
PEFT's, and each is saved in PEFT's format).

Each adapter is a `xlcl.train.Learner`, as in one-by-one training: its batches in the
same order (its step's seed), its loss (the objective on its own rows), its gradient
clipping, its AdamW and learning-rate schedule, its epochs, its dev score and its early
stopping, which restores its best epoch. Adapters share no parameter, so the gradient an
adapter gets is the one it would get alone, up to the padding of the shared batch; with
dropout 0 the results equal training one by one within floating-point tolerance (tested).
With dropout they differ in the masks drawn, not in distribution.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from typing import TypeVar

import numpy as np
import torch
from peft import PeftModel, TaskType
from peft.tuners.lora import Linear as LoraLinear
from peft.tuners.lora import LoraLayer
from peft.utils.other import ModulesToSaveWrapper

from xlcl.classifier import head_modules, lora_config
from xlcl.config import LoraSettings, TrainConfig
from xlcl.encode import Batch, EncodedSplit, collate, gather
from xlcl.evaluate.scoring import mixed_precision
from xlcl.graphs import WIDTH_STEP, GraphedUpdates, Outputs
from xlcl.train import EpochRecord, Learner, Objective, StepResult, clip_and_step

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

    # Devices where consecutive segments of one size and rank, without LoRA dropout, run as
    # batched matmuls: a GPU, where a matmul's launch costs more than its arithmetic at
    # these sizes. On a CPU the per-segment matmuls are as fast and keep results
    # bit-identical to earlier versions; tests switch batching on there to check it.
    batched_devices: frozenset[str] = frozenset({"cuda"})

    def __init__(self) -> None:
        self.segments: list[tuple[str, int, int]] = []
        self.single: str | None = None
        self._scalings: dict[tuple[int, tuple[str, ...]], torch.Tensor] = {}

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
        segments = self.segments_for(x.shape[0])
        batched = x.device.type in self.batched_devices
        parts = []
        for run in _batchable_runs(layer, segments) if batched else [[s] for s in segments]:
            if len(run) > 1:
                parts.append(self._batched_delta(layer, run, x))
                continue
            name, start, end = run[0]
            lora_a, lora_b = layer.lora_A[name], layer.lora_B[name]
            part = x[start:end].to(lora_a.weight.dtype)  # type: ignore[arg-type]
            parts.append(lora_b(lora_a(layer.lora_dropout[name](part))) * layer.scaling[name])
        delta = parts[0] if len(parts) == 1 else torch.cat(parts)
        return result + delta.to(result.dtype)

    def _batched_delta(
        self, layer: LoraLinear, run: Sequence[tuple[str, int, int]], x: torch.Tensor
    ) -> torch.Tensor:
        """The LoRA outputs of consecutive segments of one size and rank, in two batched
        matmuls over the stacked adapters (2 kernels instead of 2 per segment)."""
        names = [name for name, _, _ in run]
        a = torch.stack([_weight(layer.lora_A[name]) for name in names])  # (k, r, in)
        b = torch.stack([_weight(layer.lora_B[name]) for name in names])  # (k, out, r)
        part = x[run[0][1] : run[-1][2]].to(a.dtype)
        rows = part.reshape(len(names), -1, part.shape[-1])  # each segment's rows, flattened
        key = (id(layer), tuple(names))
        scaling = self._scalings.get(key)
        if scaling is None or scaling.device != a.device:  # made once: no copy per pass
            values = [layer.scaling[name] for name in names]
            scaling = torch.tensor(values, dtype=a.dtype, device=a.device).view(-1, 1, 1)
            self._scalings[key] = scaling
        delta = torch.bmm(torch.bmm(rows, a.transpose(1, 2)), b.transpose(1, 2)) * scaling
        return delta.reshape(*part.shape[:-1], b.shape[1])

    def _head_forward(self, head: ModulesToSaveWrapper, x: torch.Tensor) -> torch.Tensor:
        parts = [
            head.modules_to_save[name](x[start:end])
            for name, start, end in self.segments_for(x.shape[0])
        ]
        return parts[0] if len(parts) == 1 else torch.cat(parts)


def _weight(module: torch.nn.Module) -> torch.Tensor:
    weight = module.weight
    assert isinstance(weight, torch.Tensor), "a LoRA matrix is a linear layer's weight"
    return weight


def _batchable_runs(
    layer: LoraLinear, segments: Sequence[tuple[str, int, int]]
) -> list[list[tuple[str, int, int]]]:
    """`segments` cut into runs of consecutive segments that one batched matmul can take:
    the same number of rows, the same rank, no dropout and no bias."""

    def key(segment: tuple[str, int, int]) -> tuple[int, int] | None:
        name, start, end = segment
        plain = isinstance(layer.lora_dropout[name], torch.nn.Identity)
        plain = plain and layer.lora_B[name].bias is None and not layer.use_dora.get(name)
        return (end - start, layer.r[name]) if plain else None

    runs: list[list[tuple[str, int, int]]] = []
    for segment in segments:
        found = key(segment)
        if runs and found is not None and key(runs[-1][-1]) == found:
            runs[-1].append(segment)
        else:
            runs.append([segment])
    return runs


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
    task_type = TaskType(model.peft_config[template].task_type)
    head = head_modules(model.get_base_model(), task_type)
    for name in names:
        model.add_adapter(name, lora_config(rank, lora, task_type, head))
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


def train_adapters_together(
    model: PeftModel,
    names: Sequence[str],
    train: Sequence[Sequence[EncodedSplit]],
    dev: Sequence[EncodedSplit],
    labels: Sequence[str],
    config: TrainConfig,
    *,
    objective: Objective,
    pad_id: int,
    device: torch.device,
    eval_batch_size: int,
    seeds: Sequence[int],
    on_epoch: AdapterEpochCallback | None = None,
    on_finished: FinishedCallback | None = None,
) -> dict[str, StepResult]:
    """Train the adapters `names` of `model` at once, adapter i on `train[i]` with `seeds[i]`.

    Each adapter is a `Learner` of its own, as one-by-one training has it. `on_finished`
    receives each adapter as soon as it stops, with its best weights restored, while the
    others go on training; while it runs, the model routes every batch through that
    adapter (to score or save it). Returns every adapter's result.
    """
    if not (len(names) == len(train) == len(dev) == len(seeds)):
        raise ValueError("names, train, dev and seeds must have one entry per adapter")
    learners = [
        Learner(
            name,
            adapter_parameters(model, name),
            splits,
            [dev_split],
            config,
            seed,
            device,
            capturable=graphed(config),
        )
        for name, splits, dev_split, seed in zip(names, train, dev, seeds, strict=True)
    ]
    results: dict[str, StepResult] = {}

    def finished(learner: Learner) -> None:
        results[learner.name] = learner.result
        if on_finished is not None:
            on_finished(learner.name, learner.result)

    train_learners_together(
        model,
        learners,
        labels,
        objective=objective,
        pad_id=pad_id,
        device=device,
        eval_batch_size=eval_batch_size,
        on_epoch=on_epoch,
        on_finished=finished,
    )
    return results


def train_learners_together(
    model: PeftModel,
    learners: Sequence[Learner],
    labels: Sequence[str],
    *,
    objective: Objective,
    pad_id: int,
    device: torch.device,
    eval_batch_size: int,
    on_epoch: AdapterEpochCallback | None = None,
    on_finished: Callable[[Learner], Learner | None] | None = None,
    on_failed: Callable[[Learner, FloatingPointError], None] | None = None,
) -> None:
    """Train the adapters of `learners` (each named by its adapter) over `model` at once.

    Every pass carries the next batch of each learner still training, each through its
    own adapter. A learner's epoch ends with its own dev score and early stopping; when it
    stops (best weights restored), `on_finished` sees it while the model routes every batch
    through its adapter, and may return the learner of that adapter's next step (a new
    optimizer and schedule, as a run alone starts each step), which joins the next pass.
    Training ends when no learner is left. The learners share one precision.

    A learner whose epoch had a non-finite loss or gradient norm stops the whole training
    (`Learner.check_finite`), unless `on_failed` takes it: then that learner alone is
    dropped and the others go on. Its adapter is its own, so its NaNs reach no other.
    """
    precision = learners[0].config.precision if learners else "fp32"
    router = AdapterRouter()
    graphs = GroupGraphs(model, router, objective, precision, device)
    for learner in learners:
        learner.start_epoch()
    active = list(learners)
    with router.route(model):
        while active:
            model.train()
            graphed = [learner for learner in active if graphs.takes(learner)]
            if graphed:
                graphs.update(graphed, pad_id)
            eager = [learner for learner in active if learner not in graphed]
            for group in length_groups(eager, _longest):
                _forward_backward(model, group, router, objective, precision, pad_id, device)
            for learner in [learner for learner in active if learner.epoch_done]:
                try:
                    learner.check_finite()
                except FloatingPointError as error:
                    if on_failed is None:
                        raise
                    active.remove(learner)
                    graphs.forget(learner)
                    on_failed(learner, error)
                    continue
                router.set_single(learner.name)
                dev_score = objective.task.score(
                    model, learner.dev, labels, eval_batch_size, pad_id, device, precision
                ).value
                report = partial(on_epoch, learner.name) if on_epoch is not None else None
                learner.end_epoch(dev_score, report)
                if not learner.finished:
                    learner.start_epoch()
                    continue
                graphs.forget(learner)
                following = None if on_finished is None else on_finished(learner)
                if following is None:
                    active.remove(learner)
                    continue
                following.start_epoch()
                active[active.index(learner)] = following


class GroupGraphs:
    """The full batches of a pass's learners with ``train.cuda_graphs`` in one optimizer
    update, replayed from a CUDA graph per batch width and composition.

    A composition is the learners of the pass and their batch sizes, in order: the graph
    records the routed forward pass over their concatenated batches (padded to one width,
    a multiple of `WIDTH_STEP`), each learner's loss on its own rows, the backward pass,
    and each learner's clipping and AdamW step (its optimizer capturable: learning rates
    in device tensors that its schedule fills between replays). A learner whose step ends
    takes its compositions' graphs with it (`forget`): the next step's learner has a new
    optimizer. Partial batches, gradient accumulation and learners without graphs run
    eagerly. As for one run (`xlcl.graphs`), a CPU runs the same padded updates eagerly.
    """

    def __init__(
        self,
        model: PeftModel,
        router: AdapterRouter,
        objective: Objective,
        precision: str,
        device: torch.device,
    ) -> None:
        self.model, self.router, self.objective = model, router, objective
        self.device = device
        self.autocast = mixed_precision(precision, device, cache=False)  # capture needs it
        self.pool = torch.cuda.graph_pool_handle() if device.type == "cuda" else None
        self.updates: dict[tuple[tuple[int, int], ...], GraphedUpdates] = {}

    @staticmethod
    def takes(learner: Learner) -> bool:
        """Whether the learner's next micro-batch is a whole graphed update on a full batch."""
        full = len(learner.next_batch()) == learner.config.batch_size
        return graphed(learner.config) and learner.capturable and full

    def update(self, learners: Sequence[Learner], pad_id: int) -> None:
        """One update of each of `learners` on its next batch; count them."""
        input_ids, targets, _ = _next_batches(learners)
        key = tuple((id(learner), learner.config.batch_size) for learner in learners)
        updates = self.updates.get(key)
        if updates is None:
            optimizers = [learner.optimizer for learner in learners]
            updates = GraphedUpdates(self._recorded(learners), optimizers, self.device, self.pool)
            self.updates[key] = updates
        losses, non_finite = updates.update(collate(input_ids, targets, pad_id, WIDTH_STEP))
        for index, learner in enumerate(learners):
            learner.updated_elsewhere(losses[index], non_finite[index])

    def forget(self, learner: Learner) -> None:
        """Drop the graphs of every composition that holds `learner`."""
        self.updates = {
            key: updates
            for key, updates in self.updates.items()
            if all(member != id(learner) for member, _ in key)
        }

    def _recorded(self, learners: Sequence[Learner]) -> Callable[[Batch], Outputs]:
        segments = [(learner.name, learner.config.batch_size) for learner in learners]

        def update(batch: Batch) -> Outputs:
            with self.autocast:
                losses = _routed_losses(self.model, batch, segments, self.router, self.objective)
            torch.stack(losses).sum().backward()
            non_finite = [
                clip_and_step(
                    learner.parameters,
                    learner.optimizer,
                    learner.config.max_grad_norm,
                    learner.config.fused_clipping,
                )
                for learner in learners
            ]
            return torch.stack(losses).detach(), torch.stack(non_finite)

        return update


def graphed(config: TrainConfig) -> bool:
    """Whether a learner of `config` trains its full batches in CUDA graphs (`GroupGraphs`):
    with ``train.cuda_graphs`` and one micro-batch an update."""
    return config.cuda_graphs and config.gradient_accumulation == 1


def _longest(learner: Learner) -> int:
    """The subword length of the longest utterance in the learner's next batch."""
    return max(len(ids) for ids in gather(learner.train, learner.next_batch())[0])


def _forward_backward(
    model: PeftModel,
    group: Sequence[Learner],
    router: AdapterRouter,
    objective: Objective,
    precision: str,
    pad_id: int,
    device: torch.device,
) -> None:
    """One pass of `group`'s next batches, each through its own adapter; count them.

    The loss of each adapter is the objective on its own rows (the task's loss is then the
    mean over its own tokens: the loss it gets when trained alone). Adapters share no
    parameter, so the sum's backward pass gives each adapter its own gradients.
    """
    input_ids, targets, segments = _next_batches(group)
    batch = collate(input_ids, targets, pad_id).to(device)
    total = torch.zeros((), device=device)
    with mixed_precision(precision, device):
        losses = _routed_losses(model, batch, segments, router, objective)
        for learner, loss in zip(group, losses, strict=True):
            total = total + loss / learner.config.gradient_accumulation
    total.backward()
    for learner, loss in zip(group, losses, strict=True):
        learner.micro_batch_done(loss.detach())


def _next_batches(
    learners: Sequence[Learner],
) -> tuple[list[np.ndarray], list[np.ndarray], list[tuple[str, int]]]:
    """The learners' next batches concatenated: input ids, labels, and (adapter, rows) of
    each learner's segment."""
    input_ids: list[np.ndarray] = []
    targets: list[np.ndarray] = []
    segments: list[tuple[str, int]] = []
    for learner in learners:
        ids, labels = gather(learner.train, learner.next_batch())
        input_ids.extend(ids)
        targets.extend(labels)
        segments.append((learner.name, len(ids)))
    return input_ids, targets, segments


def _routed_losses(
    model: PeftModel,
    batch: Batch,
    segments: Sequence[tuple[str, int]],
    router: AdapterRouter,
    objective: Objective,
) -> list[torch.Tensor]:
    """The forward pass of `batch`, each segment through its own adapter, and each
    segment's loss on its own rows (the objective as its adapter gets it alone)."""
    router.set_segments(segments)
    outputs = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
    losses = []
    start = 0
    for _, count in segments:
        rows = slice(start, start + count)
        start += count
        part = Batch(*(tensor[rows] for tensor in batch.tensors))
        losses.append(objective.loss(model, part, type(outputs)(logits=outputs.logits[rows])))
    return losses


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
