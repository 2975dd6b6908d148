import json

import pytest
from typer.testing import CliRunner

from xlcl.cli import app
from xlcl.methods import method
from xlcl.params import count_parameters
from xlcl.strategies import (
    Strategy,
    StrategyCost,
    resolve_settings,
    strategy_class,
    strategy_settings,
)

XLMR = "FacebookAI/xlm-roberta-base"
BASE = 278_043_648  # paper: 278.04 M, XLMRobertaModel with pooler


@pytest.mark.parametrize(
    ("name", "rank", "trainable"),
    [
        ("vanilla", None, BASE),
        ("multi", None, BASE),
        ("mono", None, 52 * BASE),  # paper: 14,458.27 M
        ("shared-lora", 32, 5_357_568),  # paper: 5.36 M
        ("shared-lora", 64, 10_715_136),  # paper: 10.72 M
        ("multi", 256, 42_860_544),  # paper: 42.86 M
        ("nonshared-lora", 64, 52 * 10_715_136),  # paper: 557.19 M
        ("nonshared-lora", 256, 52 * 42_860_544),  # paper: 2,228.75 M
    ],
)
def test_counts_equal_the_papers_table_1(name, rank, trainable):
    count = count_parameters(method(name, rank), XLMR)
    assert count.trainable == trainable
    assert count.counted_model.startswith("XLMRobertaModel")


def test_lora_count_is_rank_times_in_plus_out_of_every_linear_layer():
    # 12 layers x (q, k, v, attn-out: 768->768; up 768->3072; down 3072->768) + pooler 768->768
    per_layer = 4 * 32 * (768 + 768) + 2 * 32 * (768 + 3072)
    expected = 12 * per_layer + 32 * (768 + 768)
    assert count_parameters(method("shared-lora", 32), XLMR).trainable == expected
    total = count_parameters(method("nonshared-lora", 32), XLMR, n_locales=3).total
    assert total == BASE + 3 * expected


def test_a_local_model_directory_is_counted_from_its_config(tiny_model):
    count = count_parameters(method("vanilla"), str(tiny_model))
    assert count.trainable == count.total > 0
    assert count.counted_model.startswith("XLMRobertaModel")


def test_cli_prints_json():
    result = CliRunner().invoke(
        app, ["params", "--method", "shared-lora", "--rank", "32", "--json"]
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload == {
        "trainable": 5_357_568,
        "total": BASE + 5_357_568,
        "counted_model": "XLMRobertaModel (no classification head) + LoRA",
    }


def test_cli_rejects_a_missing_rank():
    result = CliRunner().invoke(app, ["params", "--method", "shared-lora"])
    assert result.exit_code == 2
    assert "needs a rank" in result.output


# --- A strategy's cost ------------------------------------------------------------------

SIZES = {"en-US": 100, "ja-JP": 40, "de-DE": 60}


@pytest.mark.parametrize(
    ("strategy", "expected"),
    [
        # memory: min(mem_size, size) of every locale but the last, which is never replayed
        ({"name": "replay", "mem_size": 50}, StrategyCost(memory_utterances=50 + 40)),
        ({"name": "replay", "mem_size": 50, "policy": "interleaved"}, StrategyCost(0, 0, 90)),
        ({"name": "replay", "mem_size": 0}, StrategyCost()),
        ({"name": "agem", "mem_size": 30}, StrategyCost(memory_utterances=30 + 30)),
        ({"name": "agem", "mem_size": 0}, StrategyCost()),
        # Fisher and anchor of the trainable parameters: one pair online, one per earlier
        # locale separate
        ({"name": "ewc"}, StrategyCost(stored_values=2 * 1_000)),
        ({"name": "ewc", "mode": "separate"}, StrategyCost(stored_values=2 * 1_000 * 2)),
        ({"name": "ewc", "ewc_lambda": 0}, StrategyCost()),
        # the teacher: one copy of the trainable parameters
        ({"name": "lwf"}, StrategyCost(stored_values=1_000)),
        ({"name": "lwf", "alpha": 0}, StrategyCost()),
        ({"name": "lr-adjust"}, StrategyCost()),
    ],
    ids=lambda value: "-".join(str(v) for v in value.values()) if isinstance(value, dict) else "",
)
def test_each_built_in_strategy_s_cost(strategy, expected):
    resolved = resolve_settings(strategy)
    cls = strategy_class(strategy["name"])
    cost = cls.cost(strategy_settings(resolved), trainable=1_000, head=0, train_sizes=SIZES)
    assert cost == expected
    # One locale: nothing earlier to remember.
    alone = cls.cost(
        strategy_settings(resolved), trainable=1_000, head=0, train_sizes={"en-US": 100}
    )
    assert alone == StrategyCost()


class FakeOLoRA(Strategy):
    """A strategy that adds a frozen LoRA adapter per earlier locale, as O-LoRA does."""

    needs_lora = True

    @classmethod
    def cost(cls, settings, *, trainable, head, train_sizes):
        return StrategyCost(
            extra_parameters=(trainable - head) * (len(train_sizes) - 1), stored_values=7
        )


def test_a_strategy_s_extra_parameters_join_the_counts():
    plain = count_parameters(method("shared-lora", 32), XLMR, n_locales=3)
    resolved = resolve_settings({"name": "test_params:FakeOLoRA"})
    count = count_parameters(method("shared-lora", 32), XLMR, n_locales=3, strategy=resolved)
    adapter = 5_357_568
    assert plain.trainable == adapter and plain.strategy_cost is None
    assert count.strategy_cost == StrategyCost(extra_parameters=2 * adapter, stored_values=7)
    assert count.trainable == 3 * adapter
    assert count.total == BASE + 3 * adapter
    with pytest.raises(ValueError, match="modifies LoRA adapters"):
        count_parameters(method("vanilla"), XLMR, n_locales=3, strategy=resolved)


def test_cli_prints_a_strategy_s_cost():
    lora = ["--method", "shared-lora", "--rank", "32", "--locales", "3", "--json"]
    result = CliRunner().invoke(app, ["params", *lora, "--strategy", "test_params:FakeOLoRA"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["trainable"] == 3 * 5_357_568
    assert payload["total"] == BASE + 3 * 5_357_568
    assert payload["strategy_cost"] == {
        "extra_parameters": 2 * 5_357_568,
        "stored_values": 7,
        "memory_utterances": 0,
    }
    vanilla = ["--method", "vanilla", "--locales", "3", "--train-size", "80"]
    settings = ["--set", "mem_size=100", "--set", "strategy.policy=interleaved"]
    replay = CliRunner().invoke(app, ["params", *vanilla, "--strategy", "replay", *settings])
    assert replay.exit_code == 0, replay.output
    assert "strategy   replay mem_size=100 policy=interleaved" in replay.stdout
    assert "memory utterances               160" in replay.stdout  # 2 locales x min(100, 80)
    assert "trainable       278,043,648" in replay.stdout


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--set", "mem_size=5"], "add --strategy NAME"),
        (["--strategy", "replay", "--set", "mem_sise=5"], "did you mean 'strategy.mem_size'"),
        (["--strategy", "replay", "--set", "mem_size"], "expected key=value"),
        (["--strategy", "replay", "--method", "nonshared-lora", "--rank", "4"], "schedule"),
    ],
)
def test_cli_rejects_a_bad_strategy(arguments, message):
    base = [] if "--method" in arguments else ["--method", "vanilla"]
    result = CliRunner().invoke(app, ["params", *base, *arguments])
    assert result.exit_code == 2
    assert message in result.output
