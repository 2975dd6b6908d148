"""docs/replication.md publishes the verdicts that the committed replication runs give.

The claims table is rebuilt from the runs git tracks in results/replication (a sweep
running in this working copy adds untracked ones, which do not count), and every one of
its rows and notes must appear in the doc word for word: a verdict in the doc cannot drift
from the data, or be edited by hand.
"""

from __future__ import annotations

from pathlib import Path

from test_published_results import REPO, tracked_results
from xlcl.metrics import DEFAULT_HOPS
from xlcl.metrics.bootstrap import Bootstrap
from xlcl.reports.analysis import locale_facts, summarize_labels, with_intervals
from xlcl.reports.claims import claims_table
from xlcl.reports.collect import collect
from xlcl.reports.tables import to_markdown

DOC = REPO / "docs" / "replication.md"


def test_the_doc_quotes_the_claims_of_the_committed_runs() -> None:
    runs = sorted(
        REPO / path.parent
        for path in tracked_results()
        if path.parts[1] == "replication" and path.name == "DONE"
    )
    assert len(runs) == 12, "the study's 12 runs are committed"
    summaries = summarize_labels(collect(runs).runs, DEFAULT_HOPS)
    boot = Bootstrap()  # the report's: 1,000 resamples, seed 0
    claims = claims_table(with_intervals(summaries, boot), boot, locale_facts(), DEFAULT_HOPS)
    assert claims is not None
    doc = DOC.read_text()
    lines = [line for line in to_markdown(claims).splitlines() if line.strip()]
    rows = [line for line in lines if line.startswith("| ") and "---" not in line]
    assert len(rows) == 1 + 13, "a header and the 13 statistics"
    missing = [line for line in lines[1:] if line.rstrip(" ") not in doc]
    assert not missing, f"{Path(DOC).name} lacks: {missing}"
