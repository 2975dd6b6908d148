"""Gradient clipping in a pass of its own against folded into fused AdamW, side by side (CPU).

Command::

    .venv/bin/python bench/bench_clipping.py [--repeats 5] [--threads 1] [--max-grad-norm 1.0]

The optimizer part of one full fine-tuning update of the offline multilingual-e5-small
(``e5-small-offline``, its whole vocabulary, a fresh head of 111 labels: about 118 M
parameters, fp32), with the gradients of one real backward pass (a random batch of 16
utterances of 32 subwords):

- today: `clip_grad_norm_` (the norm, then every gradient multiplied by min(1, c)), then
  fused AdamW;
- folded (``train.fused_clipping``): the norm, then fused AdamW dividing each gradient by
  1/min(1, c) as it reads it: one read and write of the gradients fewer.

Before each timed update the saved gradients are copied back in (not timed). The paths
take turns, ``--repeats`` timed updates each after one untimed; the table gives the
fastest and the median, and the ratio of the medians. ``--max-grad-norm`` sets whether
the update is clipped (1.0 clips this gradient; 1e6 does not). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from transformers.utils import logging as transformers_logging

from xlcl.classifier import build_classifier, trainable_parameters
from xlcl.config import LoraSettings, TrainConfig
from xlcl.encode import Batch
from xlcl.methods import method
from xlcl.models import resolve_model
from xlcl.tasks.massive_slots import MassiveSlots
from xlcl.train import Objective, clip_and_step, forward_backward, optimizer_for

LABELS = ["O"] + [f"{tag}-slot{i}" for i in range(55) for tag in ("B", "I")]  # 111
BATCH, WIDTH = 16, 32


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed updates a path")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (%(default)s)")
    parser.add_argument("--max-grad-norm", type=float, default=1.0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    transformers_logging.set_verbosity_error()

    model = build_classifier(
        resolve_model("e5-small-offline"), LABELS, method("vanilla"), LoraSettings(), seed=0
    )
    named = trainable_parameters(model)
    parameters = [p for _, p in named]
    generator = torch.Generator().manual_seed(0)
    vocabulary = model.config.vocab_size
    batch = Batch(
        input_ids=torch.randint(5, vocabulary, (BATCH, WIDTH), generator=generator),
        attention_mask=torch.ones(BATCH, WIDTH, dtype=torch.long),
        labels=torch.randint(0, len(LABELS), (BATCH, WIDTH), generator=generator),
    )
    started = time.perf_counter()
    fp32 = torch.autocast("cpu", enabled=False)
    forward_backward(model, batch, Objective(MassiveSlots()), fp32, accumulation=1)
    backward_s = time.perf_counter() - started
    grads = [p.grad.clone() for p in parameters if p.grad is not None]
    norm = torch.nn.utils.get_total_norm(grads).item()

    paths = {"today: clip_grad_norm_, then fused AdamW": False, "folded into fused AdamW": True}
    optimizers = {}
    for fused_clipping in paths.values():
        config = TrainConfig(
            epochs=1,
            patience=1,
            learning_rate=1e-5,
            max_grad_norm=args.max_grad_norm,
            fused_clipping=fused_clipping,
        )
        optimizers[fused_clipping] = optimizer_for(named, config, total_steps=100)[0]

    def one_update(fused_clipping: bool) -> float:
        for parameter, grad in zip(parameters, grads, strict=True):
            parameter.grad = grad.clone()
        started = time.perf_counter()
        clip_and_step(parameters, optimizers[fused_clipping], args.max_grad_norm, fused_clipping)
        seconds = time.perf_counter() - started
        for parameter in parameters:
            parameter.grad = None
        return seconds

    times: dict[bool, list[float]] = {fused: [] for fused in paths.values()}
    for fused in paths.values():  # untimed: AdamW's state is created here
        one_update(fused)
    for _ in range(args.repeats):
        for fused in paths.values():
            times[fused].append(one_update(fused))

    count = sum(p.numel() for p in parameters)
    print(
        f"e5-small-offline, {count / 1e6:.1f} M trainable parameters (fp32), gradient norm "
        f"{norm:.3g}, max_grad_norm {args.max_grad_norm:g} "
        f"({'clipped' if norm > args.max_grad_norm else 'not clipped'}); forward and backward "
        f"of the batch {backward_s:.2f} s; {args.threads} torch thread(s), torch "
        f"{torch.__version__}\n"
    )
    print("| path | fastest (ms) | median (ms) | updates (ms) |")
    print("|---|---:|---:|---|")
    for name, fused in paths.items():
        each = ", ".join(f"{1e3 * t:.0f}" for t in times[fused])
        print(
            f"| {name} | {1e3 * min(times[fused]):.0f} | "
            f"{1e3 * statistics.median(times[fused]):.0f} | {each} |"
        )
    ratio = statistics.median(times[False]) / statistics.median(times[True])
    print(f"\nfolded: **{ratio:.2f}×** (medians)")


if __name__ == "__main__":
    main()
