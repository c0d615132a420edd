"""A small fake Ollama on loopback: /api/chat, /api/generate, /api/embed, /api/ps, /api/tags.

It speaks Ollama's wire format (NDJSON streams, ``done`` / ``done_reason`` / ``eval_count`` on the
last line, ``{"error": ...}`` answers) with deterministic output: words drawn from a hash of the
model, the prompt and ``options.seed`` (random when no seed is given, as in Ollama). Every request
body is recorded in ``requests`` for assertions.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import random
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

WORDS = [
    "the",
    "sea",
    "keeps",
    "its",
    "own",
    "counsel",
    "while",
    "a",
    "lighthouse",
    "turns",
    "slowly",
    "over",
    "the",
    "rocks",
    "and",
    "gulls",
    "argue",
    "above",
    "grey",
    "water",
    "where",
    "the",
    "keeper",
    "writes",
    "letters",
    "nobody",
    "reads",
]
DIMENSIONS = 32


class FakeOllama:
    def __init__(self, models: dict[str, int] | None = None, token_delay: float = 0.002) -> None:
        #: Pulled models and the size /api/ps reports once loaded.
        self.models = dict(models or {"tiny": 123_456_789})
        self.token_delay = token_delay
        self.loaded: set[str] = set()
        self.requests: list[tuple[str, dict]] = []
        self.failures: list[tuple[int, str]] = []  # answered to the next requests, in order
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> FakeOllama:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def fail_next(self, status: int, message: str) -> None:
        self.failures.append((status, message))

    def bodies(self, path: str) -> list[dict]:
        return [body for p, body in self.requests if p == path]

    # --- generation ----------------------------------------------------------------------------

    def words_for(self, model: str, prompt: str, options: dict) -> list[str]:
        seed = options.get("seed")
        r = random.Random(_digest(model, prompt, seed) if seed is not None else None)
        words = [r.choice(WORDS) for _ in range(24 + r.randrange(24))]
        text = " ".join(words)
        for stop in options.get("stop") or []:
            if stop in text:
                text = text[: text.index(stop)]
        return text.split(" ") if text else []


def _digest(*parts: Any) -> int:
    return int.from_bytes(hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).digest()[:8], "big")


def _fitting(schema: dict, words: list[str]) -> Any:
    """A value that fits a JSON schema (the subset structured output uses), made of the words."""
    kind = schema.get("type")
    if "enum" in schema:
        return schema["enum"][0]
    if kind == "object" or "properties" in schema:
        return {name: _fitting(sub, words) for name, sub in (schema.get("properties") or {}).items()}
    if kind == "array":
        return [_fitting(schema.get("items") or {}, words)]
    if kind == "integer":
        return max(int(schema.get("minimum", 0)), len(words))
    if kind == "number":
        return float(len(words))
    if kind == "boolean":
        return True
    return " ".join(words[:3])


def _vector(model: str, text: str) -> list[float]:
    raw = [b - 127.5 for b in hashlib.sha256(f"{model}|{text}".encode()).digest()[:DIMENSIONS]]
    norm = math.sqrt(sum(x * x for x in raw))
    return [x / norm for x in raw]


def _handler(fake: FakeOllama) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _json(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/api/version":
                return self._json(200, {"version": "0.0.0-fake"})
            if self.path == "/api/tags":
                tags = [{"name": f"{m}:latest", "model": f"{m}:latest"} for m in fake.models]
                return self._json(200, {"models": tags})
            if self.path == "/api/ps":
                models = [
                    {"name": f"{m}:latest", "model": f"{m}:latest", "size": fake.models[m], "size_vram": 0}
                    for m in sorted(fake.loaded)
                ]
                return self._json(200, {"models": models})
            self._json(404, {"error": "not found"})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            fake.requests.append((self.path, body))
            if fake.failures:
                status, message = fake.failures.pop(0)
                return self._json(status, {"error": message})
            model = str(body.get("model", "")).removesuffix(":latest")
            if model not in fake.models:
                return self._json(404, {"error": f'model "{model}" not found, try pulling it first'})
            if self.path == "/api/embed":
                return self._embed(model, body)
            if self.path not in ("/api/chat", "/api/generate"):
                return self._json(404, {"error": "not found"})
            if body.get("keep_alive") == 0:
                fake.loaded.discard(model)
                return self._json(200, {"model": model, "done": True, "done_reason": "unload"})
            fake.loaded.add(model)
            if self.path == "/api/generate" and not body.get("prompt"):
                return self._json(200, {"model": model, "response": "", "done": True, "done_reason": "load"})
            if self.path == "/api/chat":
                for m in body.get("messages", []):
                    for image in m.get("images", []):
                        try:
                            base64.b64decode(image, validate=True)
                        except ValueError:
                            return self._json(400, {"error": "illegal base64 data at input byte 0"})
                prompt = json.dumps(body.get("messages"))
                prompt_words = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
            else:
                prompt = body.get("prompt", "")
                prompt_words = len(prompt.split())
            self._generate(model, body, prompt, prompt_words + 1)

        def _embed(self, model: str, body: dict) -> None:
            inputs = body.get("input")
            inputs = [inputs] if isinstance(inputs, str) else list(inputs or [])
            self._json(
                200,
                {
                    "model": model,
                    "embeddings": [_vector(model, t) for t in inputs],
                    "prompt_eval_count": sum(max(1, len(t.split())) for t in inputs),
                },
            )

        def _generate(self, model: str, body: dict, prompt: str, prompt_tokens: int) -> None:
            options = body.get("options") or {}
            words = fake.words_for(model, prompt, options)
            fmt = body.get("format")
            if fmt is not None:
                # Ollama constrains the output to the format: any JSON object for "json", one that
                # fits the schema otherwise. Streamed as two pieces, as a model would write it.
                value = _fitting(fmt, words) if isinstance(fmt, dict) else {"answer": " ".join(words[:3])}
                text = json.dumps(value)
                cut = text.find(": ") + 1  # the stream puts a space between pieces: cut at one
                words = [text[:cut], text[cut + 1 :]] if cut > 0 else [text]
            limit = options.get("num_predict")
            reason = "stop"
            if limit is not None and limit >= 0 and len(words) > limit:
                words, reason = words[:limit], "length"
            key = "message" if self.path == "/api/chat" else "response"
            self.send_response(200)
            self.send_header("Content-Type", "application/x-ndjson")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            try:
                for i, word in enumerate(words):
                    piece = word if i == 0 else " " + word
                    value = {"role": "assistant", "content": piece} if key == "message" else piece
                    self._line({"model": model, key: value, "done": False})
                    time.sleep(fake.token_delay)
                final = {"role": "assistant", "content": ""} if key == "message" else ""
                self._line(
                    {
                        "model": model,
                        key: final,
                        "done": True,
                        "done_reason": reason,
                        "prompt_eval_count": prompt_tokens,
                        "eval_count": len(words),
                    }
                )
                self.wfile.write(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client stopped reading: Ollama stops generating

        def _line(self, data: dict) -> None:
            line = json.dumps(data).encode() + b"\n"
            self.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
            self.wfile.flush()

    return Handler
