"""SQL over a results directory: DuckDB views of the runs, their scores and curves.

```python
from xlcl.query import query
query("results/paper", "SELECT method, rank, avg(f1) FROM scores JOIN runs USING (run_id) "
      "WHERE step = steps_total GROUP BY ALL")
```

Views (any run directory under the results directory, at any depth):

- ``runs``: one row per run, its manifest flattened, with its sweep state (see
  `RUN_COLUMNS`); runs a sweep listed that never started are there too;
- ``scores``: every ``scores.parquet`` with a ``run_id`` column (``docs/run-directory.md``);
- ``curves``: every ``curves.parquet`` with a ``run_id`` column.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from xlcl.store import CURVES, SCORE_COLUMNS, SCORES
from xlcl.sweep.driver import SweepEntry, sweep_status
from xlcl.sweep.state import RunFileError, read_json

# name: (DuckDB type, meaning)
RUN_COLUMNS: dict[str, tuple[str, str]] = {
    "run_id": ("VARCHAR", "12 hex digits: the hash of the resolved config"),
    "status": ("VARCHAR", "the manifest's status (running, done, failed, interrupted)"),
    "state": ("VARCHAR", "the sweep's view: queued, running, done, failed or interrupted"),
    "method": ("VARCHAR", "multi, mono, vanilla, shared-lora or nonshared-lora"),
    "rank": ("INTEGER", "LoRA rank, null for full fine-tuning"),
    "label": ("VARCHAR", "the paper's name, e.g. SHARED LoRA 32"),
    "model": ("VARCHAR", "model name or path"),
    "order": ("VARCHAR", "the config's order: '1'..'5', 'random:SEED' or locales joined by ','"),
    "locales": ("VARCHAR[]", "the locales in training order"),
    "n_locales": ("INTEGER", "number of locales"),
    "seed": ("BIGINT", "train.seed"),
    "device": ("VARCHAR", "device the run used"),
    "steps_done": ("INTEGER", "last step with scores"),
    "steps_total": ("INTEGER", "training steps of the run"),
    "attempts": ("INTEGER", "attempts the sweep made"),
    "started_at": ("TIMESTAMPTZ", "start of the run"),
    "finished_at": ("TIMESTAMPTZ", "end of the run, null while unfinished"),
    "error": ("VARCHAR", "why the run failed or stopped"),
    "data_checksum": ("VARCHAR", "sha256 of the data source"),
    "git_revision": ("VARCHAR", "git commit of the code"),
    "resumed": ("INTEGER", "times the run was resumed"),
    "path": ("VARCHAR", "run directory"),
}
CURVE_COLUMNS = ["step", "trained_locale", "epoch", "train_loss", "dev_f1", "learning_rate"]


class QueryError(ValueError):
    """A results directory that cannot be queried, or SQL that DuckDB rejects."""


def connect(results: str | Path) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with the views ``runs``, ``scores`` and ``curves``."""
    results = Path(results)
    if not results.is_dir():
        raise QueryError(f"{results}: no such results directory")
    try:
        runs = runs_frame(results)
    except RunFileError as error:
        raise QueryError(str(error)) from None
    connection = duckdb.connect()
    connection.register("runs_frame", runs)
    typed = ", ".join(
        f'CAST("{name}" AS {kind}) AS "{name}"' for name, (kind, _) in RUN_COLUMNS.items()
    )
    connection.execute(f"CREATE VIEW runs AS SELECT {typed} FROM runs_frame")
    _parquet_view(connection, "scores", results, SCORES, SCORE_COLUMNS)
    _parquet_view(connection, "curves", results, CURVES, CURVE_COLUMNS)
    return connection


def query(results: str | Path, sql: str) -> pd.DataFrame:
    """The result of `sql` over the views of `results`, as a data frame."""
    connection = connect(results)
    try:
        relation = connection.sql(sql)
        if relation is None:
            raise QueryError("the statement returned no rows (use SELECT)")
        return relation.df()
    except duckdb.Error as error:
        raise QueryError(str(error)) from None
    finally:
        connection.close()


def runs_frame(results: Path) -> pd.DataFrame:
    """One row per run of `results`, at any depth (columns `RUN_COLUMNS`).

    `results` may also be one run's directory: then its sibling runs are not listed.
    """
    parents = [results, *sorted({path.parent.parent for path in results.rglob("manifest.json")})]
    rows: dict[str, dict[str, Any]] = {}
    for parent in parents:
        for entry in sweep_status(parent):
            directory = parent / entry.run["run_id"]
            if directory.is_relative_to(results):
                rows.setdefault(entry.run["run_id"], _row(directory, entry))
    frame = pd.DataFrame(list(rows.values()), columns=list(RUN_COLUMNS))
    for column in ("started_at", "finished_at"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    return frame


def _row(path: Path, entry: SweepEntry) -> dict[str, Any]:
    manifest = read_json(path / "manifest.json") or {}
    config = manifest.get("config") or {}
    locales = manifest.get("order")
    order = config.get("order", entry.run.get("order"))
    return {
        "run_id": entry.run["run_id"],
        "status": manifest.get("status"),
        "state": entry.status.state.value,
        "method": config.get("method", entry.run.get("method")),
        "rank": config.get("rank", entry.run.get("rank")),
        "label": manifest.get("method_label", entry.run.get("label")),
        "model": config.get("model", entry.run.get("model")),
        "order": ",".join(order) if isinstance(order, list) else str(order),
        "locales": locales,
        "n_locales": None if locales is None else len(locales),
        "seed": manifest.get("seed", entry.run.get("seed")),
        "device": manifest.get("device"),
        "steps_done": entry.status.steps_done,
        "steps_total": entry.status.steps_total,
        "attempts": entry.status.attempts,
        "started_at": manifest.get("started_at"),
        "finished_at": manifest.get("finished_at"),
        "error": entry.status.error,
        "data_checksum": manifest.get("data_checksum"),
        "git_revision": manifest.get("git_revision"),
        "resumed": len(manifest.get("resumed") or []),
        "path": str(path),
    }


def _parquet_view(
    connection: duckdb.DuckDBPyConnection,
    name: str,
    results: Path,
    filename: str,
    columns: list[str],
) -> None:
    if not any(results.rglob(filename)):
        empty = ", ".join(f"NULL::VARCHAR AS {column}" for column in ["run_id", *columns])
        connection.execute(f"CREATE VIEW {name} AS SELECT {empty} WHERE false")
        return
    pattern = str(results.resolve() / "**" / filename).replace("'", "''")
    connection.execute(
        f"CREATE VIEW {name} AS "
        f"SELECT regexp_extract(filename, '([^/]+)/{filename.replace('.', '[.]')}$', 1) AS run_id, "
        f"* EXCLUDE (filename) "
        f"FROM read_parquet('{pattern}', filename = true, union_by_name = true)"
    )
