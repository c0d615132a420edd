"""A running job's image previews: the latest one as a small JPEG and a ``preview`` event.

Each image a pipeline makes (``ctx.generate_image``) asks its provider for :data:`JOB_PREVIEWS`
previews (``ImageJob.partial_images``). Each one that comes back is shrunk to a thumbnail of at
most :data:`THUMB_SIDE` pixels a side, written over ``preview.jpg`` in the job's folder, and
announced as a ``preview`` event whose data is small: the file's path (under ``/v1/files/``), the
model, which preview of how many, and the size of the image being made. The web UI's job page and
the TUI's job screen show the latest while the job runs. Previews are best effort: one that
cannot be written is logged and dropped, never the job's failure.
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..atomic import write_atomic

if TYPE_CHECKING:
    from .context import JobContext

log = logging.getLogger("loom.jobs")

#: Previews asked for per image a pipeline makes.
JOB_PREVIEWS = 2
#: The longest side of a preview's thumbnail, in pixels.
THUMB_SIDE = 192
#: The file a job's latest preview is written to, in its folder.
PREVIEW_FILE = "preview.jpg"


def thumbnail(image: bytes) -> tuple[bytes, int, int]:
    """``image`` (PNG or any picture PIL reads) as a JPEG of at most THUMB_SIDE a side; with the
    picture's own width and height."""
    from PIL import Image

    img = Image.open(io.BytesIO(image))
    img.load()
    width, height = img.size
    small = img.convert("RGB")
    small.thumbnail((THUMB_SIDE, THUMB_SIDE))
    buf = io.BytesIO()
    small.save(buf, format="JPEG", quality=80)
    return buf.getvalue(), width, height


class JobPreviews:
    """Turns one job's previews (from any thread) into ``preview.jpg`` and ``preview`` events."""

    def __init__(self, ctx: JobContext) -> None:
        self.ctx = ctx
        self.path = f"{ctx.output_dir}/{PREVIEW_FILE}"
        self._writes: set[asyncio.Future] = set()

    def listener(self, model: str) -> Callable[[bytes, int], None]:
        """A ``RunContext`` preview callback for one image call on ``model`` (made on the loop)."""
        loop = asyncio.get_running_loop()

        def on_preview(image: bytes, index: int) -> None:
            loop.call_soon_threadsafe(self._write, model, image, index)

        return on_preview

    async def settle(self) -> None:
        """Wait for the previews handed over so far to be written (so none lands after the image,
        or after the job's end)."""
        await asyncio.sleep(0)  # those the worker sent just before its answer
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)

    def _write(self, model: str, image: bytes, index: int) -> None:
        # A thumbnail and a file write: off the loop.
        future = asyncio.ensure_future(asyncio.to_thread(self._save, model, image, index))
        self._writes.add(future)
        future.add_done_callback(self._writes.discard)

    def _save(self, model: str, image: bytes, index: int) -> None:
        try:
            data, width, height = thumbnail(image)
            write_atomic(self.ctx.services.files.root / self.path, data)
        except Exception as e:  # a preview is never worth the job
            log.warning("job %s: a preview from %s could not be written: %s", self.ctx.job_id, model, e)
            return
        self.ctx.emit(
            "preview",
            {"path": self.path, "model": model, "index": index, "of": JOB_PREVIEWS, "width": width, "height": height},
        )
