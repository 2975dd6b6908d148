"""Vocabulary trimming leaves outputs on the data unchanged and drops unused embedding rows."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import (
    BertConfig,
    BertForTokenClassification,
    BertModel,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    XLMRobertaConfig,
    XLMRobertaForTokenClassification,
)

from xlcl.models import VocabularyTrim, trim_embeddings

_TINY = {
    "vocab_size": 100,
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 37,
    "max_position_embeddings": 40,
}


def _tiny_bert() -> PreTrainedModel:
    torch.manual_seed(0)
    return BertForTokenClassification(BertConfig(**_TINY, pad_token_id=0, num_labels=5)).eval()


def _tiny_xlmr() -> PreTrainedModel:
    torch.manual_seed(0)
    config = XLMRobertaConfig(**_TINY, pad_token_id=1, num_labels=5)
    return XLMRobertaForTokenClassification(config).eval()


def _batch(pad_id: int) -> dict[str, torch.Tensor]:
    # specials 0..3 as in XLM-R (BERT's pad is 0); content ids scattered over the vocabulary
    ids = torch.tensor(
        [[0, 17, 42, 42, 99, 2, pad_id, pad_id], [0, 5, 63, 17, 8, 71, 30, 2]], dtype=torch.long
    )
    return {"input_ids": ids, "attention_mask": (ids != pad_id).long()}


def _n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_from_token_ids_keeps_data_and_specials_in_order() -> None:
    trim = VocabularyTrim.from_token_ids(
        torch.tensor([[7, 3, -100], [50, 7, 9]]), special_ids=[0, 1, 2], unk_id=3
    )
    assert trim.kept == (0, 1, 2, 3, 7, 9, 50)
    assert len(trim) == 7
    assert trim.new_id(50) == 6
    assert trim.new_id(8) is None
    assert trim.new_id(1000) is None


def test_remap_and_restore() -> None:
    trim = VocabularyTrim.from_token_ids([5, 9, 20], special_ids=[0, 1], unk_id=1)
    ids = torch.tensor([[0, 20, 9], [5, 5, 1]])
    new = trim.remap(ids)
    assert new.tolist() == [[0, 4, 3], [2, 2, 1]]
    assert torch.equal(trim.restore(new), ids)


def test_remap_unknown_ids_error_by_default_or_go_to_unk() -> None:
    trim = VocabularyTrim.from_token_ids([5, 9], special_ids=[0, 3], unk_id=3)
    ids = torch.tensor([0, 6, 9, 500])
    with pytest.raises(KeyError, match=r"\[6, 500\]"):
        trim.remap(ids)
    assert trim.remap(ids, unknown="unk").tolist() == [0, 1, 3, 1]
    without_unk = VocabularyTrim.from_token_ids([5, 9], special_ids=[0])
    with pytest.raises(ValueError, match="unk_id"):
        without_unk.remap(ids, unknown="unk")


def test_invalid_trims() -> None:
    with pytest.raises(ValueError, match="at least one"):
        VocabularyTrim(())
    with pytest.raises(ValueError, match="increasing"):
        VocabularyTrim((3, 2))
    with pytest.raises(ValueError, match="unk id"):
        VocabularyTrim((0, 2), unk_id=1)


def test_save_and_load(tmp_path: Path) -> None:
    trim = VocabularyTrim.from_token_ids([5, 9, 20], special_ids=[0, 1], unk_id=1)
    trim.save(tmp_path / "trim.json")
    assert VocabularyTrim.load(tmp_path / "trim.json") == trim


def test_a_save_that_fails_midway_leaves_the_old_file_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "trim.json"
    old = VocabularyTrim.from_token_ids([5, 9], special_ids=[0, 1])
    old.save(path)
    written = path.read_bytes()

    def disk_full_halfway(self: Path, content: bytes) -> int:
        with open(self, "wb") as file:
            file.write(content[: len(content) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", disk_full_halfway)
    with pytest.raises(OSError, match="No space left"):
        VocabularyTrim.from_token_ids(range(50), special_ids=[0, 1]).save(path)
    assert path.read_bytes() == written
    assert VocabularyTrim.load(path) == old
    assert [p.name for p in tmp_path.iterdir()] == ["trim.json"]  # no temporary left


@pytest.mark.parametrize("build", [_tiny_bert, _tiny_xlmr], ids=["bert", "xlm-r"])
def test_trimmed_model_outputs_are_identical(build: object) -> None:
    model = build()  # type: ignore[operator]
    batch = _batch(model.config.pad_token_id)
    with torch.no_grad():
        before = model(**batch).logits
    trim = VocabularyTrim.from_token_ids(batch["input_ids"], special_ids=[0, 1, 2, 3])
    n_before = _n_params(model)
    trim_embeddings(model, trim)
    with torch.no_grad():
        after = model(**{**batch, "input_ids": trim.remap(batch["input_ids"])}).logits
    assert torch.equal(before, after)
    # 12 of 100 rows kept (0 1 2 3 5 8 17 30 42 63 71 99): 88 rows x 32 fewer parameters
    assert len(trim) == 12
    assert n_before - _n_params(model) == 88 * 32
    assert model.config.vocab_size == 12
    assert model.get_input_embeddings().padding_idx == model.config.pad_token_id


def test_training_a_trimmed_model_matches_the_full_one() -> None:
    """One AdamW step on each: the data's outputs stay the same (unused rows get no gradient)."""
    full, trimmed = _tiny_bert().train(), _tiny_bert().train()
    batch = _batch(0)
    labels = torch.tensor([[-100, 1, 2, 0, 4, -100, -100, -100], [-100, 3, 1, 1, 0, 2, 4, -100]])
    trim = VocabularyTrim.from_token_ids(batch["input_ids"], special_ids=[0, 1, 2, 3])
    trim_embeddings(trimmed, trim)
    trimmed_batch = {**batch, "input_ids": trim.remap(batch["input_ids"])}
    for model, inputs in ((full, batch), (trimmed, trimmed_batch)):
        torch.manual_seed(1)  # same dropout masks
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
        model(**inputs, labels=labels).loss.backward()
        optimizer.step()
    full.eval(), trimmed.eval()
    with torch.no_grad():
        torch.testing.assert_close(
            full(**batch).logits, trimmed(**trimmed_batch).logits, atol=1e-6, rtol=0
        )


