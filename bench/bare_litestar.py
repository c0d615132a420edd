"""The baseline for bench_overhead.py: a bare Litestar route returning a fixed body."""

import sys

import uvicorn
from litestar import Litestar, MediaType, Request, get, post

BODY = b'{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"fixed"},"finish_reason":"stop"}]}'


@post("/v1/chat/completions", media_type=MediaType.JSON)
async def fixed(request: Request) -> bytes:
    await request.body()
    return BODY


@get("/health")
async def health() -> dict:
    return {"status": "ok"}


app = Litestar([fixed, health])

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
