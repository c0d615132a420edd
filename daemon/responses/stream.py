"""From chat chunks to Responses output: items, stream events and the final response object.

:class:`ResponseBuilder` reads a provider's chat chunks and keeps the output items as they grow
(a message item for text, a ``function_call`` item per tool call), producing OpenAI's event
sequence as it goes: ``response.created``, ``response.in_progress``, then per item
``output_item.added``, ``content_part.added``, ``output_text.delta``... (or
``function_call_arguments.delta``...), the matching ``.done`` events, and ``response.completed``
(``response.incomplete`` when the token limit cut the answer, ``response.failed`` on an error).
An answer that is not streamed runs the same builder and keeps only the final object, so both
give the same response.
"""

from __future__ import annotations

import secrets
import time
from typing import Literal

import msgspec
from loom.sdk.errors import InvalidRequest, LoomError, QueueFull
from loom.sdk.protocols import TextChunk
from loom.sdk.responses import (
    ContentPartAdded,
    ContentPartDone,
    CreateResponseRequest,
    Event,
    FunctionCallArgumentsDelta,
    FunctionCallArgumentsDone,
    FunctionCallOut,
    IncompleteDetails,
    InputTokensDetails,
    LogprobOut,
    OutputItem,
    OutputItemAdded,
    OutputItemDone,
    OutputMessage,
    OutputText,
    OutputTextDelta,
    OutputTextDone,
    ResponseCompleted,
    ResponseCreated,
    ResponseError,
    ResponseFailed,
    ResponseIncomplete,
    ResponseInProgress,
    ResponseObject,
    ResponseUsage,
    StreamLogprob,
    TextConfig,
    TopLogprobOut,
)
from loom.sdk.types import AssistantMessage, FunctionCall, TokenLogprob, ToolCall, Usage
from msgspec import UNSET

from ..chat.assemble import count
from ..service_tier import tier_used

#: How an output item ends (``incomplete``: cut at max_output_tokens), and a response's status.
Ended = Literal["completed", "incomplete"]
Status = Literal["in_progress", "completed", "incomplete", "failed"]


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(24)}"


