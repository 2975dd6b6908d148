"""Writing utterances as JSONL or CoNLL text."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Literal

from xlcl.data.utterance import Utterance

ExportFormat = Literal["jsonl", "conll"]


def export_lines(utterances: Iterable[Utterance], fmt: ExportFormat) -> Iterator[str]:
    """Lines (without newline) of ``utterances`` in ``fmt``.

    ``jsonl``: one object per utterance with ``id, locale, split, words, tags, intent``.
    ``conll``: ``# id = <id>``, then one ``word<TAB>tag`` line per word, then a blank line.
    """
    for utterance in utterances:
        if fmt == "jsonl":
            record = {
                "id": utterance.id,
                "locale": utterance.locale,
                "split": utterance.split,
                "words": list(utterance.words),
                "tags": list(utterance.tags),
                "intent": utterance.intent,
            }
            yield json.dumps(record, ensure_ascii=False)
        else:
            yield f"# id = {utterance.id}"
            yield from (
                f"{word}\t{tag}" for word, tag in zip(utterance.words, utterance.tags, strict=True)
            )
            yield ""
