"""Schedules: how a run presents its locales to the model(s), and the shape that follows.

A schedule fixes the rows of the score matrix, which locale each step trains, which row's
model scores a locale, how many parameter sets the run ends with and how much data a step
sees. It is about shape and cost only: running a schedule is the engine's business. A
method (``xlcl.methods``) pairs a schedule with the parameters that train, and nothing
outside ``xlcl.methods`` needs a method's name: ask its schedule.

```python
from xlcl.schedules import schedule
schedule("joint").rows(52)  # 2: before training, after the one joint step
```

Pure Python (no numpy, pandas or torch), so that ``xlcl.metrics`` can ask it too.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

JOINT_LOCALE = "joint"  # trained_locale of the joint step (scores.parquet, adapters/joint)


@dataclass(frozen=True)
class Schedule:
    """How the locales of a run reach the model(s). One subclass per schedule.

    Steps are numbered as score-matrix rows: 0 is before any training, ``1..steps`` after
    each training step. Positions in the order are 1-based, as in the paper's formulas.
    """

    name: ClassVar[str]
    order_dependent: ClassVar[bool] = False
    """Whether results depend on the order: one model sees the locales in turn, so transfer
    between them (CBT, CFT, forgetting, MFT, MBT) exists."""

    def training_steps(self, n_locales: int) -> int:
        """Training steps of a run over ``n_locales`` locales: one per locale."""
        return n_locales

    def rows(self, n_locales: int) -> int:
        """Rows of the score matrix: step 0 (before training), then one per training step."""
        return self.training_steps(n_locales) + 1

    def trained_locale(self, step: int, order: Sequence[str]) -> str | None:
        """What step ``step`` trains (``trained_locale``): ``order[step - 1]``; None at 0."""
        self._check_step(step, len(order))
        return None if step == 0 else order[step - 1]

    def models(self, n_locales: int) -> int:
        """Parameter sets the run ends with (the multiplicity of Table 1's Params): one."""
        return 1

    def locales_per_step(self, n_locales: int) -> int:
        """Locales whose training data one training step sees: one."""
        return 1

    def scored_per_step(self, n_locales: int, all_models: bool = False) -> int:
        """Locales scored after each training step: every locale of the order.

        ``all_models`` is the config's ``evaluate.all_models`` (see `Independent`).
        """
        return n_locales

    def scoring_step(self, position: int, learned: int) -> int:
        """The row whose model scores the locale at ``position`` once the first ``learned``
        locales of the order are trained: the latest model, row ``learned``."""
        return learned

    def starting_step(self, step: int) -> int:
        """The row of the model that training step ``step`` starts from: the one before."""
        return step - 1

    def _check_step(self, step: int, n_locales: int) -> None:
        last = self.training_steps(n_locales)
        if not 0 <= step <= last:
            raise ValueError(
                f"step {step} outside 0..{last} of a {self.name} run over {n_locales} locales"
            )


@dataclass(frozen=True)
class Sequential(Schedule):
    """One model, trained on the locales one after another (VANILLA, SHARED LoRA)."""

    name: ClassVar[str] = "sequential"
    order_dependent: ClassVar[bool] = True


@dataclass(frozen=True)
class Independent(Schedule):
    """One model (or adapter) per locale, each trained from the base (MONO, NON-SHARED).

    Step ``i`` trains the model of ``order[i - 1]``; every step starts from row 0, and a
    locale is scored by its own model.
    """

    name: ClassVar[str] = "independent"

    def models(self, n_locales: int) -> int:
        """One parameter set per locale."""
        return n_locales

    def scored_per_step(self, n_locales: int, all_models: bool = False) -> int:
        """The new model scores its own locale, or every locale with ``all_models``."""
        return n_locales if all_models else 1

    def scoring_step(self, position: int, learned: int) -> int:
        """The locale's own model, row ``position``, whatever was trained after it."""
        return position

    def starting_step(self, step: int) -> int:
        """Row 0: every model starts from the untrained one."""
        return 0


@dataclass(frozen=True)
class Joint(Schedule):
    """One model trained once on all locales together (MULTI).

    The score matrix has two rows; its columns still follow an order, along which its
    Figure 2 curve runs. The one step's ``trained_locale`` is `JOINT_LOCALE`.
    """

    name: ClassVar[str] = "joint"

    def training_steps(self, n_locales: int) -> int:
        """One step over every locale."""
        return 1

    def trained_locale(self, step: int, order: Sequence[str]) -> str | None:
        """`JOINT_LOCALE` at step 1; None at step 0."""
        self._check_step(step, len(order))
        return None if step == 0 else JOINT_LOCALE

    def locales_per_step(self, n_locales: int) -> int:
        """The one step sees every locale's data."""
        return n_locales

    def scoring_step(self, position: int, learned: int) -> int:
        """Row 1, the one trained model, for every locale."""
        return 1


@dataclass(frozen=True)
class Merged(Schedule):
    """One adapter per locale, trained as `Independent` trains them, and after each step
    the adapters trained so far merged into one model that scores every locale (NON-SHARED
    LoRA with the ``merge`` strategy).

    The score matrix is a sequential run's: row ``i`` is the merge of the first ``i``
    adapters, so later locales change how the earlier ones score, and transfer (CBT, CFT,
    forgetting) exists. A step starts from the row before, as in a sequential run: each
    adapter trains from the untrained one, but the model row ``i`` scores is row
    ``i - 1``'s merge with the step's adapter added, so that is where its effect on a
    locale (``perf_shift``, ``learning_gain``) is measured from.
    """

    name: ClassVar[str] = "merged"
    order_dependent: ClassVar[bool] = True

    def models(self, n_locales: int) -> int:
        """One adapter per locale (the merged model is rebuilt from them at every step)."""
        return n_locales


SEQUENTIAL = Sequential()
INDEPENDENT = Independent()
JOINT = Joint()
MERGED = Merged()

SCHEDULES: dict[str, Schedule] = {s.name: s for s in (SEQUENTIAL, INDEPENDENT, JOINT, MERGED)}


def schedule(name: str) -> Schedule:
    """The schedule called ``name`` (``sequential``, ``independent``, ``joint``, ``merged``)."""
    found = SCHEDULES.get(name)
    if found is None:
        close = difflib.get_close_matches(name, SCHEDULES, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown schedule {name!r}{hint} (known: {', '.join(SCHEDULES)})")
    return found


__all__ = [
    "INDEPENDENT",
    "JOINT",
    "JOINT_LOCALE",
    "MERGED",
    "SCHEDULES",
    "SEQUENTIAL",
    "Independent",
    "Joint",
    "Merged",
    "Schedule",
    "Sequential",
    "schedule",
]
