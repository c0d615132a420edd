"""Shows a candidate's image in the terminal.

Where the terminal draws graphics (Sixel, Kitty's protocol) textual-image does it; everywhere
else each cell is a '▀' whose foreground is one pixel and background the pixel under it.
Whether the terminal has graphics is asked before the app starts (:mod:`loom.tui.graphics`).
"""

from __future__ import annotations

from typing import Any, cast

from PIL import Image as PILImage
from rich.color import Color
from rich.segment import Segment
from rich.style import Style
from textual.app import ComposeResult
from textual.containers import Container
from textual.strip import Strip
from textual.widget import Widget

from .. import graphics


def half_blocks(image: PILImage.Image, width: int, height: int) -> list[Strip]:
    """``image`` fitted into width x height cells, two pixels a cell, centred."""
    if width <= 0 or height <= 0:
        return []
    img = image.convert("RGB")
    scale = min(width / img.width, 2 * height / img.height)
    w, h = max(1, round(img.width * scale)), max(1, round(img.height * scale))
    img = img.resize((w, h), PILImage.Resampling.BILINEAR)
    px = img.load()
    assert px is not None, "a loaded image has pixels"
    pad = (width - w) // 2
    blank = Segment(" " * pad) if pad else None
    strips = []
    for y in range(0, h, 2):
        segments = [blank] if blank else []
        for x in range(w):
            top = px[x, y]
            bottom = px[x, y + 1] if y + 1 < h else None
            style = Style.from_color(_rgb(top), _rgb(bottom) if bottom is not None else None)
            segments.append(Segment("▀", style))
        strips.append(Strip(segments, pad + w))
    return strips


def _rgb(p: float | tuple[int, ...]) -> Color:
    # Pixels of an RGB image (half_blocks converts to RGB first) are (r, g, b) tuples.
    r, g, b = cast(tuple[int, int, int], p)
    return Color.from_rgb(r, g, b)


class HalfBlockImage(Widget):
    """A PIL image drawn with half blocks; re-fitted when the widget is resized."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self._image: PILImage.Image | None = None
        self._strips: list[Strip] = []
        self._fitted: tuple[int, int] | None = None

    @property
    def image(self) -> PILImage.Image | None:
        return self._image

    @image.setter
    def image(self, image: PILImage.Image | None) -> None:
        self._image, self._fitted = image, None
        self.refresh()

    def render_line(self, y: int) -> Strip:
        size = (self.content_size.width, self.content_size.height)
        if self._image is None:
            return Strip.blank(size[0])
        if self._fitted != size:
            self._strips, self._fitted = half_blocks(self._image, *size), size
        strip = self._strips[y] if y < len(self._strips) else Strip.blank(size[0])
        return strip.extend_cell_length(size[0])


class ImageView(Container):
    """The selected candidate's image: graphics where the terminal has them, half blocks elsewhere."""

    def compose(self) -> ComposeResult:
        if graphics.WIDGET is not None:
            yield graphics.WIDGET(id="picture")
        else:
            yield HalfBlockImage(id="picture")

    def set_image(self, image: PILImage.Image | None) -> None:
        # textual-image's widget or a HalfBlockImage: both draw what is set as ``image``.
        picture: Any = self.query_one("#picture")
        picture.image = image
