"""The paper's protocol: train each step, then score every locale of the run.

Run it with ``xlcl run configs/demo/quick/vanilla.yaml``. A run resolves its task, order
and strategy (nothing is written before they are valid), reads the data, encodes each
locale once, and follows its schedule (`RunConfig.schedule`, `xlcl.schedules.runners`):

- sequential (VANILLA, SHARED LoRA): one model through the order; after step i every
  locale is scored, giving row i of the score matrix;
- independent (MONO, NON-SHARED LoRA): a fresh model or adapter per locale, scored on its
  own locale (or on all, with ``evaluate.all_models``);
  NON-SHARED LoRA's adapters can train all at once (``train.adapters_together``);
- joint (MULTI): one model on all locales at once, scored once;
- merged (NON-SHARED LoRA with the ``merge`` strategy): independent's adapters, and after
  step i the merge of the first i scored on every locale.

Row 0 is the untrained model (fresh head) on every locale. Scores, curves and adapters go
to the run directory as soon as they exist; ``DONE`` is written only at the very end.

What a schedule needs is split by responsibility: `Models` builds and restores models,
`Scorer` fills rows of the score matrix, `StepTrainer` trains one step (strategy hooks,
out-of-memory retries, checkpoints inside the step), and `Run` ties them to the store.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from xlcl.checkpoint import (
    Checkpoint,
    latest_checkpoint,
    latest_partial,
    save_checkpoint,
    save_partial,
)
from xlcl.classifier import (
    is_head_parameter,
    load_tokenizer,
    store_frozen_linears_in_bf16,
    trainable_parameters,
)
from xlcl.config import ConfigError, RunConfig, TrainConfig
from xlcl.data import SPLITS, DataError, MassiveData
from xlcl.encode import EncodedSplit
from xlcl.evaluate.scoring import uses_bf16
from xlcl.models import VocabularyTrim, resolve_model
from xlcl.progress import Reporter, Silent
from xlcl.store import VOCABULARY, RunStore, ScoreCell, is_complete
from xlcl.strategies import StepContext, StepPlan, Strategy, build_strategy, hook_rng
from xlcl.tasks import Task, get_task
from xlcl.tracking import Tracking
from xlcl.train import EpochRecord, Objective, StepResult, TrainState, train_step

Splits = dict[str, dict[str, EncodedSplit]]  # locale -> split name -> encoded split


@dataclass(frozen=True)
class Models:
    """Builds this run's models: the same fresh initial model every time."""

    config: RunConfig
    task: Task
    labels: list[str]
    model_path: str
    device: torch.device
    precision: str
    trim: VocabularyTrim | None

    def fresh(self) -> torch.nn.Module:
        """A new model for this run's task and method, the same initial head every time."""
        return self.placed(self.built())

    def built(self) -> torch.nn.Module:
        """`fresh`'s model as the task builds it, on the CPU in fp32 (`placed` finishes it)."""
        return self.task.build_model(
            self.model_path,
            self.labels,
            self.config.method_spec,
            self.config.lora,
            seed=self.config.train.seed,
            trim=self.trim,
        )

    def placed(self, model: torch.nn.Module) -> torch.nn.Module:
        """`model` on the run's device, its frozen LoRA base in bf16 where the run trains
        under bf16 autocast, compiled when the config says so."""
        model.to(self.device)
        if self.config.method_spec.lora and uses_bf16(self.precision, self.device):
            store_frozen_linears_in_bf16(model)
        if self.config.train.compile:
            # In place: the module keeps its type and parameter names (adapters, checkpoints).
            model.compile(dynamic=True)
        return model


