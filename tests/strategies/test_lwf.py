"""LwF: the distillation term against numpy, its teacher, its state, and switched off."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from transformers import AutoTokenizer

from strategies.strategy_runs import tables
from xlcl.checkpoint import latest_checkpoint
from xlcl.classifier import trainable_parameters
from xlcl.config import LoraSettings, validate_config
from xlcl.data import load_massive, slot_label_names
from xlcl.encode import IGNORE, collate, encode
from xlcl.methods import method
from xlcl.protocol import run
from xlcl.state_tree import read_state_tree, write_state_tree
from xlcl.strategies import StepContext, build_strategy, hook_rng
from xlcl.strategies.lwf import distillation
from xlcl.tasks.massive_slots import MassiveSlots

ORDER = ["en-US", "ja-JP", "de-DE"]
TRAIN = {"epochs": 2, "patience": 1, "batch_size": 4, "learning_rate": 1e-3}


def context(step):
    """A step context; LwF reads only `earlier`."""
    return StepContext(
        step=step,
        locales=(ORDER[step - 1],),
        earlier=tuple(ORDER[: step - 1]),
        train_splits={},
        config=None,  # type: ignore[arg-type]
        rng=hook_rng(0, step, "before_step"),
    )


class Lookup(torch.nn.Module):
    """Logits looked up by token id: ``(batch, length, classes)``, or position 0's alone."""

    def __init__(self, table: np.ndarray, sequence: bool = False) -> None:
        super().__init__()
        self.table = torch.nn.Parameter(torch.tensor(table, dtype=torch.float64))
        self.sequence = sequence

    def forward(self, input_ids, attention_mask):
        logits = self.table[input_ids]
        return SimpleNamespace(logits=logits[:, 0] if self.sequence else logits)


def numpy_kl_term(teacher, student, temperature):
    """T² · mean over rows of KL(softmax(teacher/T) ‖ softmax(student/T)), by hand."""

    def log_softmax(x):
        x = x / temperature
        return (
            x
            - x.max(-1, keepdims=True)
            - np.log(np.exp(x - x.max(-1, keepdims=True)).sum(-1, keepdims=True))
        )

    p, log_p, log_q = np.exp(log_softmax(teacher)), log_softmax(teacher), log_softmax(student)
    return temperature**2 * (p * (log_p - log_q)).sum(-1).mean()


INPUT_IDS = torch.tensor([[0, 1, 2, 3], [0, 2, 4, 4]])
LABELS = torch.tensor([[IGNORE, 1, IGNORE, 0], [IGNORE, 2, IGNORE, IGNORE]])  # 4: padding


def test_the_term_is_alpha_t2_mean_kl_over_labelled_positions():
    rng = np.random.default_rng(0)
    before, after = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    model = Lookup(before)
    lwf = build_strategy({"name": "lwf", "alpha": 0.5, "temperature": 2.0})
    assert lwf.before_step(context(2), model) is None
    with torch.no_grad():
        model.table.copy_(torch.tensor(after))
    batch = collate(list(INPUT_IDS.numpy()), list(LABELS.numpy()), pad_id=4)
    outputs = model(batch.input_ids, batch.attention_mask)
    term = lwf.loss_terms(model, batch, outputs)
    # Labelled: tokens 1 and 3 of the first utterance, token 2 of the second.
    expected = 0.5 * numpy_kl_term(before[[1, 3, 2]], after[[1, 3, 2]], 2.0)
    assert term is not None and term.item() == pytest.approx(expected, rel=1e-12)
    # The student's logits elsewhere (special tokens, later subwords, padding) do not count.
    moved = outputs.logits.detach().clone()
    moved[LABELS == IGNORE] += 10.0
    assert lwf.loss_terms(model, batch, SimpleNamespace(logits=moved)).item() == pytest.approx(
        expected, rel=1e-12
    )
    # Its gradient reaches the student's weights, not the teacher's.
    term.backward()
    assert model.table.grad is not None and model.table.grad.abs().sum() > 0
    assert not any(value.requires_grad for value in lwf.teacher.values())


def test_sequence_logits_count_the_utterances_labelled_at_position_0():
    rng = np.random.default_rng(1)
    before, after = rng.normal(size=(5, 4)), rng.normal(size=(5, 4))
    model = Lookup(before, sequence=True)
    lwf = build_strategy({"name": "lwf", "alpha": 2.0, "temperature": 3.0})
    lwf.before_step(context(2), model)
    with torch.no_grad():
        model.table.copy_(torch.tensor(after))
    labels = torch.full_like(INPUT_IDS, IGNORE)
    labels[0, 0] = 1  # the second utterance has no label: it does not count
    ids = torch.tensor([[1, 2, 3, 3], [2, 4, 4, 4]])
    outputs = model(ids, None)
    term = lwf.loss_terms(
        model, SimpleNamespace(input_ids=ids, attention_mask=None, labels=labels), outputs
    )
    assert term is not None
    assert term.item() == pytest.approx(
        2.0 * numpy_kl_term(before[[1]], after[[1]], 3.0), rel=1e-12
    )


def test_no_labelled_position_gives_0_and_equal_logits_give_0():
    logits = torch.randn(2, 4, 3)
    assert distillation(logits + 1, logits, torch.full((2, 4), IGNORE), 2.0).item() == 0.0
    assert distillation(logits, logits, LABELS, 2.0).item() == 0.0


def test_no_teacher_at_the_first_step_and_none_when_off():
    model = Lookup(np.zeros((5, 3)))
    batch = collate(list(INPUT_IDS.numpy()), list(LABELS.numpy()), pad_id=4)
    lwf = build_strategy({"name": "lwf"})
    lwf.before_step(context(1), model)
    assert lwf.teacher == {}
    assert lwf.loss_terms(model, batch, model(batch.input_ids, batch.attention_mask)) is None
    off = build_strategy({"name": "lwf", "alpha": 0})
    off.before_step(context(2), model)
    assert off.state_dict() == {"teacher": {}}
    assert off.loss_terms(model, batch, model(batch.input_ids, batch.attention_mask)) is None


