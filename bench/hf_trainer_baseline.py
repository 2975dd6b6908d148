""".venv/bin/python bench/hf_trainer_baseline.py [--method vanilla|shared-lora] [--epochs 3]

The baseline of ``bench/bench_trainer.py``: the sequential experiment written the way a
user would write it from the Hugging Face ``Trainer``, PEFT and seqeval, without any of
xlcl's training or evaluation code (only xlcl's MASSIVE reader, so the data is identical).

- ``AutoModelForTokenClassification`` with a fresh head; for SHARED LoRA, PEFT
  ``get_peft_model(LoraConfig(r, lora_alpha, lora_dropout, target_modules="all-linear",
  modules_to_save=["classifier"], task_type=TOKEN_CLS))``;
- first-subword labels, -100 elsewhere; ``DataCollatorForTokenClassification``;
- the fresh head needs a far higher learning rate than the encoder or the adapter, which
  ``TrainingArguments`` cannot express: the optimizer is built by hand, as a Trainer user
  would, a torch ``AdamW`` (fused, like the Trainer's default ``adamw_torch_fused``) with
  parameter groups (the ``classifier`` parameters at the head rate; no weight decay on
  biases and LayerNorm weights, as the Trainer's own optimizer does) and
  ``get_linear_schedule_with_warmup``, passed as ``Trainer(optimizers=(optimizer,
  scheduler))``;
- one ``Trainer`` and one new optimizer per locale (as in xlcl), dev
  seqeval F1 every epoch, ``load_best_model_at_end`` on that F1 — which needs a checkpoint
  on disk every epoch (``save_only_model``, one kept, in a temporary directory);
- before training and after each locale, ``trainer.predict`` on every locale's test set:
  the rows of the score matrix, word-level seqeval F1 (default mode).

Run alone, it prints the score matrix; the benchmark calls `run_baseline` in a subprocess.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from peft import LoraConfig, TaskType, get_peft_model
from seqeval.metrics import f1_score
from transformers import (
    AutoModelForTokenClassification,
    AutoTokenizer,
    DataCollatorForTokenClassification,
    EvalPrediction,
    PreTrainedTokenizerBase,
    Trainer,
    TrainingArguments,
    get_linear_schedule_with_warmup,
    set_seed,
)

from xlcl.data import Utterance, load_massive, slot_label_names

IGNORE = -100
# MASSIVE: $XLCL_MASSIVE (xlcl's own setting), else the shared archive next to the repository.
ARCHIVE = Path(
    os.environ.get("XLCL_MASSIVE")
    or Path(__file__).resolve().parents[2] / "shared/data/amazon-massive-dataset-1.1.tar.gz"
)


@dataclass(frozen=True)
class Experiment:
    """One sequential run, described once for both systems of the benchmark."""

    model_path: str
    archive: str
    locales: tuple[str, ...]
    rank: int | None  # None: VANILLA (full fine-tuning); else SHARED LoRA of this rank
    max_train: int
    max_dev: int
    max_test: int
    epochs: int
    learning_rate: float  # the encoder (VANILLA) or the adapter (LoRA)
    head_learning_rate: float = 2e-2  # the fresh classification head
    warmup_ratio: float = 0.1
    batch_size: int = 16
    eval_batch_size: int = 64
    max_length: int = 64
    weight_decay: float = 0.01
    lora_alpha: int = 4
    lora_dropout: float = 0.0
    seed: int = 42
    precision: str = "fp32"  # or "bf16": autocast on the CPU (oneDNN/AMX where the CPU has it)


@dataclass(frozen=True)
class Outcome:
    """What a system reports: the score matrix (row 0 = untrained) and its wall time."""

    f1: list[list[float]]
    seconds: float


def tokenize(
    utterances: list[Utterance],
    tokenizer: PreTrainedTokenizerBase,
    label_ids: dict[str, int],
    max_length: int,
) -> list[dict[str, list[int]]]:
    """The usual alignment: a word's tag on its first subword, -100 on the others."""
    encoded = tokenizer(
        [list(u.words) for u in utterances],
        is_split_into_words=True,
        truncation=True,
        max_length=max_length,
    )
    rows = []
    for index, utterance in enumerate(utterances):
        labels, previous = [], None
        for word in encoded.word_ids(index):
            first = word is not None and word != previous
            labels.append(label_ids[utterance.tags[word]] if first else IGNORE)
            previous = word
        rows.append(
            {
                "input_ids": encoded["input_ids"][index],
                "attention_mask": encoded["attention_mask"][index],
                "labels": labels,
            }
        )
    return rows


def seqeval_metrics(labels: list[str]):
    """`compute_metrics` for the Trainer: span F1 over words (first-subword predictions)."""

    def compute(prediction: EvalPrediction) -> dict[str, float]:
        predicted = np.argmax(prediction.predictions, axis=-1)
        gold_tags, predicted_tags = [], []
        for pred_row, gold_row in zip(predicted, prediction.label_ids, strict=True):
            kept = gold_row != IGNORE
            gold_tags.append([labels[i] for i in gold_row[kept]])
            predicted_tags.append([labels[i] for i in pred_row[kept]])
        return {"f1": float(f1_score(gold_tags, predicted_tags))}

    return compute


