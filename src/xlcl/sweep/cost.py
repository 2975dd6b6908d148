"""What a run costs, before it runs: utterances trained and scored, and GPU-hours.

```python
from xlcl.sweep.cost import estimate_sweep, read_calibration
priced = estimate_sweep(sweep.runs, calibration=read_calibration([Path("results/paper")]))
priced.upper_bound.to_run.gpu_hours, priced.calibrated.once.gpu_hours
```

Every training step runs some epochs: all ``train.epochs`` in the upper bound, or the mean
that finished runs like it ran before early stopping ended their steps (`Calibration`).
GPU-hours divide the counts by a measured throughput of the preset models (`THROUGHPUT`)
and add what a run pays besides (`Overheads`: encoding, checkpoints, graph capture); other
models get counts but no hours. Where the data source is not known here, a locale has
MASSIVE 1.1's 11,514 train, 2,033 dev and 2,974 test utterances (fewer with ``data.max_*``).
Runs whose results do not depend on their order, listed under several orders, are
replicates: a sweep's totals are also given with each of them once. docs/sweeps.md states
the rules and the figures.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from xlcl.config import RunConfig
from xlcl.data import resolve_order
from xlcl.metrics.io import read_manifest, run_facts
from xlcl.schedules import SEQUENTIAL
from xlcl.schedules.grouping import form_groups
from xlcl.store import CURVES, MANIFEST, is_complete

MASSIVE_SPLIT_SIZES = {"train": 11_514, "dev": 2_033, "test": 2_974}


@dataclass(frozen=True)
class Throughput:
    """Utterances per second on one GPU: training (full, LoRA; eager and with
    ``train.cuda_graphs``, where measured) and scoring."""

    train_full: float
    train_lora: float
    score: float
    train_full_graphs: float | None = None
    train_lora_graphs: float | None = None

    def train(self, lora: bool, graphs: bool) -> float:
        """The training rate of a run with (or without) LoRA and CUDA graphs."""
        eager = self.train_lora if lora else self.train_full
        graphed = self.train_lora_graphs if lora else self.train_full_graphs
        return graphed if graphs and graphed is not None else eager


# Measured on one NVIDIA H200 with random weights of the preset architectures, LoRA r16 on
# every linear layer (BENCHMARKS.md). XLM-R base: bf16 autocast as the training loop runs on
# a GPU, fused AdamW, batch 32 of real MASSIVE lengths (~10 subwords), 2026-11-26; scoring:
# one 2,974-utterance test set in 0.072 s at evaluate.batch_size 512. e5-large-instruct:
# only the first measurement (fp32, batch 32 of 48 tokens, scoring batch 128, 2026-11-25).
# Real runs add data loading and warm-ups, so hours are optimistic per epoch and pessimistic
# in epochs; the estimate is an order of magnitude, not a schedule.
THROUGHPUT: dict[str, Throughput] = {
    "FacebookAI/xlm-roberta-base": Throughput(
        train_full=1_087,
        train_lora=644,
        score=41_300,
        train_full_graphs=3_246,
        train_lora_graphs=3_769,
    ),
    "intfloat/multilingual-e5-large-instruct": Throughput(
        train_full=360, train_lora=350, score=1_400
    ),
}

# Reading, validating and tokenizing the run's data, once per run, while the GPU waits.
# Measured on this project's development machine, not on a GPU host: load_massive of the
# MASSIVE 1.1 archive's 52 locales, then xlcl.encode.encode of every split with
# e5-small-offline's tokenizer (XLM-R's sentencepiece): 859,092 utterances in 149.6 s
# (32.4 s reading, 117.2 s tokenizing), one thread of a 2-core AMD EPYC shared with a
# running sweep, 2026-12. A faster host reads and tokenizes faster.
ENCODING_RATE = 5_700  # utterances/s

# Writing a checkpoint's trainable weights (fp32), with its sha256 and fsync. Not measured on
# a GPU host. On the development machine, save_checkpoint of XLM-R base's 278M parameters
# (1.11 GB) took 2.0-6.9 s in four writes (0.16-0.55 GB/s): the rate below is that disk's,
# to one significant figure; a local NVMe disk writes several times faster.
CHECKPOINT_WRITE_RATE = 0.2e9  # bytes/s
WEIGHT_BYTES = 4  # trainable weights are fp32 (bf16 is only the frozen LoRA base's storage)

# Warm-ups and captures of one step's CUDA graphs (one per padded batch width; each step
# builds its own): "about 0.3 s a step" in BENCHMARKS.md's full 52-step VANILLA run of
# XLM-R base on an H200. Not measured for LoRA or e5-large-instruct: the same is charged.
GRAPH_CAPTURE_SECONDS = 0.3  # per training step

UPPER_BOUND = "upper bound"  # the basis of `Epochs` that are all train.epochs
BASES = ("label", "method", "all runs")  # the groups of finished runs calibration tries


@dataclass(frozen=True)
class Epochs:
    """Epochs charged to every training step, and where the figure comes from: `UPPER_BOUND`,
    or the mean over the steps of `runs` finished runs grouped by a `BASES` entry."""

    per_step: float
    basis: str
    runs: int = 0


@dataclass(frozen=True)
class Overheads:
    """Seconds a run pays besides training and scoring (the module's constants say how
    each is measured)."""

    encoding: float
    checkpoints: float
    graph_capture: float

    @property
    def total(self) -> float:
        """All of them, in seconds."""
        return self.encoding + self.checkpoints + self.graph_capture


@dataclass(frozen=True)
class Cost:
    """Work of one run at `epochs` a step, and its GPU-hours where the model's speed is
    known (training, scoring and `overhead_seconds`)."""

    epochs: Epochs
    train_utterance_epochs: float
    scored_utterances: float
    overhead_seconds: Overheads | None
    gpu_hours: float | None


@dataclass(frozen=True)
class FinishedRun:
    """What calibration reads of a finished run: its groups, its stopping rule and the
    epochs each of its training steps ran (``curves.parquet``)."""

    label: str
    method: str | None
    stopping: tuple[int, int]  # train.epochs, train.patience
    epochs_run: tuple[int, ...]


class CalibrationError(ValueError):
    """A ``--calibrate`` path without finished runs, or with a run that cannot be read."""


@dataclass(frozen=True)
class Calibration:
    """Epochs per training step observed in finished runs."""

    runs: tuple[FinishedRun, ...]

    def epochs(self, config: RunConfig) -> Epochs:
        """The mean epochs per step of the finished runs closest to `config`.

        Only runs with its stopping rule (``train.epochs`` and ``train.patience``) count, so
        the figure never exceeds ``train.epochs``. Among them: those of its label (method,
        rank, model, task and strategy, as ``xlcl metrics`` groups runs), else of its
        method, else all; with none, the upper bound. Every step of every run weighs the same.
        """
        label = _label(config)
        stopping = (config.train.epochs, config.train.patience)
        comparable = [run for run in self.runs if run.stopping == stopping]
        groups = (
            [run for run in comparable if run.label == label],
            [run for run in comparable if run.method == config.method],
            comparable,
        )
        for basis, runs in zip(BASES, groups, strict=True):
            if runs:
                steps = [epochs for run in runs for epochs in run.epochs_run]
                return Epochs(sum(steps) / len(steps), basis, len(runs))
        return upper_bound(config)


def upper_bound(config: RunConfig) -> Epochs:
    """Every step runs all ``train.epochs``."""
    return Epochs(config.train.epochs, UPPER_BOUND)


def read_calibration(paths: Sequence[Path]) -> Calibration:
    """The finished runs (``DONE``) in `paths`: run directories, or directories holding run
    directories at any depth. Unfinished runs there are left out; a path without a finished
    run, or with one that cannot be read, raises `CalibrationError` naming it."""
    runs: dict[Path, FinishedRun] = {}  # by directory: paths may overlap
    for path in paths:
        if not path.is_dir():
            raise CalibrationError(f"--calibrate {path}: no such directory")
        single = (path / MANIFEST).is_file()
        manifests = [path / MANIFEST] if single else sorted(path.rglob(MANIFEST))
        finished = [manifest.parent for manifest in manifests if is_complete(manifest.parent)]
        if not finished:
            raise CalibrationError(
                f"--calibrate {path}: no finished run under it (a run directory with DONE)"
            )
        for directory in finished:
            runs[directory.resolve()] = _finished_run(directory)
    return Calibration(tuple(runs.values()))


def _finished_run(directory: Path) -> FinishedRun:
    try:
        manifest = read_manifest(directory / MANIFEST)
        facts = run_facts(manifest)
        train = manifest["config"]["train"]
        stopping = (int(train["epochs"]), int(train["patience"]))
        curves = pd.read_parquet(directory / CURVES, columns=["step", "epoch"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise CalibrationError(f"--calibrate {directory}: unreadable run ({error})") from None
    if curves.empty:
        raise CalibrationError(f"--calibrate {directory / CURVES}: no epochs recorded")
    # Epochs are numbered from 1: a step's last epoch is how many it ran.
    epochs_run = tuple(int(last) for last in curves.groupby("step")["epoch"].max())
    return FinishedRun(facts.label, facts.method, stopping, epochs_run)


def _label(config: RunConfig) -> str:
    return run_facts({"config": config.model_dump(mode="json"), "task": config.task}).label


def estimate(config: RunConfig, calibration: Calibration | None = None) -> Cost:
    """The cost of `config`: training epochs x utterances, dev and test scoring, hours.

    Epochs per step are the upper bound, or `calibration`'s. The schedule says how many
    steps train, on how many locales' data each, and how many locales are scored after
    each; step 0 scores every locale.
    """
    epochs = upper_bound(config) if calibration is None else calibration.epochs(config)
    locales = len(resolve_order(config.order, config.locales))
    train = _split_size(config.data.max_train, "train")
    dev = _split_size(config.data.max_dev, "dev")
    test = _split_size(config.data.max_test, "test")
    schedule = config.schedule
    steps = schedule.training_steps(locales)
    trained = steps * schedule.locales_per_step(locales)
    train_epochs = trained * train * epochs.per_step
    dev_scored = trained * dev * epochs.per_step  # the dev score after every epoch
    scored_per_step = schedule.scored_per_step(locales, config.evaluate.all_models)
    test_scored = (locales + steps * scored_per_step) * test
    scored = dev_scored + test_scored
    speed = THROUGHPUT.get(config.model)
    if speed is None:
        return Cost(epochs, train_epochs, scored, None, None)
    overheads = Overheads(
        encoding=locales * (train + dev + test) / ENCODING_RATE,
        checkpoints=_checkpoint_bytes(config, steps) / CHECKPOINT_WRITE_RATE,
        graph_capture=steps * GRAPH_CAPTURE_SECONDS if config.train.cuda_graphs else 0.0,
    )
    rate = speed.train(config.method_spec.lora, config.train.cuda_graphs)
    hours = (train_epochs / rate + scored / speed.score + overheads.total) / 3600
    return Cost(epochs, train_epochs, scored, overheads, hours)


def _checkpoint_bytes(config: RunConfig, steps: int) -> int:
    """Weights a run writes: the trainable weights in the checkpoint of every row of the
    sequential schedule (the only one whose next step continues the same model; the others'
    checkpoints hold none), and a LoRA run's adapter after every step."""
    in_checkpoints = steps + 1 if config.schedule == SEQUENTIAL else 0
    adapters = steps if config.method_spec.lora else 0
    return (
        (in_checkpoints + adapters)
        * _trainable_parameters(config.model, config.rank)
        * WEIGHT_BYTES
    )