@pytest.fixture
def slot_model_and_batch(tiny_model, massive_dir):
    """The tiny slot model in training mode (dropout 0.1) and a batch of 4 utterances."""
    data = load_massive(massive_dir, ORDER)
    labels = slot_label_names(data)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    split = encode(
        data.utterances("en-US", "train"), tokenizer, {n: i for i, n in enumerate(labels)}, 32
    )
    model = MassiveSlots().build_model(
        str(tiny_model), labels, method("vanilla"), LoraSettings(), 0
    )
    model.train()
    return model, collate(split.input_ids[:4], split.labels[:4], pad_id=1)


def test_the_teacher_pass_draws_nothing_and_a_student_equal_to_it_costs_0(slot_model_and_batch):
    model, batch = slot_model_and_batch
    lwf = build_strategy({"name": "lwf", "alpha": 1.0, "temperature": 2.0})
    lwf.before_step(context(2), model)
    outputs = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask)  # dropout on
    generator = torch.get_rng_state()
    term = lwf.loss_terms(model, batch, outputs)
    assert torch.equal(torch.get_rng_state(), generator)  # the teacher drew no dropout mask
    assert term is not None and term.item() > 0  # the student's dropout moved its logits
    assert model.training and all(module.training for module in model.modules())
    # In eval mode the student is the teacher: nothing to distil.
    model.eval()
    with torch.no_grad():
        same = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
    assert lwf.loss_terms(model, batch, same).item() == 0.0  # type: ignore[union-attr]
    model.train()


def test_the_teacher_survives_a_checkpoint_s_state_tree(slot_model_and_batch, tmp_path):
    model, batch = slot_model_and_batch
    lwf = build_strategy({"name": "lwf", "alpha": 1.0})
    lwf.before_step(context(2), model)
    write_state_tree(tmp_path, "extra_state", {"strategy": lwf.state_dict()})
    restored = build_strategy({"name": "lwf", "alpha": 1.0})
    restored.load_state_dict(read_state_tree(tmp_path, "extra_state")["strategy"])
    assert restored.teacher.keys() == {name for name, _ in trainable_parameters(model)}
    assert all(torch.equal(restored.teacher[k], v) for k, v in lwf.teacher.items())
    with torch.no_grad():
        model.classifier.bias += 0.5
    model.eval()
    outputs = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
    model.train()
    assert torch.equal(
        restored.loss_terms(model, batch, outputs), lwf.loss_terms(model, batch, outputs)
    )  # type: ignore[arg-type]


def config(tiny_model, massive_dir, output, strategy=None, **sections):
    raw = {
        **sections,
        "model": str(tiny_model),
        "method": "vanilla",
        "order": ORDER,
        "data": {"source": str(massive_dir)},
        "train": TRAIN,
        "output_dir": str(output),
    }
    if strategy is not None:
        raw["strategy"] = strategy
    return validate_config(raw)


def test_alpha_0_is_vanilla_bit_for_bit(tiny_model, massive_dir, tmp_path):
    vanilla = run(config(tiny_model, massive_dir, tmp_path / "vanilla"))
    off = run(config(tiny_model, massive_dir, tmp_path / "off", {"name": "lwf", "alpha": 0}))
    assert off.name != vanilla.name
    for a, b in zip(tables(vanilla), tables(off), strict=True):
        pd.testing.assert_frame_equal(a, b, check_exact=True)
    on = run(config(tiny_model, massive_dir, tmp_path / "on", {"name": "lwf", "alpha": 1.0}))
    (scores_on, curves_on), (scores_off, curves_off) = tables(on), tables(off)
    # Step 1 has no teacher, so it trains as VANILLA; distillation changes the later steps.
    first = scores_on["step"] <= 1
    pd.testing.assert_frame_equal(scores_on[first], scores_off[first], check_exact=True)
    later = curves_on["step"] >= 2
    assert curves_on[~later]["train_loss"].equals(curves_off[~later]["train_loss"])
    assert not curves_on[later]["train_loss"].equals(curves_off[later]["train_loss"])
    teacher = latest_checkpoint(on, on.name).state()["strategy"]["teacher"]
    assert len(teacher) > 0


def test_a_run_stopped_inside_a_step_resumes_exactly_with_its_teacher(
    tiny_model, massive_dir, tmp_path, monkeypatch
):
    import xlcl.protocol

    strategy = {"name": "lwf", "alpha": 1.0}
    every_update = {"every_updates": 1}
    reference = run(
        config(tiny_model, massive_dir, tmp_path / "ref", strategy, checkpoint=every_update)
    )
    stopped_config = config(
        tiny_model, massive_dir, tmp_path / "stopped", strategy, checkpoint=every_update
    )
    original = xlcl.protocol.save_partial

    def save_then_stop(run_dir, step, *args, **kwargs):
        path = original(run_dir, step, *args, **kwargs)
        if step == 2:
            raise KeyboardInterrupt
        return path

    monkeypatch.setattr(xlcl.protocol, "save_partial", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        run(stopped_config)
    monkeypatch.setattr(xlcl.protocol, "save_partial", original)
    resumed = run(stopped_config)
    manifest = json.loads((resumed / "manifest.json").read_text())
    assert [entry["after_step"] for entry in manifest["resumed"]] == [1]  # inside step 2
    for a, b in zip(tables(reference), tables(resumed), strict=True):
        pd.testing.assert_frame_equal(a, b, check_exact=True)
