"""Seed 000 (Proyecto Octavo's generator subsystem): ``/api/router_generator/{Generator}`` and the
Socket.IO notifications its front end waits for.

The front end joins a room (``socket.emit('joinRoom', Id + '_' + Generator)``), posts JSON to the
generator route, shows the immediate ``{Status, Response}`` and waits for ``Profile_Response``
``{Status, Message[, Number]}`` in that room. The GPT-2 generators and the translator answered over
HTTP (``Response`` is the story or the translation); the GROK ones through the queue and Socket.IO:

| generator | body | Loom pipeline | answer |
| --- | --- | --- | --- |
| ``Gpt2_Text_Generator``, ``Gpt2Medium_Text_Generator`` | ``{Prompt, Audience}`` | ``story`` | the story, at once |
| ``Translate`` | ``{Text, Tgt_lang[, Src_lang]}`` (NLLB codes) | ``translate`` | the translation, at once |
| ``Grok_Text_Generator`` | ``{Id, Prompt, Audience}`` | ``story`` | ``[Title]: ... [Content]: ...`` over Socket.IO |
| ``Grok_Image_Generator`` | ``{Id, Prompt[, Number]}`` | ``story_to_image`` | a PNG data URI (and ``Number``) over Socket.IO |
| ``Grok_Description_Image`` | ``{Id, Prompt: <base64 image>}`` | ``describe`` | the description over Socket.IO |

Socket.IO (python-socketio, mounted at ``/socket.io``) sits behind Loom's key guard like every
plugin route: the front end's ``Authorization: Bearer <token>`` is checked as a Loom key (or a
stream token as ``?token=``); an open loopback daemon needs none.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from litestar import Request, Response, asgi, post
from litestar.params import FromPath
from litestar.types import Receive, Scope, Send
from loom.sdk.errors import LoomError
from loom.sdk.routes import RouteContext

from .answers import IMAGE_BODY, BadBody, answer, data_uri, json_object
from .options import SeedApiOptions

log = logging.getLogger("loom.seed_api")
EVENT = "Profile_Response"
WAIT_MESSAGE = "Please wait a moment"
SYNC = {"Gpt2_Text_Generator", "Gpt2Medium_Text_Generator", "Translate"}
ASYNC = {"Grok_Text_Generator", "Grok_Image_Generator", "Grok_Description_Image"}
#: The seed's audience words -> Loom's audiences (free text passes through).
AUDIENCES = {"young": "young adult", "children": "children", "adult": "adult"}


def audience(value: Any) -> str:
    text = str(value or "children").strip() or "children"
    return AUDIENCES.get(text.lower(), text)


def tagged_story(result: dict[str, Any]) -> str:
    """The story as the GROK prompt asked for it: ``[Title]:`` then ``[Content]:`` paragraphs,
    which the front end splits into pages."""
    paragraphs = [p.strip() for p in (result.get("story") or "").split("\n") if p.strip()]
    return "\n\n".join([f"[Title]: {result.get('title') or ''}".rstrip(), *(f"[Content]: {p}" for p in paragraphs)])


def image_ref(value: str) -> str:
    """The front end sent the picture as base64, with or without the data-URI prefix."""
    return value if value.startswith("data:") else f"data:image/png;base64,{value}"


def build(loom: RouteContext, options: SeedApiOptions) -> list[Any]:
    import socketio

    sio = socketio.AsyncServer(async_mode="asgi", logger=False, engineio_logger=False)
    sio_app = socketio.ASGIApp(sio, socketio_path="socket.io")
    running: set[asyncio.Task] = set()

    @sio.on("joinRoom")
    async def join_room(sid: str, room: Any) -> None:
        if isinstance(room, str) and room:
            await sio.enter_room(sid, room)

    @asgi("/socket.io", is_mount=True, copy_scope=True, opt={"browser": True}, include_in_schema=False)
    async def socket_io(scope: Scope, receive: Receive, send: Send) -> None:
        # The mount hands over the path below /socket.io; python-socketio matches the whole path.
        await sio_app({**scope, "path": "/socket.io" + scope["path"]}, receive, send)  # type: ignore[arg-type]

    async def run(pipeline: str, params: dict[str, Any]) -> dict[str, Any]:
        job = await loom.start_job(pipeline, params)
        job = await loom.wait_job(job["id"], options.wait_seconds)
        if job["state"] != "succeeded":
            message = (job["error"] or {}).get("message") or f"the {pipeline} job is {job['state']}"
            raise RuntimeError(message)
        return job["result"] or {}

    async def message_for(generator: str, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """Run the generator; its result as the front end shows it, and extra fields to send."""
        if generator in ("Gpt2_Text_Generator", "Gpt2Medium_Text_Generator"):
            result = await run("story", {"prompt": str(body["Prompt"]), "audience": audience(body.get("Audience"))})
            return result.get("story") or "", {}
        if generator == "Translate":
            params = {"text": str(body["Text"]), "source": str(body.get("Src_lang") or "eng_Latn")}
            result = await run("translate", {**params, "target": str(body["Tgt_lang"])})
            return (result.get("translations") or [""])[0], {}
        if generator == "Grok_Text_Generator":
            result = await run("story", {"prompt": str(body["Prompt"]), "audience": audience(body.get("Audience"))})
            return tagged_story(result), {}
        if generator == "Grok_Image_Generator":
            result = await run("story_to_image", {"story": str(body["Prompt"])})
            path = (result.get("image") or {}).get("path")
            extra = {"Number": body["Number"]} if "Number" in body else {}
            return data_uri(loom.read_file(path), path), extra
        result = await run("describe", {"image": image_ref(str(body["Prompt"]))})
        return result.get("description") or "", {}

    async def notify(generator: str, body: dict[str, Any]) -> None:
        room = f"{body.get('Id')}_{generator}"
        try:
            message, extra = await message_for(generator, body)
            payload = {"Status": True, "Message": message, **extra}
        except (LoomError, RuntimeError) as e:
            text = e.message if isinstance(e, LoomError) else str(e)
            payload = {"Status": False, "Message": text, **({"Number": body["Number"]} if "Number" in body else {})}
        await sio.emit(EVENT, payload, room=room)

    @post("/api/router_generator/{generator:str}", request_max_body_size=IMAGE_BODY, include_in_schema=False)
    async def generator_route(request: Request, generator: FromPath[str]) -> Response:
        if generator not in SYNC | ASYNC:
            return answer({"Status": False, "Response": f"Unknown generator {generator}"}, 404)
        try:
            body = await json_object(request)
        except BadBody as e:
            return answer({"Status": False, "Response": str(e)}, 400)
        needed = ("Text", "Tgt_lang") if generator == "Translate" else ("Prompt",)
        if generator in ASYNC:
            needed = (*needed, "Id")
        missing = [f for f in needed if not body.get(f) and body.get(f) != 0]
        if missing:
            return answer({"Status": False, "Response": f"Missing {', '.join(missing)}"}, 400)
        if generator in SYNC:
            try:
                message, _ = await message_for(generator, body)
            except (LoomError, RuntimeError) as e:
                return answer({"Status": False, "Response": e.message if isinstance(e, LoomError) else str(e)})
            return answer({"Status": True, "Response": message})
        task = asyncio.create_task(notify(generator, body))
        running.add(task)
        task.add_done_callback(running.discard)
        return answer({"Status": True, "Response": WAIT_MESSAGE})

    return [socket_io, generator_route]