def training_arguments(experiment: Experiment, output_dir: str, step: int) -> TrainingArguments:
    """CPU (bf16 autocast if the experiment says so); dev F1 every epoch, the best restored.

    The learning rate, schedule and weight decay live in the hand-built optimizer
    (`optimizer_and_schedule`); the arguments here only describe the loop.
    """
    return TrainingArguments(
        output_dir=output_dir,
        use_cpu=True,
        bf16=experiment.precision == "bf16",
        num_train_epochs=experiment.epochs,
        max_grad_norm=1.0,
        per_device_train_batch_size=experiment.batch_size,
        per_device_eval_batch_size=experiment.eval_batch_size,
        eval_strategy="epoch",
        save_strategy="epoch",
        save_only_model=True,
        save_total_limit=1,
        load_best_model_at_end=True,
        metric_for_best_model="f1",
        greater_is_better=True,
        label_names=["labels"],
        logging_strategy="no",
        report_to="none",
        disable_tqdm=True,
        seed=experiment.seed + step,
    )


def optimizer_and_schedule(
    model: torch.nn.Module, experiment: Experiment, train_size: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW with the head at its own rate, and a linear schedule with warm-up.

    Four parameter groups: {head, rest} x {decayed, not decayed}; biases and LayerNorm
    weights get no weight decay, as in the Trainer's own optimizer.
    """
    groups: dict[tuple[float, float], list[torch.nn.Parameter]] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        rate = experiment.head_learning_rate if "classifier" in name else experiment.learning_rate
        no_decay = name.endswith(".bias") or "LayerNorm" in name
        decay = 0.0 if no_decay else experiment.weight_decay
        groups.setdefault((rate, decay), []).append(parameter)
    optimizer = torch.optim.AdamW(
        [{"params": ps, "lr": lr, "weight_decay": wd} for (lr, wd), ps in groups.items()],
        lr=experiment.learning_rate,
        fused=True,
    )
    total = experiment.epochs * -(-train_size // experiment.batch_size)
    warmup = int(experiment.warmup_ratio * total)
    return optimizer, get_linear_schedule_with_warmup(optimizer, warmup, total)


def run_baseline(experiment: Experiment) -> Outcome:
    """Train through `experiment.locales` in order, scoring every locale after each step."""
    started = time.perf_counter()
    data = load_massive(experiment.archive, experiment.locales)
    labels = slot_label_names(data)
    label_ids = {label: index for index, label in enumerate(labels)}
    tokenizer = AutoTokenizer.from_pretrained(experiment.model_path)
    limits = {"train": experiment.max_train, "dev": experiment.max_dev, "test": experiment.max_test}
    splits = {
        locale: {
            split: tokenize(
                data.utterances(locale, split)[:limit],
                tokenizer,
                label_ids,
                experiment.max_length,
            )
            for split, limit in limits.items()
        }
        for locale in experiment.locales
    }
    set_seed(experiment.seed)
    model = AutoModelForTokenClassification.from_pretrained(
        experiment.model_path,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id=label_ids,
    )
    if experiment.rank is not None:
        lora = LoraConfig(
            r=experiment.rank,
            lora_alpha=experiment.lora_alpha,
            lora_dropout=experiment.lora_dropout,
            target_modules="all-linear",
            modules_to_save=["classifier"],
            task_type=TaskType.TOKEN_CLS,
        )
        model = get_peft_model(model, lora)
    collator = DataCollatorForTokenClassification(tokenizer)
    metrics = seqeval_metrics(labels)
    rows: list[list[float]] = []
    with tempfile.TemporaryDirectory(prefix="hf-baseline-") as scratch:
        # Step 0 scores the untrained model: a Trainer that is never told to train.
        for step, locale in enumerate((None, *experiment.locales)):
            trained = splits[locale or experiment.locales[0]]
            trainer = Trainer(
                model=model,
                args=training_arguments(experiment, f"{scratch}/step{step}", step),
                data_collator=collator,
                train_dataset=trained["train"],
                eval_dataset=trained["dev"],
                compute_metrics=metrics,
                optimizers=optimizer_and_schedule(model, experiment, len(trained["train"])),
            )
            if locale is not None:
                trainer.train()
            rows.append(
                [
                    trainer.predict(splits[scored]["test"]).metrics["test_f1"]
                    for scored in experiment.locales
                ]
            )
    return Outcome(rows, time.perf_counter() - started)


def main() -> None:
    from xlcl.models import resolve_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[2])
    parser.add_argument("--method", choices=["vanilla", "shared-lora"], default="vanilla")
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    lora = args.method == "shared-lora"
    experiment = Experiment(
        model_path=resolve_model("e5-small-offline"),
        archive=str(ARCHIVE),
        locales=("en-US", "ru-RU", "th-TH"),
        rank=16 if lora else None,
        max_train=400,
        max_dev=100,
        max_test=100,
        epochs=args.epochs,
        learning_rate=2e-3 if lora else 1e-4,
    )
    outcome = run_baseline(experiment)
    for step, row in enumerate(outcome.f1):
        print(step, " ".join(f"{f1:.3f}" for f1 in row))
    print(f"{outcome.seconds:.1f} s")


if __name__ == "__main__":
    main()
