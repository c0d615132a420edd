"""A batch's input file read into lines, or the errors that fail it (OpenAI's ``BatchError``).

Each line of the JSONL file is ``{"custom_id", "method": "POST", "url", "body"}``. What makes a
file unusable as a whole fails the batch at validation, each problem with its line number (as
OpenAI does): a line that is not JSON, a missing field, a method other than POST, a ``url`` that
is not the batch's ``endpoint``, a repeated ``custom_id``, an empty file, too many lines. What is
wrong *inside* a body (an unknown model, a bad parameter) is the endpoint's own answer for that
line: it fails that line alone, with the status and error body the route would have answered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

#: The endpoints a batch may run (OpenAI's ``CreateBatchRequest.endpoint``, those Loom serves).
ENDPOINTS = ("/v1/chat/completions", "/v1/embeddings", "/v1/responses", "/v1/images/generations", "/v1/completions")
#: The fields of an input line.
FIELDS = ("custom_id", "method", "url", "body")
#: A file with many bad lines reports this many of them.
MAX_ERRORS = 100


@dataclass(frozen=True)
class Line:
    #: The line's number in the file, from 1 (what OpenAI's errors name).
    line: int
    custom_id: str
    #: ``body.model`` ("" when the body names none: the endpoint's route picks one).
    model: str
    #: The request body, as JSON.
    body: bytes


def error(code: str, message: str, line: int | None = None, param: str | None = None) -> dict[str, Any]:
    return {"code": code, "message": message, "param": param, "line": line}


def parse(data: bytes, endpoint: str, max_lines: int) -> tuple[list[Line], list[dict[str, Any]]]:
    """The lines of ``data``, and the errors that fail the batch (none when it may run)."""
    lines: list[Line] = []
    errors: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    raw_lines = data.split(b"\n")
    for number, raw in enumerate(raw_lines, 1):
        if len(errors) >= MAX_ERRORS:
            break
        if not raw.strip():
            continue
        if len(lines) >= max_lines:
            count = sum(1 for r in raw_lines if r.strip())
            errors.append(
                error(
                    "too_many_requests",
                    f"The file has {count} requests; a batch may have at most {max_lines} ([batches] max_lines)",
                    number,
                )
            )
            break
        try:
            item = msgspec.json.decode(raw)
        except msgspec.DecodeError as e:
            errors.append(error("invalid_json_line", f"Line {number} is not valid JSON: {e}", number))
            continue
        problem = _check(item, number, endpoint, seen)
        if problem is not None:
            errors.append(problem)
            continue
        seen[item["custom_id"]] = number
        model = item["body"].get("model")
        lines.append(
            Line(number, item["custom_id"], model if isinstance(model, str) else "", msgspec.json.encode(item["body"]))
        )
    if not lines and not errors:
        errors.append(error("empty_file", "The input file has no requests"))
    return lines, errors


def _check(item: Any, number: int, endpoint: str, seen: dict[str, int]) -> dict[str, Any] | None:
    if not isinstance(item, dict):
        return error("invalid_request", f"Line {number} is a JSON {type(item).__name__}, not an object", number)
    for name in item:
        if name not in FIELDS:
            return error(
                "invalid_request",
                f"Line {number} has an unknown field '{name}' (a line has {', '.join(FIELDS)})",
                number,
                name,
            )
    for name in FIELDS:
        if name not in item:
            return error("missing_required_parameter", f"Line {number} has no '{name}'", number, name)
    custom_id = item["custom_id"]
    if not isinstance(custom_id, str) or not custom_id:
        return error("invalid_request", f"Line {number}: custom_id must be a non-empty string", number, "custom_id")
    if custom_id in seen:
        return error(
            "duplicate_custom_id",
            f"Line {number} repeats the custom_id '{custom_id}' of line {seen[custom_id]}; each must be unique",
            number,
            "custom_id",
        )
    if item["method"] != "POST":
        return error(
            "invalid_request", f"Line {number}: method must be 'POST', got {item['method']!r}", number, "method"
        )
    if item["url"] != endpoint:
        return error(
            "mismatched_endpoint",
            f"Line {number} is for {item['url']!r}, but the batch's endpoint is {endpoint!r}",
            number,
            "url",
        )
    if not isinstance(item["body"], dict):
        return error("invalid_request", f"Line {number}: body must be a JSON object", number, "body")
    if item["body"].get("stream"):
        return error("invalid_request", f"Line {number}: a batch's requests cannot stream", number, "body.stream")
    return None
