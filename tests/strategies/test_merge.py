"""Merge: NON-SHARED LoRA's adapters merged after every step; the maths, the runs, the switch."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from peft.tuners.lora import LoraLayer
from safetensors.torch import load_file
from strategy_runs import tables

from tiny_models import save_tiny_model, without_dropout
from xlcl.classifier import build_classifier, save_adapter
from xlcl.config import ConfigError, LoraSettings, validate_config
from xlcl.methods import method
from xlcl.metrics import cbt, cft, read_run_dir
from xlcl.protocol import run
from xlcl.schedules import INDEPENDENT, MERGED
from xlcl.strategies import StepContext, build_strategy, resolve_settings
from xlcl.strategies.merge import MERGED_ADAPTER, Merge
from xlcl.tasks.massive_intent import MassiveIntent

ORDER = ["en-US", "ja-JP", "de-DE"]
TRAIN = {  # fast enough for the tiny model to score above 0 on the fixture
    "epochs": 4,
    "patience": 4,
    "batch_size": 4,
    "learning_rate": 3e-2,
    "head_learning_rate": 1e-1,
    "threads": 1,  # tiny models on a busy CPU: one thread is many times faster
}
LABELS = ["O", "B-time", "I-time", "B-date"]
RANK = 2


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """One thread, as `train.threads` asks of the runs, then torch's threads put back."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def raw_config(tiny_model, massive_dir, output, strategy=None, method_name="nonshared-lora"):
    raw = {
        "model": str(tiny_model),
        "method": method_name,
        "rank": None if method_name == "vanilla" else RANK,
        "order": ORDER,
        "data": {"source": str(massive_dir)},
        "train": dict(TRAIN),
        "output_dir": str(output),
    }
    if strategy is not None:
        raw["strategy"] = strategy
    return raw


def merge(**settings) -> Merge:
    strategy = build_strategy(resolve_settings({"name": "merge", **settings}))
    assert isinstance(strategy, Merge)
    return strategy


# --- settings and config ------------------------------------------------------------------


def test_settings_fill_the_density_of_the_ties_methods_and_refuse_it_elsewhere():
    assert resolve_settings({"name": "merge"}) == {
        "name": "merge",
        "method": "task-arithmetic",
        "weight": "mean",
        "density": None,
    }
    assert resolve_settings({"name": "merge", "method": "ties-svd"})["density"] == 0.2
    dare = {"name": "merge", "method": "dare-ties-svd", "density": 0.5, "weight": 2}
    assert resolve_settings(dare) == {**dare, "weight": 2.0}
    for bad, message in [
        ({"density": 0.5}, "strategy.density: .*ties-svd and dare-ties-svd only"),
        ({"method": "ties-svd", "density": 1.0}, "strategy.density: .*less than 1"),
        ({"weight": 0}, "strategy.weight"),
        ({"method": "ties"}, "strategy.method"),
    ]:
        with pytest.raises(ValueError, match=message):
            resolve_settings({"name": "merge", **bad})


def test_weights_are_the_mean_of_each_method_or_the_given_weight():
    assert merge().weights(4) == [0.25] * 4
    assert merge(method="ties-svd").weights(3) == [1.0] * 3  # the disjoint merge averages
    assert merge(method="dare-ties-svd", weight=0.5).weights(2) == [0.5, 0.5]
    assert merge(weight=0.3).weights(2) == [0.3, 0.3]


def test_merge_turns_nonshared_lora_into_the_merged_schedule_and_none_switches_it_off(
    tiny_model, massive_dir, tmp_path
):
    plain = validate_config(raw_config(tiny_model, massive_dir, tmp_path))
    merged = validate_config(raw_config(tiny_model, massive_dir, tmp_path, {"name": "merge"}))
    off = {"name": "merge", "method": "none"}
    assert plain.schedule is INDEPENDENT and merged.schedule is MERGED
    off_config = validate_config(raw_config(tiny_model, massive_dir, tmp_path, off))
    assert off_config.schedule is INDEPENDENT
    assert merged.method_spec.schedule is INDEPENDENT  # the method's own is unchanged
    assert MERGED.order_dependent and MERGED.models(3) == 3 and MERGED.scored_per_step(3) == 3
    assert [MERGED.scoring_step(1, learned) for learned in (1, 2, 3)] == [1, 2, 3]
    assert [MERGED.starting_step(step) for step in (1, 2, 3)] == [0, 1, 2]


