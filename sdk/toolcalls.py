"""Tool calls in the text of local models, for providers that run a model themselves: written
into prompts, and parsed back out of what the model generates.

Prompts: :func:`template_messages` gives messages in the shape Hugging Face chat templates that
use ``tools`` read (assistant ``tool_calls`` with arguments as mappings, ``tool`` messages with
``tool_call_id`` and ``name``). For a template that knows no tools, :func:`text_messages` writes
earlier calls and results as text and :func:`with_tools_prompt` describes the tools in a system
message, in the ``<tool_call>`` form below.

Answers: chat templates teach models a few ways of writing a call; :class:`ToolCallParser`
reads the common ones as the text streams in and turns them into OpenAI's streaming pieces
(:class:`ToolCallDelta`); :func:`parse_stream` applies it to a provider's chunks:

- ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` blocks (Hermes, Qwen, SmolLM3 and
  Loom's own prompt for models whose template knows no tools);
- ``[TOOL_CALLS] [{"name": ..., "arguments": {...}}, ...]`` (Mistral);
- an answer that is nothing but a JSON call or list of calls, ``"parameters"`` for
  ``"arguments"``, maybe after ``<|python_tag|>`` (Llama 3.x).

Text around calls is passed on as text. Inside a ``<tool_call>`` block written name first (what a
grammar produces), the name is sent as soon as it is known and the arguments as they come;
other forms are read whole and sent when they end. Pure text processing: no model runtime.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import msgspec

from .protocols import TextChunk, ToolCallDelta
from .types import AssistantMessage, ChatCompletionRequest, ChatMessage, FunctionDefinition, ToolMessage

OPEN, CLOSE = "<tool_call>", "</tool_call>"
MISTRAL = "[TOOL_CALLS]"
PYTHON_TAG = "<|python_tag|>"
#: The start of a call object written name first: `{"name": "x", "arguments": `.
_HEAD = re.compile(r'\s*\{\s*"name"\s*:\s*"((?:[^"\\]|\\.)*)"\s*,\s*"(?:arguments|parameters)"\s*:\s*')
#: A head longer than this that still does not match is read whole instead.
_HEAD_LIMIT = 256

Piece = str | ToolCallDelta


def call_of(value: Any) -> tuple[str, str] | None:
    """(name, arguments as JSON text) of a decoded call object, or None if it is not one."""
    if not isinstance(value, dict) or not isinstance(value.get("name"), str):
        return None
    arguments = value.get("arguments", value.get("parameters", {}))
    if isinstance(arguments, str):
        return value["name"], arguments
    return value["name"], json.dumps(arguments, ensure_ascii=False)


def calls_of(text: str) -> list[tuple[str, str]] | None:
    """The calls in a whole JSON text (one object or a list), or None if it holds none."""
    try:
        value = json.loads(text)
    except ValueError:
        return None
    values = value if isinstance(value, list) else [value]
    calls = [call_of(v) for v in values]
    found = [c for c in calls if c is not None]
    if not calls or len(found) < len(calls):
        return None
    return found


class ToolCallParser:
    """Feed generated text in; get text and tool-call pieces out; :meth:`close` at the end.

    Whitespace that only separates calls (or trails them) is dropped, so an answer that is
    nothing but calls has no text.
    """

    def __init__(self, new_id: Callable[[], str]) -> None:
        self._new_id = new_id
        self._buf = ""
        self._state = "start"  # start, text, head, args, block, whole
        self._pending_ws = ""
        self._after_call = False
        self._args_sent = 0
        self.calls = 0

    @property
    def called(self) -> bool:
        return self.calls > 0

    def feed(self, text: str) -> list[Piece]:
        self._buf += text
        out: list[Piece] = []
        while True:
            before = (self._state, self._buf)
            out += getattr(self, f"_state_{self._state}")()
            if (self._state, self._buf) == before:
                return out

    def close(self) -> list[Piece]:
        """The end of the generation: whatever is held back, as text or as a last call."""
        buf, self._buf = self._buf, ""
        out: list[Piece] = []
        if self._state == "args":
            out += self._finish_args(buf, complete=False)
        elif self._state in ("block", "whole", "head"):
            body = buf.lstrip()
            for tag in (PYTHON_TAG, MISTRAL):
                if body.startswith(tag):
                    body = body[len(tag) :]
            calls = calls_of(body)
            if calls is not None:
                out += self._emit_calls(calls)
            else:
                out += self._emit_text((OPEN if self._state in ("head", "block") else "") + buf)
        else:
            out += self._emit_text(buf)
        if not self.called and self._pending_ws:
            out.append(self._pending_ws)
        self._pending_ws = ""
        return out

    # --- states: each looks at the buffer and may emit, consume or change state -------------------

    def _state_start(self) -> list[Piece]:
        stripped = self._buf.lstrip()
        if not stripped:
            return []
        if stripped[0] in "{[" or stripped.startswith(PYTHON_TAG):
            self._state = "whole"  # a JSON answer: read it whole, close() decides
        elif not PYTHON_TAG.startswith(stripped):  # else: maybe a python tag still coming
            self._state = "text"
        return []

    def _state_text(self) -> list[Piece]:
        buf = self._buf
        hits = [(at, marker) for marker in (OPEN, MISTRAL) if (at := buf.find(marker)) >= 0]
        if hits:
            at, marker = min(hits)
            self._buf = buf[at + len(marker) :]
            self._state = "head" if marker == OPEN else "whole"
            out = self._emit_text(buf[:at])
            self._pending_ws = ""  # whitespace before a call is not text
            return out
        keep = max(_partial(buf, OPEN), _partial(buf, MISTRAL))
        self._buf = buf[len(buf) - keep :]
        return self._emit_text(buf[: len(buf) - keep])

    def _state_head(self) -> list[Piece]:
        match = _HEAD.match(self._buf)
        if match is not None:
            name = json.loads(f'"{match.group(1)}"')
            self._buf = self._buf[match.end() :]
            self._state, self._args_sent = "args", 0
            self.calls += 1
            return [ToolCallDelta(index=self.calls - 1, id=self._new_id(), name=name)]
        if CLOSE in self._buf or len(self._buf) > _HEAD_LIMIT or _cannot_be_head(self._buf):
            self._state = "block"
        return []

    def _state_args(self) -> list[Piece]:
        if self._args_sent == 0:
            self._buf = self._buf.lstrip()  # the arguments start at their first character
        at = self._buf.find(CLOSE)
        if at >= 0:
            body, self._buf = self._buf[:at], self._buf[at + len(CLOSE) :]
            self._state = "text"
            return self._finish_args(body, complete=True)
        # The call object's closing brace is at or after the last "}" seen so far.
        last = self._buf.rfind("}")
        safe = len(self._buf[:last].rstrip()) if last >= 0 else len(self._buf) - _partial(self._buf, CLOSE)
        return self._args_piece(self._buf[:safe])

    def _state_block(self) -> list[Piece]:
        """A <tool_call> block not written name first: read it whole."""
        at = self._buf.find(CLOSE)
        if at < 0:
            return []
        body, self._buf = self._buf[:at], self._buf[at + len(CLOSE) :]
        self._state = "text"
        calls = calls_of(body)
        return self._emit_calls(calls) if calls is not None else self._emit_text(OPEN + body + CLOSE)

    def _state_whole(self) -> list[Piece]:
        return []  # read to the end of the generation

    # --- emitting ---------------------------------------------------------------------------------

    def _emit_text(self, text: str) -> list[Piece]:
        if not text:
            return []
        if not text.strip():
            self._pending_ws += text
            return []
        if self._after_call:
            text, self._pending_ws, self._after_call = text.lstrip(), "", False
        # Trailing whitespace waits: it is dropped if a call comes next.
        body = text.rstrip()
        out, self._pending_ws = self._pending_ws + body, text[len(body) :]
        return [out]

    def _finish_args(self, body: str, *, complete: bool) -> list[Piece]:
        text = body.rstrip()
        if text.endswith("}") and (complete or _is_json(text[:-1].rstrip())):
            text = text[:-1].rstrip()  # the call object's own closing brace
        out = self._args_piece(text)
        self._after_call = True
        return out

    def _args_piece(self, args: str) -> list[Piece]:
        piece = args[self._args_sent :]
        if not piece:
            return []
        self._args_sent = len(args)
        return [ToolCallDelta(index=self.calls - 1, arguments=piece)]

    def _emit_calls(self, calls: list[tuple[str, str]]) -> list[Piece]:
        out: list[Piece] = []
        for name, arguments in calls:
            self.calls += 1
            out.append(ToolCallDelta(index=self.calls - 1, id=self._new_id(), name=name))
            if arguments:
                out.append(ToolCallDelta(index=self.calls - 1, arguments=arguments))
        self._after_call = True
        return out


def _partial(text: str, marker: str) -> int:
    """Length of the longest tail of ``text`` that starts ``marker``."""
    for n in range(min(len(marker) - 1, len(text)), 0, -1):
        if text.endswith(marker[:n]):
            return n
    return 0


def _cannot_be_head(text: str) -> bool:
    """Whether ``text`` has gone somewhere a name-first call object cannot (e.g. "arguments"
    first), judged on its start once there is enough of it."""
    stripped = text.lstrip()
    if not stripped:
        return False
    if stripped[0] != "{":
        return True
    rest = stripped[1:].lstrip()
    return bool(rest) and not '"name"'.startswith(rest[:6]) and not rest.startswith('"name"')


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def parse_stream(chunks: Iterable[TextChunk], new_id: Callable[[], str]) -> Iterator[TextChunk]:
    """A provider's chat chunks with the tool calls in their text parsed out. The last chunk's
    finish reason becomes "tool_calls" when the model called tools and stopped by itself."""
    parser = ToolCallParser(new_id)
    for chunk in chunks:
        if chunk.finish_reason is not None:
            yield from _chunks(parser.close(), None)
            finish = "tool_calls" if parser.called and chunk.finish_reason == "stop" else chunk.finish_reason
            yield msgspec.structs.replace(chunk, text="", finish_reason=finish)
        else:
            yield from _chunks(parser.feed(chunk.text), chunk.logprobs)


def _chunks(pieces: list[Piece], logprobs: list | None) -> Iterator[TextChunk]:
    """Parser output as chunks. Log probabilities describe content, as OpenAI's do: those of a
    piece of text ride on the first text that comes out of it; text that went into a call (or
    is held back) has none."""
    for piece in pieces:
        if isinstance(piece, str):
            yield TextChunk(text=piece, logprobs=logprobs)
            logprobs = None
        else:
            yield TextChunk(tool_calls=[piece])


# --- prompts ----------------------------------------------------------------------------------------


def role_of(message: ChatMessage) -> str:
    """Chat templates know system/user/assistant; OpenAI's "developer" is the system role."""
    return "system" if message.role == "developer" else message.role


