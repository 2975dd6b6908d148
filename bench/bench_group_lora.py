"""SHARED LoRA runs trained as one group (``xlcl sweep --group-lora``) against one run alone.

Command (CPU; MASSIVE from $XLCL_MASSIVE)::

    .venv/bin/python bench/bench_group_lora.py [--groups 1 4] [--locales 2] [--utterances 100]

On the GPU machine (``bench/gpu_suite.sh OUT group``): ``--model PATH --groups 1 5 15``.

A group of K SHARED LoRA r16 runs over the first T locales of the paper's order 1, run i in
the i-th rotation of that order (seed 42 + i // T beyond T rotations), trained through
`xlcl.schedules.grouped.run_group`; against one of them alone through `xlcl.protocol.run`,
in the same process. Every step trains exactly one epoch (``epochs: 1``), so every run
trains the same T x n utterances and scores the same cells whatever its order, and the
group's speedup is K x (one run's seconds) / (the group's seconds): samples/s of the group
against samples/s of one run alone, reading, encoding and scoring included. The largest
group runs three times, side by side: its adapters' matmuls batched (one ``bmm`` over
segments of one size and rank, `xlcl.together.AdapterRouter`; the default on a GPU), per
segment (the default on a CPU), and batched with ``train.cuda_graphs`` (each pass's full
batches one replayed update, `xlcl.together.GroupGraphs`; on a CPU the same padded updates
run eagerly). Writes JSON to ``--out`` and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from xlcl.config import RunConfig, validate_config
from xlcl.data import ORDERS
from xlcl.protocol import run
from xlcl.schedules.grouped import run_group
from xlcl.together import AdapterRouter

MODEL = "e5-small-offline"


def configs(
    model: str, k: int, locales: int, utterances: int, output: Path, graphs: bool = False
) -> list[RunConfig]:
    """K SHARED LoRA r16 runs of one epoch a step, each in its own order (or seed)."""
    first = list(ORDERS[1][:locales])
    runs = []
    for index in range(k):
        shift = index % locales
        runs.append(
            validate_config(
                {
                    "model": model,
                    "method": "shared-lora",
                    "rank": 16,
                    "order": first[shift:] + first[:shift],
                    "trim_vocabulary": True,
                    "data": {
                        "max_train": utterances,
                        "max_dev": utterances // 4,
                        "max_test": utterances // 2,
                    },
                    "train": {
                        "epochs": 1,
                        "patience": 1,
                        "learning_rate": 2e-3,
                        "head_learning_rate": 2e-2,
                        "batch_size": 16,
                        "max_length": 64,
                        "seed": 42 + index // locales,
                        "cuda_graphs": graphs,
                    },
                    "lora": {"alpha": 4, "dropout": 0.0},
                    "output_dir": str(output),
                }
            )
        )
    return runs


def seconds_of(action: object) -> float:
    started = time.perf_counter()
    action()  # type: ignore[operator]
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=MODEL)
    parser.add_argument("--groups", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--locales", type=int, default=2)
    parser.add_argument("--utterances", type=int, default=100)
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        alone = configs(args.model, 1, args.locales, args.utterances, root / "alone")[0]
        one = seconds_of(lambda: run(alone))
        rows = []
        largest = max(args.groups)
        matmuls = [(k, "batched") for k in args.groups]
        matmuls += [(largest, "per segment"), (largest, "batched, CUDA graphs")]
        for k, how in matmuls:
            devices = frozenset() if how == "per segment" else frozenset({"cpu", "cuda"})
            AdapterRouter.batched_devices = devices
            out = root / f"group-{k}-{len(rows)}"
            graphs = how.endswith("CUDA graphs")
            group = configs(args.model, k, args.locales, args.utterances, out, graphs)
            seconds = seconds_of(lambda group=group: run_group(group))
            speedup = k * one / seconds
            rows.append({"runs": k, "matmuls": how, "seconds": seconds, "speedup": speedup})
            print(rows[-1], flush=True)
    figures = {
        "model": args.model,
        "locales": args.locales,
        "utterances": args.utterances,
        "one_run_alone_seconds": one,
        "groups": rows,
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "machine": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
    }
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(figures, indent=1) + "\n")
    print(
        f"\none SHARED LoRA r16 run alone: {one:.1f} s ({args.locales} locales x "
        f"{args.utterances} utterances, 1 epoch a step, {args.model})\n"
    )
    print("| runs in the group | LoRA matmuls | seconds | samples/s against one run alone |")
    print("|---:|---|---:|---:|")
    for row in rows:
        cells = [row["runs"], row["matmuls"], f"{row['seconds']:.1f}", f"{row['speedup']:.2f}x"]
        print("| " + " | ".join(str(c) for c in cells) + " |")


if __name__ == "__main__":
    main()
