"""SQL over a results directory: DuckDB views of the runs, their scores and curves.

```python
from xlcl.query import query
query("results/paper", "SELECT method, rank, metric, avg(score) FROM scores "
      "JOIN runs USING (run_id) WHERE step = steps_total GROUP BY ALL")
```

Views (any run directory under the results directory, at any depth):

- ``runs``: one row per run, its manifest flattened, with its sweep state (see
  `RUN_COLUMNS`); runs a sweep listed that never started are there too;
- ``scores``: every ``scores.parquet`` with a ``run_id`` column (``docs/run-directory.md``);
  ``score`` is the task's metric, read from ``f1`` in directories written before tasks;
- ``curves``: every ``curves.parquet`` with a ``run_id`` column; ``dev_score`` is read
  from ``dev_f1`` in directories written before tasks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from xlcl.metrics import MetricsInputError, run_facts
from xlcl.metrics.io import schedule_named
from xlcl.store import CURVES, SCORE_COLUMNS, SCORES
from xlcl.sweep.driver import SweepEntry, sweep_status
from xlcl.sweep.state import RunFileError, read_json

# name: (DuckDB type, meaning)
RUN_COLUMNS: dict[str, tuple[str, str]] = {
    "run_id": ("VARCHAR", "12 hex digits: the hash of the resolved config"),
    "status": ("VARCHAR", "the manifest's status (running, done, failed, interrupted)"),
    "state": ("VARCHAR", "the sweep's view: queued, running, done, failed or interrupted"),
    "method": ("VARCHAR", "the method's preset name (xlcl.methods), e.g. shared-lora"),
    "rank": ("INTEGER", "LoRA rank, null for full fine-tuning"),
    "label": ("VARCHAR", "the paper's name, e.g. SHARED LoRA 32"),
    "schedule": ("VARCHAR", "sequential, independent, joint or merged"),
    "task": ("VARCHAR", "the task, e.g. massive-slots"),
    "metric": ("VARCHAR", "what the scores' score is, e.g. span F1"),
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
CURVE_COLUMNS = ["step", "trained_locale", "epoch", "train_loss", "dev_score", "learning_rate"]
# A column of the views (key) and the column that held it before tasks (value).
RENAMED = {"score": "f1", "dev_score": "dev_f1"}


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
    _parquet_view(connection, "scores", results, SCORES, _with_score(SCORE_COLUMNS))
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
    method = config.get("method", entry.run.get("method"))
    task: str | None
    metric: str | None
    if manifest:  # started: the manifest says, or (written before tasks) implies
        try:
            facts = run_facts(manifest)
        except MetricsInputError as error:
            raise QueryError(f"{path / 'manifest.json'}: {error}") from None
        schedule, task, metric = facts.schedule, facts.task, facts.metric
    else:  # queued: what the sweep file says
        schedule = schedule_named(entry.run.get("schedule"), method)
        task, metric = (entry.run.get("config") or {}).get("task"), None
    return {
        "run_id": entry.run["run_id"],
        "status": manifest.get("status"),
        "state": entry.status.state.value,
        "method": method,
        "rank": config.get("rank", entry.run.get("rank")),
        "label": manifest.get("method_label", entry.run.get("label")),
        "schedule": None if schedule is None else schedule.name,
        "task": task,
        "metric": metric,
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


def _with_score(columns: list[str]) -> list[str]:
    """``columns`` with ``score`` right after ``eval_locale`` (tables written before tasks)."""
    if "score" in columns:
        return columns
    at = columns.index("eval_locale") + 1
    return [*columns[:at], "score", *columns[at:]]


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
    source = f"read_parquet('{pattern}', filename = true, union_by_name = true)"
    found = [row[0] for row in connection.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()]
    run_id = f"regexp_extract(filename, '([^/]+)/{filename.replace('.', '[.]')}$', 1) AS run_id"
    connection.execute(
        f"CREATE VIEW {name} AS SELECT {', '.join([run_id, *_selected(found)])} FROM {source}"
    )


def _selected(found: list[str]) -> list[str]:
    """The view's columns: every stored one, each renamed column also under its new name.

    Files of both kinds meet in one view (``union_by_name``): the new column falls back to
    the old one where a file has none. Where no file has the new column, it is the old one,
    placed before it.
    """
    selected = []
    for column in found:
        if column == "filename" or RENAMED.get(column) in found:
            continue  # a new column beside its old one: placed before the old one, below
        new = next((n for n, old in RENAMED.items() if old == column), None)
        if new in found:
            selected.append(f'COALESCE("{new}", "{column}") AS "{new}"')
        elif new is not None:
            selected.append(f'"{column}" AS "{new}"')
        selected.append(f'"{column}"')
    return selected
