"""The report as one self-contained HTML file: inline CSS, figures as base64 PNG, no script.

Nothing in the page refers to another file or to the network, so it opens offline.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2

from xlcl.reports.collect import ReportRun
from xlcl.reports.tables import NA, TEXT_COLUMNS, Table


@dataclass(frozen=True)
class HtmlFigure:
    """A figure as the page shows it: its PNG bytes, title and caption."""

    name: str
    title: str
    caption: str
    png: bytes


@dataclass(frozen=True)
class Remedies:
    """The Remedies section: each remedy against its plain method, as a table and a figure."""

    table: Table
    figure: HtmlFigure


@dataclass(frozen=True)
class Planner:
    """The Planner section: predicted against measured CBT (table, figure), models' weights."""

    predictions: Table
    weights: Table
    figure: HtmlFigure


def render_html(
    tables: Sequence[Table],
    per_locale: Table,
    figures: Sequence[HtmlFigure],
    runs: Sequence[ReportRun],
    notes: Sequence[str],
    inputs: Sequence[Path],
    remedies: Remedies | None = None,
    planner: Planner | None = None,
) -> str:
    """The report page: tables, figures, remedies, planner, per-locale view, each run's
    manifest, notes."""
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    template = env.from_string(TEMPLATE)
    return template.render(
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        inputs=[str(p) for p in inputs],
        notes=list(notes),
        tables=[_table(t) for t in tables],
        figures=[_figure(f) for f in figures],
        remedies=None
        if remedies is None
        else {"table": _table(remedies.table), "figure": _figure(remedies.figure)},
        planner=None
        if planner is None
        else {
            "predictions": _table(planner.predictions),
            "weights": _table(planner.weights),
            "figure": _figure(planner.figure),
        },
        per_locale=_per_locale(per_locale),
        runs=[_run(r) for r in runs],
    )


def _figure(figure: HtmlFigure) -> dict[str, Any]:
    return {**vars(figure), "src": "data:image/png;base64," + base64.b64encode(figure.png).decode()}


def _table(table: Table) -> dict[str, Any]:
    return {
        "name": table.name,
        "title": table.title,
        "columns": list(table.display.columns),
        "rows": table.display.astype(str).to_numpy().tolist(),
        "notes": list(table.notes),
        "numeric": [c not in TEXT_COLUMNS for c in table.display.columns],
    }


def _per_locale(table: Table) -> list[dict[str, Any]]:
    """The per-locale table split by label, each part without the label columns."""
    if table.display.empty:
        return []
    shown = table.display.drop(columns=["Method", "Model"])
    parts = []
    for label, index in table.values.groupby("label", sort=False).groups.items():
        part = Table(table.name, str(label), shown.loc[index], table.values.loc[index])
        parts.append(_table(part))
    return parts


def _run(run: ReportRun) -> dict[str, Any]:
    manifest = run.manifest or {}
    versions = manifest.get("versions") or {}
    return {
        "run_id": run.run_id,
        "label": run.label,
        "state": run.state,
        "steps": f"{run.steps_done}/{run.n_steps}",
        "model": run.model or NA,
        "method": run.method or NA,
        "rank": NA if run.rank is None else str(run.rank),
        "schedule": run.observed.schedule.name,
        "task": run.task or NA,
        "metric": run.observed.metric,
        "order": " ".join(run.observed.order),
        "versions": ", ".join(f"{k} {v}" for k, v in versions.items()) or NA,
        "git": manifest.get("git_revision") or NA,
        "device": manifest.get("device") or NA,
        "seed": NA if manifest.get("seed") is None else str(manifest["seed"]),
        "started": manifest.get("started_at") or NA,
        "finished": manifest.get("finished_at") or NA,
        "error": manifest.get("error") or "",
        "source": str(run.source),
        "has_manifest": run.manifest is not None,
    }


TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>xlcl report</title>
<style>
body { font-family: system-ui, sans-serif; margin: 1.5rem auto; max-width: 1200px;
       padding: 0 1rem; color: #1a1a1a; line-height: 1.4; }
h1 { margin-bottom: .2rem; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2rem;
       margin-top: 2.2rem; }
nav a { margin-right: 1rem; }
table { border-collapse: collapse; margin: .6rem 0; font-size: .85rem; }
th, td { padding: .2rem .55rem; border-bottom: 1px solid #e2e2e2; text-align: left;
         vertical-align: top; }
th { border-bottom: 2px solid #444; background: #f6f6f6; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.notes { color: #444; font-size: .85rem; }
.state-done { color: #00704a; } .state-partial { color: #a05a00; font-weight: bold; }
figure { margin: 1.2rem 0; } figure img { max-width: 100%; height: auto;
         border: 1px solid #eee; }
figcaption { font-size: .85rem; color: #333; }
details { margin: .4rem 0; } summary { cursor: pointer; font-weight: 600; }
.scroll { overflow-x: auto; }
code { font-size: .8rem; word-break: break-all; }
td.id code { white-space: nowrap; word-break: normal; }
</style>
</head>
<body>
{% macro grid(t) %}<div class="scroll"><table>
<thead><tr>{% for c in t.columns %}
<th{{ ' class="num"' | safe if t.numeric[loop.index0] }}>{{ c }}</th>{% endfor %}</tr></thead>
<tbody>{% for row in t.rows %}<tr>{% for v in row %}
<td{{ ' class="num"' | safe if t.numeric[loop.index0] }}>{{ v }}</td>{% endfor %}</tr>
{% endfor %}</tbody>
</table></div>{% endmacro %}
<h1>xlcl report</h1>
<p class="notes">Generated {{ generated }} from {{ inputs | join(", ") }};
{{ runs | length }} run(s).</p>
<nav><a href="#tables">Tables</a><a href="#figures">Figures</a>
{% if remedies %}<a href="#remedies-section">Remedies</a>{% endif %}
{%- if planner %}<a href="#planner">Planner</a>{% endif %}
<a href="#locales">Per locale</a><a href="#runs">Runs</a></nav>
{% if notes %}<h2 id="notes">Notes</h2>
<ul class="notes">{% for note in notes %}<li>{{ note }}</li>{% endfor %}</ul>{% endif %}

<h2 id="tables">Tables</h2>
{% for t in tables %}
<h3 id="{{ t.name }}">{{ t.title }}</h3>
{% if t.rows %}
{{ grid(t) }}
{% else %}<p class="notes">No run gives this table.</p>{% endif %}
<ul class="notes">{% for note in t.notes %}<li>{{ note }}</li>{% endfor %}</ul>
{% endfor %}

<h2 id="figures">Figures</h2>
{% for f in figures %}
<figure id="{{ f.name }}">
<img src="{{ f.src }}" alt="{{ f.title }}">
<figcaption><strong>{{ f.title }}.</strong> {{ f.caption }}</figcaption>
</figure>
{% endfor %}

{% if remedies %}<h2 id="remedies-section">Remedies</h2>
<p class="notes">Each remedy against forgetting beside the plain method it modifies
(docs/remedies.md).</p>
<figure id="{{ remedies.figure.name }}">
<img src="{{ remedies.figure.src }}" alt="{{ remedies.figure.title }}">
<figcaption><strong>{{ remedies.figure.title }}.</strong> {{ remedies.figure.caption }}</figcaption>
</figure>
{{ grid(remedies.table) }}
<ul class="notes">{% for note in remedies.table.notes %}<li>{{ note }}</li>{% endfor %}</ul>
{% endif %}
{%- if planner %}<h2 id="planner">Planner</h2>
<p class="notes">The CBT each interference model (<code>xlcl plan fit</code>, docs/planner.md)
predicts for the runs of its label, against the CBT they measured.</p>
<figure id="{{ planner.figure.name }}">
<img src="{{ planner.figure.src }}" alt="{{ planner.figure.title }}">
<figcaption><strong>{{ planner.figure.title }}.</strong> {{ planner.figure.caption }}</figcaption>
</figure>
{% for t in [planner.predictions, planner.weights] %}
<h3 id="{{ t.name }}">{{ t.title }}</h3>
{{ grid(t) }}
<ul class="notes">{% for note in t.notes %}<li>{{ note }}</li>{% endfor %}</ul>
{% endfor %}
{% endif %}

<h2 id="locales">Per locale</h2>
{% for t in per_locale %}
<details{% if loop.first %} open{% endif %}>
<summary>{{ t.title }}</summary>
{{ grid(t) }}
</details>
{% endfor %}

<h2 id="runs">Runs</h2>
<div class="scroll"><table>
<thead><tr><th>run</th><th>status</th><th>steps</th><th>method</th><th>rank</th><th>model</th>
<th>device</th><th>seed</th><th>started</th><th>finished</th><th>versions</th><th>git</th></tr></thead>
<tbody>{% for r in runs %}<tr id="run-{{ r.run_id }}">
<td class="id"><code>{{ r.run_id }}</code></td>
<td class="{{ 'state-done' if r.state == 'done' else 'state-partial' }}">{{ r.state }}</td>
<td class="num">{{ r.steps }}</td><td>{{ r.method }}</td><td class="num">{{ r.rank }}</td>
<td>{{ r.model }}</td><td>{{ r.device }}</td><td class="num">{{ r.seed }}</td>
<td>{{ r.started }}</td><td>{{ r.finished }}</td><td>{{ r.versions }}</td>
<td><code>{{ r.git }}</code></td></tr>
<tr><td></td><td colspan="11"><details>
<summary>order, source{% if r.error %}, error{% endif %}</summary>
<p>Schedule: {{ r.schedule }}; task: {{ r.task }}; score: {{ r.metric }}</p>
<p>Order: {{ r.order }}</p><p>Source: <code>{{ r.source }}</code>{% if not r.has_manifest %}
(score table, no manifest){% endif %}</p>
{% if r.error %}<p>Error: {{ r.error }}</p>{% endif %}</details></td></tr>
{% endfor %}</tbody>
</table></div>
</body>
</html>
"""
