"""The paper's protocol: train each step, then score every locale of the run.

Run it with ``xlcl run configs/demo/quick/vanilla.yaml``. A run reads MASSIVE, tokenizes each locale
once, and follows its method's schedule:

- sequential (VANILLA, SHARED LoRA): one model through the order; after step i every
  locale is scored, giving row i of the score matrix;
- independent (MONO, NON-SHARED LoRA): a fresh model or adapter per locale, scored on its
  own locale (or on all, with ``evaluate.all_models``);
  NON-SHARED LoRA's adapters can train all at once (``train.adapters_together``);
- joint (MULTI): one model on all locales at once, scored once.

Row 0 is the untrained model (fresh head) on every locale. Scores, curves and adapters go
to the run directory as soon as they exist; ``DONE`` is written only at the very end.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from peft import PeftModel
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from xlcl.checkpoint import (
    Checkpoint,
    latest_checkpoint,
    latest_partial,
    save_checkpoint,
    save_partial,
)
from xlcl.classifier import (
    build_classifier,
    save_adapter,
    store_frozen_linears_in_bf16,
    trainable_parameters,
)
from xlcl.config import RunConfig, TrainConfig
from xlcl.data import SPLITS, DataError, MassiveData, load_massive, resolve_order, slot_label_names
from xlcl.encode import EncodedSplit, encode
from xlcl.evaluate.scoring import score_splits, uses_bf16
from xlcl.methods import Schedule
from xlcl.models import VocabularyTrim, resolve_model
from xlcl.progress import Reporter, Silent
from xlcl.store import VOCABULARY, RunStore, ScoreCell, is_complete
from xlcl.together import add_adapters, train_adapters_together
from xlcl.train import EpochRecord, StepResult, TrainState, train_step


@dataclass
class _Run:
    """Everything a schedule needs, prepared once."""

    config: RunConfig
    order: tuple[str, ...]
    labels: list[str]
    splits: dict[str, dict[str, EncodedSplit]]
    model_path: str
    pad_id: int
    device: torch.device
    store: RunStore
    reporter: Reporter
    trim: VocabularyTrim | None
    resumed_from: Checkpoint | None
    train_config: TrainConfig

    @property
    def finished_step(self) -> int:
        """The last step whose scores are recorded; -1 when not even step 0 is."""
        return -1 if self.resumed_from is None else self.resumed_from.step

    def pending(self, step: int) -> bool:
        """Whether `step` still has to run (a resumed run skips finished steps)."""
        return step > self.finished_step

    def checkpoint(self, step: int, model: torch.nn.Module | None) -> None:
        """Record that `step` is finished; keep `model`'s trainable weights if it goes on."""
        weights: dict[str, torch.Tensor] | None = None
        if model is not None:
            weights = {name: p for name, p in trainable_parameters(model)}
        save_checkpoint(
            self.store.directory,
            step,
            weights,
            self.config.run_id,
            keep=self.config.checkpoint.keep,
        )

    def restored_model(self) -> torch.nn.Module:
        """A fresh model, with the checkpoint's weights when the run resumes."""
        model = self.fresh_model()
        if self.resumed_from is not None:
            weights = self.resumed_from.weights()
            if weights is not None:
                _load_weights(model, weights)
            self.resumed_from.restore_rng()
        return model

    def fresh_model(self) -> torch.nn.Module:
        """A new classifier for this run's method, the same initial head every time."""
        model = build_classifier(
            self.model_path,
            self.labels,
            self.config.method_spec,
            self.config.lora,
            seed=self.config.train.seed,
            trim=self.trim,
        )
        model.to(self.device)
        if self.config.method_spec.lora and uses_bf16(self.train_config.precision, self.device):
            store_frozen_linears_in_bf16(model)
        if self.config.train.compile:
            # In place: the module keeps its type and parameter names (adapters, checkpoints).
            model.compile(dynamic=True)
        return model

    def train(self, model: torch.nn.Module, step: int, locales: Sequence[str]) -> None:
        """Train step `step` on `locales` with early stopping; record its curve.

        A run stopped inside this step continues from its checkpoint inside the step. On
        a GPU out of memory, the step restarts with half the batch and twice the gradient
        accumulation (the same effective batch), and the manifest records it.
        """
        initial = _snapshot_to_cpu(model)  # the step's start, for a retry from scratch
        resume = self._partial_state(model, step)
        while True:
            try:
                result = self._train_once(model, step, locales, resume)
                break
            except torch.OutOfMemoryError:
                config = self.train_config
                if config.batch_size == 1:
                    raise
                self.train_config = _with_batch(config, config.batch_size // 2)
                self.store.note_oom_retry(step, self.train_config.batch_size)
                self.reporter.message(
                    f"out of GPU memory at step {step}: retrying with batch "
                    f"{self.train_config.batch_size} x {self.train_config.gradient_accumulation}"
                )
                _load_weights(model, initial)
                resume = None
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
        trained = locales[0] if len(locales) == 1 else "joint"
        self.store.add_curve(step, trained, result.epochs)

    def _train_once(
        self,
        model: torch.nn.Module,
        step: int,
        locales: Sequence[str],
        resume: TrainState | None,
    ) -> StepResult:
        config = self.train_config

        def on_epoch(record: EpochRecord, best: float) -> None:
            self.reporter.epoch(record.epoch, config.epochs, record.dev_f1, best)

        def on_save(state: TrainState) -> None:
            weights = dict(trainable_parameters(model))
            save_partial(self.store.directory, step, weights, self.config.run_id, state.to_dict())

        return train_step(
            model,
            [self.splits[locale]["train"] for locale in locales],
            [self.splits[locale]["dev"] for locale in locales],
            self.labels,
            config,
            pad_id=self.pad_id,
            device=self.device,
            eval_batch_size=self.config.evaluate.batch_size,
            seed=config.seed + step,
            on_epoch=on_epoch,
            resume=resume,
            save_every=self.config.checkpoint.every_updates,
            on_save=on_save,
        )

    def _partial_state(self, model: torch.nn.Module, step: int) -> TrainState | None:
        """Load the checkpoint inside `step` into `model`, if the run stopped there."""
        if self.resumed_from is None or step != self.resumed_from.step + 1:
            return None
        partial = latest_partial(self.store.directory, self.config.run_id, step)
        if partial is None:
            return None
        weights = partial.weights()
        assert weights is not None, "a checkpoint inside a step always holds weights"
        _load_weights(model, weights)
        self.reporter.message(f"continuing step {step} from its checkpoint inside the step")
        return TrainState.from_dict(partial.train_state())

    def score(
        self,
        model: torch.nn.Module,
        step: int,
        trained_locale: str | None,
        scored: Sequence[str],
    ) -> None:
        """Score `model` on the locales in `scored`; the other cells of the row are NaN."""
        self.record(self.score_cells(model, step, trained_locale, scored))

    def score_cells(
        self,
        model: torch.nn.Module,
        step: int,
        trained_locale: str | None,
        scored: Sequence[str],
    ) -> list[ScoreCell]:
        """Row `step` of the score matrix, not yet recorded (see `score`)."""
        cells = []
        for locale in self.order:
            test = self.splits[locale]["test"]
            if locale in scored:
                counts = score_splits(
                    model,
                    [test],
                    self.labels,
                    self.config.evaluate.batch_size,
                    self.pad_id,
                    self.device,
                    self.train_config.precision,
                )
                values = (counts.f1, counts.precision, counts.recall, counts.n_pred)
            else:
                values = (float("nan"), float("nan"), float("nan"), 0)
            n_gold = _gold_spans(test, self.labels)
            cells.append(
                ScoreCell(step, trained_locale, locale, *values[:3], n_gold, values[3], len(test))
            )
        return cells

    def record(self, cells: list[ScoreCell]) -> None:
        """Store a row of scores and report its mean over the scored locales."""
        self.store.add_cells(cells)
        scored_f1 = [cell.f1 for cell in cells if not math.isnan(cell.f1)]
        self.reporter.evaluated(cells[0].step, sum(scored_f1) / max(len(scored_f1), 1))


def run(config: RunConfig, reporter: Reporter | None = None) -> Path:
    """Run the experiment `config` describes, or resume it; return its run directory.

    A run directory that already exists for this config continues from its newest complete
    checkpoint; a finished one is returned as it is.
    """
    reporter = reporter or Silent()
    directory = Path(config.output_dir) / config.run_id
    if is_complete(directory):
        reporter.message(f"run {config.run_id} is already complete: {directory}")
        return directory
    order = resolve_order(config.order, config.locales)
    data = load_massive(config.data.source, order, skip_invalid=config.data.skip_invalid)
    if data.empty_splits:
        missing = ", ".join(f"{locale} {split}" for locale, split in data.empty_splits)
        raise DataError(f"no utterances in {missing}", file=data.source)
    if data.quarantine:
        reporter.message(f"skipped {len(data.quarantine)} invalid rows (data.skip_invalid)")
    labels = slot_label_names(data)
    model_path = resolve_model(config.model)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    if config.train.threads is not None:
        torch.set_num_threads(config.train.threads)
    device = pick_device(config.train.device)
    splits = _encode_all(config, data, order, labels, tokenizer)
    trim = None
    if config.trim_vocabulary:
        trim, splits = _trim_vocabulary(splits, tokenizer)
    checkpoint = latest_checkpoint(directory, config.run_id) if directory.is_dir() else None
    if checkpoint is None:
        store = RunStore.create(config, order, labels, data.checksum, str(device))
        reporter.message(f"run {config.run_id}: {config.method_spec.label}, {len(order)} locales")
    else:
        store = RunStore.resume(directory, checkpoint.step)
        reporter.message(f"run {config.run_id}: resuming after step {checkpoint.step}")
    if trim is not None:
        trim.save(store.directory / VOCABULARY)
        reporter.message(f"vocabulary trimmed to the run's {len(trim):,} tokens")
    train_config = config.train
    if checkpoint is not None:
        train_config = _after_oom_retries(train_config, store.manifest, checkpoint.step + 1)
    state = _Run(
        config=config,
        order=order,
        labels=labels,
        splits=splits,
        model_path=model_path,
        pad_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0,
        device=device,
        store=store,
        reporter=reporter,
        trim=trim,
        resumed_from=checkpoint,
        train_config=train_config,
    )
    deterministic_before = torch.are_deterministic_algorithms_enabled()
    if config.train.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # needed by cuBLAS
        torch.use_deterministic_algorithms(True)
    try:
        SCHEDULES[config.method_spec.schedule](state)
    except BaseException as error:
        store.fail(error)
        raise
    finally:
        torch.use_deterministic_algorithms(deterministic_before)
    store.finish()
    return store.directory


def _sequential(run: _Run) -> None:
    model = run.restored_model()
    if run.pending(0):
        run.score(model, 0, None, run.order)
        run.checkpoint(0, model)
    for step, locale in enumerate(run.order, start=1):
        if not run.pending(step):
            continue
        run.reporter.start_step(step, len(run.order), locale)
        run.train(model, step, [locale])
        if run.config.method_spec.lora:
            save_adapter(model, run.store.adapter_dir("shared"))
        run.score(model, step, locale, run.order)
        run.checkpoint(step, model)


def _independent(run: _Run) -> None:
    if run.pending(0):
        run.score(run.fresh_model(), 0, None, run.order)
        run.checkpoint(0, None)
    if run.config.train.adapters_together:
        _adapters_together(run)
        return
    for step, locale in enumerate(run.order, start=1):
        if not run.pending(step):
            continue
        run.reporter.start_step(step, len(run.order), locale)
        model = run.fresh_model()
        run.train(model, step, [locale])
        if run.config.method_spec.lora:
            save_adapter(model, run.store.adapter_dir(locale))
        scored = run.order if run.config.evaluate.all_models else [locale]
        run.score(model, step, locale, scored)
        run.checkpoint(step, None)


def _adapters_together(run: _Run) -> None:
    """NON-SHARED LoRA with the pending locales' adapters trained at once (`xlcl.together`).

    Each adapter is saved and scored as soon as it stops; its step is recorded (scores,
    curve, checkpoint) once it and every step before it have stopped, so the run directory
    always holds a prefix of the steps, as one-by-one training leaves it.
    """
    pending = [(step, locale) for step, locale in enumerate(run.order, 1) if run.pending(step)]
    if not pending:
        return
    rank = run.config.method_spec.rank
    assert rank is not None, "adapters_together is validated to be NON-SHARED LoRA"
    names = [locale for _, locale in pending]
    model = run.fresh_model()
    assert isinstance(model, PeftModel), "a LoRA method builds a PEFT model"
    add_adapters(model, names, rank, run.config.lora)
    model.to(run.device)
    finished: dict[str, tuple[StepResult, list[ScoreCell]]] = {}
    config = run.train_config

    def on_epoch(locale: str, record: EpochRecord, best: float) -> None:
        run.reporter.message(
            f"  {locale} epoch {record.epoch}/{config.epochs}  dev F1 {record.dev_f1:.4f} "
            f"(best {best:.4f})"
        )

    def on_finished(locale: str, result: StepResult) -> None:
        step = run.order.index(locale) + 1
        save_adapter(model, run.store.adapter_dir(locale), adapter=locale)
        scored = run.order if run.config.evaluate.all_models else [locale]
        finished[locale] = (result, run.score_cells(model, step, locale, scored))
        while pending and pending[0][1] in finished:
            next_step, next_locale = pending.pop(0)
            next_result, cells = finished.pop(next_locale)
            run.store.add_curve(next_step, next_locale, next_result.epochs)
            run.record(cells)
            run.checkpoint(next_step, None)

    run.reporter.message(f"training the adapters of {len(names)} locales together")
    train_adapters_together(
        model,
        names,
        [run.splits[locale]["train"] for locale in names],
        [run.splits[locale]["dev"] for locale in names],
        run.labels,
        config,
        pad_id=run.pad_id,
        device=run.device,
        eval_batch_size=run.config.evaluate.batch_size,
        seeds=[config.seed + step for step, _ in pending],
        on_epoch=on_epoch,
        on_finished=on_finished,
    )


def _joint(run: _Run) -> None:
    model = run.restored_model()
    if run.pending(0):
        run.score(model, 0, None, run.order)
        run.checkpoint(0, None)
    if not run.pending(1):
        return
    run.reporter.start_step(1, 1, "all locales")
    run.train(model, 1, run.order)
    if run.config.method_spec.lora:
        save_adapter(model, run.store.adapter_dir("joint"))
    run.score(model, 1, "joint", run.order)
    run.checkpoint(1, None)


SCHEDULES: dict[Schedule, Callable[[_Run], None]] = {
    Schedule.SEQUENTIAL: _sequential,
    Schedule.INDEPENDENT: _independent,
    Schedule.JOINT: _joint,
}


def pick_device(name: str) -> torch.device:
    """``auto`` is the GPU when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _encode_all(
    config: RunConfig,
    data: MassiveData,
    order: Sequence[str],
    labels: list[str],
    tokenizer: PreTrainedTokenizerBase,
) -> dict[str, dict[str, EncodedSplit]]:
    limits = {
        "train": config.data.max_train,
        "dev": config.data.max_dev,
        "test": config.data.max_test,
    }
    label_ids = {label: index for index, label in enumerate(labels)}
    return {
        locale: {
            split: encode(
                data.utterances(locale, split)[: limits[split]],
                tokenizer,
                label_ids,
                config.train.max_length,
            )
            for split in SPLITS
        }
        for locale in order
    }


def _trim_vocabulary(
    splits: dict[str, dict[str, EncodedSplit]], tokenizer: PreTrainedTokenizerBase
) -> tuple[VocabularyTrim, dict[str, dict[str, EncodedSplit]]]:
    """Keep the tokens of every split of the run; remap the splits to the new ids."""
    every_id = np.concatenate(
        [
            ids
            for by_split in splits.values()
            for split in by_split.values()
            for ids in split.input_ids
        ]
    )
    trim = VocabularyTrim.from_token_ids(torch.from_numpy(every_id), tokenizer.all_special_ids)
    remapped = {
        locale: {
            name: replace(
                split,
                input_ids=[trim.remap(torch.from_numpy(ids)).numpy() for ids in split.input_ids],
            )
            for name, split in by_split.items()
        }
        for locale, by_split in splits.items()
    }
    return trim, remapped


def _after_oom_retries(train: TrainConfig, manifest: dict[str, Any], step: int) -> TrainConfig:
    """The batch a resumed run goes on with at `step`: its last out-of-memory retry's.

    A retry halves the batch for the rest of the run; a run resumed after it must too,
    or its later steps (and a checkpoint inside a step, counted in the smaller batches)
    would differ from the uninterrupted run's.
    """
    retries = [retry for retry in manifest.get("oom_retries", []) if retry["step"] <= step]
    return _with_batch(train, retries[-1]["batch_size"]) if retries else train


def _with_batch(train: TrainConfig, batch_size: int) -> TrainConfig:
    """`train` at `batch_size` (a divisor of its batch), with the same effective batch."""
    factor = train.batch_size // batch_size
    return train.model_copy(
        update={
            "batch_size": batch_size,
            "gradient_accumulation": train.gradient_accumulation * factor,
        }
    )


def _snapshot_to_cpu(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().to("cpu", copy=True) for name, p in trainable_parameters(model)}


def _load_weights(model: torch.nn.Module, weights: dict[str, torch.Tensor]) -> None:
    """Copy `weights` into `model`'s trainable parameters of the same names."""
    parameters = dict(trainable_parameters(model))
    missing = parameters.keys() - weights.keys()
    if missing:
        raise ValueError(f"checkpoint lacks {len(missing)} weights, e.g. {sorted(missing)[0]}")
    with torch.no_grad():
        for name, parameter in parameters.items():
            parameter.copy_(weights[name])


def _gold_spans(split: EncodedSplit, labels: Sequence[str]) -> int:
    return sum(int(sum(labels[tag].startswith("B-") for tag in gold)) for gold in split.gold)
