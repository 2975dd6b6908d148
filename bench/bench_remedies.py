"""The per-update cost of each remedy against the plain method, side by side (CPU).

Command (MASSIVE from $XLCL_MASSIVE, else the shared archive beside the repository)::

    .venv/bin/python bench/bench_remedies.py [--step-size 160] [--repeats 5] [--threads 1]

Each remedy is set up as a run has it at step 2 of en-US → de-DE, through the strategy's
own hooks (step 1's `before_step`, `prepare_model` and `after_step` on the fresh model,
then step 2's `before_step` and `prepare_model`): replay's and A-GEM's memory of en-US,
EWC's Fisher and anchor, LwF's teacher, O-LoRA's frozen adapter. Then step 2's updates run
as `xlcl.train.train_step` runs them: a `Learner` (the engine's batches, AdamW, schedule,
clipping) and, per update, collating the batch, the forward pass, the task's loss plus the
strategy's terms (`Objective`), the backward pass and the update (the strategy's
`gradients` hook, clipping, AdamW, the schedule); replay's interleaved policy adds its
extra updates. No dev scoring, no checkpoint.

Settings: the quick demo's (``configs/demo/quick/``): the real multilingual-e5-small
(``e5-small-offline``), vocabulary trimmed, batch 16, max_length 64, fp32; SHARED LoRA
rank 16. Every remedy at its default settings (replay and A-GEM: a memory of 100 en-US
utterances, drawn from its first 200; A-GEM's reference batch 32), but for replay's
interleaved interval: the step's updates per epoch instead of 100, so that every timed
epoch holds one extra update (at 100 its overhead shrinks in proportion). The step trains
on the first ``--step-size`` de-DE utterances.

A timed window is one epoch of the step's data: the same batches for every remedy but
replay's mixed one, whose epoch also covers the memory (more updates, of other lengths).
The remedies take turns update by update, so that a slow moment of a shared machine falls
on all of them alike; each first takes 2 untimed updates (AdamW's state, first-call
allocations). The table gives, over ``--repeats`` epochs, the median milliseconds per
update of the step's own, and medians of ratios to the plain method's epoch of the same
turn (paired, so that the machine's drift between turns cancels): per update, per
utterance trained (memory utterances included: how much dearer the step is for what it
trains on) and per padded token. Targets (per utterance): replay mixed ≤ 1.1×, EWC
≤ 1.2×, LwF ≤ 1.6×; A-GEM, replay interleaved and O-LoRA are reported. O-LoRA is
skipped where it is not registered. Prints a Markdown report and writes it to
``--output``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
from transformers import AutoTokenizer
from transformers.utils import logging as transformers_logging

from xlcl.classifier import trainable_parameters
from xlcl.config import RunConfig, load_config
from xlcl.demo import CONFIG_DIR, QUICK
from xlcl.encode import collate_batch
from xlcl.evaluate.scoring import mixed_precision
from xlcl.models import resolve_model
from xlcl.protocol import Models, _encode_all, _trim_vocabulary
from xlcl.strategies import (
    BUILTIN,
    StepContext,
    Strategy,
    build_strategy,
    hook_rng,
    resolve_settings,
)
from xlcl.strategies.ewc import model_pad_id
from xlcl.tasks import get_task
from xlcl.train import Learner, Objective, forward_backward

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "remedies.md"
ORDER = ("en-US", "de-DE")
MEMORY_SOURCE = 200  # en-US utterances the memory and the Fisher are drawn from
WARM_UP = 2

# name -> (strategy mapping or None, target ratio per utterance or None)
REMEDIES: dict[str, tuple[dict[str, Any] | None, float | None]] = {
    "plain": (None, None),
    "replay mixed": ({"name": "replay"}, 1.1),
    "replay interleaved": ({"name": "replay", "policy": "interleaved"}, None),  # + interval
    "ewc": ({"name": "ewc"}, 1.2),
    "lwf": ({"name": "lwf"}, 1.6),
    "agem": ({"name": "agem"}, None),
    "olora": ({"name": "olora"}, None),
}
METHODS = {"VANILLA": "vanilla", "SHARED LoRA r16": "shared-lora"}


@dataclass
class Epoch:
    """What one timed epoch of a remedy took."""

    seconds: float = 0.0
    updates: int = 0  # the step's own
    utterances: int = 0  # trained on, memory included
    tokens: int = 0  # padded positions of the batches (`per("token")`)


@dataclass
class Contestant:
    """One remedy's model at step 2, its learner and its timed epochs."""

    name: str
    target: float | None
    learner: Learner
    updates: Iterator[tuple[int, int]]
    epochs: list[Epoch] = field(default_factory=list)

    def per(self, unit: str) -> list[float]:
        """Seconds per update (the step's own), utterance or padded token, epoch by epoch."""
        return [e.seconds / getattr(e, f"{unit}s") for e in self.epochs]

    def ratio(self, plain: Contestant, unit: str) -> float:
        """The median over epochs of this remedy's cost per `unit` over the plain method's
        in the same turn: paired, so that the machine's drift between turns cancels."""
        pairs = zip(self.per(unit), plain.per(unit), strict=True)
        return statistics.median(mine / theirs for mine, theirs in pairs)