@functools.cache
def _trainable_parameters(model: str, rank: int | None) -> int:
    """Trainable parameters of one model or adapter: Table 1's count (`xlcl.params`, no
    head), which depends on the method only through its LoRA rank."""
    from xlcl.methods import Method  # xlcl.params builds models: torch and PEFT, only here
    from xlcl.params import count_parameters

    one_model = Method(name="counted", schedule=SEQUENTIAL, rank=rank)
    return count_parameters(one_model, model, n_locales=1).trainable


def _split_size(limit: int | None, split: str) -> int:
    full = MASSIVE_SPLIT_SIZES[split]
    return full if limit is None else min(limit, full)


def replicate_of(configs: Sequence[RunConfig]) -> dict[str, str]:
    """Each run of `configs` that repeats an earlier one under another order: its run id ->
    the earlier run's. Only runs whose schedule does not depend on the order repeat (MULTI,
    MONO, NON-SHARED LoRA), and only with every other setting the same, the locales too."""
    first: dict[str, str] = {}
    repeats: dict[str, str] = {}
    for config in configs:
        if config.schedule.order_dependent:
            continue
        locales = sorted(resolve_order(config.order, config.locales))
        # The run id of the same run in a canonical order: equal for replicates only.
        key = config.model_copy(update={"order": locales, "locales": None}).run_id
        original = first.setdefault(key, config.run_id)
        if original != config.run_id:
            repeats[config.run_id] = original
    return repeats


