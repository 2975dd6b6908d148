"""The 52 MASSIVE locales and what is known about their languages.

Sources (see docs/data.md): script per ISO 15924; family and genus per Glottolog top-level
families (Ethnologue's Niger-Congo for Swahili) and WALS genera; ``joshi_class`` from Joshi et
al. 2020, "The State and Fate of Linguistic Diversity and Inclusion in the NLP World" (ACL),
taxonomy file ``lang2tax.txt``; ``xlmr_data_gib`` from Conneau et al. 2020, "Unsupervised
Cross-lingual Representation Learning at Scale" (ACL), Table 6 (CC-100 GiB per language).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from xlcl.data.errors import DataError

Vitality = Literal["low", "mid", "high"]


def vitality(joshi_class: int) -> Vitality:
    """Vitality group of a Joshi et al. (2020) resource class: 0-2 low, 3 mid, 4-5 high.

    Classes 0-2 have (almost) no labelled data, class 3 ("rising stars") has some, classes
    4-5 ("underdogs", "winners") are well resourced; the paper's Table 1 groups by such a proxy.
    """
    if not 0 <= joshi_class <= 5:
        raise ValueError(f"Joshi class must be 0-5, got {joshi_class}")
    if joshi_class <= 2:
        return "low"
    return "mid" if joshi_class == 3 else "high"


@dataclass(frozen=True)
class LocaleFacts:
    """Facts about one MASSIVE locale's language."""

    locale: str
    name: str
    script: str
    family: str
    genus: str
    joshi_class: int
    xlmr_data_gib: float

    @property
    def latin(self) -> bool:
        """Whether the locale is written in Latin script."""
        return self.script == "Latn"

    @property
    def vitality(self) -> Vitality:
        """Vitality group derived from `joshi_class` (see `vitality`)."""
        return vitality(self.joshi_class)


