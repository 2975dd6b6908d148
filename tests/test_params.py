import json

import pytest
from typer.testing import CliRunner

from xlcl.cli import app
from xlcl.methods import method
from xlcl.params import count_parameters

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
