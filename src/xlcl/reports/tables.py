"""The paper's tables from label summaries: Table 1, Table 2 and a per-locale table.

A ``Table`` holds what is shown (strings: scores in %, mean ± std over orders) and the
numbers behind it (``values``, as computed: scores and their changes in [0, 1] / [−1, 1]),
written as Markdown, LaTeX (booktabs) and CSV by ``write_table``. The score is named by the
runs' metric (``Span F1 (%)``); where labels of several metrics meet, a ``Metric`` column
says which is whose.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from xlcl.metrics import attribute_groupings, group_means
from xlcl.metrics.across import DDOF
from xlcl.metrics.groups import LocaleFacts
from xlcl.reports.analysis import LabelSummary, shared_metric

NA = "–"
VITALITY = ("low", "mid", "high")
TEXT_COLUMNS = (
    *("Method", "Model", "Status", "Metric", "Locale", "Script", "Family", "Vitality"),
    *("Remedy", "Interference model", "Run", "Order", "Feature", "Locales seen in fit"),
    *("Statistic", "Paper", "Verdict"),
)


@dataclass(frozen=True, eq=False)
class Table:
    """A table to write: ``display`` (strings) and ``values`` (numbers, for the CSV)."""

    name: str  # file stem under tables/
    title: str
    display: pd.DataFrame
    values: pd.DataFrame
    notes: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class ParamCount:
    """Trainable parameters of a label (``count``), or why the cell is blank (``missing``)."""

    count: int | None
    counted_on: str
    missing: str | None = None


def table1(summaries: Sequence[LabelSummary], facts: Mapping[str, LocaleFacts]) -> Table:
    """Table 1: method, model, trainable parameters, final score and score by vitality group."""
    display, values, notes = [], [], []
    metric = shared_metric(summaries)
    level = ci_level(summaries)
    for s in summaries:
        params = trainable_parameters(s.method, s.rank, s.model, s.first.observed.n_locales)
        if params.missing:
            notes.append(f"{s.label}: parameters left blank ({params.missing}).")
        final = {k: stat(s, "final_score", k) for k in ("mean", "std", "n")}
        groups = _vitality(s, facts)
        display.append(
            {
                "Method": s.name,
                "Model": s.model or NA,
                "Status": s.status,
                "Runs": str(s.aggregate.n_runs),
                **_metric_cell(s, metric),
                "Params (M)": NA if params.count is None else f"{params.count / 1e6:,.2f}",
                f"{_capital(metric or 'score')} (%)": pm(final["mean"], final["std"], scale=100),
                **_ci_cells(s, level, {"final_score": f"{level} CI (%)"}, scale=100),
                **{g.capitalize(): pm(*groups[g], scale=100) for g in VITALITY},
            }
        )
        values.append(
            {
                **_key(s),
                "params_trainable": params.count,
                "params_counted_on": params.counted_on,
                "score_mean": final["mean"],
                "score_std": final["std"],
                "score_n": int(final["n"]),
                **_ci_values(s, level, {"final_score": "score"}),
                **{
                    f"{g}_{k}": groups[g][i]
                    for g in VITALITY
                    for i, k in enumerate(("mean", "std"))
                },
            }
        )
    counted = sorted({str(v["params_counted_on"]) for v in values if v["params_trainable"]})
    if counted:
        notes.insert(
            0,
            "Params: trainable parameters of the bare encoder (AutoModel: the pooler included "
            "where the architecture has one, no classification head), counted on "
            + "; ".join(counted)
            + ".",
        )
    name = metric or "score"
    notes.append(
        f"{_capital(name)}: final average {name} over the locales learned (mean ± std over "
        f"orders, std with ddof 1). Low/Mid/High: final per-locale {name} averaged over "
        "orders, then within the vitality group; its ± is the std over orders of each run's "
        "group mean."
    )
    if level:
        notes.append(_ci_note(summaries, f"the mean final {name} over the label's orders"))
    title = f"Table 1: {name} by method and vitality"
    return Table("table1", title, *table_frames(display, values), tuple(notes))


def table2(summaries: Sequence[LabelSummary]) -> Table:
    """Table 2: CBT and CFT (mean ± std over orders) of every label with transfer metrics."""
    display, values = [], []
    transfer = [s for s in summaries if s.order_dependent]
    metric = shared_metric(transfer)
    level = ci_level(transfer)
    shown = {"cbt": f"CBT {level} CI", "cft": f"CFT {level} CI"}
    for s in transfer:
        stats = {(q, k): stat(s, q, k) for q in ("cbt", "cft") for k in ("mean", "std", "n")}
        row = {"Method": s.name, "Model": s.model or NA, "Status": s.status}
        display.append(
            {
                **row,
                "Runs": str(s.aggregate.n_runs),
                **_metric_cell(s, metric),
                **{q.upper(): pm(stats[q, "mean"], stats[q, "std"]) for q in ("cbt", "cft")},
                **_ci_cells(s, level, shown),
            }
        )
        values.append(
            {
                **_key(s),
                **{f"{q}_{k}": stats[q, k] for q in ("cbt", "cft") for k in ("mean", "std")},
                "cbt_n": int(stats["cbt", "n"]),
                "cft_n": int(stats["cft", "n"]),
                **_ci_values(s, level, {"cbt": "cbt", "cft": "cft"}),
            }
        )
    notes = ["CBT: cross-lingual backward transfer (eq. 12); CFT: forward transfer (eq. 10-11)."]
    if level:
        notes.append(_ci_note(transfer, "the mean CBT and CFT over the label's orders"))
    return Table(
        "table2",
        "Table 2: backward and forward transfer",
        *table_frames(display, values),
        tuple(notes),
    )


def per_locale_table(summaries: Sequence[LabelSummary], facts: Mapping[str, LocaleFacts]) -> Table:
    """Per label and locale: final score, forgetting, perf_shift, MFT and MBT at hop 1, facts."""
    display, values = [], []
    metric = shared_metric(summaries)
    for s in summaries:
        mean, n = s.aggregate.locale_mean, s.aggregate.locale_n
        for locale in mean.index:
            fact = facts.get(locale)
            cells = {
                "final_score": mean.loc[locale, "final_score"],
                "forgetting": s.forgetting.loc[locale, "mean"],
                "perf_shift": mean.loc[locale, "perf_shift"],
                "mft_1": mean.loc[locale, "mft_1"] if "mft_1" in mean else math.nan,
                "mbt_1": mean.loc[locale, "mbt_1"] if "mbt_1" in mean else math.nan,
            }
            about = {
                "script": fact.script if fact else None,
                "family": fact.family if fact else None,
                "vitality": fact.vitality if fact else None,
            }
            display.append(
                {
                    "Method": s.name,
                    "Model": s.model or NA,
                    "Locale": locale,
                    **{k.capitalize(): v or NA for k, v in about.items()},
                    **_metric_cell(s, metric),
                    f"{_capital(metric or 'score')} (%)": num(
                        cells["final_score"], scale=100, digits=2
                    ),
                    "Forgetting": num(cells["forgetting"]),
                    "Perf. shift": num(cells["perf_shift"]),
                    "MFT h1": num(cells["mft_1"]),
                    "MBT h1": num(cells["mbt_1"]),
                    "Runs": str(int(n.loc[locale, "final_score"])),
                }
            )
            values.append(
                {
                    **_key(s),
                    "locale": locale,
                    **about,
                    **cells,
                    "n_runs": int(n.loc[locale, "final_score"]),
                    "forgetting_n": int(s.forgetting.loc[locale, "n"]),
                }
            )
    name = metric or "score"
    notes = (
        f"Means over orders. Forgetting: max {name} from the step that learned the locale to "
        f"the one before last, minus the final {name} (not defined for the last locale of an "
        "order). "
        "Perf. shift: what training the locale did to the locales learned before it. "
        "MFT h1 / MBT h1: the locale as donor / receiver one step away.",
    )
    return Table("per_locale", "Per-locale metrics", *table_frames(display, values), notes)


@lru_cache(maxsize=64)
def trainable_parameters(
    method_name: str | None, rank: int | None, model: str | None, n_locales: int
) -> ParamCount:
    """Table 1's Params: ``xlcl.params.count_parameters``, where the model is known offline.

    Known offline: a preset architecture of ``xlcl.params`` or a local model directory.
    Anything else would need the network, so the cell is left blank with the reason.
    """
    from xlcl.methods import method  # torch and PEFT load only when a count is needed
    from xlcl.params import PRESET_ARCHITECTURES, count_parameters

    if method_name is None or model is None:
        return ParamCount(None, "", "no method and model (score table without a manifest)")
    if model not in PRESET_ARCHITECTURES and not Path(model).is_dir():
        return ParamCount(None, "", f"architecture of {model!r} not available offline")
    try:
        counted = count_parameters(method(method_name, rank), model, n_locales=n_locales)
    except (ValueError, OSError) as err:
        return ParamCount(None, "", str(err))
    return ParamCount(counted.trainable, counted.counted_model)


def write_table(table: Table, directory: Path) -> list[Path]:
    """``<name>.md``, ``<name>.tex`` and ``<name>.csv`` under ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = [directory / f"{table.name}.{ext}" for ext in ("md", "tex", "csv")]
    paths[0].write_text(to_markdown(table), encoding="utf-8")
    paths[1].write_text(to_latex(table), encoding="utf-8")
    table.values.to_csv(paths[2], index=False)
    return paths


