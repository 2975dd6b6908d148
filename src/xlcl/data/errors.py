"""The one exception of the data layer and the record of a skipped row."""

from __future__ import annotations

from dataclasses import dataclass

EXCERPT_CHARS = 60


def excerpt(value: object) -> str:
    """``repr(value)`` cut to `EXCERPT_CHARS` characters, so a huge field keeps a message short."""
    text = repr(value)
    if len(text) <= EXCERPT_CHARS:
        return text
    return f"{text[: EXCERPT_CHARS - 3]}... ({len(text)} chars)"


@dataclass(frozen=True)
class InvalidRow:
    """A row that failed validation and was skipped (``load_massive(..., skip_invalid=True)``)."""

    file: str
    line: int
    id: str | None
    problem: str

    def __str__(self) -> str:
        return str(DataError.from_row(self))


class DataError(ValueError):
    """Invalid MASSIVE input: names the file, line and row id where known, and the problem."""

    def __init__(
        self,
        problem: str,
        *,
        file: str | None = None,
        line: int | None = None,
        id: str | None = None,
    ) -> None:
        self.problem = problem
        self.file = file
        self.line = line
        self.id = id
        super().__init__(self._message())

    @classmethod
    def from_row(cls, row: InvalidRow) -> DataError:
        """The error that reports ``row``."""
        return cls(row.problem, file=row.file, line=row.line, id=row.id)

    def _message(self) -> str:
        where = self.file or ""
        if self.line is not None:
            where += f":{self.line}"
        if self.id is not None:
            where += f" id={self.id}"
        return f"{where}: {self.problem}" if where else self.problem
