"""The Files and Batch APIs' wire shapes, as OpenAI publishes them: ``CreateBatchRequest`` is
decoded strictly from ``POST /v1/batches``; the others describe the answers in the OpenAPI
document (the routes answer the stores' dicts, which the tests check against OpenAI's schemas)."""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import Meta, Struct, field

Metadata = Annotated[
    dict[Annotated[str, Meta(max_length=64)], Annotated[str, Meta(max_length=512)]], Meta(max_length=16)
]
Purpose = Literal[
    "assistants",
    "assistants_output",
    "batch",
    "batch_output",
    "fine-tune",
    "fine-tune-results",
    "vision",
    "user_data",
    "evals",
]


class FileForm(Struct, kw_only=True):
    """The fields of ``POST /v1/files``."""

    file: bytes
    purpose: Literal["assistants", "batch", "fine-tune", "vision", "user_data", "evals"]
    expires_after_anchor: Literal["created_at"] | None = field(default=None, name="expires_after[anchor]")
    expires_after_seconds: Annotated[int, Meta(ge=3600, le=2592000)] | None = field(
        default=None, name="expires_after[seconds]"
    )


class OpenAIFile(Struct):
    id: str
    object: Literal["file"]
    bytes: int
    created_at: int
    filename: str
    purpose: Purpose
    status: Literal["uploaded", "processed", "error"]
    expires_at: int | None = None


class FileList(Struct):
    object: Literal["list"]
    data: list[OpenAIFile]
    first_id: str | None
    last_id: str | None
    has_more: bool


class FileDeleted(Struct):
    id: str
    object: Literal["file"]
    deleted: bool


class BatchFileExpirationAfter(Struct, forbid_unknown_fields=True):
    anchor: Literal["created_at"]
    seconds: Annotated[int, Meta(ge=3600, le=2592000)]


class CreateBatchRequest(Struct, forbid_unknown_fields=True):
    input_file_id: str
    endpoint: Literal[
        "/v1/responses", "/v1/chat/completions", "/v1/embeddings", "/v1/completions", "/v1/images/generations"
    ]
    completion_window: Literal["24h"]
    metadata: Metadata | None = None
    output_expires_after: BatchFileExpirationAfter | None = None


class BatchRequestCounts(Struct):
    total: int
    completed: int
    failed: int


class BatchError(Struct):
    code: str
    message: str
    param: str | None = None
    line: int | None = None


class BatchErrors(Struct):
    object: Literal["list"]
    data: list[BatchError]


class BatchTokenDetails(Struct):
    cached_tokens: int = 0


class BatchOutputTokenDetails(Struct):
    reasoning_tokens: int = 0


class BatchUsage(Struct):
    input_tokens: int
    input_tokens_details: BatchTokenDetails
    output_tokens: int
    output_tokens_details: BatchOutputTokenDetails
    total_tokens: int


class Batch(Struct):
    id: str
    object: Literal["batch"]
    endpoint: str
    input_file_id: str
    completion_window: str
    status: Literal[
        "validating", "failed", "in_progress", "finalizing", "completed", "expired", "cancelling", "cancelled"
    ]
    created_at: int
    request_counts: BatchRequestCounts
    metadata: dict[str, str] | None = None
    model: str | None = None
    errors: BatchErrors | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    in_progress_at: int | None = None
    expires_at: int | None = None
    finalizing_at: int | None = None
    completed_at: int | None = None
    failed_at: int | None = None
    expired_at: int | None = None
    cancelling_at: int | None = None
    cancelled_at: int | None = None
    usage: BatchUsage | None = None


class BatchList(Struct):
    object: Literal["list"]
    data: list[Batch]
    first_id: str | None
    last_id: str | None
    has_more: bool