def demo_config(method: str, archive: str, max_train: int) -> RunConfig:
    """The quick demo's config of `method` on en-US → de-DE, with a small dev and test.

    Many epochs, so that the schedule's rate stays above 0 for every timed update.
    """
    overrides = [
        f"data.source={archive}",
        f"order=[{', '.join(ORDER)}]",
        f"data.max_train={max_train}",
        "data.max_dev=16",
        "data.max_test=16",
        "train.epochs=100",
    ]
    return load_config(CONFIG_DIR / QUICK / f"{method}.yaml", overrides)


def context(config: RunConfig, splits: Any, step: int, hook: str) -> StepContext:
    """What a hook sees at `step` of en-US → de-DE (as `xlcl.protocol.StepTrainer` builds it)."""
    locale = ORDER[step - 1]
    earlier = ORDER[: step - 1]
    return StepContext(
        step=step,
        locales=(locale,),
        earlier=earlier,
        train_splits={loc: splits[loc]["train"] for loc in (*earlier, locale)},
        config=config,
        rng=hook_rng(config.train.seed, step, hook),
    )


def contestant(
    name: str,
    target: float | None,
    strategy: Strategy | None,
    models: Models,
    config: RunConfig,
    splits: Any,
) -> Contestant:
    """`strategy`'s model and learner at the start of step 2, set up through its hooks."""
    model = models.fresh()
    extra_train: tuple[Any, ...] = ()
    interleaved = None
    if strategy is not None:
        strategy.before_step(context(config, splits, 1, "before_step"), model)
        strategy.prepare_model(model)
        strategy.after_step(context(config, splits, 1, "after_step"), model)
        plan = strategy.before_step(context(config, splits, 2, "before_step"), model)
        strategy.prepare_model(model)
        if plan is not None:
            extra_train, interleaved = plan.extra_train, plan.interleaved
    objective = Objective(models.task, strategy)
    learner = Learner(
        "",
        trainable_parameters(model),
        [splits["de-DE"]["train"], *extra_train],
        [splits["de-DE"]["dev"]],
        config.train,
        config.train.seed + 2,
        torch.device("cpu"),
        before_update=partial(objective.adjust_gradients, model),
        interleaved=interleaved,
    )
    model.train()
    updates = engine_updates(learner, model, objective, model_pad_id(model))
    return Contestant(name, target, learner, updates)


def engine_updates(
    learner: Learner, model: torch.nn.Module, objective: Objective, pad_id: int
) -> Iterator[tuple[int, int]]:
    """One of the step's updates per `next()`, as `xlcl.train.train_step`'s loop runs it
    (with the extra interleaved update due after it), epoch after epoch without scoring;
    yields the utterances and padded positions trained on."""
    autocast = mixed_precision("fp32", torch.device("cpu"))
    while True:
        learner.start_epoch()
        while not learner.epoch_done:
            indices = learner.next_batch()
            batch = collate_batch(learner.train, indices, pad_id)
            loss = forward_backward(model, batch, objective, autocast, accumulation=1)
            learner.micro_batch_done(loss)
            trained, tokens = len(indices), batch.input_ids.numel()
            memory = learner.interleaved_batch()
            if memory is not None:
                assert learner.interleaved is not None
                extra = collate_batch(learner.interleaved.memory, memory, pad_id)
                forward_backward(model, extra, objective, autocast, accumulation=1)
                learner.interleaved_update_done()
                trained, tokens = trained + len(memory), tokens + extra.input_ids.numel()
            yield trained, tokens
        learner.state.batches_done = 0


def time_epochs(entries: list[Contestant], repeats: int, label: str) -> None:
    """`repeats` epochs of every contestant, taking turns update by update."""
    for entry in entries:  # warm up, then start the first timed epoch afresh
        for _ in range(WARM_UP):
            next(entry.updates)
        entry.learner.state.batches_done = len(entry.learner.batches)
    for repeat in range(repeats):
        running = {entry.name: Epoch() for entry in entries}
        while running:
            for entry in entries:
                epoch = running.get(entry.name)
                if epoch is None:
                    continue
                started = time.perf_counter()
                utterances, tokens = next(entry.updates)
                epoch.seconds += time.perf_counter() - started
                epoch.updates += 1
                epoch.utterances += utterances
                epoch.tokens += tokens
                if entry.learner.epoch_done:
                    entry.epochs.append(running.pop(entry.name))
        print(f"{label}: epoch {repeat + 1}/{repeats} timed", flush=True)


