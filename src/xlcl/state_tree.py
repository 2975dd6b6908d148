"""State trees: nested Python state stored without pickle, as JSON plus safetensors.

A state tree is dicts (any key types), lists, tuples, strings, numbers (big ints, inf and
NaN included), booleans, None, torch tensors and numpy arrays: optimizer and scheduler
states, random-generator states, a strategy's state. `write_state_tree` stores one as
``NAME.json`` (tagged JSON) and ``NAME.safetensors`` (every tensor and array);
`read_state_tree` gives back an equal tree. Reading one never runs code, so checkpoints
from someone else are safe to open.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from xlcl.atomic import atomic_write, atomic_write_bytes

STATE_TREE_FORMAT = "xlcl-state-tree-1"


@dataclass(frozen=True)
class EncodedStateTree:
    """A state tree as stored: a JSON-ready `document` and the `tensors` it names by key."""

    document: dict[str, Any]
    tensors: dict[str, torch.Tensor]


def encode_state_tree(tree: Any) -> EncodedStateTree:
    """Split `tree` into JSON and tensors; `decode_state_tree` gives back an equal tree.

    A state tree is made of dicts (keys: str, int, float, bool, None or tuples of them),
    lists, tuples, str, int (any size), float (inf and nan too), bool, None, torch tensors
    and numpy arrays and scalars. Tensors come back as plain tensors of the same dtype and
    shape on the same device; numpy arrays and scalars as numpy, of the same dtype; other
    mappings as dicts. Anything else raises `TypeError`, naming where it is in the tree.
    """
    encoder = _Encoder()
    document = {"format": STATE_TREE_FORMAT, "tree": encoder.encode(tree, "tree")}
    return EncodedStateTree(document, encoder.tensors)


def decode_state_tree(encoded: EncodedStateTree) -> Any:
    """The tree `encode_state_tree` encoded."""
    if encoded.document.get("format") != STATE_TREE_FORMAT:
        raise ValueError(f"not a state tree of format {STATE_TREE_FORMAT}")
    return _decode(encoded.document["tree"], encoded.tensors)


def write_state_tree(directory: Path, name: str, tree: Any) -> None:
    """Store `tree` as ``NAME.json`` and ``NAME.safetensors`` in `directory`.

    Each file is replaced atomically, not the pair: a checkpoint writes them into its
    temporary directory.
    """
    encoded = encode_state_tree(tree)
    json_file, tensor_file = state_tree_files(name)
    atomic_write(directory / tensor_file, lambda path: save_file(encoded.tensors, path))
    text = json.dumps(encoded.document, allow_nan=False) + "\n"
    atomic_write_bytes(directory / json_file, text.encode())


def read_state_tree(directory: Path, name: str) -> Any:
    """The tree `write_state_tree` stored as `name` in `directory`."""
    json_file, tensor_file = state_tree_files(name)
    document = json.loads((directory / json_file).read_text())
    return decode_state_tree(EncodedStateTree(document, load_file(directory / tensor_file)))


def state_tree_files(name: str) -> tuple[str, str]:
    return f"{name}.json", f"{name}.safetensors"


def has_state_tree(directory: Path, name: str) -> bool:
    json_file, _ = state_tree_files(name)
    return (directory / json_file).is_file()


_KEY_TYPES = (str, int, float, bool, type(None))


class _Encoder:
    """Encodes one tree: JSON values, with tagged objects (``{"$tag": ...}``) for the rest.

    A dict is a JSON object when its keys are strings and none starts with ``$``, so a JSON
    object with a ``$`` key is always a tag.
    """

    def __init__(self) -> None:
        self.tensors: dict[str, torch.Tensor] = {}
        self._storages: set[int] = set()

    def encode(self, value: Any, where: str) -> Any:
        kind = type(value)
        if isinstance(value, torch.Tensor):
            return {"$tensor": {"key": self._add(value, where), "device": str(value.device)}}
        if isinstance(value, np.ndarray):
            return {"$ndarray": self._add_array(value, where)}
        if isinstance(value, np.generic):
            return {"$numpy_scalar": self._add_array(np.asarray(value), where)}
        if value is None or kind in (str, bool, int):
            return value
        if kind is float:
            return value if math.isfinite(value) else {"$float": repr(value)}
        if kind is list:
            return [self.encode(item, f"{where}[{i}]") for i, item in enumerate(value)]
        if kind is tuple:
            return {"$tuple": [self.encode(item, f"{where}[{i}]") for i, item in enumerate(value)]}
        if isinstance(value, Mapping):
            if all(type(key) is str and not key.startswith("$") for key in value):
                return {key: self.encode(item, f"{where}[{key!r}]") for key, item in value.items()}
            return {"$dict": [self._pair(key, item, where) for key, item in value.items()]}
        raise TypeError(f"{where}: a state tree cannot hold {kind.__qualname__}")

    def _pair(self, key: Any, item: Any, where: str) -> list[Any]:
        if not _is_plain_key(key):
            raise TypeError(f"{where}: a state tree's dict keys cannot be {type(key).__qualname__}")
        return [self.encode(key, where), self.encode(item, f"{where}[{key!r}]")]

    def _add(self, tensor: torch.Tensor, where: str) -> str:
        if tensor.layout != torch.strided:
            raise TypeError(f"{where}: a state tree cannot hold a {tensor.layout} tensor")
        stored = tensor.detach().to("cpu").contiguous()
        storage = stored.untyped_storage().data_ptr()
        if storage in self._storages:  # safetensors refuses tensors that share memory
            stored = stored.clone()
            storage = stored.untyped_storage().data_ptr()
        self._storages.add(storage)
        key = str(len(self.tensors))
        self.tensors[key] = stored
        return key

    def _add_array(self, array: np.ndarray, where: str) -> str:
        if not (array.flags.c_contiguous and array.flags.writeable):
            array = array.copy(order="C")  # torch.from_numpy wants both
        try:
            tensor = torch.from_numpy(array)
        except TypeError as error:
            raise TypeError(f"{where}: a state tree cannot hold {array.dtype} arrays") from error
        return self._add(tensor, where)


def _is_plain_key(key: Any) -> bool:
    if type(key) is tuple:
        return all(_is_plain_key(item) for item in key)
    return type(key) in _KEY_TYPES


def _decode(value: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    if isinstance(value, list):
        return [_decode(item, tensors) for item in value]
    if not isinstance(value, dict):
        return value
    tag = next((key for key in value if key.startswith("$")), None)
    if tag is None:
        return {key: _decode(item, tensors) for key, item in value.items()}
    body = value[tag]
    if tag == "$tensor":
        tensor = tensors[body["key"]]
        return tensor if body["device"] == "cpu" else tensor.to(body["device"])
    if tag == "$ndarray":
        return tensors[body].numpy()
    if tag == "$numpy_scalar":
        return tensors[body].numpy()[()]
    if tag == "$float":
        return float(body)
    if tag == "$tuple":
        return tuple(_decode(item, tensors) for item in body)
    if tag == "$dict":
        return {_decode(key, tensors): _decode(item, tensors) for key, item in body}
    raise ValueError(f"unknown state tree tag {tag}")
