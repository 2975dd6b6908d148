"""The protocol end to end on a small fixture: every method's score-matrix pattern."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

import xlcl.protocol
import xlcl.schedules.runners
from massive_fixture import write_massive_dir
from xlcl.config import validate_config
from xlcl.protocol import run
from xlcl.store import DONE

ORDER = ["en-US", "ja-JP", "de-DE"]


@pytest.fixture(scope="module")
def massive_dir(tmp_path_factory):
    return write_massive_dir(tmp_path_factory.mktemp("massive"))


TRAIN = {"epochs": 2, "patience": 1, "batch_size": 4, "learning_rate": 1e-3}


def make_config(tiny_model, massive_dir, tmp_path, method, rank=None, train=None, **extra):
    """A config of the fixture; `train` overrides fields of TRAIN."""
    raw = {
        "model": str(tiny_model),
        "method": method,
        "rank": rank,
        "order": extra.pop("order", ORDER),
        "data": {"source": str(massive_dir)},
        "train": {**TRAIN, **(train or {})},
        "output_dir": str(tmp_path / "runs"),
        **extra,
    }
    return validate_config(raw)


SCORE_CELLS = ["step", "eval_locale", "f1", "n_pred"]


def assert_same_scores(directory, reference, exact=False):
    """The two runs' score tables agree cell for cell (`exact`: no float tolerance)."""
    pd.testing.assert_frame_equal(
        pd.read_parquet(directory / "scores.parquet")[SCORE_CELLS],
        pd.read_parquet(reference / "scores.parquet")[SCORE_CELLS],
        check_exact=exact,
    )


def half_batch_run(tiny_model, massive_dir, tmp_path):
    """The VANILLA run at batch 2 x accumulation 2: what an out-of-memory retry goes on with."""
    raw = make_config(tiny_model, massive_dir, tmp_path, "vanilla").model_dump()
    raw["train"].update(batch_size=2, gradient_accumulation=2)
    return run(validate_config(raw))


def matrix(directory):
    scores = pd.read_parquet(directory / "scores.parquet")
    return scores.pivot(index="step", columns="eval_locale", values="f1")[ORDER]


@pytest.mark.parametrize(
    ("method", "rank", "steps"),
    [("vanilla", None, 4), ("shared-lora", 4, 4)],
)
def test_sequential_methods_fill_every_cell(tiny_model, massive_dir, tmp_path, method, rank, steps):
    directory = run(make_config(tiny_model, massive_dir, tmp_path, method, rank))
    table = matrix(directory)
    assert table.shape == (steps, 3)
    assert not table.isna().any().any()
    scores = pd.read_parquet(directory / "scores.parquet")
    assert scores["trained_locale"].tolist()[3::3] == ORDER
    assert (scores["n_sentences"] == 5).all()
    # en-US test: 5 utterances cycling the templates: 2 + 1 + 1 + 2 + 0 gold spans.
    assert set(scores.loc[scores["eval_locale"] == "en-US", "n_gold"]) == {6}


@pytest.mark.parametrize(
    ("method", "rank", "together"),
    [("mono", None, False), ("nonshared-lora", 4, False), ("nonshared-lora", 4, True)],
)
def test_independent_methods_score_only_their_own_locale(
    tiny_model, massive_dir, tmp_path, method, rank, together
):
    config = make_config(
        tiny_model, massive_dir, tmp_path, method, rank, train={"adapters_together": together}
    )
    directory = run(config)
    table = matrix(directory)
    assert not table.loc[0].isna().any()  # the untrained model is scored everywhere
    for step, locale in enumerate(ORDER, start=1):
        row = table.loc[step]
        assert not math.isnan(row[locale])
        assert row.drop(locale).isna().all()
    if rank is not None:
        for locale in ORDER:
            assert (directory / "adapters" / locale / "adapter_model.safetensors").is_file()


@pytest.mark.parametrize("together", [False, True])
def test_independent_methods_can_score_every_model_everywhere(
    tiny_model, massive_dir, tmp_path, together
):
    config = make_config(
        tiny_model,
        massive_dir,
        tmp_path,
        "nonshared-lora",
        4,
        train={"adapters_together": together},
        evaluate={"all_models": True},
    )
    assert not matrix(run(config)).isna().any().any()


