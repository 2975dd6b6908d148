"""GPU benchmarks: training throughput and MFU, and the cost of a 52-step VANILLA run.

Command (on a GPU machine, from the repository root, with the MASSIVE archive and the
XLM-R tokenizer files in ``gpu/``)::

    PYTHONPATH=src python bench/gpu.py --archive gpu/massive.tar.gz \
        --tokenizer gpu/tokenizer --out results

1. Throughput: xlcl's training loop (`train_step`) on random-weight e5-small-size and
   XLM-R-base-size token classifiers, batches of 32 MASSIVE-length utterances (real en-US
   lengths), bf16 autocast, fused AdamW. Reports samples/s and model FLOPs utilisation.
2. A VANILLA run of XLM-R base (random weights, real XLM-R tokenizer, real MASSIVE): the
   first locales of order 1 with full data, through `xlcl.protocol.run`. Its median epoch
   (training and dev scoring) and the time to score one test set (a cell of the matrix,
   timed apart) give the cost of the full 52-step run (10 epochs a step, the 53 x 52
   matrix), which is extrapolated and reported as such.

``--models`` picks the models (e5-small, xlm-r-base, e5-large-instruct: the XLM-R-large
architecture of intfloat/multilingual-e5-large-instruct; none: no throughput);
``--lora N`` measures LoRA rank N (PEFT, as xlcl wraps the model, the frozen base stored
in bf16; ``--fp32-base`` keeps it in fp32, for comparison) instead of full fine-tuning,
``--trim`` trims the run's vocabulary (``trim_vocabulary``), ``--locales 0`` skips the
run. ``--cuda-graphs`` trains with ``train.cuda_graphs`` (one CUDA graph per
padded batch width) and first checks that graphed training matches eager training on the
GPU: the same 64 updates (at most) from the same weights, dropout off, compared by loss and
weights; with ``--against-eager`` it also measures each model's eager throughput and the
ratio graphed / eager.

``--scoring N`` scores a row of the score matrix (the test sets of the first N locales of
order 1, whole) with a random-weight XLM-R-base-size model, cell by cell (a pass per test
set, `Task.score_each`'s default) and in one pass (`MassiveSlots.score_each`), in bf16
autocast (what runs use on a GPU) and fp32, at evaluation batches of 128 and 512; it
reports each path's median row and how many cells and utterances differ between them.
``--layers N`` overrides every model's layer count (dry runs on a CPU). Results go to
``OUT/gpu.json``.
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from bench_scoring import differing  # bench/ is on the path: scripts run from it
from peft import TaskType, get_peft_model
from transformers import AutoModelForTokenClassification, AutoTokenizer, PretrainedConfig

from xlcl.classifier import head_modules, lora_config, store_frozen_linears_in_bf16
from xlcl.config import LoraSettings, TrainConfig, validate_config
from xlcl.data import ORDERS, load_massive, slot_label_names
from xlcl.encode import EncodedSplit, encode
from xlcl.evaluate.scoring import score_splits, uses_bf16
from xlcl.params import E5_SMALL, XLMR_BASE, XLMR_LARGE
from xlcl.protocol import run
from xlcl.tasks import Task
from xlcl.tasks.massive_slots import MassiveSlots
from xlcl.train import Objective, train_step

PEAK_BF16_TFLOPS = 989.0  # H100/H200 SXM dense bf16
LABELS = 111
# intfloat/multilingual-e5-large-instruct: XLM-R large, LayerNorm eps 1e-5 as its config has
# multilingual-e5-large-instruct is XLM-R large (its config.json: the same sizes and eps)
PRESETS = {"e5-small": E5_SMALL, "xlm-r-base": XLMR_BASE, "e5-large-instruct": XLMR_LARGE}


def model_dir(root: Path, name: str, config: PretrainedConfig, tokenizer: Path) -> Path:
    """A random-weight model of `config` with the XLM-R tokenizer, saved to disk."""
    directory = root / name
    directory.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = AutoModelForTokenClassification.from_config(config)
    model.save_pretrained(directory)
    for file in tokenizer.iterdir():
        shutil.copy(file, directory / file.name)
    return directory


def flops_per_token(config: PretrainedConfig, length: float, lora: bool = False) -> float:
    """Training FLOPs per token: 6 x matmul parameters, plus attention scores.

    With LoRA the frozen weights get no gradient: 4 x (forward, and backward to the inputs).
    """
    hidden, layers = config.hidden_size, config.num_hidden_layers
    matmul = layers * (4 * hidden * hidden + 2 * hidden * config.intermediate_size)
    attention = layers * 2 * 2 * length * hidden  # QK^T and AV, forward
    return (4 if lora else 6) * matmul + 3 * attention


def load_model(
    directory: Path,
    device: torch.device,
    lora_rank: int | None,
    dropout: bool = True,
    bf16_base: bool = True,
) -> torch.nn.Module:
    """The saved random-weight model on `device`; with `lora_rank`, wrapped as xlcl wraps
    it (PEFT; with `bf16_base`, the frozen base stored in bf16 where autocast runs)."""
    off = {} if dropout else {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
    model = AutoModelForTokenClassification.from_pretrained(directory, num_labels=LABELS, **off)
    if lora_rank is None:
        return model.to(device)
    settings = LoraSettings() if dropout else LoraSettings(dropout=0.0)
    head = head_modules(model, TaskType.TOKEN_CLS)
    config = lora_config(lora_rank, settings, TaskType.TOKEN_CLS, head)
    model = get_peft_model(model, config).to(device)
    if bf16_base and uses_bf16("auto", device):
        store_frozen_linears_in_bf16(model)
    return model


def synthetic_splits(lengths: np.ndarray, samples: int) -> tuple[EncodedSplit, EncodedSplit]:
    """`samples` random utterances of real MASSIVE lengths, and 64 of them as a dev set."""
    rng = np.random.default_rng(0)
    chosen = rng.choice(lengths, size=samples)
    ids = [rng.integers(5, 1000, size=n) for n in chosen]
    labels = [rng.integers(0, LABELS, size=n) for n in chosen]
    firsts = [np.zeros(1, dtype=np.int64)] * samples  # scoring reads word 0 at token 0
    split = EncodedSplit("xx-XX", ids, labels, [lab[:1] for lab in labels], firsts)
    dev = EncodedSplit("xx-XX", ids[:64], labels[:64], split.gold[:64], firsts[:64])
    return split, dev


LABEL_NAMES = ["O", *(f"L{i}" for i in range(1, LABELS))]


def throughput(
    directory: Path,
    config: PretrainedConfig,
    lengths: np.ndarray,
    samples: int,
    device: torch.device,
    compile_model: bool,
    cuda_graphs: bool,
    lora_rank: int | None,
    bf16_base: bool,
) -> dict[str, float]:
    """Samples/s and MFU of `train_step` on synthetic utterances of real MASSIVE lengths."""
    split, dev = synthetic_splits(lengths, samples)
    model = load_model(directory, device, lora_rank, bf16_base=bf16_base)
    if compile_model:
        model.compile(dynamic=True)
    train = TrainConfig(
        epochs=1,
        patience=1,
        learning_rate=1e-5,
        batch_size=32,
        compile=compile_model,
        cuda_graphs=cuda_graphs,
    )
    common: dict[str, Any] = dict(
        objective=Objective(MassiveSlots()), pad_id=1, device=device, eval_batch_size=256
    )
    train_step(model, [split], [dev], LABEL_NAMES, train, seed=0, **common)  # warm-up
    synchronize(device)
    started = time.perf_counter()
    repeats = 2
    for seed in range(repeats):
        train_step(model, [split], [dev], LABEL_NAMES, train, seed=seed + 1, **common)
    synchronize(device)
    seconds = (time.perf_counter() - started) / repeats
    tokens = float(split.lengths.sum())
    per_token = flops_per_token(config, float(split.lengths.mean()), lora_rank is not None)
    achieved = per_token * tokens / seconds
    return {
        "samples_per_s": samples / seconds,
        "tokens_per_s": tokens / seconds,
        "mfu": achieved / (PEAK_BF16_TFLOPS * 1e12),
        "peak_memory_gib": peak_memory_gib(device),
    }


def graphs_against_eager(
    directory: Path,
    lengths: np.ndarray,
    samples: int,
    device: torch.device,
    lora_rank: int | None,
) -> dict[str, float]:
    """Train the same weights on `samples` eagerly and from CUDA graphs (dropout off)."""
    split, dev = synthetic_splits(lengths, samples)
    trained = {}
    for graphs in (False, True):
        torch.manual_seed(0)  # the same LoRA initialisation
        model = load_model(directory, device, lora_rank, dropout=False)
        train = TrainConfig(
            epochs=1, patience=1, learning_rate=5e-5, batch_size=32, cuda_graphs=graphs
        )
        result = train_step(
            model,
            [split],
            [dev],
            LABEL_NAMES,
            train,
            objective=Objective(MassiveSlots()),
            pad_id=1,
            device=device,
            eval_batch_size=256,
            seed=0,
        )
        weights = {n: p.detach().float() for n, p in model.named_parameters()}
        trained[graphs] = (result.epochs[0].train_loss, weights)
    (eager_loss, eager), (graphed_loss, graphed) = trained[False], trained[True]
    moved = max(float((graphed[n] - eager[n]).abs().max()) for n in eager)
    return {
        "eager_loss": eager_loss,
        "graphed_loss": graphed_loss,
        "loss_relative_difference": abs(graphed_loss - eager_loss) / eager_loss,
        "max_weight_difference": moved,
    }


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work (timings must not stop at a kernel launch)."""
    if device.type == "cuda":
        torch.cuda.synchronize()


