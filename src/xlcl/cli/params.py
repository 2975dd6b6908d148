"""`xlcl params`: trainable parameters of a method (Table 1), and a strategy's cost."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated

import typer

from xlcl.cli.errors import fail
from xlcl.methods import PRESETS


def params(
    method: Annotated[str, typer.Option(help=", ".join(PRESETS))],
    model: Annotated[str, typer.Option(help="model name or local path")] = (
        "FacebookAI/xlm-roberta-base"
    ),
    rank: Annotated[int | None, typer.Option(help="LoRA rank")] = None,
    locales: Annotated[
        int, typer.Option(help="number of locales (one model each in an independent schedule)")
    ] = 52,
    strategy: Annotated[
        str | None,
        typer.Option(help="also show this strategy's cost (a built-in name or module:Class)"),
    ] = None,
    settings: Annotated[
        list[str] | None,
        typer.Option("--set", help="a setting of --strategy, e.g. --set mem_size=50"),
    ] = None,
    train_size: Annotated[
        int | None,
        typer.Option(
            help="training utterances per locale, for a strategy's memory "
            "(default: MASSIVE 1.1's train split)"
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Print the trainable parameters of METHOD on MODEL, counted as in the paper's Table 1.

    With --strategy, also what the strategy holds besides the method once the run is over:
    its extra parameters (added to the counts), stored values and memory utterances.
    """
    import yaml

    from xlcl.methods import method as make_method
    from xlcl.params import count_parameters
    from xlcl.strategies import resolve_settings

    if settings and strategy is None:
        fail("--set gives a strategy's settings: add --strategy NAME")
    try:
        resolved = None
        if strategy is not None:
            raw: dict[str, object] = {"name": strategy}
            for setting in settings or []:
                key, sep, text = setting.partition("=")
                if not sep or not key:
                    fail(f"--set {setting!r}: expected key=value, e.g. mem_size=50")
                raw[key.removeprefix("strategy.")] = yaml.safe_load(text) if text else None
            resolved = resolve_settings(raw)
        sizes = {} if train_size is None else {"train_size": train_size}
        count = count_parameters(make_method(method, rank), model, locales, resolved, **sizes)
    except ValueError as error:
        fail(str(error))
    cost = count.strategy_cost
    if as_json:
        payload: dict[str, object] = {
            "trainable": count.trainable,
            "total": count.total,
            "counted_model": count.counted_model,
        }
        if resolved is not None and cost is not None:
            payload |= {"strategy": resolved, "strategy_cost": asdict(cost)}
        typer.echo(json.dumps(payload))
        return
    typer.echo(f"trainable  {count.trainable:>16,d}  ({count.trainable / 1e6:,.2f} M)")
    typer.echo(f"total      {count.total:>16,d}  ({count.total / 1e6:,.2f} M)")
    typer.echo(f"counted    {count.counted_model}")
    if resolved is not None and cost is not None:
        described = " ".join(f"{k}={v}" for k, v in resolved.items() if k != "name")
        typer.echo(f"strategy   {resolved['name']} {described}".rstrip())
        typer.echo(f"  extra parameters   {cost.extra_parameters:>16,d}  (in the counts above)")
        typer.echo(f"  stored values      {cost.stored_values:>16,d}")
        typer.echo(f"  memory utterances  {cost.memory_utterances:>16,d}")
