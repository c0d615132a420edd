"""Seed 002 (Story Agent, Django): its AJAX routes and story page.

- ``POST /generate/`` (form fields or JSON: ``prompt``) -> ``{success: true, session_id, status,
  progress}``: an ``illustrated_story`` job (story, character and background agents, the two
  images merged).
- ``GET /status/{session_id}/`` -> ``{status, progress, story_id?, error_message?}`` with the
  seed's statuses (``pending``, ``generating_story``, ``generating_images``, ``completed``,
  ``failed``) and percentages (10-30 story, 50-90 images, 100); the seed's page polls it every 2 s
  and goes to ``/story/{story_id}/`` once ``completed``.
- ``GET /story/{story_id}/``: the story page (HTML; JSON with ``Accept: application/json``): the
  seed's ``Story`` fields and its ``GeneratedImage``s (character, background, combined), served
  at ``/media/...``. A story whose images failed is shown without them (graceful degradation).
"""

from __future__ import annotations

import html
import mimetypes
from typing import Any

from litestar import Request, Response, get, post
from litestar.params import FromPath
from loom.sdk.errors import LoomError, NotFound
from loom.sdk.routes import RouteContext

from .answers import SMALL_BODY, BadBody, answer, iso, json_object
from .options import SeedApiOptions

PIPELINE = "illustrated_story"
STATUSES = ("pending", "generating_story", "generating_images", "completed", "failed")


def seed_status(job: dict[str, Any]) -> tuple[str, int]:
    """The seed's ``GenerationSession`` status and ``progress_percentage`` for a job."""
    state, percent = job["state"], int(job["progress"] or 0)
    if state == "succeeded":
        return "completed", 100
    if state in ("failed", "cancelled", "interrupted"):
        return "failed", percent
    if state == "queued":
        return "pending", 0
    stage = job.get("stage") or ""
    if stage in STATUSES and stage not in ("completed", "failed"):
        return stage, percent
    return ("generating_story" if percent < 50 else "generating_images"), percent


def media_url(path: str | None) -> str | None:
    return f"/media/{path}" if path else None


def story_view(job: dict[str, Any]) -> dict[str, Any]:
    result = job["result"] or {}
    params = job.get("params") or {}
    images = result.get("images") or {}
    prompts = result.get("prompts") or {}
    return {
        "id": job["id"],
        "title": result.get("title"),
        "prompt": params.get("prompt"),
        "story_text": result.get("story"),
        "character_description": result.get("character_description"),
        "background_description": result.get("background_description"),
        "created_at": iso(job["created_at"]),
        "images": [
            {"image_type": kind, "image_file": media_url(images[kind]["path"]), "prompt_used": prompts.get(kind)}
            for kind in ("character", "background", "combined")
            if images.get(kind)
        ],
        "errors": result.get("errors") or [],
    }


def story_page(story: dict[str, Any]) -> str:
    e = html.escape
    combined = next((i for i in story["images"] if i["image_type"] == "combined"), None)
    figures = "".join(
        f'<figure class="{e(i["image_type"])}"><img src="{e(i["image_file"])}" alt="{e(i["image_type"])}">'
        f"<figcaption>{e(i['image_type'].title())}</figcaption></figure>"
        for i in story["images"]
    )
    notes = "".join(f"<li>{e(x.get('stage', ''))}: {e(x.get('message', ''))}</li>" for x in story["errors"])
    paragraphs = "".join(f"<p>{e(p)}</p>" for p in (story["story_text"] or "").split("\n") if p.strip())
    hero = f'<img class="first_image" src="{e(combined["image_file"])}" alt="story">' if combined else ""
    return (
        "<!doctype html><html><head><meta charset=utf-8>"
        f"<title>{e(story['title'] or 'Story')}</title></head><body>"
        f"<h1>{e(story['title'] or 'Untitled')}</h1>{hero}<article>{paragraphs}</article>"
        f"<h2>Character</h2><p class=character_description>{e(story['character_description'] or '')}</p>"
        f"<h2>Background</h2><p class=background_description>{e(story['background_description'] or '')}</p>"
        f"<section class=images>{figures}</section>"
        + (f"<ul class=errors>{notes}</ul>" if notes else "")
        + "</body></html>"
    )


def build(loom: RouteContext, options: SeedApiOptions) -> list[Any]:
    @post("/generate/", request_max_body_size=SMALL_BODY, include_in_schema=False)
    async def generate(request: Request) -> Response:
        try:
            body = await json_object(request)
        except BadBody as e:
            return answer({"success": False, "error": str(e)}, 400)
        prompt = body.get("prompt") or body.get("story_prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            return answer({"success": False, "error": "Please enter a story prompt."}, 400)
        try:
            job = await loom.start_job(PIPELINE, {"prompt": prompt.strip()})
        except LoomError as e:
            return answer({"success": False, "error": e.message}, 400)
        return answer({"success": True, "session_id": job["id"], "status": "pending", "progress": 0})

    @get("/status/{session_id:str}/", include_in_schema=False)
    async def status(session_id: FromPath[str]) -> Response:
        job = loom.get_job(session_id)
        if job is None or job["pipeline"] != PIPELINE:
            return answer({"error": "Session not found"}, 404)
        state, percent = seed_status(job)
        body: dict[str, Any] = {"status": state, "progress": percent, "session_id": session_id}
        if state == "completed":
            body["story_id"] = job["id"]
        if state == "failed":
            body["error_message"] = (job["error"] or {}).get("message") or job["state"]
        return answer(body)

    @get("/story/{story_id:str}/", include_in_schema=False)
    async def story(request: Request, story_id: FromPath[str]) -> Response:
        job = loom.get_job(story_id)
        if job is None or job["pipeline"] != PIPELINE or job["state"] != "succeeded":
            if "application/json" in request.headers.get("accept", ""):
                return answer({"error": "Story not found"}, 404)
            return Response(content="<h1>Not Found</h1>", status_code=404, media_type="text/html")
        view = story_view(job)
        if "application/json" in request.headers.get("accept", ""):
            return answer(view)
        return Response(content=story_page(view), media_type="text/html")

    @get("/media/{path:path}", include_in_schema=False)
    async def media(path: FromPath[str]) -> Response:
        rel = path.lstrip("/")
        try:
            data = loom.read_file(rel)
        except NotFound:
            return Response(content="<h1>Not Found</h1>", status_code=404, media_type="text/html")
        return Response(content=data, media_type=mimetypes.guess_type(rel)[0] or "application/octet-stream")

    return [generate, status, story, media]