@pytest.mark.parametrize(
    ("method_name", "message"),
    [
        ("vanilla", "strategy merge modifies LoRA adapters: method vanilla trains none"),
        ("shared-lora", "strategy merge is not for the sequential schedule of method shared-lora"),
    ],
)
def test_merge_is_refused_without_independent_lora_adapters(
    tiny_model, massive_dir, tmp_path, method_name, message
):
    raw = raw_config(tiny_model, massive_dir, tmp_path, {"name": "merge"}, method_name)
    with pytest.raises(ConfigError) as error:
        validate_config(raw)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_cost_is_the_merged_adapter_and_head():
    sizes = {locale: 10 for locale in ORDER}
    assert (
        Merge.cost(merge().settings, trainable=100, head=10, train_sizes=sizes).extra_parameters
        == 280
    )
    ties = merge(method="ties-svd").settings
    assert Merge.cost(ties, trainable=100, head=10, train_sizes=sizes).extra_parameters == 100
    off = merge(method="none").settings
    assert Merge.cost(off, trainable=100, head=0, train_sizes=sizes).extra_parameters == 0


# --- the maths, on saved adapters of a tiny model -----------------------------------------


def fresh(tiny_model, alpha=None):
    lora = LoraSettings(alpha=alpha, dropout=0.0)
    model = build_classifier(str(tiny_model), LABELS, method("nonshared-lora", RANK), lora, seed=1)
    return without_dropout(model).eval()


@pytest.fixture(scope="module", params=[None, 6], ids=["alpha=r", "alpha=6"])
def adapters(request, tiny_model, tmp_path_factory):
    """Three adapters of random weights, saved; with their models, to compare logits with."""
    directory = tmp_path_factory.mktemp("adapters")
    generator = torch.Generator().manual_seed(7)
    saved, models = [], []
    for index in range(3):
        model = fresh(tiny_model, request.param)
        with torch.no_grad():
            for _, parameter in model.named_parameters():
                if parameter.requires_grad:
                    parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.2)
        save_adapter(model, directory / str(index))
        saved.append(directory / str(index))
        models.append(model)
    return request.param, saved, models


def context(seed=0):
    """What the merge of step 3 sees: only its generator matters."""
    rng = np.random.default_rng(seed)
    return StepContext(3, ("de-DE",), (), {}, config=None, rng=rng)  # type: ignore[arg-type]


def logits(model):
    ids = torch.tensor([[0, 5, 9, 14, 23, 31, 2], [0, 44, 8, 17, 2, 1, 1]])
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=(ids != 1).long()).logits


def merged_with(tiny_model, adapters, strategy, count=3, seed=0):
    alpha, saved, _ = adapters
    return strategy.merged_model(context(seed), fresh(tiny_model, alpha), saved[:count])


def deltas(model, adapter):
    """ΔW of every LoRA layer of `model`'s adapter `adapter` (scaling included), by layer."""
    return {
        name: module.get_delta_weight(adapter).detach()
        for name, module in model.named_modules()
        if isinstance(module, LoraLayer) and adapter in module.lora_A
    }


def saved_parts(directory):
    """A saved adapter's ΔW by layer (B A · alpha / r) and its head's weights."""
    weights = load_file(directory / "adapter_model.safetensors")
    config = json.loads((directory / "adapter_config.json").read_text())
    scaling = config["lora_alpha"] / config["r"]
    delta = {
        key.removesuffix(".lora_A.weight"): weights[key.replace("lora_A", "lora_B")]
        @ weights[key]
        * scaling
        for key in weights
        if key.endswith(".lora_A.weight")
    }
    head = {key: value for key, value in weights.items() if "lora_" not in key}
    return delta, head


def head_of(model):
    merged = model.base_model.model.classifier.modules_to_save[MERGED_ADAPTER]
    return {"weight": merged.weight.detach(), "bias": merged.bias.detach()}


def initial_head(tiny_model):
    original = fresh(tiny_model).base_model.model.classifier.original_module
    return {"weight": original.weight.detach(), "bias": original.bias.detach()}