_IE = "Indo-European"
_AN = "Austronesian"
# locale, English name, ISO 15924 script, family, genus, Joshi class, XLM-R CC-100 GiB
_TABLE: tuple[tuple[str, str, str, str, str, int, float], ...] = (
    ("af-ZA", "Afrikaans", "Latn", _IE, "Germanic", 3, 1.3),
    ("am-ET", "Amharic", "Ethi", "Afro-Asiatic", "Semitic", 2, 0.8),
    ("ar-SA", "Arabic", "Arab", "Afro-Asiatic", "Semitic", 5, 28.0),
    ("az-AZ", "Azerbaijani", "Latn", "Turkic", "Oghuz", 1, 6.5),
    ("bn-BD", "Bengali", "Beng", _IE, "Indo-Aryan", 3, 8.4),
    ("ca-ES", "Catalan", "Latn", _IE, "Romance", 4, 10.1),
    ("cy-GB", "Welsh", "Latn", _IE, "Celtic", 1, 0.8),
    ("da-DK", "Danish", "Latn", _IE, "Germanic", 3, 45.6),
    ("de-DE", "German", "Latn", _IE, "Germanic", 5, 66.6),
    ("el-GR", "Greek", "Grek", _IE, "Greek", 3, 46.9),
    ("en-US", "English", "Latn", _IE, "Germanic", 5, 300.8),
    ("es-ES", "Spanish", "Latn", _IE, "Romance", 5, 53.3),
    ("fa-IR", "Persian", "Arab", _IE, "Iranian", 4, 111.6),
    ("fi-FI", "Finnish", "Latn", "Uralic", "Finnic", 4, 54.3),
    ("fr-FR", "French", "Latn", _IE, "Romance", 5, 56.8),
    ("he-IL", "Hebrew", "Hebr", "Afro-Asiatic", "Semitic", 3, 31.6),
    ("hi-IN", "Hindi", "Deva", _IE, "Indo-Aryan", 4, 20.2),
    ("hu-HU", "Hungarian", "Latn", "Uralic", "Ugric", 4, 58.4),
    ("hy-AM", "Armenian", "Armn", _IE, "Armenian", 1, 5.5),
    ("id-ID", "Indonesian", "Latn", _AN, "Malayo-Polynesian", 3, 148.3),
    ("is-IS", "Icelandic", "Latn", _IE, "Germanic", 2, 3.2),
    ("it-IT", "Italian", "Latn", _IE, "Romance", 4, 30.2),
    ("ja-JP", "Japanese", "Jpan", "Japonic", "Japanese", 5, 69.3),
    ("jv-ID", "Javanese", "Latn", _AN, "Malayo-Polynesian", 1, 0.2),
    ("ka-GE", "Georgian", "Geor", "Kartvelian", "Kartvelian", 3, 9.1),
    ("km-KH", "Khmer", "Khmr", "Austroasiatic", "Khmer", 1, 1.5),
    ("kn-IN", "Kannada", "Knda", "Dravidian", "South Dravidian", 1, 3.3),
    ("ko-KR", "Korean", "Hang", "Koreanic", "Korean", 4, 54.2),
    ("lv-LV", "Latvian", "Latn", _IE, "Baltic", 3, 8.8),
    ("ml-IN", "Malayalam", "Mlym", "Dravidian", "South Dravidian", 1, 7.6),
    ("mn-MN", "Mongolian", "Cyrl", "Mongolic", "Mongolic", 1, 3.0),
    ("ms-MY", "Malay", "Latn", _AN, "Malayo-Polynesian", 3, 8.5),
    ("my-MM", "Burmese", "Mymr", "Sino-Tibetan", "Burmese-Lolo", 1, 0.9),
    ("nb-NO", "Norwegian Bokmål", "Latn", _IE, "Germanic", 1, 49.0),
    ("nl-NL", "Dutch", "Latn", _IE, "Germanic", 4, 29.3),
    ("pl-PL", "Polish", "Latn", _IE, "Slavic", 4, 44.6),
    ("pt-PT", "Portuguese", "Latn", _IE, "Romance", 4, 49.1),
    ("ro-RO", "Romanian", "Latn", _IE, "Romance", 3, 61.4),
    ("ru-RU", "Russian", "Cyrl", _IE, "Slavic", 4, 278.0),
    ("sl-SL", "Slovenian", "Latn", _IE, "Slavic", 3, 10.3),
    ("sq-AL", "Albanian", "Latn", _IE, "Albanian", 1, 5.4),
    ("sv-SE", "Swedish", "Latn", _IE, "Germanic", 4, 12.1),
    ("sw-KE", "Swahili", "Latn", "Niger-Congo", "Bantu", 2, 1.6),
    ("ta-IN", "Tamil", "Taml", "Dravidian", "South Dravidian", 3, 12.2),
    ("te-IN", "Telugu", "Telu", "Dravidian", "South-Central Dravidian", 1, 4.7),
    ("th-TH", "Thai", "Thai", "Tai-Kadai", "Tai", 3, 71.7),
    ("tl-PH", "Tagalog", "Latn", _AN, "Malayo-Polynesian", 3, 3.1),
    ("tr-TR", "Turkish", "Latn", "Turkic", "Oghuz", 4, 20.9),
    ("ur-PK", "Urdu", "Arab", _IE, "Indo-Aryan", 3, 5.7),
    ("vi-VN", "Vietnamese", "Latn", "Austroasiatic", "Vietic", 4, 137.3),
    ("zh-CN", "Chinese (Simplified)", "Hans", "Sino-Tibetan", "Sinitic", 5, 46.9),
    ("zh-TW", "Chinese (Traditional)", "Hant", "Sino-Tibetan", "Sinitic", 5, 16.6),
)

LOCALES: Mapping[str, LocaleFacts] = MappingProxyType({row[0]: LocaleFacts(*row) for row in _TABLE})


def require_locales(locales: Iterable[str]) -> tuple[str, ...]:
    """``locales`` as a tuple after checking each is a MASSIVE locale and none repeats.

    Raises `DataError` with a did-you-mean suggestion for an unknown name.
    """
    checked = tuple(locales)
    for locale in checked:
        if locale not in LOCALES:
            by_lower = {known.lower(): known for known in LOCALES}
            matches = difflib.get_close_matches(locale.lower(), by_lower, n=3, cutoff=0.5)
            close = [by_lower[match] for match in matches]
            hint = f"; did you mean {' or '.join(close)}?" if close else ""
            raise DataError(f"unknown locale {locale!r}{hint} (MASSIVE has {len(LOCALES)})")
    repeated = sorted({locale for locale in checked if checked.count(locale) > 1})
    if repeated:
        raise DataError(f"locale(s) listed more than once: {', '.join(repeated)}")
    return checked
