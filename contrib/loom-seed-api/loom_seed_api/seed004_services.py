"""Seed 004's local Python services, as its Node orchestrator calls them (FastAPI's shapes).

- Flux (``{flux_prefix}``): ``POST /generate`` ``{prompt, height, width, steps, model?, guidance?,
  seed?, negativePrompt?}`` -> ``{localPath, metadata}`` (the PNG on the daemon's disk, where the
  orchestrator reads it), ``GET /health``.
- Vision (``{vision_prefix}``): ``POST /evaluate`` ``{image_path, prompt}`` -> ``{clip_score,
  aesthetic_score}`` as the seed's architecture document has it, ``POST /analyze``
  ``{imagePath | imageUrl, prompt}`` -> ``{alignmentScore (0-100), aestheticScore (0-10),
  analysis}`` as its vision_service.py answers, ``GET /health``.

Errors are FastAPI's: 422 ``{detail: [{loc, msg, type}]}`` for a bad body, 500 ``{detail}`` when
generation fails (the orchestrator reads ``detail``). Seed 004's ``/v1/completions`` is Loom's own.
"""

from __future__ import annotations

import base64
from typing import Any

from litestar import Request, Response, get, post
from loom.sdk.errors import LoomError, NotFound
from loom.sdk.routes import RouteContext

from .answers import IMAGE_BODY, SMALL_BODY, BadBody, answer, json_object
from .options import SeedApiOptions

FLUX_FIELDS = {"prompt": str, "height": int, "width": int, "steps": int}


def invalid(loc: str, msg: str, kind: str) -> Response:
    return answer({"detail": [{"loc": ["body", loc], "msg": msg, "type": kind}]}, 422)


def check(body: dict[str, Any], required: dict[str, type], optional: dict[str, type]) -> Response | None:
    """FastAPI's 422 for a missing or mistyped field, else None."""
    for name, kind in {**required, **optional}.items():
        if name not in body or body[name] is None:
            if name in required:
                return invalid(name, "Field required", "missing")
            continue
        value = body[name]
        ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
        if kind is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not ok:
            return invalid(name, f"Input should be a valid {kind.__name__}", f"{kind.__name__}_type")
    return None


def build(loom: RouteContext, options: SeedApiOptions) -> list[Any]:
    flux, vision = options.flux_prefix, options.vision_prefix

    @post(f"{flux}/generate", request_max_body_size=SMALL_BODY, include_in_schema=False)
    async def generate(request: Request) -> Response:
        try:
            body = await json_object(request)
        except BadBody as e:
            return invalid("body", str(e), "json_invalid")
        problem = check(
            body,
            {"prompt": str},
            {"height": int, "width": int, "steps": int, "seed": int, "guidance": float, "model": str},
        )
        if problem is not None:
            return problem
        height, width, steps = body.get("height") or 1024, body.get("width") or 1024, body.get("steps") or 25
        model = body.get("model")
        try:
            name = loom.model_for("image", model) if model and _is_model(loom, model) else loom.model_for("image")
            png = await loom.generate_image(
                body["prompt"],
                model=name,
                width=width,
                height=height,
                steps=steps,
                seed=body.get("seed"),
                negative_prompt=body.get("negativePrompt"),
            )
            rel = loom.save_file(png, ".png")
            path = str(loom.file_path(rel))
        except LoomError as e:
            return answer({"detail": e.message}, 500)
        metadata = {
            "model": model or name,
            "prompt": body["prompt"],
            "height": height,
            "width": width,
            "steps": steps,
            "guidance": body.get("guidance", 3.5),
            "seed": body.get("seed"),
        }
        return answer({"localPath": path, "metadata": metadata, "url": loom.file_url(rel)})

    @get(f"{flux}/health", include_in_schema=False)
    async def flux_health() -> Response:
        try:
            model = loom.model_for("image")
        except LoomError as e:
            return answer({"detail": e.message}, 503)
        return answer({"status": "healthy", "model": model, "model_source": "loom", "model_loaded": True})

    async def scores(path: str | None, url: str | None, prompt: str) -> tuple[float, float]:
        if path:
            image = loom.read_file(path)
        elif url and url.startswith("data:") and "," in url:
            image = base64.b64decode(url.split(",", 1)[1])
        elif url:
            image = loom.read_file(url.split("/v1/files/", 1)[-1].split("?", 1)[0])
        else:
            raise NotFound("give image_path (or imagePath / imageUrl)")
        s = await loom.score(image, prompt)
        return s.clip, s.aesthetic

    @post(f"{vision}/evaluate", request_max_body_size=IMAGE_BODY, include_in_schema=False)
    async def evaluate(request: Request) -> Response:
        try:
            body = await json_object(request)
        except BadBody as e:
            return invalid("body", str(e), "json_invalid")
        problem = check(body, {"image_path": str, "prompt": str}, {})
        if problem is not None:
            return problem
        try:
            clip, aesthetic = await scores(body["image_path"], None, body["prompt"])
        except NotFound as e:
            return answer({"detail": e.message}, 404)
        except LoomError as e:
            return answer({"detail": e.message}, 500)
        return answer({"clip_score": clip, "aesthetic_score": aesthetic})

    @post(f"{vision}/analyze", request_max_body_size=IMAGE_BODY, include_in_schema=False)
    async def analyze(request: Request) -> Response:
        try:
            body = await json_object(request)
        except BadBody as e:
            return invalid("body", str(e), "json_invalid")
        problem = check(body, {"prompt": str}, {"imagePath": str, "imageUrl": str})
        if problem is not None:
            return problem
        try:
            clip, aesthetic = await scores(body.get("imagePath"), body.get("imageUrl"), body["prompt"])
        except NotFound as e:
            return answer({"detail": e.message}, 404)
        except LoomError as e:
            return answer({"detail": e.message}, 500)
        alignment = round(100.0 * clip, 2)
        return answer(
            {
                "alignmentScore": alignment,
                "aestheticScore": round(aesthetic, 2),
                "analysis": analysis(alignment, aesthetic),
            }
        )

    @get(f"{vision}/health", include_in_schema=False)
    async def vision_health() -> Response:
        try:
            model = loom.model_for("score")
        except LoomError as e:
            return answer({"detail": e.message}, 503)
        return answer({"status": "healthy", "models": [model], "models_loaded": True})

    return [generate, flux_health, evaluate, analyze, vision_health]


def _is_model(loom: RouteContext, name: str) -> bool:
    return any(m["id"] == name for m in loom.models())


def analysis(alignment: float, aesthetic: float) -> str:
    """The seed's one-line reading of the two scores (vision_service.py's thresholds)."""
    if alignment >= 70 and aesthetic >= 7:
        return "Strong prompt alignment and high aesthetic quality."
    if alignment >= 50 and aesthetic >= 5:
        return "Reasonable prompt alignment and acceptable aesthetic quality."
    return "Weak prompt alignment or low aesthetic quality."
