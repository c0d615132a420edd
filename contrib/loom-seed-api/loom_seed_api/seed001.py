"""Seed 001 (the story-image bidirectional generator): its FastAPI submit-then-poll routes.

- ``POST /generate-story`` ``{"image": "data:image/png;base64,..."}`` -> ``{job_id, status:
  "pending"}``: an ``image_to_story`` job.
- ``POST /generate-image`` ``{"story": "..."}`` -> the same: a ``story_to_image`` job.
- ``GET /job/{job_id}`` -> ``{job_id, status: pending | completed | failed, result?, error?}``;
  ``result`` is ``{"story": ...}`` or ``{"image": "data:image/png;base64,..."}`` (a data URI, as
  the seed returned, not a URL).

Errors are FastAPI's: 422 ``{detail: [...]}`` for a bad body, 404 ``{detail: "Job not found"}``.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, post
from litestar.params import FromPath
from loom.sdk.errors import LoomError, NotFound
from loom.sdk.routes import RouteContext

from .answers import IMAGE_BODY, SMALL_BODY, BadBody, answer, data_uri, json_object
from .options import SeedApiOptions
from .seed004_services import invalid

PIPELINES = ("image_to_story", "story_to_image")
#: The seed's TOP_K_RETRIEVAL.
TOP_K = 5


def status_of(job: dict[str, Any]) -> str:
    return {"succeeded": "completed", "failed": "failed", "cancelled": "failed", "interrupted": "failed"}.get(
        job["state"], "pending"
    )


def build(loom: RouteContext, options: SeedApiOptions) -> list[Any]:
    async def submit(request: Request, field: str, pipeline: str) -> Response:
        try:
            body = await json_object(request)
        except BadBody as e:
            return invalid("body", str(e), "json_invalid")
        value = body.get(field)
        if value is None:
            return invalid(field, "Field required", "missing")
        if not isinstance(value, str):
            return invalid(field, "Input should be a valid string", "string_type")
        try:
            job = await loom.start_job(pipeline, {field: value, "k": TOP_K})
        except LoomError as e:
            return answer(
                {"detail": [{"loc": ["body", e.param or field], "msg": e.message, "type": "value_error"}]}, 422
            )
        return answer({"job_id": job["id"], "status": "pending"})

    @post("/generate-story", request_max_body_size=IMAGE_BODY, include_in_schema=False)
    async def generate_story(request: Request) -> Response:
        return await submit(request, "image", "image_to_story")

    @post("/generate-image", request_max_body_size=SMALL_BODY, include_in_schema=False)
    async def generate_image(request: Request) -> Response:
        return await submit(request, "story", "story_to_image")

    @get("/job/{job_id:str}", include_in_schema=False)
    async def job(job_id: FromPath[str]) -> Response:
        found = loom.get_job(job_id)
        if found is None or found["pipeline"] not in PIPELINES:
            return answer({"detail": "Job not found"}, 404)
        body: dict[str, Any] = {"job_id": job_id, "status": status_of(found)}
        if body["status"] == "completed":
            result = found["result"] or {}
            if found["pipeline"] == "image_to_story":
                body["result"] = {"story": result.get("story"), "title": result.get("title")}
            else:
                path = (result.get("image") or {}).get("path")
                try:
                    body["result"] = {"image": data_uri(loom.read_file(path), path) if path else None}
                except NotFound:
                    body["result"] = {"image": None}
        elif body["status"] == "failed":
            body["error"] = (found["error"] or {}).get("message") or found["state"]
        return answer(body)

    return [generate_story, generate_image, job]
