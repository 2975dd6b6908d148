"""Where one training update of xlcl's loop spends its time on a GPU.

Command (on a GPU machine; random XLM-R base weights)::

    PYTHONPATH=src python bench/gpu_profile.py

Times each phase of an update with a device sync around it (collate and copy, forward,
backward, clipping, optimizer), then prints torch.profiler's top operators by CPU time.
"""

from __future__ import annotations

import argparse
import copy
import time
from collections import defaultdict

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile
from transformers import AutoModelForTokenClassification

from xlcl.classifier import trainable_parameters
from xlcl.config import TrainConfig
from xlcl.encode import EncodedSplit, collate_batch, epoch_batches
from xlcl.evaluate.scoring import mixed_precision
from xlcl.params import XLMR_BASE
from xlcl.train import optimizer_for

LABELS = 111


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=60)
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    args = parser.parse_args()
    device = torch.device("cuda")
    rng = np.random.default_rng(0)
    lengths = rng.integers(6, 20, size=32 * args.updates)
    ids = [rng.integers(5, 1000, size=n) for n in lengths]
    labels = [rng.integers(0, LABELS, size=n) for n in lengths]
    split = EncodedSplit("xx-XX", ids, labels, labels, [np.zeros(1, dtype=np.int64)] * len(ids))
    config = copy.deepcopy(XLMR_BASE)
    config.num_labels = LABELS
    model = AutoModelForTokenClassification.from_config(config)
    model.to(device).train()
    if args.compile:
        model = torch.compile(model, dynamic=True)
    train = TrainConfig(epochs=1, patience=1, learning_rate=1e-5, batch_size=32)
    optimizer, scheduler = optimizer_for(trainable_parameters(model), train, args.updates)
    parameters = [p for p in model.parameters() if p.requires_grad]
    batches = epoch_batches([split], 32, rng)
    phases: dict[str, float] = defaultdict(float)

    def timed(name: str, work):  # type: ignore[no-untyped-def]
        torch.cuda.synchronize()
        started = time.perf_counter()
        result = work()
        torch.cuda.synchronize()
        phases[name] += time.perf_counter() - started
        return result

    def update(indices: np.ndarray) -> None:
        batch = timed("collate+copy", lambda: collate_batch([split], indices, 1).to(device))
        with mixed_precision("auto", device):
            output = timed(
                "forward",
                lambda: model(
                    input_ids=batch.input_ids,
                    attention_mask=batch.attention_mask,
                    labels=batch.labels,
                ),
            )
        timed("backward", lambda: output.loss.backward())
        timed("clip", lambda: torch.nn.utils.clip_grad_norm_(parameters, 1.0))
        timed("optimizer", lambda: (optimizer.step(), scheduler.step()))
        timed("zero_grad", lambda: optimizer.zero_grad(set_to_none=True))

    for indices in batches[:10]:
        update(indices)  # warm-up
    phases.clear()
    for indices in batches[10:]:
        update(indices)
    count = len(batches) - 10
    for name, seconds in phases.items():
        print(f"{name:14s} {1000 * seconds / count:8.2f} ms/update")
    print(f"{'total':14s} {1000 * sum(phases.values()) / count:8.2f} ms/update")
    torch.cuda.synchronize()
    started = time.perf_counter()
    for indices in batches[10:]:
        batch = collate_batch([split], indices, 1).to(device)
        with mixed_precision("auto", device):
            loss = model(
                input_ids=batch.input_ids, attention_mask=batch.attention_mask, labels=batch.labels
            ).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    print(f"unsynchronised  {1000 * (time.perf_counter() - started) / count:8.2f} ms/update")
    if args.compile:
        return
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as trace:
        for indices in batches[10:20]:
            update(indices)
    print(trace.key_averages().table(sort_by="self_cpu_time_total", row_limit=18))


if __name__ == "__main__":
    main()