@dataclass(frozen=True)
class Packing:
    """K runs sharing each GPU (``--runs-per-gpu``), and their measured `speedup`: how many
    times faster K runs finish together than one after another.

    K alone does not say what it saves (launch-bound LoRA runs overlap better than
    bandwidth-bound full fine-tuning), so a sweep's GPU-hours divide by the measured
    speedup, from 1 (no gain: the default) to K.
    """

    runs_per_gpu: int = 1
    speedup: float = 1.0

    def __post_init__(self) -> None:
        if self.runs_per_gpu < 1 or not 1.0 <= self.speedup <= self.runs_per_gpu:
            raise ValueError(
                f"runs per GPU {self.runs_per_gpu} with speedup {self.speedup}: expected "
                "K >= 1 and a speedup from 1 to K"
            )


ONE_RUN_PER_GPU = Packing()


@dataclass(frozen=True)
class Grouping:
    """LoRA runs trained in groups over one encoder (``--group-lora``): at most `size` runs
    a group (`xlcl.schedules.grouping.form_groups`), and the measured `speedup` of a group:
    how many times faster its runs finish together than one after another.

    From 1 (no gain: the default, until a GPU has measured it) to `size`; it divides the
    hours of the runs that land in groups of two or more, not the others'.
    """

    size: int = 1
    speedup: float = 1.0

    def __post_init__(self) -> None:
        if self.size < 1 or not 1.0 <= self.speedup <= self.size:
            raise ValueError(
                f"groups of {self.size} with speedup {self.speedup}: expected a size >= 1 "
                "and a speedup from 1 to the size"
            )

    def grouped(self, configs: Sequence[RunConfig]) -> set[str]:
        """The run ids of `configs` that train in groups of two or more."""
        if self.size == 1:
            return set()
        groups = form_groups(configs, self.size)
        return {config.run_id for group in groups if len(group) > 1 for config in group}