def to_markdown(table: Table) -> str:
    """The table as GitHub Markdown: a heading, a pipe table and its notes."""
    header = list(table.display.columns)
    align = ["---" if _left(c) else "--:" for c in header]
    lines = [f"### {table.title}", "", _md_row(header), _md_row(align)]
    lines += [_md_row(row) for row in table.display.itertuples(index=False)]
    lines += ["", *[f"{note}  " for note in table.notes]]
    return "\n".join(lines).rstrip() + "\n"


def to_latex(table: Table) -> str:
    """The table as LaTeX with booktabs rules (``longtable`` past 40 rows)."""
    header = list(table.display.columns)
    spec = "".join("l" if _left(c) else "r" for c in header)
    head = " & ".join(_tex(c) for c in header) + r" \\"
    body = [
        " & ".join(_tex(str(v)) for v in row) + r" \\"
        for row in table.display.itertuples(index=False)
    ]
    caption = _tex(table.title)
    notes = [f"% {note}" for note in table.notes]
    if len(body) > 40:
        lines = [
            rf"\begin{{longtable}}{{{spec}}}",
            rf"\caption{{{caption}}}\\",
            r"\toprule",
            head,
            r"\midrule",
            r"\endhead",
            *body,
            r"\bottomrule",
            r"\end{longtable}",
        ]
    else:
        lines = [
            r"\begin{table}[t]",
            r"\centering",
            rf"\caption{{{caption}}}",
            rf"\begin{{tabular}}{{{spec}}}",
            r"\toprule",
            head,
            r"\midrule",
            *body,
            r"\bottomrule",
            r"\end{tabular}",
            r"\end{table}",
        ]
    return "\n".join(["% requires \\usepackage{booktabs}", *notes, *lines]) + "\n"