@dataclass(frozen=True)
class Scorer:
    """Fills rows of the score matrix with the task's metric."""

    task: Task
    order: tuple[str, ...]
    labels: list[str]
    splits: Splits
    batch_size: int
    pad_id: int
    device: torch.device
    precision: str

    def cells(
        self, model: torch.nn.Module, step: int, trained: str | None, scored: Sequence[str]
    ) -> list[ScoreCell]:
        """Row `step`: `model` scored on the locales in `scored`; the other cells are NaN.

        The scored locales' test sets go to `Task.score_each` together (the built-in tasks
        score them in one pass).
        """
        locales = [locale for locale in self.order if locale in scored]
        tests = [self.splits[locale]["test"] for locale in locales]
        each = self.task.score_each(
            model, tests, self.labels, self.batch_size, self.pad_id, self.device, self.precision
        )
        scores = dict(zip(locales, each, strict=True))
        cells = []
        for locale in self.order:
            test = self.splits[locale]["test"]
            score = scores[locale] if locale in scores else self.task.unscored(test, self.labels)
            cells.append(
                ScoreCell(
                    step,
                    trained,
                    locale,
                    score.value,
                    score.f1,
                    score.precision,
                    score.recall,
                    score.n_gold,
                    score.n_pred,
                    score.n_sentences,
                    score.intent_accuracy,
                    utterances=score.utterances,
                )
            )
        return cells


@dataclass
class StepTrainer:
    """Trains one step: the strategy's plan, the engine, out-of-memory retries.

    A run stopped inside a step continues from its checkpoint inside the step. On a GPU
    out of memory, the step restarts with half the batch and twice the gradient
    accumulation (the same effective batch), and the manifest records it.
    """

    config: RunConfig
    task: Task
    strategy: Strategy | None
    labels: list[str]
    splits: Splits
    order: tuple[str, ...]
    pad_id: int
    device: torch.device
    store: RunStore
    reporter: Reporter
    train_config: TrainConfig  # the batch a retry after running out of memory left
    partial_step: int | None  # the step a checkpoint inside a step may continue

    def context(self, step: int, locales: Sequence[str], hook: str) -> StepContext:
        """What a strategy hook sees at `step`, with its own generator for `hook`."""
        earlier = tuple(self.order[: self.order.index(locales[0])]) if len(locales) == 1 else ()
        return StepContext(
            step=step,
            locales=tuple(locales),
            earlier=earlier,
            train_splits={loc: self.splits[loc]["train"] for loc in (*earlier, *locales)},
            config=self.config,
            rng=hook_rng(self.config.train.seed, step, hook),
        )

    def plan(self, model: torch.nn.Module, step: int, locales: Sequence[str]) -> StepPlan:
        """The strategy's plan for `step` (nothing, without a strategy)."""
        if self.strategy is None:
            return StepPlan()
        context = self.context(step, locales, "before_step")
        return self.strategy.before_step(context, model) or StepPlan()

    def prepare(self, model: torch.nn.Module) -> None:
        """Let the strategy put into `model` what it adds to it (`Strategy.prepare_model`)."""
        if self.strategy is not None:
            self.strategy.prepare_model(model)

    def after(self, model: torch.nn.Module, step: int, locales: Sequence[str]) -> None:
        """Let the strategy see the trained step."""
        if self.strategy is not None:
            self.strategy.after_step(self.context(step, locales, "after_step"), model)

    def note_strategy_cost(self, model: torch.nn.Module) -> None:
        """Put what the strategy holds beyond the method (`Strategy.cost`) in the manifest."""
        if self.strategy is None:
            return
        trained = trainable_parameters(model)
        trainable = sum(parameter.numel() for _, parameter in trained)
        head = sum(p.numel() for name, p in trained if is_head_parameter(name))
        sizes = {locale: len(self.splits[locale]["train"]) for locale in self.order}
        settings = self.strategy.settings
        cost = self.strategy.cost(settings, trainable=trainable, head=head, train_sizes=sizes)
        self.store.note_strategy_cost(cost)

    def train(self, model: torch.nn.Module, step: int, locales: Sequence[str]) -> None:
        """Train step `step` on `locales` as the strategy plans; record its curve."""
        plan = self.plan(model, step, locales)
        self.prepare(model)  # before the snapshot: a retry starts where the step starts
        self.note_strategy_cost(model)
        initial = _snapshot_to_cpu(model)  # the step's start, for a retry from scratch
        resume = self._partial_state(model, step)
        while True:
            try:
                result = self._train_once(model, step, locales, plan, resume)
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
        trained = self.config.schedule.trained_locale(step, self.order)
        assert trained is not None, "row 0 is never trained"
        self.store.add_curve(step, trained, result.epochs)
        self.after(model, step, locales)

    def _train_once(
        self,
        model: torch.nn.Module,
        step: int,
        locales: Sequence[str],
        plan: StepPlan,
        resume: TrainState | None,
    ) -> StepResult:
        # A plan's settings keep the batch an out-of-memory retry left.
        config = self.train_config
        if plan.train is not None:
            config = _with_batch(plan.train, self.train_config.batch_size)

        def on_epoch(record: EpochRecord, best: float) -> None:
            self.reporter.epoch(record.epoch, config.epochs, record.dev_score, best)

        def on_save(state: TrainState) -> None:
            weights = dict(trainable_parameters(model))
            save_partial(
                self.store.directory,
                step,
                weights,
                self.config.run_id,
                state.to_dict(),
                state=self.strategy_state(),
            )

        return train_step(
            model,
            [*(self.splits[locale]["train"] for locale in locales), *plan.extra_train],
            [self.splits[locale]["dev"] for locale in locales],
            self.labels,
            config,
            objective=Objective(self.task, self.strategy),
            pad_id=self.pad_id,
            device=self.device,
            eval_batch_size=self.config.evaluate.batch_size,
            seed=config.seed + step,
            on_epoch=on_epoch,
            resume=resume,
            save_every=self.config.checkpoint.every_updates,
            on_save=on_save,
            interleaved=plan.interleaved,
        )

    def strategy_state(self) -> dict[str, Any] | None:
        """What a checkpoint keeps of the strategy (None without one)."""
        return None if self.strategy is None else {"strategy": self.strategy.state_dict()}

    def _partial_state(self, model: torch.nn.Module, step: int) -> TrainState | None:
        """Load the checkpoint inside `step` into `model` (and the strategy), if the run
        stopped there."""
        if step != self.partial_step:
            return None
        partial = latest_partial(self.store.directory, self.config.run_id, step)
        if partial is None:
            return None
        weights = partial.weights()
        assert weights is not None, "a checkpoint inside a step always holds weights"
        _load_weights(model, weights)
        if self.strategy is not None:  # as it was at that update, after the step's plan
            self.strategy.load_state_dict(partial.state()["strategy"])
        self.reporter.message(f"continuing step {step} from its checkpoint inside the step")
        return TrainState.from_dict(partial.train_state())


