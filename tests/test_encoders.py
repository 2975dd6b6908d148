"""Every supported encoder architecture (docs/models.md) through runs, LoRA and trimming.

Each is a tiny random model built offline from its config, with the unigram tokenizer of
`tiny_models`; the table in docs/models.md lists the same architectures.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
import torch
import transformers
from peft import PeftModel, TaskType
from safetensors.torch import load_file
from tokenizers import (
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)
from transformers import (
    AutoModel,
    AutoModelForTokenClassification,
    PretrainedConfig,
    PreTrainedTokenizerFast,
)

from massive_fixture import write_massive_dir
from tiny_models import SAMPLE_TEXT, train_tokenizer, without_dropout
from xlcl.classifier import HEAD_PARTS, build_classifier, head_modules, save_adapter
from xlcl.config import LoraSettings, validate_config
from xlcl.data import load_massive
from xlcl.encode import encode
from xlcl.evaluate.scoring import score_splits
from xlcl.methods import method
from xlcl.models import VocabularyTrim
from xlcl.protocol import run

SIZE = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2}
ORDER = ["en-US", "de-DE"]

# architecture -> (config class name, its settings beyond the tokenizer's and SIZE)
ARCHITECTURES: dict[str, tuple[str, dict[str, object]]] = {
    "bert": ("BertConfig", {"intermediate_size": 64}),
    "distilbert": ("DistilBertConfig", {"dim": 32, "n_layers": 2, "n_heads": 2, "hidden_dim": 64}),
    "xlm-roberta": (
        "XLMRobertaConfig",
        {"intermediate_size": 64, "max_position_embeddings": 132, "type_vocab_size": 1},
    ),
    "deberta-v2": (  # mDeBERTa-v3's attention: relative positions only, none in the input
        "DebertaV2Config",
        {
            "intermediate_size": 64,
            "relative_attention": True,
            "pos_att_type": ["p2c", "c2p"],
            "position_biased_input": False,
            "max_relative_positions": -1,
            "position_buckets": 16,
            "norm_rel_ebd": "layer_norm",
            "share_att_key": True,
            "type_vocab_size": 0,
        },
    ),
    "rembert": (  # decoupled: a narrower input embedding projected up to the hidden size
        "RemBertConfig",
        {"intermediate_size": 64, "input_embedding_size": 16, "output_embedding_size": 16},
    ),
    "modernbert": (  # alternating local/global attention, rotary positions, no token types
        "ModernBertConfig",
        {"intermediate_size": 64, "global_attn_every_n_layers": 2, "local_attention": 16},
    ),
}
# Which module of the token classifier each adapter trains in full and saves.
HEADS = {name: ["classifier"] for name in ARCHITECTURES} | {"modernbert": ["head", "classifier"]}


WORDPIECE = {"bert", "distilbert"}  # as mBERT's: [PAD] is 0, [CLS] text [SEP]


def _wordpiece(texts: list[str]) -> PreTrainedTokenizerFast:
    """A WordPiece tokenizer (as mBERT's) trained on `texts`."""
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=False)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    tokenizer.train_from_iterator(
        texts, trainers.WordPieceTrainer(vocab_size=300, special_tokens=specials)
    )
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )


def _config(architecture: str, vocab_size: int, pad_id: int) -> PretrainedConfig:
    class_name, settings = ARCHITECTURES[architecture]
    config_class: Callable[..., PretrainedConfig] | None = getattr(transformers, class_name, None)
    if config_class is None:
        pytest.skip(f"transformers {transformers.__version__} has no {class_name}")
    size = {} if architecture == "distilbert" else SIZE
    specials = {"bos_token_id": 0, "eos_token_id": 2, "cls_token_id": 0, "sep_token_id": 2}
    return config_class(
        vocab_size=vocab_size,
        pad_token_id=pad_id,
        **(specials if architecture == "modernbert" else {}),
        **size,
        **settings,
    )