def ci_level(summaries: Sequence[LabelSummary]) -> str:
    """The intervals' level (``95%``) where some label has intervals, else empty: then the
    tables have no interval columns."""
    levels = {s.intervals.level for s in summaries if s.intervals and s.intervals.intervals}
    return f"{max(levels) * 100:g}%" if levels else ""


def _ci_cells(
    s: LabelSummary, level: str, columns: Mapping[str, str], scale: float = 1.0
) -> dict[str, str]:
    """Display cells ``[low, high]`` of the label's intervals, headed by `columns`."""
    if not level:
        return {}
    found = s.intervals.intervals if s.intervals else None
    digits = 2 if scale != 1.0 else 3
    cells = {}
    for name, header in columns.items():
        interval = found.get(name) if found else None
        if interval is None or _nan(interval.low):
            cells[header] = NA
        else:
            low, high = interval.low * scale, interval.high * scale
            cells[header] = f"[{low:.{digits}f}, {high:.{digits}f}]"
    return cells


def _ci_values(s: LabelSummary, level: str, columns: Mapping[str, str]) -> dict[str, float]:
    """CSV columns ``<prefix>_ci_low`` and ``<prefix>_ci_high`` (NaN without an interval)."""
    if not level:
        return {}
    found = s.intervals.intervals if s.intervals else None
    values = {}
    for name, prefix in columns.items():
        interval = found.get(name) if found else None
        values[f"{prefix}_ci_low"] = interval.low if interval else math.nan
        values[f"{prefix}_ci_high"] = interval.high if interval else math.nan
    return values


