"""report.html: self-contained, complete, and clean in a real headless Chromium."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from xlcl.reports import ReportFiles

CHROMIUM = os.environ.get("XLCL_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


def test_html_is_self_contained(built: ReportFiles) -> None:
    html = built.html.read_text(encoding="utf-8")
    assert "<script" not in html and "<link" not in html and "@import" not in html
    text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", html)
    assert not re.search(r"https?:|//[a-z0-9]", text)
    sources = re.findall(r'src="([^"]*)"', html)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    assert len(sources) == len([p for p in built.figures if p.suffix == ".png"])


def test_html_holds_tables_runs_and_locales(built: ReportFiles) -> None:
    html = built.html.read_text(encoding="utf-8")
    for title in ("Table 1: span F1 by method and vitality", "Table 2", 'id="locales">Per locale'):
        assert title in html
    for run_id in ("van-a", "van-b", "shr-a", "shr-b", "mul-a", "nsh-a", "nsh-b"):
        assert f'id="run-{run_id}"' in html
    assert "torch 2.13.0" in html and "abc1234" in html and "2025-01-01T10:00:00+00:00" in html
    assert "59.17 ± 1.18" in html  # VANILLA's F1 as in table1.md
    assert html.count("<details") >= 4 + 7  # per-locale views per label + one per run
    assert "el-GR" in html and "Grek" in html


def test_report_in_headless_chromium(built: ReportFiles, tmp_path: Path) -> None:
    if not Path(CHROMIUM).exists():
        message = (
            f"Chromium not found at {CHROMIUM}: install Debian's chromium "
            "(apt-get install -y chromium) or set XLCL_CHROMIUM"
        )
        if os.environ.get("CI"):  # `make test` installs it: in CI its absence is a failure
            pytest.fail(message)
        pytest.skip(message)
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright not installed (pip install playwright)"
    )
    errors: list[str] = []
    failed: list[str] = []
    requested: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_context(offline=True).new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("requestfailed", lambda r: failed.append(f"{r.url} {r.failure}"))
            page.on("request", lambda r: requested.append(r.url))
            page.goto(built.html.as_uri(), wait_until="load")
            shot = tmp_path / "report.png"
            page.screenshot(path=str(shot), full_page=True)
            broken = page.evaluate(
                "Array.from(document.images)"
                ".filter(i => !i.complete || i.naturalWidth === 0).length"
            )
            n_images = page.evaluate("document.images.length")
            title = page.title()
        finally:
            browser.close()
    assert errors == [] and failed == []
    assert [u for u in requested if not u.startswith("data:")] == [built.html.as_uri()]
    assert title == "xlcl report" and n_images > 0 and broken == 0
    assert shot.stat().st_size > 10_000
