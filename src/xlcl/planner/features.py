"""What the interference model knows about a (receiver, donor) pair of locales.

Three kinds of feature, all computed without a network:

- facts (`xlcl.data.LOCALES`): same script, CJK receiver / donor, same family, same genus,
  both locales' Joshi resource class;
- URIEL typological distances (genetic, syntactic, featural, phonological, inventory,
  geographic), read from the data files that the ``urielplus`` package ships
  (``pip install 'xlcl[plan]'``), never downloaded;
- optionally, the subword overlap of the two locales' MASSIVE train sets under a run's
  tokenizer (`subword_overlap`), computed once and passed in as an `OverlapTable`.

The positional features (hop distance, step position) are added per cell by the model.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

import numpy as np

from xlcl.data.locales import LOCALES, LocaleFacts

DISTANCE_KINDS = ("genetic", "syntactic", "featural", "phonological", "inventory", "geographic")
CJK_SCRIPTS = frozenset({"Hans", "Hant", "Jpan", "Hang"})  # Chinese, Japanese, Korean
FACT_FEATURES = (
    "same_script",
    "receiver_cjk",
    "donor_cjk",
    "same_family",
    "same_genus",
    "receiver_resource",
    "donor_resource",
)
OVERLAP_FEATURE = "subword_overlap"

# ISO 639-3 code of each MASSIVE locale's language in URIEL. Macrolanguages are mapped to the
# individual language MASSIVE's speakers write (Standard Arabic, Iranian Persian, Standard
# Malay, Halh Mongolian, Tosk Albanian, Swahili proper); both Chinese locales are Mandarin,
# so their typological distance is 0 (script tells them apart).
URIEL_CODES: Mapping[str, str] = {
    "af-ZA": "afr", "am-ET": "amh", "ar-SA": "arb", "az-AZ": "aze", "bn-BD": "ben",
    "ca-ES": "cat", "cy-GB": "cym", "da-DK": "dan", "de-DE": "deu", "el-GR": "ell",
    "en-US": "eng", "es-ES": "spa", "fa-IR": "pes", "fi-FI": "fin", "fr-FR": "fra",
    "he-IL": "heb", "hi-IN": "hin", "hu-HU": "hun", "hy-AM": "hye", "id-ID": "ind",
    "is-IS": "isl", "it-IT": "ita", "ja-JP": "jpn", "jv-ID": "jav", "ka-GE": "kat",
    "km-KH": "khm", "kn-IN": "kan", "ko-KR": "kor", "lv-LV": "lav", "ml-IN": "mal",
    "mn-MN": "khk", "ms-MY": "zsm", "my-MM": "mya", "nb-NO": "nob", "nl-NL": "nld",
    "pl-PL": "pol", "pt-PT": "por", "ro-RO": "ron", "ru-RU": "rus", "sl-SL": "slv",
    "sq-AL": "als", "sv-SE": "swe", "sw-KE": "swh", "ta-IN": "tam", "te-IN": "tel",
    "th-TH": "tha", "tl-PH": "tgl", "tr-TR": "tur", "ur-PK": "urd", "vi-VN": "vie",
    "zh-CN": "cmn", "zh-TW": "cmn",
}  # fmt: skip

# URIEL's files and which of their features each distance compares (urielplus 1.3.2's
# ``new_distance``: genetic = family-tree membership, geographic = distance to 299 points,
# featural = every typological feature, the rest by feature-name prefix).
_URIEL_FILES = {"genetic": "family_features.npz", "geographic": "geocoord_features.npz"}
_TYPOLOGY_FILE = "features.npz"
_PREFIXES = {"syntactic": "S_", "phonological": "P_", "inventory": "INV_", "featural": ""}


class PlannerError(ValueError):
    """Input the planner cannot use: unknown locales, too few runs, a mismatched model."""


@dataclass(frozen=True)
class DistanceTable:
    """URIEL distances between locales, ``distances[kind][a][b]`` in [0, 1].

    ``imputed`` lists ``(kind, a, b)`` for the pairs URIEL could not compare (no shared
    features), which hold the mean of that kind's other pairs instead.
    """

    locales: tuple[str, ...]
    distances: Mapping[str, np.ndarray]
    imputed: tuple[tuple[str, str, str], ...] = ()

    def distance(self, kind: str, a: str, b: str) -> float:
        """The ``kind`` distance between locales ``a`` and ``b``."""
        index = {loc: i for i, loc in enumerate(self.locales)}
        return float(self.distances[kind][index[a], index[b]])

    def imputation_note(self) -> str:
        """One line naming, per kind, the locales without data and the pairs imputed."""
        parts = []
        for kind in DISTANCE_KINDS:
            pairs = [(a, b) for k, a, b in self.imputed if k == kind]
            if not pairs:
                continue
            others = set(self.locales)
            # A locale with no data of a kind misses its pair with every other locale.
            blank = sorted(
                loc
                for loc in self.locales
                if sum(loc in pair for pair in pairs) == len(others) - 1 and len(others) > 2
            )
            rest = [f"{a}/{b}" for a, b in pairs if a not in blank and b not in blank]
            named = ", ".join(blank + rest)
            parts.append(f"{kind} ({named})")
        return (
            "URIEL has no data to compare, so the mean distance of the other pairs is "
            f"imputed, for: {'; '.join(parts)}"
        )


def uriel_distances(locales: Sequence[str]) -> DistanceTable:
    """The six URIEL distances between ``locales``, from the files urielplus ships.

    The angular distance of urielplus (its default union aggregation: a feature's value is
    the maximum over its sources), over the features both languages have: the same numbers
    as ``URIELPlus().new_distance(kind, a, b)``, computed for all pairs at once. A pair with
    no shared feature gets its kind's mean over the other pairs (0.5, the middle of the
    range, when no pair has one) and a warning naming it.
    """
    for locale in locales:
        if locale not in URIEL_CODES:
            raise PlannerError(f"locale {locale!r} has no URIEL language code")
    codes = [URIEL_CODES[locale] for locale in locales]
    values = {kind: _uriel_vectors(kind, tuple(sorted(set(codes)))) for kind in DISTANCE_KINDS}
    tables: dict[str, np.ndarray] = {}
    imputed: list[tuple[str, str, str]] = []
    for kind, (known_codes, vectors) in values.items():
        rows = vectors[[known_codes.index(code) for code in codes]]
        table = _angular_distances(rows)
        missing = [
            (kind, locales[a], locales[b])
            for a, b in itertools.combinations(range(len(locales)), 2)
            if np.isnan(table[a, b])
        ]
        if missing:
            known = table[~np.isnan(table) & ~np.eye(len(locales), dtype=bool)]
            table = np.where(np.isnan(table), float(known.mean()) if known.size else 0.5, table)
            imputed.extend(missing)
        tables[kind] = table
    result = DistanceTable(tuple(locales), tables, tuple(imputed))
    if imputed:
        warnings.warn(result.imputation_note(), stacklevel=2)
    return result


def _uriel_vectors(kind: str, codes: tuple[str, ...]) -> tuple[list[str], np.ndarray]:
    """(codes, values): each language's values of the ``kind`` features, NaN where unknown."""
    feats, rows = _uriel_rows(_URIEL_FILES.get(kind, _TYPOLOGY_FILE), codes)
    prefix = _PREFIXES.get(kind, "")
    chosen = rows[:, np.array([str(name).startswith(prefix) for name in feats]), :]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN features: no value
        return list(codes), np.nanmax(chosen, axis=2)