def test_adapters_trained_together_resume_after_the_last_recorded_step(
    tiny_model, massive_dir, tmp_path, monkeypatch
):
    config = make_config(
        tiny_model, massive_dir, tmp_path, "nonshared-lora", 4, train={"adapters_together": True}
    )
    saved = []
    real_save = xlcl.schedules.runners.save_adapter

    def save_then_crash(model, directory, adapter=None):
        if len(saved) == 1:
            raise RuntimeError("killed")
        saved.append(adapter)
        real_save(model, directory, adapter=adapter)

    monkeypatch.setattr("xlcl.schedules.runners.save_adapter", save_then_crash)
    with pytest.raises(RuntimeError, match="killed"):
        run(config)
    directory = tmp_path / "runs" / config.run_id
    # The same-sized locales stop together, in order: en-US was recorded before the crash.
    assert saved == ["en-US"]
    assert sorted(pd.read_parquet(directory / "scores.parquet")["step"].unique()) == [0, 1]
    monkeypatch.setattr("xlcl.schedules.runners.save_adapter", real_save)
    assert run(config) == directory
    assert (directory / DONE).is_file()
    curves = pd.read_parquet(directory / "curves.parquet")
    assert curves.groupby("trained_locale").size().to_dict() == {locale: 2 for locale in ORDER}
    assert sorted(pd.read_parquet(directory / "scores.parquet")["step"].unique()) == [0, 1, 2, 3]


def test_multi_trains_once_on_all_locales(tiny_model, massive_dir, tmp_path):
    directory = run(make_config(tiny_model, massive_dir, tmp_path, "multi", 4))
    scores = pd.read_parquet(directory / "scores.parquet")
    assert sorted(scores["step"].unique()) == [0, 1]
    assert set(scores.loc[scores["step"] == 1, "trained_locale"]) == {"joint"}
    curves = pd.read_parquet(directory / "curves.parquet")
    assert set(curves["trained_locale"]) == {"joint"}
    assert (directory / "adapters" / "joint" / "adapter_config.json").is_file()


def test_a_finished_run_is_complete_and_described(tiny_model, massive_dir, tmp_path):
    config = make_config(tiny_model, massive_dir, tmp_path, "vanilla")
    directory = run(config)
    assert directory.name == config.run_id
    assert (directory / DONE).is_file()
    manifest = json.loads((directory / "manifest.json").read_text())
    assert manifest["status"] == "done"
    assert manifest["order"] == ORDER
    assert manifest["labels"][0] == "O"
    assert manifest["config"]["train"]["patience"] == 1
    assert len(manifest["data_checksum"]) == 64
    assert {"torch", "transformers", "peft"} <= set(manifest["versions"])
    curves = pd.read_parquet(directory / "curves.parquet")
    assert set(curves.columns) >= {"step", "trained_locale", "epoch", "train_loss", "dev_score"}
    # A second call finds the finished run and does not train again.
    before = (directory / "scores.parquet").stat().st_mtime_ns
    assert run(config) == directory
    assert (directory / "scores.parquet").stat().st_mtime_ns == before


def test_a_failed_run_is_marked_failed_not_done(tiny_model, massive_dir, tmp_path, monkeypatch):
    config = make_config(tiny_model, massive_dir, tmp_path, "vanilla")

    def explode(*args, **kwargs):
        raise FloatingPointError("non-finite gradient norm at epoch 1")

    monkeypatch.setattr("xlcl.protocol.train_step", explode)
    with pytest.raises(FloatingPointError):
        run(config)
    directory = tmp_path / "runs" / config.run_id
    manifest = json.loads((directory / "manifest.json").read_text())
    assert manifest["status"] == "failed"
    assert "non-finite" in manifest["error"]
    assert not (directory / DONE).exists()


def test_bad_data_leaves_no_run_directory(tiny_model, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "en-US.jsonl").write_text(
        '{"id": "0", "locale": "en-US", "partition": "train", "intent": "x", '
        '"utt": "wake me", "annot_utt": "wake [time : me"}\n'
    )
    config = make_config(tiny_model, broken, tmp_path, "vanilla", order=["en-US"])
    with pytest.raises(ValueError, match=r"en-US\.jsonl"):
        run(config)
    assert not (tmp_path / "runs").exists()


def test_trimming_the_vocabulary_leaves_every_score_unchanged(tiny_model, massive_dir, tmp_path):
    full = run(make_config(tiny_model, massive_dir, tmp_path, "vanilla"))
    trimmed_config = make_config(tiny_model, massive_dir, tmp_path, "vanilla", trim_vocabulary=True)
    trimmed = run(trimmed_config)
    assert trimmed != full
    kept = json.loads((trimmed / "vocabulary.json").read_text())["kept"]
    assert 5 < len(kept) < 600  # the fixture uses far fewer pieces than the tokenizer has
    assert_same_scores(trimmed, full)


