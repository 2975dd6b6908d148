"""What a run costs, before it runs: utterances trained and scored, and GPU-hours.

The counts are upper bounds: every training step is assumed to run all ``train.epochs``
(early stopping usually ends it sooner). GPU-hours divide the counts by a measured
throughput of the preset models (`THROUGHPUT`); other models get counts but no hours.
Where the data source is not known here, a locale has MASSIVE 1.1's 11,514 train,
2,033 dev and 2,974 test utterances (fewer with ``data.max_*``).
"""

from __future__ import annotations

from dataclasses import dataclass

from xlcl.config import RunConfig
from xlcl.data import resolve_order
from xlcl.methods import Schedule

MASSIVE_SPLIT_SIZES = {"train": 11_514, "dev": 2_033, "test": 2_974}


@dataclass(frozen=True)
class Throughput:
    """Utterances per second on one GPU: training (full, LoRA) and scoring."""

    train_full: float
    train_lora: float
    score: float


# Measured on one NVIDIA H200 (fp32, as the training loop runs; AdamW; batch 32 of 48 tokens,
# scoring batch 128; random weights of the preset architectures, LoRA on every linear layer;
# 2026-11). Real runs add data loading and Python overhead, so hours are optimistic per
# epoch and pessimistic in epochs; the estimate is an order of magnitude, not a schedule.
THROUGHPUT: dict[str, Throughput] = {
    "FacebookAI/xlm-roberta-base": Throughput(train_full=930, train_lora=750, score=4500),
    "intfloat/multilingual-e5-large-instruct": Throughput(
        train_full=360, train_lora=350, score=1400
    ),
}


@dataclass(frozen=True)
class Cost:
    """Upper-bound work of one run, and its GPU-hours where the model's speed is known."""

    train_utterance_epochs: int
    scored_utterances: int
    gpu_hours: float | None


def estimate(config: RunConfig) -> Cost:
    """The cost of `config`: training epochs x utterances, dev and test scoring, hours."""
    locales = len(resolve_order(config.order, config.locales))
    train = _split_size(config.data.max_train, "train")
    dev = _split_size(config.data.max_dev, "dev")
    test = _split_size(config.data.max_test, "test")
    epochs = config.train.epochs
    schedule = config.method_spec.schedule
    train_epochs = locales * train * epochs  # every schedule trains each locale's data
    # Dev F1 after every epoch: on the step's locale, or on all locales for a joint step.
    dev_scored = locales * dev * epochs
    if schedule is Schedule.SEQUENTIAL:
        test_scored = (locales + 1) * locales * test
    elif schedule is Schedule.INDEPENDENT:
        per_step = locales if config.evaluate.all_models else 1
        test_scored = locales * test + locales * per_step * test
    else:
        test_scored = 2 * locales * test
    scored = dev_scored + test_scored
    speed = THROUGHPUT.get(config.model)
    hours = None
    if speed is not None:
        rate = speed.train_lora if config.method_spec.lora else speed.train_full
        hours = (train_epochs / rate + scored / speed.score) / 3600
    return Cost(train_utterance_epochs=train_epochs, scored_utterances=scored, gpu_hours=hours)


def _split_size(limit: int | None, split: str) -> int:
    full = MASSIVE_SPLIT_SIZES[split]
    return full if limit is None else min(limit, full)