@cache
def _uriel_rows(filename: str, codes: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(feature names, values[language, feature, source]) of one URIEL file, NaN = unknown."""
    try:
        package = resources.files("urielplus.database.original_uriel")
    except ModuleNotFoundError:
        raise PlannerError(
            "the typological features need the urielplus package: pip install 'xlcl[plan]'"
        ) from None
    with np.load(str(package.joinpath(filename))) as archive:
        langs, feats, data = archive["langs"].tolist(), archive["feats"], archive["data"]
    where = {code: i for i, code in enumerate(langs)}
    missing = [code for code in codes if code not in where]
    if missing:
        raise PlannerError(f"URIEL has no language {', '.join(missing)}")
    rows = np.asarray(data[[where[code] for code in codes]], dtype=float)
    rows[(rows == -1.0) | ~np.isfinite(rows)] = np.nan
    return feats, rows


def _angular_distances(vectors: np.ndarray) -> np.ndarray:
    """2·arccos(cos θ)/π over the features known for both rows; NaN where none is shared."""
    n = vectors.shape[0]
    out = np.zeros((n, n))
    known = ~np.isnan(vectors)
    filled = np.nan_to_num(vectors)
    for a, b in itertools.combinations(range(n), 2):
        shared = known[a] & known[b]
        if not shared.any():
            out[a, b] = out[b, a] = np.nan
            continue
        u, v = filled[a, shared], filled[b, shared]
        u = u if np.linalg.norm(u) else np.full(u.shape, 1e-10)  # urielplus's zero vector
        v = v if np.linalg.norm(v) else np.full(v.shape, 1e-10)
        cos = float(np.clip(u @ v / (np.linalg.norm(u) * np.linalg.norm(v)), -1.0, 1.0))
        out[a, b] = out[b, a] = 2 * math.acos(cos) / math.pi
    return out


@dataclass(frozen=True)
class OverlapTable:
    """Subword overlap (Jaccard of the two train sets' subword types) of locale pairs."""

    tokenizer: str
    overlap: Mapping[frozenset[str], float] = field(default_factory=dict)

    def of(self, a: str, b: str) -> float:
        """The overlap of ``a`` and ``b``; a `PlannerError` naming the pair when unknown."""
        key = frozenset((a, b))
        if key not in self.overlap:
            raise PlannerError(
                f"the subword overlap table ({self.tokenizer}) lacks the pair {a}/{b}"
            )
        return self.overlap[key]

    def to_json(self) -> dict[str, object]:
        """``{"tokenizer": ..., "pairs": [[a, b, overlap], ...]}``, pairs sorted."""
        pairs = sorted([*sorted(pair), value] for pair, value in self.overlap.items())
        return {"tokenizer": self.tokenizer, "pairs": pairs}

    @classmethod
    def from_json(cls, document: Mapping[str, object]) -> OverlapTable:
        """The table `to_json` wrote."""
        pairs = document.get("pairs")
        if not isinstance(pairs, list):
            raise PlannerError("an overlap table needs 'pairs': [[a, b, overlap], ...]")
        table = {frozenset((str(a), str(b))): float(value) for a, b, value in pairs}
        return cls(str(document.get("tokenizer", "unknown")), table)


def subword_overlap(
    texts: Mapping[str, Iterable[str]], tokenize: Callable[[str], Sequence[str]], tokenizer: str
) -> OverlapTable:
    """Jaccard overlap |V_a ∩ V_b| / |V_a ∪ V_b| of the subword types of each pair's texts.

    ``texts`` maps a locale to its train utterances; ``tokenize`` is the run's tokenizer
    (``AutoTokenizer.from_pretrained(name).tokenize``). Shared subwords are where the two
    locales' gradients meet in the embedding matrix.
    """
    vocab = {
        locale: {piece for text in lines for piece in tokenize(text)}
        for locale, lines in texts.items()
    }
    table = {}
    for a, b in itertools.combinations(sorted(vocab), 2):
        union = vocab[a] | vocab[b]
        table[frozenset((a, b))] = len(vocab[a] & vocab[b]) / len(union) if union else 0.0
    return OverlapTable(tokenizer, table)


def feature_names(with_overlap: bool) -> tuple[str, ...]:
    """The pair features, in column order: facts, URIEL distances, then the overlap."""
    return FACT_FEATURES + DISTANCE_KINDS + ((OVERLAP_FEATURE,) if with_overlap else ())


def pair_features(
    locales: Sequence[str], distances: DistanceTable, overlap: OverlapTable | None = None
) -> np.ndarray:
    """``out[a, b]``: the features of receiver ``locales[a]`` and donor ``locales[b]``.

    Shape (n, n, len(feature_names(overlap is not None))); the diagonal is never used.
    """
    facts = [LOCALES[locale] for locale in locales]
    n = len(locales)
    names = feature_names(overlap is not None)
    out = np.zeros((n, n, len(names)))
    for a, b in itertools.product(range(n), repeat=2):
        values = _fact_values(facts[a], facts[b])
        values += [distances.distance(kind, locales[a], locales[b]) for kind in DISTANCE_KINDS]
        if overlap is not None:
            values.append(overlap.of(locales[a], locales[b]) if a != b else 1.0)
        out[a, b] = values
    return out


def _fact_values(receiver: LocaleFacts, donor: LocaleFacts) -> list[float]:
    """The `FACT_FEATURES` of a pair; the resource class scaled to [0, 1] (Joshi 0-5)."""
    return [
        float(receiver.script == donor.script),
        float(receiver.script in CJK_SCRIPTS),
        float(donor.script in CJK_SCRIPTS),
        float(receiver.family == donor.family),
        float(receiver.genus == donor.genus),
        receiver.joshi_class / 5,
        donor.joshi_class / 5,
    ]