@pytest.fixture(scope="module", params=list(ARCHITECTURES))
def encoder(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random encoder of one architecture, with its tokenizer, saved to disk."""
    architecture = request.param
    texts = [*SAMPLE_TEXT, "mach das licht aus", "play queen please"]
    tokenizer = _wordpiece(texts) if architecture in WORDPIECE else train_tokenizer(texts)
    config = _config(architecture, len(tokenizer), tokenizer.pad_token_id)
    directory = tmp_path_factory.mktemp(f"{architecture}-")
    torch.manual_seed(0)
    AutoModel.from_config(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def massive_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_massive_dir(tmp_path_factory.mktemp("massive"), tuple(ORDER))


def _architecture(encoder: Path) -> str:
    return encoder.name.rsplit("-", 1)[0]


def _run(encoder: Path, massive_dir: Path, tmp_path: Path, name: str, **extra: object) -> Path:
    config = validate_config(
        {
            "model": str(encoder),
            "method": name,
            "order": ORDER,
            "data": {"source": str(massive_dir)},
            "train": {"epochs": 1, "patience": 1, "batch_size": 4, "learning_rate": 1e-3},
            "output_dir": str(tmp_path / "runs"),
            **extra,
        }
    )
    return run(config)


def test_the_head_is_what_each_adapter_trains_and_lora_the_rest(encoder: Path) -> None:
    model = build_classifier(
        str(encoder), ["O", "B-x", "I-x"], method("shared-lora", 4), LoraSettings(), 0
    )
    base = model.get_base_model()
    assert head_modules(base, TaskType.TOKEN_CLS) == HEADS[_architecture(encoder)]
    assert set(HEADS[_architecture(encoder)]) <= set(HEAD_PARTS)
    lora = [name for name, module in model.named_modules() if hasattr(module, "lora_A")]
    assert lora and not [name for name in lora if set(name.split(".")) & set(HEAD_PARTS)]
    trained = {name.split(".")[2] for name, p in model.named_parameters() if p.requires_grad}
    assert set(HEADS[_architecture(encoder)]) <= trained


# Full fine-tuning here, SHARED LoRA below: the other methods build their models the same
# way (tests/test_protocol.py runs every method on XLM-R).
def test_a_full_fine_tuning_run_goes_through(
    encoder: Path, massive_dir: Path, tmp_path: Path
) -> None:
    directory = _run(encoder, massive_dir, tmp_path, "vanilla")
    scores = pd.read_parquet(directory / "scores.parquet")
    assert scores["n_sentences"].gt(0).all()
    assert (directory / "DONE").exists()


def test_a_runs_adapter_reloads_in_plain_peft_and_scores_the_same(
    encoder: Path, massive_dir: Path, tmp_path: Path
) -> None:
    directory = _run(encoder, massive_dir, tmp_path, "shared-lora", rank=4, trim_vocabulary=True)
    manifest = json.loads((directory / "manifest.json").read_text())
    labels = manifest["labels"]
    adapter = directory / "adapters" / "shared"
    base = AutoModelForTokenClassification.from_pretrained(encoder, num_labels=len(labels))
    embedding = next(n for n, m in base.named_modules() if m is base.get_input_embeddings())
    saved = load_file(adapter / "adapter_model.safetensors")
    assert not [key for key in saved if embedding in key]  # it loads on the untrimmed base
    model = PeftModel.from_pretrained(base, adapter).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(encoder)
    test = load_massive(str(massive_dir), ["de-DE"]).utterances("de-DE", "test")
    split = encode(test, tokenizer, {label: i for i, label in enumerate(labels)}, 128)
    rescored = score_splits(model, [split], labels, 8, tokenizer.pad_token_id, torch.device("cpu"))
    scores = pd.read_parquet(directory / "scores.parquet")
    last = scores[(scores["step"] == len(ORDER)) & (scores["eval_locale"] == "de-DE")]
    assert rescored.f1 == pytest.approx(float(last["f1"].iloc[0]), abs=1e-9)


def test_a_reloaded_adapter_gives_the_same_logits(encoder: Path, tmp_path: Path) -> None:
    labels = ["O", "B-x", "I-x"]
    model = build_classifier(str(encoder), labels, method("shared-lora", 4), LoraSettings(), 0)
    with torch.no_grad():  # trained adapters: B is no longer zero
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.5)
    save_adapter(model, tmp_path / "adapter")
    base = AutoModelForTokenClassification.from_pretrained(encoder, num_labels=len(labels))
    reloaded = PeftModel.from_pretrained(base, tmp_path / "adapter")
    batch = _batch(encoder)
    with torch.no_grad():
        expected = without_dropout(model).eval()(**batch).logits
        got = without_dropout(reloaded).eval()(**batch).logits
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)


def test_trimming_leaves_the_outputs_on_the_kept_tokens_unchanged(encoder: Path) -> None:
    labels = ["O", "B-x", "I-x"]
    tokenizer = transformers.AutoTokenizer.from_pretrained(encoder)
    batch = _batch(encoder)
    trim = VocabularyTrim.from_token_ids(batch["input_ids"], tokenizer.all_special_ids)
    full = build_classifier(str(encoder), labels, method("vanilla"), LoraSettings(), 0).eval()
    trimmed = build_classifier(str(encoder), labels, method("vanilla"), LoraSettings(), 0, trim)
    assert trimmed.get_input_embeddings().num_embeddings == len(trim) < len(tokenizer)
    remapped = {**batch, "input_ids": trim.remap(batch["input_ids"])}
    with torch.no_grad():
        expected = full(**batch).logits
        got = trimmed.eval()(**remapped).logits
    assert torch.equal(got, expected)


def _batch(encoder: Path) -> dict[str, torch.Tensor]:
    """Two utterances of the sample text, padded to one length."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(encoder)
    encoded = tokenizer(["wake me up at five am", "разбуди меня в пять утра"], padding=True)
    return {key: torch.tensor(encoded[key]) for key in ("input_ids", "attention_mask")}
