"""`xlcl run` with a model it cannot use: one line naming the model, no run directory."""

from __future__ import annotations

from pathlib import Path

import huggingface_hub.constants
import pytest
import yaml
from transformers import AutoModel, BertGenerationConfig
from typer.testing import CliRunner

from massive_fixture import write_massive_dir
from tiny_models import SAMPLE_TEXT, train_tokenizer
from xlcl.cli import app

runner = CliRunner()


@pytest.fixture
def config(tmp_path: Path) -> Path:
    data = write_massive_dir(tmp_path / "massive", ("en-US",))
    path = tmp_path / "run.yaml"
    raw = {"method": "vanilla", "order": ["en-US"], "data": {"source": str(data)}}
    path.write_text(yaml.safe_dump({**raw, "model": "x", "output_dir": str(tmp_path / "runs")}))
    return path


def _error_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert lines and "Traceback" not in output, output
    return lines[-1]


def test_a_model_that_cannot_be_loaded_is_one_line(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # no retries
    result = runner.invoke(app, ["run", str(config), "--set", "model=not/a-model"])
    assert result.exit_code == 2
    assert _error_line(result.output).startswith("error: model not/a-model: cannot load it (")
    assert not (config.parent / "runs").exists()


def test_an_architecture_without_a_token_classifier_is_one_line(
    config: Path, tmp_path: Path
) -> None:
    tokenizer = train_tokenizer(SAMPLE_TEXT)
    model = tmp_path / "bert-generation"
    encoder = BertGenerationConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
    )
    AutoModel.from_config(encoder).save_pretrained(model)
    tokenizer.save_pretrained(model)
    result = runner.invoke(app, ["run", str(config), "--set", f"model={model}"])
    assert result.exit_code == 2
    assert _error_line(result.output) == (
        f"error: model {model}: its architecture (bert-generation) has no task head "
        "in transformers (AutoModelForTokenClassification)"
    )
    assert not (config.parent / "runs").exists()
