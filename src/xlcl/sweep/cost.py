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


@dataclass(frozen=True)
class Cost:
    """Upper-bound work of one run, and its GPU-hours where the model's speed is known."""

    train_utterance_epochs: int
    scored_utterances: int
    gpu_hours: float | None


def estimate(config: RunConfig) -> Cost:
    """The cost of `config`: training epochs x utterances, dev and test scoring, hours.

    The schedule says how many steps train, on how many locales' data each, and how many
    locales are scored after each; step 0 scores every locale.
    """
    locales = len(resolve_order(config.order, config.locales))
    train = _split_size(config.data.max_train, "train")
    dev = _split_size(config.data.max_dev, "dev")
    test = _split_size(config.data.max_test, "test")
    epochs = config.train.epochs
    schedule = config.schedule
    trained = schedule.training_steps(locales) * schedule.locales_per_step(locales)
    train_epochs = trained * train * epochs
    dev_scored = trained * dev * epochs  # the dev score after every epoch, on the step's data
    scored_per_step = schedule.scored_per_step(locales, config.evaluate.all_models)
    test_scored = (locales + schedule.training_steps(locales) * scored_per_step) * test
    scored = dev_scored + test_scored
    speed = THROUGHPUT.get(config.model)
    hours = None
    if speed is not None:
        rate = speed.train(config.method_spec.lora, config.train.cuda_graphs)
        hours = (train_epochs / rate + scored / speed.score) / 3600
    return Cost(train_utterance_epochs=train_epochs, scored_utterances=scored, gpu_hours=hours)


def _split_size(limit: int | None, split: str) -> int:
    full = MASSIVE_SPLIT_SIZES[split]
    return full if limit is None else min(limit, full)
