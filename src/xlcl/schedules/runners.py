"""How each schedule runs: which models train, on what, and which cells they score.

`xlcl.schedules` says what a schedule's score matrix looks like; this module drives the
engine through it. Each runner takes the prepared `xlcl.protocol.Run`, skips the steps a
resumed run has finished, and records each step (scores, curve, checkpoint) as it ends.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import torch
from peft import PeftModel

from xlcl.classifier import save_adapter
from xlcl.schedules import INDEPENDENT, JOINT, JOINT_LOCALE, MERGED, SEQUENTIAL
from xlcl.store import ScoreCell
from xlcl.together import add_adapters, train_adapters_together
from xlcl.train import EpochRecord, Objective, StepResult

if TYPE_CHECKING:
    from xlcl.protocol import Run
    from xlcl.strategies import StepContext


@runtime_checkable
class AdapterMerger(Protocol):
    """What the merged schedule needs of its run's strategy (`xlcl.strategies.merge`)."""

    def merged_model(
        self, ctx: StepContext, model: torch.nn.Module, adapters: Sequence[Path]
    ) -> torch.nn.Module:
        """`model` (a fresh one) with the merge of the saved `adapters` active."""
        ...


def sequential(run: Run) -> None:
    """One model through the order; every locale scored after every step."""
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


def independent(run: Run) -> None:
    """A fresh model (or adapter) per locale, scored on its own locale or on all."""
    _model_per_locale(run, None)


def merged(run: Run) -> None:
    """An adapter per locale, trained as `independent` trains them; after each step the
    adapters trained so far are merged (by the run's strategy) and score every locale."""
    merger = run.trainer.strategy
    if not isinstance(merger, AdapterMerger):
        raise TypeError("the merged schedule needs a strategy that merges adapters (merge)")
    _model_per_locale(run, merger)


def _model_per_locale(run: Run, merger: AdapterMerger | None) -> None:
    if run.pending(0):
        run.score(run.fresh_model(), 0, None, run.order)
        run.checkpoint(0, None)
    if run.config.train.adapters_together:
        _adapters_together(run, merger)
        return
    for step, locale in enumerate(run.order, start=1):
        if not run.pending(step):
            continue
        run.reporter.start_step(step, len(run.order), locale)
        model = run.fresh_model()
        run.train(model, step, [locale])
        if run.config.method_spec.lora:
            save_adapter(model, run.store.adapter_dir(locale))
        if merger is None:
            scored = run.order if run.config.evaluate.all_models else [locale]
            run.score(model, step, locale, scored)
        else:
            run.record(_merged_row(run, merger, step))
        run.checkpoint(step, None)


def joint(run: Run) -> None:
    """One model on all locales at once, scored once."""
    model = run.restored_model()
    if run.pending(0):
        run.score(model, 0, None, run.order)
        run.checkpoint(0, None)
    if not run.pending(1):
        return
    run.reporter.start_step(1, 1, "all locales")
    run.train(model, 1, run.order)
    if run.config.method_spec.lora:
        save_adapter(model, run.store.adapter_dir(JOINT_LOCALE))
    run.score(model, 1, JOINT_LOCALE, run.order)
    run.checkpoint(1, None)


def _merged_row(run: Run, merger: AdapterMerger, step: int) -> list[ScoreCell]:
    """Row `step` of a merged run: the merge of the first `step` saved adapters, scored on
    every locale. Torch's generators are put back afterwards (building a fresh model seeds
    them), so adapters still training together draw what they would without it."""
    locale = run.order[step - 1]
    adapters = [run.store.adapter_dir(learned) for learned in run.order[:step]]
    with torch.random.fork_rng():
        model = merger.merged_model(
            run.trainer.context(step, [locale], "merge"), run.fresh_model(), adapters
        )
        return run.scorer.cells(model, step, locale, run.order)


def _adapters_together(run: Run, merger: AdapterMerger | None) -> None:
    """The independent (or merged) schedule with the pending locales' adapters trained at
    once.

    Each adapter is saved and scored as soon as it stops; its step is recorded (scores,
    curve, checkpoint) once it and every step before it have stopped, so the run directory
    always holds a prefix of the steps, as one-by-one training leaves it. A merged row
    needs every adapter before it: it is merged and scored when its step is recorded.
    """
    pending = [(step, locale) for step, locale in enumerate(run.order, 1) if run.pending(step)]
    if not pending:
        return
    rank = run.config.method_spec.rank
    assert rank is not None, "adapters_together is validated to be a LoRA method"
    names = [locale for _, locale in pending]
    model = run.fresh_model()
    assert isinstance(model, PeftModel), "a LoRA method builds a PEFT model"
    add_adapters(model, names, rank, run.config.lora)
    model.to(run.models.device)
    trainer = run.trainer
    plans = {locale: trainer.plan(model, step, [locale]) for step, locale in pending}
    finished: dict[str, tuple[StepResult, list[ScoreCell]]] = {}
    config = trainer.train_config

    def on_epoch(locale: str, record: EpochRecord, best: float) -> None:
        run.reporter.message(
            f"  {locale} epoch {record.epoch}/{config.epochs}  dev {record.dev_score:.4f} "
            f"(best {best:.4f})"
        )

    def on_finished(locale: str, result: StepResult) -> None:
        step = run.order.index(locale) + 1
        save_adapter(model, run.store.adapter_dir(locale), adapter=locale)
        trainer.after(model, step, [locale])
        scored = run.order if run.config.evaluate.all_models else [locale]
        own = [] if merger is not None else run.scorer.cells(model, step, locale, scored)
        finished[locale] = (result, own)
        while pending and pending[0][1] in finished:
            next_step, next_locale = pending.pop(0)
            next_result, cells = finished.pop(next_locale)
            if merger is not None:
                cells = _merged_row(run, merger, next_step)
            run.store.add_curve(next_step, next_locale, next_result.epochs)
            run.record(cells)
            run.checkpoint(next_step, None)

    run.reporter.message(f"training the adapters of {len(names)} locales together")
    train_adapters_together(
        model,
        names,
        [[trainer.splits[locale]["train"], *plans[locale].extra_train] for locale in names],
        [trainer.splits[locale]["dev"] for locale in names],
        trainer.labels,
        config,
        objective=Objective(trainer.task, trainer.strategy),
        pad_id=trainer.pad_id,
        device=run.models.device,
        eval_batch_size=run.config.evaluate.batch_size,
        seeds=[config.seed + step for step, _ in pending],
        on_epoch=on_epoch,
        on_finished=on_finished,
    )


RUNNERS: dict[str, Callable[[Run], None]] = {
    SEQUENTIAL.name: sequential,
    INDEPENDENT.name: independent,
    JOINT.name: joint,
    MERGED.name: merged,
}
