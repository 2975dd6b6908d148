"""Plug-ins by name: a built-in name from a lazy ``"module:attr"`` map, or the user's own
``"package.module:Class"`` importable from PYTHONPATH. Strategies and tasks resolve here.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Mapping
from typing import TypeVar

T = TypeVar("T")


class PluginError(ValueError):
    """A plug-in name that cannot be resolved to a class of the expected kind."""


def resolve_plugin(key: str, name: str, builtin: Mapping[str, str], base: type[T]) -> type[T]:
    """The class config key `key` names: ``builtin[name]``, or ``name`` as ``module:Class``.

    Errors are one line that starts with `key`: unknown names get a did-you-mean, and
    the class must derive from `base`.
    """
    target = builtin.get(name)
    if target is None:
        if ":" not in name:
            close = difflib.get_close_matches(name, list(builtin), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise PluginError(
                f"{key}: unknown name {name!r}{hint} (built-in: {', '.join(builtin)}; "
                "or 'package.module:Class')"
            )
        target = name
    module_name, _, attribute = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise PluginError(f"{key}: cannot import {module_name!r}: {error}") from None
    found = getattr(module, attribute, None)
    if found is None:
        raise PluginError(f"{key}: module {module_name!r} has no attribute {attribute!r}")
    if not (isinstance(found, type) and issubclass(found, base)):
        raise PluginError(
            f"{key}: {target!r} is not a subclass of {base.__module__}.{base.__name__}"
        )
    return found
