"""The paper's methods as presets over two axes: schedule x parameters.

A schedule (``xlcl.schedules``) says which locales a model sees and in what arrangement;
parameters say which weights train. MULTI, MONO, VANILLA, SHARED LoRA and NON-SHARED LoRA
are points on that grid. Only this module knows the methods' names: everything else asks
a `Method` for its schedule and rank.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from xlcl.schedules import INDEPENDENT, JOINT, SEQUENTIAL, Schedule


@dataclass(frozen=True)
class Method:
    """A training method: a schedule and whether LoRA adapters (of some rank) train.

    ``rank is None`` means full fine-tuning; otherwise LoRA of that rank on every linear
    layer of the encoder, with the base frozen.
    """

    name: str
    schedule: Schedule
    rank: int | None

    @property
    def lora(self) -> bool:
        """Whether this method trains LoRA adapters instead of the full model."""
        return self.rank is not None

    @property
    def label(self) -> str:
        """The paper's name, e.g. ``SHARED LoRA 32``."""
        base = PAPER_NAMES[self.name]
        if self.name == "multi" and self.rank is not None:
            return f"{base} LoRA {self.rank}"
        return f"{base} {self.rank}" if self.rank is not None else base


@dataclass(frozen=True)
class _Preset:
    schedule: Schedule
    rank: str  # "never", "optional" or "required"


PRESETS: dict[str, _Preset] = {
    "multi": _Preset(JOINT, "optional"),
    "mono": _Preset(INDEPENDENT, "never"),
    "vanilla": _Preset(SEQUENTIAL, "never"),
    "shared-lora": _Preset(SEQUENTIAL, "required"),
    "nonshared-lora": _Preset(INDEPENDENT, "required"),
}

PAPER_NAMES: dict[str, str] = {
    "multi": "MULTI",
    "mono": "MONO",
    "vanilla": "VANILLA",
    "shared-lora": "SHARED LoRA",
    "nonshared-lora": "NON-SHARED LoRA",
}


def method(name: str, rank: int | None = None) -> Method:
    """The preset `name` with LoRA `rank`, validated: e.g. ``method("shared-lora", 32)``."""
    preset = _preset(name)
    if rank is not None and rank < 1:
        raise ValueError(f"LoRA rank must be a positive integer, got {rank}")
    if preset.rank == "required" and rank is None:
        raise ValueError(f"method {name!r} trains LoRA adapters and needs a rank (e.g. 32)")
    if preset.rank == "never" and rank is not None:
        raise ValueError(f"method {name!r} is full fine-tuning and takes no rank")
    return Method(name=name, schedule=preset.schedule, rank=rank)


def preset_schedule(name: str) -> Schedule:
    """The schedule of the preset `name`, whatever its rank: ``preset_schedule("mono")``."""
    return _preset(name).schedule


def _preset(name: str) -> _Preset:
    preset = PRESETS.get(name)
    if preset is None:
        close = difflib.get_close_matches(name, PRESETS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown method {name!r}{hint} (known: {', '.join(PRESETS)})")
    return preset
