"""What every seed's routes share: JSON answers, bodies read in the seed's way, data URIs."""

from __future__ import annotations

import base64
import json
import mimetypes
import time
from datetime import UTC, datetime
from typing import Any

from litestar import Request, Response

#: Bodies of routes that carry no image; image-bearing routes allow more (a data URI).
SMALL_BODY = 1 << 20
IMAGE_BODY = 32 << 20


def answer(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(content=body, status_code=status, media_type="application/json", headers=headers)


class BadBody(Exception):
    """A body that is not what the route reads (not JSON, not an object)."""


async def json_object(request: Request) -> dict[str, Any]:
    """The body as a JSON object; a form body (a browser's form post) is read as one too."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        form = await request.form()
        return {k: v for k, v in form.items() if isinstance(v, str)}
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise BadBody("the body is not JSON") from None
    if not isinstance(value, dict):
        raise BadBody("the body must be a JSON object")
    return value


def data_uri(data: bytes, name: str = "image.png") -> str:
    media_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return f"data:{media_type};base64,{base64.b64encode(data).decode()}"


def iso(ts: float | None = None) -> str:
    """A time as JavaScript's ``toISOString()`` writes it (UTC, milliseconds, ``Z``)."""
    moment = datetime.fromtimestamp(time.time() if ts is None else ts, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def session_of(job: dict[str, Any]) -> str:
    """The job's session folder name (``ses-HHMMSS-<job id>``), seed 004's ``sessionId``."""
    return str(job["output_dir"]).rstrip("/").rsplit("/", 1)[-1]


def date_of(job: dict[str, Any]) -> str:
    """The dated folder the job's output is in (``YYYY-MM-DD``)."""
    return str(job["output_dir"]).rstrip("/").split("/")[-2]