def bench_method(label: str, method: str, archive: str, args: argparse.Namespace) -> list[str]:
    """Every remedy of `method`, side by side; its Markdown table rows."""
    config = demo_config(method, archive, max(MEMORY_SOURCE, args.step_size))
    task = get_task(config.task)
    data = task.load(config.data, ORDER)
    labels = task.label_names(data)
    model_path = resolve_model(config.model)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    splits = _encode_all(config, task, data, ORDER, labels, tokenizer)
    trim, splits = _trim_vocabulary(splits, tokenizer)
    splits["en-US"]["train"] = splits["en-US"]["train"].subset(range(MEMORY_SOURCE))
    splits["de-DE"]["train"] = splits["de-DE"]["train"].subset(range(args.step_size))
    models = Models(config, task, labels, model_path, torch.device("cpu"), "fp32", trim)
    updates_per_epoch = -(-args.step_size // config.train.batch_size)
    entries = []
    for name, (spec, target) in REMEDIES.items():
        if name not in args.remedies:
            continue
        if name == "replay interleaved":  # one extra update in every timed epoch
            assert spec is not None
            spec = {**spec, "interval": updates_per_epoch}
            name = f"{name} (interval {updates_per_epoch})"
        if spec is not None and spec["name"] not in BUILTIN:
            print(f"{label}: {name} is not registered; skipped", flush=True)
            continue
        strategy = None if spec is None else build_strategy(resolve_settings(spec))
        if strategy is not None and type(strategy).needs_lora and config.rank is None:
            print(f"{label}: {name} modifies LoRA adapters; skipped", flush=True)
            continue
        entries.append(contestant(name, target, strategy, models, config, splits))
        print(f"{label}: {name} set up", flush=True)
    time_epochs(entries, args.repeats, label)
    return rows(label, entries)


def rows(label: str, entries: list[Contestant]) -> list[str]:
    """Table rows: ms per update, ratios to plain per update, utterance and token."""
    plain = entries[0]
    assert plain.name == "plain", "the first contestant is the plain method"
    lines = []
    for entry in entries:
        per_utterance = entry.ratio(plain, "utterance")
        verdict = "–"
        if entry.target is not None:
            met = "met" if per_utterance <= entry.target else "missed"
            verdict = f"≤ {entry.target}×: {met}"
        epochs = ", ".join(f"{e.seconds:.1f}" for e in entry.epochs)
        first = entry.epochs[0]
        lines.append(
            f"| {label} | {entry.name} | {1000 * statistics.median(entry.per('update')):.0f} "
            f"| {entry.ratio(plain, 'update'):.2f}× | {per_utterance:.2f}× "
            f"| {entry.ratio(plain, 'token'):.2f}× "
            f"| {first.updates} / {first.utterances} | {verdict} | {epochs} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--step-size", type=int, default=160, help="de-DE training utterances")
    parser.add_argument("--repeats", type=int, default=5, help="timed epochs a remedy")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (%(default)s)")
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS))
    parser.add_argument("--remedies", nargs="+", choices=list(REMEDIES), default=list(REMEDIES))
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    if "plain" not in args.remedies:
        parser.error("--remedies needs plain: the others are measured against it")
    archive = os.environ.get("XLCL_MASSIVE") or str(
        REPO.parent / "shared" / "data" / "amazon-massive-dataset-1.1.tar.gz"
    )
    torch.set_num_threads(args.threads)
    transformers_logging.set_verbosity_error()  # not the new head's "MISSING" table per model
    transformers_logging.disable_progress_bar()
    started = time.perf_counter()
    table = [
        "| method | remedy | ms / update | × plain, per update | × plain, per utterance "
        "| × plain, per padded token | updates / utterances an epoch "
        "| target (per utterance) | epochs (s) |",
        "|---|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for label in args.methods:
        table += bench_method(label, METHODS[label], archive, args)
    lines = [
        "# The per-update cost of each remedy (CPU)",
        "",
        f"Command: `{' '.join(['.venv/bin/python bench/bench_remedies.py', *sys.argv[1:]])}`",
        "",
        "e5-small-offline (vocabulary trimmed), batch 16, max_length 64, fp32; en-US → "
        f"de-DE, step 2 on {args.step_size} de-DE utterances; {args.repeats} timed epochs a "
        f"remedy, taking turns update by update, medians; torch {torch.__version__}, "
        f"{args.threads} thread(s), {os.cpu_count()} CPUs ({_cpu_model()}); "
        f"{time.perf_counter() - started:.0f} s in all.",
        "",
        *table,
        "",
    ]
    text = "\n".join(lines)
    print(text)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


if __name__ == "__main__":
    main()
