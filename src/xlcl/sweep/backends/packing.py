"""Several runs on one GPU: does a GPU hold `runs_per_gpu` of a sweep's runs at their peaks?

The check is made where the GPU is: by the local backend before it starts, and on the node
by a Slurm task or Ray task before its runs start. A model without a measured peak is not
checked (docs/sweeps.md).
"""

from __future__ import annotations

from collections.abc import Sequence

from xlcl.config import RunConfig

GIB = 2**30
USABLE_FRACTION = 0.9  # the rest: the CUDA context of every process, allocator fragmentation

# Peak GPU memory of one run (GiB) by model, LoRA or not, and train.cuda_graphs. Measured on
# an H200 by bench/gpu.py (BENCHMARKS.md, "Training throughput: eager against CUDA graphs";
# bench/results/gpu_h200_eager.json, gpu_h200_graphs.json, gpu_h200_session4.json):
# `train_step` of a random-weight XLM-R-base-size model at batch 32 of MASSIVE lengths, bf16
# autocast, fused AdamW; LoRA r16 on every linear layer, frozen base in bf16. The full run
# with scoring (evaluate batch 512) peaked lower (5.3 GiB eager, 7.1 graphed), so the
# training step is the peak. A trimmed vocabulary (4.2 GiB graphed) is not credited.
PEAK_MEMORY_GIB: dict[tuple[str, bool, bool], float] = {
    ("FacebookAI/xlm-roberta-base", False, False): 5.3,
    ("FacebookAI/xlm-roberta-base", False, True): 7.9,
    ("FacebookAI/xlm-roberta-base", True, False): 1.7,
    ("FacebookAI/xlm-roberta-base", True, True): 4.1,
}


def peak_memory_gib(config: RunConfig) -> float | None:
    """The measured peak GPU memory of a run like `config`, or None where not measured."""
    lora = config.method_spec.lora
    return PEAK_MEMORY_GIB.get((config.model, lora, config.train.cuda_graphs))


def refuse_unfit(configs: Sequence[RunConfig], runs_per_gpu: int, gpu_memory: int) -> None:
    """Raise ValueError if `runs_per_gpu` runs of the largest measured peak among `configs`
    would need more than 90 % of a GPU of `gpu_memory` bytes."""
    measured = [(peak, config) for config in configs if (peak := peak_memory_gib(config))]
    if runs_per_gpu == 1 or not measured:
        return
    peak, config = max(measured, key=lambda pair: pair[0])
    total = gpu_memory / GIB
    if runs_per_gpu * peak > USABLE_FRACTION * total:
        fitting = int(USABLE_FRACTION * total // peak)
        raise ValueError(
            f"--runs-per-gpu {runs_per_gpu}: {config.model} {config.method} runs peak at "
            f"{peak:g} GiB, and {runs_per_gpu} of them need {runs_per_gpu * peak:.1f} GiB, "
            f"over 90 % of the GPU's {total:.1f} GiB (at most {fitting} fit)"
        )


def gpu_memory() -> int:
    """Bytes of memory of the smallest GPU this process sees."""
    import torch

    count = torch.cuda.device_count()
    if count == 0:
        raise ValueError("--runs-per-gpu: no GPU is visible here")
    return min(torch.cuda.get_device_properties(index).total_memory for index in range(count))