@dataclass
class Run:
    """Everything a schedule needs, prepared once: what to train, score, record and keep."""

    config: RunConfig
    order: tuple[str, ...]
    models: Models
    scorer: Scorer
    trainer: StepTrainer
    store: RunStore
    reporter: Reporter
    resumed_from: Checkpoint | None
    tracking: Tracking

    @property
    def finished_step(self) -> int:
        """The last step whose scores are recorded; -1 when not even step 0 is."""
        return -1 if self.resumed_from is None else self.resumed_from.step

    def pending(self, step: int) -> bool:
        """Whether `step` still has to run (a resumed run skips finished steps)."""
        return step > self.finished_step

    def fresh_model(self) -> torch.nn.Module:
        """A new model, the same initial one every time."""
        model = self.models.fresh()
        self.trainer.prepare(model)
        return model

    def restored_model(self) -> torch.nn.Module:
        """A fresh model, with the checkpoint's weights and RNG when the run resumes."""
        model = self.models.fresh()
        if self.resumed_from is not None:
            weights = self.resumed_from.weights()
            if weights is not None:
                _load_weights(model, weights)
            self.resumed_from.restore_rng()
        self.trainer.prepare(model)
        return model

    def train(self, model: torch.nn.Module, step: int, locales: Sequence[str]) -> None:
        """Train step `step` on `locales` (see `StepTrainer.train`)."""
        self.trainer.train(model, step, locales)

    def score(
        self, model: torch.nn.Module, step: int, trained: str | None, scored: Sequence[str]
    ) -> None:
        """Score `model` on the locales in `scored` and record row `step`."""
        self.record(self.scorer.cells(model, step, trained, scored))

    def record(self, cells: list[ScoreCell]) -> None:
        """Store a row of scores and report its mean over the scored locales."""
        self.store.add_cells(cells)
        scored = [cell.score for cell in cells if not np.isnan(cell.score)]
        self.reporter.evaluated(cells[0].step, sum(scored) / max(len(scored), 1))

    def checkpoint(self, step: int, model: torch.nn.Module | None) -> None:
        """Record that `step` is finished; keep `model`'s trainable weights if it goes on,
        and the strategy's state."""
        self.checkpoint_weights(step, None if model is None else dict(trainable_parameters(model)))

    def checkpoint_weights(self, step: int, weights: dict[str, torch.Tensor] | None) -> None:
        """`checkpoint` with the trainable weights given by name (one adapter of several)."""
        save_checkpoint(
            self.store.directory,
            step,
            weights,
            self.config.run_id,
            keep=self.config.checkpoint.keep,
            state=self.trainer.strategy_state(),
        )
        self.tracking.step_finished(self.store, step)

    def finish(self) -> None:
        """Mark the run complete (``DONE``) and close its trackers."""
        self.store.finish()
        self.tracking.run_finished(self.store.directory, self.store)
        self.tracking.close()

    def fail(self, error: BaseException) -> None:
        """Record why the run stopped; what it finished stays."""
        self.store.fail(error)
        self.tracking.close(failed=True)


