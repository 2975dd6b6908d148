"""Progress of a run on the terminal: step, locale, epoch, dev score and time left."""

from __future__ import annotations

import time
from typing import Protocol

from rich.console import Console


class Reporter(Protocol):
    """What the protocol tells the outside world while it runs."""

    def start_step(self, step: int, total: int, locale: str) -> None: ...

    def epoch(self, epoch: int, max_epochs: int, dev_score: float, best: float) -> None: ...

    def evaluated(self, step: int, mean_score: float) -> None: ...

    def message(self, text: str) -> None: ...


class Silent:
    """A reporter that says nothing (tests, library use)."""

    def start_step(self, step: int, total: int, locale: str) -> None:
        return None

    def epoch(self, epoch: int, max_epochs: int, dev_score: float, best: float) -> None:
        return None

    def evaluated(self, step: int, mean_score: float) -> None:
        return None

    def message(self, text: str) -> None:
        return None


class ConsoleReporter:
    """One line per epoch and step; time left is extrapolated from finished steps."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self._started = time.perf_counter()
        self._step = 0
        self._total = 0
        self._locale = ""

    def start_step(self, step: int, total: int, locale: str) -> None:
        self._step, self._total, self._locale = step, total, locale
        self.console.print(
            f"[bold]step {step}/{total}[/] {locale}  elapsed {_clock(self._elapsed())}"
            f"  left {self._left()}"
        )

    def epoch(self, epoch: int, max_epochs: int, dev_score: float, best: float) -> None:
        self.console.print(
            f"  step {self._step}/{self._total} {self._locale} epoch {epoch}/{max_epochs}"
            f"  dev {dev_score:.4f} (best {best:.4f})"
        )

    def evaluated(self, step: int, mean_score: float) -> None:
        self.console.print(
            f"  step {step}: mean test score over scored locales {mean_score:.4f}"
            f"  elapsed {_clock(self._elapsed())}"
        )

    def message(self, text: str) -> None:
        self.console.print(text)

    def _elapsed(self) -> float:
        return time.perf_counter() - self._started

    def _left(self) -> str:
        done = self._step - 1
        if done <= 0:
            return "unknown"
        return _clock(self._elapsed() / done * (self._total - done))


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"