def peak_memory_gib(device: torch.device) -> float:
    """Peak GPU memory allocated since the last reset (0 on the CPU)."""
    if device.type != "cuda":
        return 0.0
    peak = torch.cuda.max_memory_allocated() / 2**30
    torch.cuda.reset_peak_memory_stats()
    return peak


def vanilla_cost(
    directory: Path,
    archive: Path,
    out: Path,
    locales: int,
    max_train: int | None,
    device: str,
    compile_model: bool,
    cuda_graphs: bool,
    trim: bool,
) -> dict[str, float]:
    """Time a VANILLA run over the first `locales` of order 1; extrapolate to 52 steps."""
    order = list(ORDERS[1][:locales])
    config = validate_config(
        {
            "model": str(directory),
            "method": "vanilla",
            "order": order,
            "trim_vocabulary": trim,
            "data": {  # all three None (full splits) but in dry runs on a CPU
                "source": str(archive),
                "max_train": max_train,
                "max_dev": max_train,
                "max_test": max_train,
            },
            "train": {
                "epochs": 2,
                "patience": 2,
                "batch_size": 32,
                "learning_rate": 5e-5,
                "device": device,
                "compile": compile_model,
                "cuda_graphs": cuda_graphs,
            },
            "evaluate": {"batch_size": 512},
            "output_dir": str(out / "runs"),
        }
    )
    started = time.perf_counter()
    run_dir = run(config)
    total = time.perf_counter() - started
    peak = peak_memory_gib(torch.device(device))
    curves = pd.read_parquet(run_dir / "curves.parquet")
    epoch_seconds = float(curves["seconds"].median())
    training = float(curves["seconds"].sum())
    cell = cell_seconds(directory, archive, order[0], max_train, torch.device(device))
    return {
        "locales": locales,
        "wall_s": total,
        "median_epoch_s": epoch_seconds,
        "training_s": training,
        "other_s": total - training,
        "score_cell_s": cell,
        "full_run_estimate_s": 52 * 10 * epoch_seconds + 53 * 52 * cell,
        "peak_memory_gib": peak,
    }


