"""Stable hashing and seeded randomness for the mock provider.

Everything the mock produces comes from a SHA-256 digest of its inputs, never from Python's
``hash()`` (salted per process) or global random state, so the same request gives the same output
in every process, and a different seed gives a different one.
"""

from __future__ import annotations

import hashlib
import random
from typing import Any

import msgspec
import numpy as np


def _as_bytes(part: Any) -> bytes:
    if isinstance(part, bytes):
        return part
    if isinstance(part, str):
        return part.encode()
    # Structs, lists, numbers, None: msgspec's JSON encoding is stable for equal values.
    return msgspec.json.encode(part)


def digest(*parts: Any) -> bytes:
    """SHA-256 over ``parts``, each length-prefixed so ("ab", "c") differs from ("a", "bc")."""
    h = hashlib.sha256()
    for part in parts:
        data = _as_bytes(part)
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)
    return h.digest()


def seed_part(seed: int | None) -> Any:
    """The seed's share of a digest. ``None`` stays a fixed marker, so the output is then derived
    from the input alone and is still reproducible."""
    return "seed:auto" if seed is None else f"seed:{seed}"


def rng(*parts: Any) -> random.Random:
    """A ``random.Random`` seeded from the digest of ``parts`` (int seeds are not salted)."""
    return random.Random(int.from_bytes(digest(*parts), "big"))


def np_rng(*parts: Any) -> np.random.Generator:
    return np.random.default_rng(int.from_bytes(digest(*parts)[:16], "big"))


def fraction(*parts: Any) -> float:
    """A number in [0, 1) from the digest of ``parts``."""
    return int.from_bytes(digest(*parts)[:8], "big") / 2**64


def bucket(*parts: Any, size: int = 1000) -> int:
    """The digest of ``parts`` modulo ``size``: used to fail a deterministic share of inputs."""
    return int.from_bytes(digest(*parts)[:8], "big") % size