def test_trim_refuses_to_move_the_pad_id() -> None:
    model = _tiny_xlmr()  # pad id 1
    with pytest.raises(ValueError, match="pad id 1"):
        trim_embeddings(model, VocabularyTrim.from_token_ids([1, 5]))  # 1 would become 0


def test_trim_refuses_ids_beyond_the_vocabulary() -> None:
    with pytest.raises(ValueError, match="keeps id 100"):
        trim_embeddings(_tiny_bert(), VocabularyTrim.from_token_ids([0, 100]))


# MASSIVE-style requests in six locales
_MASSIVE_LIKE = [
    "wake me up at five am this week",
    "weck mich diese woche um fünf uhr morgens",
    "разбуди меня в пять утра на этой неделе",
    "今週は朝五時に起こして",
    "ปลุก ฉัน ตอน ตี ห้า สัปดาห์ นี้",
    "أيقظني في الخامسة صباحا هذا الأسبوع",
]


def test_trimmed_e5_small_outputs_are_identical(
    e5_dir: Path, e5_tokenizer: PreTrainedTokenizerBase
) -> None:
    model = BertModel.from_pretrained(e5_dir, add_pooling_layer=False).eval()
    batch = e5_tokenizer(_MASSIVE_LIKE, padding=True, return_tensors="pt")
    with torch.no_grad():
        before = model(**batch).last_hidden_state
    trim = VocabularyTrim.from_token_ids(
        batch["input_ids"],
        special_ids=e5_tokenizer.all_special_ids,
        unk_id=e5_tokenizer.unk_token_id,
    )
    n_before = _n_params(model)
    trim_embeddings(model, trim)
    with torch.no_grad():
        after = model(**{**batch, "input_ids": trim.remap(batch["input_ids"])}).last_hidden_state
    torch.testing.assert_close(before, after, atol=1e-6, rtol=0)
    n_after = _n_params(model)
    print(f"e5-small: {n_before:,} -> {n_after:,} parameters, {len(trim)} embedding rows")
    assert n_before == 117_505_920
    assert n_before - n_after == (250_037 - len(trim)) * 384