def test_out_of_memory_retries_with_half_the_batch_and_twice_the_accumulation(
    tiny_model, massive_dir, tmp_path, monkeypatch
):
    import xlcl.protocol

    real_train_step = xlcl.protocol.train_step

    def runs_out_of_memory_at_batch_4(model, train, dev, labels, config, **kwargs):
        if config.batch_size == 4:
            real_train_step(
                model, train, dev, labels, config.model_copy(update={"epochs": 1}), **kwargs
            )  # the weights move before memory runs out
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real_train_step(model, train, dev, labels, config, **kwargs)

    monkeypatch.setattr(xlcl.protocol, "train_step", runs_out_of_memory_at_batch_4)
    directory = run(make_config(tiny_model, massive_dir, tmp_path, "vanilla"))
    manifest = json.loads((directory / "manifest.json").read_text())
    assert [r["batch_size"] for r in manifest["oom_retries"]] == [2]
    assert manifest["oom_retries"][0]["step"] == 1
    monkeypatch.setattr(xlcl.protocol, "train_step", real_train_step)
    reference = half_batch_run(tiny_model, massive_dir, tmp_path / "ref")
    assert_same_scores(directory, reference, exact=True)


def test_a_compiled_model_trains_and_saves_under_the_eager_models_names(
    tiny_model, massive_dir, tmp_path
):
    # torch.compile in place (train.compile): the same run directory, adapter and
    # checkpoint names as eager; its dropout masks come from another generator, so the
    # trained numbers differ a little.
    runs = {}
    for compiled in (False, True):
        config = make_config(
            tiny_model,
            massive_dir,
            tmp_path,
            "shared-lora",
            4,
            order=["en-US", "de-DE"],
            train={"patience": 2, "compile": compiled},
        )
        runs[compiled] = run(config)
    eager, compiled_run = runs[False], runs[True]
    assert (compiled_run / DONE).is_file()
    adapter = "adapters/shared/adapter_model.safetensors"
    assert load_file(compiled_run / adapter).keys() == load_file(eager / adapter).keys()
    weights = "checkpoints/step-0002/model.safetensors"
    assert load_file(compiled_run / weights).keys() == load_file(eager / weights).keys()
    scores = {name: pd.read_parquet(path / "scores.parquet") for name, path in runs.items()}
    row0 = [frame.loc[frame["step"] == 0, "f1"].tolist() for frame in scores.values()]
    assert row0[0] == row0[1]  # nothing trained yet: the same model
    losses = [pd.read_parquet(path / "curves.parquet")["train_loss"] for path in runs.values()]
    assert losses[1].tolist() == pytest.approx(losses[0].tolist(), rel=0.02)


def test_a_run_resumed_after_an_out_of_memory_retry_keeps_the_smaller_batch(
    tiny_model, massive_dir, tmp_path, monkeypatch
):
    # Step 1 runs out of memory at batch 4 and goes on at 2 x 2; the run is killed in
    # step 2. Resumed, step 2 and 3 must train at 2 x 2 too, as the uninterrupted run did.
    real_train_step = xlcl.protocol.train_step
    calls: list[tuple[int, int]] = []
    first_run = True

    def out_of_memory_once(model, train, dev, labels, config, **kwargs):
        calls.append((config.batch_size, config.gradient_accumulation))
        if first_run and len(calls) == 1:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        if first_run and len(calls) == 3:
            raise KeyboardInterrupt
        return real_train_step(model, train, dev, labels, config, **kwargs)

    monkeypatch.setattr(xlcl.protocol, "train_step", out_of_memory_once)
    config = make_config(tiny_model, massive_dir, tmp_path, "vanilla")
    with pytest.raises(KeyboardInterrupt):
        run(config)
    assert calls == [(4, 1), (2, 2), (2, 2)]
    first_run, calls[:] = False, []
    resumed = run(config)
    assert calls == [(2, 2), (2, 2)]  # steps 2 and 3
    monkeypatch.setattr(xlcl.protocol, "train_step", real_train_step)
    assert_same_scores(resumed, half_batch_run(tiny_model, massive_dir, tmp_path / "ref"))


