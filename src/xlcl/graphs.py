"""Optimizer updates replayed from CUDA graphs: one graph per padded batch width.

At MASSIVE's lengths (10-20 subwords) and batch 32, an eager update of XLM-R base keeps
an H200 busy for 8 ms but takes the host 32 ms to launch its ~830 kernels (BENCHMARKS.md).
A CUDA graph records the whole update once (forward, loss, backward, gradient clipping
and AdamW) and replays it with one launch. A graph has fixed shapes, so full batches are
padded to a multiple of `WIDTH_STEP` subwords and a handful of graphs cover MASSIVE. The
padding has attention mask 0 and label -100: the loss and the gradients are those of the
unpadded batch, up to rounding. The learning rates live in device tensors that the
schedule fills between replays (`optimizer_for(..., capturable=True)`).

Each width's first batch runs eagerly on a side stream (the warm-up CUDA needs before a
capture: AdamW's state, cuBLAS workspaces); its second is captured, every later one is
replayed. All graphs share one memory pool: they never run at once, each writes what it
reads within its replay, and the caller consumes a replay's outputs (loss, non-finite
flag) in stream order before the next replay.

On a CPU nothing is captured: the same padded updates run eagerly. That is how the tests
check, without a GPU, that graphed training equals the plain loop.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch

from xlcl.encode import Batch

if TYPE_CHECKING:
    from torch.cuda import _POOL_HANDLE

WIDTH_STEP = 8  # batches are padded to a multiple of this many subwords

# Loss and non-finite gradient norm; one of each per adapter for a group's update.
Outputs = tuple[torch.Tensor, torch.Tensor]


class GraphedUpdates:
    """Optimizer updates on full batches, each replayed from its width's CUDA graph.

    `update` is one update on static buffers (forward, backward, clipping, AdamW; device
    work only): what each graph records, and what runs eagerly for the warm-ups and on a
    CPU. It starts from no gradients; `optimizers` (one, or one per adapter of a group)
    clear them around eager updates. Updates that never run at once may share a `pool`.
    """

    def __init__(
        self,
        update: Callable[[Batch], Outputs],
        optimizers: Sequence[torch.optim.Optimizer],
        device: torch.device,
        pool: _POOL_HANDLE | None = None,
    ) -> None:
        self._update = update
        self.optimizers = list(optimizers)
        self.device = device
        self.capture = device.type == "cuda"
        self._inputs: dict[int, Batch] = {}
        self._graphs: dict[int, tuple[torch.cuda.CUDAGraph, Outputs]] = {}
        if pool is None and self.capture:
            pool = torch.cuda.graph_pool_handle()
        self._pool = pool

    def update(self, batch: Batch) -> Outputs:
        """One optimizer update on `batch` (host tensors, width a multiple of WIDTH_STEP).

        Returns the loss and whether the gradient norm was non-finite, on the device; the
        caller steps the learning-rate schedule.
        """
        width = batch.input_ids.shape[1]
        if width % WIDTH_STEP:
            raise ValueError(f"batch width {width} is not a multiple of {WIDTH_STEP}")
        if not self.capture:
            return self._update_on(batch, width)
        # Captures go to the current device's streams: make it the model's (cuda:N).
        with torch.cuda.device(self.device):
            return self._update_on(batch, width)

    def _update_on(self, batch: Batch, width: int) -> Outputs:
        inputs = self._inputs.get(width)
        if inputs is None:  # the width's first batch: its buffers, and the warm-up
            inputs = self._inputs[width] = batch.to(self.device)
            return self._warm_up(inputs) if self.capture else self._eager(inputs)
        _copy_into(inputs, batch, pin=self.capture)
        if not self.capture:
            return self._eager(inputs)
        if width not in self._graphs:
            self._graphs[width] = self._record(inputs)
        graph, outputs = self._graphs[width]
        graph.replay()
        return outputs

    def _eager(self, inputs: Batch) -> Outputs:
        self._zero_grad()
        outputs = self._update(inputs)
        self._zero_grad()
        return outputs

    def _zero_grad(self) -> None:
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=True)

    def _warm_up(self, inputs: Batch) -> Outputs:
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            outputs = self._eager(inputs)
        torch.cuda.current_stream(self.device).wait_stream(side)
        return outputs

    def _record(self, inputs: Batch) -> tuple[torch.cuda.CUDAGraph, Outputs]:
        # Gradients are None here, so the recorded backward writes (not adds) them. They
        # are dropped after the capture: the graph keeps its own, and eager updates start
        # from None again.
        self._zero_grad()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool):
            outputs = self._update(inputs)
        self._zero_grad()
        return graph, outputs


def _copy_into(static: Batch, batch: Batch, pin: bool) -> None:
    """Copy `batch` into the static buffers; through pinned memory to a GPU (no sync)."""
    for target, source in zip(static.tensors, batch.tensors, strict=True):
        target.copy_(source.pin_memory() if pin else source, non_blocking=True)
