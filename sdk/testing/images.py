"""Tiny PNGs without Pillow: a test image to feed providers, and a reader for the size of theirs."""

from __future__ import annotations

import struct
import zlib

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunk(kind: bytes, data: bytes) -> bytes:
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


def make_png(width: int = 32, height: int = 32, *, seed: int = 0) -> bytes:
    """An RGB gradient PNG of ``width`` x ``height``; ``seed`` shifts the colours."""
    rows = bytearray()
    for y in range(height):
        rows.append(0)  # filter type: none
        for x in range(width):
            rows += bytes(
                (
                    (x * 255 // max(1, width - 1) + seed) % 256,
                    (y * 255 // max(1, height - 1) + 2 * seed) % 256,
                    (128 + 3 * seed) % 256,
                )
            )
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(bytes(rows))) + _chunk(b"IEND", b"")


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's header; ValueError if ``data`` is not a PNG."""
    if not isinstance(data, (bytes, bytearray)) or not data.startswith(PNG_SIGNATURE):
        raise ValueError(f"not a PNG (starts with {bytes(data[:8])!r})")
    if len(data) < 24 or data[12:16] != b"IHDR":
        raise ValueError("PNG without an IHDR header")
    return struct.unpack(">II", data[16:24])
