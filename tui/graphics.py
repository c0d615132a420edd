"""Whether this terminal draws images (Sixel, Kitty's protocol), asked before Textual starts.

Asking means writing queries to the terminal and waiting for answers, which only works before
Textual takes the terminal over and can take a few hundred milliseconds, so ``loom tui`` asks in
a thread while the app's modules import. Tests never ask: images are drawn with half blocks.
"""

from __future__ import annotations

from typing import Any

#: textual-image's widget class when the terminal has graphics, else None.
WIDGET: Any = None


def probe() -> None:
    global WIDGET
    try:
        from textual_image import renderable, widget
    except Exception:  # not installed, or the terminal query failed: half blocks it is
        return
    if renderable.Image in (renderable.SixelImage, renderable.TGPImage):
        WIDGET = widget.Image