def run(config: RunConfig, reporter: Reporter | None = None) -> Path:
    """Run the experiment `config` describes, or resume it; return its run directory.

    A run directory that already exists for this config continues from its newest complete
    checkpoint; a finished one is returned as it is.
    """
    from xlcl.schedules.runners import RUNNERS

    reporter = reporter or Silent()
    prepared = prepare(config, reporter)
    if prepared is None:
        return Path(config.output_dir) / config.run_id
    try:
        with deterministic_algorithms(config.train.deterministic):
            RUNNERS[config.schedule.name](prepared)
    except BaseException as error:
        prepared.fail(error)
        raise
    prepared.finish()
    return prepared.store.directory


@contextmanager
def deterministic_algorithms(enabled: bool) -> Iterator[None]:
    """torch's deterministic algorithms on while the context lasts, when `enabled`."""
    before = torch.are_deterministic_algorithms_enabled()
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # needed by cuBLAS
        torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before)


@dataclass(frozen=True)
class Encoded:
    """A run's data read and encoded: what runs over the same locales, data settings,
    model and lengths share (`EncodedCache`)."""

    checksum: str
    labels: list[str]
    model_path: str
    pad_id: int
    splits: Splits
    trim: VocabularyTrim | None


EncodedCache = dict[str, Encoded]  # `encoded_key` -> what `prepare` read and encoded


def encoded_key(config: RunConfig, order: Sequence[str]) -> str:
    """What a run's `Encoded` depends on, as a key: equal keys, equal data and encodings."""
    return json.dumps(
        {
            "task": config.task,
            "data": config.data.model_dump(mode="json"),
            "locales": sorted(order),
            "model": config.model,
            "max_length": config.train.max_length,
            "trim_vocabulary": config.trim_vocabulary,
        },
        sort_keys=True,
    )


