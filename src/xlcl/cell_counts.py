"""What each test utterance adds to a score cell, and ``utterances.npz``, the file keeping it.

A cell's score is a function of sums over its test utterances: span F1 of the true
positives, false positives and false negatives (seqeval's default mode, micro over
spans), accuracy of the utterances predicted right. Keeping each utterance's counts lets
`xlcl.metrics.bootstrap` draw the test utterances again and recompute every cell.

    counts = UtteranceCounts.spans(tp=[1, 0], fp=[0, 1], fn=[0, 1])
    counts.score()  # 2·1 / (2·1 + 1 + 1) = 0.5

``utterances.npz`` (``docs/run-directory.md``) is a zip of ``.npy`` arrays, written
deterministically (fixed member order and timestamps), so equal counts give equal bytes:
``kind`` (``spans`` or ``correct``), ``locales`` (eval locales, in order of first
appearance) and, for the ``i``-th locale, ``i.steps`` (the steps of its cells with counts),
``i.gold`` (gold spans per utterance, the same in every cell: one test set) with
``i.errors`` (utterances × steps × [false positives, false negatives]), or ``i.correct``
(utterances × steps, 0 or 1). True positives are ``gold − false negatives``. Each array has
the smallest unsigned integer type that holds it. Utterance-major arrays put an utterance's
cells side by side, where they mostly repeat, which is what makes the file small.
"""

from __future__ import annotations

import io
import math
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from xlcl.atomic import atomic_write

UTTERANCES = "utterances.npz"
SPANS = "spans"  # columns tp, fp, fn: span F1
CORRECT = "correct"  # column correct (0 or 1): accuracy
COLUMNS = {SPANS: ("tp", "fp", "fn"), CORRECT: ("correct",)}
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # every member's timestamp: the bytes depend on the counts only
_LEVEL = 6  # deflate level: level 9 is ten times slower for 5 % less

IntArray = npt.NDArray[np.int64]


class CountsFileError(ValueError):
    """A per-utterance counts file that cannot be read (missing member, truncated, invalid)."""


@dataclass(frozen=True, eq=False)
class UtteranceCounts:
    """One cell's counts, a row per test utterance: ``columns`` of `kind` (tp, fp, fn; or
    correct). Summed over utterances they give the cell's score (`score`)."""

    kind: str
    counts: IntArray  # (utterances, len(columns))

    def __post_init__(self) -> None:
        if self.kind not in COLUMNS:
            raise ValueError(f"unknown kind of counts {self.kind!r}; expected {sorted(COLUMNS)}")
        counts = np.asarray(self.counts)
        if counts.ndim != 2 or counts.shape[1] != len(COLUMNS[self.kind]):
            raise ValueError(f"{self.kind} counts need shape (utterances, {len(self.columns)})")
        if counts.size and (not np.issubdtype(counts.dtype, np.integer) or counts.min() < 0):
            raise ValueError("counts must be integers >= 0")
        if self.kind == CORRECT and counts.size and counts.max() > 1:
            raise ValueError("correct counts are 0 or 1")
        counts = counts.astype(np.int64)
        counts.setflags(write=False)
        object.__setattr__(self, "counts", counts)

    @classmethod
    def spans(cls, tp: npt.ArrayLike, fp: npt.ArrayLike, fn: npt.ArrayLike) -> UtteranceCounts:
        """Span counts: true positives, false positives, false negatives per utterance."""
        return cls(SPANS, np.stack([np.asarray(a, dtype=np.int64) for a in (tp, fp, fn)], 1))

    @classmethod
    def correct(cls, flags: npt.ArrayLike) -> UtteranceCounts:
        """Accuracy counts: whether each utterance is predicted right."""
        return cls(CORRECT, np.asarray(flags).astype(np.int64).reshape(-1, 1))

    @property
    def columns(self) -> tuple[str, ...]:
        """``("tp", "fp", "fn")`` or ``("correct",)``."""
        return COLUMNS[self.kind]

    @property
    def n_utterances(self) -> int:
        """Test utterances of the cell."""
        return int(self.counts.shape[0])

    def totals(self) -> dict[str, int]:
        """Each column summed over the utterances."""
        return {c: int(v) for c, v in zip(self.columns, self.counts.sum(0), strict=True)}

    def score(self) -> float:
        """The cell's score from its sums (`scores_from_sums`)."""
        sums = self.counts.sum(0).astype(float)
        return float(scores_from_sums(self.kind, sums, self.n_utterances))


def scores_from_sums(kind: str, sums: np.ndarray, n_utterances: int) -> np.ndarray:
    """Scores from counts summed over (possibly resampled) utterances, last axis = columns.

    Span F1 = 2·tp / (2·tp + fp + fn), 0 where nothing is gold or predicted (seqeval's
    default-mode micro F1); accuracy = Σ correct / n_utterances.
    """
    if kind == SPANS:
        tp, fp, fn = sums[..., 0], sums[..., 1], sums[..., 2]
        denominator = 2 * tp + fp + fn
        return np.divide(2 * tp, denominator, out=np.zeros_like(denominator), where=denominator > 0)
    if kind == CORRECT:
        return sums[..., 0] / n_utterances if n_utterances else np.zeros_like(sums[..., 0])
    raise ValueError(f"unknown kind of counts {kind!r}")


def agrees(counts: UtteranceCounts, score: float) -> bool:
    """Whether `counts` give `score` (to 1e-9: seqeval computes F1 as 2·P·R / (P + R))."""
    return math.isclose(counts.score(), score, rel_tol=1e-9, abs_tol=1e-12)


