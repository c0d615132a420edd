"""The retry rule for a job's model calls: a call whose model worker crashed is run again.

A crash (:class:`~loom.sdk.errors.WorkerCrashed`: a segfault, ``kill -9``, the OOM killer) takes
the model down with whatever it was running; the scheduler records it unloaded and the next call
loads it again. A job step that was running such a call is therefore repeated, up to the
pipeline's ``worker_crash_retries`` times (its default is the SDK's), rather than failing the job. A stream
(``chat``) is repeated from its start. Any other error fails the step as before, and a job that
was cancelled meanwhile is not retried.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from loom.sdk.errors import WorkerCrashed

T = TypeVar("T")


async def retrying_crashes(
    call: Callable[[], Awaitable[T]], retries: int, before_retry: Callable[[int, WorkerCrashed], None]
) -> T:
    """Await ``call()``; on WorkerCrashed, call ``before_retry(attempt, error)`` (which may raise,
    e.g. when the job was cancelled) and try again, at most ``retries`` times."""
    attempt = 0
    while True:
        try:
            return await call()
        except WorkerCrashed as e:
            if attempt >= retries:
                raise
            attempt += 1
            before_retry(attempt, e)