class ResponseBuilder:
    """One response: feed it chunks (:meth:`chunk`), then :meth:`finish` or :meth:`fail`.

    Each method returns the stream events it caused, numbered in order.
    """

    def __init__(self, req: CreateResponseRequest, response_id: str, model: str) -> None:
        self.req, self.id, self.model = req, response_id, model
        self.created_at = int(time.time())
        self.output: list[OutputItem] = []
        self.usage = Usage()
        self.finish: str | None = None
        self._seq = 0
        self._message: OutputMessage | None = None  # the open message item
        self._logprobs: list[TokenLogprob] = []
        self._call: FunctionCallOut | None = None  # the open function_call item
        self._call_index: int | None = None
        self.calls: list[ToolCall] = []
        self.text: list[str] = []
        #: The response object once finished (or failed), and the error it failed with.
        self.final: ResponseObject | None = None
        self.failure: LoomError | None = None

    # --- events ---------------------------------------------------------------------------------

    def _event(self, cls: type[Event], **fields) -> Event:
        event = cls(sequence_number=self._seq, **fields)
        self._seq += 1
        return event

    def start(self) -> list[Event]:
        snapshot = self.response("in_progress")
        return [self._event(ResponseCreated, response=snapshot), self._event(ResponseInProgress, response=snapshot)]

    def chunk(self, chunk: TextChunk) -> list[Event]:
        events: list[Event] = []
        count(self.usage, chunk, prompt=True)
        self.finish = chunk.finish_reason or self.finish
        if chunk.text:
            events += self._close_call()
            events += self._open_message()
            assert self._message is not None
            self.text.append(chunk.text)
            self._logprobs += chunk.logprobs or []
            events.append(
                self._event(
                    OutputTextDelta,
                    item_id=self._message.id,
                    output_index=len(self.output) - 1,
                    content_index=0,
                    delta=chunk.text,
                    logprobs=[_stream_logprob(lp) for lp in chunk.logprobs or ()],
                )
            )
        for delta in chunk.tool_calls or ():
            if delta.index != self._call_index:
                events += self._close_message() + self._close_call()
                self._call_index = delta.index
                self._call = FunctionCallOut(
                    id=new_id("fc"),
                    call_id=delta.id or new_id("call"),
                    name=delta.name or "",
                    arguments="",
                    status="in_progress",
                )
                self.output.append(self._call)
                events.append(self._event(OutputItemAdded, output_index=len(self.output) - 1, item=_copy(self._call)))
            assert self._call is not None
            if delta.arguments:
                self._call.arguments += delta.arguments
                events.append(
                    self._event(
                        FunctionCallArgumentsDelta,
                        item_id=self._call.id,
                        output_index=len(self.output) - 1,
                        delta=delta.arguments,
                    )
                )
        return events

    def _open_message(self) -> list[Event]:
        if self._message is not None:
            return []
        self._message = OutputMessage(id=new_id("msg"), status="in_progress", content=[])
        self.text, self._logprobs = [], []
        self.output.append(self._message)
        index = len(self.output) - 1
        return [
            self._event(OutputItemAdded, output_index=index, item=_copy(self._message)),
            self._event(
                ContentPartAdded,
                item_id=self._message.id,
                output_index=index,
                content_index=0,
                part=OutputText(text=""),
            ),
        ]

    def _close_message(self, status: Ended = "completed") -> list[Event]:
        item, self._message = self._message, None
        if item is None:
            return []
        index = self.output.index(item)
        text = "".join(self.text)
        part = OutputText(text=text, logprobs=[_logprob(lp) for lp in self._logprobs])
        item.content = [part]
        item.status = status
        return [
            self._event(
                OutputTextDone,
                item_id=item.id,
                output_index=index,
                content_index=0,
                text=text,
                logprobs=[_stream_logprob(lp) for lp in self._logprobs],
            ),
            self._event(ContentPartDone, item_id=item.id, output_index=index, content_index=0, part=part),
            self._event(OutputItemDone, output_index=index, item=_copy(item)),
        ]

    def _close_call(self, status: Ended = "completed") -> list[Event]:
        item, self._call, self._call_index = self._call, None, None
        if item is None:
            return []
        index = self.output.index(item)
        item.status = status
        self.calls.append(ToolCall(id=item.call_id, function=FunctionCall(name=item.name, arguments=item.arguments)))
        return [
            self._event(
                FunctionCallArgumentsDone, item_id=item.id, output_index=index, name=item.name, arguments=item.arguments
            ),
            self._event(OutputItemDone, output_index=index, item=_copy(item)),
        ]

    def finish_events(self) -> list[Event]:
        """Close the open items and end with ``response.completed`` or ``response.incomplete``."""
        cut = self.finish == "length"
        status: Ended = "incomplete" if cut else "completed"
        events = self._close_message(status) + self._close_call(status)
        if not self.output:
            # A generation with no text at all still answers with an (empty) message.
            events += self._open_message() + self._close_message(status)
        self.final = self.response(status)
        events.append(self._event(ResponseIncomplete if cut else ResponseCompleted, response=self.final))
        return events

    def fail(self, error: LoomError) -> list[Event]:
        code = "invalid_prompt" if isinstance(error, InvalidRequest) else "server_error"
        if isinstance(error, QueueFull):
            code = "rate_limit_exceeded"
        self._message = self._call = None
        self.failure = error
        self.final = self.response("failed", ResponseError(code=code, message=error.message))
        return [self._event(ResponseFailed, response=self.final)]

    # --- the object --------------------------------------------------------------------------------

    def response(self, status: Status, error: ResponseError | None = None) -> ResponseObject:
        req = self.req
        done = status in ("completed", "incomplete")
        usage = None
        if done:
            total = self.usage.prompt_tokens + self.usage.completion_tokens
            details = self.usage.prompt_tokens_details
            usage = ResponseUsage(
                input_tokens=self.usage.prompt_tokens,
                output_tokens=self.usage.completion_tokens,
                total_tokens=total,
                input_tokens_details=InputTokensDetails(cached_tokens=0 if details is UNSET else details.cached_tokens),
            )
        return ResponseObject(
            id=self.id,
            object="response",
            created_at=self.created_at,
            status=status,
            model=self.model,
            output=[_copy(item) for item in self.output] if done or status == "failed" else [],
            error=error,
            incomplete_details=IncompleteDetails(reason="max_output_tokens") if status == "incomplete" else None,
            instructions=req.instructions,
            max_output_tokens=req.max_output_tokens,
            previous_response_id=req.previous_response_id,
            parallel_tool_calls=req.parallel_tool_calls is not False,
            temperature=1.0 if req.temperature is None else req.temperature,
            top_p=1.0 if req.top_p is None else req.top_p,
            tool_choice=req.tool_choice or "auto",
            tools=list(req.tools or []),
            text=req.text or TextConfig(),
            metadata=dict(req.metadata or {}),
            store=req.store is not False,
            truncation=req.truncation or "disabled",
            completed_at=int(time.time()) if status == "completed" else None,
            usage=usage,
            reasoning=req.reasoning,
            top_logprobs=req.top_logprobs,
            user=req.user,
            service_tier=tier_used(req.service_tier),
            safety_identifier=req.safety_identifier,
            prompt_cache_key=req.prompt_cache_key,
            background=False,
        )

    def answer(self) -> AssistantMessage:
        """The answer as a chat message, for the stored conversation."""
        text = "".join(part.text for item in self.output if isinstance(item, OutputMessage) for part in item.content)
        return AssistantMessage(content=text if text or not self.calls else None, tool_calls=self.calls or None)


def _copy(item):
    return msgspec.structs.replace(item)


def _bytes(lp) -> list[int]:
    return list(lp.bytes) if lp.bytes is not None else list(lp.token.encode())


def _logprob(lp: TokenLogprob) -> LogprobOut:
    return LogprobOut(
        token=lp.token,
        logprob=lp.logprob,
        bytes=_bytes(lp),
        top_logprobs=[TopLogprobOut(token=t.token, logprob=t.logprob, bytes=_bytes(t)) for t in lp.top_logprobs],
    )


def _stream_logprob(lp: TokenLogprob) -> StreamLogprob:
    return StreamLogprob(
        token=lp.token,
        logprob=lp.logprob,
        top_logprobs=[{"token": t.token, "logprob": t.logprob} for t in lp.top_logprobs],
    )