NO_GROUPS = Grouping()


@dataclass(frozen=True)
class Total:
    """Runs priced together: GPU-hours of those whose model's speed is known, the others
    counted apart."""

    runs: int
    train_utterance_epochs: float
    gpu_hours: float
    runs_without_hours: int
    grouped_runs: int = 0  # of `runs`, those trained in groups (`Grouping`)


@dataclass(frozen=True)
class Priced:
    """A sweep priced one way (upper bound or calibrated): every run, the runs still to
    run, and the same with each group of replicates once (none where one of it is done)."""

    costs: dict[str, Cost]
    to_run: Total
    once: Total


@dataclass(frozen=True)
class SweepCost:
    """A sweep's upper bound, its calibrated cost (with a calibration) and its replicates
    (`replicate_of`)."""

    upper_bound: Priced
    calibrated: Priced | None
    replicate_of: dict[str, str]


def estimate_sweep(
    configs: Sequence[RunConfig],
    done: Collection[str] = (),
    calibration: Calibration | None = None,
    packing: Packing = ONE_RUN_PER_GPU,
    grouping: Grouping = NO_GROUPS,
) -> SweepCost:
    """The cost of the runs of `configs` not in `done` (run ids), as one after another on
    one GPU each, or as `packing` packs them and `grouping` groups them."""
    repeats = replicate_of(configs)
    # A group of replicates, named by its first run, needs nothing more once one is done.
    settled = {repeats.get(run_id, run_id) for run_id in done}
    pending = [config for config in configs if config.run_id not in done]
    once = [
        config
        for config in pending
        if config.run_id not in repeats and config.run_id not in settled
    ]

    def priced(calibrated: Calibration | None) -> Priced:
        costs = {config.run_id: estimate(config, calibrated) for config in configs}

        def total(runs: Sequence[RunConfig]) -> Total:
            grouped = grouping.grouped(runs)
            return _total(
                [costs[config.run_id] for config in runs],
                packing,
                [config.run_id in grouped for config in runs],
                grouping.speedup,
            )

        return Priced(costs, total(pending), total(once))

    return SweepCost(
        upper_bound=priced(None),
        calibrated=None if calibration is None else priced(calibration),
        replicate_of=repeats,
    )


def _total(
    costs: Sequence[Cost], packing: Packing, grouped: Sequence[bool], group_speedup: float
) -> Total:
    hours = [
        cost.gpu_hours / (group_speedup if in_group else 1.0)
        for cost, in_group in zip(costs, grouped, strict=True)
        if cost.gpu_hours is not None
    ]
    return Total(
        runs=len(costs),
        train_utterance_epochs=sum(cost.train_utterance_epochs for cost in costs),
        gpu_hours=sum(hours) / packing.speedup,
        runs_without_hours=len(costs) - len(hours),
        grouped_runs=sum(grouped),
    )