def prepare(config: RunConfig, reporter: Reporter, cache: EncodedCache | None = None) -> Run | None:
    """Everything `config`'s run needs before its schedule starts; None when it is complete.

    Resolves the task, order and strategy (nothing is written before they are valid),
    reads and encodes the data, and creates the run directory or resumes it. With `cache`,
    runs over the same data (`encoded_key`: a group of runs) read and encode it once.
    """
    directory = Path(config.output_dir) / config.run_id
    if is_complete(directory):
        reporter.message(f"run {config.run_id} is already complete: {directory}")
        return None
    task = get_task(config.task)
    try:
        order = task.resolve_order(config.order, config.locales)
    except ValueError as error:
        raise ConfigError(f"order: {error} (task {config.task})") from None
    strategy = build_strategy(config.strategy) if config.strategy is not None else None
    key = encoded_key(config, order)
    encoded = None if cache is None else cache.get(key)
    if encoded is None:
        encoded = _read_and_encode(config, task, order, reporter)
        if cache is not None:
            cache[key] = encoded
    labels, model_path, splits, trim = (
        encoded.labels,
        encoded.model_path,
        encoded.splits,
        encoded.trim,
    )
    if config.train.threads is not None:
        torch.set_num_threads(config.train.threads)
    device = pick_device(config.train.device)
    checkpoint = latest_checkpoint(directory, config.run_id) if directory.is_dir() else None
    if checkpoint is None:
        store = RunStore.create(config, order, labels, encoded.checksum, str(device), task.metric)
        reporter.message(
            f"run {config.run_id}: {config.method_spec.label}, {len(order)} locales, "
            f"scored by {task.metric}"
        )
    else:
        store = RunStore.resume(directory, checkpoint.step)
        reporter.message(f"run {config.run_id}: resuming after step {checkpoint.step}")
        if strategy is not None:
            strategy.load_state_dict(checkpoint.state()["strategy"])
    if trim is not None:
        trim.save(store.directory / VOCABULARY)
        reporter.message(f"vocabulary trimmed to the run's {len(trim):,} tokens")
    train_config = config.train
    if checkpoint is not None:
        train_config = _after_oom_retries(train_config, store.manifest, checkpoint.step + 1)
    pad_id = encoded.pad_id
    precision = config.train.precision
    state = Run(
        config=config,
        order=order,
        models=Models(config, task, labels, model_path, device, precision, trim),
        scorer=Scorer(
            task, order, labels, splits, config.evaluate.batch_size, pad_id, device, precision
        ),
        trainer=StepTrainer(
            config=config,
            task=task,
            strategy=strategy,
            labels=labels,
            splits=splits,
            order=order,
            pad_id=pad_id,
            device=device,
            store=store,
            reporter=reporter,
            train_config=train_config,
            partial_step=None if checkpoint is None else checkpoint.step + 1,
        ),
        store=store,
        reporter=reporter,
        resumed_from=checkpoint,
        tracking=Tracking.start(config, store.directory),
    )
    state.tracking.begin(config, store, state.finished_step)
    return state


def _read_and_encode(
    config: RunConfig, task: Task, order: Sequence[str], reporter: Reporter
) -> Encoded:
    """Read the run's data, check its model, encode every split (trimmed if asked)."""
    data = task.load(config.data, order)
    if data.empty_splits:
        missing = ", ".join(f"{locale} {split}" for locale, split in data.empty_splits)
        raise DataError(f"no utterances in {missing}", file=data.source)
    if data.quarantine:
        reporter.message(f"skipped {len(data.quarantine)} invalid rows (data.skip_invalid)")
    labels = task.label_names(data)
    model_path = resolve_model(config.model)
    task.check_model(model_path)
    tokenizer = load_tokenizer(model_path)
    splits = _encode_all(config, task, data, order, labels, tokenizer)
    trim = None
    if config.trim_vocabulary:
        trim, splits = _trim_vocabulary(splits, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return Encoded(data.checksum, labels, model_path, pad_id, splits, trim)


def pick_device(name: str) -> torch.device:
    """``auto`` is the GPU when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _encode_all(
    config: RunConfig,
    task: Task,
    data: MassiveData,
    order: Sequence[str],
    labels: list[str],
    tokenizer: PreTrainedTokenizerBase,
) -> Splits:
    limits = {
        "train": config.data.max_train,
        "dev": config.data.max_dev,
        "test": config.data.max_test,
    }
    return {
        locale: {
            split: task.encode(
                data, locale, split, limits[split], tokenizer, labels, config.train.max_length
            )
            for split in SPLITS
        }
        for locale in order
    }


def _trim_vocabulary(
    splits: Splits, tokenizer: PreTrainedTokenizerBase
) -> tuple[VocabularyTrim, Splits]:
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
