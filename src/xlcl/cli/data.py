"""`xlcl data validate SOURCE` and `xlcl data export SOURCE`: check and convert MASSIVE.

SOURCE is a release archive, a directory of <locale>.jsonl files, an https:// URL or
hf://AmazonScience/massive (see docs/data.md). `validate` checks the locales the source has
(one warning line names those it lacks; with --locale, a lacking locale is an error), lists
every invalid row and every split without rows and then exits 1; `export` refuses invalid
data (exit 2) unless given --skip-invalid, which writes the valid rows and lists the skipped
ones on stderr, and exits 1 on a split without rows. Both exit 2 with a one-line error when
the source cannot be read.
"""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from xlcl.data import (
    LOCALES,
    SPLITS,
    DataError,
    MassiveData,
    intent_names,
    load_massive,
    slot_label_names,
)
from xlcl.data.export import export_lines

app = typer.Typer(help="data commands: validate and export MASSIVE", no_args_is_help=True)

SourceArg = Annotated[
    str, typer.Argument(help="Archive, directory, https:// URL or hf://AmazonScience/massive.")
]
Sha256Opt = Annotated[
    str | None, typer.Option("--sha256", help="Expected sha256 of an archive given by URL.")
]


class SplitChoice(StrEnum):
    """A MASSIVE partition."""

    train = "train"
    dev = "dev"
    test = "test"


class FormatChoice(StrEnum):
    """An export format."""

    jsonl = "jsonl"
    conll = "conll"


@app.command()
def validate(
    source: SourceArg,
    locale: Annotated[
        list[str] | None,
        typer.Option(
            "--locale",
            "-l",
            help="Locale to check, an error if missing (repeatable); default: all present.",
        ),
    ] = None,
    sha256: Sha256Opt = None,
) -> None:
    """Check every row; print counts per locale and split, and each invalid row."""
    data = _load(
        source, locale or list(LOCALES), skip_invalid=True, sha256=sha256, missing_ok=not locale
    )
    missing = [name for name in LOCALES if name not in data.locales]
    if not locale and missing:
        typer.echo(
            f"warning: the source lacks {len(missing)} of {len(LOCALES)} locales, not checked: "
            + " ".join(missing),
            err=True,
        )
    console = Console()
    console.print(
        f"source {data.source}\nsha256 {data.checksum}",
        soft_wrap=True,
        markup=False,
        highlight=False,
    )
    table = Table()
    table.add_column("locale")
    for split in SPLITS:
        table.add_column(split, justify="right")
    for name in data.locales:
        table.add_row(name, *(str(len(data.utterances(name, split))) for split in SPLITS))
    console.print(table)
    labels = slot_label_names(data)
    console.print(
        f"{(len(labels) - 1) // 2} slot types, {len(labels)} BIO labels, "
        f"{len(intent_names(data))} intents"
    )
    if data.quarantine:
        console.print(f"[red]{len(data.quarantine)} invalid row(s):[/red]")
        for row in data.quarantine:
            console.print(str(row), markup=False, highlight=False, soft_wrap=True)
    for name, split in data.empty_splits:
        console.print(f"[red]{name} has no {split} rows[/red]")
    if data.quarantine or data.empty_splits:
        raise typer.Exit(1)
    console.print("[green]all rows valid[/green]")


@app.command()
def export(
    source: SourceArg,
    locale: Annotated[str, typer.Option("--locale", "-l", help="Locale to export.")],
    split: Annotated[SplitChoice, typer.Option("--split", help="Partition to export.")],
    fmt: Annotated[FormatChoice, typer.Option("--format", help="Output format.")],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Output file; default stdout.")
    ] = None,
    sha256: Sha256Opt = None,
    skip_invalid: Annotated[
        bool,
        typer.Option(
            "--skip-invalid", help="Write the valid rows; list the invalid ones on stderr."
        ),
    ] = False,
) -> None:
    """Write one locale's split as JSONL (id, locale, split, words, tags, intent) or CoNLL."""
    data = _load(source, [locale], skip_invalid=skip_invalid, sha256=sha256)
    for row in data.quarantine:
        typer.echo(f"skipped: {row}", err=True)
    if data.quarantine:
        typer.echo(f"{len(data.quarantine)} invalid row(s) skipped", err=True)
    utterances = data.utterances(locale, split.value)
    if not utterances:
        typer.echo(f"error: {locale} has no {split.value} rows", err=True)
        raise typer.Exit(1)
    lines = export_lines(utterances, fmt.value)
    if out is None:
        sys.stdout.writelines(line + "\n" for line in lines)
        return
    with out.open("w", encoding="utf-8") as stream:
        stream.writelines(line + "\n" for line in lines)


def _load(
    source: str,
    locales: list[str],
    *,
    skip_invalid: bool,
    sha256: str | None,
    missing_ok: bool = False,
) -> MassiveData:
    try:
        return load_massive(
            source, locales, skip_invalid=skip_invalid, sha256=sha256, missing_ok=missing_ok
        )
    except DataError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
