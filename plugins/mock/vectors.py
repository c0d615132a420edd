"""Deterministic embedding vectors for texts and images.

A text's vector is the sum of per-word random vectors plus a small text-specific part, so texts that
share words point in similar directions: retrieval over mock embeddings behaves plausibly. An
image's vector is a fixed random projection of its downsampled pixels, so similar images are close.
"""

from __future__ import annotations

import functools
import re

import numpy as np
from PIL import Image

from .determinism import np_rng

_WORD = re.compile(r"\w+")
_PIXELS = 16  # images are reduced to 16x16 RGB before projecting


@functools.lru_cache(maxsize=16384)
def _word_vector(word: str, dimensions: int) -> np.ndarray:
    return np_rng("mock-embed-word", word, dimensions).standard_normal(dimensions)


@functools.lru_cache(maxsize=4)
def _projection(dimensions: int) -> np.ndarray:
    return np_rng("mock-embed-image", dimensions).standard_normal((dimensions, _PIXELS**2 * 3))


def _unit(v: np.ndarray) -> list[float]:
    norm = float(np.linalg.norm(v))
    if norm == 0.0 or not np.isfinite(norm):  # cannot happen with Gaussian parts; keep it safe
        v, norm = np.ones_like(v), float(np.sqrt(len(v)))
    return (v / norm).tolist()


def text_vector(text: str, dimensions: int) -> list[float]:
    # Depends on the text only (not on the batch, not on a seed): the same text, the same vector.
    v = 0.5 * np_rng("mock-embed-text", text, dimensions).standard_normal(dimensions)
    for word in _WORD.findall(text.lower()):
        v = v + _word_vector(word, dimensions)
    return _unit(v)


def image_vector(img: Image.Image, dimensions: int) -> list[float]:
    small = img.convert("RGB").resize((_PIXELS, _PIXELS), Image.Resampling.BOX)
    pixels = np.asarray(small, dtype=np.float64).ravel() / 255.0 - 0.5
    return _unit(_projection(dimensions) @ pixels)