def cell_seconds(
    directory: Path, archive: Path, locale: str, max_test: int | None, device: torch.device
) -> float:
    """Seconds to score one cell of the matrix: a locale's test set, as `protocol.run` does."""
    data = load_massive(archive, [locale])
    labels = slot_label_names(data)
    tokenizer = AutoTokenizer.from_pretrained(directory)
    utterances = data.utterances(locale, "test")[:max_test]
    test = encode(utterances, tokenizer, {n: i for i, n in enumerate(labels)}, 128)
    model = AutoModelForTokenClassification.from_pretrained(directory, num_labels=len(labels))
    model.to(device)
    seconds = []
    for _ in range(4):  # the first pass warms up
        synchronize(device)
        started = time.perf_counter()
        score_splits(model, [test], labels, 512, tokenizer.pad_token_id, device)
        seconds.append(time.perf_counter() - started)
    return float(np.median(seconds[1:]))


def scoring_row(
    directory: Path,
    archive: Path,
    locales: int,
    max_test: int | None,
    device: torch.device,
    repeats: int = 3,
) -> dict[str, object]:
    """A row of the score matrix, cell by cell against in one pass (bench_scoring.py's
    comparison, on `device`): the test sets of the first `locales` of order 1."""
    order = list(ORDERS[1][:locales])
    data = load_massive(archive, order)
    labels = slot_label_names(data)
    tokenizer = AutoTokenizer.from_pretrained(directory)
    ids = {name: index for index, name in enumerate(labels)}
    tests = [
        encode(data.utterances(locale, "test")[:max_test], tokenizer, ids, 128) for locale in order
    ]
    torch.manual_seed(0)  # a fresh head where the labels are not the saved model's LABELS
    model = AutoModelForTokenClassification.from_pretrained(
        directory, num_labels=len(labels), ignore_mismatched_sizes=True
    )
    model.to(device)
    task, pad_id = MassiveSlots(), tokenizer.pad_token_id
    results: dict[str, object] = {
        "locales": order,
        "utterances": sum(len(test) for test in tests),
        "subwords": sum(int(test.lengths.sum()) for test in tests),
    }
    # auto: bf16 autocast on a GPU (what runs use there), fp32 on a CPU
    precisions = {"bf16" if uses_bf16(p, device) else "fp32": p for p in ("auto", "fp32")}
    for label, precision in precisions.items():
        for batch_size in (128, 512):
            scoring = (labels, batch_size, pad_id, device, precision)
            paths = {
                "cell_by_cell": lambda s=scoring: Task.score_each(task, model, tests, *s),
                "one_pass": lambda s=scoring: task.score_each(model, tests, *s),
            }
            seconds: dict[str, list[float]] = {name: [] for name in paths}
            cells = {name: row() for name, row in paths.items()}  # untimed warm-up
            for _ in range(repeats):  # the paths take turns
                for name, row in paths.items():
                    synchronize(device)
                    started = time.perf_counter()
                    cells[name] = row()  # ends on the host: the pass's transfer syncs
                    seconds[name].append(time.perf_counter() - started)
            medians = {name: statistics.median(times) for name, times in seconds.items()}
            different_cells, different_utterances = differing(*cells.values())
            key = f"{label}/batch-{batch_size}"
            results[key] = {
                "cell_by_cell_s": seconds["cell_by_cell"],
                "one_pass_s": seconds["one_pass"],
                "one_pass_speedup": medians["cell_by_cell"] / medians["one_pass"],
                "differing_cells": different_cells,
                "differing_utterances": different_utterances,
            }
            print("scoring", key, results[key], flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archive", type=Path, required=True)
    parser.add_argument("--tokenizer", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--samples", type=int, default=8192)
    parser.add_argument("--locales", type=int, default=3, help="of the run; 0: no run")
    parser.add_argument("--max-train", type=int, default=None, help="for dry runs on a CPU")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--compile", action="store_true", help="train with torch.compile")
    parser.add_argument("--cuda-graphs", action="store_true", help="train.cuda_graphs")
    parser.add_argument(
        "--models", nargs="*", default=["e5-small", "xlm-r-base"], choices=list(PRESETS)
    )
    parser.add_argument(
        "--against-eager", action="store_true", help="with --cuda-graphs: eager throughput too"
    )
    parser.add_argument("--scoring", type=int, default=0, help="locales of a scored row; 0: none")
    parser.add_argument("--max-test", type=int, default=None, help="--scoring, dry runs on a CPU")
    parser.add_argument("--layers", type=int, default=None, help="dry runs on a CPU")
    parser.add_argument("--lora", type=int, default=None, help="throughput of LoRA rank N")
    parser.add_argument("--trim", action="store_true", help="the run trims the vocabulary")
    parser.add_argument(
        "--fp32-base", action="store_true", help="LoRA: keep the frozen base in fp32"
    )
    args = parser.parse_args()
    device = torch.device(args.device)
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path("/tmp/xlcl-gpu")
    data = load_massive(args.archive, ["en-US"])
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    names = slot_label_names(data)
    utterances = data.utterances("en-US", "train")
    encoded = encode(utterances, tokenizer, {n: i for i, n in enumerate(names)}, 128)
    lengths = encoded.lengths
    results: dict[str, object] = {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "mean_subwords": float(lengths.mean()),
        "compile": args.compile,
        "cuda_graphs": args.cuda_graphs,
        "lora_rank": args.lora,
        "lora_base": None if args.lora is None else ("fp32" if args.fp32_base else "bf16"),
        "trim_vocabulary": args.trim,
    }
    for name in args.models:
        config = copy.deepcopy(PRESETS[name])
        config.num_labels = LABELS
        if args.layers is not None:
            config.num_hidden_layers = args.layers
        directory = model_dir(work, name, config, args.tokenizer)
        if args.cuda_graphs:
            results[f"graphs_against_eager/{name}"] = graphs_against_eager(
                directory, lengths, min(args.samples, 64 * 32), device, args.lora
            )
            print(name, results[f"graphs_against_eager/{name}"], flush=True)
        measured = throughput(
            directory,
            config,
            lengths,
            args.samples,
            device,
            args.compile,
            args.cuda_graphs,
            args.lora,
            not args.fp32_base,
        )
        results[f"throughput/{name}"] = measured
        print(name, measured, flush=True)
        if args.against_eager and args.cuda_graphs:  # the same samples, without graphs
            eager = throughput(
                directory,
                config,
                lengths,
                args.samples,
                device,
                args.compile,
                False,
                args.lora,
                not args.fp32_base,
            )
            results[f"throughput-eager/{name}"] = eager
            ratio = measured["samples_per_s"] / eager["samples_per_s"]
            results[f"graphed_over_eager/{name}"] = ratio
            print(name, "eager", eager, "graphed / eager", ratio, flush=True)
        (args.out / "gpu.json").write_text(json.dumps(results, indent=2))
    if args.scoring:
        config = copy.deepcopy(XLMR_BASE)
        config.num_labels = LABELS
        if args.layers is not None:
            config.num_hidden_layers = args.layers
        directory = model_dir(work, "xlm-r-base", config, args.tokenizer)
        results["scoring/xlm-r-base"] = scoring_row(
            directory, args.archive, args.scoring, args.max_test, device
        )
        (args.out / "gpu.json").write_text(json.dumps(results, indent=2))
    if args.locales == 0:
        return
    results["vanilla/xlm-r-base"] = vanilla_cost(
        work / "xlm-r-base",
        args.archive,
        work,
        args.locales,
        args.max_train,
        args.device,
        args.compile,
        args.cuda_graphs,
        args.trim,
    )
    print(results["vanilla/xlm-r-base"], flush=True)
    (args.out / "gpu.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
