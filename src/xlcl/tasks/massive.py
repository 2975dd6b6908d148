"""What MASSIVE's tasks share: its 52 locales, the paper's orders, and loading the data."""

from __future__ import annotations

from collections.abc import Sequence

from xlcl.config import DataConfig
from xlcl.data import MassiveData, load_massive, resolve_order
from xlcl.tasks import Task


class MassiveTask(Task):
    """What MASSIVE's tasks share: its 52 locales, the paper's orders, loading."""

    def resolve_order(
        self, order: int | str | Sequence[str], locales: Sequence[str] | None
    ) -> tuple[str, ...]:
        """The paper's orders 1-5, ``random:SEED`` or a list, over MASSIVE's locales."""
        return resolve_order(order, locales)

    def load(self, data: DataConfig, order: Sequence[str]) -> MassiveData:
        """MASSIVE's utterances of `order` from ``data.source`` (or ``$XLCL_MASSIVE``)."""
        return load_massive(data.source, order, skip_invalid=data.skip_invalid)
