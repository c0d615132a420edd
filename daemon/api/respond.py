"""Small helpers for answering: JSON bodies encoded by msgspec, provenance headers."""

from __future__ import annotations

import msgspec
from litestar import MediaType, Response

from ..models import ModelEntry
from ..scheduler import current_queue_position, current_work_id

#: The response header with the place in line of work that had to queue.
QUEUE_POSITION = "x-loom-queue-position"


def json_response(body, status_code: int = 200, headers: dict | None = None) -> Response:
    return Response(
        content=msgspec.json.encode(body),
        status_code=status_code,
        media_type=MediaType.JSON,
        headers=headers,
    )


#: The response headers :func:`served_by` sets, as the OpenAPI document describes them.
PROVENANCE = {
    "x-loom-model": "The model that served the answer (a fallback may have stood in)",
    "x-loom-provider": "Its provider",
    "x-loom-work-id": "The scheduler's id of the work (POST /admin/work/{work_id}/cancel takes it)",
    "x-loom-queue-position": (
        "Sent when the work had to queue: its place among the model's work waiting for a slot when "
        "it arrived (1: next). The answer starts once the work has started, streamed or not"
    ),
    "x-loom-trace-id": "When traces are on ([daemon.tracing]): the request's OpenTelemetry trace id",
}


def served_by(entry: ModelEntry) -> dict[str, str]:
    """Which model and provider served the answer (fallbacks make this worth saying), and the
    scheduler's work id (``POST /admin/work/{id}/cancel`` takes it), and its place in line when
    it had to queue."""
    headers = {"x-loom-model": entry.id, "x-loom-provider": entry.spec.provider}
    work_id = current_work_id.get()
    if work_id is not None:
        headers["x-loom-work-id"] = work_id
        position = current_queue_position.get()
        if position:
            headers[QUEUE_POSITION] = str(position)
    return headers
