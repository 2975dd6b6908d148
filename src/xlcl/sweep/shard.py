"""A sweep split across machines that share no file system (``xlcl sweep --shard K/N``).

Machine K of N runs its share of the sweep's runs into its own copy of the results
directory, and the copies are merged afterwards (committed to one repository, copied
together): run directories are named by run id, so they never collide. Where the machines
share a file system no shard is needed: a run is held by one process at a time (``.lock``).

The share is fixed by the sweep file alone, never by what has finished, so that every
machine, on every restart, computes the same split: the runs are taken from the most work
to the least and each goes to the shard with the least work so far (longest processing time
first), priced by `xlcl.sweep.cost.estimate` at its upper-bound epochs.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from xlcl.config import RunConfig
from xlcl.sweep.cost import estimate

# A training pass is a forward and a backward pass: about three forward passes of work,
# which is what scoring an utterance costs (the pilot in docs/replication.md measured 35
# utterances a second trained against 115 scored).
TRAINING_PASS_COST = 3.0


@dataclass(frozen=True)
class Shard:
    """The `index`-th (from 1) of `count` shares of a sweep."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 1 <= self.index <= self.count:
            raise ValueError(f"--shard {self.index}/{self.count}: want K/N with 1 <= K <= N")

    def select(self, runs: Sequence[RunConfig]) -> tuple[RunConfig, ...]:
        """This shard's runs, in the sweep's order."""
        mine = {index for index, shard in enumerate(assign(runs, self.count)) if shard == self}
        return tuple(config for index, config in enumerate(runs) if index in mine)

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> Shard:
    """``K/N`` as a `Shard`; a one-line `ValueError` otherwise."""
    found = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if found is None:
        raise ValueError(f"--shard {text!r}: want K/N, e.g. 1/2 (this machine's share K of N)")
    return Shard(int(found[1]), int(found[2]))


def work(config: RunConfig) -> float:
    """A run's work in scored-utterance units: every training pass costs three."""
    cost = estimate(config)
    return TRAINING_PASS_COST * cost.train_utterance_epochs + cost.scored_utterances


def assign(runs: Sequence[RunConfig], count: int) -> list[Shard]:
    """The shard of each of `runs` (same order), balancing their `work` over `count`."""
    works = [work(config) for config in runs]
    load = [0.0] * count
    shards: list[Shard] = [Shard(1, 1)] * len(runs)
    for index in sorted(range(len(runs)), key=lambda index: -works[index]):  # stable on ties
        lightest = min(range(count), key=lambda shard: load[shard])
        load[lightest] += works[index]
        shards[index] = Shard(lightest + 1, count)
    return shards
