"""An n-image call on a local model, run as work items of a few images each.

One work item holds the device until it ends, and the device runs one model at a time (unless
``parallel``): were the n images of a ``/v1/images/generations`` request one item, a chat
request arriving after it would wait for all of them. So the call is split into items of at most
``max_batch`` images (the model's setting; default 1). The first item keeps the call's
priority; the others go one level lower, so a chat request queued while an image is being made
starts as soon as that item ends: it waits for at most one item (one image by default), not for
the request. With ``max_batch`` > 1 the images of one item are made in one pipeline call, which
a runtime that batches (diffusers on a GPU) makes faster than one at a time.

Image ``i`` of a call is image 0 of the same job with seed ``seed + i`` (the image providers'
convention: diffusers seeds image i's generator with seed + i, the mock too), so a seeded
request gives the same images however it is split; an unseeded one gets a random base seed here.

Remote models are not split: their upstream takes n in one request, and they hold no device.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import TYPE_CHECKING, Any

import msgspec
from loom.sdk.calls import GenerateImages
from loom.sdk.errors import Cancelled
from loom.sdk.protocols import RunContext

from ..models import ModelEntry
from .queues import Priority, current_queue_position, current_work_id

if TYPE_CHECKING:
    from .core import Scheduler


def per_item(entry: ModelEntry) -> int:
    """Images one work item of ``entry`` makes."""
    return max(1, entry.config.max_batch or 1)


def to_split(entry: ModelEntry, call: Any) -> GenerateImages | None:
    """``call`` when it is an n-image call that runs as several items on ``entry``, else None."""
    if isinstance(call, GenerateImages) and entry.local and call.job.n > per_item(entry):
        return call
    return None


def split(call: GenerateImages, size: int) -> list[GenerateImages]:
    """The call as calls of at most ``size`` images, in order, seeded ``seed``, ``seed + k``, ..."""
    job = call.job
    base = job.seed if job.seed is not None else secrets.randbits(32)
    parts = []
    for first in range(0, job.n, size):
        part = msgspec.structs.replace(job, n=min(size, job.n - first), seed=(base + first) % 2**63)
        parts.append(GenerateImages(job=part))
    return parts


def lower(priority: Priority) -> Priority:
    return Priority(min(int(priority) + 1, int(Priority.BATCH)))


async def run_split(
    scheduler: Scheduler, entry: ModelEntry, call: GenerateImages, priority: Priority, ctx: RunContext | None
) -> list[bytes]:
    """Run ``call`` as items of :func:`per_item` images; their images in order. The items are all
    queued at once (the first one's id is the request's work id); the first error, a cancelled
    item included, cancels the others and is raised."""
    parts = split(call, per_item(entry))
    contexts = [_child(ctx, i, len(parts)) for i in range(len(parts))]
    items = [
        scheduler._submit(entry, part, priority if i == 0 else lower(priority), c)
        for i, (part, c) in enumerate(zip(parts, contexts, strict=True))
    ]
    current_work_id.set(items[0].id)
    current_queue_position.set(items[0].position)  # the header speaks of the first, as the id does

    def failed(fut: asyncio.Future) -> None:
        # Runs before the dispatch that the failure triggers: no sibling starts after it.
        if fut.cancelled() or fut.exception() is not None:
            for item in items:
                scheduler.dispatcher.abandon(item, "another image of the request failed")

    for item in items:
        item.done.add_done_callback(failed)
    tasks = [asyncio.ensure_future(scheduler.result(item)) for item in items]
    try:
        done = await asyncio.gather(*tasks, return_exceptions=True)
    except BaseException:  # the caller was cancelled (its client went away)
        for task, c in zip(tasks, contexts, strict=True):
            c.cancel()
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    errors = [r for r in done if isinstance(r, BaseException)]
    if errors:
        # The error that ended the request, not the cancellations it caused in the others.
        raise next((e for e in errors if not isinstance(e, Cancelled)), errors[0])
    return [image for part in done if not isinstance(part, BaseException) for image in part]


def _child(parent: RunContext | None, index: int, count: int) -> RunContext:
    """A context for one item: cancelled with the call's, reporting progress and previews to it."""
    if parent is None:
        return RunContext()

    def report(done: int, total: int, message: str) -> None:
        parent.report(done, total, f"images {index + 1} of {count}: {message}" if message else message)

    child = RunContext(on_progress=report, on_preview=parent.show, device=parent.device, credentials=parent.credentials)
    parent.add_cancel_callback(child.cancel)
    return child