def _arguments(text: str) -> Any:
    """Arguments as templates expect them: a mapping when the text is a JSON object."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, dict) else text


def template_messages(messages: list[ChatMessage]) -> list[dict[str, Any]]:
    """Messages in the shape Hugging Face chat templates with tools read."""
    names = {c.id: c.function.name for m in messages if isinstance(m, AssistantMessage) for c in m.tool_calls or ()}
    out = []
    for message in messages:
        turn: dict[str, Any] = {"role": role_of(message), "content": message.text()}
        if isinstance(message, AssistantMessage) and message.tool_calls:
            turn["tool_calls"] = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.function.name, "arguments": _arguments(c.function.arguments)},
                }
                for c in message.tool_calls
            ]
        if isinstance(message, ToolMessage):
            turn["tool_call_id"] = message.tool_call_id
            if message.tool_call_id in names:
                turn["name"] = names[message.tool_call_id]
        out.append(turn)
    return out


def call_text(name: str, arguments: str) -> str:
    """One call in the ``<tool_call>`` form."""
    return f'{OPEN}\n{{"name": {json.dumps(name)}, "arguments": {arguments or "{}"}}}\n{CLOSE}'


def text_messages(messages: list[ChatMessage]) -> list[dict[str, str]]:
    """Messages for a template that knows system/user/assistant only: calls and their results
    written as text, consecutive tool results as one user turn."""
    out: list[dict[str, str]] = []
    results = False  # whether the last turn holds tool results
    for m in messages:
        if isinstance(m, ToolMessage):
            result = f"<tool_response>\n{m.text()}\n</tool_response>"
            if results:
                out[-1]["content"] += "\n" + result
            else:
                out.append({"role": "user", "content": result})
            results = True
            continue
        results = False
        text = m.text()
        if isinstance(m, AssistantMessage) and m.tool_calls:
            calls = "\n".join(call_text(c.function.name, c.function.arguments) for c in m.tool_calls)
            text = f"{text}\n{calls}" if text else calls
        out.append({"role": role_of(m), "content": text})
    return out


def tool_specs(functions: list[FunctionDefinition]) -> list[dict[str, Any]]:
    """Functions as the ``tools`` a chat template lays out."""
    specs = []
    for function in functions:
        spec: dict[str, Any] = {"name": function.name}
        if function.description:
            spec["description"] = function.description
        spec["parameters"] = function.schema()
        specs.append({"type": "function", "function": spec})
    return specs


def tools_prompt(request: ChatCompletionRequest) -> str:
    """The system text that teaches a model without a tool template how to call functions."""
    functions = request.callable_tools()
    listed = "\n".join(json.dumps(spec, ensure_ascii=False) for spec in tool_specs(functions))
    several = "one or more functions" if request.parallel_calls() else "a function"
    text = (
        f"You may call {several} to answer. The functions, as JSON schemas:\n<tools>\n{listed}\n</tools>\n"
        f"To call a function, answer with its name and arguments as a JSON object in {OPEN}{CLOSE} tags:\n"
        f'{OPEN}\n{{"name": <function-name>, "arguments": <arguments-object>}}\n{CLOSE}'
    )
    mode = request.tool_mode()
    if mode == "named":
        text += f"\nCall the function {functions[0].name} now."
    elif mode == "required":
        text += "\nCall a function now."
    return text


def with_tools_prompt(turns: list[dict[str, str]], request: ChatCompletionRequest) -> list[dict[str, str]]:
    """``turns`` (from :func:`text_messages`) with the tools described in the system turn."""
    if request.tool_mode() == "none":
        return turns
    prompt = tools_prompt(request)
    if turns and turns[0]["role"] == "system":
        return [{"role": "system", "content": f"{turns[0]['content']}\n\n{prompt}"}, *turns[1:]]
    return [{"role": "system", "content": prompt}, *turns]


__all__ = [
    "ToolCallParser",
    "call_of",
    "call_text",
    "calls_of",
    "parse_stream",
    "role_of",
    "template_messages",
    "text_messages",
    "tool_specs",
    "tools_prompt",
    "with_tools_prompt",
]
