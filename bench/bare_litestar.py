"""The gateway benchmarks' baseline: a bare Litestar route answering a fixed chat completion.

bench_gateway.py loads it side by side with Loom (the floor a Litestar app on uvicorn can reach on
the machine), and uses it as the fake OpenAI upstream that Loom's ``openai`` provider proxies to.
"""

import sys

import uvicorn
from litestar import Litestar, MediaType, Request, get, post

BODY = (
    b'{"id":"chatcmpl-x","object":"chat.completion","created":0,"model":"mock-chat","choices":[{"index":0,'
    b'"message":{"role":"assistant","content":"fixed"},"finish_reason":"stop"}],'
    b'"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}'
)


@post("/v1/chat/completions", media_type=MediaType.JSON, status_code=200)
async def fixed(request: Request) -> bytes:
    await request.body()
    return BODY


@get("/health")
async def health() -> dict:
    return {"status": "ok"}


app = Litestar([fixed, health])

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