def _ci_note(summaries: Sequence[LabelSummary], what: str) -> str:
    """What the interval columns are, and which labels have none."""
    about = next(s.intervals for s in summaries if s.intervals and s.intervals.intervals)
    lacking = [s.label for s in summaries if not (s.intervals and s.intervals.intervals)]
    note = (
        f"{ci_level(summaries)} CI: percentile bootstrap interval of {what}, "
        f"{about.resamples} resamples of each locale's test utterances (the same draws for "
        "every run and label); it covers the test sets' sampling, not the choice of order."
    )
    if lacking:
        note += f" None for {', '.join(lacking)} (no per-utterance counts; see the notes)."
    return note


def stat(s: LabelSummary, scalar: str, column: str) -> float:
    """``mean``, ``std`` or ``n`` of a scalar metric over the label's runs."""
    return float(s.aggregate.scalars[column][scalar])


def pm(mean: float, std: float, scale: float = 1.0) -> str:
    """``mean ± std`` (std left out when NaN, as for one run); ``–`` when the mean is NaN."""
    digits = 2 if scale != 1.0 else 3
    if _nan(mean):
        return NA
    text = num(mean, scale, digits)
    return text if _nan(std) else f"{text} ± {std * scale:.{digits}f}"


def num(value: float | None, scale: float = 1.0, digits: int = 3) -> str:
    """A number for display, ``–`` for NaN or None."""
    return NA if _nan(value) else f"{float(value) * scale:.{digits}f}"  # type: ignore[arg-type]


def _vitality(s: LabelSummary, facts: Mapping[str, LocaleFacts]) -> dict[str, tuple[float, float]]:
    """(mean, std) of the final score per vitality group: mean as ``xlcl.metrics`` defines it."""
    locales = list(s.aggregate.locale_mean.index)
    grouping = attribute_groupings(locales, facts)["vitality"]
    means = group_means(s.aggregate.locale_mean[["final_score"]], grouping)["final_score"]
    per_run = pd.DataFrame(
        [group_means(m.locales[["final_score"]], grouping)["final_score"] for m in s.metrics]
    )
    out = {}
    for g in VITALITY:
        spread = per_run[g].std(ddof=DDOF) if g in per_run else math.nan
        out[g] = (float(means.get(g, math.nan)), float(spread))
    return out


def _key(s: LabelSummary) -> dict[str, object]:
    return {
        "label": s.label,
        "method": s.method,
        "rank": s.rank,
        "model": s.model,
        "metric": s.metric,
        "status": s.status,
        "n_runs": s.aggregate.n_runs,
    }


def _metric_cell(s: LabelSummary, shared: str | None) -> dict[str, str]:
    """A ``Metric`` cell where the table's labels have different metrics, else none."""
    return {} if shared else {"Metric": s.metric}


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def table_frames(
    display: list[dict[str, str]], values: list[dict[str, object]]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    return pd.DataFrame(display), pd.DataFrame(values)


def _left(column: str) -> bool:
    return column in TEXT_COLUMNS


def _md_row(cells: Sequence[object]) -> str:
    return "| " + " | ".join(str(c).replace("|", r"\|") for c in cells) + " |"


_TEX = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "±": r"$\pm$",
    "–": "--",
    "−": "$-$",
}


def _tex(text: str) -> str:
    return "".join(_TEX.get(ch, ch) for ch in text)


def _nan(value: float | None) -> bool:
    return value is None or bool(np.isnan(value))
