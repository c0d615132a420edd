"""Helpers for the Batch API tests: input files, waiting for a batch, reading its files, checking
them against OpenAI's shapes.

OpenAI's OpenAPI document has ``Batch`` and ``OpenAIFile`` but no schema for the lines of the
input and output files; :data:`OUTPUT_LINE` is the output line format of OpenAI's Batch guide
("The output file's lines": ``id``, ``custom_id``, ``response`` with ``status_code``,
``request_id`` and ``body``, and ``error``), written down as a JSON schema; a 2xx line's body is
also checked against the endpoint's own response schema from the document."""

from __future__ import annotations

import json
import time
from typing import Any

import jsonschema
from prometheus_client.parser import text_string_to_metric_families

from tests.openai_schema import validate

ENDED = ("completed", "failed", "expired", "cancelled")
OUTPUT_LINE = {
    "type": "object",
    "required": ["id", "custom_id", "response", "error"],
    "additionalProperties": False,
    "properties": {
        "id": {"type": "string"},
        "custom_id": {"type": "string"},
        "response": {
            "anyOf": [
                {"type": "null"},
                {
                    "type": "object",
                    "required": ["status_code", "request_id", "body"],
                    "additionalProperties": False,
                    "properties": {
                        "status_code": {"type": "integer"},
                        "request_id": {"type": "string"},
                        "body": {"type": "object"},
                    },
                },
            ]
        },
        "error": {
            "anyOf": [
                {"type": "null"},
                {
                    "type": "object",
                    "required": ["code", "message"],
                    "properties": {"code": {"type": ["string", "null"]}, "message": {"type": "string"}},
                },
            ]
        },
    },
}
#: The response schema of each endpoint's 2xx body, in OpenAI's document.
BODY_SCHEMA = {
    "/v1/chat/completions": "CreateChatCompletionResponse",
    "/v1/embeddings": "CreateEmbeddingResponse",
    "/v1/completions": "CreateCompletionResponse",
    "/v1/images/generations": "ImagesResponse",
    "/v1/responses": "Response",
}


def jsonl(lines: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(x).encode() + b"\n" for x in lines)


def chat_line(custom_id: str, model: str, content: str = "Say hi", **extra: Any) -> dict[str, Any]:
    body = {"model": model, "messages": [{"role": "user", "content": content}], **extra}
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body}


def embedding_line(custom_id: str, model: str, text: str) -> dict[str, Any]:
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/embeddings", "body": {"model": model, "input": text}}


def create(client, endpoint: str, lines: list[dict[str, Any]] | bytes, **kw: Any):
    data = lines if isinstance(lines, bytes) else jsonl(lines)
    f = client.files.create(file=("batch.jsonl", data), purpose="batch")
    return client.batches.create(input_file_id=f.id, endpoint=endpoint, completion_window="24h", **kw)


def wait(client, batch_id: str, until=lambda b: b.status in ENDED, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while True:
        batch = client.batches.retrieve(batch_id)
        check_batch(batch)
        if until(batch):
            return batch
        if time.monotonic() > deadline:
            raise AssertionError(f"batch {batch_id} is still {batch.status} ({batch.request_counts})")
        time.sleep(0.1)


def warm_validators() -> None:
    """Read OpenAI's document and build the Batch validator now (it takes seconds, once)."""
    minimal = {
        "id": "batch_x",
        "object": "batch",
        "endpoint": "/v1/embeddings",
        "input_file_id": "file-x",
        "completion_window": "24h",
        "status": "validating",
        "created_at": 0,
    }
    validate(minimal, "Batch")


def check_batch(batch) -> None:
    """The batch as it came over the wire, against OpenAI's ``Batch`` schema."""
    validate(batch.model_dump(exclude_unset=True), "Batch")


def lines_of(client, file_id: str | None) -> list[dict[str, Any]]:
    if file_id is None:
        return []
    f = client.files.retrieve(file_id)
    validate(f.model_dump(exclude_unset=True), "OpenAIFile")
    assert f.purpose == "batch_output"
    out = [json.loads(line) for line in client.files.content(file_id).content.splitlines() if line.strip()]
    for line in out:
        jsonschema.validate(line, OUTPUT_LINE)
    return out


def check_output(client, batch, endpoint: str) -> tuple[list[dict], list[dict]]:
    """The output and error files' lines, each checked (a 2xx body against the endpoint's schema)."""
    done, failed = lines_of(client, batch.output_file_id), lines_of(client, batch.error_file_id)
    for line in done:
        assert line["error"] is None and line["response"]["status_code"] == 200
        validate(line["response"]["body"], BODY_SCHEMA[endpoint])
    for line in failed:
        assert line["error"]["message"]
        if line["response"] is not None:
            assert line["response"]["status_code"] >= 400
            assert line["response"]["body"]["error"]["message"] == line["error"]["message"]
    assert batch.request_counts.completed == len(done)
    return done, failed


def finished_calls(metrics_text: str, model: str) -> int:
    """How many calls ``model`` finished in this daemon's life (the scheduler's own counter)."""
    for family in text_string_to_metric_families(metrics_text):
        if family.name == "loom_work_items":
            return int(
                sum(
                    s.value
                    for s in family.samples
                    if s.name.endswith("_total") and s.labels == {"model": model, "outcome": "finished"}
                )
            )
    return 0
