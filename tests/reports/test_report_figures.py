"""Every figure exists as PNG and PDF; figures over 52 locales keep their labels apart."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg

from reports.report_runs import ORDER_A, VANILLA_A, XLMR, write_run
from xlcl.data import LOCALES
from xlcl.reports import ReportFiles, collect, summarize_labels
from xlcl.reports.figures import (
    all_plots,
    avg_score_plot,
    matrix_plot,
    models_plot,
    perf_shift_plot,
)

PNG = b"\x89PNG\r\n\x1a\n"
SLUGS = {
    "vanilla": "vanilla-facebookai-xlm-roberta-base",
    "shared": "shared-lora-r32-facebookai-xlm-roberta-base",
    "nonshared": "nonshared-lora-r32-facebookai-xlm-roberta-base",
    "multi": "multi-facebookai-xlm-roberta-base",
}


def test_every_figure_as_png_and_pdf(built: ReportFiles) -> None:
    stems = {"fig2_avg_score"}
    stems |= {f"fig7_matrix_{slug}" for slug in SLUGS.values()}
    for key in ("vanilla", "shared"):  # sequential: Figures 3, 5 and forgetting
        slug = SLUGS[key]
        stems |= {f"fig3_perf_shift_{slug}", f"fig5_hops_{slug}", f"forgetting_{slug}"}
    expected = {f"{stem}.{ext}" for stem in stems for ext in ("png", "pdf")}
    assert {p.name for p in built.figures} == expected
    for path in built.figures:
        data = path.read_bytes()
        assert len(data) > 2000, path
        assert data.startswith(PNG if path.suffix == ".png" else b"%PDF-"), path
    assert any("Figure 4 left out: runs of one base model only" in n for n in built.notes)


def test_figure_4_with_two_base_models(sweep: Path, tmp_path: Path) -> None:
    other = tmp_path / "e5"
    write_run(other, "e5-a", "vanilla", ORDER_A, VANILLA_A, model="intfloat/multilingual-e5-small")
    summaries = summarize_labels(collect([sweep, other]).runs, hops=2)
    plot = models_plot(summaries)
    assert plot is not None and plot.name == "fig4_models"
    (ax,) = plot.figure.axes
    assert [t.get_text() for t in ax.get_xticklabels()] == ["VANILLA"]
    assert (
        models_plot([s for s in summaries if s.model != "intfloat/multilingual-e5-small"]) is None
    )


def test_figures_use_agg_without_pyplot(sweep: Path, tmp_path: Path) -> None:
    code = (
        "import sys; from pathlib import Path; from xlcl.reports import collect, "
        "summarize_labels; from xlcl.reports.figures import all_plots; "
        f"runs = collect([Path({str(sweep)!r})]).runs; "
        "plots, _ = all_plots(summarize_labels(runs, 3), {}); "
        "assert 'matplotlib.pyplot' not in sys.modules; "
        "import matplotlib; from matplotlib.backends.backend_agg import FigureCanvasAgg; "
        "assert all(isinstance(p.figure.canvas, FigureCanvasAgg) for p in plots); "
        "print(len(plots))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) >= 9


def test_52_locale_labels_do_not_overlap(tmp_path: Path) -> None:
    order = tuple(sorted(LOCALES))
    rng = np.random.default_rng(0)
    t = len(order)
    f1 = np.tril(rng.uniform(0.3, 0.8, (t + 1, t)), k=-1) + rng.uniform(0.0, 0.1, (t + 1, t))
    write_run(tmp_path, "big", "vanilla", order, np.clip(f1, 0, 1).tolist(), model=XLMR)
    (summary,) = summarize_labels(collect([tmp_path / "big"]).runs, hops=3)
    for plot in (perf_shift_plot(summary, LOCALES), matrix_plot(summary)):
        fig = plot.figure
        assert isinstance(fig.canvas, FigureCanvasAgg)
        renderer = fig.canvas.get_renderer()
        fig.canvas.draw()
        ax = fig.axes[0]
        labels = [lb for lb in ax.get_xticklabels() if lb.get_text()]
        assert len(labels) >= t - 1  # Figure 3 has no shift for the first locale
        boxes = sorted((lb.get_window_extent(renderer) for lb in labels), key=lambda b: b.x0)
        for left, right in itertools.pairwise(boxes):
            assert left.x1 <= right.x0 + 0.5, plot.name  # side by side, not overlapping
    summaries = summarize_labels(collect([tmp_path / "big"]).runs, hops=3)
    plots, _ = all_plots(summaries, LOCALES)
    assert {p.name.split("_")[0] for p in plots} >= {"fig2", "fig3", "fig5", "fig7", "forgetting"}


def test_figure_2_draws_multi_along_the_order_as_the_spec_defines(sweep: Path) -> None:
    # MULTI_A's one row is [0.8, 0.7, 0.9]: at step i, mean_{j<=i} R_multi[pi_j].
    plot = avg_score_plot(summarize_labels(collect([sweep]).runs, hops=2))
    (ax,) = plot.figure.axes
    (multi,) = [line for line in ax.lines if line.get_linestyle() == ":"]
    np.testing.assert_allclose(multi.get_xdata(), [1, 2, 3])
    np.testing.assert_allclose(multi.get_ydata(), [80.0, 75.0, 80.0])
