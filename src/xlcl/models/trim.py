"""Vocabulary trimming: keep only the embedding rows of tokens the run's data uses.

XLM-R's vocabulary has 250K pieces; MASSIVE in a handful of locales uses a few percent of
them. Dropping the other rows of the input embedding leaves every output on that data
unchanged (an embedding lookup reads only the rows of the ids it is given) while removing
most of a small encoder's parameters: multilingual-e5-small's embedding matrix is 96M of
its 118M parameters.

    trim = VocabularyTrim.from_token_ids(all_input_ids, special_ids=tokenizer.all_special_ids)
    trim_embeddings(model, trim)          # model now has len(trim) embedding rows
    batch["input_ids"] = trim.remap(batch["input_ids"])   # old ids -> new ids

New ids follow the order of the old ones, so every kept id ``i`` whose smaller ids are all
kept keeps its number: the special ids at the start of the vocabulary (``<s>``, ``<pad>``,
``</s>``, ``<unk>`` in XLM-R, ``[PAD]`` in BERT) stay put. That matters because XLM-R
derives position ids from the pad id; ``trim_embeddings`` refuses a trim that moves it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from torch import nn
from transformers import PreTrainedModel

from xlcl.atomic import atomic_write_bytes


@dataclass(frozen=True)
class VocabularyTrim:
    """A map from a model's token ids to the ids of a trimmed vocabulary.

    ``kept`` holds the old ids in increasing order; the new id of ``kept[i]`` is ``i``.
    ``unk_id`` (an old id, itself kept) is where ``remap(..., unknown="unk")`` sends ids
    that were not kept; ``None`` when no such fallback was asked for.
    """

    kept: tuple[int, ...]
    unk_id: int | None = None
    _lookup: torch.Tensor = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.kept:
            raise ValueError("a vocabulary trim must keep at least one token")
        if any(b <= a for a, b in zip(self.kept, self.kept[1:], strict=False)) or self.kept[0] < 0:
            raise ValueError("kept ids must be non-negative and strictly increasing")
        lookup = torch.full((self.kept[-1] + 1,), -1, dtype=torch.long)
        lookup[torch.tensor(self.kept)] = torch.arange(len(self.kept))
        object.__setattr__(self, "_lookup", lookup)
        if self.unk_id is not None and self.new_id(self.unk_id) is None:
            raise ValueError(f"unk id {self.unk_id} must be among the kept ids")

    @classmethod
    def from_token_ids(
        cls,
        ids: Iterable[int] | torch.Tensor,
        special_ids: Iterable[int] = (),
        unk_id: int | None = None,
    ) -> VocabularyTrim:
        """Keep the ids that occur in ``ids`` (any shape; negative ids such as the -100 of
        ignored labels are skipped), plus ``special_ids`` and ``unk_id``."""
        seen = torch.as_tensor(ids if isinstance(ids, torch.Tensor) else list(ids))
        seen = seen.reshape(-1).to("cpu", torch.long)
        extra = torch.tensor(
            [*special_ids, *([] if unk_id is None else [unk_id])], dtype=torch.long
        )
        kept = torch.unique(torch.cat([seen[seen >= 0], extra]))  # sorted
        return cls(tuple(kept.tolist()), unk_id)

    def __len__(self) -> int:
        return len(self.kept)

    def new_id(self, old_id: int) -> int | None:
        """The new id of ``old_id``, or ``None`` if it was not kept."""
        if not 0 <= old_id < self._lookup.numel():
            return None
        new = int(self._lookup[old_id])
        return new if new >= 0 else None

    def remap(
        self, input_ids: torch.Tensor, unknown: Literal["error", "unk"] = "error"
    ) -> torch.Tensor:
        """Old ids to new ids, same shape and device.

        An id that was not kept raises ``KeyError`` (``unknown="error"``, the default: the
        trim was built from the data, so a missing id means other data slipped in) or maps
        to the unk token (``unknown="unk"``, needs ``unk_id``).
        """
        lookup = self._lookup.to(input_ids.device)
        in_range = (input_ids >= 0) & (input_ids < lookup.numel())
        new = torch.where(in_range, lookup[input_ids.clamp(0, lookup.numel() - 1)], -1)
        missing = new < 0
        if bool(missing.any()):
            if unknown == "error":
                bad = torch.unique(input_ids[missing])[:10].tolist()
                raise KeyError(f"token ids not in the trimmed vocabulary: {bad}")
            if self.unk_id is None:
                raise ValueError("remap(unknown='unk') needs a trim built with an unk_id")
            new = new.masked_fill(missing, int(self._lookup[self.unk_id]))
        return new

    def restore(self, new_ids: torch.Tensor) -> torch.Tensor:
        """New ids back to the original vocabulary's ids (to decode with the tokenizer)."""
        return torch.tensor(self.kept, device=new_ids.device)[new_ids]

    def save(self, path: Path) -> None:
        """Write the trim as JSON, atomically (a run stores it beside its checkpoints)."""
        text = json.dumps({"kept": list(self.kept), "unk_id": self.unk_id}) + "\n"
        atomic_write_bytes(path, text.encode())

    @classmethod
    def load(cls, path: Path) -> VocabularyTrim:
        """Read a trim written by ``save``."""
        data = json.loads(path.read_text())
        return cls(tuple(data["kept"]), data["unk_id"])


def trim_embeddings(model: PreTrainedModel, trim: VocabularyTrim) -> PreTrainedModel:
    """Replace ``model``'s input embedding by its ``trim.kept`` rows, in place.

    Works for any model exposing ``get_input_embeddings``/``set_input_embeddings`` (BERT,
    XLM-R, ...); ``config.vocab_size`` becomes ``len(trim)``. Models with an output
    embedding (a language-model head) are refused: their output vocabulary would change.
    Returns ``model``.
    """
    if model.get_output_embeddings() is not None:
        raise ValueError(f"{type(model).__name__} has an output embedding; trim an encoder")
    old = model.get_input_embeddings()
    if not isinstance(old, nn.Embedding):
        raise TypeError(f"input embedding is {type(old).__name__}, not nn.Embedding")
    if trim.kept[-1] >= old.num_embeddings:
        raise ValueError(f"trim keeps id {trim.kept[-1]}, the model has {old.num_embeddings}")
    pad = old.padding_idx
    if pad is not None and trim.new_id(pad) != pad:
        raise ValueError(
            f"the trim moves the pad id {pad} to {trim.new_id(pad)}; keep every id up to "
            "the pad id (pass the tokenizer's special ids)"
        )
    rows = torch.tensor(trim.kept, device=old.weight.device)
    new = nn.Embedding(
        len(trim),
        old.embedding_dim,
        padding_idx=pad,
        device=old.weight.device,
        dtype=old.weight.dtype,
    )
    with torch.no_grad():
        new.weight.copy_(old.weight[rows])
    new.weight.requires_grad_(old.weight.requires_grad)
    model.set_input_embeddings(new)
    model.config.vocab_size = len(trim)
    return model