@pytest.mark.parametrize("merge_method", ["task-arithmetic", "ties-svd", "dare-ties-svd"])
def test_one_adapter_at_weight_1_gives_its_own_logits(tiny_model, adapters, merge_method):
    alpha, _, models = adapters
    merged = merged_with(tiny_model, adapters, merge(method=merge_method), count=1)
    assert merged.active_adapter == MERGED_ADAPTER
    if alpha is None:  # scaling 1: PEFT's one-adapter merge multiplies by exactly 1
        assert torch.equal(logits(merged), logits(models[0]))
    else:  # A and B each scaled by sqrt(alpha / r): equal up to rounding
        torch.testing.assert_close(logits(merged), logits(models[0]), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("weight", ["mean", 0.7])
def test_task_arithmetic_is_the_weighted_sum_of_the_deltas_and_heads(tiny_model, adapters, weight):
    _, saved, _ = adapters
    strategy = merge(weight=weight)
    model = merged_with(tiny_model, adapters, strategy)
    weights = strategy.weights(3)
    parts = [saved_parts(directory) for directory in saved]
    merged = deltas(model, MERGED_ADAPTER)
    assert len(merged) == len(parts[0][0]) > 0
    for name, delta in merged.items():
        expected = sum(w * part[0][name] for w, part in zip(weights, parts, strict=True))
        torch.testing.assert_close(delta, expected, rtol=1e-5, atol=1e-6)
    layer = next(m for m in model.modules() if isinstance(m, LoraLayer))
    assert layer.lora_A[MERGED_ADAPTER].weight.shape[0] == 3 * RANK  # cat: every rank kept
    h0 = initial_head(tiny_model)
    for key, value in head_of(model).items():
        heads = [part[1][f"base_model.model.classifier.{key}"] for part in parts]
        expected = h0[key] + sum(w * (h - h0[key]) for w, h in zip(weights, heads, strict=True))
        torch.testing.assert_close(value, expected, rtol=1e-5, atol=1e-6)
        if weight == "mean":
            torch.testing.assert_close(value, sum(heads) / 3, rtol=1e-5, atol=1e-6)


def ties_by_hand(vectors, weights, density):
    """TIES (Yadav et al. 2023): trim each to its top `density`, elect signs, disjoint mean."""
    trimmed = []
    for vector in vectors:
        flat = np.abs(vector).ravel()
        keep = np.zeros(flat.size, dtype=bool)
        keep[np.argsort(-flat)[: int(density * flat.size)]] = True
        trimmed.append(np.where(keep.reshape(vector.shape), vector, 0.0))
    stacked = np.stack(trimmed)
    elected = np.where(stacked.sum(axis=0) >= 0, 1.0, -1.0)
    agree = np.sign(stacked) == elected
    weighted = stacked * np.reshape(weights, (-1,) + (1,) * vectors[0].ndim)
    return (weighted * agree).sum(axis=0) / np.maximum(agree.sum(axis=0), 1)


@pytest.mark.parametrize("adapters", [6], indirect=True, ids=["alpha=6"])
def test_ties_svd_is_the_rank_r_svd_of_ties_on_each_delta_and_ties_on_the_heads(
    tiny_model, adapters
):
    _, saved, _ = adapters
    strategy = merge(method="ties-svd", density=0.4, weight=0.8)
    model = merged_with(tiny_model, adapters, strategy)
    parts = [saved_parts(directory) for directory in saved]
    for name, delta in deltas(model, MERGED_ADAPTER).items():
        ties = ties_by_hand([part[0][name].numpy() for part in parts], [0.8] * 3, 0.4)
        u, s, vh = np.linalg.svd(ties.astype(np.float64))
        best = (u[:, :RANK] * s[:RANK]) @ vh[:RANK]  # the best rank-r approximation
        np.testing.assert_allclose(delta.numpy(), best, rtol=1e-4, atol=1e-5)
    h0 = initial_head(tiny_model)
    for key, value in head_of(model).items():
        heads = [part[1][f"base_model.model.classifier.{key}"].numpy() for part in parts]
        vectors = [head - h0[key].numpy() for head in heads]
        expected = h0[key].numpy() + ties_by_hand(vectors, [0.8] * 3, 0.4)
        np.testing.assert_allclose(value.numpy(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("adapters", [None], indirect=True, ids=["alpha=r"])
def test_dare_draws_from_the_steps_generator_only(tiny_model, adapters):
    alpha, saved, _ = adapters
    strategy = merge(method="dare-ties-svd", density=0.5)
    first = deltas(merged_with(tiny_model, adapters, strategy, seed=1), MERGED_ADAPTER)
    again = deltas(merged_with(tiny_model, adapters, strategy, seed=1), MERGED_ADAPTER)
    other = deltas(merged_with(tiny_model, adapters, strategy, seed=2), MERGED_ADAPTER)
    assert all(torch.equal(first[name], again[name]) for name in first)
    assert not all(torch.equal(first[name], other[name]) for name in first)
    model = fresh(tiny_model, alpha)  # building a model seeds torch; merging must not draw
    state = torch.manual_seed(123).get_state()
    strategy.merged_model(context(3), model, saved)
    assert torch.equal(torch.get_rng_state(), state)


def test_a_sequence_classifiers_head_merges_with_its_pooler(tmp_path):
    """BERT's intent head is the classifier and the pooler: both are merged."""
    model_dir = save_tiny_model(tmp_path / "bert", architecture="bert")
    task = MassiveIntent()

    def build():
        model = task.build_model(
            str(model_dir), LABELS, method("nonshared-lora", RANK), LoraSettings(dropout=0.0), 1
        )
        return without_dropout(model).eval()

    generator = torch.Generator().manual_seed(3)
    models = []
    for index in range(2):
        model = build()
        with torch.no_grad():
            for _, parameter in model.named_parameters():
                if parameter.requires_grad:
                    parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.2)
        save_adapter(model, tmp_path / str(index))
        models.append(model)
    alone = merge().merged_model(context(), build(), [tmp_path / "0"])
    assert torch.equal(logits(alone), logits(models[0]))
    both = merge().merged_model(context(), build(), [tmp_path / "0", tmp_path / "1"])
    heads = [name for name, _ in both.named_parameters() if f".{MERGED_ADAPTER}." in name]
    assert {name.split(".modules_to_save")[0] for name in heads if "lora_" not in name} == {
        "base_model.model.bert.pooler",
        "base_model.model.classifier",
    }
    parameters = dict(both.named_parameters())
    for name in heads:
        if "lora_" not in name:
            trained = [
                dict(m.named_parameters())[name.replace(MERGED_ADAPTER, "default")] for m in models
            ]
            torch.testing.assert_close(parameters[name], sum(trained) / 2, rtol=1e-5, atol=1e-6)


# --- runs -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def runs(tiny_model, massive_dir, tmp_path_factory):
    """Plain NON-SHARED LoRA (also with every model scored everywhere), merge off, merge on."""
    output = tmp_path_factory.mktemp("merge-runs")
    plain = raw_config(tiny_model, massive_dir, output / "plain")
    off = raw_config(tiny_model, massive_dir, output / "off", {"name": "merge", "method": "none"})
    merged = raw_config(tiny_model, massive_dir, output / "merged", {"name": "merge"})
    return {
        "plain": run(validate_config(plain)),
        "everywhere": run(validate_config({**plain, "evaluate": {"all_models": True}})),
        "off": run(validate_config(off)),
        "merged": run(validate_config(merged)),
    }


def test_method_none_is_plain_nonshared_lora_bit_for_bit(runs):
    for plain, off in zip(tables(runs["plain"]), tables(runs["off"]), strict=True):
        pd.testing.assert_frame_equal(plain, off, check_exact=True)
    manifest = json.loads((runs["off"] / "manifest.json").read_text())
    assert manifest["schedule"] == "independent"


def test_a_merged_run_scores_every_locale_with_the_merge_of_the_adapters_so_far(runs):
    scores, curves = tables(runs["merged"])
    everywhere, _ = tables(runs["everywhere"])
    pd.testing.assert_frame_equal(curves, tables(runs["plain"])[1], check_exact=True)
    assert json.loads((runs["merged"] / "manifest.json").read_text())["schedule"] == "merged"
    matrix = read_run_dir(runs["merged"]).matrix
    assert matrix.schedule is MERGED
    assert not np.isnan(matrix.scores).any()
    assert not np.isnan(cbt(matrix)) and not np.isnan(cft(matrix))
    plain = read_run_dir(runs["plain"]).matrix
    assert np.isnan(cbt(plain)) and np.isnan(cft(plain))
    # Training is untouched (the curves above). Rows 0 and 1 are the untrained model and
    # the first adapter merged alone at weight 1: the plain run's rows with every model
    # scored everywhere, exactly.
    cells = ["step", "eval_locale", "score", "n_pred"]
    pd.testing.assert_frame_equal(
        scores.loc[scores["step"] <= 1, cells],
        everywhere.loc[everywhere["step"] <= 1, cells],
        check_exact=True,
    )
    later = [frame.loc[frame["step"] > 1, cells].to_numpy() for frame in (scores, everywhere)]
    assert not np.array_equal(*later)  # from row 2 on, merges of two and three adapters
    for locale in ORDER:
        assert (runs["merged"] / "adapters" / locale / "adapter_model.safetensors").is_file()


def test_adapters_trained_together_are_merged_as_each_row_is_recorded(
    tiny_model, massive_dir, tmp_path
):
    # Patience 1: adapters stop at different epochs, so rows are merged while others train.
    together = {**TRAIN, "patience": 1, "adapters_together": True}
    plain = raw_config(tiny_model, massive_dir, tmp_path / "plain")
    merged = raw_config(tiny_model, massive_dir, tmp_path / "merged", {"name": "merge"})
    plain_dir = run(validate_config({**plain, "train": together}))
    merged_dir = run(validate_config({**merged, "train": together}))
    scores, curves = tables(merged_dir)
    # Scoring a merge builds a fresh model, which seeds torch: the adapters still training
    # must not notice (their curves are the plain run's, bit for bit).
    pd.testing.assert_frame_equal(curves, tables(plain_dir)[1], check_exact=True)
    assert not scores["score"].isna().any()
    assert sorted(scores["step"].unique()) == [0, 1, 2, 3]
