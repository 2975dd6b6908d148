"""A small MASSIVE-like directory of per-locale JSONL files, written by the tests."""

from __future__ import annotations

import json
from pathlib import Path

TEMPLATES = {
    "en-US": [
        ("wake me up at [time : five am] [date : this week]", "alarm_set"),
        ("play [artist_name : queen] please", "play_music"),
        ("what is the weather in [place_name : paris]", "weather_query"),
        ("remind me to [event_name : call mom] [date : tomorrow]", "calendar_set"),
        ("turn the lights off", "iot_hue_lightoff"),
    ],
    "de-DE": [
        ("weck mich [date : diese woche] um [time : fünf uhr] auf", "alarm_set"),
        ("spiel [artist_name : queen] bitte", "play_music"),
        ("wie ist das wetter in [place_name : paris]", "weather_query"),
        ("erinnere mich [date : morgen] an [event_name : anruf mama]", "calendar_set"),
        ("mach das licht aus", "iot_hue_lightoff"),
    ],
    "ja-JP": [
        ("[date : 今週] は [time : 午前五時] に起こして", "alarm_set"),
        ("[artist_name : queen] をかけて", "play_music"),
        ("[place_name : パリ] の天気は", "weather_query"),
        ("[date : 明日] [event_name : 母に電話] をリマインド", "calendar_set"),
        ("電気を消して", "iot_hue_lightoff"),
    ],
}
SPLIT_SIZES = {"train": 10, "dev": 5, "test": 5}


def plain(annotated: str) -> str:
    """The `utt` of an `annot_utt`: the same words without brackets and slot names."""
    text = annotated
    while "[" in text:
        start = text.index("[")
        colon = text.index(":", start)
        end = text.index("]", colon)
        text = text[:start] + text[colon + 1 : end].strip() + text[end + 1 :]
    return " ".join(text.split())


def write_massive_dir(directory: Path, locales: tuple[str, ...] = tuple(TEMPLATES)) -> Path:
    """Write `<locale>.jsonl` files; ids and partitions are parallel across locales."""
    directory.mkdir(parents=True, exist_ok=True)
    for locale in locales:
        rows = []
        next_id = 0
        for split, size in SPLIT_SIZES.items():
            for index in range(size):
                annotated, intent = TEMPLATES[locale][index % len(TEMPLATES[locale])]
                rows.append(
                    {
                        "id": str(next_id),
                        "locale": locale,
                        "partition": split,
                        "scenario": intent.split("_")[0],
                        "intent": intent,
                        "utt": plain(annotated),
                        "annot_utt": annotated,
                    }
                )
                next_id += 1
        text = "\n".join(json.dumps(row, ensure_ascii=False) for row in rows) + "\n"
        (directory / f"{locale}.jsonl").write_text(text, encoding="utf-8")
    return directory