def test_an_out_of_memory_retry_after_resuming_inside_a_step_starts_from_the_steps_start(
    tiny_model, massive_dir, tmp_path, monkeypatch
):
    # Killed inside step 2 (after a checkpoint inside it), then, resumed, step 2 runs out of
    # memory: the retry must start step 2 over from step 1's weights, not from the weights
    # of the checkpoint inside the step, as a run that ran out of memory in step 2 did.
    real_train_step = xlcl.protocol.train_step
    calls = []
    plan = {2: "kill"}  # call number -> what happens at it

    def scripted(model, train, dev, labels, config, **kwargs):
        calls.append(config.batch_size)
        action = plan.get(len(calls))
        if action == "oom":
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        if action == "kill":
            on_save = kwargs["on_save"]

            def save_then_die(state):
                on_save(state)
                raise KeyboardInterrupt

            kwargs["on_save"] = save_then_die
        return real_train_step(model, train, dev, labels, config, **kwargs)

    monkeypatch.setattr(xlcl.protocol, "train_step", scripted)
    inside = {"checkpoint": {"every_updates": 1}}
    config = make_config(tiny_model, massive_dir, tmp_path, "vanilla", **inside)
    with pytest.raises(KeyboardInterrupt):
        run(config)
    directory = Path(config.output_dir) / config.run_id
    assert list(directory.glob("checkpoints/partial-step-0002"))  # killed inside step 2
    plan, calls[:] = {1: "oom"}, []
    resumed = run(config)
    assert calls == [4, 2, 2]
    plan, calls[:] = {2: "oom"}, []
    reference = run(make_config(tiny_model, massive_dir, tmp_path / "ref", "vanilla", **inside))
    assert calls == [4, 4, 2, 2]
    assert_same_scores(resumed, reference)


def test_graphed_updates_give_the_plain_runs_scores(tiny_model, massive_dir, tmp_path):
    # train.cuda_graphs through the whole protocol (a GraphedUpdates per step, adapters
    # saved per locale): on the CPU the same padded updates run eagerly, and with every
    # dropout off they give the plain run's curves and scores.
    model = tmp_path / "no-dropout"
    shutil.copytree(tiny_model, model)
    config_file = model / "config.json"
    settings = json.loads(config_file.read_text())
    settings.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    config_file.write_text(json.dumps(settings))
    runs = {}
    for graphs in (False, True):
        config = make_config(
            model,
            massive_dir,
            tmp_path / str(graphs),
            "nonshared-lora",
            4,
            train={"cuda_graphs": graphs, "epochs": 3, "patience": 3, "learning_rate": 1e-2},
            lora={"dropout": 0.0},
        )
        runs[graphs] = run(config)
    curves = [pd.read_parquet(path / "curves.parquet") for path in runs.values()]
    assert len(curves[1]) == len(curves[0]) == 9  # 3 locales x 3 epochs
    assert curves[1]["train_loss"].tolist() == pytest.approx(
        curves[0]["train_loss"].tolist(), rel=1e-5
    )
    assert curves[1]["dev_score"].tolist() == curves[0]["dev_score"].tolist()
    plain, graphed = matrix(runs[False]), matrix(runs[True])
    assert graphed.equals(plain)
    assert (runs[True] / "adapters" / "de-DE" / "adapter_model.safetensors").is_file()


@pytest.mark.parametrize(("method", "together"), [("shared-lora", False), ("nonshared-lora", True)])
def test_a_lora_run_in_bf16_stores_its_frozen_base_in_bf16_with_the_same_scores(
    tiny_model, massive_dir, tmp_path, monkeypatch, method, together
):
    train = {"precision": "bf16", "adapters_together": together}
    stored = []
    real_store = xlcl.protocol.store_frozen_linears_in_bf16

    def counting_store(model):
        stored.append(real_store(model))
        return stored[-1]

    monkeypatch.setattr(xlcl.protocol, "store_frozen_linears_in_bf16", counting_store)
    directory = run(make_config(tiny_model, massive_dir, tmp_path, method, 4, train=train))
    assert stored and set(stored) == {2 * 6}  # every fresh model's frozen linear layers
    adapter = "en-US" if together else "shared"
    saved = load_file(directory / "adapters" / adapter / "adapter_model.safetensors")
    assert {weight.dtype for weight in saved.values()} == {torch.float32}  # adapter and head
    monkeypatch.setattr(xlcl.protocol, "store_frozen_linears_in_bf16", lambda model: 0)
    reference = run(make_config(tiny_model, massive_dir, tmp_path / "ref", method, 4, train=train))
    assert_same_scores(directory, reference, exact=True)
