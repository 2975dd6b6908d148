"""Several LoRA runs trained as one: their adapters over one frozen base, in one pass.

A SHARED LoRA run (sequential schedule) or a MULTI LoRA run (joint) trains an adapter and
a head over a frozen encoder. Runs over the same encoder, data and vocabulary (different
orders, ranks, seeds, rates) can share that encoder: one PEFT model holds an adapter and a
head per run, and every forward pass carries the next batch of each run still training,
each through its own adapter (`xlcl.together`, which does the same for NON-SHARED LoRA's
locales). The encoder is then read once a pass for the whole group, not once per run.

Each run keeps what it has alone (`xlcl.train.Learner` per step): its own order of steps,
batches, AdamW and schedule reset at every step, dev score, early stopping. When a run's
step stops, the run alone is saved, scored on every locale and checkpointed, exactly as
its runner (`xlcl.schedules.runners`) does, and its next step joins the following pass;
a run whose last step is recorded is marked done while the others go on. Each run
directory is therefore what the run alone leaves, and a group that is stopped resumes
each run from its own last finished step (alone or in a new group).

Adapters share no parameter, so each gets the gradient it gets alone, up to the padding of
the shared batch: with dropout 0 (LoRA's and the encoder's) the results equal the runs
alone within floating-point tolerance (tests/test_grouped_runs.py). With dropout the masks
drawn differ, not their distribution.

Which runs can share an encoder, and how `xlcl sweep --group-lora` forms groups, is
`xlcl.schedules.grouping`.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from peft import PeftModel

from xlcl.classifier import save_adapter, trainable_parameters
from xlcl.config import ConfigError, RunConfig
from xlcl.progress import Reporter, Silent
from xlcl.protocol import EncodedCache, Run, deterministic_algorithms, prepare
from xlcl.schedules import JOINT, JOINT_LOCALE, SEQUENTIAL
from xlcl.schedules.grouping import check_group
from xlcl.store import is_complete
from xlcl.together import AdapterRouter, adapter_parameters, graphed, train_learners_together
from xlcl.train import EpochRecord, Learner, Objective

ADAPTER_PREFIX = "run_"  # a member's adapter is named after its run id


def run_group(configs: Sequence[RunConfig], reporter: Reporter | None = None) -> list[Path]:
    """Run `configs` as one group (or resume them); return their run directories.

    Finished runs are left as they are; the others resume from their last finished step.
    """
    check_group(configs)
    reporter = reporter or Silent()
    directories = [Path(config.output_dir) / config.run_id for config in configs]
    cache: EncodedCache = {}  # the runs share their data: read and encoded once
    prepared = (prepare(config, reporter, cache) for config in configs)
    runs = [run for run in prepared if run is not None]
    if not runs:
        return directories
    failed: dict[str, FloatingPointError] = {}  # runs stopped on a non-finite loss
    try:
        with deterministic_algorithms(configs[0].train.deterministic):
            _train_group(runs, reporter, failed)
    except BaseException as error:
        for run in runs:
            if not is_complete(run.store.directory) and run.config.run_id not in failed:
                run.fail(error)
        raise
    if failed:
        raise GroupRunsFailed(failed)
    return directories


class GroupRunsFailed(FloatingPointError):
    """Runs of a group that stopped on a non-finite loss, after the others finished."""

    def __init__(self, errors: dict[str, FloatingPointError]) -> None:
        self.errors = errors
        listed = "; ".join(f"run {run_id}: {error}" for run_id, error in errors.items())
        super().__init__(listed)


@dataclass
class _Member:
    """A run of the group: its adapter, and the steps it has left."""

    run: Run
    adapter: str
    steps: list[tuple[int, list[str]]] = field(default_factory=list)  # (step, locales trained)

    @classmethod
    def of(cls, run: Run) -> _Member:
        order = list(run.order)
        if run.config.schedule.name == JOINT.name:
            steps = [(1, order)]
        else:
            steps = [(step, [locale]) for step, locale in enumerate(order, start=1)]
        pending = [(step, locales) for step, locales in steps if run.pending(step)]
        return cls(run, ADAPTER_PREFIX + run.config.run_id, pending)

    @property
    def sequential(self) -> bool:
        return self.run.config.schedule.name == SEQUENTIAL.name

    def weights(self, model: PeftModel) -> dict[str, torch.Tensor] | None:
        """What its checkpoints keep: the adapter and head of a sequential run, as the run
        alone names them; nothing for a joint run (it is done after its one step)."""
        return dict(adapter_parameters(model, self.adapter)) if self.sequential else None

    def next_learner(self, model: PeftModel) -> Learner | None:
        """The learner of the member's next step; None (and the run marked done) after its
        last."""
        run = self.run
        if not self.steps:
            run.finish()
            run.reporter.message(f"run {run.config.run_id}: done")
            return None
        step, locales = self.steps[0]
        splits = run.trainer.splits
        config = run.trainer.train_config
        total, trained = (len(run.order), locales[0]) if self.sequential else (1, "all locales")
        run.reporter.start_step(step, total, f"{trained} (run {run.config.run_id})")
        return Learner(
            self.adapter,
            adapter_parameters(model, self.adapter),
            [splits[locale]["train"] for locale in locales],
            [splits[locale]["dev"] for locale in locales],
            config,
            config.seed + step,
            run.models.device,
            capturable=graphed(config),
        )

    def record_step(self, model: PeftModel, learner: Learner) -> None:
        """What the runner records after the step alone: curve, adapter, row, checkpoint."""
        run = self.run
        step, _ = self.steps.pop(0)
        trained = run.config.schedule.trained_locale(step, run.order)
        assert trained is not None, "row 0 is never trained"
        run.store.add_curve(step, trained, learner.result.epochs)
        adapter_dir = "shared" if self.sequential else JOINT_LOCALE
        save_adapter(model, run.store.adapter_dir(adapter_dir), adapter=self.adapter)
        run.score(model, step, trained, run.order)
        run.checkpoint_weights(step, self.weights(model))


def _train_group(
    runs: Sequence[Run], reporter: Reporter, failed: dict[str, FloatingPointError]
) -> None:
    """Train the runs as one group. A run stopped by a non-finite loss is recorded as
    failed in its directory and in `failed`, and the others go on."""
    model = _group_model(runs)
    members = [_Member.of(run) for run in runs]
    by_adapter = {member.adapter: member for member in members}
    router = AdapterRouter()
    with router.route(model):
        for member in members:
            if member.run.pending(0):  # row 0: the fresh adapter and head
                router.set_single(member.adapter)
                member.run.score(model, 0, None, member.run.order)
                member.run.checkpoint_weights(0, member.weights(model))
    learners = [learner for m in members if (learner := m.next_learner(model)) is not None]

    def on_epoch(adapter: str, record: EpochRecord, best: float) -> None:
        reporter.message(
            f"  run {adapter.removeprefix(ADAPTER_PREFIX)} epoch {record.epoch}: "
            f"dev {record.dev_score:.4f} (best {best:.4f})"
        )

    def on_finished(learner: Learner) -> Learner | None:
        member = by_adapter[learner.name]
        member.record_step(model, learner)
        return member.next_learner(model)

    def on_failed(learner: Learner, error: FloatingPointError) -> None:
        member = by_adapter[learner.name]
        member.run.fail(error)
        failed[member.run.config.run_id] = error
        reporter.message(f"run {member.run.config.run_id} failed ({error}); the others go on")

    lead = runs[0]
    reporter.message(f"training {len(learners)} runs over one encoder")
    train_learners_together(
        model,
        learners,
        lead.trainer.labels,
        objective=Objective(lead.trainer.task),
        pad_id=lead.trainer.pad_id,
        device=lead.models.device,
        eval_batch_size=lead.config.evaluate.batch_size,
        on_epoch=on_epoch,
        on_finished=on_finished,
        on_failed=on_failed,
    )


def _group_model(runs: Sequence[Run]) -> PeftModel:
    """One PEFT model with each run's adapter and head, as each run alone starts its next
    step (fresh, or its checkpoint's weights), over the lead run's encoder."""
    trims = {None if run.models.trim is None else run.models.trim.kept for run in runs}
    if len(trims) > 1:
        raise ConfigError("the runs of a group must keep the same vocabulary (trim)")
    lead = runs[0].models
    model = lead.built()
    assert isinstance(model, PeftModel), "a LoRA method builds a PEFT model"
    template = model.active_adapter
    for run in runs:
        donor = run.restored_model()
        assert isinstance(donor, PeftModel), "a LoRA method builds a PEFT model"
        adopt_adapter(model, ADAPTER_PREFIX + run.config.run_id, donor)
    model.set_adapter(ADAPTER_PREFIX + runs[0].config.run_id)
    model.delete_adapter(template)
    names = [ADAPTER_PREFIX + run.config.run_id for run in runs]
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(any(f".{adapter}." in name for adapter in names))
    placed = lead.placed(model)
    assert isinstance(placed, PeftModel)
    return placed


def adopt_adapter(model: PeftModel, name: str, donor: PeftModel) -> None:
    """Add to `model` the adapter `name`: `donor`'s only adapter and head, weights included
    (its config: rank, alpha, dropout)."""
    model.add_adapter(name, copy.deepcopy(donor.peft_config[donor.active_adapter]))
    weights = dict(trainable_parameters(donor))
    own = dict(adapter_parameters(model, name))
    if own.keys() != weights.keys():
        missing = sorted(weights.keys() ^ own.keys())
        raise ValueError(f"adapter {name} does not match its run's model, e.g. {missing[0]}")
    with torch.no_grad():
        for parameter_name, parameter in own.items():
            parameter.copy_(weights[parameter_name])
