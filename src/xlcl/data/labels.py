"""Label vocabularies derived from the data, stored by name in every run."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from xlcl.data.annotation import OUTSIDE
from xlcl.data.massive import MassiveData
from xlcl.data.utterance import SPLITS, Utterance


def slot_label_names(data: MassiveData | Iterable[Utterance]) -> list[str]:
    """BIO labels: ``O`` first, then ``B-<type>``, ``I-<type>`` for each slot type, sorted.

    Every slot type seen gets both its B- and I- label (MASSIVE: 55 types, 111 labels).
    """
    types = sorted(
        {tag[2:] for utterance in _iterate(data) for tag in utterance.tags if tag != OUTSIDE}
    )
    return [OUTSIDE] + [f"{prefix}-{slot}" for slot in types for prefix in ("B", "I")]


def intent_names(data: MassiveData | Iterable[Utterance]) -> list[str]:
    """The intents seen, sorted (MASSIVE: 60)."""
    return sorted({utterance.intent for utterance in _iterate(data)})


def _iterate(data: MassiveData | Iterable[Utterance]) -> Iterator[Utterance]:
    if not isinstance(data, MassiveData):
        yield from data
        return
    for locale in data.locales:
        for split in SPLITS:
            yield from data.utterances(locale, split)
