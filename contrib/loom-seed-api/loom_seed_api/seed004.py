"""Seed 004 (the beam-search image pipeline): its Express server's routes and WebSocket on Loom.

- ``POST /api/beam-search`` ``{prompt, n, m, iterations, alpha, temperature, models}`` with the
  seed's key rule (an OpenAI provider active: ``X-OpenAI-API-Key`` missing is a 401, not ``sk-...``
  a 400) -> ``{jobId, status: 'started', params}``; a Loom ``beam_search`` job.
- The WebSocket at ``/``: ``{type: 'subscribe', jobId}`` -> ``{type: 'subscribed', jobId}``, then
  the job's messages from its start (``seed004_messages``), ending with ``complete``.
- ``GET /api/jobs`` (``{sessions: [...]}``), ``GET /api/jobs/{sessionId}``, ``GET /api/job/{jobId}``,
  ``POST /api/jobs/{jobId}/cancel``, ``GET /api/images/{sessionId}/{file}``.
- ``GET /api/providers/status``, ``POST /api/providers/switch``, ``GET /api/providers/health``,
  ``GET /api/providers/models/status``, ``GET /api/available-models``, ``POST /api/demo/cancel/{jobId}``
  (the demo page's Stop button).
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

from litestar import Request, Response, WebSocket, get, post, websocket
from litestar.exceptions import WebSocketDisconnect
from litestar.params import FromPath
from loom.sdk.errors import LoomError, NotFound
from loom.sdk.routes import RouteContext

from .answers import SMALL_BODY, BadBody, answer, date_of, iso, json_object, session_of
from .options import SeedApiOptions
from .seed004_messages import SeedMessages, seed_params
from .seed004_providers import VALID, Providers

PIPELINE = "beam_search"
#: The seed's session folders were ``ses-HHMMSS``; Loom's add the job id.
SESSION = re.compile(r"^ses-\d{6}(-[A-Za-z0-9_-]{1,64})?$")
#: The seed's defaults (beam-search-worker.js).
DEFAULTS = {"n": 4, "m": 2, "iterations": 2, "alpha": 0.7, "temperature": 0.7}
MODEL_FIELDS = {"llm": ("llm", "llm_model"), "imageGen": ("image", "image_model"), "vision": ("vision", "scorer_model")}


def job_of_session(loom: RouteContext, session: str) -> dict[str, Any] | None:
    """The beam search job whose session folder is ``session``."""
    job_id = session.split("-", 2)[2] if session.count("-") >= 2 else None
    job = loom.get_job(job_id) if job_id else None
    return job if job and job["pipeline"] == PIPELINE and session_of(job) == session else None


def read_metadata(loom: RouteContext, job: dict[str, Any]) -> dict[str, Any]:
    try:
        value = json.loads(loom.read_file(f"{job['output_dir'].rstrip('/')}/metadata.json"))
    except (LoomError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def seed_status(job: dict[str, Any]) -> str:
    return {"succeeded": "completed", "queued": "running"}.get(job["state"], job["state"])


def build(loom: RouteContext, options: SeedApiOptions) -> list[Any]:
    providers = Providers(loom, options)

    @post("/api/beam-search", request_max_body_size=SMALL_BODY, include_in_schema=False)
    async def beam_search(request: Request) -> Response:
        key = (request.headers.get("x-openai-api-key") or "").strip()
        if providers.needs_openai():
            if not key:
                return answer(
                    {
                        "error": "Missing API key. OpenAI providers are active - provide X-OpenAI-API-Key "
                        "header or switch to local providers."
                    },
                    401,
                )
            if not key.startswith("sk-"):
                return answer({"error": "Invalid API key format. Should start with sk-"}, 400)
        try:
            body = await json_object(request)
        except BadBody as e:
            return answer({"error": str(e)}, 400)
        if not body.get("prompt"):
            return answer({"error": "Missing required parameter: prompt"}, 400)
        given = {k: body.get(k) for k in ("prompt", *DEFAULTS)}
        values = {k: (DEFAULTS[k] if given[k] is None else given[k]) for k in DEFAULTS}
        params: dict[str, Any] = {
            "prompt": body["prompt"],
            "beam_width": values["n"],
            "keep_top": values["m"],
            "iterations": values["iterations"],
            "alpha": values["alpha"],
            "temperature": values["temperature"],
        }
        chosen = body.get("models") if isinstance(body.get("models"), dict) else {}
        for field, (role, param) in MODEL_FIELDS.items():
            model = None
            if providers.active[role] == "openai" and isinstance(chosen.get(field), str):
                model = _known(loom, role, chosen[field])
            model = model or providers.model(role)
            if model is None:
                return answer({"error": f"No model serves the {providers.active[role]!r} {role} provider"}, 400)
            params[param] = model
        keys = {"x-openai-api-key": key} if key else {}
        try:
            job = await loom.start_job(PIPELINE, params, upstream_keys=keys)
        except LoomError as e:
            return answer({"error": e.message}, 404 if isinstance(e, NotFound) else 400)
        echo = {**given, "models": body.get("models")}
        return answer({"jobId": job["id"], "status": "started", "params": echo})

    @get("/api/job/{job_id:str}", include_in_schema=False)
    async def job_status(job_id: FromPath[str]) -> Response:
        job = loom.get_job(job_id)
        if job is None or job["pipeline"] != PIPELINE:
            return answer({"error": "Job not found"}, 404)
        status: dict[str, Any] = {
            "status": seed_status(job),
            "startTime": int((job["started_at"] or job["created_at"]) * 1000),
            "sessionId": session_of(job),
        }
        if job["finished_at"]:
            status["endTime"] = int(job["finished_at"] * 1000)
        if job["state"] == "succeeded":
            status["result"] = job["result"]
        if job["error"]:
            status["error"] = job["error"].get("message")
        return answer(status)

    @post("/api/jobs/{job_id:str}/cancel", request_max_body_size=SMALL_BODY, include_in_schema=False)
    async def cancel(job_id: FromPath[str]) -> Response:
        job = loom.get_job(job_id)
        if job is None or job["pipeline"] != PIPELINE:
            return answer({"error": "Job not found"}, 404)
        if job["state"] not in ("queued", "running"):
            return answer({"error": "Job is no longer running or has already completed"}, 400)
        await loom.cancel_job(job_id)
        return answer({"jobId": job_id, "status": "cancelling", "message": "Job cancellation in progress"})

    @get("/api/jobs", include_in_schema=False)
    async def list_sessions() -> Response:
        sessions = []
        for job in loom.list_jobs(pipeline=PIPELINE, limit=1000):
            meta = read_metadata(loom, job)
            params = job.get("params") or {}
            sessions.append(
                {
                    "sessionId": session_of(job),
                    "jobId": job["id"],
                    "date": date_of(job),
                    "timestamp": iso(job["created_at"]),
                    "userPrompt": meta.get("userPrompt") or params.get("prompt"),
                    "config": {
                        "beamWidth": params.get("beam_width"),
                        "keepTop": params.get("keep_top"),
                        "maxIterations": params.get("iterations"),
                        "alpha": params.get("alpha"),
                        "temperature": params.get("temperature"),
                    },
                    "finalWinner": meta.get("finalWinner"),
                    "iterationCount": len(meta.get("iterations") or []),
                }
            )
        return answer({"sessions": sessions})

    @get("/api/jobs/{session_id:str}", include_in_schema=False)
    async def session_metadata(session_id: FromPath[str]) -> Response:
        if not SESSION.match(session_id):
            return answer({"error": "Invalid session ID format"}, 400)
        job = job_of_session(loom, session_id)
        if job is None:
            return answer({"error": "Session not found"}, 404)
        return answer({"sessionId": session_id, "date": date_of(job), "metadata": read_metadata(loom, job)})

    @get("/api/images/{session_id:str}/{filename:str}", include_in_schema=False)
    async def image(session_id: FromPath[str], filename: FromPath[str]) -> Response:
        if not SESSION.match(session_id):
            return answer({"error": "Invalid session ID"}, 400)
        if ".." in filename or "/" in filename or "\\" in filename:
            return answer({"error": "Invalid filename"}, 400)
        if not filename.endswith(".png"):
            return answer({"error": "Only PNG files are allowed"}, 400)
        job = job_of_session(loom, session_id)
        try:
            if job is None:
                raise NotFound("no such session")
            data = loom.read_file(f"{job['output_dir'].rstrip('/')}/{filename}")
        except NotFound:
            return answer({"error": "Image not found", "sessionId": session_id, "filename": filename}, 404)
        return Response(
            content=data, media_type="image/png", headers={"Cache-Control": "public, max-age=3600"}, status_code=200
        )

    @get("/api/providers/status", include_in_schema=False)
    async def providers_status() -> Response:
        return answer(providers.status())

    @post("/api/providers/switch", request_max_body_size=SMALL_BODY, include_in_schema=False)
    async def providers_switch(request: Request) -> Response:
        try:
            body = await json_object(request)
        except BadBody as e:
            return answer({"error": "Failed to switch providers", "message": str(e)}, 400)
        status, reply = providers.switch(body)
        return answer(reply, status)

    @post("/api/demo/cancel/{job_id:str}", request_max_body_size=SMALL_BODY, include_in_schema=False)
    async def demo_cancel(job_id: FromPath[str]) -> Response:
        job = loom.get_job(job_id)
        if job is None or job["pipeline"] != PIPELINE or job["state"] not in ("queued", "running"):
            return answer({"error": "Job not found or already complete", "jobId": job_id}, 404)
        await loom.cancel_job(job_id)
        return answer({"success": True, "message": f"Job {job_id} cancellation requested", "jobId": job_id})

    @get("/api/available-models", include_in_schema=False)
    async def available_models() -> Response:
        models = loom.models()

        def able(capability: str) -> list[str]:
            return [m["id"] for m in models if capability in m["capabilities"]]

        return answer(
            {
                "llm": {"default": providers.model("llm"), "options": able("chat")},
                "imageGen": {"default": providers.model("image"), "options": able("image")},
                "vision": {"default": providers.model("vision"), "options": able("vision")},
            }
        )

    @get("/api/providers/health", include_in_schema=False)
    async def providers_health() -> Response:
        status = providers.status()["health"]
        return answer(
            {
                "ollama": status["localLLM"],
                "flux": status["flux"],
                "localVision": status["localVision"],
                "timestamp": iso(),
            }
        )

    @get("/api/providers/models/status", include_in_schema=False)
    async def models_status() -> Response:
        llm, image = providers.model("llm", "local-llm"), providers.model("image", "flux")
        vision = providers.model("vision", "local")
        return answer(
            {
                "localLLM": {"installed": llm is not None, "model": llm},
                "flux": {"installed": image is not None, "modelPath": image},
                "localVision": {"installed": vision is not None, "models": [vision] if vision else []},
            }
        )

    @websocket("/", opt={"browser": True}, include_in_schema=False)
    async def progress(socket: WebSocket) -> None:
        await socket.accept()
        forwarding: set[asyncio.Task] = set()
        try:
            while True:
                raw = await socket.receive_data(mode="text")
                try:
                    message = json.loads(raw)
                except ValueError:
                    continue  # the seed ignored what it could not parse
                if not (isinstance(message, dict) and message.get("type") == "subscribe" and message.get("jobId")):
                    continue
                job_id = str(message["jobId"])
                job = loom.get_job(job_id)
                refusal = _refusal(job)
                if refusal is not None:
                    await socket.send_json({"type": "error", "message": refusal[0], "jobId": job_id})
                    await socket.close(code=1000, reason=refusal[1])
                    return
                assert job is not None
                await socket.send_json({"type": "subscribed", "jobId": job_id})
                task = asyncio.create_task(_forward(socket, job, providers.active))
                forwarding.add(task)
                task.add_done_callback(forwarding.discard)
        except WebSocketDisconnect:
            pass
        finally:
            for task in list(forwarding):
                task.cancel()

    async def _forward(socket: WebSocket, job: dict[str, Any], active: dict[str, str]) -> None:
        translate = SeedMessages(
            job,
            active,
            job_now=lambda: loom.get_job(job["id"]),
            metadata_now=lambda: read_metadata(loom, job),
        )
        try:
            async for event in loom.follow(job["id"]):
                for message in translate.messages(event):
                    await socket.send_json(message)
        except (WebSocketDisconnect, RuntimeError):
            pass  # the browser left (sending on a closed socket raises RuntimeError)

    return [
        beam_search,
        job_status,
        cancel,
        list_sessions,
        session_metadata,
        image,
        providers_status,
        providers_switch,
        demo_cancel,
        available_models,
        providers_health,
        models_status,
        progress,
    ]


def _known(loom: RouteContext, role: str, name: str) -> str | None:
    from .seed004_providers import LOOM_ROLE

    try:
        return loom.model_for(LOOM_ROLE[role], name)
    except LoomError:
        return None


def _refusal(job: dict[str, Any] | None) -> tuple[str, str] | None:
    """The seed's error message and close reason for a job one cannot subscribe to."""
    if job is None or job["pipeline"] != PIPELINE:
        return "Job not found or already completed. Please start a new job.", "Job not found"
    if job["state"] == "succeeded":
        return "This job has already completed. Results are available in the job browser.", "Job completed"
    if job["state"] == "cancelled":
        return "This job was cancelled. Please start a new job.", "Job cancelled"
    return None


__all__ = ["VALID", "build", "seed_params"]