@dataclass(frozen=True, eq=False)
class LocaleCounts:
    """The cells of one eval locale: ``counts[u, s, c]`` is column c of utterance u in the
    cell of ``steps[s]``."""

    steps: IntArray  # (cells,), increasing
    counts: IntArray  # (utterances, cells, columns)

    def cell(self, step: int, kind: str) -> UtteranceCounts | None:
        """The counts of the cell of `step`, None where it has none."""
        found = np.flatnonzero(self.steps == step)
        return UtteranceCounts(kind, self.counts[:, found[0]]) if found.size else None


@dataclass(frozen=True, eq=False)
class CellCounts:
    """A run's per-utterance counts: one `LocaleCounts` per eval locale, all of one kind."""

    kind: str
    locales: Mapping[str, LocaleCounts]

    @classmethod
    def from_cells(cls, cells: Iterable[tuple[int, str, UtteranceCounts]]) -> CellCounts:
        """Group ``(step, eval_locale, counts)`` cells by locale (first appearance order)."""
        by_locale: dict[str, dict[int, UtteranceCounts]] = {}
        kinds = set()
        for step, locale, counts in cells:
            by_locale.setdefault(locale, {})[step] = counts
            kinds.add(counts.kind)
        if len(kinds) > 1:
            raise ValueError(f"cells with counts of different kinds: {sorted(kinds)}")
        if not kinds:
            raise ValueError("no cell to keep counts of")
        kind = kinds.pop()
        locales = {}
        for locale, steps in by_locale.items():
            sizes = {c.n_utterances for c in steps.values()}
            if len(sizes) > 1:
                raise ValueError(f"{locale}: cells of different test sets, sizes {sorted(sizes)}")
            order = sorted(steps)
            stacked = np.stack([steps[s].counts for s in order], axis=1)
            locales[locale] = LocaleCounts(np.array(order, dtype=np.int64), stacked)
        return cls(kind, locales)

    def cells(self) -> Iterable[tuple[int, str, UtteranceCounts]]:
        """Every ``(step, eval_locale, counts)``, locale by locale, steps increasing."""
        for locale, found in self.locales.items():
            for index, step in enumerate(found.steps):
                yield int(step), locale, UtteranceCounts(self.kind, found.counts[:, index])

    def up_to(self, last_step: int) -> CellCounts:
        """The cells of steps ≤ `last_step` (what a run resumed after that step keeps)."""
        kept = {}
        for locale, found in self.locales.items():
            keep = found.steps <= last_step
            if keep.any():
                kept[locale] = LocaleCounts(found.steps[keep], found.counts[:, keep])
        return CellCounts(self.kind, kept)


def write_cell_counts(path: Path, counts: CellCounts) -> None:
    """Replace `path` atomically with `counts` in the ``utterances.npz`` format."""
    arrays: dict[str, np.ndarray] = {
        "kind": np.array(counts.kind),
        "locales": np.array(list(counts.locales), dtype=str),
    }
    for index, found in enumerate(counts.locales.values()):
        arrays[f"{index}.steps"] = _smallest(found.steps)
        if counts.kind == SPANS:
            tp, fp, fn = (found.counts[..., c] for c in range(3))
            gold = tp + fn
            if (gold != gold[:, :1]).any():
                locale = list(counts.locales)[index]
                raise ValueError(f"{locale}: gold spans differ between cells of one test set")
            arrays[f"{index}.gold"] = _smallest(gold[:, 0])
            arrays[f"{index}.errors"] = _smallest(np.stack([fp, fn], axis=-1))
        else:
            arrays[f"{index}.correct"] = _smallest(found.counts[..., 0])
    atomic_write(path, lambda temporary: _write_zip(temporary, arrays))


def read_cell_counts(path: Path) -> CellCounts:
    """The counts of an ``utterances.npz``; `CountsFileError` naming `path` if unreadable."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            kind = str(archive["kind"])
            if kind not in COLUMNS:
                raise ValueError(f"unknown kind {kind!r}")
            locales = {}
            for index, locale in enumerate(archive["locales"].tolist()):
                steps = archive[f"{index}.steps"].astype(np.int64)
                if kind == SPANS:
                    gold = archive[f"{index}.gold"].astype(np.int64)
                    errors = archive[f"{index}.errors"].astype(np.int64)
                    fp, fn = errors[..., 0], errors[..., 1]
                    counts = np.stack([gold[:, None] - fn, fp, fn], axis=-1)
                else:
                    counts = archive[f"{index}.correct"].astype(np.int64)[..., None]
                if counts.shape[1] != steps.size or (counts < 0).any():
                    raise ValueError(f"inconsistent arrays of locale {locale}")
                locales[str(locale)] = LocaleCounts(steps, counts)
    except (OSError, ValueError, KeyError, IndexError, EOFError, zipfile.BadZipFile) as err:
        raise CountsFileError(f"{path}: unreadable per-utterance counts ({err})") from err
    return CellCounts(kind, locales)


def _smallest(values: np.ndarray) -> np.ndarray:
    """`values` in the smallest unsigned integer type that holds them."""
    top = int(values.max()) if values.size else 0
    for dtype in (np.uint8, np.uint16, np.uint32):
        if top <= np.iinfo(dtype).max:
            return values.astype(dtype)
    return values.astype(np.uint64)


def _write_zip(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        for name, array in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.asarray(array, order="C"), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_TIME)
            archive.writestr(
                info, buffer.getvalue(), compress_type=zipfile.ZIP_DEFLATED, compresslevel=_LEVEL
            )
