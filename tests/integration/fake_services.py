"""A fake OpenAI-compatible upstream that refuses what the real services refuse.

Served by uvicorn on a thread (a Litestar app), so a Loom under test talks to it over real HTTP:

- ``POST /v1/images/generations`` follows each model's rules as OpenAI's and x.ai's API
  references state them: ``dall-e-3`` takes only 1024x1024 / 1792x1024 / 1024x1792 and n=1;
  ``gpt-image-1`` takes 1024x1024 / 1536x1024 / 1024x1536 / auto and refuses
  ``response_format``; ``grok-imagine-image`` refuses ``size`` ("Argument not supported: size");
  none of them takes ``seed``. Images are solid PNGs of the size made, coloured by the prompt.
- ``POST /v1/chat/completions`` is a *judge* when a message holds two images: it prefers the
  brighter one, so a test knows its preferences; it rates one image for ``score`` prompts,
  describes one, and answers the beam search's JSON prompts. Streams are one content chunk, the
  finish and (with ``stream_options.include_usage``) the usage.
- Chat models of OpenAI's GPT-5 family and o-series follow the rules OpenAI documents for
  reasoning models (``reasoning_rules``): ``max_tokens`` is refused (``unsupported_parameter``,
  "Use 'max_completion_tokens' instead"), so are a ``temperature`` or ``top_p`` other than the
  default 1 (``unsupported_value``), the penalties, ``logprobs`` and ``logit_bias``; the
  reasoning spends tokens of ``max_completion_tokens`` before the answer (by
  ``reasoning_effort``, default "medium"), and an answer that does not fit is empty with
  ``finish_reason: "length"``, as the real ones do.
- ``strict-llm`` refuses what no profile foresees: ``seed`` and ``stream_options``
  (``unsupported_parameter``).
- Every request is recorded with the Authorization header it came with and the status answered.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Self

from litestar import Litestar, Request, Response, get, post
from PIL import Image, ImageStat

from tests.conftest import free_port

OPENAI_SIZES = {
    "dall-e-3": {"1024x1024", "1792x1024", "1024x1792"},
    "gpt-image-1": {"1024x1024", "1536x1024", "1024x1536", "auto"},
    "dall-e-2": {"256x256", "512x512", "1024x1024"},
}
XAI_MODELS = {"grok-imagine-image", "grok-2-image"}


def _error(status: int, message: str, param: str | None = None, code: str | None = None) -> Response:
    body = {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}}
    return Response(body, status_code=status)


REASONING_TOKENS = {"minimal": 0, "low": 96, "medium": 384, "high": 1536}
GPT5_EFFORTS = {"minimal", "low", "medium", "high"}
O_EFFORTS = {"low", "medium", "high"}


def family(model: str) -> str | None:
    if model.startswith("gpt-5") and "-chat" not in model:
        return "gpt-5"
    if len(model) >= 2 and model[0] == "o" and model[1].isdigit():
        return "o-series"
    return None


def reasoning_rules(body: dict) -> Response | None:
    """The 400 a GPT-5-family or o-series model answers ``body`` with, or None."""
    kind = family(body.get("model", ""))
    if kind is None:
        return None
    if "max_tokens" in body:
        return _error(
            400,
            "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead.",
            "max_tokens",
            "unsupported_parameter",
        )
    for name in ("temperature", "top_p"):
        if name in body and body[name] != 1:
            return _error(
                400,
                f"Unsupported value: '{name}' does not support {body[name]} with this model. "
                "Only the default (1) value is supported.",
                name,
                "unsupported_value",
            )
    refused = ["presence_penalty", "frequency_penalty", "logprobs", "top_logprobs", "logit_bias"]
    if kind == "o-series":
        refused.append("verbosity")
    for name in refused:
        if name in body:
            return _error(
                400, f"Unsupported parameter: '{name}' is not supported with this model.", name, "unsupported_parameter"
            )
    effort = body.get("reasoning_effort")
    if effort is not None and effort not in (GPT5_EFFORTS if kind == "gpt-5" else O_EFFORTS):
        return _error(
            400,
            f"Unsupported value: 'reasoning_effort' does not support '{effort}' with this model.",
            "reasoning_effort",
            "unsupported_value",
        )
    return None


def strict_rules(body: dict) -> Response | None:
    if body.get("model") != "strict-llm":
        return None
    for name in ("seed", "stream_options"):
        if name in body:
            return _error(400, f"Unrecognized request argument supplied: {name}", name, "unsupported_parameter")
    return None


def png(width: int, height: int, seed: str) -> bytes:
    digest = hashlib.sha256(seed.encode()).digest()
    img = Image.new("RGB", (width, height), (digest[0], digest[1], digest[2]))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def brightness(data: bytes) -> float:
    return float(ImageStat.Stat(Image.open(io.BytesIO(data)).convert("L")).mean[0])


def _images_of(messages: list[dict]) -> list[bytes]:
    out = []
    for m in messages:
        if isinstance(m.get("content"), list):
            for part in m["content"]:
                if part.get("type") == "image_url":
                    out.append(base64.b64decode(part["image_url"]["url"].partition(",")[2]))
    return out


@dataclass
class Seen:
    path: str
    auth: str | None
    body: dict[str, Any]
    status: int = 200


@dataclass
class FakeServices:
    port: int = field(default_factory=free_port)
    seen: list[Seen] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def requests(self, path: str) -> list[Seen]:
        return [s for s in self.seen if s.path.endswith(path)]

    # --- the app ------------------------------------------------------------------------------

    def app(self) -> Litestar:
        @get("/v1/models")
        async def models(request: Request) -> Response:
            if not request.headers.get("authorization"):
                return _error(401, "You didn't provide an API key.")
            return Response({"object": "list", "data": [{"id": "dall-e-3"}, {"id": "judge"}]})

        @post("/v1/images/generations")
        async def images(request: Request) -> Response:
            body = await request.json()
            self.seen.append(Seen("/images/generations", request.headers.get("authorization"), body))
            if not request.headers.get("authorization"):
                return _error(401, "You didn't provide an API key.")
            return self._images(body)

        @post("/v1/chat/completions")
        async def chat(request: Request) -> Response:
            body = await request.json()
            seen = Seen("/chat/completions", request.headers.get("authorization"), body)
            self.seen.append(seen)
            if not request.headers.get("authorization"):
                seen.status = 401
                return _error(401, "You didn't provide an API key.")
            refusal = reasoning_rules(body) or strict_rules(body)
            if refusal is not None:
                seen.status = refusal.status_code
                return refusal
            text, finish, usage = self._answer(body)
            if body.get("stream"):
                return self._sse(body, text, finish, usage)
            return Response(
                {
                    "id": "chatcmpl-fake",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": body.get("model"),
                    "choices": [
                        {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}
                    ],
                    "usage": usage,
                }
            )

        return Litestar(route_handlers=[models, images, chat])

    def _images(self, body: dict) -> Response:
        model = body.get("model", "")
        if "seed" in body:
            return _error(400, "Unknown parameter: 'seed'.", "seed")
        n = body.get("n", 1)
        size = body.get("size")
        if model in XAI_MODELS:
            if size is not None:
                return _error(400, "Argument not supported: size", "size")
            width = height = 1024
        else:
            if model == "dall-e-3" and n != 1:
                return _error(400, "You must provide n=1 for this model.", "n")
            if model == "gpt-image-1" and "response_format" in body:
                return _error(400, "Unknown parameter: 'response_format'.", "response_format")
            allowed = OPENAI_SIZES.get(model)
            size = size or "1024x1024"
            if allowed is not None and size not in allowed:
                return _error(
                    400, f"Invalid value: '{size}'. Supported values are: {', '.join(sorted(allowed))}.", "size"
                )
            width, height = (1024, 1024) if size == "auto" else map(int, size.split("x"))
        data = []
        for i in range(n):
            raw = png(width, height, f"{body.get('prompt')}|{i}")
            data.append({"b64_json": base64.b64encode(raw).decode()})
        return Response({"created": int(time.time()), "data": data})

    def _answer(self, body: dict) -> tuple[str, str, dict]:
        """(content, finish_reason, usage): a reasoning model spends its reasoning tokens first."""
        text = self._chat(body)
        answer_tokens = max(1, len(text) // 4)
        reasoning = 0
        if family(body.get("model", "")) is not None:
            reasoning = REASONING_TOKENS[body.get("reasoning_effort") or "medium"]
        limit = body.get("max_completion_tokens", body.get("max_tokens"))
        finish = "stop"
        if limit is not None and reasoning + answer_tokens > limit:
            text, finish, answer_tokens = "", "length", max(0, limit - reasoning)
        usage = {
            "prompt_tokens": 10,
            "completion_tokens": reasoning + answer_tokens,
            "total_tokens": 10 + reasoning + answer_tokens,
            "completion_tokens_details": {"reasoning_tokens": reasoning},
        }
        return text, finish, usage

    def _sse(self, body: dict, text: str, finish: str, usage: dict) -> Response:
        base = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": int(time.time())}
        base["model"] = body.get("model")
        chunks = [
            {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": text}}]},
            {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]},
        ]
        if (body.get("stream_options") or {}).get("include_usage"):
            chunks.append({**base, "choices": [], "usage": usage})
        lines = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
        return Response(lines.encode(), media_type="text/event-stream")

    def _chat(self, body: dict) -> str:
        messages = body.get("messages", [])
        images = _images_of(messages)
        system = next((m["content"] for m in messages if m.get("role") == "system"), "")
        fmt = body.get("response_format") or {}
        name = (fmt.get("json_schema") or {}).get("name")
        if len(images) == 2:
            a, b = brightness(images[0]), brightness(images[1])
            winner = "A" if a >= b else "B"
            ranks = {"A": 1 if winner == "A" else 2, "B": 1 if winner == "B" else 2}
            return json.dumps(
                {
                    "winner": winner,
                    "reason": f"Image {winner} is brighter ({max(a, b):.0f} vs {min(a, b):.0f}).",
                    "ranks": {s: {"alignment": r, "aesthetics": r} for s, r in ranks.items()},
                }
            )
        if len(images) == 1 and "rate images" in str(system):
            level = brightness(images[0]) / 255
            return json.dumps({"clip": round(level, 4), "aesthetic": round(10 * level, 4)})
        if len(images) == 1:
            return f"A picture of brightness {brightness(images[0]):.0f}."
        if name == "critique":
            return json.dumps({"critique": "Too dark.", "recommendation": "Add light.", "reason": "Brighter wins."})
        user = next((m["content"] for m in reversed(messages) if m.get("role") == "user"), "")
        digest = hashlib.sha256(str(user).encode()).hexdigest()[:8]
        return json.dumps({"prompt": f"a scene {digest}"})

    # --- serving ------------------------------------------------------------------------------

    def __enter__(self) -> Self:
        import uvicorn

        config = uvicorn.Config(self.app(), host="127.0.0.1", port=self.port, log_level="warning")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the fake services did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self._server.should_exit = True
        self._thread.join(10)
