"""Seed 003 (AI-Persona): create-or-add a persona, look one up with short-lived image URLs.

The seed's backend took a name, a descriptive prompt and a motto tone, generated an image and a
motto, and upserted them by name (a new persona, or one more image for an existing one); a
lookup returned the persona's metadata with 60-second S3 URLs for its images. Here:

- ``POST /api/persona`` ``{name, prompt (or descriptive_prompt), motto_tone}`` runs a ``persona``
  job and answers the persona when it is done (201 when new, 200 when an image was added; 202
  ``{job_id, status}`` if it is still running after ``wait_seconds``);
- ``GET /api/persona/{name}`` -> ``{name, prompt, motto_tone, motto, mottos, images: [{url,
  expires_at, created_at, prompt}]}``; each ``url`` is ``/api/persona-image/<path>?exp=&sig=``,
  valid ``persona_url_seconds`` (60 by default) and openable by an ``<img>`` tag without a key
  (the signature is the credential; a tampered or expired one is a 403).
"""

from __future__ import annotations

import hashlib
import hmac
import mimetypes
import secrets
import time
from typing import Any
from urllib.parse import quote

from litestar import Request, Response, get, post
from litestar.params import FromPath
from loom.sdk.errors import LoomError, NotFound
from loom.sdk.routes import RouteContext

from .answers import SMALL_BODY, BadBody, answer, iso, json_object
from .options import SeedApiOptions

COLLECTION = "personas"
PIPELINE = "persona"


class Signer:
    """HMAC-signed, expiring image URLs (the key lives in memory: a restart ends them all,
    which for 60-second URLs is what S3's presigned URLs would have done anyway)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._key = secrets.token_bytes(32)

    def _sig(self, path: str, exp: int) -> str:
        return hmac.new(self._key, f"{path}\n{exp}".encode(), hashlib.sha256).hexdigest()

    def url(self, path: str, now: float | None = None) -> tuple[str, int]:
        exp = int((time.time() if now is None else now) + self.seconds)
        return f"/api/persona-image/{quote(path)}?exp={exp}&sig={self._sig(path, exp)}", exp

    def valid(self, path: str, exp: str | None, sig: str | None) -> bool:
        if not exp or not sig or not exp.isdigit():
            return False
        return int(exp) >= time.time() and hmac.compare_digest(self._sig(path, int(exp)), sig)


def persona_view(record: dict[str, Any], signer: Signer) -> dict[str, Any]:
    data = record["data"]
    images = []
    for item in data.get("images") or []:
        url, exp = signer.url(item["path"])
        images.append(
            {
                "url": url,
                "expires_at": iso(exp),
                "created_at": iso(item.get("created_at")),
                "prompt": item.get("prompt"),
            }
        )
    return {
        "name": data.get("name", record["key"]),
        "prompt": data.get("prompt"),
        "motto_tone": data.get("motto_tone"),
        "motto": data.get("motto"),
        "mottos": [m.get("motto") for m in data.get("mottos") or []],
        "images": images,
        "created_at": iso(record["created_at"]),
        "updated_at": iso(record["updated_at"]),
    }


def build(loom: RouteContext, options: SeedApiOptions) -> list[Any]:
    signer = Signer(options.persona_url_seconds)

    @post("/api/persona", request_max_body_size=SMALL_BODY, include_in_schema=False)
    async def create_or_add(request: Request) -> Response:
        try:
            body = await json_object(request)
        except BadBody as e:
            return answer({"error": str(e)}, 400)
        name = body.get("name")
        prompt = body.get("prompt") or body.get("descriptive_prompt")
        tone = body.get("motto_tone") or body.get("mottoTone") or "inspirational"
        for field, value in (("name", name), ("prompt", prompt), ("motto_tone", tone)):
            if not isinstance(value, str) or not value.strip():
                return answer({"error": f"Missing required field: {field}"}, 400)
        try:
            job = await loom.start_job(PIPELINE, {"name": name, "prompt": prompt, "motto_tone": tone})
            job = await loom.wait_job(job["id"], options.wait_seconds)
        except LoomError as e:
            return answer({"error": e.message}, 400)
        if job["state"] in ("queued", "running"):
            return answer({"job_id": job["id"], "status": "pending"}, 202)
        if job["state"] != "succeeded":
            return answer({"error": (job["error"] or {}).get("message") or f"persona job {job['state']}"}, 502)
        record = loom.get_record(COLLECTION, name)
        if record is None:
            return answer({"error": "the persona was not stored"}, 500)
        view = persona_view(record, signer)
        return answer(view, 201 if len(view["images"]) == 1 else 200)

    @get("/api/persona/{persona:str}", include_in_schema=False)
    async def lookup(persona: FromPath[str]) -> Response:
        try:
            record = loom.get_record(COLLECTION, persona)
        except LoomError as e:
            return answer({"error": e.message}, 400)
        if record is None:
            return answer({"error": f"No persona named '{persona}'"}, 404)
        return answer(persona_view(record, signer))

    @get("/api/persona-image/{path:path}", opt={"public": True}, include_in_schema=False)
    async def image(request: Request, path: FromPath[str]) -> Response:
        rel = path.lstrip("/")
        q = request.query_params
        if not signer.valid(rel, q.get("exp"), q.get("sig")):
            return answer({"error": "This image URL has expired or is not valid"}, 403)
        try:
            data = loom.read_file(rel)
        except NotFound:
            return answer({"error": "Image not found"}, 404)
        return Response(
            content=data,
            media_type=mimetypes.guess_type(rel)[0] or "application/octet-stream",
            headers={"Cache-Control": "private, max-age=60"},
        )

    return [create_or_add, lookup, image]
